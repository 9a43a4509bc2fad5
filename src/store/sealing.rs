//! At-rest encryption of the secrets the store keeps (webhook signing secrets): each value is
//! sealed with XChaCha20-Poly1305 under the secrets key and bound to the row it belongs to.
//!
//! Stored form: `v1.<key id>.<nonce>.<ciphertext>` (the last two in unpadded base64url, the
//! ciphertext ending with its 16-byte tag). The key id, a short hash of the key, names the key
//! that sealed the value, so that a node holding the current and the previous keys opens
//! values sealed by any of them, and a value sealed by a key it lacks is a clear error.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// A secrets key is 256 bits, XChaCha20-Poly1305's key size.
pub const KEY_BYTES: usize = 32;
/// XChaCha20's extended nonce: 192 random bits never repeat in practice however many values
/// one key seals, where AES-GCM's 96 bits would ask us to count (about 2^32 values per key).
const NONCE_BYTES: usize = 24;
/// The format tag: a new cipher or layout gets a new one, and old values stay readable.
const VERSION: &str = "v1";
/// SHA-256 bytes kept as a key id: 48 bits tell a handful of keys apart, and a truncated hash
/// of a random 256-bit key reveals nothing useful about it, so the id may be logged.
const KEY_ID_BYTES: usize = 6;
/// Characters of a key id in unpadded base64url (6 bytes: 8 characters).
const KEY_ID_CHARS: usize = 8;
/// Hashed before the key, so that the id is not the plain SHA-256 of the key used elsewhere.
const KEY_ID_DOMAIN: &[u8] = b"collabkit secrets key id\0";

/// One 256-bit secrets key. Its `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; KEY_BYTES]);

/// Why a configured key was refused. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "must be {KEY_BYTES} bytes in base64 (e.g. `openssl rand -base64 32`); this is not base64"
    )]
    NotBase64,
    #[error("must be {KEY_BYTES} bytes in base64 (e.g. `openssl rand -base64 32`); this decodes to {0} bytes")]
    WrongLength(usize),
}

impl SecretsKey {
    pub fn generate() -> Result<Self, SealError> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(Self(bytes))
    }

    /// A key in base64, standard or URL-safe alphabet, padded or not (surrounding whitespace
    /// is ignored: files and environment variables often end with a newline).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or(KeyError::NotBase64)?;
        let bytes: [u8; KEY_BYTES] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(decoded.len()))?;
        Ok(Self(bytes))
    }

    /// The key in standard padded base64, as `openssl rand -base64 32` prints one.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The key's public name: 8 base64url characters of a hash of it.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(KEY_ID_DOMAIN)
            .chain_update(self.0)
            .finalize();
        URL_SAFE_NO_PAD.encode(&digest[..KEY_ID_BYTES])
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretsKey({})", self.id())
    }
}

/// Why a value could not be sealed or opened. Never carries the value or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the operating system's random source failed")]
    Random,
    #[error(
        "sealed with a key this node does not have (key id {0}); configure that key in \
         secrets_key or secrets_previous_keys"
    )]
    UnknownKey(String),
    #[error("the sealed value does not authenticate: it was altered or moved from another row")]
    NotAuthentic,
    #[error("not a sealed value of a known format")]
    UnknownFormat,
}

/// Seals values with the current key; opens values sealed with it or a previous one. Cheap to
/// clone; its `Debug` shows key ids only.
#[derive(Clone)]
pub struct Sealer(Arc<Keyring>);

struct Keyring {
    current: Keyed,
    /// Keys that only open: what sealed values before a rotation finished.
    previous: Vec<Keyed>,
}

struct Keyed {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Keyed {
    fn new(key: &SecretsKey) -> Self {
        Self {
            id: key.id(),
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key.0)),
        }
    }
}

impl Sealer {
    pub fn new(current: &SecretsKey, previous: &[SecretsKey]) -> Self {
        let current = Keyed::new(current);
        let previous = previous
            .iter()
            .map(Keyed::new)
            .filter(|key| key.id != current.id)
            .collect();
        Self(Arc::new(Keyring { current, previous }))
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.0.current.id
    }

    /// How every value sealed with the current key starts (to find the others in SQL).
    pub fn current_prefix(&self) -> String {
        format!("{VERSION}.{}.", self.0.current.id)
    }

    /// Seals `plaintext` for the row named by `context` (say `webhooks.secret:<id>`): opening
    /// it with another context fails, so a sealed value cannot be copied to another row.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, SealError> {
        let key = &self.0.current;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = associated_data(&key.id, context);
        let sealed = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        Ok(format!(
            "{VERSION}.{}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// The plaintext of a value `seal` made for the same `context`, with any known key.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SealError> {
        let mut parts = stored.split('.');
        let (Some(VERSION), Some(key_id), Some(nonce), Some(sealed), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SealError::UnknownFormat);
        };
        let well_formed_id = key_id.len() == KEY_ID_CHARS
            && key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed_id {
            return Err(SealError::UnknownFormat);
        }
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == NONCE_BYTES)
            .ok_or(SealError::UnknownFormat)?;
        let sealed = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::UnknownFormat)?;
        let keyring = &self.0;
        let key = std::iter::once(&keyring.current)
            .chain(&keyring.previous)
            .find(|key| key.id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let aad = associated_data(key_id, context);
        let plaintext = key
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::NotAuthentic)?;
        String::from_utf8(plaintext).map_err(|_| SealError::NotAuthentic)
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<&str> = self.0.previous.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Sealer")
            .field("current", &self.0.current.id)
            .field("previous", &previous)
            .finish()
    }
}

