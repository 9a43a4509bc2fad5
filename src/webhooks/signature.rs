//! Signing deliveries. Two signatures over the same body, from the one secret:
//! - `X-CollabKit-Signature`: hex HMAC-SHA256 of the raw body with the secret as the key,
//!   which the documented verifier (`createHmac('sha256', secret).update(rawBody)`) accepts;
//! - the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64>`), whose key is the secret's base64 part after `whsec_`,
//!   so that existing verifier libraries (and their replay protection) work.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET_PREFIX: &str = "whsec_";

/// A new secret in the Standard Webhooks format: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The documented signature: hex HMAC-SHA256 of the body, keyed with the whole secret.
pub fn documented(secret: &str, body: &[u8]) -> String {
    hmac(secret.as_bytes(), &[body])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Standard Webhooks signature (`v1,<base64>`) of `{id}.{timestamp}.{body}`.
pub fn standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = STANDARD
        .decode(encoded)
        .unwrap_or_else(|_| secret.as_bytes().to_vec());
    let signed = hmac(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", STANDARD.encode(signed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_look_like_standard_webhooks_secrets() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's examples.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn documented_signature_is_hex_of_the_body() {
        let signature = documented("whsec_abc", b"{}");
        assert_eq!(signature.len(), 64);
        assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(signature, documented("whsec_abd", b"{}"));
    }
}
