//! Partner API keys, stored as SHA-256 digests so the config never holds a usable secret.

use bff_upstream::{Credential, Identity};
use sha2::{Digest, Sha256};

use super::config::ApiKeyEntry;
use crate::GatewayError;

/// The configured keys, by digest.
pub struct ApiKeys {
    entries: Vec<([u8; 32], ApiKeyEntry)>,
}

impl ApiKeys {
    pub fn new(entries: &[ApiKeyEntry]) -> Result<Self, GatewayError> {
        let mut digests = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&entry.sha256, &mut digest).map_err(|_| {
                GatewayError::Internal(format!("API key of `{}` is not 64 hex digits", entry.client_id))
            })?;
            digests.push((digest, entry.clone()));
        }
        Ok(Self { entries: digests })
    }

    /// The hex SHA-256 of a key, as the config stores it.
    pub fn hash(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// Compares the key's digest with every configured digest, in constant time and without
    /// stopping at a match, so neither the timing nor the order of the config tells anything.
    pub(crate) fn verify(&self, key: &[u8]) -> Result<Identity, GatewayError> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        let mut found = None;
        for (candidate, entry) in &self.entries {
            let difference = candidate.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if std::hint::black_box(difference) == 0 {
                found = Some(entry);
            }
        }
        let entry = found.ok_or_else(|| GatewayError::Unauthenticated("invalid API key".into()))?;
        if entry.revoked {
            return Err(GatewayError::Unauthenticated("this API key has been revoked".into()));
        }
        Ok(Identity {
            user_id: None,
            client_id: entry.client_id.clone(),
            credential: Credential::ApiKey,
            scopes: entry.scopes.clone(),
            expires_at: None,
        })
    }
}
