//! `Blobs` on local disk: one file per key under a folder (`<data_dir>/attachments`).
//!
//! Keys are attachment ids (`[A-Za-z0-9_-]`); anything else is refused, so a key can
//! never name a path outside the folder. Writes go to a temporary file first and are
//! renamed into place, so a reader never sees half a file.

use std::path::PathBuf;

use async_trait::async_trait;
use domain::{
    chat::Blobs,
    store::{StoreError, StoreResult},
};
use tokio::io::AsyncWriteExt;

pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn new(root: PathBuf) -> LocalBlobs {
        LocalBlobs { root }
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        let safe = !key.is_empty()
            && key.len() <= 128
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !safe {
            return Err(StoreError::Other(format!(
                "`{key}` is not a valid blob key"
            )));
        }
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
