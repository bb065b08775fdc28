//! `switchyard run FILE`: runs a graph file once, as a temporary published workflow, and
//! prints a transcript (or JSON lines); when the run waits, asks on the terminal.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use domain::{
    runs::{self, Resume, RunStatus, StartRun},
    workflows::{self, CreateWorkflow, import},
};
use serde_json::Value;

use crate::{app::App, cli::RunArgs};

/// Prints events after `after`; returns the last sequence printed.
async fn print_events(
    app: &App,
    user: &domain::users::User,
    run_id: &str,
    after: i64,
    json: bool,
) -> anyhow::Result<i64> {
    let mut last = after;
    for event in runs::events(&app.services, user, run_id, after).await? {
        last = event.seq;
        if json {
            let line = serde_json::json!({"seq": event.seq, "type": event.kind, "node": event.node, "data": event.data});
            println!("{line}");
            continue;
        }
        let node = event.node.as_deref().unwrap_or("-");
        let text = |key: &str| {
            event
                .data
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match event.kind.as_str() {
            "assistant_message" => println!("assistant> {}", text("text")),
            "user_message" => println!("you> {}", text("text")),
            "node.finished" => println!(
                "  [{node}] {} {} ({} ms)",
                text("kind"),
                text("status"),
                event.data["duration_ms"]
            ),
            "branch" => println!("  [{node}] branch {}", event.data["label"]),
            "run.failed" => println!("FAILED at {node}: {} ({})", text("message"), text("code")),
            "run.completed" => println!("completed: {}", event.data["output"]),
            "usage" => println!(
                "  [{node}] {} tokens in, {} out",
                event.data["input_tokens"], event.data["output_tokens"]
            ),
            "warning" => println!("  [{node}] warning: {}", text("message")),
            _ => {}
        }
    }
    std::io::stdout().flush().ok();
    Ok(last)
}

fn ask(prompt: &str) -> anyhow::Result<Option<String>> {
    print!("{prompt}");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("could not read the answer")?;
    Ok((read > 0).then(|| line.trim_end_matches(['\n', '\r']).to_string()))
}

pub async fn run(app: &App, args: RunArgs) -> anyhow::Result<()> {
    let services = &app.services;
    let Some(user) = services
        .store
        .list_users()
        .await?
        .into_iter()
        .find(|u| u.is_admin)
    else {
        bail!(
            "no administrator exists yet; create one with `switchyard users create --email you@example.com --admin`"
        );
    };
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("could not read {}", args.file.display()))?;
    let document: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON", args.file.display()))?;
    let imported =
        import::read(&document).map_err(|err| anyhow::anyhow!("cannot read the graph: {err}"))?;
    for warning in &imported.warnings {
        eprintln!(
            "warning: {}{}",
            warning
                .node
                .as_deref()
                .map(|n| format!("[{n}] "))
                .unwrap_or_default(),
            warning.message
        );
    }
    let created = workflows::create(
        services,
        &user,
        CreateWorkflow {
            // A free slug is derived from the name (`cli-run-of-graph-json`, `…-2`, …).
            slug: None,
            display_name: format!("CLI run of {}", args.file.display())
                .chars()
                .take(128)
                .collect(),
            graph: Some(imported.graph),
            publish: true,
            ..CreateWorkflow::default()
        },
    )
    .await;
    let saved = match created {
        Ok(saved) => saved,
        Err(workflows::WorkflowError::Invalid(problems)) => {
            for problem in problems {
                eprintln!(
                    "{:?}: {}{} ({})",
                    problem.severity,
                    problem.node.map(|n| format!("[{n}] ")).unwrap_or_default(),
                    problem.message,
                    problem.code
                );
            }
            bail!("the graph is not valid");
        }
        Err(err) => return Err(err.into()),
    };
    let workflow_id = saved.value.0.id;
    let outcome = drive(app, &user, workflow_id, &args).await;
    // The temporary workflow goes, with its runs; usage stays recorded.
    workflows::delete(services, &user, workflow_id).await.ok();
    outcome
}

async fn drive(
    app: &App,
    user: &domain::users::User,
    workflow_id: i64,
    args: &RunArgs,
) -> anyhow::Result<()> {
    let services = &app.services;
    let input = if args.input.is_empty() {
        Value::Null
    } else {
        Value::String(args.input.clone())
    };
    let mut run = runs::start(
        services,
        user,
        StartRun {
            workflow_id,
            input,
            ..StartRun::default()
        },
    )
    .await?;
    let mut last = print_events(app, user, &run.id, 0, args.json).await?;
    while run.status == RunStatus::Waiting {
        let wait = run.wait.clone().expect("a waiting run has a wait");
        let answer = if wait.kind == "approval" {
            let prompt = wait.prompt.as_deref().unwrap_or("Approve?");
            match ask(&format!("{prompt} [y/n] "))? {
                Some(a) => Resume::Approval(
                    a.trim().eq_ignore_ascii_case("y") || a.trim().eq_ignore_ascii_case("yes"),
                ),
                None => break,
            }
        } else {
            match ask("you> ")? {
                Some(text) => Resume::UserMessage(text),
                None => break,
            }
        };
        run = runs::resume(services, user, &run.id, answer).await?;
        last = print_events(app, user, &run.id, last, args.json).await?;
    }
    match run.status {
        RunStatus::Completed => Ok(()),
        RunStatus::Waiting => bail!("the input ended while the run was waiting"),
        other => bail!("the run {}", other.as_str()),
    }
}
