//! REST: room files ("storage"): `POST /upload` (multipart, streamed), `GET /files`,
//! `DELETE /upload`, and the public `GET /storage/<key>`. The first three take the account's
//! API key or a user's JWT (the socket's token), which allows that user's room only and
//! uploads as that user; the last needs nothing but the unguessable key. (Over our usual 600
//! lines: one resource, like every file of `http/`, a tenth of it its unit tests and another
//! its OpenAPI annotations.)

use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Multipart, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, OpenApi, PartialSchema, ToSchema};

use super::envelope::Reply;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::openapi::{Envelope, ErrorEnvelope};
use super::routes::Routes;
use crate::auth::AccountAuth;
use crate::domain::file::{displays_inline, MimeFilter, StorageFile};
use crate::domain::{AccountId, FileKey, RoomId, StoredFile, Timestamp, UserId};
use crate::error::ApiError;
use crate::rooms::files::Upload;
use crate::state::AppState;
use crate::store::files::FileFilter;
use crate::store::{Entity, RoomScope};

/// Longest `roomId` or `userId` form field read (a UUID is 36 bytes).
const MAX_ID_FIELD_BYTES: usize = 256;
/// What is still read of an upload refused half way, so that the client sees the answer
/// rather than a reset connection (as `extract::OVERSIZED_DRAIN_BYTES`).
const REFUSED_DRAIN_BYTES: usize = 8 * 1024 * 1024;
const REFUSED_DRAIN_TIME: Duration = Duration::from_secs(5);
/// Files never change under a key: caches may keep them for a year.
const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// A served file may run nothing, load nothing, and is its own unique origin.
const FILE_CSP: &str = "default-src 'none'; sandbox";

pub fn routes() -> Routes {
    // The size limit is `files.max_file_bytes`, counted while streaming.
    let upload = post(upload_file).layer(DefaultBodyLimit::disable());
    Routes::new()
        .method_router(Method::POST, "/upload", upload)
        .delete("/upload", delete_file)
        .get("/files", list_files)
        .get("/storage/{*key}", get_stored_file)
}

#[derive(OpenApi)]
#[openapi(paths(upload_file, list_files, delete_file, get_stored_file))]
pub struct Api;

/// An upload's form fields, in this order (`roomId` and `userId` before `file`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[expect(dead_code, reason = "describes what `upload_file` reads")]
struct UploadForm {
    /// May be left out with a user's JWT (its room).
    room_id: RoomId,
    /// May be left out with a user's JWT (its user).
    user_id: UserId,
    /// At most `files.max_file_bytes`; its type is sniffed from its first bytes.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// An ID, or empty (as if left out).
fn id_or_empty() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(RoomId::schema())
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([""])),
        )
        .into()
}

/// What `list_files` reads of its query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[expect(
    dead_code,
    reason = "describes what `list_files` reads with `QueryParams`"
)]
struct FilesQuery {
    /// The room (may be left out with a user's JWT).
    #[param(schema_with = id_or_empty)]
    room_id: Option<String>,
    /// Repeatable (OR); `image/` is the category.
    #[param(explode)]
    mime_type: Option<Vec<String>>,
    /// Uploaded by this user.
    #[param(schema_with = id_or_empty)]
    user_id: Option<String>,
}

/// A file's bytes, as stored.
struct FileBytes;

impl PartialSchema for FileBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for FileBytes {}

/// Where an uploaded file is.
#[derive(Serialize, ToSchema)]
struct UploadedFile {
    #[schema(value_type = String, example = "c3003c93/uploads/screenshot.png")]
    key: FileKey,
    url: String,
}

#[derive(Serialize, ToSchema)]
struct FileUploaded {
    file: UploadedFile,
}

#[derive(Serialize, ToSchema)]
struct FileList<'a> {
    /// Not paginated.
    files: Vec<StorageFile<'a>>,
}

#[derive(Serialize, ToSchema)]
struct FileDeleted {
    #[schema(value_type = String)]
    key: FileKey,
}

