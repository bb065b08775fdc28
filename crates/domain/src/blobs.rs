//! Where uploaded bytes live (chat attachments and knowledge files): the blob backend
//! setting (the local folder by default, the database, or S3-compatible object storage)
//! and the [`BlobRouter`] every replica reads and writes through.
//!
//! Invariants:
//! - The backend is one setting in the database (`storage.blobs`), so every replica uses
//!   the same one; a change is seen by other replicas within the settings cache's time
//!   to live.
//! - The S3 secret key is sealed with the secret box before it is stored, and is never
//!   returned: the settings say only whether one is set.
//! - A blob written before the backend changed is still found: a read that misses the
//!   current backend tries the others (a miss only; a hit costs one read), and a delete
//!   reaches every backend. Moving old blobs into the current backend
//!   ([`move_blobs`]) makes other machines see them too.
//! - A setting that names S3 is checked before it is saved: a probe object is written,
//!   read back and deleted, so a wrong key or bucket is refused, not found at the next
//!   upload.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Services,
    auth::Principal,
    crypto::SecretBox,
    secret::Secret,
    storage::{StorageError, StorageResult},
    store::{Store, StoreError, StoreResult},
};

/// The setting that names the blob backend.
pub const BLOBS_SETTING: &str = "storage.blobs";

/// Where attachment bytes and uploaded knowledge files are kept. Keys are 1 to 128 of
/// `[A-Za-z0-9_-]`.
#[async_trait]
pub trait Blobs: Send + Sync {
    async fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()>;
    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn delete(&self, key: &str) -> StoreResult<()>;
}

/// Whether `key` may name a blob: 1 to 128 of `[A-Za-z0-9_-]`. Every backend checks
/// it, so a key is never a path.
pub fn check_key(key: &str) -> StoreResult<()> {
    let safe = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if safe {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "`{key}` is not a valid blob key"
        )))
    }
}

/// Which backend new blobs go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobBackend {
    /// Files under `<data_dir>/attachments` (one machine, or a shared mount).
    #[default]
    Local,
    /// The `blobs` table of the database every replica shares.
    Database,
    /// An S3-compatible object store (AWS S3, MinIO, R2, Ceph…).
    S3,
}

impl BlobBackend {
    pub fn name(self) -> &'static str {
        match self {
            BlobBackend::Local => "local",
            BlobBackend::Database => "database",
            BlobBackend::S3 => "s3",
        }
    }
}

/// An S3-compatible store, ready to connect (the secret key opened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// The service's URL (MinIO, R2, Ceph…); AWS itself when absent.
    pub endpoint: Option<String>,
    /// Prepended to every key, with a `/`.
    pub prefix: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// Bucket in the path (`endpoint/bucket/key`) rather than the host name; most
    /// self-hosted stores want this.
    pub path_style: bool,
}

/// Opens S3-compatible stores (the `objects` crate; tests may give another).
pub trait ObjectStores: Send + Sync {
    fn connect(&self, config: &S3Config) -> Result<Arc<dyn Blobs>, String>;
}

/// The S3 part of the setting as stored: the secret key sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredS3 {
    bucket: String,
    region: String,
    endpoint: Option<String>,
    prefix: Option<String>,
    access_key_id: String,
    secret_access_key_sealed: String,
    path_style: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StoredSetting {
    backend: BlobBackend,
    s3: Option<StoredS3>,
}

/// The S3 settings as an administrator sees them: never the secret key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3View {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub prefix: Option<String>,
    pub access_key_id: String,
    /// Whether a secret key is stored (it is never shown).
    pub secret_access_key_set: bool,
    pub path_style: bool,
}

/// The blob backend setting as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSettings {
    pub backend: BlobBackend,
    pub s3: Option<S3View>,
}

/// S3 settings as an administrator writes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Input {
    pub bucket: String,
    /// `us-east-1` when absent (what most self-hosted stores expect).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    pub access_key_id: String,
    /// Required the first time; when absent, the stored one is kept.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Defaults to true when an endpoint is given, false for AWS.
    #[serde(default)]
    pub path_style: Option<bool>,
}

