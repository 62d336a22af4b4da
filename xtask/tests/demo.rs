//! `cargo xtask demo` as a user runs it: the real binary, its exit status and its summary. It
//! needs nothing but this machine (no AWS, no moto, no Python).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::Output;

fn run(args: &[&str]) -> (Output, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        // The demo must not depend on AWS settings of the machine running it.
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

#[test]
fn demo_observes_every_effect_and_exits_zero() {
    let (output, stdout, stderr) = run(&["demo"]);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("demo passed: all 18 expected effects observed"),
        "{stdout}"
    );
    let summary = stdout.split("== Summary").nth(1).unwrap();
    assert_eq!(summary.matches("[ok]").count(), 18, "{summary}");
    assert!(!summary.contains("[MISSING]"), "{summary}");
    // The same bootstrap and deploys as against AWS, with the local engine as the stack.
    for line in [
        "AWS stack app-builder-engine: deployed",
        "AWS stack app-builder-note-dispatcher: deployed",
        "AWS stack app-builder-typeform: deployed",
        "AWS stack app-builder-lansweeper: deployed",
        // Lansweeper is connected on its configuration page, then synced once it is enabled.
        "GET /lansweeper/integration/configure -> 200 page \"Connect Lansweeper\"",
        "-> 200 page \"Lansweeper is connected\"",
        "Installation changed (enabled) of lansweeper for widget-data-center -> 200 Sync queued",
        "queue message widget-data-center (attempt 1) -> done",
        "webhook 4me app builder secrets: created",
        "webhook 4me app builder app instance delete: created",
        // The customer uninstalls: 4me tells the engine, the bus tells the Typeform function.
        "4me -> provider webhook: app_instance.delete (200",
        "Installation changed (deleted) of typeform for widget-data-center -> 200 Typeform webhook removed",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in\n{stdout}");
    }
    // The deployer says what it is.
    assert!(
        stdout.contains("AWS stack app-builder-engine: deployed (local engine"),
        "{stdout}"
    );
    assert!(!stdout.contains("SAM applies"), "{stdout}");
    // The sandbox ran the deployed rules for the customer's note (the demo fires none itself):
    // twice the note-dispatcher's (the customer's note, then the survey note), once Typeform's.
    assert_eq!(
        stdout
            .matches("4me ran the rule of \"Log Note Dispatcher Integration\"")
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("with payload {text, url} (JWT signed RS512 with the customer's webhook policy) answered 200"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4me ran the Typeform app's rule (status became completed): added note \"Please complete our [survey at: https://widget.typeform.com/to/u6nXL7]"),
        "{stdout}"
    );
    // The first Typeform installation event is explained, not shown as a failure.
    assert!(stdout.contains("waiting for the token:"), "{stdout}");
    // ... and it is the only failure: the engine settles before the sandbox stops, so no
    // handler still running is cut off.
    assert_eq!(stdout.matches("-> 400").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("-> 5").count(), 0, "{stdout}");
    // One change of state, one sync: the sync's own writes to the instance are updates.
    assert_eq!(stdout.matches("Sync queued").count(), 1, "{stdout}");
    assert!(!stdout.contains("-> failed"), "{stdout}");
    // What arrived and what was written, as it happened.
    assert!(stdout.contains("-> 200 Secrets stored"), "{stdout}");
    assert!(
        stdout.contains("secret store: CreateSecret 4me-app-builder/typeform/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-> 200 note-dispatcher event handling complete"),
        "{stdout}"
    );
    // Never a secret: the Typeform token the customer entered is not printed.
    assert!(!stdout.contains("tfp_"), "a Typeform token was printed");
    assert!(!stdout.contains("client_secret"), "{stdout}");
}

#[test]
fn demo_names_the_missing_effect_and_fails_when_typeform_rejects_the_token() {
    let (output, stdout, stderr) = run(&["demo", "--fault", "wrong-typeform-token"]);
    assert!(!output.status.success(), "stdout:\n{stdout}");
    assert!(
        stderr.contains("demo failed: missing effect: the installation event made the Typeform function register webhook"),
        "{stderr}"
    );
    assert!(
        stderr.contains("demo failed: missing effect: the survey response was added as a note"),
        "{stderr}"
    );
    // The rest of the engine still worked and says so.
    assert!(
        stdout.contains("[ok] the translated note was posted"),
        "{stdout}"
    );
}

/// `cargo xtask local` serves the engine until Ctrl-C (SIGINT), then exits cleanly.
#[cfg(unix)]
#[test]
fn local_serves_the_engine_until_ctrl_c() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::Duration;

    /// Kills `xtask local` if the test fails before it stops it with Ctrl-C.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["local", "--schedule-secs", "0"])
            .env_remove("AWS_ENDPOINT_URL")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // Lines up to (and including) the first one matching `until`; a hang guard of two minutes
    // per line, generous because the suite's other tests load the same cores.
    let read_until = |until: &dyn Fn(&str) -> bool| {
        let mut read = Vec::new();
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no such line in {read:#?}"));
            let done = until(&line);
            read.push(line);
            if done {
                return read;
            }
        }
    };
    let printed = read_until(&|line| line.starts_with("Stop with Ctrl-C"));
    let secrets_route = printed
        .iter()
        .find(|line| line.contains("app-builder-engine-SecretsFunction"))
        .unwrap_or_else(|| panic!("no secrets function URL in {printed:#?}"));
    let url = secrets_route.split_whitespace().nth(1).unwrap();
    let (host, path) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();

    // A request of our own reaches the real secrets function through the engine, and the
    // engine prints it.
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Expected jwt in body"), "{answer}");
    read_until(&|line| line.contains("SecretsFunction <- POST /secrets") && line.contains("400"));

    let status = std::process::Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    read_until(&|line| line == "stopping");
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}
