//! Test fixtures: a fresh database per test on SQLite or PostgreSQL, and a `TestApp` that
//! drives the real router without a socket.
//!
//! PostgreSQL runs when `TEST_DATABASE_URL` points at a server whose user may create
//! databases; each test gets its own database, dropped afterwards. Without it the
//! PostgreSQL variants of [`backend_tests!`] report that they were skipped.

pub mod fake_llm;
pub mod mcp_peer;
pub mod s3_peer;
pub mod steps;

use std::{io::Write, net::SocketAddr, path::PathBuf, sync::Once};

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use server::{app::App, config::Config};
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tower::ServiceExt;

/// Which database a test runs against.
#[derive(Debug, Clone)]
pub enum TestBackend {
    Sqlite,
    /// The server URL from `TEST_DATABASE_URL`.
    Postgres(String),
}

impl TestBackend {
    /// The PostgreSQL backend when `TEST_DATABASE_URL` is set; otherwise says it is skipped.
    pub fn postgres() -> Option<TestBackend> {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(TestBackend::Postgres(url)),
            _ => {
                static NOTICE: Once = Once::new();
                NOTICE.call_once(|| {
                    // Written to the real stderr, past the test harness's capture.
                    let _ = writeln!(
                        std::io::stderr(),
                        "NOTE: PostgreSQL tests skipped: TEST_DATABASE_URL is not set"
                    );
                });
                None
            }
        }
    }
}

/// A database made for one test and removed when dropped.
pub struct TestDb {
    pub url: String,
    /// Set for PostgreSQL: (server URL, database name) to drop afterwards.
    drop_pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: &TestBackend, dir: &TempDir) -> TestDb {
        match backend {
            TestBackend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("test.db").display()),
                drop_pg: None,
            },
            TestBackend::Postgres(server_url) => {
                let name = format!(
                    "sy_test_{}_{}",
                    std::process::id(),
                    dir.path()
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("x")
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .collect::<String>()
                        .to_lowercase()
                );
                let mut conn = PgConnection::connect(server_url)
                    .await
                    .expect("TEST_DATABASE_URL must reach a PostgreSQL server");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut conn)
                    .await
                    .expect("the test user must be allowed to create databases");
                let _ = conn.close().await;
                TestDb {
                    url: replace_database(server_url, &name),
                    drop_pg: Some((server_url.clone(), name)),
                }
            }
        }
    }
}

/// Swaps the database name of a PostgreSQL URL, keeping any query string.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server_url, name)) = self.drop_pg.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee, so use a private one on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&server_url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A fully wired application on a fresh database, driven through `tower::oneshot`.
pub struct TestApp {
    pub app: App,
    pub router: axum::Router,
    pub config: Config,
    pub db: TestDb,
    pub dir: TempDir,
    pub backend: TestBackend,
    /// The knowledge job workers (stopped when the app is dropped).
    pub workers: Option<server::app::Workers>,
}

/// A response with its body parsed as JSON (or `Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// The local embedding model the tests use (`scripts/fetch-local-model.sh target/test-models`).
pub const LOCAL_MODEL: &str = "all-MiniLM-L6-v2";

/// The folder holding [`LOCAL_MODEL`]: `SWITCHYARD_TEST_MODELS`, else `target/test-models`.
/// `None`, with a notice, when the model is missing; a failure instead when
/// `LOCAL_MODEL_TESTS=required` (as in CI).
pub fn local_models_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SWITCHYARD_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models")
        });
    let model = dir.join(LOCAL_MODEL);
    if ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| model.join(f).is_file())
    {
        return Some(dir);
    }
    let message = format!(
        "the local model is missing from {}; run scripts/fetch-local-model.sh target/test-models",
        dir.display()
    );
    assert!(
        std::env::var("LOCAL_MODEL_TESTS").as_deref() != Ok("required"),
        "{message}"
    );
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: local model tests skipped: {message}"
        );
    });
    None
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";

impl TestApp {
    /// A fresh application with the default configuration and a bootstrapped administrator.
    pub async fn new(backend: TestBackend) -> TestApp {
        TestApp::with_config(backend, |_| {}).await
    }

    /// Like [`TestApp::new`], after `adjust` has changed the configuration.
    pub async fn with_config(backend: TestBackend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        // `TEST_LOG=debug cargo test … -- --nocapture` shows the server's log.
        static LOG: Once = Once::new();
        LOG.call_once(|| {
            if let Ok(filter) = std::env::var("TEST_LOG") {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(filter)
                    .with_test_writer()
                    .try_init();
            }
        });
        let dir = tempfile::Builder::new()
            .prefix("sy")
            .tempdir()
            .expect("a temporary directory");
        let db = TestDb::new(&backend, &dir).await;
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.database.url = Some(domain::secret::Secret::new(db.url.clone()));
        config.database.max_connections = 4;
        config.auth.admin_email = Some(ADMIN_EMAIL.into());
        config.auth.admin_password = Some(domain::secret::Secret::new(ADMIN_PASSWORD));
        adjust(&mut config);
        let app = App::build(config.clone()).await.expect("the app builds");
        app.bootstrap().await.expect("bootstrap succeeds");
        let router = app.router();
        let workers = app.start_workers();
        TestApp {
            workers: Some(workers),
            app,
            router,
            config,
            db,
            dir,
            backend,
        }
    }

