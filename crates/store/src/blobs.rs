//! `Blobs` on local disk (one file per key under `<data_dir>/attachments`) and in the
//! database (the `blobs` table, for replicas that share no disk and no object store).
//!
//! Keys are attachment ids and knowledge file names (`[A-Za-z0-9_-]`); anything else is
//! refused by every backend, so a key can never name a path outside the folder. Local
//! writes go to a temporary file first and are renamed into place, and database writes
//! are one statement, so a reader never sees half a blob.

use std::path::PathBuf;

use async_trait::async_trait;
use domain::{
    blobs::check_key,
    chat::Blobs,
    store::{StoreError, StoreResult},
};
use tokio::io::AsyncWriteExt;

use crate::{Db, store_error, stored_time, with_pool, with_writer};

pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn new(root: PathBuf) -> LocalBlobs {
        LocalBlobs { root }
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_error(err: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("the attachment folder: {err}"))
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        let path = self.path(key)?;
        let mut folder = tokio::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        folder.mode(0o700);
        folder.create(&self.root).await.map_err(io_error)?;
        let partial = path.with_extension("partial");
        // Uploaded files are private to the server's user, like the database.
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&partial).await.map_err(io_error)?;
        file.write_all(bytes).await.map_err(io_error)?;
        file.flush().await.map_err(io_error)?;
        drop(file);
        tokio::fs::rename(&partial, &path).await.map_err(io_error)
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(key)?).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error(err)),
        }
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io_error(err)),
            _ => Ok(()),
        }
    }
}

/// The `database` blob backend: a row per key in `blobs`.
#[async_trait]
impl Blobs for Db {
    async fn put(&self, key: &str, bytes: &[u8]) -> StoreResult<()> {
        check_key(key)?;
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let now = stored_time(chrono::Utc::now());
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO blobs (key, bytes, size, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET bytes = excluded.bytes, size = excluded.size,
                 created_at = excluded.created_at",
            )
            .bind(key)
            .bind(bytes)
            .bind(size)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        check_key(key)?;
        let row: Option<(Vec<u8>,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT bytes FROM blobs WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        Ok(row.map(|(bytes,)| bytes))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        check_key(key)?;
        with_writer!(self, pool => {
            sqlx::query("DELETE FROM blobs WHERE key = $1")
                .bind(key)
                .execute(pool)
                .await
                .map(|_| ())
        })
        .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_refuse_odd_keys() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobs::new(dir.path().join("attachments"));
        blobs.put("atc_1", b"hello").await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir.path().join("attachments/atc_1")), 0o600);
            assert_eq!(mode(dir.path().join("attachments")), 0o700);
        }
        assert_eq!(
            blobs.get("atc_1").await.unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        blobs.delete("atc_1").await.unwrap();
        assert_eq!(blobs.get("atc_1").await.unwrap(), None);
        blobs.delete("atc_1").await.unwrap();
        assert!(blobs.put("../escape", b"x").await.is_err());
        assert!(blobs.get("a/b").await.is_err());
    }
}
