//! RS256 access tokens: the header checked before any key is looked up, expiry before the
//! signature, then the signature (ring) and the claims (jsonwebtoken).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bff_upstream::{Credential, Identity};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::config::JwtConfig;
use super::jwks::SigningKeys;
use super::token_cache::{VerifiedTokens, unix_now};
use crate::GatewayError;

/// Tokens longer than this are refused before any parsing or signature work.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest subject, client id or scope accepted: identities travel as headers and limit keys.
pub const MAX_ID_LEN: usize = 255;
/// Most scopes one token may carry.
const MAX_SCOPES: usize = 64;

/// Non-empty, at most [`MAX_ID_LEN`] bytes, visible ASCII only (no spaces or control characters):
/// what an identity part must be to travel as a header value and serve as a key.
pub fn is_well_formed_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The `typ` values an access token may carry when the config names none (RFC 9068 and the
/// generic JWT type). An ID token (`id+jwt`), a logout token or a DPoP proof is not an access token.
const ACCESS_TOKEN_TYPES: [&str; 2] = ["jwt", "at+jwt"];

/// Verifies RS256 JWTs against the identity provider's signing keys ([`SigningKeys`]).
///
/// A token verified once is remembered ([`VerifiedTokens`]) while its keys are unchanged.
pub struct JwtVerifier {
    validation: Validation,
    /// The `typ` every token must carry, when the issuer sets one.
    required_typ: Option<String>,
    keys: Arc<SigningKeys>,
    verified: VerifiedTokens,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// The claims checked before the signature.
#[derive(Debug, Deserialize)]
struct TimeClaims {
    #[serde(default)]
    exp: Option<u64>,
}

/// The JOSE header as sent, with the members jsonwebtoken's own header type drops (`crit`).
#[derive(Debug, Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

impl JwtVerifier {
    /// How long ago the signing keys were last fetched.
    pub fn keys_age(&self) -> Option<std::time::Duration> {
        self.keys.age()
    }

    pub fn new(config: &JwtConfig) -> Result<Self, GatewayError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        Ok(Self {
            validation,
            required_typ: config.required_typ.clone(),
            keys: Arc::new(SigningKeys::new(config)?),
            verified: VerifiedTokens::default(),
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Identity, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("too long"));
        }
        let digest = VerifiedTokens::digest(token);
        // Read before the key is looked up: a rotation during verification then leaves an entry
        // that is already stale, never a fresh-looking one verified against a withdrawn key.
        let generation = self.keys.generation();
        if let Some(identity) = self.verified.get(&digest, generation) {
            return Ok(identity);
        }
        let identity = self.verify_uncached(token).await?;
        self.verified.insert(digest, &identity, generation, self.validation.leeway);
        Ok(identity)
    }

    async fn verify_uncached(&self, token: &str) -> Result<Identity, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        let header = self.header(token)?;
        // An expired token is refused before its signature is checked, as Envoy's jwt_authn does:
        // the most common refusal then costs no RSA work. Trusting unverified claims only to
        // refuse is safe; a token that passes here is fully verified below.
        let times: TimeClaims =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| invalid("malformed"))?;
        if times.exp.is_some_and(|exp| exp.saturating_add(self.validation.leeway) < unix_now()) {
            return Err(invalid("expired"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let key = self.keys.key(&kid).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => invalid("expired"),
                ErrorKind::InvalidAudience => invalid("wrong audience"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                ErrorKind::InvalidSignature => invalid("bad signature"),
                ErrorKind::ImmatureSignature => invalid("not valid yet"),
                _ => invalid("rejected"),
            }
        })?;
        let claims = data.claims;
        // What becomes the identity is sent to backends as headers and used as a key: a signed
        // token does not make an empty, huge or control-laden subject usable as one.
        let ids = [Some(&claims.sub), claims.client_id.as_ref(), claims.azp.as_ref()];
        if !ids.into_iter().flatten().all(|id| is_well_formed_id(id)) {
            return Err(invalid("malformed subject or client"));
        }
        let expires_at = Some(std::time::UNIX_EPOCH + Duration::from_secs(claims.exp));
        let scopes: Vec<String> =
            claims.scope.map(|s| s.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
        if scopes.len() > MAX_SCOPES || !scopes.iter().all(|scope| is_well_formed_id(scope)) {
            return Err(invalid("malformed scope"));
        }
        // A client-credentials token is issued to the client itself: its subject is the client.
        if claims.client_id.as_deref() == Some(claims.sub.as_str()) {
            return Ok(Identity {
                user_id: None,
                client_id: claims.sub,
                credential: Credential::OAuthClient,
                scopes,
                expires_at,
            });
        }
        let client_id = claims.client_id.or(claims.azp).unwrap_or_else(|| self.audience().to_owned());
        Ok(Identity { user_id: Some(claims.sub), client_id, credential: Credential::User, scopes, expires_at })
    }

    /// The token's header, checked before any key is looked up: RS256 only, no critical
    /// extensions (we understand none, and RFC 7515 says to refuse what we do not understand),
    /// and an access token's `typ`.
    fn header(&self, token: &str) -> Result<JoseHeader, GatewayError> {
        let invalid = |why: &str| GatewayError::Unauthenticated(format!("invalid token: {why}"));
        let (encoded, _) = token.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid("malformed"))?;
        let header: JoseHeader = serde_json::from_slice(&bytes).map_err(|_| invalid("malformed"))?;
        if header.alg != "RS256" {
            return Err(invalid("unsupported algorithm"));
        }
        if header.crit.is_some() {
            return Err(invalid("unsupported critical header"));
        }
        let typ = header.typ.as_deref().map(|t| t.strip_prefix("application/").unwrap_or(t).to_ascii_lowercase());
        let typ_ok = match (&self.required_typ, typ.as_deref()) {
            (Some(required), Some(typ)) => required.eq_ignore_ascii_case(typ),
            (Some(_), None) => false,
            (None, Some(typ)) => ACCESS_TOKEN_TYPES.contains(&typ),
            (None, None) => true,
        };
        if !typ_ok {
            return Err(invalid("not an access token (typ)"));
        }
        Ok(header)
    }

    /// Starts the task that keeps the signing keys fresh (else it starts on first use).
    pub fn start_refresh(&self) {
        self.keys.start();
    }

    /// Whether the signing keys are loaded, once the first fetch has had its chance.
    pub async fn keys_loaded(&self) -> Result<(), String> {
        self.keys.first_attempt().await;
        if self.keys.loaded() { Ok(()) } else { Err("signing keys not loaded".to_owned()) }
    }

    fn audience(&self) -> &str {
        self.validation.aud.as_ref().and_then(|a| a.iter().next()).map(String::as_str).unwrap_or("-")
    }
}

