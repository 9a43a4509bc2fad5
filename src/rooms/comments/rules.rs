//! The rules a comment obeys before it reaches the database: its ids, its text, its
//! metadata and its emoji.

use serde_json::Value;

use crate::config::CommentsConfig;
use crate::domain::{CommentId, Metadata, ThreadId};
use crate::error::ApiError;

/// Longest emoji (a short code or a sequence of code points such as a flag or a family).
pub const MAX_EMOJI_CHARS: usize = 32;

pub fn thread_id(text: &str) -> Result<ThreadId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::validation(
            "threadId",
            "threadId must be a thread ID (thr_ followed by 32 hex digits)",
        )
    })
}

pub fn comment_id(text: &str) -> Result<CommentId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::validation(
            "commentId",
            "commentId must be a comment ID (cmt_ followed by 32 hex digits)",
        )
    })
}

/// A comment's text: not blank, at most `max_body_chars` characters, and no control
/// characters but line breaks and tabs.
pub(super) fn body(text: String, limits: &CommentsConfig) -> Result<String, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::validation("body", "body must not be empty"));
    }
    let max = limits.max_body_chars;
    if text.chars().count() > max {
        return Err(ApiError::validation(
            "body",
            format!("body must be at most {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::validation(
            "body",
            "body must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(text)
}

/// Metadata: a JSON object of at most `max_metadata_bytes` (as JSON), or nothing.
pub(super) fn metadata(
    value: Option<Value>,
    limits: &CommentsConfig,
) -> Result<Option<Metadata>, ApiError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::validation(
                "metadata",
                "metadata must be a JSON object or null",
            ))
        }
    };
    let max = limits.max_metadata_bytes;
    let size = serde_json::to_string(&map).map_or(usize::MAX, |json| json.len());
    if size > max {
        return Err(ApiError::validation(
            "metadata",
            format!("metadata must be at most {max} bytes as JSON"),
        ));
    }
    Ok(Some(map))
}

/// An emoji (or a short code such as `:+1:`): 1 to 32 characters, no whitespace.
pub(super) fn emoji(text: String) -> Result<String, ApiError> {
    let count = text.chars().count();
    if count == 0
        || count > MAX_EMOJI_CHARS
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::validation(
            "emoji",
            format!("emoji must be 1 to {MAX_EMOJI_CHARS} characters without whitespace"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> CommentsConfig {
        CommentsConfig {
            max_body_chars: 5,
            max_metadata_bytes: 10,
            max_threads_per_room: 1,
            max_comments_per_thread: 1,
            max_reactions_per_comment: 1,
            max_user_reactions_per_comment: 1,
            page_comments: 1,
        }
    }

    fn field(error: ApiError) -> String {
        match error {
            ApiError::Validation { field, .. } => field,
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn bodies_are_checked() {
        assert_eq!(body("héllo".into(), &limits()).unwrap(), "héllo");
        assert_eq!(body("a\nb\tc".into(), &limits()).unwrap(), "a\nb\tc");
        for bad in ["", "  \n ", "toolong", "a\u{0}b"] {
            assert_eq!(
                field(body(bad.into(), &limits()).unwrap_err()),
                "body",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn metadata_is_a_small_object() {
        assert_eq!(metadata(None, &limits()).unwrap(), None);
        assert_eq!(metadata(Some(Value::Null), &limits()).unwrap(), None);
        assert!(metadata(Some(json!({ "x": 1 })), &limits())
            .unwrap()
            .is_some());
        for bad in [json!([1]), json!("x"), json!({ "x": "0123456789" })] {
            assert_eq!(
                field(metadata(Some(bad), &limits()).unwrap_err()),
                "metadata"
            );
        }
    }

    #[test]
    fn emoji_are_short_and_without_whitespace() {
        assert!(emoji("👍".into()).is_ok());
        assert!(emoji(":+1:".into()).is_ok());
        assert!(emoji("👨‍👩‍👧‍👦".into()).is_ok());
        for bad in ["", "a b", "x".repeat(33).as_str(), "\u{7}"] {
            assert_eq!(field(emoji(bad.into()).unwrap_err()), "emoji", "{bad:?}");
        }
    }

    #[test]
    fn ids_are_validated() {
        assert_eq!(field(thread_id("nope").unwrap_err()), "threadId");
        assert_eq!(
            field(comment_id(&ThreadId::new().to_string()).unwrap_err()),
            "commentId"
        );
        assert!(comment_id(&CommentId::new().to_string()).is_ok());
    }
}
