//! `switchyard run FILE`: runs a graph file once, as a temporary published workflow, and
//! prints a transcript (or JSON lines); when the run waits, asks on the terminal, and asks
//! again when an answer cannot be taken.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use domain::{
    runs::{
        self, Event, EventKind, Resume, RunStatus, StartRun, WaitKind, follow::Follower,
        live::Subscription,
    },
    workflows::{self, CreateWorkflow, import},
};
use serde_json::Value;

use crate::{app::App, cli::RunArgs};

/// Prints a run's events as they happen (`runs::follow`: the saved ones after `after`,
/// then what the advancing task publishes, with the model's text as it is written), until
/// it stops.
/// Returns the last sequence number printed.
async fn follow(
    app: &App,
    run_id: &str,
    after: i64,
    subscription: Subscription,
    json: bool,
    typed: Option<String>,
) -> anyhow::Result<i64> {
    let mut printer = Printer {
        json,
        last: after,
        streaming: None,
        streamed: None,
        typed,
    };
    let mut follower = Follower::new(&app.services, run_id, after, Some(subscription));
    while let Some(event) = follower.next().await {
        printer.print(&event);
    }
    printer.end_line();
    Ok(printer.last)
}

struct Printer {
    json: bool,
    /// The highest sequence number printed.
    last: i64,
    /// The node whose text is being streamed on the current line.
    streaming: Option<String>,
    /// The node whose streamed text awaits its saved message (not printed again).
    streamed: Option<String>,
    /// The message the user just typed at the prompt (already on screen).
    typed: Option<String>,
}

