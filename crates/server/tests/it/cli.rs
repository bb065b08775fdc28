//! The `switchyard` binary itself: config errors, `config print`, user commands, and a real
//! start on an empty data directory with SIGTERM shutdown.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A command with a clean environment: no `SWITCHYARD_*` or `DATABASE_URL` from outside.
fn switchyard(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// Creates the administrator `ops@example.com` with `users create`.
fn create_operator(dir: &Path) {
    let created = run(
        switchyard(dir).args([
            "users",
            "create",
            "--email",
            "ops@example.com",
            "--admin",
            "--password-stdin",
        ]),
        Some("ops-password-1\n"),
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn invalid_settings_stop_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("SWITCHYARD_BIND", "nowhere", "`bind`"),
        ("SWITCHYARD_DATABASE_URL", "mysql://db", "`database.url`"),
        (
            "SWITCHYARD_AUTH__ACCESS_TOKEN_TTL_MINUTES",
            "-5",
            "auth.access_token_ttl_minutes",
        ),
    ];
    for (name, value, expected) in cases {
        let output = run(switchyard(dir.path()).env(name, value), None);
        assert_eq!(output.status.code(), Some(1), "{name}");
        let stderr = text(&output.stderr);
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = run(
        switchyard(dir.path()).args(["--config", "absent.toml", "config", "print"]),
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("absent.toml"));
    assert!(
        !dir.path().join("data").exists(),
        "a failed start creates nothing"
    );
}

#[test]
fn config_print_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        switchyard(dir.path())
            .env(
                "SWITCHYARD_JWT_SECRET",
                "jwt-secret-jwt-secret-jwt-secret-jwt",
            )
            .env("SWITCHYARD_ADMIN_EMAIL", "root@example.com")
            .env("SWITCHYARD_ADMIN_PASSWORD", "root-password-x")
            .env("SWITCHYARD_ENCRYPTION_KEY", "ab".repeat(32))
            .args(["config", "print"]),
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for secret in ["jwt-secret-jwt", "root-password-x", &"ab".repeat(32)] {
        assert!(!stdout.contains(secret), "{secret} leaked");
    }
    assert!(stdout.contains("[redacted]"));
    assert!(stdout.contains("sqlite://./data/switchyard.db"), "{stdout}");
}

#[test]
fn users_commands_create_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        switchyard(dir.path()).args([
            "users",
            "create",
            "--email",
            "Ops@Example.com",
            "--admin",
            "--password-stdin",
        ]),
        Some("ops-password-1\n"),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("created administrator ops@example.com"),
        "{}",
        text(&output.stdout)
    );

    let again = run(
        switchyard(dir.path()).args([
            "users",
            "create",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ]),
        Some("ops-password-1\n"),
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let weak = run(
        switchyard(dir.path()).args([
            "users",
            "set-password",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ]),
        Some("short\n"),
    );
    assert_eq!(weak.status.code(), Some(1));
    assert!(
        text(&weak.stderr).contains("at least 8"),
        "{}",
        text(&weak.stderr)
    );

    let reset = run(
        switchyard(dir.path()).args([
            "users",
            "set-password",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ]),
        Some("ops-password-2\n"),
    );
    assert!(reset.status.success(), "{}", text(&reset.stderr));

    let missing = run(
        switchyard(dir.path()).args([
            "users",
            "set-password",
            "--email",
            "ghost@example.com",
            "--password-stdin",
        ]),
        Some("whatever-pass\n"),
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no user has the email"));

    let migrate = run(switchyard(dir.path()).arg("migrate"), None);
    assert!(migrate.status.success());
    assert!(
        text(&migrate.stdout).contains("applied 0 migration(s)"),
        "{}",
        text(&migrate.stdout)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 30 s) until a server answers `/health` at `addr`.
fn wait_until_up(addr: SocketAddr) {
    let started = Instant::now();
    while http(addr, "GET", "/health", None).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal HTTP/1.1 exchange; returns (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn serve_starts_on_an_empty_data_dir_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = switchyard(dir.path())
        .env("SWITCHYARD_ADMIN_EMAIL", "boot@example.com")
        .env("SWITCHYARD_ADMIN_PASSWORD", "boot-password")
        .env("SWITCHYARD_LOG_FORMAT", "json")
        .args([
            "serve",
            "--bind",
            &addr.to_string(),
            "--data-dir",
            "fresh/data",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = Instant::now();
    let health = loop {
        match http(addr, "GET", "/health", None) {
            Ok(response) => break response,
            Err(_) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(err) => {
                let _ = child.kill();
                panic!("the server did not come up: {err}");
            }
        }
    };
    assert_eq!(health.0, 200);
    let (status, body) = http(
        addr,
        "POST",
        "/api/auth/login",
        Some(r#"{"email": "boot@example.com", "password": "boot-password"}"#),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(addr, "GET", "/docs/", None).unwrap();
    assert_eq!(status, 200);

    let data = dir.path().join("fresh/data");
    assert!(data.join("switchyard.db").is_file());
    assert!(data.join("secrets.json").is_file());

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "clean exit on SIGTERM: {:?}",
        output.status
    );
    let logs = text(&output.stdout) + &text(&output.stderr);
    assert!(logs.contains("\"stopped\""), "{logs}");
    assert!(
        !logs.contains("boot-password"),
        "the password is never logged"
    );
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "JSON log line: {line}"
        );
    }
}

#[test]
fn serve_without_users_says_how_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = switchyard(dir.path())
        .args(["--bind", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_up(addr);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let logs = text(&output.stdout) + &text(&output.stderr);
    assert!(logs.contains("switchyard users create --email"), "{logs}");
    assert!(logs.contains("SWITCHYARD_ADMIN_EMAIL"), "{logs}");
}

#[test]
fn run_command_prints_a_transcript_and_asks_when_waiting() {
    let dir = tempfile::tempdir().unwrap();
    create_operator(dir.path());
    let graph = serde_json::json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "What is your name?"}},
            {"slug": "remember", "kind": "state", "parameters": {"state": [{"target": "state.name", "expression": "input.user_message"}]}},
            {"slug": "check", "kind": "user_approval", "parameters": {"message": "Greet {{ state.name }}?"}},
            {"slug": "hello", "kind": "end", "parameters": {"message": "Hello {{ state.name }}!"}},
            {"slug": "bye", "kind": "end", "parameters": {"message": "Bye."}}
        ],
        "edges": [
            {"source": "start", "target": "ask"}, {"source": "ask", "target": "remember"}, {"source": "remember", "target": "check"},
            {"source": "check", "target": "hello", "condition": "approve"}, {"source": "check", "target": "bye", "condition": "reject"}
        ]
    });
    std::fs::write(dir.path().join("graph.json"), graph.to_string()).unwrap();

    let transcript = run(
        switchyard(dir.path()).args(["run", "graph.json", "--input", "hi"]),
        Some("Ada\ny\n"),
    );
    let stdout = text(&transcript.stdout);
    assert!(
        transcript.status.success(),
        "{stdout}\n{}",
        text(&transcript.stderr)
    );
    for line in [
        "assistant> What is your name?",
        "you> Ada",
        "Greet Ada? [y/n]",
        "assistant> Hello Ada!",
        "completed: \"Hello Ada!\"",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }
    // The typed message shows once, and no prompt runs into another.
    assert_eq!(stdout.matches("you> Ada").count(), 1, "{stdout}");
    assert!(!stdout.contains("you> you>"), "{stdout}");

    // Words answer an approval; anything else is asked again.
    let worded = run(
        switchyard(dir.path()).args(["run", "graph.json", "--input", "hi"]),
        Some("Grace\nmaybe\napprove\n"),
    );
    let stdout = text(&worded.stdout);
    assert!(
        worded.status.success(),
        "{stdout}\n{}",
        text(&worded.stderr)
    );
    assert!(
        stdout.contains("answer approve (y) or reject (n)") && stdout.contains("Hello Grace!"),
        "{stdout}"
    );

    // A widget's prompt lists its actions, takes a bare one and asks again for one it
    // does not offer; a disabled node shows as skipped.
    let shop = serde_json::json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "later", "kind": "transform", "is_enabled": false, "parameters": {"expressions": {"x": "1"}}},
            {"slug": "pick", "kind": "widget", "parameters": {"widget": {"source": "inline", "definition": {"type": "Card", "children": [
                {"type": "Button", "label": "Large", "onClickAction": {"type": "size.large", "payload": {"size": "L"}}},
                {"type": "Button", "label": "Small", "onClickAction": {"type": "size.small", "payload": {"size": "S"}}}
            ]}}}},
            {"slug": "end", "kind": "end", "parameters": {"message": "Picked {{ input.action.type }}."}}
        ],
        "edges": [
            {"source": "start", "target": "later"}, {"source": "later", "target": "pick"}, {"source": "pick", "target": "end"}
        ]
    });
    std::fs::write(dir.path().join("shop.json"), shop.to_string()).unwrap();
    let shopped = run(
        switchyard(dir.path()).args(["run", "shop.json"]),
        Some("size.huge\nsize.small\n"),
    );
    let stdout = text(&shopped.stdout);
    assert!(
        shopped.status.success(),
        "{stdout}\n{}",
        text(&shopped.stderr)
    );
    for line in [
        "[later] transform skipped (disabled)",
        "action [size.large / size.small]>",
        "the widget offers size.large, size.small",
        "completed: \"Picked size.small.\"",
    ] {
        assert!(stdout.contains(line), "{line:?} in:\n{stdout}");
    }

    let json_lines = run(
        switchyard(dir.path()).args(["run", "graph.json", "--json"]),
        Some("Bob\nn\n"),
    );
    assert!(json_lines.status.success(), "{}", text(&json_lines.stderr));
    let events: Vec<serde_json::Value> = text(&json_lines.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.last().unwrap()["type"], "run.completed");
    assert_eq!(events.last().unwrap()["data"]["output"], "Bye.");

    let unanswered = run(switchyard(dir.path()).args(["run", "graph.json"]), Some(""));
    assert_eq!(unanswered.status.code(), Some(1));
    assert!(
        text(&unanswered.stderr).contains("waiting"),
        "{}",
        text(&unanswered.stderr)
    );

    std::fs::write(
        dir.path().join("broken.json"),
        r#"{"nodes": [{"slug": "end", "kind": "end"}], "edges": []}"#,
    )
    .unwrap();
    let broken = run(switchyard(dir.path()).args(["run", "broken.json"]), None);
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("missing_start"),
        "{}",
        text(&broken.stderr)
    );
}