/// Whether a request is an upload: it gets `files.max_file_bytes` and
/// `files.upload_timeout_ms` instead of the usual body and time limits.
pub fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST
        && path.starts_with("/v1/accounts/")
        && path.trim_end_matches('/').ends_with("/upload")
        && path.split('/').count() == 5
}

/// Who calls a file endpoint: the account's backend, or one user of one room.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Backend(AccountId),
    User { scope: RoomScope, user_id: UserId },
}

impl Caller {
    fn account_id(self) -> AccountId {
        match self {
            Self::Backend(account) => account,
            Self::User { scope, .. } => scope.account_id,
        }
    }

    /// The room a request names, as this caller may use it: a user's own room only (and
    /// theirs when the request names none).
    fn room(self, named: Option<RoomId>) -> Result<RoomScope, ApiError> {
        match (self, named) {
            (Self::Backend(account_id), Some(room_id)) => Ok(RoomScope {
                account_id,
                room_id,
            }),
            (Self::Backend(_), None) => Err(ApiError::validation("roomId", "roomId is required")),
            (Self::User { scope, .. }, None) => Ok(scope),
            (Self::User { scope, .. }, Some(room_id)) if room_id == scope.room_id => Ok(scope),
            (Self::User { .. }, Some(_)) => Err(ApiError::NotAllowed(
                "This token is for another room".into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = bearer_jwt(&parts.headers) else {
            let auth = AccountAuth::from_request_parts(parts, state).await?;
            return Ok(Self::Backend(auth.account_id));
        };
        let claims = state
            .jwt()
            .verify(token, Timestamp::now())
            .map_err(|_| ApiError::Unauthorized)?;
        // Nested routers see their own part of the path; the account is in the original one.
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(parts.uri.path(), |original| original.path());
        let named = path
            .trim_start_matches('/')
            .split('/')
            .nth(2)
            .and_then(|id| id.parse::<AccountId>().ok());
        if named != Some(claims.account_id) {
            return Err(ApiError::Forbidden);
        }
        let scope = RoomScope {
            account_id: claims.account_id,
            room_id: claims.room_id,
        };
        // A deleted user's token opens nothing.
        state
            .store()
            .get_user(scope, claims.user_id)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Self::User {
            scope,
            user_id: claims.user_id,
        })
    }
}

/// The token of `Authorization: Bearer <token>` when it is a JWT (three dot-separated parts);
/// an API key's token (base64) has no dot.
fn bearer_jwt(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && token.split('.').count() == 3).then_some(token)
}

/// The server's public address: `files.public_url`, else `http://` and the request's host.
pub(crate) fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    let configured = &state.config().files.public_url;
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A multipart body that broke off or does not parse. Past the uploads' hard cap (the file
/// limit, `limit`, and its framing) it is too large.
fn bad_multipart(error: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::FileTooLarge { limit };
    }
    ApiError::BadRequest(
        format!(
            "The multipart body could not be read: {}",
            error.body_text()
        )
        .into(),
    )
}

/// A short text field (an ID), read whole.
async fn id_field<T: std::str::FromStr>(
    field: axum::extract::multipart::Field<'_>,
    name: &'static str,
    limit: u64,
) -> Result<T, ApiError> {
    let mut text = Vec::new();
    let mut field = field;
    while let Some(chunk) = field.chunk().await.map_err(|e| bad_multipart(e, limit))? {
        text.extend_from_slice(&chunk);
        if text.len() > MAX_ID_FIELD_BYTES {
            return Err(ApiError::validation(name, format!("{name} must be a UUID")));
        }
    }
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ApiError::validation(name, format!("{name} must be a UUID")))
}

