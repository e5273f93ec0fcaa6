//! A worker process: this binary re-executed with a hidden subcommand, spoken to in JSON lines
//! (one init line on its stdin, then a command line for each answer line on its stdout).

use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts `roster-bench SUBCOMMAND` and writes `init` as its first line.
    pub async fn spawn<T: Serialize>(subcommand: &str, init: &T) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new(&exe)
            .arg(subcommand)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("stdin")?;
        let stdout = child.stdout.take().ok_or("stdout")?;
        let mut w = Worker { child, stdin, lines: BufReader::new(stdout).lines() };
        w.send(init).await?;
        Ok(w)
    }

    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), String> {
        let mut s = serde_json::to_string(msg).map_err(|e| e.to_string())?;
        s.push('\n');
        self.stdin.write_all(s.as_bytes()).await.map_err(|e| format!("worker stdin: {e}"))
    }

    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let line = self.lines.next_line().await.map_err(|e| e.to_string())?.ok_or("worker exited")?;
        serde_json::from_str(&line).map_err(|e| format!("worker said {line:.200}: {e}"))
    }

    /// Sends `exit` (the worker's last command), closes its stdin and waits for it (30 s at most).
    pub async fn exit<T: Serialize>(mut self, exit: &T) {
        let _ = self.send(exit).await;
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }
}