/// The blob backend setting as an administrator writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettingsInput {
    pub backend: BlobBackend,
    /// Required for `s3`; may be given with another backend to keep it for later.
    #[serde(default)]
    pub s3: Option<S3Input>,
}

fn view(stored: &StoredSetting) -> BlobSettings {
    BlobSettings {
        backend: stored.backend,
        s3: stored.s3.as_ref().map(|s3| S3View {
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            endpoint: s3.endpoint.clone(),
            prefix: s3.prefix.clone(),
            access_key_id: s3.access_key_id.clone(),
            secret_access_key_set: !s3.secret_access_key_sealed.is_empty(),
            path_style: s3.path_style,
        }),
    }
}

fn open(secret_box: &SecretBox, s3: &StoredS3) -> StoreResult<S3Config> {
    let secret = secret_box
        .decrypt(&s3.secret_access_key_sealed)
        .map_err(|_| {
            StoreError::Other(
                "the stored S3 secret key cannot be opened with this server's secrets key".into(),
            )
        })?;
    Ok(S3Config {
        bucket: s3.bucket.clone(),
        region: s3.region.clone(),
        endpoint: s3.endpoint.clone(),
        prefix: s3.prefix.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: Secret::new(secret),
        path_style: s3.path_style,
    })
}

async fn stored(store: &dyn Store) -> StoreResult<StoredSetting> {
    Ok(store
        .get_setting(BLOBS_SETTING)
        .await?
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default())
}

/// The blob backend setting (administrators).
pub async fn settings(services: &Services, actor: &Principal) -> StorageResult<BlobSettings> {
    actor.admin()?;
    Ok(view(&stored(services.store.as_ref()).await?))
}

fn clean(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Changes the blob backend (administrators). S3 settings are checked with a probe
/// object before they are saved.
pub async fn set_settings(
    services: &Services,
    actor: &Principal,
    input: BlobSettingsInput,
) -> StorageResult<BlobSettings> {
    actor.admin()?;
    let current = stored(services.store.as_ref()).await?;
    let s3 = match input.s3 {
        None => current.s3.clone(),
        Some(s3) => {
            let bucket = s3.bucket.trim().to_string();
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid_bucket {
                return Err(StorageError::Invalid(
                    "s3.bucket is a bucket name: 3 to 63 lowercase letters, digits, dots and hyphens"
                        .into(),
                ));
            }
            let endpoint = clean(s3.endpoint);
            if let Some(endpoint) = &endpoint
                && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            {
                return Err(StorageError::Invalid(
                    "s3.endpoint is the store's URL, starting with https:// or http://".into(),
                ));
            }
            let access_key_id = s3.access_key_id.trim().to_string();
            if access_key_id.is_empty() {
                return Err(StorageError::Invalid("s3.access_key_id is required".into()));
            }
            let sealed = match s3.secret_access_key.filter(|s| !s.is_empty()) {
                Some(secret) => services.secret_box.encrypt(secret.expose()),
                None => match &current.s3 {
                    Some(old) => old.secret_access_key_sealed.clone(),
                    None => {
                        return Err(StorageError::Invalid(
                            "s3.secret_access_key is required the first time".into(),
                        ));
                    }
                },
            };
            let prefix = clean(s3.prefix).map(|p| p.trim_matches('/').to_string());
            if let Some(prefix) = &prefix {
                let valid = prefix.len() <= 256
                    && prefix.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/')
                    })
                    && prefix
                        .split('/')
                        .all(|part| part != "." && part != ".." && !part.is_empty());
                if !valid && !prefix.is_empty() {
                    return Err(StorageError::Invalid(
                        "s3.prefix is up to 256 letters, digits, `-`, `_`, `.` and `/`, with no empty, `.` or `..` part"
                            .into(),
                    ));
                }
            }
            Some(StoredS3 {
                bucket,
                region: clean(s3.region).unwrap_or_else(|| "us-east-1".into()),
                path_style: s3.path_style.unwrap_or(endpoint.is_some()),
                endpoint,
                prefix: prefix.filter(|p| !p.is_empty()),
                access_key_id,
                secret_access_key_sealed: sealed,
            })
        }
    };
    if input.backend == BlobBackend::S3 {
        let Some(s3) = &s3 else {
            return Err(StorageError::Invalid(
                "the s3 backend needs its settings in `s3`".into(),
            ));
        };
        let config = open(&services.secret_box, s3)?;
        services.blobs.probe(&config).await.map_err(|err| {
            StorageError::Unreachable(format!("the S3 store refused a test object: {err}"))
        })?;
    }
    let setting = StoredSetting {
        backend: input.backend,
        s3,
    };
    services
        .store
        .put_setting(BLOBS_SETTING, &json!(setting), Utc::now())
        .await?;
    tracing::info!(
        by = %actor.user.email,
        backend = setting.backend.name(),
        "the blob backend changed"
    );
    Ok(view(&setting))
}

