//! The `s3` blob backend: S3-compatible object storage (AWS S3, MinIO, R2, Ceph…) through
//! the `object_store` crate, on the reqwest and rustls the rest of the server uses.
//!
//! Invariants:
//! - Keys are checked like every backend's (`[A-Za-z0-9_-]`, 1 to 128) and live under the
//!   configured prefix, so a key never reaches outside it.
//! - A request gives up within [`REQUEST_TIMEOUT`] and retries at most twice: an
//!   unreachable store fails an upload in seconds, not after object_store's default
//!   three minutes of retries.
//! - The secret key is handed to the client and kept nowhere else; errors name the
//!   bucket and key, never a credential.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use domain::{
    blobs::{Blobs, ObjectStores, S3Config, check_key},
    store::{StoreError, StoreResult},
};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder},
    path::Path,
};

/// How long one request to the store may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens S3-compatible stores for the blob router.
#[derive(Debug, Default, Clone, Copy)]
pub struct S3Stores;

impl ObjectStores for S3Stores {
    fn connect(&self, config: &S3Config) -> Result<Arc<dyn Blobs>, String> {
        Ok(Arc::new(S3Blobs::connect(config)?))
    }
}

/// One bucket (and prefix) of an S3-compatible store.
#[derive(Debug)]
pub struct S3Blobs {
    store: AmazonS3,
    bucket: String,
    prefix: Option<String>,
}

impl S3Blobs {
    pub fn connect(config: &S3Config) -> Result<S3Blobs, String> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose())
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_allow_http(
                        config
                            .endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 2,
                retry_timeout: Duration::from_secs(60),
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|err| err.to_string())?;
        Ok(S3Blobs {
            store,
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        })
    }

    fn path(&self, key: &str) -> StoreResult<Path> {
        check_key(key)?;
        Ok(match &self.prefix {
            Some(prefix) => Path::from(format!("{prefix}/{key}")),
            None => Path::from(key),
        })
    }

    fn error(&self, key: &str, err: object_store::Error) -> StoreError {
        StoreError::Unavailable(format!(
            "object storage (bucket `{}`, key `{key}`): {err}",
            self.bucket
        ))
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        let path = self.path(key)?;
        self.store
            .put(&path, PutPayload::from(bytes.to_vec()))
            .await
            .map(|_| ())
            .map_err(|err| self.error(key, err))
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let path = self.path(key)?;
        let read = match self.store.get(&path).await {
            Ok(read) => read,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(self.error(key, err)),
        };
        let bytes = read.bytes().await.map_err(|err| self.error(key, err))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.error(key, err)),
        }
    }
}
