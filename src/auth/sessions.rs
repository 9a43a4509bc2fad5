//! Dashboard sessions: the cookie's random token (only its SHA-256 is stored), the CSRF token
//! derived from it, reading the cookie from a request and writing `Set-Cookie`.
//!
//! CSRF: every state-changing request authenticated by the cookie must carry the session's
//! CSRF token (a form field `csrf`, or the `X-CSRF-Token` header for the REST API). The token
//! is a hash of the session's secret: a page of another site can neither read the cookie nor
//! the token, so it cannot forge a request that passes, whatever the browser sends as Origin.
//! `SameSite=Lax` is a second line.

use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use std::time::Duration;

use crate::config::CookieSecure;
use crate::domain::{AccountId, Timestamp};
use crate::store::{DynStore, SessionAccess, StoreResult};

pub const COOKIE_NAME: &str = "collabkit_session";
/// The header a cookie-authenticated REST call carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Random bytes in a session token: 256 bits.
const TOKEN_BYTES: usize = 32;
/// Characters of such a token in unpadded base64url.
const TOKEN_CHARS: usize = 43;

/// A session's secret, as the cookie carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionToken {
    pub fn generate() -> Self {
        Self(random_token())
    }

    /// A token of the right shape, else `None` (a malformed cookie).
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == TOKEN_CHARS
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| Self(text.to_owned()))
    }

    /// What the database keeps.
    pub fn hash(&self) -> String {
        hex_sha256(self.0.as_bytes())
    }

    /// The CSRF token of this session.
    pub fn csrf(&self) -> String {
        hex_sha256(format!("csrf\0{}", self.0).as_bytes())
    }

    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        let expected = self.csrf();
        expected.len() == given.len()
            && expected
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The session's cookie, for `Set-Cookie`.
    pub fn cookie(&self, max_age_secs: u64, secure: bool) -> HeaderValue {
        cookie_value(&self.0, max_age_secs, secure)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How far a session's end must have fallen behind "now + TTL" before a use moves it: at most
/// one database write a minute per session, not one per request.
const SLIDE_STEP: Duration = Duration::from_secs(60);

/// What checking a session cookie takes: the store and the sessions' time to live.
#[derive(Clone)]
pub struct SessionChecks {
    pub store: DynStore,
    pub ttl: Duration,
}

impl SessionChecks {
    /// The live session of `token` (and its login's role in `account_id`), its end moved
    /// forward (sliding expiry).
    pub async fn access(
        &self,
        token: &SessionToken,
        account_id: Option<AccountId>,
    ) -> StoreResult<Option<SessionAccess>> {
        let now = Timestamp::now();
        let hash = token.hash();
        let Some(mut access) = self.store.session_access(&hash, account_id, now).await? else {
            return Ok(None);
        };
        let ttl = millis(self.ttl);
        let renewed = now.as_millis().saturating_add(ttl);
        if renewed - access.expires_at.as_millis() >= millis(SLIDE_STEP) {
            let expires_at = Timestamp::from_millis(renewed);
            self.store.extend_session(&hash, expires_at).await?;
            access.expires_at = expires_at;
        }
        Ok(Some(access))
    }
}

/// How often expired sessions are deleted (they are refused from the moment they expire).
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Deletes expired sessions every hour until `shutdown`.
pub async fn prune(store: DynStore, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        match store.delete_expired_sessions(Timestamp::now()).await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "deleted expired dashboard sessions"),
            Err(error) => tracing::warn!(%error, "deleting expired dashboard sessions failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PRUNE_INTERVAL) => {}
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    cookie_value("", 0, secure)
}

fn cookie_value(token: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&text).expect("a cookie of base64url characters is a header value")
}

/// What the request's `Cookie` headers say about the session cookie.
#[derive(Debug, PartialEq, Eq)]
pub enum CookieToken {
    Absent,
    Malformed,
    Present(SessionToken),
}

impl CookieToken {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut found = None;
        for value in headers.get_all(header::COOKIE) {
            let Ok(text) = value.to_str() else {
                continue;
            };
            for pair in text.split(';') {
                if let Some((name, value)) = pair.trim().split_once('=') {
                    if name == COOKIE_NAME {
                        if found.is_some() {
                            // Two session cookies: which one a proxy would pass is anyone's guess.
                            return Self::Malformed;
                        }
                        found = Some(value.trim().to_owned());
                    }
                }
            }
        }
        match found {
            None => Self::Absent,
            Some(text) => SessionToken::parse(&text).map_or(Self::Malformed, Self::Present),
        }
    }
}

/// Whether cookies set for this request get `Secure`.
pub fn secure_for(setting: CookieSecure, headers: &HeaderMap) -> bool {
    match setting {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        // TLS ends at a proxy in front of us; it says so. A client lying about it only makes
        // its own cookie stricter.
        CookieSecure::Auto => headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")),
    }
}

/// A random secret in unpadded base64url: invitation links use them too.
pub fn random_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn tokens_round_trip_through_the_cookie() {
        let token = SessionToken::generate();
        assert_eq!(token.as_str().len(), TOKEN_CHARS);
        let cookie = format!("other=1; {COOKIE_NAME}={}; x=y", token.as_str());
        assert_eq!(
            CookieToken::from_headers(&headers(&cookie)),
            CookieToken::Present(token.clone())
        );
        assert_ne!(token.hash(), token.as_str());
        assert!(token.csrf_matches(&token.csrf()));
        assert!(!token.csrf_matches(&SessionToken::generate().csrf()));
        assert!(!token.csrf_matches(""));
    }

    #[test]
    fn malformed_and_absent_cookies_are_told_apart() {
        assert_eq!(
            CookieToken::from_headers(&HeaderMap::new()),
            CookieToken::Absent
        );
        assert_eq!(
            CookieToken::from_headers(&headers("a=b")),
            CookieToken::Absent
        );
        for bad in [
            format!("{COOKIE_NAME}="),
            format!("{COOKIE_NAME}=short"),
            format!("{COOKIE_NAME}={}", "!".repeat(TOKEN_CHARS)),
            format!(
                "{COOKIE_NAME}={0}; {COOKIE_NAME}={0}",
                "a".repeat(TOKEN_CHARS)
            ),
        ] {
            assert_eq!(
                CookieToken::from_headers(&headers(&bad)),
                CookieToken::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn cookies_carry_their_attributes() {
        let token = SessionToken::generate();
        let plain = token.cookie(3600, false);
        let text = plain.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax"));
        assert!(text.contains("Max-Age=3600") && !text.contains("Secure"));
        assert!(token
            .cookie(1, true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(secure_for(CookieSecure::Auto, &forwarded));
        assert!(!secure_for(CookieSecure::Auto, &HeaderMap::new()));
        assert!(secure_for(CookieSecure::Always, &HeaderMap::new()));
    }
}
