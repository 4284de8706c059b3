//! The per-backend service stack, composed in one function that reads in request order. A new
//! layer is a file in [`crate::layer`] plus one line here.

use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};
use url::Url;

use crate::layer::{
    Balance, BulkheadLayer, CacheLayer, CallBudgetLayer, CoalesceLayer, HedgeLayer, Instance, Layered, MirrorLayer,
    RecordLayer, RetryBudget, RetryLayer, Split,
};
use crate::{Answer, UpstreamConfig, UpstreamError, UpstreamRequest};

/// Any layer of a backend's stack, once composed.
pub type UpstreamService = BoxCloneSyncService<UpstreamRequest, Answer, UpstreamError>;

/// A backend's stack, outermost first. `transport` makes the transport of one instance.
pub fn stack<T>(
    service: &'static str,
    config: &UpstreamConfig,
    transport: impl Fn(&Url) -> Result<T, UpstreamError>,
) -> Result<UpstreamService, UpstreamError>
where
    T: Service<UpstreamRequest, Response = Answer, Error = UpstreamError> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
{
    let stable = version(service, None, config, &config.instances(), &transport)?;
    // A canary is a version of its own below the split: its own instances, cache and breakers.
    let versions = match &config.canary {
        Some(canary) => {
            let canary_version = version(service, Some("canary"), config, &canary.urls, &transport)?;
            BoxCloneSyncService::new(Split::new(stable, canary_version, canary.percent))
        }
        None => stable,
    };
    // Every call, whoever answers it (the cache, a coalesced peer, the backend), is recorded
    // once, under its operation template, with what each layer decided.
    Ok(BoxCloneSyncService::new(Layered(RecordLayer::new(service)).layer(versions)))
}

/// One version of a backend: its instances and every layer between them and the split.
fn version<T>(
    service: &'static str,
    name: Option<&str>,
    config: &UpstreamConfig,
    urls: &[Url],
    transport: &impl Fn(&Url) -> Result<T, UpstreamError>,
) -> Result<UpstreamService, UpstreamError>
where
    T: Service<UpstreamRequest, Response = Answer, Error = UpstreamError> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
{
    let instances = urls
        .iter()
        .map(|url| {
            Ok(Instance::new(instance_label(url), transport(url)?, &config.breaker).registered(service, &config.health))
        })
        .collect::<Result<Vec<_>, UpstreamError>>()?;
    let mirror = match &config.mirror {
        Some(mirror) => {
            let shadow = Instance::new(instance_label(&mirror.url), transport(&mirror.url)?, &config.breaker);
            let shadow = BoxCloneSyncService::new(Balance::new(service, config.timeout, vec![shadow]));
            Some(Layered(MirrorLayer::new(mirror, shadow, config.timeout)))
        }
        None => None,
    };
    let budget = RetryBudget::new(&config.retry);
    Ok(BoxCloneSyncService::new(
        ServiceBuilder::new()
            // Reads answered from stored answers; mutations drop their caller's.
            .layer(Layered(CacheLayer::new(service, name, &config.cache)))
            // One backend call for concurrent identical reads, under the cache's key.
            .option_layer(config.coalesce.then(|| Layered(CoalesceLayer::new(service, config.timeout))))
            // The budget covers every attempt below, so retries cannot outlive the request.
            .layer(CallBudgetLayer::new(service, config.timeout))
            // A copy to the shadow, fire and forget.
            .option_layer(mirror)
            // Calls in flight to this backend, retries and hedges inside their call's slot.
            .layer(Layered(BulkheadLayer::new(service, &config.bulkhead)))
            // Safe failures sent again, within the retry budget and the deadline.
            .layer(Layered(RetryLayer::new(&config.retry, budget.clone())))
            // A second attempt elsewhere when the first is slow, from the same budget.
            .option_layer(config.hedge.as_ref().map(|hedge| Layered(HedgeLayer::new(hedge, budget))))
            // Power of two choices over the instances whose breaker admits the call.
            .service(Balance::new(service, config.timeout, instances)),
    ))
}

/// `host:port` of an instance, for logs.
fn instance_label(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => url.to_string(),
    }
}
