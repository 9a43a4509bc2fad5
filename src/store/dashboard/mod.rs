//! The dashboard's people and sessions: `DashboardStore` (logins, members and their roles,
//! browser sessions, invitations, an organization's name and deletion) and its types; the
//! implementation on either database is in `sql.rs`.

mod rows;
mod sql;

use async_trait::async_trait;

use super::accounts::NewApiKey;
use super::{RoomScope, StoreResult};
use crate::domain::{
    Account, AccountId, Email, Invitation, InvitationId, Login, LoginId, Member, Role, RoomId,
    Timestamp, UserSession,
};

/// A login about to be created.
#[derive(Debug, Clone)]
pub struct NewLogin {
    pub id: LoginId,
    pub email: Email,
    /// Argon2id, PHC string.
    pub password_hash: String,
    pub created_at: Timestamp,
}

/// A login as found by its email address, with what checks its password.
#[derive(Debug, Clone)]
pub struct LoginSecret {
    pub login: Login,
    pub password_hash: String,
}

/// A browser session about to be recorded.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Hex SHA-256 of the cookie's token.
    pub token_hash: String,
    pub login_id: LoginId,
    pub account_id: AccountId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A live session, and what its login may do in one organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAccess {
    pub login_id: LoginId,
    pub email: Email,
    /// The organization the dashboard shows (`None` once it was deleted).
    pub current_account: Option<AccountId>,
    /// The login's role in the organization asked about; `None`: not a member.
    pub role: Option<Role>,
    pub expires_at: Timestamp,
}

/// An invitation about to be recorded.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub id: InvitationId,
    /// Hex SHA-256 of the link's token.
    pub token_hash: String,
    pub account_id: AccountId,
    pub role: Role,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[async_trait]
pub trait DashboardStore: Send + Sync {
    /// Sign-up: the organization, its first key, the login and its ownership, together.
    /// `Conflict(Login)` when the email address has a login already.
    async fn sign_up(
        &self,
        login: &NewLogin,
        account: &Account,
        first_key: &NewApiKey,
    ) -> StoreResult<()>;
    /// A login alone (joining by invitation, or the CLI). `Conflict(Login)` if the email
    /// address has one.
    async fn create_login(&self, login: &NewLogin) -> StoreResult<()>;
    async fn find_login(&self, email: &Email) -> StoreResult<Option<LoginSecret>>;
    /// Sets a new password hash and ends every session of the login.
    async fn set_password(&self, login_id: LoginId, password_hash: &str) -> StoreResult<()>;

    /// Makes the login a member with `role`, or changes its role if it is one already.
    /// `NotFound(Account)` or `NotFound(Login)` when either is missing.
    async fn set_member(
        &self,
        account_id: AccountId,
        login_id: LoginId,
        role: Role,
    ) -> StoreResult<()>;
    /// Removes a member; `Invalid` (field `role`) when it is the last owner.
    async fn remove_member(&self, account_id: AccountId, login_id: LoginId) -> StoreResult<()>;
    async fn list_members(&self, account_id: AccountId) -> StoreResult<Vec<Member>>;
    /// The organizations a login belongs to, oldest membership first.
    async fn memberships(&self, login_id: LoginId) -> StoreResult<Vec<(Account, Role)>>;

    async fn create_session(&self, session: &NewSession) -> StoreResult<()>;
    /// The unexpired session with this token hash, and its login's role in `account_id`
    /// (`None`: in the session's current organization).
    async fn session_access(
        &self,
        token_hash: &str,
        account_id: Option<AccountId>,
        now: Timestamp,
    ) -> StoreResult<Option<SessionAccess>>;
    /// Moves an unexpired session's expiry (sliding expiry).
    async fn extend_session(&self, token_hash: &str, expires_at: Timestamp) -> StoreResult<()>;
    /// Points the session at another organization of its login.
    async fn switch_session(&self, token_hash: &str, account_id: AccountId) -> StoreResult<()>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    /// Forgets sessions that expired before `now`; how many.
    async fn delete_expired_sessions(&self, now: Timestamp) -> StoreResult<u64>;

    async fn create_invitation(&self, invitation: &NewInvitation) -> StoreResult<Invitation>;
    /// The invitations not used yet and not expired at `now`.
    async fn list_invitations(
        &self,
        account_id: AccountId,
        now: Timestamp,
    ) -> StoreResult<Vec<Invitation>>;
    /// An invitation by its token's hash, used or not.
    async fn find_invitation(&self, token_hash: &str) -> StoreResult<Option<Invitation>>;
    async fn delete_invitation(&self, account_id: AccountId, id: InvitationId) -> StoreResult<()>;
    /// Uses an invitation once: makes the login a member with its role (a member already keeps
    /// the higher of both roles). `NotFound(Invitation)` when it is unknown, used or expired.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        login_id: LoginId,
        now: Timestamp,
    ) -> StoreResult<Invitation>;

    /// How many users are online in each of the account's rooms named (one query, for the
    /// dashboard's live counts); rooms that do not exist are left out.
    async fn online_counts(
        &self,
        account_id: AccountId,
        rooms: &[RoomId],
    ) -> StoreResult<Vec<(RoomId, i64)>>;

    /// The room's latest user sessions (a user's time online), newest first, with the user's
    /// name.
    async fn recent_sessions(
        &self,
        scope: RoomScope,
        limit: i64,
    ) -> StoreResult<Vec<(UserSession, String)>>;

    async fn rename_account(&self, account_id: AccountId, name: &str) -> StoreResult<Account>;
    /// Deletes the organization and everything in it (rooms, users, stores, comments,
    /// webhooks, keys, memberships, invitations, recorded events).
    async fn delete_account(&self, account_id: AccountId) -> StoreResult<()>;
}