/// Makes jsonwebtoken verify RS256 with ring: its pure-Rust `rust_crypto` backend rebuilds the
/// key and runs big-integer code in Rust on every verification, a quarter of a BFF's CPU under
/// load. Claim validation stays jsonwebtoken's; signing and every other algorithm stay with
/// `rust_crypto`. jsonwebtoken's provider is per process and fixed by its first use, so this runs
/// before a BFF verifies anything ([`Authenticator::from_config`]); a process that used
/// jsonwebtoken earlier (a test that signed tokens first) keeps the slower, equally correct one.
pub fn install_jwt_crypto() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if ring_rs256::PROVIDER.install_default().is_err() {
            tracing::debug!("jsonwebtoken's crypto provider was already chosen; RS256 stays on rust_crypto");
        }
    });
}

mod ring_rs256 {
    use std::sync::LazyLock;

    use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, rust_crypto};
    use jsonwebtoken::signature::{Error, Verifier};
    use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

    pub(super) static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
        signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
        verifier_factory,
        key_utils: rust_crypto::DEFAULT_PROVIDER.key_utils.clone(),
    });

    /// An RSA public key as ring takes it: big-endian, without leading zero bytes (a JWK's `n`
    /// may carry one).
    pub(super) struct Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    }

    fn minimal(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        bytes[start..].to_vec()
    }

    pub(super) fn verifier_factory(
        algorithm: &Algorithm,
        key: &DecodingKey,
    ) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
        match (algorithm, key.kind()) {
            (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                Ok(Box::new(Rs256 { n: minimal(n), e: minimal(e) }))
            }
            _ => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
        }
    }

    impl Verifier<Vec<u8>> for Rs256 {
        fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), Error> {
            // ring refuses moduli under 2048 bits, as NIST has since 2013.
            RsaPublicKeyComponents { n: &self.n, e: &self.e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .map_err(|_| Error::new())
        }
    }

    impl JwtVerifier for Rs256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::RS256
        }
    }
}
