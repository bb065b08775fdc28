//! The HTTP accept loop: a cap on open connections, header and body read timeouts, and
//! a graceful stop.
//!
//! Invariants:
//! - At most `http.max_connections` connections are served at once; one more is answered
//!   `503 {"code": "overloaded"}` with `Retry-After` and closed, without reading it, so a
//!   flood of idle clients never starves `/health` or the process of file descriptors.
//! - A client has `http.header_read_timeout_secs` to send a request's head (also between
//!   requests on a kept-alive connection) and `http.body_read_timeout_secs` between two
//!   pieces of its body; a response being streamed (server-sent events) has no limit.
//! - An accept error (out of file descriptors) is logged (a run of them once every ten
//!   seconds) and the loop keeps accepting.
//! - On shutdown the listener closes at once; open connections finish the request they are
//!   in and close (the caller bounds how long that may take).

use std::{convert::Infallible, io, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

/// How many refusals may be written at once; past that, connections are closed unanswered.
const MAX_REFUSING: usize = 256;

/// The limits of the accept loop, from the `http` settings.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// returns once every open connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    // Connections watch `stop_tx` close (graceful shutdown); the loop waits for every
    // `done_rx` clone to drop (all connections closed).
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut failing = AcceptFailures::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    failing.recovered();
                    accepted
                }
                Err(err) => {
                    failing.failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Streams write small events: without TCP_NODELAY, Nagle's algorithm and delayed
        // ACKs hold the first ones back for 40 ms.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let router = router.clone();
        let stopping = stop_tx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            connection(stream, peer, router, limits, stopping).await;
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(done_rx);
    done_tx.closed().await;
}

/// Serves one connection until it closes, or until shutdown lets it finish its request.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    stopping: watch::Sender<()>,
) {
    let body_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut conn = pin!(
        builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
    );
    let mut stop = pin!(stopping.closed());
    let mut stopped = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::trace!(%peer, error = %err, "a connection ended with an error");
                }
                break;
            }
            () = &mut stop, if !stopped => {
                stopped = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"code":"overloaded","message":"the server has as many connections open as it serves; retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the connection before it
        // read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Accept errors in a run: the first is logged at once, then at most one line every
/// [`ACCEPT_LOG_EVERY`] with how many there were since, so a process out of file
/// descriptors does not fill its log.
#[derive(Default)]
struct AcceptFailures {
    /// Errors since the last line logged.
    unlogged: u64,
    /// When the last line was logged, while errors go on.
    logged_at: Option<std::time::Instant>,
}

/// How often a run of accept errors is logged.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptFailures {
    /// Logs an accept error (as said above); when the process is out of file descriptors,
    /// waits a moment for some to close instead of spinning.
    async fn failed(&mut self, err: io::Error) {
        if matches!(
            err.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        match self.logged_at {
            Some(at) if at.elapsed() < ACCEPT_LOG_EVERY => self.unlogged += 1,
            Some(_) => {
                tracing::error!(error = %err, more = self.unlogged, "still cannot accept connections; accepting again shortly");
                self.unlogged = 0;
                self.logged_at = Some(std::time::Instant::now());
            }
            None => {
                tracing::error!(error = %err, "could not accept a connection; accepting again shortly");
                self.logged_at = Some(std::time::Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// A connection was accepted: once the last line is old enough, the run of errors
    /// is over and what was not logged of it is said (accepts that fail and succeed by
    /// turns, as descriptors free up, stay one run).
    fn recovered(&mut self) {
        if self
            .logged_at
            .is_some_and(|at| at.elapsed() >= ACCEPT_LOG_EVERY)
        {
            if self.unlogged > 0 {
                tracing::warn!(
                    more = self.unlogged,
                    "accepting connections again after more accept errors"
                );
            }
            self.unlogged = 0;
            self.logged_at = None;
        }
    }
}

/// Raises this process's open-file limit to its hard limit (streams and database files
/// each take one); returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill in.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit; the call only reads it.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
                return Err(io::Error::last_os_error());
            }
            limit = raised;
        }
        Ok(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    Ok(u64::MAX)
}
