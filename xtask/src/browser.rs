//! Headless Chromium for the page tests: Debian's `chromium` and `chromium-driver`, installed by
//! `cargo xtask test` when missing (as it installs moto), and, for tests, a WebDriver session on
//! a fresh profile.

use std::path::Path;
use std::process::Command;

/// The browser the page tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver server.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Why the browser could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// apt-get could not be run or failed.
    #[error(
        "installing chromium and chromium-driver with apt-get failed ({0}); install them (Debian: `apt-get install chromium chromium-driver`) and run again"
    )]
    Install(String),
}

/// Installs `chromium` and `chromium-driver` with apt-get (as root, or through sudo) unless both
/// are present; the package lists are refreshed only when the first attempt fails.
pub fn ensure() -> Result<(), BrowserError> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    eprintln!("xtask: installing chromium and chromium-driver for the page tests");
    let apt = |args: &[&str]| -> Result<bool, BrowserError> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"0"));
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|status| status.success())
            .map_err(|e| BrowserError::Install(e.to_string()))
    };
    let install = ["install", "-y", "-qq", "chromium", "chromium-driver"];
    if apt(&install)? || (apt(&["update", "-qq"])? && apt(&install)?) {
        Ok(())
    } else {
        Err(BrowserError::Install("apt-get exited with an error".into()))
    }
}

#[cfg(test)]
pub(crate) mod session {
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use serde_json::json;

    use super::{CHROMEDRIVER, CHROMIUM};

    /// A headless Chromium driven over WebDriver: its own chromedriver on a free port, a fresh
    /// profile, the flags that keep it off the network it is not asked to reach, and JavaScript
    /// off unless asked for (the pages under test must work without it). Dropping it ends both.
    pub(crate) struct Browser {
        pub client: fantoccini::Client,
        driver: Child,
        profile: tempfile::TempDir,
    }

    impl Browser {
        /// A browser with JavaScript off.
        pub(crate) async fn start() -> Browser {
            Self::launch(false).await
        }

        /// A browser with JavaScript on (for what a page's script does).
        pub(crate) async fn with_javascript() -> Browser {
            Self::launch(true).await
        }

        async fn launch(javascript: bool) -> Browser {
            assert!(
                std::path::Path::new(CHROMEDRIVER).exists(),
                "{CHROMEDRIVER} is missing: `cargo xtask test` installs chromium and chromium-driver (Debian packages)"
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
            let profile = tempfile::tempdir().expect("a profile directory");
            let mut args = vec![
                "--headless".to_owned(),
                "--no-sandbox".into(),
                "--disable-gpu".into(),
                "--disable-background-networking".into(),
                "--disable-component-update".into(),
                "--disable-sync".into(),
                "--no-first-run".into(),
                "--disable-dev-shm-usage".into(),
                "--window-size=1400,1000".into(),
                format!("--user-data-dir={}", profile.path().display()),
            ];
            if !javascript {
                args.push("--blink-settings=scriptEnabled=false".into());
            }
            let mut capabilities = serde_json::Map::new();
            capabilities.insert(
                "goog:chromeOptions".into(),
                json!({ "binary": CHROMIUM, "args": args }),
            );
            let url = format!("http://127.0.0.1:{port}");
            let mut last = String::new();
            for _ in 0..100 {
                let mut builder = fantoccini::ClientBuilder::rustls().expect("TLS roots");
                builder.capabilities(capabilities.clone());
                match builder.connect(&url).await {
                    Ok(client) => {
                        return Browser {
                            client,
                            driver,
                            profile,
                        };
                    }
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no WebDriver session on chromedriver at {url}: {last}");
        }

        /// Ends the WebDriver session (the browser quits).
        pub(crate) async fn close(self) {
            let _ = self.client.clone().close().await;
        }

        /// The text of the element with id `id`.
        pub(crate) async fn text(&self, id: &str) -> String {
            self.client
                .find(fantoccini::Locator::Id(id))
                .await
                .unwrap_or_else(|e| panic!("#{id}: {e}"))
                .text()
                .await
                .unwrap_or_else(|e| panic!("#{id}: {e}"))
        }

        /// Clicks the element with id `id` and waits for the next page.
        pub(crate) async fn click(&self, id: &str) {
            let before = self.client.current_url().await.ok();
            self.client
                .find(fantoccini::Locator::Id(id))
                .await
                .unwrap_or_else(|e| panic!("#{id}: {e}"))
                .click()
                .await
                .unwrap_or_else(|e| panic!("#{id}: {e}"));
            for _ in 0..100 {
                if self.client.current_url().await.ok() != before {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// Waits (at most 10 s) until the page's visible text contains `text`; the text.
        pub(crate) async fn wait_for_text(&self, text: &str) -> String {
            let mut body = String::new();
            for _ in 0..200 {
                body = self.body().await;
                if body.contains(text) {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the page never showed {text:?}: {body}");
        }

        /// Clicks the element matching `css` (no navigation expected).
        pub(crate) async fn press(&self, css: &str) {
            self.client
                .find(fantoccini::Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"))
                .click()
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
        }

        /// Types `text` into the element matching `css`.
        pub(crate) async fn fill(&self, css: &str, text: &str) {
            self.client
                .find(fantoccini::Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"))
                .send_keys(text)
                .await
                .unwrap_or_else(|e| panic!("{css}: {e}"));
        }

        /// Saves a screenshot as `name.png` in `target/screenshots`, or with
        /// `UPDATE_SCREENSHOTS=1` in `docs/` (the README's).
        pub(crate) async fn screenshot(&self, name: &str) {
            let root = crate::test::workspace_root();
            let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
                root.join("docs")
            } else {
                root.join("target/screenshots")
            };
            // The whole page: the window as tall as the document for the shot.
            let height = self
                .client
                .execute("return document.documentElement.scrollHeight", Vec::new())
                .await
                .ok()
                .and_then(|h| h.as_u64())
                .map_or(1000, |h| u32::try_from(h).unwrap_or(1000).clamp(600, 4000));
            let _ = self.client.set_window_size(1400, height + 120).await;
            let png = self.client.screenshot().await.expect("a screenshot");
            let _ = self.client.set_window_size(1400, 1000).await;
            std::fs::create_dir_all(&dir).expect("the screenshot directory");
            std::fs::write(dir.join(format!("{name}.png")), png).expect("the screenshot");
        }

        /// Waits (at most 10 s) until the page has an element with id `id`; its text.
        pub(crate) async fn wait_for_element(&self, id: &str) -> String {
            for _ in 0..200 {
                if let Ok(element) = self.client.find(fantoccini::Locator::Id(id)).await {
                    return element.text().await.unwrap_or_default();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the page never had #{id}");
        }

        /// The page's `<h1>`.
        pub(crate) async fn heading(&self) -> String {
            self.text_of("h1").await
        }

        /// The page's visible text.
        pub(crate) async fn body(&self) -> String {
            self.text_of("body").await
        }

        /// The visible text of the first element matching `css`.
        pub(crate) async fn text_of(&self, css: &str) -> String {
            self.client
                .find(fantoccini::Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"))
                .text()
                .await
                .unwrap_or_else(|e| panic!("no text in {css}: {e}"))
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.driver.kill();
            let _ = self.driver.wait();
            // A test that fails never closes its session, and the browser outlives its
            // driver: its processes are the ones using this profile.
            let _ = Command::new("pkill")
                .args(["-KILL", "-f", &self.profile.path().display().to_string()])
                .status();
        }
    }
}
