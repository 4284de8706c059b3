//! Request coalescing (single flight): concurrent identical calls become one backend call.
//!
//! "Identical" is the cache's key rule ([`AnswerKey`]): the same bytes on the wire, identity
//! included unless the call is declared public, so a follower only ever gets an answer it would
//! have got itself. A public call whose answer turns out to say `Cache-Control: private` is not
//! shared after all: each follower makes its own call. The call runs on a task of its own, so a
//! leader whose client goes away does not cancel what its followers wait on; each follower waits
//! at most until its own deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tower::{Layer, Service, ServiceExt};

use super::{Below, CallFuture};
use crate::key::{AnswerKey, Scope};
use crate::trace::CacheStatus;
use crate::{Answer, UpstreamError, UpstreamRequest};

type Flight = Shared<BoxFuture<'static, Result<Answer, UpstreamError>>>;

/// The calls in flight, by key. An entry lives exactly as long as its call, so the map holds at
/// most as many entries as the backend has calls in flight (which the bulkhead bounds).
type Flights = Arc<Mutex<HashMap<AnswerKey, Flight>>>;

#[derive(Debug, Clone)]
pub struct CoalesceLayer {
    service: &'static str,
    /// The backend's per-call timeout: a follower's wait is its own budget, cut from this.
    timeout: Duration,
    flights: Flights,
}

impl CoalesceLayer {
    pub fn new(service: &'static str, timeout: Duration) -> Self {
        Self { service, timeout, flights: Flights::default() }
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = Coalesce<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Coalesce { layer: self.clone(), inner }
    }
}

#[derive(Debug, Clone)]
pub struct Coalesce<S> {
    layer: CoalesceLayer,
    inner: S,
}

impl<S: Below> Service<UpstreamRequest> for Coalesce<S> {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: UpstreamRequest) -> Self::Future {
        let inner = self.inner.clone();
        if !request.call.idempotent {
            return Box::pin(inner.oneshot(request));
        }
        let (key, scope) =
            request.shared_as.take().unwrap_or_else(|| (AnswerKey::of(&request, Scope::Caller), Scope::Caller));
        let mut flights = self.layer.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = flights.get(&key) {
            let flight = flight.clone();
            drop(flights);
            return follow(self.layer.service, self.layer.timeout, flight, scope, inner, request);
        }
        let call = inner.oneshot(request);
        let (registry, flight_key) = (Arc::clone(&self.layer.flights), key.clone());
        let task = tokio::spawn(async move {
            let result = call.await;
            registry.lock().unwrap_or_else(PoisonError::into_inner).remove(&flight_key);
            result
        });
        let service = self.layer.service;
        let flight = async move {
            task.await.unwrap_or_else(|_| Err(UpstreamError::Failed { service, detail: "the call panicked".into() }))
        }
        .boxed()
        .shared();
        flights.insert(key, flight.clone());
        drop(flights);
        Box::pin(flight)
    }
}

/// Waits for another request's identical call, within this request's own budget.
fn follow<S: Below>(
    service: &'static str,
    timeout: Duration,
    flight: Flight,
    scope: Scope,
    inner: S,
    request: UpstreamRequest,
) -> CallFuture {
    let budget = match request.cx.budget(service, timeout) {
        Ok(budget) => budget,
        Err(spent) => return Box::pin(std::future::ready(Err(spent))),
    };
    request.trace.set_cache(CacheStatus::Coalesced);
    Box::pin(async move {
        match tokio::time::timeout(budget, flight).await {
            // Declared public, but the backend said this answer is for its caller only.
            Ok(Ok(answer)) if scope == Scope::Public && answer.cache_control.private => {
                request.trace.set_cache(CacheStatus::Miss);
                inner.oneshot(request).await
            }
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout { service, after: budget }),
        }
    })
}
