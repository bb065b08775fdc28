//! Answering a waiting run: the user's message, an approval, a widget action, a client
//! tool's result or answered questions are checked against what the run waits for,
//! recorded, and the run advances again (here, or in a task of its own).

use serde_json::{Value, json};

use super::{
    EventKind, Resume, Run, RunError, RunResult, RunStatus, WaitKind, agent,
    control::owned,
    engine::{Log, RunCtx, advance_or_fail, fail, next_node, save, spawn_advance},
    live::Subscription,
    values::strip_nul,
    widget,
};
use crate::{
    Services,
    users::User,
    workflows::{Edge, Version, Workflow, WorkflowError, nodes},
};

/// Resumes a waiting run with the user's answer.
pub async fn resume(
    services: &Services,
    actor: &User,
    run_id: &str,
    answer: Resume,
) -> RunResult<Run> {
    let (services, actor, run_id) = (services.clone(), actor.clone(), run_id.to_string());
    tokio::spawn(async move { resume_here(&services, &actor, &run_id, answer).await })
        .await
        .map_err(|err| RunError::Internal(format!("the run's task failed: {err}")))?
}

async fn resume_here(
    services: &Services,
    actor: &User,
    run_id: &str,
    answer: Resume,
) -> RunResult<Run> {
    let (mut run, workflow, version, user) = reopen(services, actor, run_id, answer).await?;
    let ctx = RunCtx::new(services, &workflow, &version, &user);
    advance_or_fail(&ctx, &mut run).await?;
    Ok(run)
}

/// Resumes a waiting run in the background; returns it with the sequence number its
/// answer starts after, so a stream shows what follows.
pub async fn resume_detached(
    services: &Services,
    actor: &User,
    run_id: &str,
    answer: Resume,
) -> RunResult<(Run, i64, Subscription)> {
    let before = owned(services, actor, run_id).await?.event_seq;
    let (run, workflow, version, user) = reopen(services, actor, run_id, answer).await?;
    let resumed = run.clone();
    let subscription = spawn_advance(services, run, workflow, version, user);
    Ok((resumed, before, subscription))
}

