//! Rules for the fields clients send, shared by the resources that take them.

pub use crate::domain::patch::Patch;
use crate::domain::{AccountId, EventKind, RoomId};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Entity;

/// The OpenAPI schemas of the rules below (`http::openapi`), each beside its rule. Patterns
/// are ECMA-262: `\u0000-\u001F\u007F-\u009F` are the control characters (`char::is_control`).
pub mod schemas {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

    use super::{MAX_CUSTOM_ID_CHARS, MAX_NAME_CHARS, MAX_URL_CHARS};

    const NOT_CONTROL: &str = r"[^\u0000-\u001F\u007F-\u009F]";
    const NOT_SPACE_OR_CONTROL: &str = r"[^\s\u0000-\u001F\u007F-\u009F]";

    fn text(nullable: bool) -> ObjectBuilder {
        let kind = if nullable {
            SchemaType::from_iter([Type::String, Type::Null])
        } else {
            SchemaType::new(Type::String)
        };
        ObjectBuilder::new().schema_type(kind)
    }

    /// `name`: not blank, no control characters.
    pub fn name() -> ObjectBuilder {
        text(false)
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(format!(
                "^{NOT_CONTROL}*{NOT_SPACE_OR_CONTROL}{NOT_CONTROL}*$"
            )))
    }

    /// `custom_id`, or `null`: no whitespace at its ends, no control characters.
    pub fn custom_id_or_null() -> ObjectBuilder {
        text(true)
            .min_length(Some(1))
            .max_length(Some(MAX_CUSTOM_ID_CHARS))
            .pattern(Some(format!(
                "^{NOT_SPACE_OR_CONTROL}({NOT_CONTROL}*{NOT_SPACE_OR_CONTROL})?$"
            )))
    }

    /// `picture_url`, or `null`: http or https, no spaces or control characters.
    pub fn picture_url_or_null() -> ObjectBuilder {
        text(true).max_length(Some(MAX_URL_CHARS)).pattern(Some(
            r"^[Hh][Tt][Tt][Pp][Ss]?://[^ \u0000-\u001F\u007F-\u009F]*$".to_owned(),
        ))
    }

    /// A webhook's URL (`webhooks::guard::check_url`; its address is checked besides): http
    /// or https with a host, no whitespace or control characters.
    pub fn webhook_url() -> ObjectBuilder {
        text(false).max_length(Some(MAX_URL_CHARS)).pattern(Some(
            r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#\u0000-\u001F\u007F-\u009F]+([/?#][^\s\u0000-\u001F\u007F-\u009F]*)?$"
                .to_owned(),
        ))
    }
}

pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_CUSTOM_ID_CHARS: usize = 128;
pub const MAX_URL_CHARS: usize = 2048;

/// A required display name: present, not blank, no control characters, not too long.
pub fn required_name(field: &str, value: Option<String>) -> Result<String, ApiError> {
    name(
        field,
        value.ok_or_else(|| ApiError::validation(field, format!("{field} is required")))?,
    )
}

pub fn name(field: &str, value: String) -> Result<String, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::validation(
            field,
            format!("{field} must not be empty"),
        ));
    }
    plain_text(field, &value, MAX_NAME_CHARS)?;
    Ok(value)
}

/// A customer-chosen identifier: not blank, no whitespace at its ends, no control characters.
pub fn custom_id(field: &str, value: String) -> Result<String, ApiError> {
    if value.is_empty() || value.trim() != value {
        return Err(ApiError::validation(
            field,
            format!("{field} must not be empty or start or end with whitespace"),
        ));
    }
    plain_text(field, &value, MAX_CUSTOM_ID_CHARS)?;
    Ok(value)
}

/// An image URL clients will display: http or https only (never `javascript:`).
pub fn picture_url(field: &str, value: String) -> Result<String, ApiError> {
    plain_text(field, &value, MAX_URL_CHARS)?;
    let lower = value.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || value.contains(' ') {
        return Err(ApiError::validation(
            field,
            format!("{field} must be an http or https URL"),
        ));
    }
    Ok(value)
}

fn plain_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::validation(
            field,
            format!("{field} must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// A partial update must change something.
pub fn at_least_one(fields: &[(&str, bool)]) -> Result<(), ApiError> {
    if fields.iter().any(|(_, present)| *present) {
        return Ok(());
    }
    let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    Err(ApiError::validation(
        "body",
        format!("Provide at least one of: {}", names.join(", ")),
    ))
}

/// A non-empty list of known event names, without repeats.
pub fn events(names: Vec<String>) -> Result<Vec<EventKind>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::validation(
            "events",
            "events must name at least one event",
        ));
    }
    let mut kinds = Vec::with_capacity(names.len());
    for name in &names {
        let kind = EventKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
            ApiError::validation(
                "events",
                format!("unknown event {name:?}; events are {}", known.join(", ")),
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// A room of the account, by ID.
pub async fn room(state: &AppState, account_id: AccountId, text: &str) -> Result<RoomId, ApiError> {
    let room_id: RoomId = text
        .parse()
        .map_err(|_| ApiError::validation("roomId", "roomId must be a UUID"))?;
    state
        .store()
        .get_room(account_id, room_id)
        .await?
        .ok_or(ApiError::not_found(Entity::Room))?;
    Ok(room_id)
}

/// A field that may be absent but not null.
pub fn not_null<T>(field: &str, patch: Patch<T>) -> Result<Option<T>, ApiError> {
    match patch {
        Patch::Absent => Ok(None),
        Patch::Null => Err(ApiError::validation(
            field,
            format!("{field} must not be null"),
        )),
        Patch::Value(value) => Ok(Some(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(required_name("name", None).is_err());
        assert!(name("name", "  ".into()).is_err());
        assert!(name("name", "a\u{0}b".into()).is_err());
        assert!(name("name", "é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(name("name", "é".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(custom_id("customId", " x".into()).is_err());
        assert!(custom_id("customId", "room/one".into()).is_ok());
    }

    #[test]
    fn pictures_are_web_urls() {
        assert!(picture_url("p", "https://example.com/a.png".into()).is_ok());
        assert!(picture_url("p", "javascript:alert(1)".into()).is_err());
        assert!(picture_url("p", "ftp://x".into()).is_err());
    }
}
