//! File storage: the bytes of room files, in a local directory or an S3-compatible bucket,
//! through `object_store`. An object is named `<account id>/<key>`; its metadata is the
//! store's (`store::files`).

use std::ops::Range;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};

use crate::config::{Config, FilesBackend};
use crate::domain::{AccountId, FileKey};

/// Bytes an upload buffers before sending them on as one part: S3's smallest part (every
/// part but the last must hold at least 5 MiB).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight at once: with `PART_BYTES`, what one upload may hold in
/// memory is about 15 MiB, however large the file.
const PARTS_IN_FLIGHT: usize = 2;

pub type StorageError = object_store::Error;

/// Where files are kept. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    objects: Arc<dyn ObjectStore>,
    /// For logs: "local:<dir>" or "s3:<bucket>".
    name: String,
    /// The local backend's directory, where an upload cut short by a crash leaves its staged
    /// bytes (`<object>#1`) for `delete` to remove.
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.name)
    }
}

impl Storage {
    /// The configured backend: a directory (created private if missing) or a bucket.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        match config.files.backend {
            FilesBackend::Local => {
                let dir = config.files_dir();
                crate::data_dir::create(&dir)?;
                let objects = LocalFileSystem::new_with_prefix(&dir)
                    .with_context(|| format!("opening the files directory {}", dir.display()))?
                    // Deleting a room's last file removes its now empty directories.
                    .with_automatic_cleanup(true);
                Ok(Self {
                    objects: Arc::new(objects),
                    name: format!("local:{}", dir.display()),
                    local_root: Some(dir),
                })
            }
            FilesBackend::S3 => {
                let s3 = &config.files.s3;
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if !s3.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&s3.endpoint)
                        .with_allow_http(s3.endpoint.starts_with("http://"));
                }
                builder = if s3.access_key_id.is_empty() {
                    // Without credentials, sign nothing (rather than ask a cloud metadata
                    // service for some).
                    builder.with_skip_signature(true)
                } else {
                    builder
                        .with_access_key_id(&s3.access_key_id)
                        .with_secret_access_key(&s3.secret_access_key)
                };
                let objects = builder.build().context("configuring the S3 file backend")?;
                // An upload cut short by a crash leaves an incomplete multipart upload in the
                // bucket, invisible and never listed: a lifecycle rule
                // (AbortIncompleteMultipartUpload) removes those (docs/files.md).
                Ok(Self {
                    objects: Arc::new(objects),
                    name: format!("s3:{}", s3.bucket),
                    local_root: None,
                })
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(account_id: AccountId, key: &FileKey) -> Path {
        Path::from(format!("{account_id}/{key}"))
    }

    /// Starts writing a new object.
    pub async fn writer(
        &self,
        account_id: AccountId,
        key: &FileKey,
    ) -> Result<Writer, StorageError> {
        let upload = self
            .objects
            .put_multipart(&Self::path(account_id, key))
            .await?;
        Ok(Writer {
            upload: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
        })
    }

    /// An object's bytes (those of `range` only, when given), as they come.
    pub async fn read(
        &self,
        account_id: AccountId,
        key: &FileKey,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .objects
            .get_opts(&Self::path(account_id, key), options)
            .await?;
        Ok(result.into_stream())
    }

    /// Deletes an object (and, on local disk, what an upload of it cut short by a crash
    /// staged); one already gone is no error.
    pub async fn delete(&self, account_id: AccountId, key: &FileKey) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            // object_store stages a local upload in `<object>#<n>`; a key is written once, so
            // its upload is always the first.
            let staged = root.join(format!("{account_id}/{key}#1"));
            match tokio::fs::remove_file(&staged).await {
                Ok(()) => tracing::info!(%key, "removed the staged bytes of an unfinished upload"),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(%error, %key, "removing staged upload bytes failed"),
            }
        }
        match self.objects.delete(&Self::path(account_id, key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, account_id: AccountId, key: &FileKey) -> Result<bool, StorageError> {
        match self.objects.head(&Self::path(account_id, key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Every object that is named like a file of ours (anything else in a shared bucket is
    /// left alone).
    pub fn list(&self) -> BoxStream<'static, Result<(AccountId, FileKey), StorageError>> {
        self.objects
            .list(None)
            .try_filter_map(|meta| async move { Ok(parse_path(meta.location.as_ref())) })
            .boxed()
    }
}

/// `<account id>/<key>` back into its parts.
fn parse_path(path: &str) -> Option<(AccountId, FileKey)> {
    let (account, key) = path.split_once('/')?;
    Some((account.parse().ok()?, key.parse().ok()?))
}

/// A new object being written, part by part. Dropped without `finish`, it leaves nothing
/// visible (call `abort` to clean up what it staged).
pub struct Writer {
    upload: WriteMultipart,
}

impl Writer {
    /// Adds bytes, waiting while too many parts are in flight (so memory stays bounded).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.upload.write(bytes);
        Ok(())
    }

    /// Completes the object: from now on it is visible.
    pub async fn finish(self) -> Result<(), StorageError> {
        self.upload.finish().await.map(|_| ())
    }

    /// Abandons the object and what it staged.
    pub async fn abort(self) -> Result<(), StorageError> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_parse_back_and_foreign_ones_do_not() {
        let account = AccountId::new();
        let key = FileKey::generate(crate::domain::RoomId::new(), "a.png").unwrap();
        let path = Storage::path(account, &key);
        assert_eq!(parse_path(path.as_ref()), Some((account, key)));
        assert_eq!(parse_path("backups/db.sql"), None);
        assert_eq!(parse_path(&format!("{account}/notes.txt")), None);
    }
}
