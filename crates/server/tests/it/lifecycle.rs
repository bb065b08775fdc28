//! Restarts, keys, migrations, and serving on a real socket with graceful shutdown.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use domain::store::Store;
use server::app::App;
use sqlx::Connection;
use test_support::{TestApp, TestBackend, backend_tests, fake_llm};

backend_tests!(
    restart_keeps_tokens_and_data,
    changed_encryption_key_is_refused,
    migrations_are_idempotent_and_guarded,
    concurrent_starts_migrate_once,
    serve_finishes_in_flight_requests,
    serve_bounds_stuck_requests,
    a_killed_server_leaves_no_thread_busy,
);

async fn restart_keeps_tokens_and_data(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let sealed = app.app.services.secret_box.encrypt("sk-provider-key");
    app.app.db.close().await;

    let restarted = app.restart().await;
    let router = restarted.router();
    let again = TestApp { router, ..app };
    let me = again.get("/api/users/me", Some(&token)).await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "a token survives a restart: {}",
        me.text
    );
    assert_eq!(
        restarted.services.secret_box.decrypt(&sealed).unwrap(),
        "sk-provider-key"
    );
    assert_eq!(restarted.services.store.count_users().await.unwrap(), 1);

    // The data folder's files are private to the server's user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut private = vec![again.data_dir().join("secrets.json")];
        if let Some(db) = again.db.url.strip_prefix("sqlite://") {
            private.extend(["", "-wal", "-shm"].map(|s| PathBuf::from(format!("{db}{s}"))));
        }
        for path in private {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }
}

async fn changed_encryption_key_is_refused(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let mut config = app.config.clone();
    config.secrets.encryption_key = Some(domain::secret::Secret::new("11".repeat(32)));
    let err = App::build(config)
        .await
        .err()
        .expect("a different key must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("encryption key does not match"),
        "{message}"
    );
    assert!(
        !message.contains(&"11".repeat(32)),
        "the key is not printed"
    );
}

