//! Config reload without a restart: on SIGHUP, or when the config file's content changes, the
//! file is read and validated again; a config that fails is refused (every problem logged by key
//! path) and the running one keeps serving. One that passes is built into a whole new app (the
//! inbound stack, its limits, caches, clients and routes, as at start), checked ready, and
//! swapped in: requests that arrive afterwards meet it, requests in flight and open
//! subscriptions finish on the app they began with, and no connection is closed.
//!
//! Rebuilding everything, rather than patching settings into live objects, means every key that
//! is read when the app is built changes live: API keys and plans, limits, CORS origins, cache
//! TTLs, timeouts, GraphQL limits. What the listener or the process holds cannot
//! ([`needs_restart`]): a change to it is reported, the rest of the new config still applies,
//! and the old value stays until the next restart. What a generation builds up (in-process rate
//! limit buckets, cached answers and parsed documents, backend connections, breaker history)
//! starts afresh with the new one; what is shared through Redis carries on. The metrics outlive
//! generations ([`Lasting`]), so counters never go back.

pub mod config;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use sha2::{Digest, Sha256};
use tower::Service;

pub use self::config::ReloadConfig;
use crate::config::{self as loader, Bff, Config, ConfigError};
use crate::inbound::{Apps, InboundStack};
use crate::telemetry::Metrics;

/// Longest the new app's readiness check (its first signing-key fetch) may take before the
/// reload is decided on what it found.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What outlives a config generation: the metrics (so counters never go back to zero) and the
/// reload status `/readyz?verbose` reports.
#[derive(Clone, Default)]
pub struct Lasting {
    pub metrics: Arc<Metrics>,
    pub status: Arc<ReloadStatus>,
}

impl std::fmt::Debug for Lasting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lasting").field("generation", &self.status.generation()).finish()
    }
}

/// The config generation serving, and how the last reload went.
#[derive(Debug)]
pub struct ReloadStatus {
    generation: AtomicU64,
    last: Mutex<Option<(Instant, Outcome)>>,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        Self { generation: AtomicU64::new(1), last: Mutex::new(None) }
    }
}

/// How one reload went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new config serves; the keys named changed too but wait for a restart.
    Applied { needs_restart: Vec<&'static str> },
    /// The old config still serves. Each refusal names a key path (or what failed: `(file)`,
    /// `(syntax)`, `(build)`, `(readiness)`) and says why; `/readyz?verbose`, which the public
    /// port serves too, shows only the names: the reasons may quote the file or name hosts.
    Refused { problems: Vec<Refusal> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub message: String,
}

impl Refusal {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }

    fn from_config_error(error: ConfigError) -> Vec<Self> {
        match error {
            ConfigError::Invalid(problems) => problems.into_iter().map(|p| Self::new(p.key, p.message)).collect(),
            ConfigError::Field { key, message } => vec![Self::new(key, message)],
            ConfigError::Env { name, message } => vec![Self::new(name, message)],
            error @ ConfigError::Syntax { .. } => vec![Self::new("(syntax)", error.to_string())],
            error @ ConfigError::Read { .. } => vec![Self::new("(file)", error.to_string())],
        }
    }
}

impl ReloadStatus {
    /// 1 for the config the process started with, one more for each reload applied.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn record(&self, outcome: Outcome) {
        if let Outcome::Applied { .. } = outcome {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), outcome));
    }

    /// The `/readyz?verbose` lines: informational, since a refused reload leaves a replica
    /// serving exactly as before.
    pub fn report(&self) -> String {
        let generation = self.generation();
        let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let mut text = String::new();
        let _ = match last {
            None => writeln!(text, "[+]config generation {generation}, never reloaded (informational)"),
            Some((at, Outcome::Applied { needs_restart })) => {
                let ago = at.elapsed().as_secs();
                let pending = if needs_restart.is_empty() {
                    String::new()
                } else {
                    format!("; needs a restart for {}", needs_restart.join(", "))
                };
                writeln!(text, "[+]config generation {generation}, reload applied {ago}s ago{pending} (informational)")
            }
            Some((at, Outcome::Refused { problems })) => {
                let ago = at.elapsed().as_secs();
                let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
                writeln!(
                    text,
                    "[-]config reload refused {ago}s ago, still serving generation {generation}: problems with {} \
                     (the log says what; informational)",
                    keys.join(", ")
                )
            }
        };
        text
    }
}