/// Out of file descriptors (a hard limit the server cannot raise, and more clients than it
/// allows), the server keeps accepting: once the clients leave, it answers again.
#[test]
fn serve_survives_running_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new("bash")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHYARD_DATABASE__MAX_CONNECTIONS", "2")
        .args([
            "-c",
            "ulimit -n 64 && exec \"$0\" serve --bind \"$1\" --data-dir data",
            BIN,
            &addr.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_up(addr);
    // More idle clients than the server has descriptors for.
    let crowd: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(crowd.len() > 64, "the backlog took them: {}", crowd.len());
    std::thread::sleep(Duration::from_millis(1500));
    drop(crowd);
    let again = Instant::now();
    let health = loop {
        match http(addr, "GET", "/health", None) {
            Ok(response) if response.0 == 200 => break response,
            _ if again.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => {
                let _ = child.kill();
                panic!("the server stopped answering: {other:?}");
            }
        }
    };
    assert_eq!(health.0, 200);
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let output = child.wait_with_output().unwrap();
    let log = text(&output.stderr);
    assert!(
        log.contains("could not accept a connection"),
        "it ran out of descriptors and said so: {log}"
    );
    assert!(
        log.contains("open-file limit"),
        "it warned that the limit is low: {log}"
    );
    // 1.5 s of failing accepts every 100 ms is one line, not fifteen.
    assert_eq!(
        log.matches("could not accept a connection").count(),
        1,
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// The newcomer's models: with `OPENAI_API_KEY` set, the provider's models fill the
/// registry; `models add` and `models list` manage it; an agent naming a model the
/// registry does not know runs on the default provider (listed as seen), unless the
/// registry is strict, where the error says what to do.
#[test]
fn models_commands_and_the_open_registry() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(test_support::fake_llm::FakeLlm::start());
    let dir = tempfile::tempdir().unwrap();
    let with_env = |command: &mut Command| {
        command
            .env("OPENAI_API_KEY", "sk-test-models")
            .env("OPENAI_BASE_URL", &fake.base_url);
    };
    create_operator(dir.path());

    let mut import = switchyard(dir.path());
    with_env(&mut import);
    let imported = run(import.args(["models", "import"]), None);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(
        text(&imported.stdout).contains("model(s) from OpenAI-compatible (from environment)"),
        "{}",
        text(&imported.stdout)
    );

    let mut add = switchyard(dir.path());
    with_env(&mut add);
    let added = run(
        add.args([
            "models",
            "add",
            "house-model",
            "--default",
            "--price-input",
            "1.5",
            "--price-output",
            "6",
        ]),
        None,
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(text(&added.stdout).contains("the default model"));

    let graph = serde_json::json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "answer", "kind": "agent", "parameters": {"model": "gpt-5", "instructions": "Be brief."}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "answer"}, {"source": "answer", "target": "end"}]
    });
    std::fs::write(dir.path().join("graph.json"), graph.to_string()).unwrap();
    let mut open = switchyard(dir.path());
    with_env(&mut open);
    let ran = run(open.args(["run", "graph.json", "--input", "hi"]), None);
    let stdout = text(&ran.stdout);
    assert!(ran.status.success(), "{stdout}\n{}", text(&ran.stderr));
    // The answer streams once; the saved message is not printed again.
    assert_eq!(
        stdout
            .matches("assistant> Hello from the fake model.")
            .count(),
        1,
        "{stdout}"
    );
    assert!(
        stdout.contains("the model `gpt-5` was not in the registry"),
        "{stdout}"
    );

    let mut list = switchyard(dir.path());
    with_env(&mut list);
    let listed = run(list.args(["models", "list"]), None);
    let table = text(&listed.stdout);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("{name} in:\n{table}"))
            .to_string()
    };
    assert!(row("fake-gpt").contains("imported"), "{table}");
    assert!(row("gpt-5").contains("seen"), "{table}");
    let house = row("house-model");
    assert!(
        house.contains("added") && house.contains("on,default") && house.contains("1.5"),
        "{table}"
    );

    // A strict registry refuses the unknown name and says how to add it.
    let mut strict = switchyard(dir.path());
    with_env(&mut strict);
    std::fs::write(
        dir.path().join("graph6.json"),
        graph.to_string().replace("gpt-5", "gpt-6"),
    )
    .unwrap();
    let refused = run(
        strict.env("SWITCHYARD_MODELS__REGISTRY", "strict").args([
            "run",
            "graph6.json",
            "--input",
            "hi",
        ]),
        None,
    );
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(
        said.contains("model_not_found") && said.contains("switchyard models add gpt-6"),
        "{said}"
    );
    drop(fake);
}

