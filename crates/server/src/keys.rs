//! The two keys the server needs: the secrets-at-rest key and the token signing key.
//!
//! Rules, in order:
//! - A key given in the configuration is used as is.
//! - Otherwise the encryption key lives in `<data_dir>/secrets.json` (mode 0600), created
//!   with a fresh key on first start.
//! - Otherwise the token signing key is generated once and stored in the database,
//!   encrypted with the encryption key, so every replica sharing the database signs alike.
//! - The database keeps a fingerprint of the encryption key. A server started with another
//!   key refuses to start rather than fail later on every stored secret.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use chrono::Utc;
use domain::{crypto::SecretBox, store::Store};
use serde::{Deserialize, Serialize};

use crate::config::Config;

const KEY_CHECK_SETTING: &str = "secrets.key_fingerprint";
const JWT_SETTING: &str = "auth.jwt_secret_encrypted";

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    encryption_key: String,
}

pub struct Keys {
    pub secret_box: SecretBox,
    pub jwt_secret: Vec<u8>,
}

fn secrets_path(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets.json")
}

fn encryption_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    if let Some(key) = &config.secrets.encryption_key {
        return SecretBox::parse_key(key.expose()).context("secrets.encryption_key is invalid");
    }
    let path = secrets_path(&config.data_dir);
    if path.exists() {
        let text = fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let file: SecretsFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid secrets file", path.display()))?;
        return SecretBox::parse_key(&file.encryption_key)
            .with_context(|| format!("the encryption key in {} is invalid", path.display()));
    }
    fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "could not create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let key = SecretBox::generate_key();
    let body = serde_json::to_string_pretty(&SecretsFile {
        encryption_key: key.clone(),
    })?;
    write_private(&path, body.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the encryption key for secrets at rest; back this file up");
    Ok(SecretBox::parse_key(&key).expect("a generated key parses"))
}

/// Writes a file only its owner can read; fails if it already exists (another process won).
fn write_private(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(body)?;
    file.sync_all()?;
    Ok(())
}

/// Resolves both keys; see the module documentation for the rules.
pub async fn resolve(config: &Config, store: &dyn Store) -> anyhow::Result<Keys> {
    let secret_box = SecretBox::new(&encryption_key(config)?);

    let fingerprint = serde_json::Value::String(secret_box.fingerprint().to_string());
    let stored = store
        .insert_setting_if_absent(KEY_CHECK_SETTING, &fingerprint, Utc::now())
        .await
        .context("could not read the encryption key fingerprint")?;
    if stored != fingerprint {
        bail!(
            "the encryption key does not match the one that encrypted this database's secrets \
             (fingerprint {} expected, {} given); start with the original key \
             (secrets.encryption_key or {})",
            stored.as_str().unwrap_or("?"),
            secret_box.fingerprint(),
            secrets_path(&config.data_dir).display()
        );
    }

    let jwt_secret = match &config.auth.jwt_secret {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None => {
            let fresh = serde_json::Value::String(secret_box.encrypt(&SecretBox::generate_key()));
            let stored = store
                .insert_setting_if_absent(JWT_SETTING, &fresh, Utc::now())
                .await
                .context("could not read the token signing key")?;
            let sealed = stored
                .as_str()
                .context("the stored token signing key is not a string")?;
            secret_box
                .decrypt(sealed)
                .context("the stored token signing key could not be decrypted")?
                .into_bytes()
        }
    };
    Ok(Keys {
        secret_box,
        jwt_secret,
    })
}