/// A router that can be replaced while it serves: each request meets the one current when it
/// arrives. [`LiveRouter::router`] is what a listener serves.
#[derive(Clone)]
pub struct LiveRouter(Arc<ArcSwap<Router>>);

impl LiveRouter {
    pub fn new(router: Router) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(router)))
    }

    /// From now on, requests meet `router`.
    pub fn replace(&self, router: Router) {
        self.0.store(Arc::new(router));
    }

    /// A router that hands every request to the current one.
    pub fn router(&self) -> Router {
        Router::new().fallback_service(self.clone())
    }
}

impl Service<Request> for LiveRouter {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <Router as Service<Request>>::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A Router is always ready; the one current at `call` takes the request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut router = Router::clone(&self.0.load());
        router.call(request)
    }
}

/// The keys a running process cannot take from a reload: they belong to the listeners (bound
/// once), the shutdown sequence (armed at start), the log writer and the trace exporter
/// (installed once per process), or the reloader itself.
pub fn needs_restart<O>(old: &Config<O>, new: &Config<O>) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! compare {
        ($($section:ident . $key:ident),* $(,)?) => {$(
            if old.$section.$key != new.$section.$key {
                changed.push(concat!(stringify!($section), ".", stringify!($key)));
            }
        )*};
    }
    compare!(
        server.listen,
        server.admin_listen,
        server.tls,
        server.max_connections,
        server.header_read_timeout,
        server.idle_timeout,
        server.http2_max_concurrent_streams,
        server.max_header_bytes,
        server.drain_delay,
        server.shutdown_grace,
        telemetry.log_format,
        telemetry.log_overflow,
        telemetry.otlp_endpoint,
        telemetry.sampling_ratio,
        telemetry.trust_traceparent_from,
        telemetry.export_timeout,
        telemetry.max_queued_spans,
        reload.watch_file,
        reload.poll_interval,
    );
    changed
}

/// The routers a process serves, each replaceable.
#[derive(Clone)]
pub struct LiveApps {
    pub public: LiveRouter,
    pub admin: LiveRouter,
}

/// Reloads one BFF's config from its file: [`Reloader::run`] waits for SIGHUP and watches the
/// file; [`Reloader::reload`] is one attempt.
pub struct Reloader<B: Bff, F> {
    path: PathBuf,
    build: F,
    /// The config the process started with: the restart-only keys are compared with it, since
    /// that is what the listeners and the process still run on.
    started: Config<B::Own>,
    current: Config<B::Own>,
    /// The fingerprint of the last text tried: the watch reacts to a change from it, so a file
    /// that fails validation is tried once, not at every poll. A new config refused for what
    /// may pass later (its build, its readiness) leaves it unset, so the watch tries again.
    seen: Option<[u8; 32]>,
    readiness: Arc<crate::health::Readiness>,
    live: LiveApps,
    lasting: Lasting,
}

