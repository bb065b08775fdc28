//! Who may see and change a run, reading it, and cancelling it.

use chrono::Utc;
use serde_json::json;

use super::{
    Event, EventKind, Run, RunError, RunFilter, RunResult, RunStatus, Step, engine::save, step::Log,
};
use crate::{Services, users::User, workflows};

/// Cancels a run that has not finished. A run being advanced (here or on another
/// replica) stops at its next step, or at once inside a model call.
pub async fn cancel(services: &Services, actor: &User, run_id: &str) -> RunResult<Run> {
    owned(services, actor, run_id).await?;
    // The advancing process may save between our read and our write: read again.
    for _ in 0..20 {
        let mut run = services
            .store
            .run(run_id)
            .await?
            .ok_or_else(|| RunError::NotFound(run_id.to_string()))?;
        if run.status.is_finished() {
            return Err(RunError::Conflict(format!(
                "the run is already {}",
                run.status.as_str()
            )));
        }
        let saved = run.event_seq;
        // Numbers this process already showed live readers are not reused.
        run.event_seq = run.event_seq.max(services.live.published(run_id));
        let mut log = Log::new(&mut run);
        log.run.status = RunStatus::Cancelled;
        log.run.wait = None;
        log.run.finished_at = Some(Utc::now());
        log.event(EventKind::RunCancelled, None, json!({"by": actor.id}));
        match save(services, &mut log, saved).await {
            Ok(()) => {
                services.live.cancel(run_id);
                return Ok(run);
            }
            Err(RunError::Conflict(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(err) => return Err(err),
        }
    }
    Err(RunError::Conflict(
        "the run kept changing; try cancelling again".into(),
    ))
}

/// A run the caller may change (resume, cancel): their own; administrators may change any.
/// Seeing a run (write access to its workflow) is not enough to answer in someone else's
/// conversation.
pub(super) async fn owned(services: &Services, actor: &User, run_id: &str) -> RunResult<Run> {
    let run = get(services, actor, run_id).await?;
    if run.user_id != Some(actor.id) && !actor.is_admin {
        return Err(RunError::Forbidden(
            "only the user who started this run may resume or cancel it".into(),
        ));
    }
    Ok(run)
}

/// A run the caller may see: their own, or any run of a workflow they can write to.
pub async fn get(services: &Services, actor: &User, run_id: &str) -> RunResult<Run> {
    let run = services
        .store
        .run(run_id)
        .await?
        .ok_or_else(|| RunError::NotFound(run_id.to_string()))?;
    if run.user_id == Some(actor.id) || actor.is_admin {
        return Ok(run);
    }
    match workflows::access(services, actor, run.workflow_id).await {
        Ok((_, access)) if access.can_write() => Ok(run),
        _ => Err(RunError::NotFound(run_id.to_string())),
    }
}

pub async fn list(services: &Services, actor: &User, mut filter: RunFilter) -> RunResult<Vec<Run>> {
    if !actor.is_admin {
        filter.user_id = Some(actor.id);
    }
    filter.limit = filter.limit.clamp(1, 500);
    Ok(services.store.list_runs(&filter).await?)
}

/// A run's status and its events after `after`, for a stream whose reader was already
/// checked with [`get`].
pub async fn poll(
    services: &Services,
    run_id: &str,
    after: i64,
) -> RunResult<(RunStatus, Vec<Event>)> {
    let run = services
        .store
        .run(run_id)
        .await?
        .ok_or_else(|| RunError::NotFound(run_id.to_string()))?;
    Ok((run.status, services.store.run_events(run_id, after).await?))
}

pub async fn steps(services: &Services, actor: &User, run_id: &str) -> RunResult<Vec<Step>> {
    get(services, actor, run_id).await?;
    Ok(services.store.run_steps(run_id).await?)
}

pub async fn events(
    services: &Services,
    actor: &User,
    run_id: &str,
    after_seq: i64,
) -> RunResult<Vec<Event>> {
    get(services, actor, run_id).await?;
    Ok(services.store.run_events(run_id, after_seq).await?)
}
