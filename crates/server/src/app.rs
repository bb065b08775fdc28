//! Wiring: connect and migrate the database, resolve keys, build services, serve HTTP.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use api::AppState;
use domain::{Services, auth::Auth};
use store::Db;
use tokio::net::TcpListener;

use crate::{config::Config, keys};

/// The in-process models, when this build has them.
fn local_models(config: &Config) -> Option<Arc<dyn domain::llm::LlmClient>> {
    #[cfg(feature = "local-models")]
    {
        Some(Arc::new(local_models::LocalModels::new(
            config.local_models_dir(),
        )))
    }
    #[cfg(not(feature = "local-models"))]
    {
        let _ = config;
        None
    }
}

/// A built application: its services and database, ready to serve.
pub struct App {
    pub config: Config,
    pub services: Services,
    pub db: Db,
}

impl App {
    /// Connects to the database, applies migrations, resolves keys and builds services.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let url = config.database_url();
        let db = Db::connect(&url, &config.database).await.with_context(|| {
            format!(
                "could not open the database at {}",
                crate::config::redact_url(&url)
            )
        })?;
        let applied = db
            .migrate()
            .await
            .context("could not migrate the database")?;
        if !applied.is_empty() {
            tracing::info!(backend = db.backend().name(), versions = ?applied, "applied database migrations");
        }
        db.listen_for_run_saves();
        let keys = keys::resolve(&config, &db).await?;
        let store: Arc<dyn domain::store::Store> = Arc::new(db.clone());
        let secret_box = Arc::new(keys.secret_box);
        let blobs = Arc::new(domain::blobs::BlobRouter::new(
            store.clone(),
            secret_box.clone(),
            Arc::new(store::LocalBlobs::new(config.data_dir.join("attachments"))),
            Arc::new(db.clone()),
            Some(Arc::new(objects::S3Stores)),
        ));
        let services = Services {
            store,
            auth: Arc::new(Auth::new(&config.auth, &keys.jwt_secret)),
            secret_box,
            llm: Arc::new(providers::Clients::new(
                providers::HttpLlm::new(),
                local_models(&config),
            )),
            engine: config.engine,
            models: domain::models::RegistrySettings {
                registry: config.models.registry,
                default_context_window: config.models.default_context_window,
            },
            live: Arc::default(),
            run_signals: db.run_signals(),
            blobs,
            chat: config.chat.clone(),
            history_cache: Arc::default(),
            chat_limits: Arc::default(),
            knowledge_jobs: Arc::default(),
            mcp: Arc::new(mcp::Connector::new()),
            mcp_settings: config.mcp,
            outbound: Arc::new(providers::Outbound::new()),
            mcp_refresh: Arc::default(),
        };
        Ok(App {
            config,
            services,
            db,
        })
    }

    /// Creates the configured administrator, or says how to create one when there are no users.
    pub async fn bootstrap(&self) -> anyhow::Result<()> {
        if let (Some(email), Some(password)) = (
            &self.config.auth.admin_email,
            &self.config.auth.admin_password,
        ) {
            match domain::auth::bootstrap_admin(&self.services, email, password).await {
                Ok(Some(user)) => {
                    tracing::info!(email = %user.email, "created the administrator from auth.admin_email")
                }
                Ok(None) => tracing::debug!("the configured administrator already exists"),
                Err(err) => {
                    return Err(anyhow::Error::new(err)
                        .context("could not create the configured administrator"));
                }
            }
        }
        if let Some(workflow) = domain::workflows::ensure_default_workflow(&self.services)
            .await
            .context("could not create the default workflow")?
        {
            tracing::info!(slug = %workflow.slug, "created the default workflow and made it the ChatKit default");
        }
        // Runs left running by a server that stopped (their lease ran out) fail now; a
        // replica still advancing its runs keeps them.
        let interrupted = domain::chat::interrupted::reap(&self.services, None).await;
        if interrupted > 0 {
            tracing::warn!(
                runs = interrupted,
                "marked runs left running by a stopped server as failed (interrupted)"
            );
        }
        let hashed = domain::chat::attachments::hash_plain_tokens(&self.services)
            .await
            .context("could not hash the URL tokens of older attachments")?;
        if hashed > 0 {
            tracing::info!(
                attachments = hashed,
                "stored the URL tokens of older attachments as hashes"
            );
        }
        let models = &self.config.models;
        if let Some(provider) = domain::models::bootstrap_from_env(
            &self.services,
            models.openai_api_key.as_ref().map(|k| k.expose()),
            models.openai_base_url.as_deref(),
        )
        .await
        .context("could not create the provider from OPENAI_API_KEY")?
        {
            tracing::info!(label = %provider.label, api_base = %provider.api_base, "created the default model provider from the environment");
            // Its models fill the registry in the background: a slow or unreachable
            // provider does not hold the start.
            let services = self.services.clone();
            tokio::spawn(async move {
                match domain::models::import_environment_models(&services, provider.id).await {
                    Ok(Ok(counts)) => tracing::info!(
                        provider = %provider.label,
                        imported = counts.imported,
                        skipped = counts.skipped,
                        "imported the provider's models into the registry"
                    ),
                    Ok(Err(err)) => tracing::warn!(
                        provider = %provider.label,
                        error = %err,
                        "could not list the provider's models; agents still reach them by name (the open registry), or run `switchyard models import` once the provider answers"
                    ),
                    Err(err) => tracing::warn!(
                        provider = %provider.label,
                        error = %err,
                        "could not import the provider's models; run `switchyard models import`"
                    ),
                }
            });
        }
        self.bootstrap_local_models().await?;
        if self.services.store.count_users().await? == 0 {
            tracing::warn!(
                "no users exist yet. Create an administrator with \
                 `switchyard users create --email you@example.com --admin`, \
                 or set SWITCHYARD_ADMIN_EMAIL and SWITCHYARD_ADMIN_PASSWORD and restart"
            );
        }
        Ok(())
    }

    /// Registers the models of the local models folder under a `local` provider the first
    /// time the folder has any.
    async fn bootstrap_local_models(&self) -> anyhow::Result<()> {
        #[cfg(feature = "local-models")]
        {
            let dir = self.config.local_models_dir();
            let names = local_models::LocalModels::new(&dir)
                .names()
                .unwrap_or_default();
            if names.is_empty() {
                tracing::debug!(dir = %dir.display(), "no local models");
                return Ok(());
            }
            if let Some((provider, counts)) = domain::models::bootstrap_local(&self.services)
                .await
                .context("could not register the local models")?
            {
                tracing::info!(
                    provider = %provider.label,
                    dir = %dir.display(),
                    imported = counts.imported,
                    "registered the local models folder as a provider"
                );
            }
        }
        Ok(())
    }

    /// Starts this process's background work: the knowledge job workers
    /// (`knowledge.workers`) and the run lease keeper; they stop when the returned handle
    /// is dropped or stopped.
    pub fn start_workers(&self) -> Workers {
        self.start_workers_with(self.config.knowledge)
    }

    /// [`App::start_workers`] with other settings.
    pub fn start_workers_with(
        &self,
        settings: domain::knowledge::jobs::KnowledgeSettings,
    ) -> Workers {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let instance = format!("{}-{}", hostname(), std::process::id());
        let mut handles = domain::knowledge::jobs::spawn_workers(
            &self.services,
            settings,
            &instance,
            stopped.clone(),
        );
        handles.push(tokio::spawn(domain::storage::retention_worker(
            self.services.clone(),
            self.config.storage,
            stopped.clone(),
        )));
        handles.push(tokio::spawn(domain::chat::interrupted::keep_leases(
            self.services.clone(),
            stopped,
        )));
        Workers { stop, handles }
    }

    pub fn router(&self) -> axum::Router {
        api::router(AppState::new(
            self.services.clone(),
            self.config.http.clone(),
        ))
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives in-flight requests
    /// `http.shutdown_timeout_secs` to finish, and closes the pool.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.config.http.shutdown_timeout_secs);
        let router = self.router();
        let workers = self.start_workers();
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let http = &self.config.http;
        let limits = crate::listen::Limits {
            max_connections: http.max_connections,
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(http.body_read_timeout_secs),
        };
        let server = crate::listen::serve(listener, router, limits, async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            let _ = stopping_tx.send(());
        });
        // The grace timer starts only once shutdown has begun.
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = server => {}
            () = deadline => tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; closing them"),
        }
        workers.stop().await;
        self.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Background workers of this process.
pub struct Workers {
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Asks the workers to stop and waits for their current jobs (a job cut short is
    /// taken over by a worker once its lease runs out).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchyard".into())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
