//! User JWTs for the client SDK: HS256 only, with the documented claims. `jsonwebtoken`
//! signs, parses and checks them; this module pins what it may accept.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{self, CryptoProvider, JwkUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::{AccountId, RoomId, Timestamp, User, UserId};

/// How long a user's token is valid: 90 days, as documented.
pub const TOKEN_LIFETIME_SECS: i64 = 90 * 24 * 60 * 60;

/// `{"alg":"HS256","typ":"JWT"}`, fixed so that tokens are reproducible from their claims
/// (get-user shows the token a user was created with). `jsonwebtoken::encode` would write
/// `typ` first, so tokens are assembled here and only signed by the crate.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The documented claims of a user token. All five are required: a token without one of them,
/// or with `iat` or `exp` not an integer, does not deserialize and is malformed.
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

/// Signs and verifies user tokens with the server's secret.
#[derive(Clone)]
pub struct JwtSigner {
    keys: Arc<Keys>,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSigner(<secret>)")
    }
}

impl JwtSigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        install_hs256_only();
        let secret = secret.into();
        Self {
            keys: Arc::new(Keys {
                encoding: EncodingKey::from_secret(&secret),
                decoding: DecodingKey::from_secret(&secret),
                validation: validation(),
            }),
        }
    }

    pub fn issue(&self, claims: &UserClaims) -> String {
        let claims = serde_json::to_vec(claims).expect("claims serialize");
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = crypto::sign(
            signing_input.as_bytes(),
            &self.keys.encoding,
            Algorithm::HS256,
        )
        .expect("HS256 signs with any key");
        format!("{signing_input}.{signature}")
    }

    /// The token of a user, as issued when the user was created.
    pub fn user_token(&self, user: &User) -> String {
        self.issue(&UserClaims::for_user(user))
    }

    /// Checks the algorithm, the signature and the expiry (against `now`, with no leeway).
    /// Whether the account, room and user still exist is for the caller to check.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<UserClaims, JwtError> {
        let keys = &*self.keys;
        let claims = jsonwebtoken::decode::<UserClaims>(token, &keys.decoding, &keys.validation)
            .map_err(|error| keys.refusal(token, error.kind()))?
            .claims;
        if claims.exp <= now.as_seconds() {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

/// What `jsonwebtoken::decode` is asked to check.
fn validation() -> Validation {
    // The allowed algorithms: HS256 alone. `none`, other HMACs and asymmetric algorithms
    // are refused before the signature is looked at, and no header field (`kid`, `jku`,
    // `jwk`, ...) chooses the key.
    let mut validation = Validation::new(Algorithm::HS256);
    // `exp` stays required (the crate's default; `UserClaims` requires it too). Expiry itself
    // is checked by `verify` against the caller's clock with no leeway, `exp <= now` being
    // expired: the crate's check reads the system clock, and takes `exp == now` as valid.
    validation.validate_exp = false;
    validation.leeway = 0;
    // As the crate's defaults: no `nbf` check; a token with an `aud` is refused. We issue
    // neither claim.
    validation.validate_nbf = false;
    validation.validate_aud = true;
    validation
}

impl Keys {
    /// Why a token was refused, in the terms of the socket's `authFailed` messages, which
    /// stay what they were before `jsonwebtoken`: the algorithm is judged first, then the
    /// signature, then the claims.
    fn refusal(&self, token: &str, error: &ErrorKind) -> JwtError {
        match error {
            ErrorKind::InvalidAlgorithm => JwtError::WrongAlgorithm,
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            // `UserClaims` read `exp` as an integer, so it is there; the crate reads it as an
            // unsigned one, and calls a negative `exp`, long past, missing.
            ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => JwtError::Expired,
            // The crate reads the header into its own types before it checks anything: `alg`
            // into its enum of the algorithms it knows (so `none` or `hs256` fail as JSON),
            // and each other field into the type it expects, a string for any it does not
            // know (so `"kid": 5` or `"foo": {}` fail too).
            ErrorKind::Json(_) => match header_algorithm(token) {
                Some(alg) if alg != "HS256" => JwtError::WrongAlgorithm,
                Some(_) => self.signature_refusal(token),
                None => JwtError::Malformed,
            },
            _ => JwtError::Malformed,
        }
    }

    /// For a token whose header says HS256 but that the crate could not read: a signature
    /// that does not match is what is wrong, as that was judged before the header's other
    /// fields (and the claims) ever were.
    fn signature_refusal(&self, token: &str) -> JwtError {
        let checked = token.rsplit_once('.').map(|(message, signature)| {
            crypto::verify(
                signature,
                message.as_bytes(),
                &self.decoding,
                Algorithm::HS256,
            )
        });
        match checked {
            Some(Ok(false)) => JwtError::BadSignature,
            // A signature that is not base64url, or one that matches.
            _ => JwtError::Malformed,
        }
    }
}

/// The `alg` of a three-part token whose header is a JSON object with a string `alg`.
fn header_algorithm(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<Header>(&json)
        .ok()
        .map(|header| header.alg)
}

/// `jsonwebtoken`'s cryptography for HS256 alone, with the `hmac` and `sha2` crates the server
/// already builds. The crate's own backends would bring aws-lc (a C build), or RSA, ECDSA and
/// EdDSA crates, for algorithms that are refused anyway; this one cannot sign or verify
/// anything else, whatever a `Validation` says.
static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: hs256_signer,
    verifier_factory: hs256_verifier,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes [`HS256_ONLY`] the crate's provider for this process (the crate keeps one per
/// process). Only this module uses `jsonwebtoken`, and only through a `JwtSigner`, so it is in
/// place before the first token is signed or checked; a later call finds it there already.
fn install_hs256_only() {
    let _already_installed = HS256_ONLY.install_default();
}

struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn new(secret: &[u8]) -> jsonwebtoken::errors::Result<Self> {
        Hmac::new_from_slice(secret)
            .map(Self)
            .map_err(|_| ErrorKind::InvalidKeyFormat.into())
    }
}

