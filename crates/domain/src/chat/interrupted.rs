//! Conversations whose turn was cut short by a stopped server: the process's lease keeper,
//! and what a thread keeps of an answer its run could not finish.
//!
//! Invariant: a thread never stays busy because the process answering in it died. Its
//! run's lease runs out (`runs::leases`), any replica fails the run as `interrupted`, and
//! the thread keeps the answer as far as it was streamed, with hidden context telling the
//! next turn that it was cut short.

use chrono::Utc;
use conversation::{ItemBody, OutputText, ThreadItem};
use tokio::sync::watch;

use super::new_id;
use crate::{
    Services,
    runs::{ExpiredRun, leases},
};

/// What the hidden context says after an answer cut short by a stopped server.
const INTERRUPTED_CONTEXT: &str = "The previous answer was cut short because the server stopped; the user saw only the part shown. Do not continue it unless asked.";

/// Keeps in their threads what the expired runs had streamed.
pub async fn recover(services: &Services, expired: &[ExpiredRun]) {
    for run in expired {
        tracing::warn!(run_id = %run.run_id, thread_id = ?run.thread_id, "failed a run whose server stopped (interrupted)");
        let Some(thread_id) = &run.thread_id else {
            continue;
        };
        let mut items = Vec::new();
        if let Some(partial) = run.partial.as_ref().filter(|p| !p.text.trim().is_empty()) {
            items.push(ItemBody::AssistantMessage {
                content: vec![OutputText::new(partial.text.clone())],
            });
        }
        items.push(ItemBody::SdkHiddenContext {
            content: INTERRUPTED_CONTEXT.into(),
        });
        for body in items {
            let item = ThreadItem {
                id: new_id("msg"),
                thread_id: thread_id.clone(),
                created_at: Utc::now(),
                body,
            };
            if let Err(err) = services.store.insert_chat_item(&item).await {
                tracing::error!(thread_id = %thread_id, error = %err, "could not keep an interrupted answer");
            }
        }
    }
}

/// Fails the runs whose lease ran out (only `only`, when given) and recovers their
/// threads; returns how many.
pub async fn reap(services: &Services, only: Option<&str>) -> usize {
    match leases::reap(services, only).await {
        Ok(expired) => {
            recover(services, &expired).await;
            expired.len()
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not look for runs whose server stopped");
            0
        }
    }
}

/// The process's lease keeper: every `engine.lease_renew_secs`, renews the leases of the
/// runs this process advances, then fails the runs anywhere whose lease ran out. Stops
/// when `stop` turns true.
pub async fn keep_leases(services: Services, mut stop: watch::Receiver<bool>) {
    let every = leases::renew_every(&services);
    loop {
        if let Err(err) = leases::renew(&services).await {
            tracing::warn!(error = %err, "could not renew the leases of this process's runs");
        }
        reap(&services, None).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