/// Checks and records the answer to a waiting run, which is then ready to advance.
async fn reopen(
    services: &Services,
    actor: &User,
    run_id: &str,
    answer: Resume,
) -> RunResult<(Run, Workflow, Version, User)> {
    let mut run = owned(services, actor, run_id).await?;
    let Some(wait) = run
        .wait
        .clone()
        .filter(|_| run.status == RunStatus::Waiting)
    else {
        return Err(RunError::Conflict(format!(
            "the run is {}, not waiting",
            run.status.as_str()
        )));
    };
    let (workflow, mut version, user) = context_of(services, &run).await?;
    // A workflow set to follow production moves a waiting conversation to the version now
    // in production at its next turn, when that version still has the node it waits at.
    let mut moved_from = None;
    if workflow.follow_production
        && let Some(production) = services.store.production_version(workflow.id).await?
        && production.id != version.id
        && production
            .graph
            .node(&wait.node)
            .is_some_and(|n| n.is_enabled && n.kind == graph_kind(&version, &wait.node))
    {
        moved_from = Some(version.number);
        run.version_id = production.id;
        version = production;
    }
    let ctx = RunCtx::new(services, &workflow, &version, &user);
    let graph = &version.graph;
    let node = graph
        .node(&wait.node)
        .ok_or_else(|| RunError::Invalid(format!("node `{}` is gone", wait.node)))?;
    let saved = run.event_seq;
    let mut log = Log::new(&mut run);
    // A client tool's result goes back to the agent that called it.
    let mut reenter = false;
    let answer = match answer {
        Resume::WidgetAction(mut action) => {
            strip_nul(&mut action);
            Resume::WidgetAction(action)
        }
        Resume::ClientToolOutput(mut output) => {
            strip_nul(&mut output);
            Resume::ClientToolOutput(output)
        }
        Resume::StructuredInput(mut submission) => {
            strip_nul(&mut submission);
            Resume::StructuredInput(submission)
        }
        other => other,
    };
    let (answer, files) = match answer {
        Resume::UserMessageWithFiles(text, files) => (Resume::UserMessage(text), files),
        other => (other, Vec::new()),
    };
    let label = match (wait.kind, answer) {
        (WaitKind::UserMessage, Resume::UserMessage(text)) => {
            log.say("user", &node.slug, text.clone());
            // The user's own answer: a chat client shows it already.
            if let Some(said) = log.events.last_mut() {
                said.data["reply"] = json!(true);
            }
            if let Some(entry) = log.run.history.last_mut() {
                entry.attachments = files;
            }
            // One name for the user's text after a start and after a wait alike.
            log.run.last_output = json!({"input_as_text": text, "user_message": text});
            None
        }
        (WaitKind::StructuredInput, Resume::StructuredInput(submission)) => {
            let shown = wait
                .data
                .as_ref()
                .and_then(|d| d.get("inputs"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let (status, answered) =
                nodes::wait_for_user_input::apply_submission(&shown, &submission)
                    .map_err(RunError::Invalid)?;
            log.say(
                "user",
                &node.slug,
                nodes::wait_for_user_input::answers_text(&answered),
            );
            // The answers are shown as the questions' item; no message to show twice.
            if let Some(said) = log.events.last_mut() {
                said.data["reply"] = json!(true);
            }
            log.event(
                EventKind::StructuredInputAnswered,
                Some(&node.slug),
                json!({"status": status, "inputs": answered}),
            );
            log.run.last_output = nodes::wait_for_user_input::answers_output(&status, &answered);
            None
        }
        (WaitKind::Approval, Resume::Approval(approved)) => {
            log.event(
                EventKind::Approval,
                Some(&node.slug),
                json!({"approved": approved}),
            );
            if agent::accept_approval(log.run, &node.slug, approved) {
                // A tool call an agent waits on: the agent goes on with the decision.
                reenter = true;
                None
            } else {
                log.run.last_output = json!({"approved": approved});
                Some(if approved { "approve" } else { "reject" }.to_string())
            }
        }
        (WaitKind::WidgetAction, Resume::WidgetAction(action)) => {
            let action = widget::action_context(action, wait.data.as_ref())?;
            log.event(
                EventKind::WidgetAction,
                Some(&node.slug),
                json!({"action": action}),
            );
            let kind = action["type"].as_str().unwrap_or_default().to_string();
            log.run.last_output = json!({"action": action});
            // An edge labelled with the action's type routes it; otherwise the default edge
            // (never the `error` edge).
            (!kind.eq_ignore_ascii_case(nodes::common::ERROR_LABEL)
                && graph.edges.iter().any(|e| {
                    e.source == node.slug
                        && e.condition
                            .as_deref()
                            .is_some_and(|c| c.eq_ignore_ascii_case(&kind))
                }))
            .then_some(kind)
        }
        (WaitKind::ClientToolOutput, Resume::ClientToolOutput(output)) => {
            log.event(
                EventKind::ToolCallOutput,
                Some(&node.slug),
                json!({"call": wait.data, "output": output}),
            );
            agent::accept_client_output(log.run, &node.slug, output)?;
            reenter = true;
            None
        }
        (kind, _) => {
            return Err(RunError::Invalid(format!(
                "the run waits for {}",
                kind.as_str().replace('_', " ")
            )));
        }
    };
    log.run.wait = None;
    log.run.status = RunStatus::Running;
    if let Some(from) = moved_from {
        log.event(
            EventKind::RunVersionChanged,
            None,
            json!({"from": from, "to": version.number}),
        );
    }
    log.event(EventKind::RunResumed, Some(&node.slug), json!({}));
    if reenter {
        log.run.current_node = Some(node.slug.clone());
    } else {
        let out: Vec<&Edge> = graph
            .edges
            .iter()
            .filter(|e| e.source == node.slug)
            .collect();
        match next_node(&out, node, label.as_deref()) {
            Ok(next) => log.run.current_node = next,
            Err(message) => fail(&mut log, Some(&node.slug), "missing_edge", message),
        }
    }
    save(ctx.services, &mut log, saved).await?;
    Ok((run, workflow, version, user))
}

/// The kind of a node of a version (empty when it has no such node).
fn graph_kind(version: &Version, slug: &str) -> String {
    version
        .graph
        .node(slug)
        .map(|n| n.kind.clone())
        .unwrap_or_default()
}

async fn context_of(services: &Services, run: &Run) -> RunResult<(Workflow, Version, User)> {
    let workflow = services
        .store
        .workflow_by_id(run.workflow_id)
        .await?
        .ok_or(WorkflowError::NotFound(run.workflow_id))?;
    let version = services
        .store
        .version(run.workflow_id, run.version_id)
        .await?
        .ok_or(WorkflowError::VersionNotFound(run.version_id))?;
    let user = match run.user_id {
        Some(id) => services.store.user_by_id(id).await?,
        None => None,
    }
    .ok_or_else(|| RunError::Invalid("the user who started this run no longer exists".into()))?;
    Ok((workflow, version, user))
}