impl<B, F, E> Reloader<B, F>
where
    B: Bff,
    F: Fn(Config<B::Own>) -> Result<InboundStack, E>,
    E: std::fmt::Display,
{
    /// Builds the first generation from `config`, read from `text`, the content of `path`.
    pub fn start(path: PathBuf, text: &str, config: Config<B::Own>, build: F) -> Result<(Self, LiveApps), E> {
        let lasting = Lasting::default();
        let apps = build(config.clone())?.lasting(&lasting).build_with_admin();
        let live = LiveApps { public: LiveRouter::new(apps.public), admin: LiveRouter::new(apps.admin) };
        let reloader = Self {
            path,
            build,
            started: config.clone(),
            current: config,
            seen: Some(fingerprint(text.as_bytes())),
            readiness: apps.readiness,
            live: live.clone(),
            lasting,
        };
        Ok((reloader, live))
    }

    /// One reload, for `trigger` (`sighup` or `file`): read, validate, build, check, swap. A
    /// SIGHUP rebuilds even from the same text: files the config names (a persisted-query
    /// manifest) may have changed.
    pub async fn reload(&mut self, trigger: &'static str) -> Outcome {
        self.reload_from(trigger, None).await
    }

    /// [`Reloader::reload`] from the file's bytes when the watch has just read them.
    async fn reload_from(&mut self, trigger: &'static str, read: Option<Vec<u8>>) -> Outcome {
        let outcome = self.attempt(read).await;
        let generation = self.lasting.status.generation();
        match &outcome {
            Outcome::Applied { needs_restart } => {
                let generation = generation + 1;
                tracing::info!(trigger, generation, "config reloaded");
                for key in needs_restart {
                    tracing::warn!(trigger, key, "config reloaded, but this key changes only at the next restart");
                }
            }
            Outcome::Refused { problems } => {
                for Refusal { key, message } in problems {
                    let problem = format!("{key}: {message}");
                    tracing::warn!(trigger, generation, problem = problem.as_str(), "config reload refused");
                }
            }
        }
        self.lasting.metrics.record_reload(&outcome);
        self.lasting.status.record(outcome.clone());
        self.lasting.metrics.set_generation(self.lasting.status.generation());
        outcome
    }

    async fn attempt(&mut self, read: Option<Vec<u8>>) -> Outcome {
        let refused = |key: &str, message: String| Outcome::Refused { problems: vec![Refusal::new(key, message)] };
        // Read once: the text validated is the text fingerprinted.
        let text = match read.map(String::from_utf8) {
            Some(Ok(text)) => text,
            // Not read yet, or not UTF-8: reading it says what is wrong.
            _ => match loader::read(&self.path) {
                Ok(text) => text,
                Err(error) => return Outcome::Refused { problems: Refusal::from_config_error(error) },
            },
        };
        let fingerprint = fingerprint(text.as_bytes());
        self.seen = Some(fingerprint);
        let config = match loader::from_toml::<B>(&text, &self.path, loader::process_env()) {
            Ok(config) => config,
            Err(error) => return Outcome::Refused { problems: Refusal::from_config_error(error) },
        };
        let needs_restart = needs_restart(&self.started, &config);
        let (apps, serving) = match (self.build)(config.clone()) {
            Ok(stack) => stack.lasting(&self.lasting).build_generation(),
            Err(error) => {
                self.seen = None;
                return refused("(build)", error.to_string());
            }
        };
        // A reload never turns a ready replica unready: a new config whose signing keys cannot be
        // loaded (a mistyped JWKS URL) is refused while the old one still has its keys.
        let ready = |readiness: Arc<crate::health::Readiness>| async move {
            tokio::time::timeout(READY_CHECK_TIMEOUT, readiness.ready_apart_from_draining())
                .await
                .unwrap_or_else(|_| Err("readiness check timed out".to_owned()))
        };
        if let Err(why) = ready(apps.readiness.clone()).await
            && ready(self.readiness.clone()).await.is_ok()
        {
            self.seen = None;
            return refused("(readiness)", format!("not ready under the new config: {why}"));
        }
        let Apps { public, admin, readiness } = apps;
        self.live.public.replace(public);
        self.live.admin.replace(admin);
        serving.attach();
        self.readiness = readiness;
        if config.telemetry.log_level != self.current.telemetry.log_level
            && let Err(error) = crate::telemetry::set_log_level(config.telemetry.log_level.as_deref())
        {
            tracing::warn!(%error, "telemetry.log_level: not applied");
        }
        self.current = config;
        Outcome::Applied { needs_restart }
    }

    /// Reloads on every SIGHUP, and whenever the file's content changes (`[reload] watch_file`),
    /// until the process ends. Install before serving: SIGHUP ends a process that has no handler.
    pub fn run(mut self) -> std::io::Result<impl Future<Output = ()> + Send + 'static>
    where
        B::Own: Send,
        F: Send + 'static,
        E: 'static,
    {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let reload = self.current.reload.clone();
        Ok(async move {
            let mut poll = tokio::time::interval(reload.poll_interval);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let sighup = hangup.recv();
                #[cfg(not(unix))]
                let sighup = std::future::pending::<Option<()>>();
                let (trigger, read) = tokio::select! {
                    _ = sighup => ("sighup", None),
                    _ = poll.tick(), if reload.watch_file => {
                        // A file mid-replacement may be missing for a moment: look again later.
                        match std::fs::read(&self.path) {
                            Ok(bytes) if Some(fingerprint(&bytes)) != self.seen => ("file", Some(bytes)),
                            _ => continue,
                        }
                    }
                };
                self.reload_from(trigger, read).await;
            }
        })
    }
}

