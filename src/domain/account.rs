//! Accounts (organizations) and their API keys.

use serde::Serialize;
use utoipa::ToSchema;

use super::{AccountId, ApiKeyId, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: Timestamp,
}

/// An API key as the platform keeps it: never the key itself, only a hash and a short prefix
/// so that people can tell their keys apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub prefix: String,
    /// What the key is for, as its creator named it (may be empty).
    pub name: String,
    pub created_at: Timestamp,
    /// When it last authenticated a request, to within `auth.key_cache_ttl_ms`.
    #[schema(required = true)]
    pub last_used_at: Option<Timestamp>,
    #[schema(required = true)]
    pub revoked_at: Option<Timestamp>,
}