    /// Builds the application again on the same database and data directory, as a restart would.
    pub async fn restart(&self) -> App {
        App::build(self.config.clone())
            .await
            .expect("the app rebuilds")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Sends a request through the router. `body` is sent as JSON when given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(value) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).expect("a valid request"))
            .await
    }

    /// Sends a prepared request, from 127.0.0.1 unless it already names a peer.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        send_to(&self.router, request).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> TestResponse {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.request(Method::DELETE, path, token, None).await
    }

    /// Logs in and returns the access token; panics on failure.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "login failed: {}",
            response.text
        );
        response.body["access_token"]
            .as_str()
            .expect("an access token")
            .to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user through the API as the administrator; returns (id, token).
    pub async fn create_user(&self, email: &str, password: &str, is_admin: bool) -> (i64, String) {
        let admin = self.admin_token().await;
        let response = self
            .post(
                "/api/users",
                Some(&admin),
                json!({"email": email, "password": password, "is_admin": is_admin}),
            )
            .await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        let id = response.body["id"].as_i64().expect("an id");
        (id, self.login(email, password).await)
    }
}

/// Sends a request through any router (another instance of the app, say), from 127.0.0.1
/// unless it already names a peer.
pub async fn send_to(router: &axum::Router, mut request: Request<Body>) -> TestResponse {
    if request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_none()
    {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    }
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the body is readable")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    TestResponse {
        status,
        headers,
        body,
        text,
    }
}

/// Declares each listed `async fn name(backend: TestBackend)` as two tests:
/// `sqlite::name` and `postgres::name` (skipped, with a notice, without `TEST_DATABASE_URL`).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestBackend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::TestBackend::postgres() {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped() {
        assert_eq!(
            replace_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
    }
}

