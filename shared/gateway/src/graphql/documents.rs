//! Where a request's document comes from, and its one parse.
//!
//! - **Parse cache.** Parsed documents are kept in a bounded cache keyed by the SHA-256 of their
//!   text, so a repeated query (the usual case: apps send the same few operations) skips the
//!   size, token and parse steps. The cost and shape limits still run on every request, because
//!   they depend on the variables.
//! - **Automatic persisted queries** (Apollo's APQ protocol): a request may carry
//!   `extensions.persistedQuery.sha256Hash` instead of the query. A hash this replica has not
//!   seen is `PERSISTED_QUERY_NOT_FOUND`, and the client sends hash and query together once; a
//!   hash that is not its query's is refused. Hash-only requests are small enough for `GET`, so
//!   HTTP caches can serve them.
//! - **Safelist**: only the documents of a manifest (Apollo's persisted query manifest format)
//!   run, by hash or by text; anything else is `OPERATION_NOT_IN_SAFELIST`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::Value;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::limits::{self, QueryLimits, Refusal};
use crate::ErrorCode;
use crate::config::{Problems, Validate, join};
use crate::store::Redis;

/// Bytes of document text the parse cache holds (parsed, a document takes several times that).
pub const DEFAULT_DOCUMENT_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes of query text the APQ store holds.
pub const DEFAULT_APQ_STORE_BYTES: u64 = 4 * 1024 * 1024;
/// How long a registered query stays in the shared (Redis) tier after its last registration.
pub const DEFAULT_APQ_SHARED_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistedQueryMode {
    /// Every request carries its query.
    #[default]
    Off,
    /// Apollo's automatic persisted queries: any document, registered by hash on first use.
    Automatic,
    /// Only the documents of `manifest` run.
    Safelist,
}

/// `[graphql.persisted_queries]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistedQueriesConfig {
    pub mode: PersistedQueryMode,
    /// The persisted query manifest (`{"format": "apollo-persisted-query-manifest", "version": 1,
    /// "operations": [{"id", "name", "type", "body"}]}`); required for `safelist`.
    pub manifest: Option<PathBuf>,
    /// Bytes of query text the automatic store keeps; least recently used go first.
    pub store_bytes: u64,
    /// A second tier in the shared store (`[redis]`), shared by every replica (and every BFF: a
    /// query is keyed by the hash of its text), so a query registered on one replica is found on
    /// the others. Off: each replica keeps its own.
    pub shared: bool,
    #[serde(with = "humantime_serde")]
    pub shared_ttl: Duration,
}

impl Default for PersistedQueriesConfig {
    fn default() -> Self {
        Self {
            mode: PersistedQueryMode::Off,
            manifest: None,
            store_bytes: DEFAULT_APQ_STORE_BYTES,
            shared: false,
            shared_ttl: DEFAULT_APQ_SHARED_TTL,
        }
    }
}

impl Validate for PersistedQueriesConfig {
    fn validate(&self, path: &str, problems: &mut Problems) {
        if self.mode == PersistedQueryMode::Safelist && self.manifest.is_none() {
            problems.push(join(path, "manifest"), "the safelist needs a manifest");
        }
        if let Some(manifest) = &self.manifest
            && let Err(e) = Manifest::load(manifest)
        {
            problems.push(join(path, "manifest"), e);
        }
        problems.check(path, "shared_ttl", !self.shared_ttl.is_zero(), "must be more than 0s");
    }

    fn shared_store_users(&self, path: &str, users: &mut Vec<String>) {
        if self.shared {
            users.push(join(path, "shared"));
        }
    }
}

#[derive(Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    operations: Vec<ManifestOperation>,
}

#[derive(Deserialize)]
struct ManifestOperation {
    id: String,
    body: String,
}

impl Manifest {
    fn load(path: &std::path::Path) -> Result<HashMap<[u8; 32], Arc<str>>, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if manifest.format != "apollo-persisted-query-manifest" || manifest.version != 1 {
            return Err(format!("{}: not an apollo-persisted-query-manifest, version 1", path.display()));
        }
        let mut operations = HashMap::new();
        for operation in manifest.operations {
            let hash = sha256(&operation.body);
            if hex::encode(hash) != operation.id.to_ascii_lowercase() {
                return Err(format!("{}: operation `{}` is not the SHA-256 of its body", path.display(), operation.id));
            }
            operations.insert(hash, Arc::from(operation.body));
        }
        Ok(operations)
    }
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A parsed document and the length of its text, which weighs it in the cache.
#[derive(Clone)]
struct Parsed {
    document: Arc<Document>,
    text_bytes: usize,
}

