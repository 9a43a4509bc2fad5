//! Comments: threads pinned to a room (with optional metadata such as a canvas position),
//! their comments, oldest first, and emoji reactions. Serialize as the documented objects.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::ids::InvalidId;
use super::{RoomId, Timestamp, UserId};

/// A new identifier: `prefix` and a random UUID's 32 lowercase hex digits.
fn new_prefixed(prefix: &str) -> String {
    format!("{prefix}{}", Uuid::new_v4().simple())
}

/// Whether `id` is `prefix` and 32 lowercase hex digits.
fn check_prefixed(id: &str, prefix: &str) -> Result<(), InvalidId> {
    let hex = id.strip_prefix(prefix).ok_or(InvalidId)?;
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if hex.len() == 32 && hex.chars().all(lower_hex) {
        Ok(())
    } else {
        Err(InvalidId)
    }
}

/// An identifier made of a prefix and 32 lowercase hex digits (`thr_3f2a...`).
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Debug)]
        pub struct $name(String);

        impl $name {
            const PREFIX: &'static str = $prefix;

            pub fn new() -> Self {
                Self(new_prefixed(Self::PREFIX))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check_prefixed(s, Self::PREFIX).map(|()| Self(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                super::ids::prefixed_id_schema(Self::PREFIX)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(
    /// A comment thread: `thr_` followed by 32 hex digits.
    ThreadId,
    "thr_"
);
prefixed_id!(
    /// A comment: `cmt_` followed by 32 hex digits.
    CommentId,
    "cmt_"
);

/// Client-defined data attached to a thread or a comment (a JSON object).
pub type Metadata = Map<String, Value>;

/// A thread and its first comments, oldest first (all of them when few: see
/// `comment_count` and `comments_cursor`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Thread {
    pub id: ThreadId,
    pub room_id: RoomId,
    pub created_by: UserId,
    pub created_at: Timestamp,
    /// The last change to the thread or to any of its comments (and their reactions).
    pub updated_at: Timestamp,
    pub resolved: bool,
    #[schema(required = true)]
    pub resolved_at: Option<Timestamp>,
    #[schema(required = true)]
    pub resolved_by: Option<UserId>,
    #[schema(value_type = Option<Object>, required = true)]
    pub metadata: Option<Metadata>,
    /// Comments in the thread; `comments` may hold only the first of them, so that no
    /// thread grows an answer without bound.
    pub comment_count: i64,
    /// Where the comments after those in `comments` start (`after` of a comment list);
    /// `null` when `comments` holds them all.
    #[schema(required = true)]
    pub comments_cursor: Option<String>,
    pub comments: Vec<Comment>,
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Comment {
    pub id: CommentId,
    pub thread_id: ThreadId,
    pub room_id: RoomId,
    /// The author. A deleted user's comments stay, with their ID.
    pub user_id: UserId,
    pub body: String,
    #[schema(value_type = Option<Object>, required = true)]
    pub metadata: Option<Metadata>,
    pub created_at: Timestamp,
    #[schema(required = true)]
    pub edited_at: Option<Timestamp>,
    /// One entry per emoji, in the order each emoji was first used.
    pub reactions: Vec<Reaction>,
}

/// The users who reacted to a comment with one emoji, in the order they did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<UserId>,
}

/// Groups `(emoji, user)` pairs, given in the order they were added, into reactions ordered
/// by each emoji's first use.
pub fn group_reactions(pairs: impl IntoIterator<Item = (String, UserId)>) -> Vec<Reaction> {
    let mut reactions: Vec<Reaction> = Vec::new();
    for (emoji, user_id) in pairs {
        match reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(reaction) => reaction.user_ids.push(user_id),
            None => reactions.push(Reaction {
                emoji,
                user_ids: vec![user_id],
            }),
        }
    }
    reactions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_prefix_and_32_hex_digits() {
        let thread = ThreadId::new();
        assert!(thread.as_str().starts_with("thr_"));
        assert_eq!(thread.as_str().len(), 36);
        assert_eq!(thread.as_str().parse::<ThreadId>().unwrap(), thread);
        let comment = CommentId::new();
        assert!(comment.as_str().starts_with("cmt_"));
        assert!(comment.as_str().parse::<ThreadId>().is_err());
        for bad in [
            "",
            "thr_",
            "thr_123",
            "thr_0123456789ABCDEF0123456789abcdef",
            "thr_0123456789abcdef0123456789abcdeg",
            "cmt_0123456789abcdef0123456789abcdef",
            "thr_0123456789abcdef0123456789abcdef0",
        ] {
            assert!(bad.parse::<ThreadId>().is_err(), "{bad}");
        }
        assert!("thr_0123456789abcdef0123456789abcdef"
            .parse::<ThreadId>()
            .is_ok());
    }

    #[test]
    fn reactions_are_grouped_in_order_of_first_use() {
        let (a, b) = (UserId::new(), UserId::new());
        let grouped = group_reactions([
            ("👍".to_owned(), a),
            ("🎉".to_owned(), a),
            ("👍".to_owned(), b),
        ]);
        assert_eq!(
            grouped,
            vec![
                Reaction {
                    emoji: "👍".into(),
                    user_ids: vec![a, b]
                },
                Reaction {
                    emoji: "🎉".into(),
                    user_ids: vec![a]
                },
            ]
        );
    }

    #[test]
    fn serializes_the_documented_shape() {
        let thread_id = ThreadId::new();
        let comment = Comment {
            id: CommentId::new(),
            thread_id: thread_id.clone(),
            room_id: RoomId::new(),
            user_id: UserId::new(),
            body: "Looks good".into(),
            metadata: None,
            created_at: Timestamp::from_millis(1_000),
            edited_at: None,
            reactions: Vec::new(),
        };
        let thread = Thread {
            id: thread_id,
            room_id: comment.room_id,
            created_by: comment.user_id,
            created_at: Timestamp::from_millis(1_000),
            updated_at: Timestamp::from_millis(1_000),
            resolved: false,
            resolved_at: None,
            resolved_by: None,
            metadata: serde_json::json!({ "x": 1 }).as_object().cloned(),
            comment_count: 1,
            comments_cursor: None,
            comments: vec![comment],
        };
        let value = serde_json::to_value(&thread).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "id",
                "room_id",
                "created_by",
                "created_at",
                "updated_at",
                "resolved",
                "resolved_at",
                "resolved_by",
                "metadata",
                "comment_count",
                "comments_cursor",
                "comments"
            ]
        );
        assert_eq!(value["metadata"], serde_json::json!({ "x": 1 }));
        assert_eq!(value["created_at"], "1970-01-01T00:00:01.000Z");
        let keys: Vec<_> = value["comments"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "thread_id",
                "room_id",
                "user_id",
                "body",
                "metadata",
                "created_at",
                "edited_at",
                "reactions"
            ]
        );
    }
}