async fn raw_connection_sql(app: &TestApp, sql: &str) {
    match &app.backend {
        TestBackend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        TestBackend::Postgres(_) => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

async fn migrations_are_idempotent_and_guarded(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let db = &app.app.db;
    assert_eq!(
        db.migrate().await.unwrap(),
        Vec::<i64>::new(),
        "nothing left to apply"
    );
    assert_eq!(db.health().await.migrations_pending, 0);

    raw_connection_sql(
        &app,
        "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1",
    )
    .await;
    let err = db.migrate().await.unwrap_err().to_string();
    assert!(err.contains("was changed after it was applied"), "{err}");
    let err = format!("{:#}", App::build(app.config.clone()).await.err().unwrap());
    assert!(err.contains("was changed after it was applied"), "{err}");

    raw_connection_sql(
        &app,
        "DELETE FROM schema_migrations WHERE version = 1; \
         INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (9999, 'future', 'x', '2030-01-01T00:00:00Z')",
    )
    .await;
    let err = db.migrate().await.unwrap_err().to_string();
    assert!(err.contains("newer Switchyard"), "{err}");
}

async fn concurrent_starts_migrate_once(backend: TestBackend) {
    // Two replicas starting on the same fresh database must both come up.
    let app = TestApp::new(backend.clone()).await;
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = test_support::TestDb::new(&backend, &fresh_dir).await;
    let mut config = app.config.clone();
    config.database.url = Some(domain::secret::Secret::new(fresh.url.clone()));
    let (a, b) = tokio::join!(App::build(config.clone()), App::build(config.clone()));
    let (a, b) = (
        a.expect("first replica starts"),
        b.expect("second replica starts"),
    );
    assert_eq!(a.db.health().await.migrations_pending, 0);
    // Both share one token signing key: a token from one verifies on the other.
    a.bootstrap().await.unwrap();
    let user = a.services.store.list_users().await.unwrap().remove(0);
    let token = a.services.auth.issue_token(&user);
    assert!(b.services.auth.keys().verify(&token).is_ok());
    a.db.close().await;
    b.db.close().await;
}

/// Starts `app` on an ephemeral port; returns its address, the shutdown trigger and the task.
async fn start(
    app: App,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.serve(listener, async move {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

/// Waits (at most 10 s) for a served app's task to end, and checks it ended well.
async fn finished(task: tokio::task::JoinHandle<anyhow::Result<()>>) {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stopped in time")
        .expect("the server's task did not panic")
        .expect("the server stopped without an error");
}

/// Sends the head of a login request whose body is `body_len` bytes, and `sent` of them.
fn partial_login(addr: SocketAddr, body: &str, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /api/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..sent]
    )
    .unwrap();
    stream.flush().unwrap();
    stream
}

async fn serve_finishes_in_flight_requests(backend: TestBackend) {
    let test_app = TestApp::new(backend).await;
    let app = test_app.restart().await;
    let (addr, shutdown, task) = start(app).await;

    let body = format!(
        "{{\"email\": \"{}\", \"password\": \"{}\"}}",
        test_support::ADMIN_EMAIL,
        test_support::ADMIN_PASSWORD
    );
    let mut stream = partial_login(addr, &body, 10);
    // Let the server read the head and start the handler, then begin shutting down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // New connections are refused once shutdown has begun.
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");

    let response = tokio::task::spawn_blocking(move || {
        stream.write_all(&body.as_bytes()[10..]).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    })
    .await
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the in-flight request finished: {response}"
    );
    assert!(response.contains("access_token"));
    finished(task).await;
}

async fn serve_bounds_stuck_requests(backend: TestBackend) {
    let test_app = TestApp::new(backend).await;
    let mut config = test_app.config.clone();
    config.http.shutdown_timeout_secs = 1;
    let app = App::build(config).await.unwrap();
    let db = app.db.clone();
    let (addr, shutdown, task) = start(app).await;
    let _stuck = partial_login(
        addr,
        "{\"email\": \"a@b.c\", \"password\": \"never-sent\"}",
        5,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    shutdown.send(()).unwrap();
    finished(task).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "waited for the grace period: {took:?}"
    );
    assert!(
        db.health().await.error.is_some(),
        "the pool is closed after shutdown"
    );
}

/// Reads what the server sends until it closes the connection (at most 10 s).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Slow and idle clients cannot hold the server: heads and bodies have read timeouts,
/// and connections past the cap are answered 503 `overloaded` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_caps_connections_and_slow_clients() {
    use tokio::io::AsyncWriteExt;
    let test_app = TestApp::new(TestBackend::Sqlite).await;
    let mut config = test_app.config.clone();
    config.http.max_connections = 3;
    config.http.header_read_timeout_secs = 1;
    config.http.body_read_timeout_secs = 1;
    let app = App::build(config).await.unwrap();
    let (addr, shutdown, task) = start(app).await;

    // Half a head: closed once the head's time is up.
    let mut half_head = tokio::net::TcpStream::connect(addr).await.unwrap();
    half_head
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    // Half a body: the request fails once the body stalls.
    let mut half_body = tokio::net::TcpStream::connect(addr).await.unwrap();
    half_body
        .write_all(b"POST /api/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\"")
        .await
        .unwrap();
    // An idle connection takes the last place.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // One more is told to come back, with JSON and Retry-After.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    extra
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let refused = read_until_closed(&mut extra).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    assert!(refused.contains(r#""code":"overloaded""#), "{refused}");

    let started = Instant::now();
    read_until_closed(&mut half_head).await;
    let body_answer = read_until_closed(&mut half_body).await;
    assert!(
        body_answer.is_empty() || body_answer.starts_with("HTTP/1.1 4"),
        "a stalled body gets no success: {body_answer}"
    );
    read_until_closed(&mut idle).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the slow clients were let go"
    );

    // With their places free, the server answers again.
    let mut fresh = tokio::net::TcpStream::connect(addr).await.unwrap();
    fresh
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let healthy = read_until_closed(&mut fresh).await;
    assert!(healthy.starts_with("HTTP/1.1 200"), "{healthy}");
    shutdown.send(()).unwrap();
    finished(task).await;
}

/// A server killed mid-answer (SIGKILL, no goodbye): once its lease runs out, another
/// instance fails the run as `interrupted`, keeps the answer as far as it was streamed,
/// and the thread takes the next message.
async fn a_killed_server_leaves_no_thread_busy(backend: TestBackend) {
    use crate::chatkit::{chatkit, frames, learner, message, serve};
    let app = TestApp::with_config(backend, |config| {
        config.engine.lease_renew_secs = 1;
        config.engine.lease_expiry_secs = 3;
    })
    .await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = crate::runs::fake_default_model(&app, &admin, serde_json::json!({})).await;
    serve(
        &app,
        &admin,
        serde_json::json!({
            "nodes": [{"slug": "start", "kind": "start"}, {"slug": "agent", "kind": "agent"}],
            "edges": [{"source": "start", "target": "agent"}]
        }),
    )
    .await;
    let titles = app
        .patch(
            "/api/admin/settings",
            Some(&admin),
            serde_json::json!({"thread_titles": false}),
        )
        .await;
    assert!(titles.status.is_success(), "{}", titles.text);

    // A second instance, the real binary, on the same database and keys.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHYARD_DATA_DIR", app.data_dir())
        .env("SWITCHYARD_DATABASE_URL", &app.db.url)
        .env("SWITCHYARD_BIND", format!("127.0.0.1:{port}"))
        .env("SWITCHYARD_ENGINE__LEASE_RENEW_SECS", "1")
        .env("SWITCHYARD_ENGINE__LEASE_EXPIRY_SECS", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The answer streams a few words, then the model stalls; the server is killed.
    fake.push(fake_llm::Reply::Stall {
        text: "The partial answer is still here".into(),
        chunks: 4,
    });
    let body =
        serde_json::json!({"type": "threads.create", "params": {"input": message("Tell me")}})
            .to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /api/chatkit HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while seen.matches("text_delta\"").count() < 4 {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let thread_id = seen
        .split("\"thread\":{\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the thread's id")
        .to_string();
    // Long enough for a heartbeat to carry the streamed text.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    drop(stream);

    // This instance takes over once the lease ran out.
    fake.push(fake_llm::Reply::Text("Here I am again.".into()));
    let killed = Instant::now();
    let next = loop {
        let next = chatkit(
            &app,
            &token,
            serde_json::json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("Are you there?")}}),
        )
        .await;
        if next.status == StatusCode::OK {
            break next;
        }
        assert_eq!(next.body["code"], "thread_busy", "{}", next.text);
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "the thread is usable again once the lease ran out"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let events = frames(&next.text);
    assert!(
        events.iter().any(|e| e["type"] == "thread.item.done"
            && e["item"]["content"][0]["text"] == "Here I am again."),
        "{}",
        next.text
    );
    let items = chatkit(
        &app,
        &token,
        serde_json::json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 20, "order": "asc"}}),
    )
    .await;
    let texts: Vec<String> = items.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "assistant_message")
        .map(|i| {
            i["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        ["The partial answ", "Here I am again."],
        "{}",
        items.text
    );
    // The model heard that the first answer was cut short.
    let last = fake.requests().last().unwrap().body.to_string();
    assert!(last.contains("cut short"), "{last}");
    let runs = app
        .get(&format!("/api/runs?thread_id={thread_id}"), Some(&admin))
        .await;
    let interrupted = runs
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "failed")
        .unwrap_or_else(|| panic!("{}", runs.text));
    assert_eq!(interrupted["error"]["code"], "interrupted");
}