/// A parsed document, kept for every request that sends its text, and what is known of its
/// validation.
///
/// async-graphql validates a document on every request, though only one of its rules
/// (argument types, where it puts a request's variables into arguments) reads anything besides
/// the document and the schema. A document of one operation that declares no variables gives
/// that rule nothing from the request either, so once it has passed the full validation it
/// would pass it again: its later requests run with the rules that also count its cost (fast
/// mode), and skip the rest. Any other document is validated in full every time.
pub(crate) struct Document {
    tree: ExecutableDocument,
    /// Whether the full validation reads nothing but the document (see above).
    validation_is_static: bool,
    validated: AtomicBool,
}

impl Document {
    pub fn new(tree: ExecutableDocument) -> Self {
        let validation_is_static = match &tree.operations {
            DocumentOperations::Single(operation) => operation.node.variable_definitions.is_empty(),
            // A named operation is kept in a map, even the only one.
            DocumentOperations::Multiple(operations) => {
                operations.len() == 1
                    && operations.values().all(|operation| operation.node.variable_definitions.is_empty())
            }
        };
        Self { tree, validation_is_static, validated: AtomicBool::new(false) }
    }

    /// A copy of the tree for async-graphql, which takes one by value for each request.
    pub fn tree(&self) -> ExecutableDocument {
        self.tree.clone()
    }

    /// Whether this document passed the full validation before and would pass it again.
    pub fn validated_before(&self) -> bool {
        self.validation_is_static && self.validated.load(Ordering::Relaxed)
    }

    /// Records that a request of this document passed the full validation.
    pub fn passed_validation(&self) {
        if self.validation_is_static {
            self.validated.store(true, Ordering::Relaxed);
        }
    }
}

impl std::ops::Deref for Document {
    type Target = ExecutableDocument;

    fn deref(&self) -> &ExecutableDocument {
        &self.tree
    }
}

/// The parse cache and the persisted-query stores of one endpoint.
#[derive(Clone)]
pub(crate) struct Documents {
    parsed: moka::sync::Cache<[u8; 32], Parsed>,
    mode: PersistedQueryMode,
    automatic: moka::sync::Cache<[u8; 32], Arc<str>>,
    /// The automatic store's tier in Redis, when configured.
    shared: Option<(Arc<Redis>, Duration)>,
    /// How long the shared tier keeps a query, when the config asks for one.
    shared_ttl: Option<Duration>,
    safelist: Arc<HashMap<[u8; 32], Arc<str>>>,
}

/// How the shared tier is named in errors and logs.
const SHARED_STORE: &str = "persisted query store";

fn shared_key(redis: &Redis, hash: &[u8; 32]) -> String {
    redis.key(&format!("apq:{}", hex::encode(hash)))
}

fn weigh(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX).max(1)
}

impl Documents {
    /// The manifest was checked by validation; one that has become unreadable since is empty.
    pub fn new(config: &PersistedQueriesConfig, cache_bytes: u64) -> Self {
        let safelist = match &config.manifest {
            Some(path) => Manifest::load(path).unwrap_or_else(|e| {
                tracing::error!(error = %e, "persisted query manifest unreadable; nothing is safelisted");
                HashMap::new()
            }),
            None => HashMap::new(),
        };
        Self {
            parsed: moka::sync::Cache::builder()
                .max_capacity(cache_bytes)
                // Weighed by text length, a fair proxy for the size of the parsed tree.
                .weigher(|_, parsed: &Parsed| weigh(parsed.text_bytes))
                .build(),
            mode: config.mode,
            automatic: moka::sync::Cache::builder()
                .max_capacity(config.store_bytes)
                .weigher(|_, query: &Arc<str>| weigh(query.len()))
                .build(),
            shared_ttl: config.shared.then_some(config.shared_ttl),
            shared: None,
            safelist: Arc::new(safelist),
        }
    }

