//! Limits shared by every replica through Redis: one Lua script per decision (one round trip,
//! every key of the request at once, atomic, on Redis's clock), so replicas enforce one quota,
//! and a read and a write can never interleave with another replica's.
//!
//! **Never failing closed.** A decision waits on Redis at most `[limits] shared_timeout`. When
//! Redis errs or is slower than that, the replica says so once in its log, decides in process
//! with its share of every quota (`1 / [limits] replicas`), stops asking Redis, and probes it in
//! the background; when a probe is answered within the timeout, decisions go back to Redis.
//! `/readyz?verbose` shows which way decisions are made, as information.
//!
//! The keys of one decision must live on one node of a Redis Cluster: they share one hash tag per
//! BFF (`{prefix}:{rl:BFF}:...`), so the script runs there in one round trip.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::gcra::{Outcome, Rate};
use super::limiter::{Check, Decision, Source};
use crate::store::Redis;

/// How often a replica deciding alone asks Redis whether it is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How limits are named in the store's errors.
const STORE: &str = "rate limit store";

/// The GCRA of [`super::gcra`] in Redis. `KEYS`: one per limit. `ARGV[1]`: `1` to spend, `0` to
/// look. Then per key: the interval (whole microseconds), the burst, the cost: all the arithmetic
/// is on integers, exact in Lua's doubles while below 2^53 microseconds (285 years).
/// Answers the verdict, then per key: units remaining, microseconds until rested, microseconds
/// until this cost would be admitted, microseconds until one more unit could be. TATs are whole
/// microseconds on Redis's clock.
const SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local spend = ARGV[1] == '1'
local admitted = 1
local tats, spent = {}, {}
for i = 1, #KEYS do
  local interval, burst, cost = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  spent[i] = tat + cost * interval
  if spent[i] - now > burst * interval then admitted = 0 end
end
local answer = { admitted }
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local tolerance = tonumber(ARGV[3 * i]) * interval
  local standing = tats[i]
  if admitted == 1 and spend then
    standing = spent[i]
    redis.call('SET', KEYS[i], string.format('%.0f', spent[i]), 'PX', math.ceil((spent[i] - now) / 1000) + 1)
  end
  answer[#answer + 1] = math.floor(math.max(0, tolerance - (standing - now)) / interval)
  answer[#answer + 1] = standing - now
  answer[#answer + 1] = math.ceil(math.max(0, spent[i] - now - tolerance))
  answer[#answer + 1] = math.ceil(math.max(0, standing + interval - now - tolerance))
end
return answer
";

/// The limiter's use of the shared store.
pub struct Shared {
    redis: Arc<Redis>,
    timeout: Duration,
    replicas: u32,
    /// `{prefix}:{rl:{bff}}:` (one hash tag), before each limit's name and key.
    key_prefix: String,
    script: redis::Script,
    up: AtomicBool,
    /// Since when decisions are made alone, while they are.
    outage: Mutex<Option<Instant>>,
}

impl Shared {
    pub fn new(redis: Arc<Redis>, bff: &str, timeout: Duration, replicas: u32) -> Self {
        // One hash tag for every limit key of this BFF: one request's checks are one script over
        // several keys, which a cluster runs only when they share a slot.
        let key_prefix = redis.tagged_prefix(&format!("rl:{bff}"));
        Self {
            redis,
            timeout,
            replicas,
            key_prefix,
            script: redis::Script::new(SCRIPT),
            up: AtomicBool::new(true),
            outage: Mutex::new(None),
        }
    }

    /// Connects and loads the script before the first request needs them, so the first
    /// decisions do not spend their timeout on a handshake. A Redis that is down now is only
    /// logged: decisions find out on their own.
    pub fn warm_up(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            let load = async {
                let mut connection = shared.redis.connection(STORE).await.map_err(|e| e.to_string())?;
                shared.script.prepare_invoke().load_async(&mut connection).await.map_err(|e| e.to_string())
            };
            if let Err(error) = load.await {
                tracing::warn!(%error, "rate limits: Redis not reachable at start");
            }
        });
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    pub fn status(&self) -> Result<(), String> {
        let outage = self.outage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The reason is in the log only: it may name hosts, and `/readyz` is public.
        match &*outage {
            None => Ok(()),
            Some(since) => Err(format!(
                "Redis unavailable for {}s; deciding in process with 1/{} of each quota",
                since.elapsed().as_secs(),
                self.replicas
            )),
        }
    }

    /// The decision in Redis, or why there is none within the timeout.
    pub async fn decide(&self, checks: &[Check<'_>], spend: bool) -> Result<Decision, String> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(u8::from(spend));
        for check in checks {
            let rate = Rate::of(check.policy.quota(), 1);
            invocation
                .key(format!("{}{}:{}", self.key_prefix, check.policy.name(), check.key))
                .arg(rate.interval_ns / 1_000)
                .arg(rate.burst)
                .arg(check.cost);
        }
        let run = async {
            let mut connection = self.redis.connection(STORE).await.map_err(|e| e.to_string())?;
            invocation.invoke_async::<Vec<i64>>(&mut connection).await.map_err(|e| e.to_string())
        };
        let answer = match tokio::time::timeout(self.timeout, run).await {
            Ok(answer) => answer?,
            Err(_) => return Err(format!("no answer within {}ms", self.timeout.as_millis())),
        };
        if answer.len() != 1 + 4 * checks.len() {
            return Err(format!("the script answered {} values", answer.len()));
        }
        let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
        let states = checks
            .iter()
            .zip(answer[1..].chunks_exact(4))
            .map(|(check, values)| {
                let outcome = Outcome {
                    admitted: values[2] <= 0,
                    spent_tat: 0,
                    remaining: u64::try_from(values[0]).unwrap_or(0),
                    reset: micros(values[1]),
                    retry_after: micros(values[2]),
                    next_unit: micros(values[3]),
                };
                (check.policy.clone(), outcome)
            })
            .collect();
        Ok(Decision { admitted: answer[0] == 1, states, source: Source::Shared })
    }

    /// Decisions go in process until Redis answers a probe again.
    pub fn went_down(self: &Arc<Self>, why: String) {
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            error = %why,
            replicas = self.replicas,
            "rate limits: Redis unavailable; deciding in process with this replica's share of each quota"
        );
        *self.outage.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        // Weakly held: a config reload that replaces these limits ends the probing with them.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let Some(shared) = weak.upgrade() else { return };
                // A key under the limits' hash tag: on a cluster, it asks the node that holds
                // them, not every node (as PING would).
                let mut probe = redis::cmd("PTTL");
                probe.arg(format!("{}probe", shared.key_prefix));
                let answer = tokio::time::timeout(shared.timeout, shared.redis.query::<i64>(STORE, &probe)).await;
                if let Ok(Ok(_)) = answer {
                    break;
                }
            }
            let Some(shared) = weak.upgrade() else { return };
            *shared.outage.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            shared.up.store(true, Ordering::Release);
            tracing::info!("rate limits: Redis answers again; deciding through it");
        });
    }
}