#[cfg(test)]
mod tidy {
    use std::path::Path;

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "target") {
                    continue;
                }
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Run event kinds are named in one place, `domain::runs::event`: elsewhere they are
    /// `EventKind` values, so no consumer matches them by string (the distinctive, dotted
    /// names are checked: `run.waiting`, `assistant.delta`, …).
    #[test]
    fn event_kinds_are_named_only_by_their_enum() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let enum_file = crates.join("domain/src/runs/event.rs");
        let names: Vec<String> = std::fs::read_to_string(&enum_file)
            .unwrap()
            .lines()
            .filter_map(|line| line.trim().split_once(" = \""))
            .map(|(_, rest)| rest.trim_end_matches("\",").to_string())
            .filter(|name| name.contains('.'))
            .collect();
        assert!(names.len() > 10, "read the kinds: {names:?}");
        let mut files = Vec::new();
        rust_files(crates, &mut files);
        let mut found = Vec::new();
        for path in files
            .iter()
            .filter(|p| **p != enum_file && !p.components().any(|c| c.as_os_str() == "tests"))
        {
            let text = std::fs::read_to_string(path).unwrap();
            for name in &names {
                if text.contains(&format!("\"{name}\"")) {
                    found.push(format!("{}: {name}", path.display()));
                }
            }
        }
        assert!(found.is_empty(), "event kinds named by string: {found:?}");
    }

    /// The ChatKit protocol stays in its adapter: only the `api` crate (and the tests that
    /// speak the protocol) depend on `crates/chatkit`, and in `api` only the ChatKit routes
    /// (`routes/chatkit/`) use it. The conversation core and the store know the
    /// conversation model (`crates/conversation`), not the protocol.
    #[test]
    fn the_chatkit_protocol_is_used_only_by_its_adapter() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut dependents = Vec::new();
        for entry in std::fs::read_dir(crates).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            // The regular dependencies: the sections before `[dev-dependencies]`, after
            // `[package]` (which names the crate itself).
            let regular = text.split("[dev-dependencies]").next().unwrap_or_default();
            let depends = regular
                .split("\n[")
                .skip(1)
                .flat_map(str::lines)
                .any(|line| line.trim_start().starts_with("chatkit"));
            if depends {
                dependents.push(manifest.parent().unwrap().display().to_string());
            }
        }
        let api = crates.join("api").display().to_string();
        assert_eq!(
            dependents,
            [api],
            "crates depending on the ChatKit protocol"
        );
        let mut files = Vec::new();
        rust_files(&crates.join("api/src"), &mut files);
        let adapter = crates.join("api/src/routes/chatkit");
        let found: Vec<_> = files
            .iter()
            .filter(|p| !p.starts_with(&adapter))
            .filter(|p| {
                // The crate `chatkit::…`, not a path ending in a module of that name
                // (`routes::chatkit::router`).
                let text = std::fs::read_to_string(p).unwrap();
                text.match_indices("chatkit::").any(|(at, _)| {
                    !text[..at].ends_with(|c: char| c == ':' || c == '_' || c.is_alphanumeric())
                })
            })
            .collect();
        assert!(
            found.is_empty(),
            "ChatKit types outside the adapter: {found:?}"
        );
    }

    /// Node kinds are known only in their own files (`domain/src/workflows/nodes/`): no
    /// other code compares a node's kind with a kind's name or parses one (graph
    /// documents, such as the starter graph, may name kinds; tests aside).
    #[test]
    fn node_kinds_are_named_only_in_their_files() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let nodes = crates.join("domain/src/workflows/nodes");
        let names: Vec<String> = std::fs::read_dir(&nodes)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|line| {
                        let line = line.trim();
                        // The kinds' `name` and `aliases` bodies.
                        (line.starts_with('"') && line.ends_with('"') && !line.contains(' '))
                            .then(|| line.trim_matches('"').to_string())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(names.len() >= 19, "read the kinds' names: {names:?}");
        let mut files = Vec::new();
        rust_files(crates, &mut files);
        let mut found = Vec::new();
        for path in files
            .iter()
            .filter(|p| !p.starts_with(&nodes) && !p.components().any(|c| c.as_os_str() == "tests"))
        {
            let text = std::fs::read_to_string(path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for name in &names {
                let quoted = format!("\"{name}\"");
                for pattern in [
                    format!("kind: {quoted}.into()"),
                    format!("kind == {quoted}"),
                    format!("kind != {quoted}"),
                    format!("kind.as_str() == {quoted}"),
                    format!("Kind::parse({quoted})"),
                ] {
                    if code.contains(&pattern) {
                        found.push(format!("{}: {pattern}", path.display()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "node kinds named outside their files: {found:?}"
        );
    }

    /// No import circle among the files of `domain::runs`: the engine reaches node kinds
    /// through their registry, and the kinds' files depend on `runs::step`, never on the
    /// engine. A file's code before its tests counts; `mod.rs` (the shared types) does not.
    #[test]
    fn the_files_of_runs_import_each_other_without_a_circle() {
        let runs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("domain/src/runs");
        // A module is a file, or a folder with its `mod.rs` (its files read as one).
        let mut modules: Vec<String> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs") || p.join("mod.rs").exists())
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .filter(|m| m != "mod")
            .collect();
        modules.sort();
        assert!(modules.len() > 10, "read the files: {modules:?}");
        let imports = |module: &str| -> Vec<String> {
            let file = runs.join(format!("{module}.rs"));
            let texts: Vec<String> = if file.exists() {
                vec![std::fs::read_to_string(file).unwrap()]
            } else {
                let mut files = Vec::new();
                rust_files(&runs.join(module), &mut files);
                files
                    .iter()
                    .map(|f| std::fs::read_to_string(f).unwrap())
                    .collect()
            };
            let code: String = texts
                .iter()
                .map(|t| t.split("#[cfg(test)]").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            let code = code.as_str();
            let words: Vec<&str> = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            let mut found: Vec<String> = modules
                .iter()
                .filter(|other| *other != module)
                .filter(|other| {
                    // `super::other`, `runs::other`, or `other` inside `use super::{…}`.
                    code.contains(&format!("super::{other}"))
                        || code.contains(&format!("runs::{other}"))
                        || use_super_lists(code)
                            .iter()
                            .any(|list| list.contains(&other.as_str()))
                })
                .cloned()
                .collect();
            found.retain(|other| words.contains(&other.as_str()));
            found
        };
        let graph: Vec<(String, Vec<String>)> =
            modules.iter().map(|m| (m.clone(), imports(m))).collect();
        // Depth-first search for a path that comes back to where it started.
        fn visit<'a>(
            node: &'a str,
            graph: &'a [(String, Vec<String>)],
            path: &mut Vec<&'a str>,
            done: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| *n == node) {
                let mut circle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                circle.push(node.to_string());
                return Some(circle);
            }
            if done.contains(&node) {
                return None;
            }
            path.push(node);
            let next = graph.iter().find(|(m, _)| m == node).map(|(_, i)| i);
            for import in next.into_iter().flatten() {
                if let Some(circle) = visit(import, graph, path, done) {
                    return Some(circle);
                }
            }
            path.pop();
            done.push(node);
            None
        }
        let mut done = Vec::new();
        for (module, _) in &graph {
            let circle = visit(module, &graph, &mut Vec::new(), &mut done);
            assert!(circle.is_none(), "an import circle in runs: {circle:?}");
        }
    }

    /// The names listed in each `use super::{…}` of a file (nested lists flattened).
    fn use_super_lists(code: &str) -> Vec<Vec<&str>> {
        let mut lists = Vec::new();
        let mut rest = code;
        while let Some(start) = rest.find("use super::{") {
            let after = &rest[start + "use super::{".len()..];
            let end = after.find("};").unwrap_or(after.len());
            lists.push(
                after[..end]
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty())
                    .collect(),
            );
            rest = &after[end..];
        }
        lists
    }

    /// Every Rust file opens with a `//!` line saying what it is for.
    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        rust_files(crates, &mut files);
        assert!(files.len() > 10, "found the sources");
        let missing: Vec<String> = files
            .iter()
            .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "files without a leading `//!` line: {missing:?}"
        );
    }
}