    /// Whether only the manifest's operations run (so their names are the manifest's).
    pub fn is_safelist(&self) -> bool {
        self.mode == PersistedQueryMode::Safelist
    }

    /// Gives the automatic store its shared tier in `store`, when the config asks for one.
    pub fn use_store(&mut self, store: Option<&Arc<Redis>>) {
        self.shared = self.shared_ttl.zip(store).map(|(ttl, redis)| (redis.clone(), ttl));
    }

    /// The document `request` names (its query, or a persisted one), parsed once per text, and
    /// its SHA-256.
    pub fn resolve(
        &self,
        request: &mut async_graphql::Request,
        limits: &QueryLimits,
    ) -> Result<(Arc<Document>, [u8; 32]), Refusal> {
        let (hash, register) = self.resolve_text(request)?;
        let document = match self.parsed.get(&hash) {
            Some(parsed) => parsed.document,
            None => {
                let document = Arc::new(Document::new(parse(&request.query, limits)?));
                let parsed = Parsed { document: document.clone(), text_bytes: request.query.len() };
                self.parsed.insert(hash, parsed);
                document
            }
        };
        // Only documents that pass the size limits and parse are worth a place in the store.
        if register {
            self.automatic.insert(hash, Arc::from(request.query.as_str()));
            if let Some(shared) = self.shared.clone() {
                // Off the request path: the client has its answer whether or not Redis takes it.
                let text = request.query.clone();
                tokio::spawn(async move {
                    let (redis, ttl) = &shared;
                    let set = redis::cmd("SET")
                        .arg(shared_key(redis, &hash))
                        .arg(text)
                        .arg("EX")
                        .arg(ttl.as_secs().max(1))
                        .clone();
                    if let Err(e) = redis.query::<()>(SHARED_STORE, &set).await {
                        tracing::warn!(error = %e, "persisted query not shared");
                    }
                });
            }
        }
        Ok((document, hash))
    }

    /// A hash-only request this replica has not seen: looks for its text in the shared tier,
    /// and keeps it here when found. A shared tier that is down is a miss (the client sends the
    /// query again), never an error; a text that is not its hash's is ignored.
    pub async fn fill_from_shared(&self, request: &mut async_graphql::Request) {
        let Some(shared) = &self.shared else { return };
        if self.mode != PersistedQueryMode::Automatic || !request.query.is_empty() {
            return;
        }
        let Ok(Some(hash)) = persisted_hash(request) else { return };
        if self.automatic.contains_key(&hash) {
            return;
        }
        let (redis, _) = shared;
        match redis.query::<Option<String>>(SHARED_STORE, redis::cmd("GET").arg(shared_key(redis, &hash))).await {
            Ok(Some(text)) if sha256(&text) == hash => {
                self.automatic.insert(hash, Arc::from(text.as_str()));
                request.query = text;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "persisted query store unreachable; answering as a miss"),
        }
    }

    /// Fills in `request.query` from the persisted-query stores when needed; answers the hash of
    /// the text, and whether to register it as an automatic persisted query.
    fn resolve_text(&self, request: &mut async_graphql::Request) -> Result<([u8; 32], bool), Refusal> {
        let announced = persisted_hash(request)?;
        let refuse = |code: ErrorCode, message: &str| Refusal { code, message: message.to_owned() };
        match (self.mode, announced) {
            (PersistedQueryMode::Off, Some(_)) if request.query.is_empty() => {
                Err(refuse(ErrorCode::PersistedQueryNotSupported, "persisted queries are not enabled here"))
            }
            (PersistedQueryMode::Off, _) | (PersistedQueryMode::Automatic, None) => {
                if request.query.is_empty() {
                    return Err(missing_query());
                }
                Ok((sha256(&request.query), false))
            }
            (PersistedQueryMode::Automatic, Some(hash)) => {
                if request.query.is_empty() {
                    let query = self
                        .automatic
                        .get(&hash)
                        .ok_or_else(|| refuse(ErrorCode::PersistedQueryNotFound, "PersistedQueryNotFound"))?;
                    request.query = query.to_string();
                    return Ok((hash, false));
                }
                if sha256(&request.query) != hash {
                    return Err(hash_mismatch());
                }
                Ok((hash, true))
            }
            (PersistedQueryMode::Safelist, announced) => {
                let hash = match announced {
                    Some(hash) => hash,
                    None if request.query.is_empty() => return Err(missing_query()),
                    None => sha256(&request.query),
                };
                let body = self.safelist.get(&hash).ok_or_else(|| {
                    refuse(
                        ErrorCode::OperationNotInSafelist,
                        "only the operations of the persisted query manifest run here",
                    )
                })?;
                if !request.query.is_empty() && sha256(&request.query) != hash {
                    return Err(hash_mismatch());
                }
                request.query = body.to_string();
                Ok((hash, false))
            }
        }
    }
}

