//! Room files' metadata: `FileStore`, and its implementation on either database. The bytes
//! live in file storage (`crate::files`); a row exists before its object does (pending),
//! turns ready once the object is whole, and goes before the object does.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::dialect::{Column, Dialect};
use super::query::Sql;
use super::sql::{parse, SqlStore};
use super::{Entity, RoomScope, StoreError, StoreResult};
use crate::domain::file::MimeFilter;
use crate::domain::{
    AccountId, Event, EventKind, FileKey, NodeId, RoomId, StoredFile, Timestamp, UserId,
};

/// An upload about to write its first byte.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub key: FileKey,
    pub scope: RoomScope,
    pub uploaded_by: UserId,
    /// Sanitised.
    pub filename: String,
    pub started_at: Timestamp,
    /// The node writing it: if that node dies, the upload is swept.
    pub node_id: NodeId,
}

/// An upload whose object is whole.
#[derive(Debug, Clone)]
pub struct FinishedUpload<'a> {
    pub account_id: AccountId,
    pub key: &'a FileKey,
    pub mime_type: String,
    pub size: i64,
    /// What all the account's files may weigh together, in bytes.
    pub max_account_bytes: i64,
    /// The server's public address, for the StorageFile in the event.
    pub base_url: &'a str,
}

/// Which files of a room a list shows.
#[derive(Debug, Clone, Default)]
pub struct FileFilter {
    /// Any of these (none: all types).
    pub mime_types: Vec<MimeFilter>,
    pub uploaded_by: Option<UserId>,
}

#[async_trait]
pub trait FileStore: Send + Sync {
    /// Records an upload before its first byte is stored. `NotFound(Room)` or
    /// `NotFound(User)` unless the user belongs to the room.
    async fn begin_upload(&self, upload: &NewUpload) -> StoreResult<()>;
    /// Makes an upload's file visible, and records `file.uploaded`. `Quota` when the
    /// account's files would weigh more than allowed (checked under the account's lock, so
    /// concurrent uploads cannot pass it together); `NotFound(Room)` if the room went.
    async fn finish_upload(
        &self,
        done: &FinishedUpload<'_>,
    ) -> StoreResult<(StoredFile, Vec<Event>)>;
    /// Forgets an upload that did not finish (its object gone or never whole).
    async fn forget_upload(&self, account_id: AccountId, key: &FileKey) -> StoreResult<()>;
    /// What the account's files weigh together, in bytes.
    async fn account_file_bytes(&self, account_id: AccountId) -> StoreResult<i64>;
    /// A ready file.
    async fn get_file(
        &self,
        account_id: AccountId,
        key: &FileKey,
    ) -> StoreResult<Option<StoredFile>>;
    /// A room's ready files, newest first.
    async fn list_files(
        &self,
        scope: RoomScope,
        filter: &FileFilter,
    ) -> StoreResult<Vec<StoredFile>>;
    /// Deletes a ready file's row and records `file.deleted`; the caller deletes the object.
    /// `NotFound(File)` if there is none (in `room`, when given).
    async fn delete_file(
        &self,
        account_id: AccountId,
        room: Option<RoomId>,
        key: &FileKey,
        base_url: &str,
    ) -> StoreResult<(StoredFile, Vec<Event>)>;
    /// Every key of a room, pending uploads included: its objects, before the room goes.
    async fn room_file_keys(&self, scope: RoomScope) -> StoreResult<Vec<FileKey>>;
    /// Uploads that will never finish: pending on `this_node` (which is starting, so has
    /// none in flight) or on nodes whose heartbeat is older than `stale_before` or gone.
    async fn abandoned_uploads(
        &self,
        this_node: &NodeId,
        stale_before: Timestamp,
    ) -> StoreResult<Vec<(AccountId, FileKey)>>;
    /// Which of `keys` have a row (pending or ready).
    async fn known_file_keys(&self, keys: &[FileKey]) -> StoreResult<Vec<FileKey>>;
}

const FILE_COLUMNS: &str =
    "key, account_id, room_id, uploaded_by, filename, mime_type, size, uploaded_at";

#[derive(sqlx::FromRow)]
struct FileRow {
    key: String,
    account_id: String,
    room_id: String,
    uploaded_by: String,
    filename: String,
    mime_type: String,
    size: i64,
    uploaded_at: i64,
}

impl TryFrom<FileRow> for StoredFile {
    type Error = StoreError;

