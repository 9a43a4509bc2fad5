//! The dashboard's people and sessions: `DashboardStore` (logins, members and their roles,
//! browser sessions, invitations, an organization's name and deletion), and its
//! implementation on either database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::accounts::NewApiKey;
use super::dialect::{Column, Dialect, RowsAffected};
use super::sql::{conflict_or_database, parse, SqlStore};
use super::{Entity, RoomScope, StoreError, StoreResult};
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

const INVITATION_COLUMNS: &str = "id, account_id, role, created_at, expires_at, used_at";

#[derive(sqlx::FromRow)]
struct LoginRow {
    id: String,
    email: String,
    password_hash: String,
    created_at: i64,
}

impl TryFrom<LoginRow> for LoginSecret {
    type Error = StoreError;

    fn try_from(row: LoginRow) -> StoreResult<Self> {
        Ok(LoginSecret {
            login: Login {
                id: parse(&row.id, "login id")?,
                email: parse_email(&row.email)?,
                created_at: Timestamp::from_millis(row.created_at),
            },
            password_hash: row.password_hash,
        })
    }
}

fn parse_email(text: &str) -> StoreResult<Email> {
    Email::parse(text).map_err(|_| StoreError::Corrupt(format!("email: {text:?}")))
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    account_id: String,
    login_id: String,
    email: String,
    role: String,
    created_at: i64,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;

    fn try_from(row: MemberRow) -> StoreResult<Self> {
        Ok(Member {
            account_id: parse(&row.account_id, "account id")?,
            login_id: parse(&row.login_id, "login id")?,
            email: parse_email(&row.email)?,
            role: parse(&row.role, "role")?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    id: String,
    name: String,
    created_at: i64,
    role: String,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    login_id: String,
    email: String,
    account_id: Option<String>,
    expires_at: i64,
    role: Option<String>,
}

impl TryFrom<SessionRow> for SessionAccess {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> StoreResult<Self> {
        Ok(SessionAccess {
            login_id: parse(&row.login_id, "login id")?,
            email: parse_email(&row.email)?,
            current_account: row
                .account_id
                .map(|id| parse(&id, "account id"))
                .transpose()?,
            role: row.role.map(|r| parse(&r, "role")).transpose()?,
            expires_at: Timestamp::from_millis(row.expires_at),
        })
    }
}

#[derive(sqlx::FromRow)]
struct RecentSessionRow {
    id: String,
    user_id: String,
    room_id: String,
    joined_at: i64,
    left_at: Option<i64>,
    name: String,
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: String,
    account_id: String,
    role: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl TryFrom<InvitationRow> for Invitation {
    type Error = StoreError;

    fn try_from(row: InvitationRow) -> StoreResult<Self> {
        Ok(Invitation {
            id: parse(&row.id, "invitation id")?,
            account_id: parse(&row.account_id, "account id")?,
            role: parse(&row.role, "role")?,
            created_at: Timestamp::from_millis(row.created_at),
            expires_at: Timestamp::from_millis(row.expires_at),
            used_at: row.used_at.map(Timestamp::from_millis),
        })
    }
}

#[async_trait]
impl<DB> DashboardStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn sign_up(
        &self,
        login: &NewLogin,
        account: &Account,
        first_key: &NewApiKey,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_login(&mut tx, login).await?;
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(account.id.to_string())
            .bind(&account.name)
            .bind(account.created_at.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or_database(e, Entity::Account))?;
        Self::insert_api_key(&mut tx, first_key).await?;
        sqlx::query(
            "INSERT INTO members (account_id, login_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id.to_string())
        .bind(login.id.to_string())
        .bind(Role::Owner.as_str().to_owned())
        .bind(account.created_at.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_login(&self, login: &NewLogin) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        Self::insert_login(&mut conn, login).await
    }

    async fn find_login(&self, email: &Email) -> StoreResult<Option<LoginSecret>> {
        let row: Option<LoginRow> = sqlx::query_as(
            "SELECT id, email, password_hash, created_at FROM logins WHERE email = $1",
        )
        .bind(email.as_str().to_owned())
        .fetch_optional(&self.reads)
        .await?;
        row.map(LoginSecret::try_from).transpose()
    }

    async fn set_password(&self, login_id: LoginId, password_hash: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE logins SET password_hash = $1, password_changed_at = $2 WHERE id = $3",
        )
        .bind(password_hash.to_owned())
        .bind(Timestamp::now().as_millis())
        .bind(login_id.to_string())
        .execute(&mut *tx)
        .await?;
        if RowsAffected::rows_affected(&changed) == 0 {
            return Err(StoreError::NotFound(Entity::Login));
        }
        sqlx::query("DELETE FROM dashboard_sessions WHERE login_id = $1")
            .bind(login_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_member(
        &self,
        account_id: AccountId,
        login_id: LoginId,
        role: Role,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::require(
            &mut tx,
            "accounts",
            &account_id.to_string(),
            Entity::Account,
        )
        .await?;
        Self::require(&mut tx, "logins", &login_id.to_string(), Entity::Login).await?;
        let current = Self::role_of(&mut tx, account_id, login_id).await?;
        if current == Some(Role::Owner) && role != Role::Owner {
            Self::check_not_last_owner(&mut tx, account_id).await?;
        }
        Self::put_member(&mut tx, account_id, login_id, role, current.is_some()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(&self, account_id: AccountId, login_id: LoginId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        match Self::role_of(&mut tx, account_id, login_id).await? {
            None => return Err(StoreError::NotFound(Entity::Member)),
            Some(Role::Owner) => Self::check_not_last_owner(&mut tx, account_id).await?,
            Some(_) => {}
        }
        sqlx::query("DELETE FROM members WHERE account_id = $1 AND login_id = $2")
            .bind(account_id.to_string())
            .bind(login_id.to_string())
            .execute(&mut *tx)
            .await?;
        // Its sessions pointed at this organization show none now.
        sqlx::query(
            "UPDATE dashboard_sessions SET account_id = NULL \
             WHERE login_id = $1 AND account_id = $2",
        )
        .bind(login_id.to_string())
        .bind(account_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_members(&self, account_id: AccountId) -> StoreResult<Vec<Member>> {
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT m.account_id, m.login_id, l.email, m.role, m.created_at \
             FROM members m JOIN logins l ON l.id = m.login_id \
             WHERE m.account_id = $1 ORDER BY m.created_at, l.email",
        )
        .bind(account_id.to_string())
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter().map(Member::try_from).collect()
    }

    async fn memberships(&self, login_id: LoginId) -> StoreResult<Vec<(Account, Role)>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(
            "SELECT a.id, a.name, a.created_at, m.role \
             FROM members m JOIN accounts a ON a.id = m.account_id \
             WHERE m.login_id = $1 ORDER BY m.created_at, a.id",
        )
        .bind(login_id.to_string())
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    Account {
                        id: parse(&row.id, "account id")?,
                        name: row.name,
                        created_at: Timestamp::from_millis(row.created_at),
                    },
                    parse(&row.role, "role")?,
                ))
            })
            .collect()
    }

    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (token_hash, login_id, account_id, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session.token_hash.clone())
        .bind(session.login_id.to_string())
        .bind(session.account_id.to_string())
        .bind(session.created_at.as_millis())
        .bind(session.expires_at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_access(
        &self,
        token_hash: &str,
        account_id: Option<AccountId>,
        now: Timestamp,
    ) -> StoreResult<Option<SessionAccess>> {
        // The pool that writes: a session made or ended a moment ago must be seen.
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT s.login_id, l.email, s.account_id, s.expires_at, m.role \
             FROM dashboard_sessions s JOIN logins l ON l.id = s.login_id \
             LEFT JOIN members m ON m.login_id = s.login_id \
             AND m.account_id = COALESCE($2, s.account_id) \
             WHERE s.token_hash = $1 AND s.expires_at > $3",
        )
        .bind(token_hash.to_owned())
        .bind(account_id.map(|id| id.to_string()))
        .bind(now.as_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.map(SessionAccess::try_from).transpose()
    }

    async fn extend_session(&self, token_hash: &str, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE dashboard_sessions SET expires_at = $1 WHERE token_hash = $2 AND expires_at < $1",
        )
        .bind(expires_at.as_millis())
        .bind(token_hash.to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn switch_session(&self, token_hash: &str, account_id: AccountId) -> StoreResult<()> {
        sqlx::query("UPDATE dashboard_sessions SET account_id = $1 WHERE token_hash = $2")
            .bind(account_id.to_string())
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE token_hash = $1")
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(now.as_millis())
            .execute(&self.pool)
            .await?;
        Ok(RowsAffected::rows_affected(&done))
    }

    async fn create_invitation(&self, invitation: &NewInvitation) -> StoreResult<Invitation> {
        sqlx::query(
            "INSERT INTO invitations (id, token_hash, account_id, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(invitation.id.to_string())
        .bind(invitation.token_hash.clone())
        .bind(invitation.account_id.to_string())
        .bind(invitation.role.as_str().to_owned())
        .bind(invitation.created_at.as_millis())
        .bind(invitation.expires_at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(Invitation {
            id: invitation.id,
            account_id: invitation.account_id,
            role: invitation.role,
            created_at: invitation.created_at,
            expires_at: invitation.expires_at,
            used_at: None,
        })
    }

    async fn list_invitations(
        &self,
        account_id: AccountId,
        now: Timestamp,
    ) -> StoreResult<Vec<Invitation>> {
        let sql = format!(
            "SELECT {INVITATION_COLUMNS} FROM invitations \
             WHERE account_id = $1 AND used_at IS NULL AND expires_at > $2 ORDER BY created_at, id"
        );
        let rows: Vec<InvitationRow> = sqlx::query_as(&sql)
            .bind(account_id.to_string())
            .bind(now.as_millis())
            .fetch_all(&self.reads)
            .await?;
        rows.into_iter().map(Invitation::try_from).collect()
    }

    async fn find_invitation(&self, token_hash: &str) -> StoreResult<Option<Invitation>> {
        let sql = format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1");
        let row: Option<InvitationRow> = sqlx::query_as(&sql)
            .bind(token_hash.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(Invitation::try_from).transpose()
    }

    async fn delete_invitation(&self, account_id: AccountId, id: InvitationId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM invitations WHERE id = $1 AND account_id = $2")
            .bind(id.to_string())
            .bind(account_id.to_string())
            .execute(&self.pool)
            .await?;
        if RowsAffected::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound(Entity::Invitation));
        }
        Ok(())
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        login_id: LoginId,
        now: Timestamp,
    ) -> StoreResult<Invitation> {
        let mut tx = self.pool.begin().await?;
        // Claims it first: of two concurrent uses of one link, one changes the row.
        let sql = format!(
            "UPDATE invitations SET used_at = $1, used_by = $2 \
             WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $1 \
             RETURNING {INVITATION_COLUMNS}"
        );
        let row: InvitationRow = sqlx::query_as(&sql)
            .bind(now.as_millis())
            .bind(login_id.to_string())
            .bind(token_hash.to_owned())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(Entity::Invitation))?;
        let invitation = Invitation::try_from(row)?;
        let current = Self::role_of(&mut tx, invitation.account_id, login_id).await?;
        let role = current.map_or(invitation.role, |r| r.max(invitation.role));
        Self::put_member(
            &mut tx,
            invitation.account_id,
            login_id,
            role,
            current.is_some(),
        )
        .await?;
        tx.commit().await?;
        Ok(invitation)
    }

    async fn online_counts(
        &self,
        account_id: AccountId,
        rooms: &[RoomId],
    ) -> StoreResult<Vec<(RoomId, i64)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..rooms.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT id, active_participants FROM rooms WHERE account_id = $1 AND id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(account_id.to_string());
        for room in rooms {
            query = query.bind(room.to_string());
        }
        let rows = query.fetch_all(&self.reads).await?;
        rows.into_iter()
            .map(|(id, online)| Ok((parse(&id, "room id")?, online)))
            .collect()
    }

    async fn recent_sessions(
        &self,
        scope: RoomScope,
        limit: i64,
    ) -> StoreResult<Vec<(UserSession, String)>> {
        let rows: Vec<RecentSessionRow> = sqlx::query_as(
            "SELECT s.id, s.user_id, s.room_id, s.joined_at, s.left_at, u.name \
             FROM user_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.room_id = $1 AND u.account_id = $2 \
             ORDER BY s.joined_at DESC, s.id LIMIT $3",
        )
        .bind(scope.room_id.to_string())
        .bind(scope.account_id.to_string())
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    UserSession {
                        id: parse(&row.id, "session id")?,
                        user_id: parse(&row.user_id, "user id")?,
                        room_id: parse(&row.room_id, "room id")?,
                        joined_at: Timestamp::from_millis(row.joined_at),
                        left_at: row.left_at.map(Timestamp::from_millis),
                    },
                    row.name,
                ))
            })
            .collect()
    }

    async fn rename_account(&self, account_id: AccountId, name: &str) -> StoreResult<Account> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "UPDATE accounts SET name = $1 WHERE id = $2 RETURNING id, name, created_at",
        )
        .bind(name.to_owned())
        .bind(account_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let (id, name, created_at) = row.ok_or(StoreError::NotFound(Entity::Account))?;
        Ok(Account {
            id: parse(&id, "account id")?,
            name,
            created_at: Timestamp::from_millis(created_at),
        })
    }

    async fn delete_account(&self, account_id: AccountId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let id = account_id.to_string();
        // Tables whose rows name the account without a foreign key to it.
        for sql in [
            "DELETE FROM users WHERE account_id = $1",
            "DELETE FROM events WHERE account_id = $1",
        ] {
            sqlx::query(sql).bind(id.clone()).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if RowsAffected::rows_affected(&done) == 0 {
            return Err(StoreError::NotFound(Entity::Account));
        }
        tx.commit().await?;
        Ok(())
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    Option<String>: Column<DB>,
    i64: Column<DB>,
    Option<i64>: Column<DB>,
    bool: Column<DB>,
{
    async fn insert_login(conn: &mut DB::Connection, login: &NewLogin) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO logins (id, email, password_hash, created_at, password_changed_at) \
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(login.id.to_string())
        .bind(login.email.as_str().to_owned())
        .bind(login.password_hash.clone())
        .bind(login.created_at.as_millis())
        .execute(conn)
        .await
        .map_err(|e| conflict_or_database(e, Entity::Login))?;
        Ok(())
    }

    async fn require(
        conn: &mut DB::Connection,
        table: &'static str,
        id: &str,
        entity: Entity,
    ) -> StoreResult<()> {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE id = $1");
        let found: i64 = sqlx::query_scalar(&sql)
            .bind(id.to_owned())
            .fetch_one(conn)
            .await?;
        if found == 0 {
            return Err(StoreError::NotFound(entity));
        }
        Ok(())
    }

    async fn role_of(
        conn: &mut DB::Connection,
        account_id: AccountId,
        login_id: LoginId,
    ) -> StoreResult<Option<Role>> {
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM members WHERE account_id = $1 AND login_id = $2")
                .bind(account_id.to_string())
                .bind(login_id.to_string())
                .fetch_optional(conn)
                .await?;
        role.map(|r| parse(&r, "role")).transpose()
    }

    async fn check_not_last_owner(
        conn: &mut DB::Connection,
        account_id: AccountId,
    ) -> StoreResult<()> {
        // A write first: it takes the lock, so that two owners demoting each other at once
        // cannot both pass the count.
        sqlx::query("UPDATE accounts SET id = id WHERE id = $1")
            .bind(account_id.to_string())
            .execute(&mut *conn)
            .await?;
        let owners: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE account_id = $1 AND role = $2")
                .bind(account_id.to_string())
                .bind(Role::Owner.as_str().to_owned())
                .fetch_one(&mut *conn)
                .await?;
        if owners <= 1 {
            return Err(StoreError::Invalid {
                field: "role".into(),
                message: "An organization keeps at least one owner".into(),
            });
        }
        Ok(())
    }

    async fn put_member(
        conn: &mut DB::Connection,
        account_id: AccountId,
        login_id: LoginId,
        role: Role,
        exists: bool,
    ) -> StoreResult<()> {
        let sql = if exists {
            "UPDATE members SET role = $3 WHERE account_id = $1 AND login_id = $2"
        } else {
            "INSERT INTO members (account_id, login_id, role, created_at) VALUES ($1, $2, $3, $4)"
        };
        let mut query = sqlx::query(sql)
            .bind(account_id.to_string())
            .bind(login_id.to_string())
            .bind(role.as_str().to_owned());
        if !exists {
            query = query.bind(Timestamp::now().as_millis());
        }
        query.execute(conn).await?;
        Ok(())
    }
}
