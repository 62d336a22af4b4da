//! A moto server child process, bound to a free port on 127.0.0.1 and stopped when dropped.
//!
//! moto is started through the venv's Python with a small watchdog: a thread that exits the
//! server as soon as its stdin (a pipe held by this process) reaches end of file. Whatever way the
//! xtask process ends (normal return, error, panic, Ctrl-C, even SIGKILL) the pipe closes and the
//! server goes away with it; on a normal end [`MotoServer`]'s `Drop` also kills and reaps it.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::venv::Venv;

/// How long moto may take to report its port.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `moto.server.main(sys.argv[1:])` (what `moto_server` does) plus the stdin watchdog.
///
/// DynamoDB applies a conditional write atomically per item; moto's threaded server checks the
/// condition and writes without a lock, so two concurrent compare-and-swaps can both succeed
/// (seen as lost increments in the state store's concurrency test). The launcher serialises
/// moto's DynamoDB item operations, making the stand-in as atomic as the service it stands for.
const LAUNCHER: &str = "\
import os, sys, threading
def _watch():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=_watch, daemon=True).start()
from moto.dynamodb.models import DynamoDBBackend
_items = threading.RLock()
def _atomic(operation):
    def run(self, *args, **kwargs):
        with _items:
            return operation(self, *args, **kwargs)
    return run
for _name in ('put_item', 'get_item', 'update_item', 'delete_item', 'transact_write_items'):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))
from moto.server import main
main(sys.argv[1:])
";

/// Errors raised while starting moto.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    /// The Python process could not be started.
    #[error("cannot start moto server: {0}")]
    Spawn(#[source] std::io::Error),
    /// moto exited before reporting its port.
    #[error("moto server exited before listening; its output was:\n{0}")]
    Exited(String),
    /// moto did not report a port in time.
    #[error("moto server did not report its port within {0:?}; its output was:\n{1}")]
    Timeout(Duration, String),
}

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    /// Held open for the watchdog; dropping it stops the server.
    stdin: Option<ChildStdin>,
    port: u16,
}

/// Extracts the port from werkzeug's ` * Running on http://127.0.0.1:PORT` line.
pub fn parse_port(line: &str) -> Option<u16> {
    let (_, after) = line.split_once("Running on http://")?;
    let (_, port) = after.rsplit_once(':')?;
    let digits: String = port.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p 0` from `venv` and waits until it reports its port.
    /// Its stderr keeps being drained on a background thread so the server never blocks.
    pub fn start(venv: &Venv) -> Result<Self, MotoError> {
        let mut child = Command::new(venv.bin("python"))
            .args(["-c", LAUNCHER, "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(MotoError::Spawn)?;
        let stdin = child.stdin.take();
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MotoError::Exited("stderr was not captured".to_owned()));
        };

        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        // After startup nobody listens any more: keep draining regardless.
                        let _ = lines_tx.send(String::from_utf8_lossy(&buf).into_owned());
                    }
                }
            }
        });

        let mut server = MotoServer {
            child,
            stdin,
            port: 0,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut output = String::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(port) = parse_port(&line) {
                        server.port = port;
                        return Ok(server);
                    }
                    output.push_str(&line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(MotoError::Exited(output)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(MotoError::Timeout(STARTUP_TIMEOUT, output));
                }
            }
        }
    }

    /// The endpoint to export as `AWS_ENDPOINT_URL`.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // The process may already have exited through the watchdog: errors are irrelevant here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_port;

    #[test]
    fn parses_werkzeug_banner() {
        assert_eq!(
            parse_port(" * Running on http://127.0.0.1:44467\n"),
            Some(44467)
        );
        assert_eq!(
            parse_port("\u{1b}[33m * Running on http://127.0.0.1:5000\u{1b}[0m"),
            Some(5000)
        );
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(parse_port("WARNING: This is a development server."), None);
        assert_eq!(parse_port("Press CTRL+C to quit"), None);
        assert_eq!(parse_port(" * Running on http://127.0.0.1:0"), None);
    }
}
