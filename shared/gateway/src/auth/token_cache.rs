//! Verified tokens, remembered by their SHA-256 (the way Envoy's jwt_authn caches them): clients
//! repeat their token on every request, and an RSA verification costs far more than a lookup.
//! A token is remembered until it expires (with the leeway verification allows), at most
//! [`VERIFIED_TOKEN_TTL`], and only while the signing keys it was verified against are unchanged:
//! any change to the key set (a rotation, a withdrawn key) makes every remembered token verify
//! again. Refusals are never remembered. Bounded, so a flood of valid tokens cannot grow it.

use std::sync::Arc;
use std::time::Duration;

use bff_upstream::Identity;
use sha2::{Digest, Sha256};

/// Verified tokens remembered at once.
const VERIFIED_TOKENS: u64 = 10_000;
/// Longest a verified token is trusted without verifying it again, however long it lives.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(300);

pub struct VerifiedTokens(moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>);

struct VerifiedToken {
    identity: Identity,
    /// The signing keys' generation it was verified under.
    generation: u64,
    /// Unix seconds after which verification would call it expired: `exp` plus the leeway.
    valid_until: u64,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self(moka::sync::Cache::builder().max_capacity(VERIFIED_TOKENS).time_to_live(VERIFIED_TOKEN_TTL).build())
    }
}

impl VerifiedTokens {
    /// The key a token is remembered by; the token itself is never stored.
    pub fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity `digest` was verified as, if that was under the keys of `generation` and the
    /// token has not expired since.
    pub fn get(&self, digest: &[u8; 32], generation: u64) -> Option<Identity> {
        let hit = self.0.get(digest)?;
        if hit.generation == generation && unix_now() <= hit.valid_until {
            return Some(hit.identity.clone());
        }
        self.0.invalidate(digest);
        None
    }

    /// Remembers a verified token; one without an expiry is not remembered.
    pub fn insert(&self, digest: [u8; 32], identity: &Identity, generation: u64, leeway_secs: u64) {
        let exp = identity.expires_at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
        if let Some(exp) = exp {
            let valid_until = exp.as_secs().saturating_add(leeway_secs);
            self.0.insert(digest, Arc::new(VerifiedToken { identity: identity.clone(), generation, valid_until }));
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use bff_upstream::Credential;

    use super::*;

    fn identity(expires_in: i64) -> Identity {
        let now = std::time::SystemTime::now();
        let expires_at = if expires_in >= 0 {
            now + Duration::from_secs(expires_in.unsigned_abs())
        } else {
            now - Duration::from_secs(expires_in.unsigned_abs())
        };
        Identity {
            user_id: Some("u-1".into()),
            client_id: "mobile".into(),
            credential: Credential::User,
            scopes: Vec::new(),
            expires_at: Some(expires_at),
        }
    }

    #[test]
    fn a_token_is_remembered_only_under_the_keys_it_was_verified_with() {
        let tokens = VerifiedTokens::default();
        let digest = VerifiedTokens::digest("a.b.c");
        tokens.insert(digest, &identity(600), 1, 0);
        assert_eq!(tokens.get(&digest, 1).and_then(|i| i.user_id), Some("u-1".into()));
        assert!(tokens.get(&digest, 2).is_none(), "a new key set must verify again");
        assert!(tokens.get(&digest, 1).is_none(), "a stale entry is dropped, not kept for later");
    }

    #[test]
    fn an_expired_token_is_not_served_from_memory() {
        let tokens = VerifiedTokens::default();
        let digest = VerifiedTokens::digest("x.y.z");
        tokens.insert(digest, &identity(-120), 1, 30);
        assert!(tokens.get(&digest, 1).is_none());
        tokens.insert(digest, &identity(-10), 1, 30);
        assert!(tokens.get(&digest, 1).is_some(), "within the leeway it is still valid");
    }
}