/// The README's marked examples (`<!-- readme-test -->` before a fenced block) run, in
/// order, as one shell script against a real server started as the quick start says
/// (with the fake model server as its OpenAI-compatible provider), so they cannot drift
/// from the server. Builds and installs are not marked.
#[test]
fn the_readmes_examples_run() {
    for tool in ["bash", "curl", "jq"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "the README's examples need `{tool}` (CI installs it)"
        );
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "<!-- readme-test -->" {
            continue;
        }
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```sh"),
            "a marked block is `sh`: {fence}"
        );
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push(block.join("\n"));
    }
    assert!(blocks.len() >= 5, "the marked examples: {blocks:?}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fake = runtime.block_on(test_support::fake_llm::FakeLlm::start());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let environment = [
        (
            "SWITCHYARD_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("SWITCHYARD_BIND", addr.to_string()),
        ("SWITCHYARD_ADMIN_EMAIL", "admin@example.com".to_string()),
        ("SWITCHYARD_ADMIN_PASSWORD", "change-me-now".to_string()),
        ("OPENAI_API_KEY", "sk-readme".to_string()),
        ("OPENAI_BASE_URL", fake.base_url.clone()),
    ];
    let mut server = switchyard(dir.path())
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_up(addr);

    let script = format!("set -euo pipefail\n{}", blocks.join("\n"))
        .replace("http://127.0.0.1:8000", &format!("http://{addr}"))
        .replace("cargo run --", BIN);
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    server.kill().ok();
    server.wait().ok();
    let stdout = text(&output.stdout);
    let said = format!("{stdout}\n{}", text(&output.stderr));
    assert!(output.status.success(), "{script}\n---\n{said}");
    for expected in [
        "\"status\": \"waiting\"",
        "Hello from the fake model.",
        "\"status\": \"completed\"",
        "Goodbye!",
        "run.started",
        "gpt-4.1-mini",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{said}");
    }
    // The registry's table row (not the stream's events that name the model).
    let models = stdout
        .lines()
        .find(|l| l.contains("gpt-4.1-mini") && !l.starts_with("data:"))
        .unwrap();
    assert!(models.contains("seen"), "{models}");
    drop(fake);
}
