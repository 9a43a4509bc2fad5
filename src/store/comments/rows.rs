//! The rows of comment threads, comments and reactions, and the domain types built from
//! them.

use std::collections::HashMap;

use super::{CommentPage, THREAD_BYTES};
use crate::domain::comment::group_reactions;
use crate::domain::{Comment, Metadata, Thread, Timestamp, UserId};
use crate::store::{StoreError, StoreResult};

fn parse<T: std::str::FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what}: {text:?}")))
}

fn parse_metadata(text: Option<String>, what: &str) -> StoreResult<Option<Metadata>> {
    text.map(|text| {
        serde_json::from_str::<Metadata>(&text)
            .map_err(|_| StoreError::Corrupt(format!("{what} metadata")))
    })
    .transpose()
}

/// Metadata as stored: its JSON text.
pub(super) fn metadata_text(metadata: Option<&Metadata>) -> Option<String> {
    metadata.map(|m| serde_json::Value::Object(m.clone()).to_string())
}

#[derive(sqlx::FromRow)]
pub(super) struct ThreadRow {
    pub id: String,
    pub room_id: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub metadata: Option<String>,
}

impl ThreadRow {
    /// What the thread weighs in a page, besides its comments.
    pub fn bytes(&self) -> i64 {
        THREAD_BYTES + self.metadata.as_ref().map_or(0, |m| m.len() as i64)
    }

    pub fn into_thread(self, comments: CommentPage, count: i64) -> StoreResult<Thread> {
        Ok(Thread {
            id: parse(&self.id, "thread id")?,
            room_id: parse(&self.room_id, "room id")?,
            created_by: parse(&self.created_by, "thread author")?,
            created_at: Timestamp::from_millis(self.created_at),
            updated_at: Timestamp::from_millis(self.updated_at),
            resolved: self.resolved_at.is_some(),
            resolved_at: self.resolved_at.map(Timestamp::from_millis),
            resolved_by: self
                .resolved_by
                .map(|by| parse(&by, "resolved by"))
                .transpose()?,
            metadata: parse_metadata(self.metadata, "thread")?,
            comment_count: count,
            comments_cursor: comments.cursor.map(|seq| seq.to_string()),
            comments: comments.comments,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct CommentRow {
    pub id: String,
    pub thread_id: String,
    pub room_id: String,
    pub user_id: String,
    pub body: String,
    pub metadata: Option<String>,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    /// Its position in the thread.
    pub seq: i64,
}

impl CommentRow {
    fn into_comment(self, reactions: Vec<(String, UserId)>) -> StoreResult<Comment> {
        Ok(Comment {
            id: parse(&self.id, "comment id")?,
            thread_id: parse(&self.thread_id, "thread id")?,
            room_id: parse(&self.room_id, "room id")?,
            user_id: parse(&self.user_id, "comment author")?,
            body: self.body,
            metadata: parse_metadata(self.metadata, "comment")?,
            created_at: Timestamp::from_millis(self.created_at),
            edited_at: self.edited_at.map(Timestamp::from_millis),
            reactions: group_reactions(reactions),
        })
    }
}

/// One user's emoji on a comment, read in the order reactions were added.
#[derive(sqlx::FromRow)]
pub(super) struct ReactionRow {
    pub comment_id: String,
    pub emoji: String,
    pub user_id: String,
}

/// Builds comments (kept in their order) from their rows and the reactions to them (in the
/// order they were added).
pub(super) fn assemble(
    comments: Vec<CommentRow>,
    reactions: Vec<ReactionRow>,
) -> StoreResult<Vec<Comment>> {
    let mut by_comment: HashMap<String, Vec<(String, UserId)>> = HashMap::new();
    for row in reactions {
        let user_id = parse(&row.user_id, "reaction user")?;
        by_comment
            .entry(row.comment_id)
            .or_default()
            .push((row.emoji, user_id));
    }
    comments
        .into_iter()
        .map(|row| {
            let reactions = by_comment.remove(&row.id).unwrap_or_default();
            row.into_comment(reactions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CommentId, ThreadId};

    fn thread_row(id: &ThreadId, room: &str) -> ThreadRow {
        ThreadRow {
            id: id.to_string(),
            room_id: room.to_owned(),
            created_by: UserId::new().to_string(),
            created_at: 1,
            updated_at: 2,
            resolved_at: Some(3),
            resolved_by: Some(UserId::new().to_string()),
            metadata: Some(r#"{"x":1,"y":2}"#.to_owned()),
        }
    }

    fn comment_row(id: &CommentId, thread: &ThreadId, room: &str, body: &str) -> CommentRow {
        CommentRow {
            id: id.to_string(),
            thread_id: thread.to_string(),
            room_id: room.to_owned(),
            user_id: UserId::new().to_string(),
            body: body.to_owned(),
            metadata: None,
            created_at: 1,
            edited_at: None,
            seq: 1,
        }
    }

    #[test]
    fn assembles_comments_in_order_with_their_reactions() {
        let room = crate::domain::RoomId::new().to_string();
        let thread = ThreadId::new();
        let (c1, c2) = (CommentId::new(), CommentId::new());
        let user = UserId::new();
        let comments = assemble(
            vec![
                comment_row(&c1, &thread, &room, "first"),
                comment_row(&c2, &thread, &room, "second"),
            ],
            vec![ReactionRow {
                comment_id: c2.to_string(),
                emoji: "👍".into(),
                user_id: user.to_string(),
            }],
        )
        .unwrap();
        let bodies: Vec<_> = comments.iter().map(|c| &c.body).collect();
        assert_eq!(bodies, ["first", "second"]);
        assert_eq!(comments[1].reactions[0].user_ids, vec![user]);
        assert!(comments[0].reactions.is_empty());
    }

    #[test]
    fn threads_say_how_many_comments_they_hold_and_where_the_rest_start() {
        let room = crate::domain::RoomId::new().to_string();
        let id = ThreadId::new();
        let page = CommentPage {
            comments: Vec::new(),
            cursor: Some(7),
        };
        let thread = thread_row(&id, &room).into_thread(page, 12).unwrap();
        assert!(thread.resolved);
        assert_eq!(thread.comment_count, 12);
        assert_eq!(thread.comments_cursor.as_deref(), Some("7"));
        assert_eq!(
            serde_json::to_string(&thread.metadata).unwrap(),
            r#"{"x":1,"y":2}"#
        );
    }

    #[test]
    fn corrupt_rows_are_reported() {
        let room = crate::domain::RoomId::new().to_string();
        let mut row = thread_row(&ThreadId::new(), &room);
        row.metadata = Some("[1]".into());
        let page = CommentPage {
            comments: Vec::new(),
            cursor: None,
        };
        assert!(matches!(
            row.into_thread(page, 0),
            Err(StoreError::Corrupt(_))
        ));
    }
}
