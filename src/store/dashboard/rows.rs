//! The dashboard's rows as stored, and their conversion to domain types.

use super::{LoginSecret, SessionAccess};
use crate::domain::{Email, Invitation, Login, Member, Timestamp};
use crate::store::sql::parse;
use crate::store::{StoreError, StoreResult};

pub(super) const INVITATION_COLUMNS: &str = "id, account_id, role, created_at, expires_at, used_at";

#[derive(sqlx::FromRow)]
pub(super) struct LoginRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
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

pub(super) fn parse_email(text: &str) -> StoreResult<Email> {
    Email::parse(text).map_err(|_| StoreError::Corrupt(format!("email: {text:?}")))
}

#[derive(sqlx::FromRow)]
pub(super) struct MemberRow {
    pub account_id: String,
    pub login_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
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
pub(super) struct MembershipRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub role: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    pub login_id: String,
    pub email: String,
    pub account_id: Option<String>,
    pub expires_at: i64,
    pub role: Option<String>,
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
pub(super) struct RecentSessionRow {
    pub id: String,
    pub user_id: String,
    pub room_id: String,
    pub joined_at: i64,
    pub left_at: Option<i64>,
    pub name: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct InvitationRow {
    pub id: String,
    pub account_id: String,
    pub role: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
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