fn hs256_signer(
    algorithm: &Algorithm,
    key: &EncodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn crypto::JwtSigner>> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn hs256_verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn crypto::JwtVerifier>> {
    match algorithm {
        Algorithm::HS256 => Ok(Box::new(Hs256::new(key.try_get_hmac_secret()?)?)),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

impl Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(message);
        // Constant-time comparison.
        mac.verify_slice(signature)
            .map_err(signature::Error::from_source)
    }
}

impl crypto::JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl crypto::JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
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

/// The reasons a token is refused are the socket's `authFailed` messages: these pin the reason
/// for each kind of attack of `tests/api/jwt_attacks.rs`, which only sees that it is refused.
#[cfg(test)]
mod refusal_tests {
    use serde_json::{json, Value};

    use super::*;

    const SECRET: &[u8] = b"secret-one-secret-one-secret-one";
    const NOW_SECS: i64 = 1_780_048_800;

    fn now() -> Timestamp {
        Timestamp::from_millis(NOW_SECS * 1000 + 500)
    }

    fn claims() -> Value {
        json!({
            "accountId": AccountId::new(), "userId": UserId::new(), "roomId": RoomId::new(),
            "iat": NOW_SECS - 10, "exp": NOW_SECS + 3600,
        })
    }

    fn with(changes: Value) -> String {
        let mut claims = claims();
        for (key, value) in changes.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims.to_string()
    }

    fn hs256(key: &[u8], input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A token of raw header and claims text, signed with `key` (HS256) or unsigned.
    fn forge(header: &str, claims: &str, key: Option<&[u8]>) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = key.map(|key| hs256(key, &input)).unwrap_or_default();
        format!("{input}.{signature}")
    }

    fn header(alg: &str, extra: &str) -> String {
        format!(r#"{{"alg":"{alg}","typ":"JWT"{extra}}}"#)
    }

    #[test]
    fn each_kind_of_attack_keeps_its_reason() {
        let signer = JwtSigner::new(SECRET.to_vec());
        let valid = claims().to_string();
        let other_key: &[u8] = b"attacker-chosen-key-attacker-chosen-key";
        let alg = |alg: &str| forge(&header(alg, ""), &valid, Some(SECRET));
        let headed = |extra: &str, key| forge(&header("HS256", extra), &valid, key);
        let signed = |claims: &str| forge(&header("HS256", ""), claims, Some(SECRET));
        let good = signed(&valid);
        let (signing_input, signature) = good.rsplit_once('.').unwrap();

        // Algorithms the crate does not know (`none`, `hs256`) and ones it knows.
        let wrong_algorithm = [
            forge(&header("none", ""), &valid, None),
            alg("nOnE"),
            alg("hs256"),
            alg("HS256 "),
            alg(""),
            alg("RS256"),
            alg("EdDSA"),
            alg("HS512"),
        ];
        // Keys named by the header are never used; nor is a header field of a type the crate
        // cannot read a reason to skip the signature.
        let bad_signature = [
            headed(r#","kid":"k""#, Some(other_key)),
            headed(r#","jku":"http://127.0.0.1:1/""#, Some(other_key)),
            headed(r#","kid":5"#, Some(other_key)),
            headed(r#","foo":{}"#, None),
            headed("", None),
            headed("", Some(other_key)),
            format!("{signing_input}."),
        ];
        // By a second, just now, long ago, before the epoch.
        let expired =
            [NOW_SECS - 1, NOW_SECS, 0, i64::MIN].map(|exp| signed(&with(json!({ "exp": exp }))));
        let malformed = [
            signed(&with(json!({ "exp": null }))),
            signed(&with(json!({ "exp": 1e30 }))),
            signed(&with(json!({ "exp": (NOW_SECS + 60) as f64 + 0.5 }))),
            signed(&with(json!({ "exp": (NOW_SECS + 60).to_string() }))),
            signed(&with(json!({ "userId": "alice" }))),
            signed("{}"),
            signed(&valid.replacen(r#""exp":"#, r#""exp":0,"exp":"#, 1)),
            forge(r#"{"alg":"HS256","alg":"none"}"#, &valid, Some(SECRET)),
            format!("{good}.{signature}"),
            format!("{good}="),
            signing_input.to_owned(),
            // Only we could sign these, and we issue neither an audience nor such a header.
            signed(&with(json!({ "aud": "x" }))),
            headed(r#","kid":5"#, Some(SECRET)),
        ];
        for (reason, tokens) in [
            (JwtError::WrongAlgorithm, &wrong_algorithm[..]),
            (JwtError::BadSignature, &bad_signature),
            (JwtError::Expired, &expired),
            (JwtError::Malformed, &malformed),
        ] {
            for token in tokens {
                assert_eq!(signer.verify(token, now()), Err(reason), "{token}");
            }
        }
        assert!(signer.verify(&good, now()).is_ok());
    }

    #[test]
    fn tokens_are_byte_for_byte_those_issued_before_jsonwebtoken() {
        let signer = JwtSigner::new(b"test-secret-test-secret-test-secret!".to_vec());
        let claims = UserClaims {
            account_id: "6f1c7d0e-8a51-4a43-9b0e-2f5b1d3c9a10".parse().unwrap(),
            user_id: "0d2a7c1e-5b3f-4e6a-8c9d-1e2f3a4b5c6d".parse().unwrap(),
            room_id: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d".parse().unwrap(),
            iat: 1_780_048_800,
            exp: 1_780_048_800 + TOKEN_LIFETIME_SECS,
        };
        assert_eq!(
            signer.issue(&claims),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
             eyJhY2NvdW50SWQiOiI2ZjFjN2QwZS04YTUxLTRhNDMtOWIwZS0yZjViMWQzYzlhMTAi\
             LCJ1c2VySWQiOiIwZDJhN2MxZS01YjNmLTRlNmEtOGM5ZC0xZTJmM2E0YjVjNmQiLCJy\
             b29tSWQiOiI5YThiN2M2ZC01ZTRmLTRhM2ItOGMyZC0xZTBmOWE4YjdjNmQiLCJpYXQi\
             OjE3ODAwNDg4MDAsImV4cCI6MTc4NzgyNDgwMH0.\
             wX2_xywkY_xHBKEfArFtlZg_JJrMD6mrLC-SbY6sOKA"
        );
    }

    #[test]
    fn the_crate_can_sign_and_verify_hs256_alone() {
        let _ = JwtSigner::new(SECRET.to_vec());
        let key = EncodingKey::from_secret(SECRET);
        assert!(crypto::sign(b"input", &key, Algorithm::HS256).is_ok());
        for algorithm in [Algorithm::HS384, Algorithm::HS512] {
            assert!(
                crypto::sign(b"input", &key, algorithm).is_err(),
                "{algorithm:?}"
            );
        }
        let key = DecodingKey::from_secret(SECRET);
        assert!(crypto::verify("AAAA", b"input", &key, Algorithm::HS512).is_err());
    }
}
