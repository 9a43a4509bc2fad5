//! Users (one person in one room) and their online sessions. `User` serializes as the
//! documented `CollabKitUser` without `token`, which the transport adds where documented.

use serde::Serialize;
use utoipa::ToSchema;

use super::{AccountId, RoomId, SessionId, Timestamp, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Online,
    Offline,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "online" => Some(Self::Online),
            "offline" => Some(Self::Offline),
            _ => None,
        }
    }
}

// The transport adds `token` where the API documents it.
/// A user: one person in one room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(
    as = CollabKitUser,
    examples(json!({
        "id": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "room_id": "c3003c93-60cf-4184-b85f-20be14d26dac",
        "name": "Alice", "profile_picture": "https://example.com/alice.png",
        "custom_id": "alice-001", "status": "offline",
        "created_at": "2026-05-29T10:05:00.000Z",
        "joined_at": "2026-05-29T10:06:00.000Z", "left_at": "2026-05-29T10:30:00.000Z"
    }))
)]
pub struct User {
    pub id: UserId,
    #[serde(skip)]
    pub account_id: AccountId,
    pub room_id: RoomId,
    pub name: String,
    #[schema(required = true)]
    pub profile_picture: Option<String>,
    #[schema(required = true)]
    pub custom_id: Option<String>,
    pub status: UserStatus,
    pub created_at: Timestamp,
    #[schema(required = true)]
    pub joined_at: Option<Timestamp>,
    #[schema(required = true)]
    pub left_at: Option<Timestamp>,
    /// When the user's JWT was issued: the token is derived from it, never stored.
    #[serde(skip)]
    pub token_issued_at: Timestamp,
}

/// One online period of a user (`left_at` is `null` while it runs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(
    as = CollabKitUserSession,
    examples(json!({
        "id": "sess_9f6c1d0e4b6a4f3e8a2b7c5d1e0f3a4b",
        "user_id": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "room_id": "c3003c93-60cf-4184-b85f-20be14d26dac",
        "joined_at": "2026-05-29T10:06:00.000Z", "left_at": null
    }))
)]
pub struct UserSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub room_id: RoomId,
    pub joined_at: Timestamp,
    #[schema(required = true)]
    pub left_at: Option<Timestamp>,
}
