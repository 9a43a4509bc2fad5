//! Plain types of the platform (identifiers, timestamps, accounts, rooms, users) and the
//! rules about them (limits, schema registration), as pure functions. No I/O.

/// `ToSchema` for a type that serializes through a wire struct (`RoomWire` for `Room`): the
/// OpenAPI document shows the wire struct's schema, under its name, wherever the type is used.
macro_rules! schema_of_wire {
    ($type:ty, $wire:ident) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <$wire<'static> as utoipa::PartialSchema>::schema()
            }
        }

        impl utoipa::ToSchema for $type {
            fn name() -> std::borrow::Cow<'static, str> {
                <$wire<'static> as utoipa::ToSchema>::name()
            }

            fn schemas(
                schemas: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                <$wire<'static> as utoipa::ToSchema>::schemas(schemas)
            }
        }
    };
}
use schema_of_wire;

pub mod account;
pub mod comment;
pub mod dashboard;
pub mod event;
pub mod file;
pub mod ids;
pub mod limits;
pub mod patch;
pub mod room;
pub mod schema;
pub mod text;
pub mod time;
pub mod user;
pub mod webhook;
pub mod workflow;

pub use account::{Account, ApiKey};
pub use comment::{Comment, CommentId, Metadata, Reaction, Thread, ThreadId};
pub use dashboard::{Email, Invitation, Login, Member, Role};
pub use event::{Event, EventKind};
pub use file::{FileKey, StoredFile};
pub use ids::{
    AccountId, ApiKeyId, ConnectionId, InvitationId, LoginId, NodeId, RoomId, SessionId, UserId,
};
pub use room::{Room, RoomState};
pub use time::Timestamp;
pub use user::{User, UserSession, UserStatus};