/// What [`move_blobs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// Blobs copied into the current backend (and removed from where they were).
    pub moved: u64,
    /// Blobs already there.
    pub in_place: u64,
    /// Records whose bytes no backend holds.
    pub missing: u64,
}

/// Copies every stored upload into the current backend, then removes it from the others,
/// so replicas on other machines can read blobs written before a change (administrators).
/// Safe to run again, and while the server serves: a blob is in the current backend
/// before it is removed from another.
pub async fn move_blobs(services: &Services, actor: &Principal) -> StorageResult<Moved> {
    actor.admin()?;
    let mut moved = Moved::default();
    let mut after: Option<String> = None;
    loop {
        let keys = services.store.blob_keys(after.as_deref(), 200).await?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        for key in keys {
            match services.blobs.move_to_current(&key).await? {
                Placement::Moved => moved.moved += 1,
                Placement::InPlace => moved.in_place += 1,
                Placement::Missing => moved.missing += 1,
            }
        }
        after = Some(last);
    }
    tracing::info!(by = %actor.user.email, ?moved, "moved blobs into the current backend");
    Ok(moved)
}

/// Where [`BlobRouter::move_to_current`] found a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Moved,
    InPlace,
    Missing,
}

/// The backend of the moment, and the others to look in for older blobs.
struct Backends {
    current: Arc<dyn Blobs>,
    others: Vec<(&'static str, Arc<dyn Blobs>)>,
}

/// Reads and writes blobs in the backend the setting names, finding older blobs in the
/// others. Built once at start; reads the (cached) setting at each call.
pub struct BlobRouter {
    store: Arc<dyn Store>,
    secret_box: Arc<SecretBox>,
    local: Arc<dyn Blobs>,
    database: Arc<dyn Blobs>,
    object_stores: Option<Arc<dyn ObjectStores>>,
    /// The S3 store last connected, with the settings it was made from.
    connected: Mutex<Option<(S3Config, Arc<dyn Blobs>)>>,
}

impl BlobRouter {
    pub fn new(
        store: Arc<dyn Store>,
        secret_box: Arc<SecretBox>,
        local: Arc<dyn Blobs>,
        database: Arc<dyn Blobs>,
        object_stores: Option<Arc<dyn ObjectStores>>,
    ) -> BlobRouter {
        BlobRouter {
            store,
            secret_box,
            local,
            database,
            object_stores,
            connected: Mutex::new(None),
        }
    }

    fn connect(&self, config: &S3Config) -> StoreResult<Arc<dyn Blobs>> {
        if let Some((made_from, store)) = self.connected.lock().unwrap().as_ref()
            && made_from == config
        {
            return Ok(store.clone());
        }
        let Some(object_stores) = &self.object_stores else {
            return Err(StoreError::Unavailable(
                "this build cannot reach S3-compatible object storage".into(),
            ));
        };
        let store = object_stores
            .connect(config)
            .map_err(|err| StoreError::Unavailable(format!("the S3 store: {err}")))?;
        *self.connected.lock().unwrap() = Some((config.clone(), store.clone()));
        Ok(store)
    }

