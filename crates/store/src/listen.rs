//! PostgreSQL `LISTEN` for run saves: every replica's saves notify a channel in their
//! own transaction, and each replica's listener wakes the local readers of that run
//! (`domain::runs::signals`). SQLite has one process writing, which signals directly.

use std::time::Duration;

use crate::{Db, Pool};

macro_rules! channel {
    () => {
        "switchyard_run_saved"
    };
}

/// The channel run saves are notified on; the payload is the run's id.
pub(crate) const CHANNEL: &str = channel!();

/// The notification, as one statement (`$1` the run's id).
pub(crate) const NOTIFY_SAVED: &str = concat!("SELECT pg_notify('", channel!(), "', $1)");

impl Db {
    /// On PostgreSQL, starts listening for other replicas' run saves in the background
    /// (reconnecting when the connection drops, and then waking every reader, since
    /// notifications may have been missed meanwhile). Nothing to do on SQLite.
    pub fn listen_for_run_saves(&self) {
        let Pool::Postgres(pool) = &self.pool else {
            return;
        };
        let (pool, signals) = (pool.clone(), self.run_signals.clone());
        tokio::spawn(async move {
            let mut logged = false;
            loop {
                let listener = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                }
                .await;
                let mut listener = match listener {
                    Ok(listener) => listener,
                    Err(_) if pool.is_closed() => return,
                    Err(err) => {
                        if !logged {
                            tracing::warn!(error = %err, "could not listen for run saves; readers of other replicas' runs fall back to reading their logs now and then");
                            logged = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if logged {
                    tracing::info!("listening for run saves again");
                    logged = false;
                }
                // Saves made while no one listened are read by every reader now.
                signals.wake_all();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => signals.saved(notification.payload()),
                        // The connection dropped and was made again: notifications may
                        // have been lost in between.
                        Ok(None) => signals.wake_all(),
                        Err(_) if pool.is_closed() => return,
                        Err(err) => {
                            tracing::warn!(error = %err, "the run-save listener failed; listening again");
                            break;
                        }
                    }
                }
            }
        });
    }
}
