//! `switchyard models`: the model registry from the command line (list, import a
//! provider's list, add a model), acting as the first administrator.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use domain::{
    Principal,
    models::{self, ModelInput, Provider},
};

use crate::app::App;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registry's models: provider, name, where each came from, prices.
    List,
    /// Add the models a provider lists (the default provider unless `--provider`).
    Import(ImportArgs),
    /// Add a model by the name its provider knows it by.
    Add(AddArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The provider's id or label.
    #[arg(long)]
    pub provider: Option<String>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The id sent to the provider (`gpt-5-mini`, `llama3.1:8b`).
    pub name: String,
    /// The provider's id or label (the default provider when left out).
    #[arg(long)]
    pub provider: Option<String>,
    /// Make it the model agents use when they name none.
    #[arg(long)]
    pub default: bool,
    /// The context window, in tokens.
    #[arg(long)]
    pub context_window: Option<i64>,
    /// US dollars per million input tokens.
    #[arg(long)]
    pub price_input: Option<f64>,
    /// US dollars per million output tokens.
    #[arg(long)]
    pub price_output: Option<f64>,
    /// US dollars per million cached input tokens.
    #[arg(long)]
    pub price_cached_input: Option<f64>,
}

pub async fn run(app: &App, command: ModelsCommand) -> anyhow::Result<()> {
    let services = &app.services;
    let admin = Principal::user(crate::run_cmd::first_admin(app).await?);
    match command {
        ModelsCommand::List => {
            let providers = models::list_providers(services, &admin).await?;
            let list = models::list_models(services, &admin).await?;
            if list.is_empty() {
                println!(
                    "the registry is empty; `switchyard models import` adds the default provider's models, `switchyard models add NAME` one model"
                );
                return Ok(());
            }
            println!(
                "{:>4}  {:<24} {:<32} {:<8} {:<8} {:>12} {:>10} {:>10}",
                "id", "provider", "name", "origin", "state", "context", "$/M in", "$/M out"
            );
            for m in list {
                let provider = providers
                    .iter()
                    .find(|p| p.id == m.provider_id)
                    .map_or("?", |p| p.label.as_str());
                let mut state = if m.enabled { "on" } else { "off" }.to_string();
                if m.is_default {
                    state.push_str(",default");
                }
                let price = |p: Option<f64>| p.map_or("-".to_string(), |v| format!("{v}"));
                println!(
                    "{:>4}  {:<24} {:<32} {:<8} {:<8} {:>12} {:>10} {:>10}",
                    m.id,
                    provider,
                    m.name,
                    m.origin.as_str(),
                    state,
                    m.context_window.map_or("-".to_string(), |w| w.to_string()),
                    price(m.pricing.input_per_mtok),
                    price(m.pricing.output_per_mtok),
                );
            }
        }
        ModelsCommand::Import(args) => {
            let provider = provider(app, &admin, args.provider.as_deref()).await?;
            match models::import_from_provider(services, &admin, provider.id).await? {
                Ok(counts) => println!(
                    "imported {} model(s) from {} ({} already there)",
                    counts.imported, provider.label, counts.skipped
                ),
                Err(err) => bail!(
                    "{} did not list its models: {err}; check its address and key (`GET /api/admin/model-providers`), or add models one by one with `switchyard models add NAME`",
                    provider.label
                ),
            }
        }
        ModelsCommand::Add(args) => {
            let provider = provider(app, &admin, args.provider.as_deref()).await?;
            let model = models::create_model(
                services,
                &admin,
                ModelInput {
                    provider_id: Some(provider.id),
                    name: Some(args.name),
                    context_window: args.context_window.map(Some),
                    price_input_per_mtok: args.price_input.map(Some),
                    price_output_per_mtok: args.price_output.map(Some),
                    price_cached_input_per_mtok: args.price_cached_input.map(Some),
                    is_default: args.default.then_some(true),
                    ..ModelInput::default()
                },
            )
            .await?;
            println!(
                "added {} (id {}) at {}{}",
                model.name,
                model.id,
                provider.label,
                if model.is_default {
                    ", the default model"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// The provider named by id or label, or the default one.
async fn provider(app: &App, admin: &Principal, named: Option<&str>) -> anyhow::Result<Provider> {
    let providers = models::list_providers(&app.services, admin)
        .await
        .context("could not read the providers")?;
    let found = match named {
        Some(named) => providers
            .into_iter()
            .find(|p| p.id.to_string() == named || p.label == named),
        None => providers.into_iter().find(|p| p.is_default),
    };
    match (found, named) {
        (Some(provider), _) => Ok(provider),
        (None, Some(named)) => bail!(
            "no provider has the id or label `{named}`; `GET /api/admin/model-providers` lists them"
        ),
        (None, None) => bail!(
            "there is no default provider; set OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible server) and start the server once, or add one with `POST /api/admin/model-providers`"
        ),
    }
}