fn hash_mismatch() -> Refusal {
    Refusal {
        code: ErrorCode::PersistedQueryHashMismatch,
        message: "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query".into(),
    }
}

fn missing_query() -> Refusal {
    Refusal { code: ErrorCode::BadRequest, message: "the request has no `query`".into() }
}

/// `extensions.persistedQuery.sha256Hash` (version 1), when the request carries one.
fn persisted_hash(request: &async_graphql::Request) -> Result<Option<[u8; 32]>, Refusal> {
    let Some(persisted) = request.extensions.get("persistedQuery") else { return Ok(None) };
    let bad = || Refusal {
        code: ErrorCode::BadRequest,
        message: "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": \"<64 hex digits>\"}".into(),
    };
    let Value::Object(fields) = persisted else { return Err(bad()) };
    if fields.get("version") != Some(&Value::from(1)) {
        return Err(bad());
    }
    let Some(Value::String(hash)) = fields.get("sha256Hash") else { return Err(bad()) };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hash, &mut bytes).map_err(|_| bad())?;
    Ok(Some(bytes))
}

/// The size limits, then the parse: what a document costs before it is cached.
fn parse(query: &str, limits: &QueryLimits) -> Result<ExecutableDocument, Refusal> {
    if query.len() > limits.max_document_bytes {
        return Err(Refusal {
            code: ErrorCode::DocumentTooLarge,
            message: format!(
                "the document of {} bytes exceeds the limit of {} (graphql.limits.max_document_bytes)",
                query.len(),
                limits.max_document_bytes
            ),
        });
    }
    let tokens = limits::count_tokens(query, limits.max_tokens);
    if tokens > limits.max_tokens {
        return Err(Refusal {
            code: ErrorCode::TooManyTokens,
            message: format!("the document has more than {} tokens (graphql.limits.max_tokens)", limits.max_tokens),
        });
    }
    async_graphql::parser::parse_query(query).map_err(|e| Refusal {
        code: ErrorCode::GraphQlParseFailed,
        message: format!("the document does not parse: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_named_by_the_sha256_of_its_text_and_parsed_once() {
        let documents = Documents::new(&PersistedQueriesConfig::default(), 1 << 20);
        let text = "query Home { home { user { id } } }";
        let mut request = async_graphql::Request::new(text);
        let (first, hash) = documents.resolve(&mut request, &QueryLimits::default()).unwrap();
        assert_eq!(hash, sha256(text), "the hash the access line shows");
        let (again, _) = documents.resolve(&mut async_graphql::Request::new(text), &QueryLimits::default()).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "parsed once");
    }

    fn document(text: &str) -> Document {
        Document::new(async_graphql::parser::parse_query(text).unwrap())
    }

    #[test]
    fn only_a_single_operation_without_variables_is_known_valid_after_passing_once() {
        let home = document("query Home { home { user { id } } }");
        assert!(!home.validated_before(), "never validated yet");
        home.passed_validation();
        assert!(home.validated_before());
        let anonymous = document("{ home { user { id } } }");
        anonymous.passed_validation();
        assert!(anonymous.validated_before());

        // Variables reach the argument-type rule: validated in full every time.
        let with_variables = document("query Recent($n: Int!) { home { recentOrders(first: $n) { id } } }");
        with_variables.passed_validation();
        assert!(!with_variables.validated_before());
        // Which operation runs is the request's choice.
        let two = document("query A { home { user { id } } } query B { home { user { name } } }");
        two.passed_validation();
        assert!(!two.validated_before());
    }
}
