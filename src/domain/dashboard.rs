//! The dashboard's people: logins (an email address and a password), their membership of
//! organizations (accounts) with a role, and invitations. The rules: what a role may do, what
//! an email address and a password must look like.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{AccountId, InvitationId, LoginId, Timestamp};

/// Shortest password accepted: NIST SP 800-63B's minimum for a chosen secret.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted: enough for any passphrase, small enough that hashing it is cheap.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_BYTES: usize = 254;

/// What a member of an organization may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Everything but deleting the organization and managing its owners.
    Admin,
    /// Everything.
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Creating, changing and deleting rooms, users, stores, webhooks and API keys.
    pub fn may_write(self) -> bool {
        self >= Role::Admin
    }

    /// Deleting the organization, renaming it, and inviting, changing or removing owners.
    pub fn may_manage_owners(self) -> bool {
        self == Role::Owner
    }

    /// Whether a member of this role may grant (invite with, or change a member to) `role`.
    pub fn may_grant(self, role: Role) -> bool {
        self.may_write() && (role != Role::Owner || self.may_manage_owners())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            _ => Err(()),
        }
    }
}

/// An email address, trimmed and lowercased. Only its shape is checked (one `@`, something on
/// each side, no spaces or control characters): the dashboard sends no mail.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim().to_lowercase();
        if text.is_empty() {
            return Err("Enter your email address");
        }
        if text.len() > MAX_EMAIL_BYTES {
            return Err("That email address is too long");
        }
        let valid = match text.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !text.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err("That is not an email address");
        }
        Ok(Self(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a new password is refused; `None` when it is acceptable.
pub fn password_problem(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!(
            "Choose a password of at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!(
            "Choose a password of at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    None
}

/// A person who logs in to the dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub id: LoginId,
    pub email: Email,
    pub created_at: Timestamp,
}

/// A login's membership of an organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub account_id: AccountId,
    pub login_id: LoginId,
    pub email: Email,
    pub role: Role,
    pub created_at: Timestamp,
}

/// An invitation to join an organization with a role, by a link holding a secret token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitation {
    pub id: InvitationId,
    pub account_id: AccountId,
    pub role: Role,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_their_powers() {
        assert!(!Role::Viewer.may_write());
        assert!(Role::Admin.may_write() && !Role::Admin.may_manage_owners());
        assert!(Role::Owner.may_manage_owners());
        assert!(Role::Admin.may_grant(Role::Viewer) && Role::Admin.may_grant(Role::Admin));
        assert!(!Role::Admin.may_grant(Role::Owner));
        assert!(!Role::Viewer.may_grant(Role::Viewer));
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("Owner".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in ["", "  ", "ada", "@x", "ada@", "a@b@c", "a b@c", "a\u{0}@b"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@x.io", "a".repeat(300))).is_err());
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("long enough").is_none());
        assert!(password_problem("ééééééééé").is_none());
        assert!(password_problem(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_some());
    }
}
