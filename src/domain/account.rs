//! Accounts (organizations) and their API keys.

use serde::Serialize;

use super::{AccountId, ApiKeyId, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An API key as the platform keeps it: never the key itself, only a hash and a short prefix
/// so that people can tell their keys apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}