/// Uploads a file to a room.
///
/// Takes the API key, or a user's JWT (its own room only, uploading as its user). Fires
/// `file.uploaded`.
#[utoipa::path(
    post, path = "/upload", tag = "Storage", operation_id = "upload_file",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "File uploaded", body = Envelope<FileUploaded>),
        (status = 404, description = "`NOT_FOUND`: no such room or user", body = ErrorEnvelope),
    )
)]
async fn upload_file(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Reply, ApiError> {
    let mut multipart = multipart.map_err(|_| {
        ApiError::BadRequest(
            "The body must be multipart/form-data with roomId, userId and file".into(),
        )
    })?;
    let base = public_base(&state, &headers);
    let limit = state.config().files.max_file_bytes;
    let (mut room_id, mut user_id): (Option<RoomId>, Option<UserId>) = (None, None);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_multipart(e, limit))?
    {
        match field.name() {
            Some("roomId") => room_id = Some(id_field(field, "roomId", limit).await?),
            Some("userId") => user_id = Some(id_field(field, "userId", limit).await?),
            Some("file") => {
                let scope = caller.room(room_id)?;
                let user_id = match (caller, user_id) {
                    (Caller::User { user_id, .. }, None) => user_id,
                    (Caller::User { user_id: own, .. }, Some(named)) if named == own => own,
                    (Caller::User { .. }, Some(_)) => {
                        return Err(ApiError::NotAllowed(
                            "A user's token uploads as that user only".into(),
                        ))
                    }
                    (Caller::Backend(_), Some(named)) => named,
                    (Caller::Backend(_), None) if room_id.is_some() => {
                        return Err(ApiError::validation("userId", "userId is required"))
                    }
                    (Caller::Backend(_), None) => {
                        return Err(ApiError::validation(
                            "roomId",
                            "roomId and userId must come before file",
                        ))
                    }
                };
                let filename = field.file_name().unwrap_or("file").to_owned();
                let upload = Upload {
                    scope,
                    user_id,
                    filename: &filename,
                    base_url: &base,
                };
                let chunks = field.by_ref().map_err(|error| {
                    tracing::info!(%error, "an upload's body broke off");
                    ApiError::BadRequest("The upload was interrupted".into())
                });
                let result = state.engine().upload_file(upload, chunks).await;
                return match result {
                    Ok(file) => Ok(Reply::created(
                        "File uploaded",
                        FileUploaded {
                            file: UploadedFile {
                                url: file.url(&base),
                                key: file.key,
                            },
                        },
                    )),
                    Err(error) => {
                        if matches!(
                            error,
                            ApiError::FileTooLarge { .. } | ApiError::QuotaExceeded { .. }
                        ) {
                            drain(&mut field).await;
                        }
                        Err(error)
                    }
                };
            }
            // As in every JSON body: a field the API does not take is refused, never dropped.
            // The rest (the file, likely) is read a while, so that the client sees why.
            other => {
                let name = other.unwrap_or_default().to_owned();
                let deadline = tokio::time::Instant::now() + REFUSED_DRAIN_TIME;
                let _ = tokio::time::timeout_at(deadline, drain(&mut field)).await;
                drop(field);
                let _ = tokio::time::timeout_at(deadline, async {
                    while let Ok(Some(mut later)) = multipart.next_field().await {
                        drain(&mut later).await;
                    }
                })
                .await;
                return Err(ApiError::validation(
                    name.clone(),
                    format!("Unknown field '{name}'"),
                ));
            }
        }
    }
    Err(ApiError::validation("file", "file is required"))
}

