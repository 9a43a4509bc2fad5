//! Room files as the engine changes them: an upload streamed into storage under a pending
//! row and made visible once whole (within the size limit and the account's quota), a file
//! deleted, a room's files deleted with it, and what crashes left behind swept at start.
//! Each change is announced through `publish` (`file.*` webhooks, `file*` socket events).

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::actor::RoomCommand;
use super::events::ServerEvent;
use super::publish::Outcome;
use super::Engine;
use crate::domain::file::{sanitize_filename, sniff_mime, SNIFF_BYTES};
use crate::domain::{AccountId, Event, FileKey, RoomId, StoredFile, Timestamp, UserId};
use crate::error::ApiError;
use crate::files::{Storage, StorageError, Writer};
use crate::store::files::{FinishedUpload, NewUpload};
use crate::store::RoomScope;

/// Objects checked against the database at once while sweeping.
const SWEEP_BATCH: usize = 500;

/// An upload about to stream.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub scope: RoomScope,
    pub user_id: UserId,
    /// As the client named it (sanitised here).
    pub filename: &'a str,
    /// The server's public address, for the file's URL.
    pub base_url: &'a str,
}

/// What a sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub abandoned_uploads: usize,
    pub orphan_objects: usize,
}

impl Engine {
    pub fn storage(&self) -> &Storage {
        &self.0.files
    }

    /// Streams a file into storage and makes it visible. Nothing of it is left, neither row
    /// nor object, if it fails (too large, over quota, the client gone, the room deleted) or
    /// if this future is dropped half way.
    pub async fn upload_file<S, E>(
        &self,
        upload: Upload<'_>,
        bytes: S,
    ) -> Result<StoredFile, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<ApiError>,
    {
        let config = &self.config().files;
        let account_id = upload.scope.account_id;
        let used = self.store().account_file_bytes(account_id).await?;
        let quota_left = u64::try_from(config.max_account_bytes.saturating_sub(used)).unwrap_or(0);
        if quota_left == 0 {
            return Err(ApiError::QuotaExceeded {
                limit: config.max_account_bytes,
            });
        }
        let filename = sanitize_filename(upload.filename);
        let key = FileKey::generate(upload.scope.room_id, &filename).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("no randomness for a file key: {e}"))
        })?;
        self.store()
            .begin_upload(&NewUpload {
                key: key.clone(),
                scope: upload.scope,
                uploaded_by: upload.user_id,
                filename: filename.clone(),
                started_at: Timestamp::now(),
                node_id: self.hub().node_id().clone(),
            })
            .await?;
        let mut pending = Pending {
            engine: self.clone(),
            account_id,
            key: key.clone(),
            writer: None,
            armed: true,
        };
        let written = match self.stream_into(&mut pending, bytes, quota_left).await {
            Ok(written) => written,
            Err(error) => {
                pending.clean_up().await;
                return Err(error);
            }
        };
        let finished = self
            .store()
            .finish_upload(&FinishedUpload {
                account_id,
                key: &key,
                mime_type: sniff_mime(&written.head, &filename),
                size: i64::try_from(written.size).unwrap_or(i64::MAX),
                max_account_bytes: config.max_account_bytes,
                base_url: upload.base_url,
            })
            .await;
        let (file, events) = match finished {
            Ok(done) => done,
            Err(error) => {
                pending.clean_up().await;
                return Err(error.into());
            }
        };
        pending.armed = false;
        let frame = ServerEvent::FileUploaded {
            file: &file.json(upload.base_url),
        }
        .encode();
        self.announce(file.room_id, events, frame).await;
        Ok(file)
    }

    /// The bytes into a new object, within the file size limit and what is left of the quota;
    /// the object is whole when this returns `Ok`.
    async fn stream_into<S, E>(
        &self,
        pending: &mut Pending,
        bytes: S,
        quota_left: u64,
    ) -> Result<Written, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Into<ApiError>,
    {
        let config = &self.config().files;
        let storage_failed = |error: StorageError| {
            ApiError::Internal(anyhow::Error::new(error).context("writing a file to storage"))
        };
        pending.writer = Some(
            self.storage()
                .writer(pending.account_id, &pending.key)
                .await
                .map_err(storage_failed)?,
        );
        let mut written = Written::default();
        let mut bytes = std::pin::pin!(bytes);
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(Into::into)?;
            written.size += chunk.len() as u64;
            if written.size > config.max_file_bytes {
                return Err(ApiError::FileTooLarge {
                    limit: config.max_file_bytes,
                });
            }
            if written.size > quota_left {
                return Err(ApiError::QuotaExceeded {
                    limit: config.max_account_bytes,
                });
            }
            if written.head.len() < SNIFF_BYTES {
                let take = chunk.len().min(SNIFF_BYTES - written.head.len());
                written.head.extend_from_slice(&chunk[..take]);
            }
            let writer = pending.writer.as_mut().expect("the writer is set above");
            writer.write(&chunk).await.map_err(storage_failed)?;
        }
        let writer = pending.writer.take().expect("the writer is set above");
        writer.finish().await.map_err(storage_failed)?;
        Ok(written)
    }

    /// Deletes a ready file (of `room`, when given): its row, then its object.
    pub async fn delete_file(
        &self,
        account_id: AccountId,
        room: Option<RoomId>,
        key: &FileKey,
        base_url: &str,
    ) -> Result<StoredFile, ApiError> {
        let (file, events) = self
            .store()
            .delete_file(account_id, room, key, base_url)
            .await?;
        if let Err(error) = self.storage().delete(account_id, key).await {
            // The row is gone: the object is an orphan, swept at the next start.
            tracing::warn!(%error, %key, "deleting a file's object failed");
        }
        let frame = ServerEvent::FileDeleted {
            key: &file.key,
            file: &file.json(base_url),
        }
        .encode();
        self.announce(file.room_id, events, frame).await;
        Ok(file)
    }

    /// Deletes the objects of rooms' files (their rows went with the rooms, or go now).
    pub async fn delete_room_objects(&self, account_id: AccountId, keys: Vec<FileKey>) {
        for key in keys {
            if let Err(error) = self.storage().delete(account_id, &key).await {
                tracing::warn!(%error, %key, "deleting a deleted room's file failed; swept at the next start");
            }
        }
    }

    async fn announce(&self, room_id: RoomId, events: Vec<Event>, frame: super::outbox::Utf8Bytes) {
        self.publish(Outcome {
            room_id,
            events,
            notice: Some(RoomCommand::Publish {
                except: None,
                frames: vec![frame],
                version: None,
            }),
        })
        .await;
    }

    /// Uploads that never finished (this node's previous run, dead nodes), then objects with
    /// no row (a crash between deleting a row and its object): deleted. Safe while other
    /// nodes upload: their objects always have a row first.
    pub async fn sweep_abandoned_uploads(&self) -> anyhow::Result<usize> {
        let store = self.store();
        let now = Timestamp::now();
        let stale_before = if store.shared() {
            now.plus_millis(-(self.hub().config().node_timeout().as_millis() as i64))
        } else {
            // One node per SQLite file: whatever is pending is this node's past.
            now.plus_millis(1)
        };
        let abandoned = store
            .abandoned_uploads(self.hub().node_id(), stale_before)
            .await?;
        for (account_id, key) in &abandoned {
            self.storage().delete(*account_id, key).await?;
            store.forget_upload(*account_id, key).await?;
        }
        Ok(abandoned.len())
    }

    /// Objects that have no row: deleted.
    pub async fn sweep_orphan_objects(&self) -> anyhow::Result<usize> {
        let mut objects = self.storage().list().chunks(SWEEP_BATCH);
        let mut swept = 0;
        while let Some(batch) = objects.next().await {
            let batch = batch.into_iter().collect::<Result<Vec<_>, _>>()?;
            let keys: Vec<FileKey> = batch.iter().map(|(_, key)| key.clone()).collect();
            let known = self.store().known_file_keys(&keys).await?;
            for (account_id, key) in batch {
                if !known.contains(&key) {
                    self.storage().delete(account_id, &key).await?;
                    swept += 1;
                }
            }
        }
        Ok(swept)
    }

    /// Both sweeps, logged.
    pub async fn sweep_files(&self) -> anyhow::Result<Swept> {
        let swept = Swept {
            abandoned_uploads: self.sweep_abandoned_uploads().await?,
            orphan_objects: self.sweep_orphan_objects().await?,
        };
        if swept != Swept::default() {
            tracing::info!(?swept, "swept files left behind");
        }
        Ok(swept)
    }
}