/// The SHA-256 of a config text.
fn fingerprint(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn config(text: &str) -> Config<crate::config::NoOwnKeys> {
        Config {
            server: toml::from_str(text).unwrap(),
            auth: crate::config::AuthConfig::default(),
            redis: Default::default(),
            limits: Default::default(),
            upstreams: Default::default(),
            telemetry: Default::default(),
            reload: Default::default(),
            own: crate::config::NoOwnKeys {},
        }
    }

    #[test]
    fn only_what_the_listener_and_the_process_hold_needs_a_restart() {
        let old = config("listen = \"127.0.0.1:1\"\nrequest_timeout = \"1s\"");
        let same_listener = config("listen = \"127.0.0.1:1\"\nrequest_timeout = \"2s\"\nbody_limit_bytes = 10");
        assert!(needs_restart(&old, &same_listener).is_empty(), "request limits are read when the app is built");
        let moved =
            config("listen = \"127.0.0.1:2\"\nshutdown_grace = \"1s\"\n[tls]\ncert_file = \"a\"\nkey_file = \"b\"");
        assert_eq!(needs_restart(&old, &moved), ["server.listen", "server.tls", "server.shutdown_grace"]);
        let mut traced = config("listen = \"127.0.0.1:1\"");
        traced.telemetry.log_level = Some("debug".into());
        assert!(needs_restart(&old, &traced).is_empty(), "the log level changes live");
        traced.telemetry.sampling_ratio = 0.5;
        assert_eq!(needs_restart(&old, &traced), ["telemetry.sampling_ratio"]);
    }

    #[tokio::test]
    async fn a_live_router_sends_each_request_to_the_router_current_when_it_arrives() {
        let answer = |text: &'static str| Router::new().route("/", axum::routing::get(move || async move { text }));
        let live = LiveRouter::new(answer("first"));
        let served = live.router();
        let body = |router: Router| async move {
            let response = router.oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap()).await.unwrap();
            axum::body::to_bytes(response.into_body(), 64).await.unwrap()
        };
        assert_eq!(body(served.clone()).await, "first");
        live.replace(answer("second"));
        assert_eq!(body(served).await, "second");
    }

    #[test]
    fn the_status_reports_the_generation_and_the_last_outcome() {
        let status = ReloadStatus::default();
        assert!(status.report().contains("config generation 1, never reloaded"), "{}", status.report());
        let quoted = "invalid TOML at line 3: `url = \"redis://:secret@10.0.0.1\"`";
        status.record(Outcome::Refused {
            problems: vec![Refusal::new("limits.cost.rate", "must be positive"), Refusal::new("(syntax)", quoted)],
        });
        let report = status.report();
        assert!(report.starts_with("[-]config reload refused") && report.contains("still serving generation 1"));
        assert!(report.contains("problems with limits.cost.rate, (syntax)"), "{report}");
        assert!(
            !report.contains("secret") && !report.contains("must be positive"),
            "reasons stay in the log: {report}"
        );
        status.record(Outcome::Applied { needs_restart: vec!["server.listen"] });
        assert_eq!(status.generation(), 2);
        assert!(status.report().contains("needs a restart for server.listen"), "{}", status.report());
    }
}