/// Reads (and drops) some more of a refused upload: see `REFUSED_DRAIN_BYTES`.
async fn drain(field: &mut axum::extract::multipart::Field<'_>) {
    let mut drained = 0;
    let _ = tokio::time::timeout(REFUSED_DRAIN_TIME, async {
        while let Ok(Some(chunk)) = field.chunk().await {
            drained += chunk.len();
            if drained > REFUSED_DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Takes the API key, or a user's JWT (its own room only).
#[utoipa::path(
    get, path = "/files", tag = "Storage", operation_id = "list_files",
    params(FilesQuery),
    responses(
        (status = 200, description = "Files retrieved", body = Envelope<FileList>),
        (status = 404, description = "`NOT_FOUND`: no such room", body = ErrorEnvelope),
    )
)]
async fn list_files(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Reply, ApiError> {
    let named = query
        .get("roomId")
        .filter(|t| !t.is_empty())
        .map(|text| {
            text.parse::<RoomId>()
                .map_err(|_| ApiError::not_found(Entity::Room))
        })
        .transpose()?;
    let scope = caller.room(named)?;
    state
        .store()
        .get_room(scope.account_id, scope.room_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    let uploaded_by = query
        .get("userId")
        .filter(|t| !t.is_empty())
        .map(|text| {
            text.parse::<UserId>()
                .map_err(|_| ApiError::validation("userId", "userId must be a UUID"))
        })
        .transpose()?;
    let mime_types = query
        .all("mimeType")
        .flat_map(|value| value.split(','))
        .filter(|value| !value.trim().is_empty())
        .map(MimeFilter::parse)
        .collect();
    let filter = FileFilter {
        mime_types,
        uploaded_by,
    };
    let files = state.store().list_files(scope, &filter).await?;
    let base = public_base(&state, &headers);
    let files = files.iter().map(|file| file.wire(&base)).collect();
    Ok(Reply::ok("Files retrieved", FileList { files }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeleteFileBody {
    #[schema(value_type = String, required = true, example = "c3003c93/uploads/screenshot.png")]
    key: Option<String>,
}

/// Takes the API key, or a user's JWT (files of its own room only). Fires `file.deleted`.
#[utoipa::path(
    delete, path = "/upload", tag = "Storage", operation_id = "delete_file",
    request_body = DeleteFileBody,
    responses(
        (status = 200, description = "File deleted", body = Envelope<FileDeleted>),
        (status = 404, description = "`NOT_FOUND`: no such file", body = ErrorEnvelope),
    )
)]
async fn delete_file(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DeleteFileBody>,
) -> Result<Reply, ApiError> {
    let text = body
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::validation("key", "key is required"))?;
    let key: FileKey = text
        .parse()
        .map_err(|_| ApiError::not_found(Entity::File))?;
    let room = match caller {
        Caller::Backend(_) => None,
        Caller::User { scope, .. } => Some(scope.room_id),
    };
    let base = public_base(&state, &headers);
    state
        .engine()
        .delete_file(caller.account_id(), room, &key, &base)
        .await?;
    Ok(Reply::ok("File deleted", FileDeleted { key }))
}

/// Marks an answer that must go out as it is: not compressed (its length, ranges and ETag
/// are those of the stored bytes).
#[derive(Debug, Clone, Copy)]
pub struct Uncompressed;

/// The public file: no credentials, the key is the secret. `HEAD` answers the same headers.
#[utoipa::path(
    get, path = "/storage/{key}", tag = "Storage", operation_id = "get_stored_file",
    security(()),
    params(
        ("key" = String, Path, description = "The file's key (it holds slashes)"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=0-99`"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` of a copy held"),
    ),
    responses(
        (status = 200, description = "The bytes, with the type sniffed at upload as `Content-Type`, `ETag`, `Content-Length`", content_type = "*/*", body = FileBytes),
        (status = 206, description = "The range asked for", content_type = "*/*", body = FileBytes),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 404, description = "`NOT_FOUND`: no such file", body = ErrorEnvelope),
        (status = 416, description = "`RANGE_NOT_SATISFIABLE`", body = ErrorEnvelope),
    )
)]
async fn get_stored_file(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    path: PathParams,
) -> Result<Response, ApiError> {
    let account_id: AccountId = path.id("accountId", Entity::File)?;
    let key: FileKey = path.id("key", Entity::File)?;
    let file = state
        .store()
        .get_file(account_id, &key)
        .await?
        .ok_or(ApiError::not_found(Entity::File))?;
    let etag = format!("\"{}\"", key.random_part());
    let size = u64::try_from(file.size).unwrap_or(0);
    let mut response = if not_modified(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(text) => match parse_range(text, size) {
                RangeAsked::Whole => None,
                RangeAsked::Part(range) => Some(range),
                RangeAsked::Unsatisfiable => {
                    let mut refused = ApiError::RangeNotSatisfiable.into_response();
                    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                        refused.headers_mut().insert(header::CONTENT_RANGE, value);
                    }
                    return Ok(refused);
                }
            },
            None => None,
        };
        file_body(&state, &file, &method, range, size).await?
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&content_disposition(&file)),
    );
    response.extensions_mut().insert(Uncompressed);
    Ok(response)
}

