//! Leases of running runs: a run that is advancing belongs to a live process.
//!
//! Saves are batched, so they cannot prove a process alive; instead each process renews a
//! heartbeat for the runs it advances every `engine.lease_renew_secs`, with the answer
//! each is streaming. A `running` run whose heartbeat and last save are both older than
//! `engine.lease_expiry_secs` lost its process (a crash, a kill, a lost machine): any
//! replica fails it as `interrupted`, so its thread can go on, and the partial answer of
//! its last heartbeat is handed back to be kept. A run is never resumed mid-step by
//! another process: the step may have had effects (a message sent, a model billed).

use std::time::Duration;

use chrono::Utc;

use super::{ExpiredRun, RunFailure, RunResult};
use crate::Services;

/// The lease settings as durations.
pub fn renew_every(services: &Services) -> Duration {
    Duration::from_secs(services.engine.lease_renew_secs.max(1))
}

fn expiry(services: &Services) -> chrono::Duration {
    chrono::Duration::seconds(services.engine.lease_expiry_secs.max(1) as i64)
}

/// Renews the leases of every run this process advances.
pub async fn renew(services: &Services) -> RunResult<()> {
    let leases = services.live.leases();
    Ok(services.store.renew_run_leases(&leases, Utc::now()).await?)
}

/// Fails the runs whose lease ran out (only `only`, when given); returns them. A run this
/// process advances is alive, whatever its heartbeat says.
pub async fn reap(services: &Services, only: Option<&str>) -> RunResult<Vec<ExpiredRun>> {
    if only.is_some_and(|id| services.live.is_live(id)) {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let failure = RunFailure {
        node: None,
        code: "interrupted".into(),
        message: "the server running this step stopped before it finished; start again".into(),
    };
    Ok(services
        .store
        .fail_expired_runs(now - expiry(services), only, &failure, now)
        .await?)
}
