//! The stdio transport: a child process speaking newline-delimited JSON-RPC on its
//! standard input and output; its standard error goes to our debug log.

use std::{process::Stdio as Piped, sync::Arc};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::Mutex,
};

use crate::{McpError, ServerConfig, rpc::Pending};

/// The variables a child keeps from our environment; everything else (our database URL,
/// keys) is withheld, and the server's own `env` is added.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];

pub(crate) struct Stdio {
    stdin: Arc<Mutex<ChildStdin>>,
    pub(crate) pending: Arc<Pending>,
    child: Mutex<Child>,
}

impl Stdio {
    pub(crate) async fn spawn(config: &ServerConfig) -> Result<Stdio, McpError> {
        let command = config
            .command
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| McpError::Config("a stdio server needs a command".into()))?;
        let mut builder = Command::new(command);
        builder
            .args(&config.args)
            .env_clear()
            .stdin(Piped::piped())
            .stdout(Piped::piped())
            .stderr(Piped::piped())
            .kill_on_drop(true);
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                builder.env(name, value);
            }
        }
        builder.envs(&config.env);
        let mut child = builder
            .spawn()
            .map_err(|err| McpError::Connection(format!("could not start `{command}`: {err}")))?;
        let stdin = Arc::new(Mutex::new(child.stdin.take().expect("stdin is piped")));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let pending = Arc::new(Pending::default());
        let label = config.label.clone();
        tokio::spawn({
            let label = label.clone();
            async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(server = %label, "{}", line.chars().take(2000).collect::<String>());
                }
            }
        });
        tokio::spawn({
            let (pending, stdin) = (pending.clone(), stdin.clone());
            async move {
                let mut lines = BufReader::new(stdout).lines();
                loop {
                    match lines.next_line().await {
                        Ok(Some(line)) if line.trim().is_empty() => {}
                        Ok(Some(line)) => match serde_json::from_str::<Value>(&line) {
                            Ok(message) => {
                                // A request of the server's (a ping): answered at once.
                                if let Some(reply) = pending.deliver(message) {
                                    let _ = write_line(&stdin, &reply).await;
                                }
                            }
                            Err(_) => {
                                tracing::debug!(server = %label, "ignored a line that is not JSON")
                            }
                        },
                        Ok(None) => {
                            pending.close("the server process ended");
                            break;
                        }
                        Err(err) => {
                            pending
                                .close(&format!("could not read from the server process: {err}"));
                            break;
                        }
                    }
                }
            }
        });
        Ok(Stdio {
            stdin,
            pending,
            child: Mutex::new(child),
        })
    }

    pub(crate) async fn send(&self, message: &Value) -> Result<(), McpError> {
        write_line(&self.stdin, message).await.map_err(|err| {
            self.pending.close("the server process ended");
            McpError::Closed(format!("could not write to the server process: {err}"))
        })
    }

    pub(crate) async fn close(&self) {
        self.pending.close("the connection was closed");
        let _ = self.child.lock().await.start_kill();
    }
}

async fn write_line(stdin: &Mutex<ChildStdin>, message: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).expect("JSON serialises");
    line.push(b'\n');
    let mut stdin = stdin.lock().await;
    stdin.write_all(&line).await?;
    stdin.flush().await
}
