//! A real S3-protocol server for the `s3` blob backend's tests: moto's `moto_server`
//! (PyPI `moto[server]`, installed in `target/s3-venv` by `scripts/setup-test-peers.sh`).

use std::{io::Write, path::PathBuf, sync::Once, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

use crate::mcp_peer::{free_port, quiet};

/// `moto_server`: `MOTO_SERVER`, else `target/s3-venv/bin/moto_server`. `None`, with a
/// notice, when there is none; a failure instead when `S3_TESTS=required` (as in CI).
pub fn moto_server() -> Option<PathBuf> {
    let path = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/s3-venv/bin/moto_server")
        });
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "no moto_server at {}; run scripts/setup-test-peers.sh",
        path.display()
    );
    assert!(
        std::env::var("S3_TESTS").as_deref() != Ok("required"),
        "{message}"
    );
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "NOTE: S3 tests skipped: {message}");
    });
    None
}

/// A running S3-protocol server on a free loopback port; stopped when dropped.
pub struct S3Peer {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    port: u16,
    _child: Child,
}

impl S3Peer {
    pub async fn start(moto_server: &std::path::Path) -> S3Peer {
        let port = free_port();
        let mut command = Command::new(moto_server);
        command
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .kill_on_drop(true);
        let child = quiet(&mut command).spawn().expect("moto_server starts");
        for _ in 0..600 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return S3Peer {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    port,
                    _child: child,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not listen on {port} within 30 s");
    }

    /// Sends one plain HTTP/1.1 request (moto does not check signatures) and returns the
    /// status and body.
    pub async fn request(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("moto_server accepts");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8_lossy(&response).to_string();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}")).await;
        assert_eq!(status, 200, "moto created the bucket: {body}");
    }

    /// The keys of a bucket's objects (a ListObjectsV2 body).
    pub async fn keys(&self, bucket: &str) -> String {
        let (status, body) = self.request("GET", &format!("/{bucket}?list-type=2")).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}
