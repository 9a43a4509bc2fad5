//! API keys: generation, hashing, and a verifier that caches lookups so that a request does not
//! cost a database round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::domain::{AccountId, ApiKeyId, Timestamp};
use crate::store::{DynStore, KeyOwner, NewApiKey, StoreResult};

/// Every key starts with this, so that people and secret scanners can recognise one.
pub const KEY_PREFIX: &str = "ck_";
/// `accountId:apiKey` must stay within 57 bytes, or GNU `base64` wraps the documented
/// `echo -n ... | base64` output: 57 - 36 (UUID) - 1 (colon) = 20 characters of key, of which
/// 17 random base62 characters carry 101 bits.
const KEY_RANDOM_CHARS: usize = 17;
/// Characters of the key shown in listings, enough to tell keys apart, too few to matter.
const SHOWN_PREFIX_CHARS: usize = 7;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new key: the secret shown once, and what the store keeps.
pub struct GeneratedKey {
    pub secret: String,
    pub record: NewApiKey,
}

impl GeneratedKey {
    pub fn new(account_id: AccountId) -> Self {
        let secret = format!("{KEY_PREFIX}{}", random_base62(KEY_RANDOM_CHARS));
        let record = NewApiKey {
            id: ApiKeyId::new(),
            account_id,
            key_hash: hash_key(&secret),
            prefix: secret[..SHOWN_PREFIX_CHARS].to_owned(),
            name: String::new(),
            created_at: Timestamp::now(),
        };
        Self { secret, record }
    }

    /// The documented Bearer token: `base64(accountId:apiKey)`.
    pub fn bearer_token(&self) -> String {
        bearer_token(self.record.account_id, &self.secret)
    }
}

pub fn bearer_token(account_id: AccountId, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{account_id}:{secret}"))
}

/// Keys are long random strings, so a fast hash is the right one; a slow password hash would
/// cap request throughput for no gain.
pub fn hash_key(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the operating system's random source failed");
        // 248 = 4 * 62: dropping larger bytes keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(BASE62[usize::from(b % 62)] as char);
        }
    }
    out
}

/// Checks keys against the store, remembering answers for a short time. A key revoked through
/// this node is forgotten at once; one revoked elsewhere stops working within the TTL.
pub struct KeyVerifier {
    store: DynStore,
    ttl: Duration,
    max_entries: usize,
    cache: Mutex<HashMap<[u8; 32], CachedAnswer>>,
}

#[derive(Clone, Copy)]
struct CachedAnswer {
    owner: Option<KeyOwner>,
    expires: Instant,
}

impl KeyVerifier {
    pub fn new(store: DynStore, ttl: Duration, max_entries: usize) -> Self {
        Self {
            store,
            ttl,
            max_entries,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The owner of `secret` if it is a live key of `account_id`.
    pub async fn verify(
        &self,
        account_id: AccountId,
        secret: &str,
    ) -> StoreResult<Option<KeyOwner>> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let now = Instant::now();
        let cached = self.lock().get(&digest).copied();
        let owner = match cached {
            Some(answer) if answer.expires > now => answer.owner,
            _ => {
                let owner = self.store.find_api_key(&hex(&digest)).await?;
                // Last use, to within the cache's TTL: one write per lookup, not per request.
                if let Some(found) = owner {
                    if let Err(error) = self
                        .store
                        .touch_api_key(found.key_id, Timestamp::now())
                        .await
                    {
                        tracing::debug!(%error, "recording a key's last use failed");
                    }
                }
                self.remember(digest, owner, now);
                owner
            }
        };
        Ok(owner.filter(|o| o.account_id == account_id))
    }

    /// Drops a revoked key from the cache so that it fails on its next use.
    pub fn forget(&self, key_id: ApiKeyId) {
        self.lock()
            .retain(|_, answer| answer.owner.is_none_or(|o| o.key_id != key_id));
    }

    fn remember(&self, digest: [u8; 32], owner: Option<KeyOwner>, now: Instant) {
        let mut cache = self.lock();
        if cache.len() >= self.max_entries {
            cache.retain(|_, answer| answer.expires > now);
        }
        // Still full of live answers (a flood of distinct bad keys, say): keep the valid
        // ones and do not let misses crowd them out.
        if cache.len() >= self.max_entries {
            if owner.is_none() {
                return;
            }
            cache.retain(|_, answer| answer.owner.is_some());
            if cache.len() >= self.max_entries {
                cache.clear();
            }
        }
        cache.insert(
            digest,
            CachedAnswer {
                owner,
                expires: now + self.ttl,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], CachedAnswer>> {
        // The map holds no invariants a panic could break halfway, so poison is harmless.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fit_the_documented_base64_pipeline() {
        let key = GeneratedKey::new(AccountId::new());
        assert_eq!(key.secret.len(), 20);
        assert!(key.secret.starts_with(KEY_PREFIX));
        let joined = format!("{}:{}", key.record.account_id, key.secret);
        assert_eq!(joined.len(), 57, "GNU base64 wraps after 57 input bytes");
        assert_eq!(key.bearer_token().len(), 76);
        assert_eq!(key.record.prefix, key.secret[..7]);
    }

    #[test]
    fn keys_are_random_and_hashed() {
        let a = GeneratedKey::new(AccountId::new());
        let b = GeneratedKey::new(AccountId::new());
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.record.key_hash, hash_key(&a.secret));
        assert_eq!(a.record.key_hash.len(), 64);
        assert!(!a.record.key_hash.contains(&a.secret));
        assert!(a.secret[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
