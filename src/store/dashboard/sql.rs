//! `DashboardStore` on either database.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor};

use super::rows::{
    InvitationRow, LoginRow, MemberRow, MembershipRow, RecentSessionRow, SessionRow,
    INVITATION_COLUMNS,
};
use super::{DashboardStore, LoginSecret, NewInvitation, NewLogin, NewSession, SessionAccess};
use crate::domain::{
    Account, AccountId, Email, Invitation, InvitationId, LoginId, Member, Role, RoomId, Timestamp,
    UserSession,
};
use crate::store::accounts::NewApiKey;
use crate::store::dialect::{Column, Dialect, RowsAffected};
use crate::store::sql::{conflict_or_database, parse, SqlStore};
use crate::store::{Entity, RoomScope, StoreError, StoreResult};

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