/// The format and key id are authenticated too, so that no part of the header can be swapped.
fn associated_data(key_id: &str, context: &str) -> String {
    format!("{VERSION}.{key_id}.{context}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    const ROW: &str = "webhooks.secret:wh_1";

    fn key() -> SecretsKey {
        SecretsKey::generate().unwrap()
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let sealer = Sealer::new(&key(), &[]);
        let first = sealer.seal(SECRET, ROW).unwrap();
        let second = sealer.seal(SECRET, ROW).unwrap();
        assert_ne!(first, second, "a random nonce per value");
        for sealed in [&first, &second] {
            assert!(!sealed.contains(SECRET) && !sealed.contains(&SECRET[6..]));
            assert!(sealed.starts_with(&sealer.current_prefix()));
            assert_eq!(sealer.open(sealed, ROW).unwrap(), SECRET);
        }
        let parts: Vec<&str> = first.split('.').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[1]), ("v1", sealer.current_key_id()));
    }

    #[test]
    fn a_value_sealed_with_another_key_is_an_unknown_key() {
        let (old, new) = (key(), key());
        let sealed = Sealer::new(&old, &[]).seal(SECRET, ROW).unwrap();
        let error = Sealer::new(&new, &[]).open(&sealed, ROW).unwrap_err();
        assert_eq!(error, SealError::UnknownKey(old.id()));
        assert!(error.to_string().contains(&old.id()));
        assert!(!error.to_string().contains(&old.to_base64()));
        // Kept as a previous key, the old one still opens it.
        let rotating = Sealer::new(&new, std::slice::from_ref(&old));
        assert_eq!(rotating.open(&sealed, ROW).unwrap(), SECRET);
        assert!(rotating
            .seal(SECRET, ROW)
            .unwrap()
            .starts_with(&format!("v1.{}.", new.id())));
    }

    #[test]
    fn a_key_id_forged_onto_another_keys_value_does_not_open() {
        let (a, b) = (key(), key());
        let sealer = Sealer::new(&a, std::slice::from_ref(&b));
        let sealed = Sealer::new(&b, &[]).seal(SECRET, ROW).unwrap();
        let forged = sealed.replacen(&b.id(), &a.id(), 1);
        assert_eq!(sealer.open(&forged, ROW), Err(SealError::NotAuthentic));
    }

    #[test]
    fn tampered_ciphertext_does_not_open() {
        let sealer = Sealer::new(&key(), &[]);
        let sealed = sealer.seal(SECRET, ROW).unwrap();
        let (head, body) = sealed.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        bytes[0] ^= 1;
        let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(sealer.open(&tampered, ROW), Err(SealError::NotAuthentic));
        let truncated = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&bytes[..8]));
        assert_eq!(sealer.open(&truncated, ROW), Err(SealError::NotAuthentic));
    }

    #[test]
    fn a_value_moved_to_another_row_does_not_open() {
        let sealer = Sealer::new(&key(), &[]);
        let sealed = sealer.seal(SECRET, ROW).unwrap();
        assert_eq!(
            sealer.open(&sealed, "webhooks.secret:wh_2"),
            Err(SealError::NotAuthentic)
        );
    }

    #[test]
    fn unknown_versions_and_malformed_values_are_refused() {
        let sealer = Sealer::new(&key(), &[]);
        let sealed = sealer.seal(SECRET, ROW).unwrap();
        let v2 = sealed.replacen("v1.", "v2.", 1);
        for stored in [
            v2.as_str(),
            SECRET,
            "",
            "v1",
            "v1.abc.def",
            "v1.short.AAAA.AAAA",
            &format!("{sealed}.extra"),
            &format!("v1.{}.not*base64.AAAA", sealer.current_key_id()),
            &format!("v1.{}.AAAA.AAAA", sealer.current_key_id()),
        ] {
            assert_eq!(
                sealer.open(stored, ROW),
                Err(SealError::UnknownFormat),
                "{stored:?}"
            );
        }
    }

    #[test]
    fn keys_parse_from_base64_in_either_alphabet_and_must_be_32_bytes() {
        let key = key();
        let standard = key.to_base64();
        assert_eq!(standard.len(), 44);
        let url_safe = URL_SAFE_NO_PAD.encode(key.0);
        for text in [standard.clone(), format!("{standard}\n"), url_safe] {
            assert_eq!(SecretsKey::parse(&text).unwrap(), key);
        }
        assert_eq!(
            SecretsKey::parse(&STANDARD.encode([7u8; 16])),
            Err(KeyError::WrongLength(16))
        );
        assert_eq!(SecretsKey::parse("not base64!"), Err(KeyError::NotBase64));
        assert_eq!(SecretsKey::parse(""), Err(KeyError::WrongLength(0)));
    }

    #[test]
    fn key_ids_are_stable_short_and_debug_shows_nothing_else() {
        let key = SecretsKey::parse(&STANDARD.encode([1u8; 32])).unwrap();
        assert_eq!(key.id(), key.clone().id());
        assert_eq!(key.id().len(), KEY_ID_CHARS);
        assert_ne!(key.id(), SecretsKey([2u8; 32]).id());
        let shown = format!("{key:?} {:?}", Sealer::new(&key, &[]));
        assert!(shown.contains(&key.id()));
        assert!(!shown.contains(&key.to_base64()) && !shown.contains(&STANDARD.encode([1u8; 6])));
    }
}
