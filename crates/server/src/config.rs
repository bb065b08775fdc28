//! The settings tree: defaults, then a TOML file, then `SWITCHYARD_*` variables, then flags.
//!
//! Parsed once in `cli::run` and passed down; each subsystem receives its own table. Nested
//! keys are reached from the environment with `__` (`SWITCHYARD_AUTH__ACCESS_TOKEN_TTL_MINUTES`);
//! the common ones also have short names (`SWITCHYARD_DATABASE_URL`, `SWITCHYARD_ADMIN_EMAIL`,
//! …, see [`ENV_ALIASES`]), and the bare `DATABASE_URL` is honoured too.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use api::HttpSettings;
use domain::{auth::AuthSettings, crypto::SecretBox, secret::Secret};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use store::{Backend, DbSettings};

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Folder for the SQLite database, generated keys and uploaded files.
    pub data_dir: PathBuf,
    pub log: LogSettings,
    pub database: DbSettings,
    pub auth: AuthSettings,
    pub secrets: SecretsSettings,
    pub http: HttpSettings,
    pub models: ModelSettings,
    pub engine: domain::runs::EngineSettings,
    pub chat: domain::chat::ChatSettings,
    pub knowledge: domain::knowledge::jobs::KnowledgeSettings,
    pub mcp: domain::mcp::McpSettings,
    pub storage: domain::storage::StorageSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: PathBuf::from("./data"),
            log: LogSettings::default(),
            database: DbSettings::default(),
            auth: AuthSettings::default(),
            secrets: SecretsSettings::default(),
            http: HttpSettings::default(),
            models: ModelSettings::default(),
            engine: domain::runs::EngineSettings::default(),
            chat: domain::chat::ChatSettings::default(),
            knowledge: domain::knowledge::jobs::KnowledgeSettings::default(),
            mcp: domain::mcp::McpSettings::default(),
            storage: domain::storage::StorageSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (readable, the default) or `json` (one object per line).
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,store=debug`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSettings {
    /// 32-byte key (64 hex digits or base64) encrypting secrets at rest. Generated and kept
    /// in `<data_dir>/secrets.json` when unset. Every replica must use the same key.
    pub encryption_key: Option<Secret>,
}

/// Shortcuts for the common case; `OPENAI_API_KEY` and `OPENAI_BASE_URL` (the OpenAI SDKs'
/// own variables) land here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// `open` (the default): a model name the registry does not know goes to the default
    /// provider and is listed as seen, without prices. `strict`: only the registry's
    /// enabled models run.
    pub registry: domain::models::RegistryMode,
    /// The context budget, in tokens, of a model whose window is not known.
    pub default_context_window: i64,
    /// Creates a default OpenAI provider at start when no provider is configured.
    pub openai_api_key: Option<Secret>,
    /// With `openai_api_key`: another OpenAI-compatible endpoint.
    pub openai_base_url: Option<String>,
    /// Folder of local embedding models (one sub-folder per model, as sentence-transformers
    /// saves them); `<data_dir>/models` when unset.
    pub local_dir: Option<PathBuf>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        let registry = domain::models::RegistrySettings::default();
        ModelSettings {
            registry: registry.registry,
            default_context_window: registry.default_context_window,
            openai_api_key: None,
            openai_base_url: None,
            local_dir: None,
        }
    }
}

/// Short environment names for common settings, after the `SWITCHYARD_` prefix.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("database_url", "database.url"),
    ("admin_email", "auth.admin_email"),
    ("admin_password", "auth.admin_password"),
    ("jwt_secret", "auth.jwt_secret"),
    ("encryption_key", "secrets.encryption_key"),
    ("log_level", "log.level"),
    ("log_format", "log.format"),
    ("cors_allowed_origins", "http.cors_allowed_origins"),
    ("models_dir", "models.local_dir"),
];

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid setting `{setting}`: {message}")]
    Setting {
        setting: &'static str,
        message: String,
    },
}

fn env_key(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    match ENV_ALIASES.iter().find(|(alias, _)| *alias == key) {
        Some((_, path)) => (*path).to_string(),
        None => key.replace("__", "."),
    }
}

impl Config {
    /// Loads the layers and validates the result. Reads the process environment; load
    /// `.env` into it first if wanted.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.display().to_string()));
            }
            figment = figment.merge(Toml::file(file));
        }
        let figment = figment
            .merge(
                Env::raw()
                    .only(&["database_url"])
                    .map(|_| "database.url".into()),
            )
            .merge(
                Env::raw()
                    .only(&["openai_api_key", "openai_base_url"])
                    .map(|key| format!("models.{}", key.as_str().to_ascii_lowercase()).into()),
            )
            .merge(
                Env::prefixed("SWITCHYARD_")
                    .ignore(&["config"])
                    .filter_map(|key| Some(env_key(key.as_str()).into())),
            )
            .merge(Serialized::globals(cli));
        let config: Config = figment
            .extract()
            .map_err(|err| ConfigError::Invalid(describe(err)))?;
        config.validate()?;
        Ok(config)
    }

    /// The database URL in effect: the configured one, or `switchyard.db` in the data folder.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) if !url.is_empty() => url.expose().to_string(),
            _ => format!("sqlite://{}", self.data_dir.join("switchyard.db").display()),
        }
    }

    /// The local models folder in effect: the configured one, or `models` in the data folder.
    pub fn local_models_dir(&self) -> PathBuf {
        self.models
            .local_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let setting = |setting, message: &str| ConfigError::Setting {
            setting,
            message: message.to_string(),
        };
        if Backend::from_url(&self.database_url()).is_none() {
            return Err(setting(
                "database.url",
                "must start with sqlite:// or postgres:// (or postgresql://)",
            ));
        }
        if self.models.default_context_window < 1 {
            return Err(setting(
                "models.default_context_window",
                "must be at least 1 (tokens)",
            ));
        }
        if self.auth.access_token_ttl_minutes == 0 {
            return Err(setting(
                "auth.access_token_ttl_minutes",
                "must be at least 1",
            ));
        }
        if self.auth.login_max_failures_per_account == 0 || self.auth.login_max_failures_per_ip == 0
        {
            return Err(setting(
                "auth.login_max_failures_per_account",
                "login limits must be at least 1",
            ));
        }
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose().len() < 32
        {
            return Err(setting("auth.jwt_secret", "must be at least 32 characters"));
        }
        if let Some(key) = &self.secrets.encryption_key
            && SecretBox::parse_key(key.expose()).is_err()
        {
            return Err(setting(
                "secrets.encryption_key",
                "must be 32 bytes written as 64 hex digits or base64",
            ));
        }
        match (&self.auth.admin_email, &self.auth.admin_password) {
            (Some(_), None) => {
                return Err(setting(
                    "auth.admin_password",
                    "is required when auth.admin_email is set",
                ));
            }
            (None, Some(_)) => {
                return Err(setting(
                    "auth.admin_email",
                    "is required when auth.admin_password is set",
                ));
            }
            _ => {}
        }
        if let Some(email) = &self.auth.admin_email
            && domain::users::normalize_email(email).is_err()
        {
            return Err(setting("auth.admin_email", "is not a valid email address"));
        }
        if self.knowledge.workers > 16 {
            return Err(setting("knowledge.workers", "must be at most 16"));
        }
        if self.engine.max_steps < 1 {
            return Err(setting("engine.max_steps", "must be at least 1"));
        }
        if self.engine.max_run_seconds < 1 {
            return Err(setting("engine.max_run_seconds", "must be at least 1"));
        }
        if !(1..=100).contains(&self.engine.max_tool_rounds) {
            return Err(setting(
                "engine.max_tool_rounds",
                "must be between 1 and 100",
            ));
        }
        if self.engine.lease_renew_secs < 1 {
            return Err(setting("engine.lease_renew_secs", "must be at least 1"));
        }
        if self.engine.lease_expiry_secs < 2 * self.engine.lease_renew_secs {
            return Err(setting(
                "engine.lease_expiry_secs",
                "must be at least twice engine.lease_renew_secs, so one late renewal does not fail a live run",
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(setting("http.max_body_bytes", "must be at least 1024"));
        }
        if self.http.max_connections < 1 {
            return Err(setting("http.max_connections", "must be at least 1"));
        }
        if self.http.header_read_timeout_secs < 1 {
            return Err(setting(
                "http.header_read_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.http.body_read_timeout_secs < 1 {
            return Err(setting("http.body_read_timeout_secs", "must be at least 1"));
        }
        if let Some(origin) = self
            .http
            .cors_allowed_origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
        {
            return Err(ConfigError::Setting {
                setting: "http.cors_allowed_origins",
                message: format!("`{origin}` is not an http(s) origin"),
            });
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(setting(
                "log.level",
                "is not a valid filter (try `info` or `info,store=debug`)",
            ));
        }
        Ok(())
    }

    /// The configuration as TOML with every secret redacted, for `switchyard config print`.
    pub fn to_redacted_toml(&self) -> String {
        let mut shown = toml::Table::try_from(self).expect("the configuration serialises to TOML");
        // Show where the database is, but never its password.
        if let Some(toml::Value::Table(database)) = shown.get_mut("database") {
            database.insert(
                "url".into(),
                toml::Value::String(redact_url(&self.database_url())),
            );
        }
        toml::to_string_pretty(&shown).expect("a TOML table serialises")
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:[redacted]@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:[redacted]@{host}"),
        None => url.to_string(),
    }
}

/// One line naming the setting and the layer it came from, without the value.
fn describe(err: figment::Error) -> String {
    let mut lines = Vec::new();
    for err in err {
        let key = if err.path.is_empty() {
            String::new()
        } else {
            format!("setting `{}`: ", err.path.join("."))
        };
        let source = err
            .metadata
            .as_ref()
            .map(|m| match &m.source {
                Some(source) => format!(" (from {} {source})", m.name),
                None => format!(" (from {})", m.name),
            })
            .unwrap_or_default();
        lines.push(format!("{key}{}{source}", err.kind));
    }
    lines.join("; ")
}

// `Jail::expect_with` closures must return figment's large error type.
#[allow(clippy::result_large_err)]
#[cfg(test)]
mod tests {
    use figment::Jail;

    use super::*;

    fn load(jail: &Jail, file: Option<&str>) -> Result<Config, ConfigError> {
        let _ = jail;
        Config::load(file.map(Path::new), &CliOverrides::default())
    }

    #[test]
    fn defaults_need_no_settings() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let config = load(jail, None).unwrap();
            assert_eq!(config.bind.to_string(), "127.0.0.1:8000");
            assert_eq!(config.database_url(), "sqlite://./data/switchyard.db");
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "switchyard.toml",
                "bind = \"0.0.0.0:9000\"\n[auth]\naccess_token_ttl_minutes = 5\n[http]\ncors_allowed_origins = [\"http://a.test\"]\n",
            )?;
            jail.set_env("SWITCHYARD_AUTH__ACCESS_TOKEN_TTL_MINUTES", "7");
            jail.set_env("DATABASE_URL", "postgres://u:p@db/x");
            jail.set_env("SWITCHYARD_ADMIN_EMAIL", "root@example.com");
            jail.set_env("SWITCHYARD_ADMIN_PASSWORD", "12345678");
            jail.set_env("SWITCHYARD_CONFIG", "ignored.toml");
            let config = load(jail, Some("switchyard.toml")).unwrap();
            assert_eq!(config.bind.to_string(), "0.0.0.0:9000");
            assert_eq!(config.auth.access_token_ttl_minutes, 7);
            assert_eq!(config.http.cors_allowed_origins, ["http://a.test"]);
            assert_eq!(config.database_url(), "postgres://u:p@db/x");
            assert_eq!(config.auth.admin_password.unwrap().expose(), "12345678");

            jail.set_env("SWITCHYARD_DATABASE_URL", "sqlite://other.db");
            jail.set_env(
                "SWITCHYARD_CORS_ALLOWED_ORIGINS",
                "http://b.test, https://c.test",
            );
            let config = Config::load(
                Some(Path::new("switchyard.toml")),
                &CliOverrides {
                    bind: Some("127.0.0.1:1234".parse().unwrap()),
                    data_dir: None,
                },
            )
            .unwrap();
            assert_eq!(config.database_url(), "sqlite://other.db");
            assert_eq!(config.bind.to_string(), "127.0.0.1:1234");
            assert_eq!(
                config.http.cors_allowed_origins,
                ["http://b.test", "https://c.test"]
            );
            Ok(())
        });
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases: &[(&str, &str, &str)] = &[
            ("SWITCHYARD_BIND", "not-an-address", "`bind`"),
            ("SWITCHYARD_DATABASE_URL", "mysql://x", "`database.url`"),
            (
                "SWITCHYARD_AUTH__ACCESS_TOKEN_TTL_MINUTES",
                "0",
                "`auth.access_token_ttl_minutes`",
            ),
            (
                "SWITCHYARD_AUTH__ACCESS_TOKEN_TTL_MINUTES",
                "soon",
                "`auth.access_token_ttl_minutes`",
            ),
            ("SWITCHYARD_JWT_SECRET", "short", "`auth.jwt_secret`"),
            (
                "SWITCHYARD_ENCRYPTION_KEY",
                "nope",
                "`secrets.encryption_key`",
            ),
            (
                "SWITCHYARD_ADMIN_EMAIL",
                "root@example.com",
                "`auth.admin_password`",
            ),
            ("SWITCHYARD_LOG__FORMAT", "xml", "`log.format`"),
            ("SWITCHYARD_LOG_LEVEL", "info,[", "`log.level`"),
            (
                "SWITCHYARD_CORS_ALLOWED_ORIGINS",
                "ftp://x",
                "`http.cors_allowed_origins`",
            ),
            ("SWITCHYARD_NO_SUCH_THING", "1", "no_such_thing"),
        ];
        for (name, value, expected) in cases {
            Jail::expect_with(|jail| {
                jail.clear_env();
                jail.set_env(name, value);
                let err = load(jail, None).unwrap_err().to_string();
                assert!(err.contains(expected), "{name}={value}: {err}");
                Ok(())
            });
        }
        Jail::expect_with(|jail| {
            jail.clear_env();
            let err = load(jail, Some("missing.toml")).unwrap_err().to_string();
            assert!(err.contains("missing.toml"), "{err}");
            jail.create_file("bad.toml", "bind = [")?;
            let err = load(jail, Some("bad.toml")).unwrap_err().to_string();
            assert!(err.contains("bad.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn printed_config_hides_secrets() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(
                "SWITCHYARD_JWT_SECRET",
                "a-very-long-jwt-secret-that-is-32+chars",
            );
            jail.set_env("SWITCHYARD_ADMIN_EMAIL", "root@example.com");
            jail.set_env("SWITCHYARD_ADMIN_PASSWORD", "admin-password-1");
            jail.set_env("DATABASE_URL", "postgres://app:db-password@localhost/sy");
            let printed = load(jail, None).unwrap().to_redacted_toml();
            for secret in ["a-very-long-jwt-secret", "admin-password-1", "db-password"] {
                assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
            }
            assert!(
                printed.contains("postgres://app:[redacted]@localhost/sy"),
                "{printed}"
            );
            assert!(printed.contains("root@example.com"), "{printed}");
            Ok(())
        });
    }
}
