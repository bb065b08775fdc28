//! Engine overhead benchmark: runs chains of `state`/`transform`/`condition` nodes on
//! SQLite with full persistence, and reports runs per second and the cost per node.
//!
//! `cargo run --release -p engine-bench -- [RUNS_OF_100] [RUNS_OF_1000]`

use std::time::{Duration, Instant};

use domain::{
    runs::{self, RunStatus, StartRun},
    users::{self, CreateUser},
    workflows::{self, CreateWorkflow, Graph},
};
use serde_json::{Value, json};
use server::{app::App, config::Config};

/// start → (state → transform → condition)… → end, with `n_nodes` nodes in all.
fn chain(n_nodes: usize) -> Graph {
    let mut nodes = vec![json!({"slug": "start", "kind": "start"})];
    let mut edges = Vec::new();
    let mut previous = "start".to_string();
    for i in 0..n_nodes.saturating_sub(2) {
        let slug = format!("n{i}");
        let node = match i % 3 {
            0 => {
                json!({"slug": slug, "kind": "state", "parameters": {"state": [{"target": "state.count", "expression": "state.count + 1"}]}})
            }
            1 => {
                json!({"slug": slug, "kind": "transform", "parameters": {"expressions": {"total": "{{ state.count * 2 }}", "label": "step {{ state.count }}"}}})
            }
            _ => {
                json!({"slug": slug, "kind": "condition", "parameters": {"path": "input.total > 0"}})
            }
        };
        nodes.push(node);
        edges.push(json!({"source": previous, "target": slug}));
        previous = slug;
    }
    nodes.push(json!({"slug": "end", "kind": "end", "parameters": {"output": "state.count"}}));
    edges.push(json!({"source": previous, "target": "end"}));
    Graph::from_json(json!({
        "nodes": nodes,
        "edges": edges,
        "state_schema": {"type": "object", "properties": {"count": {"type": "integer", "default": 0}}}
    }))
    .expect("a well-formed chain")
}

struct Measure {
    n_nodes: usize,
    runs: usize,
    elapsed: Duration,
}

async fn measure(app: &App, admin: &domain::users::User, n_nodes: usize, runs: usize) -> Measure {
    let saved = workflows::create(
        &app.services,
        admin,
        CreateWorkflow {
            display_name: format!("chain of {n_nodes}"),
            graph: Some(chain(n_nodes)),
            publish: true,
            ..CreateWorkflow::default()
        },
    )
    .await
    .expect("the chain saves");
    let workflow_id = saved.value.0.id;
    // One warm-up run.
    runs::start(
        &app.services,
        admin,
        StartRun {
            workflow_id,
            input: Value::Null,
            ..StartRun::default()
        },
    )
    .await
    .expect("runs");
    let started = Instant::now();
    for _ in 0..runs {
        let run = runs::start(
            &app.services,
            admin,
            StartRun {
                workflow_id,
                input: Value::Null,
                ..StartRun::default()
            },
        )
        .await
        .expect("runs");
        assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
    }
    Measure {
        n_nodes,
        runs,
        elapsed: started.elapsed(),
    }
}

/// The process's resident set size, from /proc (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (runs_100, runs_1000) = (
        args.first().copied().unwrap_or(50),
        args.get(1).copied().unwrap_or(5),
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.engine.max_steps = 10_000;
    let app = App::build(config).await.expect("the app builds");
    let admin = users::provision(
        &app.services,
        CreateUser {
            email: "bench@example.com".into(),
            password: "bench-password".into(),
            display_name: None,
            is_admin: true,
        },
    )
    .await
    .expect("an admin");

    println!("engine overhead on SQLite (WAL), every step persisted with its record and events");
    println!(
        "{:>6} {:>6} {:>10} {:>12} {:>14}",
        "nodes", "runs", "runs/s", "ms per run", "µs per node"
    );
    let mut per_node = Vec::new();
    for (n_nodes, runs) in [(100, runs_100), (1000, runs_1000)] {
        let m = measure(&app, &admin, n_nodes, runs).await;
        let per_run = m.elapsed.as_secs_f64() / m.runs as f64;
        let node_us = per_run * 1e6 / m.n_nodes as f64;
        per_node.push(per_run);
        println!(
            "{:>6} {:>6} {:>10.1} {:>12.2} {:>14.1}",
            m.n_nodes,
            m.runs,
            1.0 / per_run,
            per_run * 1e3,
            node_us
        );
    }
    println!(
        "1,000-node run / 100-node run: {:.1}x",
        per_node[1] / per_node[0]
    );

    // Memory: paused runs live in the database only.
    let waiting = workflows::create(
        &app.services,
        &admin,
        CreateWorkflow {
            display_name: "waits".into(),
            graph: Some(
                Graph::from_json(json!({
                    "nodes": [{"slug": "start", "kind": "start"}, {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "Name?"}}, {"slug": "end", "kind": "end"}],
                    "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "end"}]
                }))
                .expect("a well-formed graph"),
            ),
            publish: true,
            ..CreateWorkflow::default()
        },
    )
    .await
    .expect("the graph saves");
    let workflow_id = waiting.value.0.id;
    let pause = || {
        runs::start(
            &app.services,
            &admin,
            StartRun {
                workflow_id,
                input: Value::Null,
                ..StartRun::default()
            },
        )
    };
    for _ in 0..100 {
        pause().await.expect("runs");
    }
    let before = rss_kib();
    for _ in 0..1000 {
        let run = pause().await.expect("runs");
        assert_eq!(run.status, RunStatus::Waiting);
    }
    let after = rss_kib();
    println!(
        "1,000 more paused runs: resident memory {before} KiB -> {after} KiB ({:+} KiB)",
        after as i64 - before as i64
    );
    app.db.close().await;
}