impl Printer {
    fn print(&mut self, event: &Event) {
        if event.seq > 0 {
            if event.seq <= self.last {
                return;
            }
            self.last = event.seq;
        }
        if self.json {
            let mut line =
                serde_json::json!({"type": event.kind, "node": event.node, "data": event.data});
            if event.seq > 0 {
                line["seq"] = event.seq.into();
            }
            println!("{line}");
            return;
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
        if event.kind == EventKind::AssistantDelta {
            if self.streaming.as_deref() != Some(node) {
                self.end_line();
                print!("assistant> ");
                self.streaming = Some(node.to_string());
                self.streamed = Some(node.to_string());
            }
            print!("{}", text("delta"));
            std::io::stdout().flush().ok();
            return;
        }
        if event.kind == EventKind::AssistantMessage && self.streamed.as_deref() == Some(node) {
            // Already shown as it was written (other events, such as its usage, may have
            // come between).
            self.streamed = None;
            self.end_line();
            return;
        }
        if event.kind == EventKind::UserMessage
            && self.typed.is_some()
            && self.typed.as_deref() == event.data.get("text").and_then(Value::as_str)
        {
            // Typed at the prompt: already on screen.
            self.typed = None;
            return;
        }
        if event.seq == 0 {
            return;
        }
        self.end_line();
        match event.kind {
            EventKind::AssistantMessage => println!("assistant> {}", text("text")),
            EventKind::UserMessage => println!("you> {}", text("text")),
            EventKind::NodeFinished if text("status") == "skipped" => {
                println!("  [{node}] {} skipped (disabled)", text("kind"))
            }
            EventKind::NodeFinished => println!(
                "  [{node}] {} {} ({} ms)",
                text("kind"),
                text("status"),
                event.data["duration_ms"]
            ),
            EventKind::Branch => println!("  [{node}] branch {}", event.data["label"]),
            EventKind::ToolCallStarted => println!(
                "  [{node}] calls {}({})",
                text("name"),
                event.data["arguments"]
            ),
            EventKind::ToolCallFinished => println!(
                "  [{node}] {} returned {}",
                text("name"),
                event.data["output"]
            ),
            EventKind::Widget => println!("  [{node}] widget {}", event.data["widget"]),
            EventKind::RunFailed => {
                println!("FAILED at {node}: {} ({})", text("message"), text("code"))
            }
            EventKind::RunCompleted => println!("completed: {}", event.data["output"]),
            EventKind::RunCancelled => println!("cancelled"),
            EventKind::Usage => println!(
                "  [{node}] {} tokens in, {} out",
                event.data["input_tokens"], event.data["output_tokens"]
            ),
            EventKind::Warning => println!("  [{node}] warning: {}", text("message")),
            _ => {}
        }
        std::io::stdout().flush().ok();
    }

    fn end_line(&mut self) {
        if self.streaming.take().is_some() {
            println!();
        }
    }
}

/// Asks on the terminal; `None` when the input ended. An answer read from a pipe is
/// echoed after the prompt, as a terminal would show it.
fn ask(prompt: &str) -> anyhow::Result<Option<String>> {
    print!("{prompt}");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("could not read the answer")?;
    if read == 0 {
        println!();
        return Ok(None);
    }
    let answer = line.trim_end_matches(['\n', '\r']).to_string();
    if !std::io::stdin().is_terminal() {
        println!("{answer}");
    }
    Ok(Some(answer))
}

/// Asks until `read` takes the answer; `None` when the input ended.
fn ask_until<T>(
    prompt: &str,
    mut read: impl FnMut(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    loop {
        let Some(answer) = ask(prompt)? else {
            return Ok(None);
        };
        match read(answer.trim()) {
            Ok(value) => return Ok(Some(value)),
            Err(why) => println!("  {why}"),
        }
    }
}

/// An approval's answer: approve/yes/y (or French oui/o) approves, reject/no/n (non)
/// rejects; anything else is asked again.
fn approval(answer: &str) -> Result<bool, String> {
    match answer.to_lowercase().as_str() {
        "y" | "yes" | "approve" | "approved" | "ok" | "o" | "oui" => Ok(true),
        "n" | "no" | "reject" | "rejected" | "non" => Ok(false),
        _ => Err("answer approve (y) or reject (n)".into()),
    }
}

/// A widget action: a bare action type the widget offers, or the action as JSON
/// (`{"type": …, "payload": …}`).
fn widget_action(answer: &str, offered: &[String]) -> Result<Value, String> {
    let action = if answer.starts_with('{') {
        serde_json::from_str::<Value>(answer).map_err(|err| format!("not JSON: {err}"))?
    } else {
        serde_json::json!({"type": answer, "payload": {}})
    };
    let kind = action
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() {
        return Err("an action has a `type`".into());
    }
    if !offered.is_empty() && !offered.iter().any(|o| o == kind) {
        return Err(format!(
            "the widget offers {}; type one of them",
            offered.join(", ")
        ));
    }
    Ok(action)
}

/// The administrator a command acts as: the first one.
pub(crate) async fn first_admin(app: &App) -> anyhow::Result<domain::users::User> {
    let Some(user) = app
        .services
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
    Ok(user)
}

pub async fn run(app: &App, args: RunArgs) -> anyhow::Result<()> {
    let services = &app.services;
    let user = first_admin(app).await?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("could not read {}", args.file.display()))?;
    let imported = import::read_text(&text)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", args.file.display()))?;
    // One line per node: what the import changed or left disabled there.
    let mut by_node: Vec<(Option<&str>, Vec<&str>)> = Vec::new();
    for warning in &imported.warnings {
        let node = warning.node.as_deref();
        match by_node.iter_mut().find(|(n, _)| *n == node) {
            Some((_, messages)) => messages.push(&warning.message),
            None => by_node.push((node, vec![&warning.message])),
        }
    }
    for (node, messages) in by_node {
        eprintln!(
            "warning: {}{}",
            node.map(|n| format!("[{n}] ")).unwrap_or_default(),
            messages.join("; ")
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
    let (started, subscription) = runs::start_detached(
        services,
        user,
        StartRun {
            workflow_id,
            input,
            ..StartRun::default()
        },
    )
    .await?;
    let run_id = started.id;
    follow(app, &run_id, 0, subscription, args.json, None).await?;
    let mut run = runs::get(services, user, &run_id).await?;
    while run.status == RunStatus::Waiting {
        let wait = run.wait.clone().expect("a waiting run has a wait");
        let answer = match wait.kind {
            WaitKind::Approval => {
                let prompt = wait.prompt.as_deref().unwrap_or("Approve?");
                match ask_until(&format!("{prompt} [y/n] "), approval)? {
                    Some(approved) => Resume::Approval(approved),
                    None => break,
                }
            }
            WaitKind::WidgetAction => {
                let offered = runs::widget_action_types(wait.data.as_ref());
                let prompt = if offered.is_empty() {
                    "action (its type, or JSON such as {\"type\": \"submit\"})> ".to_string()
                } else {
                    format!("action [{}]> ", offered.join(" / "))
                };
                match ask_until(&prompt, |answer| widget_action(answer, &offered))? {
                    Some(action) => Resume::WidgetAction(action),
                    None => break,
                }
            }
            WaitKind::ClientToolOutput => {
                let call = wait.data.clone().unwrap_or_default();
                match ask(&format!(
                    "result of {}({}) as JSON> ",
                    call["name"], call["arguments"]
                ))? {
                    Some(text) => Resume::ClientToolOutput(
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    ),
                    None => break,
                }
            }
            WaitKind::StructuredInput => {
                let questions = wait.data.clone().unwrap_or_default();
                let mut answers = serde_json::Map::new();
                let mut closed = false;
                for question in questions["inputs"].as_array().into_iter().flatten() {
                    let options: Vec<&str> = question["options"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|o| o["value"].as_str())
                        .collect();
                    let hint = if options.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", options.join(" / "))
                    };
                    let Some(text) = ask(&format!(
                        "{}{hint}> ",
                        question["question"].as_str().unwrap_or_default()
                    ))?
                    else {
                        closed = true;
                        break;
                    };
                    // Choices are comma-separated; a free answer is taken whole.
                    let parts: Vec<&str> = if options.is_empty() {
                        vec![text.as_str()]
                    } else {
                        text.split(',').collect()
                    };
                    let values: Vec<Value> = parts
                        .into_iter()
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| Value::String(v.to_string()))
                        .collect();
                    answers.insert(
                        question["id"].as_str().unwrap_or_default().to_string(),
                        serde_json::json!({"values": values}),
                    );
                }
                if closed {
                    break;
                }
                Resume::StructuredInput(serde_json::json!({"answers": answers}))
            }
            WaitKind::UserMessage => match ask("you> ")? {
                Some(text) => Resume::UserMessage(text),
                None => break,
            },
        };
        let typed = match &answer {
            Resume::UserMessage(text) => Some(text.clone()),
            _ => None,
        };
        let (_, after, subscription) =
            runs::resume_detached(services, user, &run_id, answer).await?;
        follow(app, &run_id, after, subscription, args.json, typed).await?;
        run = runs::get(services, user, &run_id).await?;
    }
    match run.status {
        RunStatus::Completed => Ok(()),
        RunStatus::Waiting => bail!("the input ended while the run was waiting"),
        other => bail!("the run {}", other.as_str()),
    }
}
