//! How much an account, a room or a thread may hold: each limit's rule, and the words that
//! explain a refusal to the client. The store applies them inside the write's transaction,
//! under the lock that keeps two writers from both getting the last place.

/// A refusal: the request field at fault, and why, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub field: &'static str,
    pub message: String,
}

/// A limit on how many of something one owner holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit<'a> {
    /// Unrevoked API keys of an account.
    ApiKeys(i64),
    /// Stores (schemas) an account defines.
    Stores(i64),
    /// Webhooks of an account.
    Webhooks(i64),
    /// Workflows of an account.
    Workflows(i64),
    /// Comment threads of a room.
    Threads(i64),
    /// Comments of a thread, its first one included.
    Comments(i64),
    /// Live entries of one store in one room.
    Entries { store: &'a str, max: i64 },
}

impl Limit<'_> {
    /// Whether one more fits beside the `held` there are.
    pub fn check_one_more(self, held: i64) -> Result<(), LimitError> {
        let (field, max, message) = match self {
            Self::ApiKeys(max) => (
                "keys",
                max,
                format!("an account can hold at most {max} unrevoked keys; revoke one first"),
            ),
            Self::Stores(max) => (
                "store",
                max,
                format!("an account can define at most {max} stores"),
            ),
            Self::Webhooks(max) => (
                "url",
                max,
                format!("an account can have at most {max} webhooks"),
            ),
            Self::Workflows(max) => (
                "name",
                max,
                format!("an account can have at most {max} workflows"),
            ),
            Self::Threads(max) => (
                "params",
                max,
                format!("A room can hold at most {max} comment threads"),
            ),
            Self::Comments(max) => (
                "threadId",
                max,
                format!("A thread can hold at most {max} comments"),
            ),
            Self::Entries { store, max } => (
                "key",
                max,
                format!("store {store} already holds {max} entries in this room"),
            ),
        };
        if held >= max {
            Err(LimitError { field, message })
        } else {
            Ok(())
        }
    }
}

/// Limits on a comment's reactions, checked when one is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReactionLimits {
    /// Different emoji on one comment.
    pub max_emoji: i64,
    /// Reactions on one comment, all emoji together (one user's one emoji each).
    pub max_reactions: i64,
}

/// A comment's reactions when one more is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactionCounts {
    /// Different emoji.
    pub emoji: i64,
    /// Reactions, all emoji together.
    pub total: i64,
    /// Reactions with the emoji asked for.
    pub same_emoji: i64,
    /// The asking user's reactions with that emoji (0 or 1).
    pub mine: i64,
}

impl ReactionLimits {
    /// Whether the reaction is to be added: `false` when the user already reacted so (adding
    /// is idempotent), an error when it would break a limit.
    pub fn admit(self, counts: ReactionCounts) -> Result<bool, LimitError> {
        let refuse = |message| {
            Err(LimitError {
                field: "emoji",
                message,
            })
        };
        if counts.mine > 0 {
            Ok(false)
        } else if counts.same_emoji == 0 && counts.emoji >= self.max_emoji {
            refuse(format!(
                "A comment can have at most {} different emoji",
                self.max_emoji
            ))
        } else if counts.total >= self.max_reactions {
            refuse(format!(
                "A comment can have at most {} reactions",
                self.max_reactions
            ))
        } else {
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_place_is_taken_then_refused() {
        assert_eq!(Limit::Threads(3).check_one_more(2), Ok(()));
        let refused = Limit::Threads(3).check_one_more(3).unwrap_err();
        assert_eq!(refused.field, "params");
        assert_eq!(refused.message, "A room can hold at most 3 comment threads");
        assert!(Limit::ApiKeys(1).check_one_more(5).is_err());
    }

    #[test]
    fn refusals_name_the_field_and_the_limit() {
        let refused = |limit: Limit| limit.check_one_more(i64::MAX).unwrap_err();
        assert_eq!(refused(Limit::ApiKeys(2)).field, "keys");
        assert_eq!(refused(Limit::Stores(2)).field, "store");
        assert_eq!(refused(Limit::Webhooks(2)).field, "url");
        assert_eq!(refused(Limit::Comments(2)).field, "threadId");
        let entries = refused(Limit::Entries {
            store: "tasks",
            max: 7,
        });
        assert_eq!(entries.field, "key");
        assert_eq!(
            entries.message,
            "store tasks already holds 7 entries in this room"
        );
    }

    #[test]
    fn reactions_are_idempotent_then_limited_by_emoji_then_in_all() {
        let limits = ReactionLimits {
            max_emoji: 2,
            max_reactions: 3,
        };
        let counts = |emoji, total, same_emoji, mine| ReactionCounts {
            emoji,
            total,
            same_emoji,
            mine,
        };
        assert_eq!(limits.admit(counts(0, 0, 0, 0)), Ok(true));
        // Already there: nothing to add, whatever the limits.
        assert_eq!(limits.admit(counts(9, 9, 1, 1)), Ok(false));
        // A new emoji past the emoji limit; an emoji in use joins it.
        let new_emoji = limits.admit(counts(2, 2, 0, 0)).unwrap_err();
        assert_eq!(
            new_emoji.message,
            "A comment can have at most 2 different emoji"
        );
        assert_eq!(limits.admit(counts(2, 2, 1, 0)), Ok(true));
        let full = limits.admit(counts(2, 3, 1, 0)).unwrap_err();
        assert_eq!(full.field, "emoji");
        assert_eq!(full.message, "A comment can have at most 3 reactions");
    }
}