    async fn backends(&self) -> StoreResult<Backends> {
        let setting = stored(self.store.as_ref()).await?;
        // An S3 store kept from before is still looked in for older blobs; one that
        // cannot be opened then only costs a warning.
        let s3 = match &setting.s3 {
            None => None,
            Some(s3) => match open(&self.secret_box, s3).and_then(|config| self.connect(&config)) {
                Ok(store) => Some(store),
                Err(err) if setting.backend == BlobBackend::S3 => return Err(err),
                Err(err) => {
                    tracing::warn!(error = %err, "the S3 store kept in the blob settings cannot be opened");
                    None
                }
            },
        };
        let mut all: Vec<(BlobBackend, Arc<dyn Blobs>)> = vec![
            (BlobBackend::Local, self.local.clone()),
            (BlobBackend::Database, self.database.clone()),
        ];
        if let Some(store) = &s3 {
            all.push((BlobBackend::S3, store.clone()));
        }
        let current = match setting.backend {
            BlobBackend::S3 => s3.ok_or_else(|| {
                StoreError::Unavailable("the blob backend is s3 but no S3 store is set".into())
            })?,
            BlobBackend::Local => self.local.clone(),
            BlobBackend::Database => self.database.clone(),
        };
        Ok(Backends {
            current,
            others: all
                .into_iter()
                .filter(|(backend, _)| *backend != setting.backend)
                .map(|(backend, store)| (backend.name(), store))
                .collect(),
        })
    }

    /// Writes, reads back and deletes a probe object in the store `config` names.
    pub async fn probe(&self, config: &S3Config) -> StoreResult<()> {
        let Some(object_stores) = &self.object_stores else {
            return Err(StoreError::Unavailable(
                "this build cannot reach S3-compatible object storage".into(),
            ));
        };
        let store = object_stores.connect(config).map_err(StoreError::Other)?;
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).expect("the system random generator failed");
        let key = format!("switchyard-probe-{}", hex::encode(random));
        store.put(&key, b"switchyard").await?;
        let read = store.get(&key).await?;
        store.delete(&key).await?;
        if read.as_deref() != Some(&b"switchyard"[..]) {
            return Err(StoreError::Other(
                "an object written could not be read back".into(),
            ));
        }
        Ok(())
    }

    /// Puts `key` into the current backend if it is elsewhere, then removes the other copies.
    pub async fn move_to_current(&self, key: &str) -> StoreResult<Placement> {
        let backends = self.backends().await?;
        let mut placement = if backends.current.get(key).await?.is_some() {
            Placement::InPlace
        } else {
            Placement::Missing
        };
        for (_, other) in &backends.others {
            if let Some(bytes) = other.get(key).await? {
                if placement == Placement::Missing {
                    backends.current.put(key, &bytes).await?;
                    placement = Placement::Moved;
                }
                other.delete(key).await?;
            }
        }
        Ok(placement)
    }
}

#[async_trait]
impl Blobs for BlobRouter {
    async fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        self.backends().await?.current.put(key, bytes).await
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let backends = self.backends().await?;
        if let Some(bytes) = backends.current.get(key).await? {
            return Ok(Some(bytes));
        }
        for (name, other) in &backends.others {
            match other.get(key).await {
                Ok(Some(bytes)) => return Ok(Some(bytes)),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(backend = name, key, error = %err, "could not look for a blob in an earlier backend")
                }
            }
        }
        Ok(None)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let backends = self.backends().await?;
        backends.current.delete(key).await?;
        for (name, other) in &backends.others {
            if let Err(err) = other.delete(key).await {
                tracing::warn!(backend = name, key, error = %err, "could not delete a blob from an earlier backend");
            }
        }
        Ok(())
    }
}
