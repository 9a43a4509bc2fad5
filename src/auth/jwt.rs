//! User JWTs for the client SDK: HS256 only, with the documented claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{AccountId, RoomId, Timestamp, User, UserId};

/// How long a user's token is valid: 90 days, as documented.
pub const TOKEN_LIFETIME_SECS: i64 = 90 * 24 * 60 * 60;

/// `{"alg":"HS256","typ":"JWT"}`, fixed so that tokens are reproducible from their claims.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The documented claims of a user token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserClaims {
    pub account_id: AccountId,
    pub user_id: UserId,
    pub room_id: RoomId,
    pub iat: i64,
    pub exp: i64,
}

impl UserClaims {
    /// The claims of a user's token, derived from when it was issued.
    pub fn for_user(user: &User) -> Self {
        let iat = user.token_issued_at.as_seconds();
        Self {
            account_id: user.account_id,
            user_id: user.id,
            room_id: user.room_id,
            iat,
            exp: iat + TOKEN_LIFETIME_SECS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token is not signed with HS256")]
    WrongAlgorithm,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Signs and verifies user tokens with the server's secret.
#[derive(Clone)]
pub struct JwtSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSigner(<secret>)")
    }
}

impl JwtSigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    pub fn issue(&self, claims: &UserClaims) -> String {
        let claims = serde_json::to_vec(claims).expect("claims serialize");
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.mac(signing_input.as_bytes()).finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The token of a user, as issued when the user was created.
    pub fn user_token(&self, user: &User) -> String {
        self.issue(&UserClaims::for_user(user))
    }

    /// Checks the algorithm, the signature and the expiry. Whether the account, room and user
    /// still exist is for the caller to check.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<UserClaims, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Header = decode_json(header)?;
        // Only HS256: never `none`, never an algorithm chosen by the token.
        if header.alg != "HS256" {
            return Err(JwtError::WrongAlgorithm);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Malformed)?;
        let signed_len = token.len() - signature_len(token);
        self.mac(&token.as_bytes()[..signed_len])
            .verify_slice(&signature)
            .map_err(|_| JwtError::BadSignature)?;
        let claims: UserClaims = decode_json(claims)?;
        if claims.exp <= now.as_seconds() {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(data);
        mac
    }
}

/// Length of `.signature` at the end of a token.
fn signature_len(token: &str) -> usize {
    token.rsplit('.').next().map_or(0, |s| s.len() + 1)
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> UserClaims {
        UserClaims {
            account_id: AccountId::new(),
            user_id: UserId::new(),
            room_id: RoomId::new(),
            iat: 1_000,
            exp,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_millis(2_000_000)
    }

    #[test]
    fn issues_tokens_it_verifies() {
        let signer = JwtSigner::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let claims = claims(1_000 + TOKEN_LIFETIME_SECS);
        let token = signer.issue(&claims);
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIs"), "{token}");
        assert_eq!(signer.verify(&token, now()), Ok(claims));
    }

    #[test]
    fn rejects_expired_forged_and_malformed_tokens() {
        let signer = JwtSigner::new(b"secret-one-secret-one-secret-one".to_vec());
        let other = JwtSigner::new(b"secret-two-secret-two-secret-two".to_vec());
        let expired = signer.issue(&claims(1_999));
        assert_eq!(signer.verify(&expired, now()), Err(JwtError::Expired));
        let forged = other.issue(&claims(i64::MAX));
        assert_eq!(signer.verify(&forged, now()), Err(JwtError::BadSignature));
        for garbage in ["", "abc", "a.b", "a.b.c", "a.b.c.d", "....", "eyJ.eyJ.x"] {
            assert_eq!(
                signer.verify(garbage, now()),
                Err(JwtError::Malformed),
                "{garbage}"
            );
        }
    }

    #[test]
    fn rejects_other_algorithms() {
        let signer = JwtSigner::new(b"secret-one-secret-one-secret-one".to_vec());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(i64::MAX)).unwrap());
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{payload}.");
            assert_eq!(
                signer.verify(&token, now()),
                Err(JwtError::WrongAlgorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_tampered_payload_breaks_the_signature() {
        let signer = JwtSigner::new(b"secret-one-secret-one-secret-one".to_vec());
        let token = signer.issue(&claims(i64::MAX));
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(i64::MAX)).unwrap());
        parts[1] = &other;
        assert_eq!(
            signer.verify(&parts.join("."), now()),
            Err(JwtError::BadSignature)
        );
    }
}
