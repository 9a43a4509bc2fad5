//! Identifier newtypes. IDs are parsed at the edge; a raw `String` never reaches the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use uuid::Uuid;

/// A UUID-backed identifier, serialized as its lowercase hyphenated form.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(|_| serde::de::Error::custom("must be a UUID"))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                id_schema(
                    ObjectBuilder::new()
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                        .examples(["c3003c93-60cf-4184-b85f-20be14d26dac"]),
                )
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The schema of an identifier: a string, `detail` saying which.
fn id_schema(detail: ObjectBuilder) -> RefOr<Schema> {
    detail.schema_type(Type::String).into()
}

/// The schema of an identifier made of `prefix` and 32 lowercase hex digits.
pub fn prefixed_id_schema(prefix: &str) -> RefOr<Schema> {
    id_schema(
        ObjectBuilder::new()
            .pattern(Some(format!("^{prefix}[0-9a-f]{{32}}$")))
            .examples([format!("{prefix}9f6c1d0e4b6a4f3e8a2b7c5d1e0f3a4b")]),
    )
}

uuid_id!(
    /// An account (organization): the tenant every other object belongs to.
    AccountId
);
uuid_id!(
    /// A room inside an account.
    RoomId
);
uuid_id!(
    /// A user: one person in one room (the JWT's subject).
    UserId
);
uuid_id!(
    /// An API key's public identifier (the key itself is a secret).
    ApiKeyId
);

uuid_id!(
    /// One WebSocket connection.
    ConnectionId
);
uuid_id!(
    /// A person who logs in to the dashboard (one email address).
    LoginId
);
uuid_id!(
    /// An invitation to join an organization.
    InvitationId
);

/// A running server process, as recorded in the database so that other nodes can clean up
/// after it if it dies.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user session (one online period): `sess_` followed by 32 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SessionId(String);

impl SessionId {
    const PREFIX: &'static str = "sess_";

    pub fn new() -> Self {
        Self(format!("{}{}", Self::PREFIX, Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for SessionId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(Self::PREFIX) {
            Some(rest) if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Ok(Self(s.to_owned()))
            }
            _ => Err(InvalidId),
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl utoipa::PartialSchema for SessionId {
    fn schema() -> RefOr<Schema> {
        prefixed_id_schema(Self::PREFIX)
    }
}

impl utoipa::ToSchema for SessionId {}

/// A string that is not a well-formed identifier of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed identifier")]
pub struct InvalidId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_round_trip_through_text_and_json() {
        let id = RoomId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text.parse::<RoomId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<RoomId>(&json).unwrap(), id);
    }

    #[test]
    fn uuid_ids_reject_garbage() {
        assert!("not-a-uuid".parse::<UserId>().is_err());
        assert!(serde_json::from_str::<UserId>("\"zzz\"").is_err());
        assert!(serde_json::from_str::<UserId>("5").is_err());
    }

    #[test]
    fn session_ids_have_their_prefix() {
        let id = SessionId::new();
        assert!(id.as_str().starts_with("sess_"));
        assert_eq!(id.as_str().parse::<SessionId>().unwrap(), id);
        assert!("sess_".parse::<SessionId>().is_err());
        assert!("abc".parse::<SessionId>().is_err());
    }
}
