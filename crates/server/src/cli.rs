//! The command line: `serve` (default), `migrate`, `users create|set-password`, `config print`, `run`.

use std::{io::Read, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use domain::users::{self, CreateUser};
use store::Db;

use crate::{
    app::{self, App},
    config::{CliOverrides, Config, LogSettings, redact_url},
    logging,
};

/// Switchyard: a self-hosted AI agent platform.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `bind`).
    #[arg(long, global = true)]
    pub bind: Option<std::net::SocketAddr>,
    /// Folder for the database, keys and files (overrides `data_dir`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the model registry (list, import a provider's models, add one).
    #[command(subcommand)]
    Models(crate::models_cmd::ModelsCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a workflow graph file (ours, the seed system's or Agent Builder's) with the
    /// configured providers, printing what happens; asks on the terminal when it waits.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The graph or export file (JSON).
    pub file: PathBuf,
    /// The run's input text.
    #[arg(long, default_value = "")]
    pub input: String,
    /// Print each event as one JSON line instead of a transcript.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create(CreateArgs),
    /// Set a user's password (signs them out everywhere).
    SetPassword(PasswordArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub email: String,
    /// Make the user an administrator.
    #[arg(long)]
    pub admin: bool,
    #[arg(long)]
    pub display_name: Option<String>,
    /// Read the password from standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    #[arg(long)]
    pub email: String,
    /// Read the password from standard input instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Print,
}

/// Runs a parsed command line. `.env` has been loaded and nothing else has happened yet.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = CliOverrides {
        bind: cli.bind,
        data_dir: cli.data_dir,
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config(ConfigCommand::Print) => {
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Serve => {
            logging::init(&config.log);
            serve(config).await
        }
        Command::Migrate => {
            logging::init(&config.log);
            let url = config.database_url();
            let db = Db::connect(&url, &config.database)
                .await
                .with_context(|| format!("could not open the database at {}", redact_url(&url)))?;
            let applied = db.migrate().await?;
            db.close().await;
            println!("applied {} migration(s): {applied:?}", applied.len());
            Ok(())
        }
        Command::Run(args) => {
            logging::init(&LogSettings {
                level: "warn".into(),
                ..config.log.clone()
            });
            let app = App::build(config).await?;
            app.bootstrap().await?;
            let result = crate::run_cmd::run(&app, args).await;
            app.db.close().await;
            result
        }
        Command::Users(command) => {
            logging::init(&config.log);
            let app = App::build(config).await?;
            let result = users_command(&app, command).await;
            app.db.close().await;
            result
        }
        Command::Models(command) => {
            logging::init(&LogSettings {
                level: "warn".into(),
                ..config.log.clone()
            });
            let app = App::build(config).await?;
            app.bootstrap().await?;
            let result = crate::models_cmd::run(&app, command).await;
            app.db.close().await;
            result
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    match crate::listen::raise_open_file_limit() {
        Ok(limit) if limit < config.http.max_connections as u64 + 256 => tracing::warn!(
            open_files = limit,
            max_connections = config.http.max_connections,
            "the open-file limit is below http.max_connections plus what the server needs besides: raise the hard limit (ulimit -Hn) or lower http.max_connections"
        ),
        Ok(limit) => tracing::debug!(open_files = limit, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open-file limit"),
    }
    let app = App::build(config).await?;
    app.bootstrap().await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("could not listen on {bind}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        backend = app.db.backend().name(),
        "Switchyard is listening; API docs at http://{}/docs",
        listener.local_addr()?
    );
    app.serve(listener, app::shutdown_signal()).await
}

async fn users_command(app: &App, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create(args) => {
            let password = read_password(args.password_stdin)?;
            let user = users::provision(
                &app.services,
                CreateUser {
                    email: args.email,
                    password,
                    display_name: args.display_name,
                    is_admin: args.admin,
                },
            )
            .await?;
            println!(
                "created {} {} (id {})",
                if user.is_admin {
                    "administrator"
                } else {
                    "user"
                },
                user.email,
                user.id
            );
        }
        UsersCommand::SetPassword(args) => {
            let email = users::normalize_email(&args.email)?;
            let Some(credentials) = app.services.store.credentials_by_email(&email).await? else {
                bail!("no user has the email {email}");
            };
            let password = read_password(args.password_stdin)?;
            users::set_password(&app.services, credentials.user.id, password, true).await?;
            println!("password set for {email}; their existing sessions are signed out");
        }
    }
    Ok(())
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("could not read the password from standard input")?;
        let password = text.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            bail!("standard input held no password");
        }
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password: ")
        .context("could not prompt for a password (no terminal? use --password-stdin)")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}
