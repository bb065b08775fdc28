//! MCP test peers, installed by `scripts/setup-test-peers.sh`: the reference Python SDK
//! serving `peers/mcp_server.py`, and npm's `@modelcontextprotocol/server-everything`, each
//! over stdio, SSE or streamable HTTP.

use std::{io::Write, path::PathBuf, sync::Once, time::Duration};

use tokio::process::{Child, Command};

/// The Python with the `mcp` package: `MCP_PYTHON`, else `target/mcp-venv/bin/python`.
/// `None`, with a notice, when there is none; a failure instead when `MCP_TESTS=required`.
pub fn mcp_python() -> Option<PathBuf> {
    let python = std::env::var_os("MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-venv/bin/python")
        });
    if python.is_file() {
        return Some(python);
    }
    missing(format!(
        "no Python with the MCP SDK at {}; run scripts/setup-test-peers.sh",
        python.display()
    ))
}

/// A peer is missing: a failure when `MCP_TESTS=required`, else `None` and a notice (once).
fn missing<T>(message: String) -> Option<T> {
    assert!(
        std::env::var("MCP_TESTS").as_deref() != Ok("required"),
        "{message}"
    );
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "NOTE: MCP tests skipped: {message}");
    });
    None
}

/// npm's everything server (`dist/index.js`, run with `node`), like [`mcp_python`].
pub fn everything_server() -> Option<PathBuf> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../../target/npm-peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    );
    if script.is_file() {
        return Some(script);
    }
    missing(format!(
        "npm's MCP everything server is not at {}; run scripts/setup-test-peers.sh",
        script.display()
    ))
}

/// The peer's script.
pub fn mcp_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/mcp_server.py")
}

/// A running HTTP peer; stopped when dropped.
pub struct McpPeer {
    pub url: String,
    child: Child,
}

impl McpPeer {
    /// Serves the peer over `sse` or `streamable-http` on a free loopback port; with
    /// `token`, requests need `Authorization: Bearer <token>`.
    pub async fn start(python: &std::path::Path, transport: &str, token: Option<&str>) -> McpPeer {
        McpPeer::start_with(python, transport, token, None).await
    }

    /// [`McpPeer::start`], naming `issuer` as its OAuth authorization server.
    pub async fn start_with(
        python: &std::path::Path,
        transport: &str,
        token: Option<&str>,
        issuer: Option<&str>,
    ) -> McpPeer {
        let port = free_port();
        let mut command = Command::new(python);
        command
            .arg(mcp_script())
            .arg(transport)
            .arg(port.to_string())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("MCP_TEST_TOKEN", token);
        }
        if let Some(issuer) = issuer {
            command.env("MCP_TEST_AS", issuer);
        }
        let child = quiet(&mut command).spawn().expect("the MCP peer starts");
        let path = if transport == "sse" { "sse" } else { "mcp" };
        McpPeer::ready(child, port, path).await
    }

    /// Serves npm's everything server over `sse` or `streamableHttp`.
    pub async fn start_everything(script: &std::path::Path, transport: &str) -> McpPeer {
        let port = free_port();
        let mut command = Command::new("node");
        command
            .arg(script)
            .arg(transport)
            .env("PORT", port.to_string())
            .kill_on_drop(true);
        let child = quiet(&mut command)
            .spawn()
            .expect("node starts the everything server");
        let path = if transport == "sse" { "sse" } else { "mcp" };
        McpPeer::ready(child, port, path).await
    }

    /// Waits until the peer listens.
    async fn ready(child: Child, port: u16, path: &str) -> McpPeer {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return McpPeer {
                    url: format!("http://127.0.0.1:{port}/{path}"),
                    child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the MCP peer did not listen on {port} within 15 s");
    }

    /// Stops the server at once, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The peer's own output stays out of the test's, unless `TEST_LOG` is set.
pub(crate) fn quiet(command: &mut Command) -> &mut Command {
    if std::env::var_os("TEST_LOG").is_none() {
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    command
}