    fn try_from(row: FileRow) -> StoreResult<Self> {
        Ok(StoredFile {
            key: parse(&row.key, "file key")?,
            account_id: parse(&row.account_id, "account id")?,
            room_id: parse(&row.room_id, "room id")?,
            filename: row.filename,
            mime_type: row.mime_type,
            size: row.size,
            uploaded_at: Timestamp::from_millis(row.uploaded_at),
            uploaded_by: parse(&row.uploaded_by, "user id")?,
        })
    }
}

/// `text` as a `LIKE` pattern that matches itself at the start of a value (`ESCAPE '\'`).
fn like_prefix(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
impl<DB> FileStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn begin_upload(&self, upload: &NewUpload) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if !Self::lock_room(&mut tx, upload.scope).await? {
            return Err(StoreError::NotFound(Entity::Room));
        }
        if Self::fetch_user(&mut tx, upload.scope, upload.uploaded_by)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(Entity::User));
        }
        sqlx::query(
            "INSERT INTO files (key, account_id, room_id, uploaded_by, filename, mime_type, \
               size, uploaded_at, status, node_id) \
             VALUES ($1, $2, $3, $4, $5, '', 0, $6, 'pending', $7)",
        )
        .bind(upload.key.to_string())
        .bind(upload.scope.account_id.to_string())
        .bind(upload.scope.room_id.to_string())
        .bind(upload.uploaded_by.to_string())
        .bind(upload.filename.clone())
        .bind(upload.started_at.as_millis())
        .bind(upload.node_id.as_str().to_owned())
        .execute(&mut *tx)
        .await
        .map_err(|e| super::sql::conflict_or_database(e, Entity::File))?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_upload(
        &self,
        done: &FinishedUpload<'_>,
    ) -> StoreResult<(StoredFile, Vec<Event>)> {
        let mut tx = self.pool.begin().await?;
        // The account's lock: uploads of one account finish one at a time, each seeing what
        // the others stored.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(done.account_id.to_string())
            .execute(&mut *tx)
            .await?;
        let (used,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM files \
             WHERE account_id = $1 AND status = 'ready'",
        )
        .bind(done.account_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
        if used.saturating_add(done.size) > done.max_account_bytes {
            return Err(StoreError::Quota {
                limit: done.max_account_bytes,
            });
        }
        let now = Timestamp::now();
        let sql = format!(
            "UPDATE files SET status = 'ready', mime_type = $1, size = $2, uploaded_at = $3 \
             WHERE key = $4 AND account_id = $5 AND status = 'pending' RETURNING {FILE_COLUMNS}"
        );
        let row: FileRow = sqlx::query_as(&sql)
            .bind(done.mime_type.clone())
            .bind(done.size)
            .bind(now.as_millis())
            .bind(done.key.to_string())
            .bind(done.account_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            // The room went meanwhile, and its rows with it.
            .ok_or(StoreError::NotFound(Entity::Room))?;
        let file = StoredFile::try_from(row)?;
        let events =
            Self::file_event(&mut tx, EventKind::FileUploaded, &file, done.base_url, now).await?;
        tx.commit().await?;
        Ok((file, events))
    }

    async fn forget_upload(&self, account_id: AccountId, key: &FileKey) -> StoreResult<()> {
        sqlx::query("DELETE FROM files WHERE key = $1 AND account_id = $2 AND status = 'pending'")
            .bind(key.to_string())
            .bind(account_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn account_file_bytes(&self, account_id: AccountId) -> StoreResult<i64> {
        let (used,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM files \
             WHERE account_id = $1 AND status = 'ready'",
        )
        .bind(account_id.to_string())
        .fetch_one(&self.reads)
        .await?;
        Ok(used)
    }

    async fn get_file(
        &self,
        account_id: AccountId,
        key: &FileKey,
    ) -> StoreResult<Option<StoredFile>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files \
             WHERE key = $1 AND account_id = $2 AND status = 'ready'"
        );
        let row: Option<FileRow> = sqlx::query_as(&sql)
            .bind(key.to_string())
            .bind(account_id.to_string())
            .fetch_optional(&self.reads)
            .await?;
        row.map(StoredFile::try_from).transpose()
    }

    async fn list_files(
        &self,
        scope: RoomScope,
        filter: &FileFilter,
    ) -> StoreResult<Vec<StoredFile>> {
        let mut list = Sql::new(format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE status = 'ready' AND account_id = "
        ));
        list.bind(scope.account_id.to_string())
            .push(" AND room_id = ")
            .bind(scope.room_id.to_string());
        if let Some(user) = filter.uploaded_by {
            list.push(" AND uploaded_by = ").bind(user.to_string());
        }
        if !filter.mime_types.is_empty() {
            list.push(" AND (");
            for (i, mime) in filter.mime_types.iter().enumerate() {
                if i > 0 {
                    list.push(" OR ");
                }
                match mime {
                    MimeFilter::Exact(exact) => {
                        list.push("mime_type = ").bind(exact.clone());
                    }
                    MimeFilter::Category(category) => {
                        list.push("mime_type LIKE ")
                            .bind(like_prefix(category))
                            .push(" ESCAPE '\\'");
                    }
                }
            }
            list.push(")");
        }
        list.push(" ORDER BY uploaded_at DESC, key");
        let rows: Vec<FileRow> = list.query_as::<DB, _>().fetch_all(&self.reads).await?;
        rows.into_iter().map(StoredFile::try_from).collect()
    }

    async fn delete_file(
        &self,
        account_id: AccountId,
        room: Option<RoomId>,
        key: &FileKey,
        base_url: &str,
    ) -> StoreResult<(StoredFile, Vec<Event>)> {
        let mut tx = self.pool.begin().await?;
        let mut delete = Sql::new("DELETE FROM files WHERE status = 'ready' AND key = ");
        delete
            .bind(key.to_string())
            .push(" AND account_id = ")
            .bind(account_id.to_string());
        if let Some(room) = room {
            delete.push(" AND room_id = ").bind(room.to_string());
        }
        delete.push(&format!(" RETURNING {FILE_COLUMNS}"));
        let row: FileRow = delete
            .query_as::<DB, _>()
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(Entity::File))?;
        let file = StoredFile::try_from(row)?;
        let events = Self::file_event(
            &mut tx,
            EventKind::FileDeleted,
            &file,
            base_url,
            Timestamp::now(),
        )
        .await?;
        tx.commit().await?;
        Ok((file, events))
    }

    async fn room_file_keys(&self, scope: RoomScope) -> StoreResult<Vec<FileKey>> {
        let keys: Vec<(String,)> =
            sqlx::query_as("SELECT key FROM files WHERE room_id = $1 AND account_id = $2")
                .bind(scope.room_id.to_string())
                .bind(scope.account_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        keys.iter().map(|(key,)| parse(key, "file key")).collect()
    }

    async fn abandoned_uploads(
        &self,
        this_node: &NodeId,
        stale_before: Timestamp,
    ) -> StoreResult<Vec<(AccountId, FileKey)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT account_id, key FROM files WHERE status = 'pending' AND (node_id = $1 \
               OR node_id NOT IN (SELECT id FROM nodes WHERE heartbeat_at >= $2))",
        )
        .bind(this_node.as_str().to_owned())
        .bind(stale_before.as_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|(account, key)| Ok((parse(account, "account id")?, parse(key, "file key")?)))
            .collect()
    }

    async fn known_file_keys(&self, keys: &[FileKey]) -> StoreResult<Vec<FileKey>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = Sql::new("SELECT key FROM files WHERE key");
        query.in_list(keys.iter().map(|key| key.to_string()));
        let rows: Vec<(String,)> = query.query_as::<DB, _>().fetch_all(&self.pool).await?;
        rows.iter().map(|(key,)| parse(key, "file key")).collect()
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    /// Records a `file.*` event about `file`, with its room and uploader as they are now (the
    /// uploader may have been deleted: then no user).
    async fn file_event(
        conn: &mut DB::Connection,
        kind: EventKind,
        file: &StoredFile,
        base_url: &str,
        at: Timestamp,
    ) -> StoreResult<Vec<Event>> {
        let scope = RoomScope {
            account_id: file.account_id,
            room_id: file.room_id,
        };
        let room = Self::fetch_room(&mut *conn, scope).await?;
        let user = Self::fetch_user(&mut *conn, scope, file.uploaded_by).await?;
        let events =
            vec![Event::new(kind, &room, user.as_ref(), Vec::new(), at)
                .with_file(file.json(base_url))];
        Self::record_events(&mut *conn, &events).await?;
        Ok(events)
    }
}