/// What an upload wrote: its size, and its first bytes (to tell its type).
#[derive(Default)]
struct Written {
    size: u64,
    head: Vec<u8>,
}

/// An upload not yet visible. Cleaned up (object, staged parts, row) by `clean_up`, or, if
/// the request is dropped half way (the client went), on a task of its own.
struct Pending {
    engine: Engine,
    account_id: AccountId,
    key: FileKey,
    writer: Option<Writer>,
    armed: bool,
}

impl Pending {
    async fn clean_up(&mut self) {
        self.armed = false;
        remove(&self.engine, self.account_id, &self.key, self.writer.take()).await;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (engine, account_id, key, writer) = (
            self.engine.clone(),
            self.account_id,
            self.key.clone(),
            self.writer.take(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove(&engine, account_id, &key, writer).await });
        }
    }
}

/// The object first, then the row: an object never outlives its row unswept.
async fn remove(engine: &Engine, account_id: AccountId, key: &FileKey, writer: Option<Writer>) {
    if let Some(writer) = writer {
        if let Err(error) = writer.abort().await {
            tracing::warn!(%error, %key, "aborting an upload failed");
        }
    }
    if let Err(error) = engine.storage().delete(account_id, key).await {
        tracing::warn!(%error, %key, "deleting an unfinished upload's object failed");
        return;
    }
    if let Err(error) = engine.store().forget_upload(account_id, key).await {
        tracing::warn!(%error, %key, "forgetting an unfinished upload failed; swept at the next start");
    }
}
