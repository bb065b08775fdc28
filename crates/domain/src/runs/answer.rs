//! Answering a waiting run: the user's message, an approval, a widget action, a client
//! tool's result or answered questions are checked against what the run waits for,
//! recorded, and the run advances again (here, or in a task of its own).

use serde_json::json;

use super::{
    EventKind, Resume, Run, RunError, RunResult, RunStatus,
    control::owned,
    engine::{advance_or_fail, fail, next_node, save, spawn_advance},
    live::Subscription,
    step::{Log, RunCtx},
    values::strip_nul,
};
use crate::{
    Services,
    users::User,
    workflows::{
        Edge, Version, Workflow, WorkflowError,
        nodes::{Kind, Resumed},
    },
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
    // The node's kind takes the answer: it checks that it fits the wait and records it.
    let kind = Kind::parse(&node.kind)
        .ok_or_else(|| RunError::Invalid(format!("`{}` nodes cannot run", node.kind)))?;
    let resumed = kind
        .behaviour()
        .resume(&mut log, node, &wait, answer, graph)?;
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
    match resumed {
        Resumed::Reenter => log.run.current_node = Some(node.slug.clone()),
        Resumed::Follow(label) => {
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
