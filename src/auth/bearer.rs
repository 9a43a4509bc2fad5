//! The REST API's authentication: `Authorization: Bearer base64(accountId:apiKey)`, or (without
//! that header) the dashboard's session cookie, with its CSRF token on writes and its member's
//! role; and the extractor that checks either against the account in the path.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::sessions::{CookieToken, SessionChecks, CSRF_HEADER};
use super::{KeyVerifier, RateLimiter};
use crate::domain::{AccountId, ApiKeyId, LoginId, Role};
use crate::error::ApiError;

/// A cookie-authenticated write without the session's CSRF token.
pub const CSRF_REFUSAL: &str = "A request made with the dashboard's session cookie that changes \
     something must carry the session's CSRF token in the X-CSRF-Token header";
/// A viewer's write.
pub const VIEWER_REFUSAL: &str = "Viewers have read-only access: they may not create, change or \
     delete anything in this organization (an owner or admin can change their role)";

/// Standard base64, with or without `=` padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a Bearer token claims to be, before it is checked.
#[derive(PartialEq, Eq)]
pub struct Credentials {
    pub account_id: AccountId,
    pub api_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Reads the `Authorization` header; `None` when it is missing, malformed or repeated
    /// (two headers could name two accounts, and no rule says which one a proxy or a
    /// framework would pick: refusing both is the only answer that cannot be fooled).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let value = values.next()?.to_str().ok()?;
        if values.next().is_some() {
            return None;
        }
        let (scheme, token) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let decoded = LENIENT_BASE64.decode(token.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (account, key) = decoded.split_once(':')?;
        if key.is_empty() {
            return None;
        }
        Some(Self {
            account_id: account.parse().ok()?,
            api_key: key.to_owned(),
        })
    }
}

/// A request authenticated for the account named in its path.
#[derive(Debug, Clone, Copy)]
pub struct AccountAuth {
    pub account_id: AccountId,
    pub caller: Caller,
}

/// Who made an authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A live API key of the account (Bearer).
    Key(ApiKeyId),
    /// A member of the account, through the dashboard's session cookie.
    Member { login_id: LoginId, role: Role },
}

/// What checking a Bearer token takes: the key lookups and the per-key rate limits.
#[derive(Clone)]
pub struct KeyChecks {
    pub keys: Arc<KeyVerifier>,
    pub rate_limiter: Arc<RateLimiter>,
}

impl<S> FromRequestParts<S> for AccountAuth
where
    S: Send + Sync,
    KeyChecks: FromRef<S>,
    SessionChecks: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // Bearer wins when both are present: an API client is never judged by a cookie.
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let CookieToken::Present(token) = CookieToken::from_headers(&parts.headers) {
                return session_auth(parts, &SessionChecks::from_ref(state), &token).await;
            }
        }
        let checks = KeyChecks::from_ref(state);
        let credentials =
            Credentials::from_headers(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let owner = checks
            .keys
            .verify(credentials.account_id, &credentials.api_key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if path_account(request_path(parts)) != Some(owner.account_id) {
            return Err(ApiError::Forbidden);
        }
        checks.rate_limiter.check(owner.key_id)?;
        Ok(Self {
            account_id: owner.account_id,
            caller: Caller::Key(owner.key_id),
        })
    }
}

/// The dashboard's session cookie: a live session (else 401), its login a member of the
/// path's account (else 403), and on a write the session's CSRF token and a role that writes.
async fn session_auth(
    parts: &Parts,
    checks: &SessionChecks,
    token: &super::sessions::SessionToken,
) -> Result<AccountAuth, ApiError> {
    let account_id = path_account(request_path(parts)).ok_or(ApiError::Unauthorized)?;
    let access = checks
        .access(token, Some(account_id))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let role = access.role.ok_or(ApiError::Forbidden)?;
    if !parts.method.is_safe() {
        let given = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !token.csrf_matches(given) {
            return Err(ApiError::NotAllowed(CSRF_REFUSAL.into()));
        }
        if !role.may_write() {
            return Err(ApiError::NotAllowed(VIEWER_REFUSAL.into()));
        }
    }
    Ok(AccountAuth {
        account_id,
        caller: Caller::Member {
            login_id: access.login_id,
            role,
        },
    })
}

/// The request's whole path: nested routers see only their own part.
fn request_path(parts: &Parts) -> &str {
    parts
        .extensions
        .get::<OriginalUri>()
        .map_or(parts.uri.path(), |original| original.path())
}

/// The `:accountId` of a `/v1/accounts/:accountId/...` path.
fn path_account(path: &str) -> Option<AccountId> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("v1"), Some("accounts"), Some(id)) => id.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn parses_padded_and_unpadded_tokens() {
        let id = AccountId::new();
        let padded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:key1"));
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        for token in [padded.as_str(), unpadded] {
            let creds = Credentials::from_headers(&headers(&format!("Bearer {token}"))).unwrap();
            assert_eq!(creds.account_id, id);
            assert_eq!(creds.api_key, "key1");
        }
    }

    #[test]
    fn rejects_malformed_headers() {
        let id = AccountId::new();
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for value in [
            "".to_owned(),
            "Bearer".to_owned(),
            "Basic abc".to_owned(),
            format!("Token {}", encode(&format!("{id}:k"))),
            "Bearer !!!not-base64!!!".to_owned(),
            format!("Bearer {}", encode("no-colon")),
            format!("Bearer {}", encode("not-a-uuid:key")),
            format!("Bearer {}", encode(&format!("{id}:"))),
        ] {
            assert_eq!(Credentials::from_headers(&headers(&value)), None, "{value}");
        }
        assert_eq!(Credentials::from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn rejects_repeated_headers() {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:key1", AccountId::new()));
        let mut twice = headers(&format!("Bearer {token}"));
        assert!(Credentials::from_headers(&twice).is_some());
        twice.append(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        assert_eq!(Credentials::from_headers(&twice), None);
    }

    #[test]
    fn finds_the_account_in_the_path() {
        let id = AccountId::new();
        assert_eq!(path_account(&format!("/v1/accounts/{id}/rooms")), Some(id));
        assert_eq!(path_account("/v1/accounts/nope/rooms"), None);
        assert_eq!(path_account("/healthz"), None);
    }
}
