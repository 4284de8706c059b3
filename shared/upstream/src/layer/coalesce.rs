//! Request coalescing (single flight): concurrent identical reads become one backend call.
//!
//! "Identical" is the cache's key rule ([`AnswerKey`]): the same bytes on the wire, identity
//! included unless the call is declared public, so a follower only ever gets an answer it would
//! have got itself. Under a public key only a successful answer that does not say
//! `Cache-Control: private` is shared; after anything else (a private answer, an error that may
//! be about the leader alone) each follower makes its own call; a flight that timed out at the
//! leader's deadline sends a follower with time left to make its own call too. A caller's
//! follower never joins a flight that started before the caller's own last mutation. The call
//! runs on a task of its own, so a leader whose client goes away does not cancel what its
//! followers wait on; it keeps the leader's deadline, which the backend is told, and every
//! follower waits at most until its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tower::ServiceExt;

use super::{Below, CallFuture, CallLayer};
use crate::key::{AnswerKey, Scope};
use crate::trace::CacheStatus;
use crate::{Answer, UpstreamError, UpstreamRequest};

type Flight = Shared<BoxFuture<'static, Result<Answer, UpstreamError>>>;

/// The calls in flight, by key, with when each started. An entry lives exactly as long as its
/// call, so the map holds at most as many entries as the backend has calls in flight.
type Flights = Arc<Mutex<HashMap<AnswerKey, (Flight, Instant)>>>;

#[derive(Debug, Clone)]
pub struct CoalesceLayer {
    service: &'static str,
    /// The backend's per-call timeout: what a flight may take, and what a wait is cut from.
    timeout: Duration,
    flights: Flights,
}

impl CoalesceLayer {
    pub fn new(service: &'static str, timeout: Duration) -> Self {
        Self { service, timeout, flights: Flights::default() }
    }
}

/// Takes a finished flight out of the map however its task ends (a panic included).
struct Land {
    flights: Flights,
    key: AnswerKey,
}

impl Drop for Land {
    fn drop(&mut self) {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

impl CallLayer for CoalesceLayer {
    fn call<S: Below>(&self, inner: S, mut request: UpstreamRequest) -> CallFuture {
        let CoalesceLayer { service, timeout, .. } = *self;
        if !request.call.read {
            return Box::pin(inner.oneshot(request));
        }
        let budget = match request.cx.budget(service, timeout) {
            Ok(budget) => budget,
            Err(spent) => return Box::pin(std::future::ready(Err(spent))),
        };
        let (key, scope) =
            request.shared_as.take().unwrap_or_else(|| (AnswerKey::of(&request, Scope::Caller), Scope::Caller));
        let owner = request.cx.identity().and_then(crate::Identity::owner);
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((flight, started)) = flights.get(&key)
            && (scope == Scope::Public || super::cache::still_current(owner.as_deref(), *started))
        {
            let flight = flight.clone();
            drop(flights);
            request.trace.set_cache(CacheStatus::Coalesced);
            return Box::pin(async move {
                let started = Instant::now();
                match tokio::time::timeout(budget, flight).await {
                    Ok(Ok(answer)) if scope == Scope::Caller || !answer.cache_control.private => Ok(answer),
                    // The leader's deadline, not this follower's, ended the flight.
                    Ok(Err(UpstreamError::Timeout { .. })) if started.elapsed() < budget => {
                        request.trace.set_cache(CacheStatus::Miss);
                        inner.oneshot(request).await
                    }
                    Ok(Err(error)) if scope == Scope::Caller => Err(error),
                    // Shared only as a success meant for anyone: otherwise, its own call.
                    Ok(_) => {
                        request.trace.set_cache(CacheStatus::Miss);
                        inner.oneshot(request).await
                    }
                    Err(_) => Err(UpstreamError::Timeout { service, after: budget }),
                }
            });
        }
        let call = inner.oneshot(request);
        let land = Land { flights: Arc::clone(&self.flights), key: key.clone() };
        // The call stays in the leader's span, so its trace context goes to the backend.
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let _land = land;
            call.await
        }));
        let flight = async move {
            task.await.unwrap_or_else(|_| Err(UpstreamError::Failed { service, detail: "the call panicked".into() }))
        }
        .boxed()
        .shared();
        flights.insert(key, (flight.clone(), Instant::now()));
        drop(flights);
        Box::pin(async move {
            tokio::time::timeout(budget, flight).await.unwrap_or(Err(UpstreamError::Timeout { service, after: budget }))
        })
    }
}