/// The bytes (all, or `range`) with their type and length; none for `HEAD`.
async fn file_body(
    state: &AppState,
    file: &StoredFile,
    method: &Method,
    range: Option<Range<u64>>,
    size: u64,
) -> Result<Response, ApiError> {
    let (status, length) = match &range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.end - range.start),
        None => (StatusCode::OK, size),
    };
    let body = if method == Method::HEAD || length == 0 {
        Body::empty()
    } else {
        let stream = state
            .engine()
            .storage()
            .read(file.account_id, &file.key, range.clone())
            .await
            .map_err(|error| match error {
                object_store::Error::NotFound { .. } => {
                    tracing::error!(key = %file.key, "a file's object is missing");
                    ApiError::not_found(Entity::File)
                }
                other => ApiError::Internal(anyhow::Error::new(other).context("reading a file")),
            })?;
        Body::from_stream(stream)
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&file.mime_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(range) = range {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{size}", range.start, range.end - 1)),
        );
    }
    Ok(response)
}

fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// `If-None-Match` names this file's ETag (or `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// `inline` for types a browser may show safely, else `attachment`; the name in ASCII and,
/// for the rest, percent-encoded UTF-8 (RFC 6266).
fn content_disposition(file: &StoredFile) -> String {
    let kind = if displays_inline(&file.mime_type) {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = file
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = file
        .filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsked {
    /// No usable range (malformed, or several: the whole file is the answer).
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range of a file of `size` bytes: `a-b`, `a-` or `-n` (the last n).
fn parse_range(text: &str, size: u64) -> RangeAsked {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeAsked::Whole;
    };
    if spec.contains(',') {
        return RangeAsked::Whole;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeAsked::Whole;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => Some((start, end.min(size.saturating_sub(1)))),
        (Ok(start), Err(_)) if end.is_empty() => Some((start, size.saturating_sub(1))),
        (Err(_), Ok(last)) if start.is_empty() => {
            if last == 0 {
                return RangeAsked::Unsatisfiable;
            }
            Some((size.saturating_sub(last), size.saturating_sub(1)))
        }
        _ => None,
    };
    match parsed {
        None => RangeAsked::Whole,
        Some((start, _)) if start >= size => RangeAsked::Unsatisfiable,
        Some((start, end)) => RangeAsked::Part(start..end + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsked::Part(0..10));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsked::Part(90..100));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsked::Part(90..100));
        assert_eq!(parse_range("bytes=95-200", 100), RangeAsked::Part(95..100));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsked::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsked::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAsked::Whole);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsked::Whole);
    }

    #[test]
    fn uploads_are_told_apart_by_method_and_path() {
        let id = AccountId::new();
        assert!(is_upload(
            &Method::POST,
            &format!("/v1/accounts/{id}/upload")
        ));
        assert!(!is_upload(
            &Method::DELETE,
            &format!("/v1/accounts/{id}/upload")
        ));
        assert!(!is_upload(
            &Method::POST,
            &format!("/v1/accounts/{id}/rooms/upload")
        ));
        assert!(!is_upload(&Method::POST, "/upload"));
    }

    #[test]
    fn etags_match_exactly_or_by_star() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(not_modified(&headers, "\"b\""));
        assert!(!not_modified(&headers, "\"c\""));
    }
}
