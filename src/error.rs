//! `ApiError`: every client-visible failure, mapped in one place to its HTTP status and the
//! documented error code, for both transports (the REST envelope renders it in `http`, the
//! socket's error frames in `realtime`). Internal details are logged once and never sent.

use std::borrow::Cow;

use axum::http::StatusCode;

use crate::store::{Entity, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized")]
    Unauthorized,
    /// Valid credentials for another account.
    #[error("forbidden")]
    Forbidden,
    /// The caller may not do this (edit another user's comment, read another room).
    #[error("{0}")]
    NotAllowed(Cow<'static, str>),
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    #[error("body over {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// An uploaded file over `files.max_file_bytes`.
    #[error("file over {limit} bytes")]
    FileTooLarge { limit: u64 },
    /// An account's files would pass `files.max_account_bytes`.
    #[error("file quota of {limit} bytes")]
    QuotaExceeded { limit: i64 },
    /// A `Range` that the file does not have.
    #[error("range not satisfiable")]
    RangeNotSatisfiable,
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// The body did not arrive whole within `http.body_read_timeout_ms`.
    #[error("request body timed out")]
    RequestTimeout,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("service unavailable")]
    Unavailable,
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A JSON document that did not fit the expected type: `BAD_REQUEST` when it is not JSON
    /// at all, else `VALIDATION_ERROR` naming the field (an unknown one, a missing one, or the
    /// one of the wrong type).
    pub fn from_deserialize(error: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if !matches!(inner.classify(), serde_json::error::Category::Data) {
            return Self::BadRequest(format!("Malformed JSON: {inner}").into());
        }
        let text = inner.to_string();
        // serde_json ends messages with " at line L column C", which says nothing useful here.
        let text = text
            .rfind(" at line ")
            .map_or(text.as_str(), |i| &text[..i]);
        let backticked = |marker: &str| {
            text.strip_prefix(marker)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_owned)
        };
        if let Some(field) = backticked("unknown field `") {
            return Self::validation(field.clone(), format!("Unknown field '{field}'"));
        }
        if let Some(field) = backticked("missing field `") {
            return Self::validation(field.clone(), format!("{field} is required"));
        }
        let field = if path == "." { "body".to_owned() } else { path };
        Self::validation(field.clone(), format!("{field}: {text}"))
    }

    /// Deserializes an already parsed JSON value, with the errors of `from_deserialize`.
    pub fn parse_value<T: serde::de::DeserializeOwned>(
        value: serde_json::Value,
    ) -> Result<T, Self> {
        serde_path_to_error::deserialize(value).map_err(Self::from_deserialize)
    }

    /// Refuses a JSON document holding a string the database cannot store (see
    /// `domain::text`), naming where it is; `outer` names the document itself.
    pub fn check_storable(value: &serde_json::Value, outer: &str) -> Result<(), Self> {
        match crate::domain::text::unstorable_path(value) {
            None => Ok(()),
            Some(path) => {
                let field = if path.is_empty() {
                    outer.to_owned()
                } else {
                    path
                };
                let message = format!("{field} must not contain NUL characters");
                Err(Self::validation(field, message))
            }
        }
    }

    pub fn not_found(what: Entity) -> Self {
        Self::NotFound(Cow::Borrowed(match what {
            Entity::Account => "Account not found",
            Entity::ApiKey => "API key not found",
            Entity::Room => "Room not found",
            Entity::User => "User not found",
            Entity::Store => "Store not found: declare its schema first",
            Entity::Entry => "Entry not found",
            Entity::Thread => "Thread not found",
            Entity::Comment => "Comment not found",
            Entity::Webhook => "Webhook not found",
            Entity::Workflow => "Workflow not found",
            Entity::File => "File not found",
            Entity::Login => "Login not found",
            Entity::Member => "Member not found",
            Entity::Invitation => "Invitation not found, used already, or expired",
        }))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) | Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. }
            | Self::FileTooLarge { .. }
            | Self::QuotaExceeded { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden | Self::NotAllowed(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Validation { .. } => "VALIDATION_ERROR",
            Self::Conflict(_) => "CONFLICT",
            Self::PayloadTooLarge { .. }
            | Self::FileTooLarge { .. }
            | Self::QuotaExceeded { .. } => "PAYLOAD_TOO_LARGE",
            Self::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Self::Unauthorized => "Invalid or missing authentication credentials".into(),
            Self::Forbidden => "These credentials do not give access to this account".into(),
            Self::NotFound(message)
            | Self::BadRequest(message)
            | Self::Conflict(message)
            | Self::NotAllowed(message) => message.clone(),
            Self::MethodNotAllowed => "Method not allowed on this route".into(),
            Self::Validation { message, .. } => message.clone().into(),
            Self::PayloadTooLarge { limit } => {
                format!("Request body is larger than {limit} bytes").into()
            }
            Self::FileTooLarge { limit } => format!("File is larger than {limit} bytes").into(),
            Self::QuotaExceeded { limit } => format!(
                "This account's files would take more than its storage quota of {limit} bytes"
            )
            .into(),
            Self::RangeNotSatisfiable => "The requested range is not within the file".into(),
            Self::UnsupportedMediaType => "Content-Type must be application/json".into(),
            Self::RequestTimeout => "The request body did not arrive in time".into(),
            Self::RateLimited { retry_after_secs } => {
                format!("Too many requests; retry after {retry_after_secs} s").into()
            }
            Self::Unavailable => "The service cannot serve requests right now".into(),
            Self::Internal(_) => "An internal error occurred".into(),
        }
    }

    /// Errors about credentials belong to the `Auth` module whatever the route.
    pub fn module(&self) -> Option<&'static str> {
        match self {
            Self::Unauthorized | Self::Forbidden | Self::RateLimited { .. } => Some("Auth"),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Conflict(Entity::Room) => {
                Self::Conflict("A room with this customId already exists".into())
            }
            StoreError::Conflict(Entity::User) => {
                Self::Conflict("A user with this customId already exists in this room".into())
            }
            StoreError::Conflict(what) => Self::Conflict(format!("{what:?} already exists").into()),
            StoreError::Invalid { field, message } => Self::Validation { field, message },
            StoreError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            StoreError::Quota { limit } => Self::QuotaExceeded { limit },
            StoreError::Database(sqlx::Error::PoolTimedOut) => {
                tracing::error!("no database connection became free in time");
                Self::Unavailable
            }
            other => Self::Internal(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_keep_their_detail_out_of_the_message() {
        let error = ApiError::Internal(anyhow::anyhow!("password=hunter2 at db.internal"));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.code(), "INTERNAL_ERROR");
        assert!(!error.message().contains("hunter2"));
    }

    #[test]
    fn store_errors_map_to_documented_codes() {
        assert_eq!(
            ApiError::from(StoreError::NotFound(Entity::Room)).code(),
            "NOT_FOUND"
        );
        assert_eq!(
            ApiError::from(StoreError::Conflict(Entity::User)).code(),
            "CONFLICT"
        );
        assert_eq!(
            ApiError::from(StoreError::Database(sqlx::Error::PoolTimedOut)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
