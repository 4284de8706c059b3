use std::future::Future;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::context::{CallOutcome, UpstreamCall};
use crate::{CallContext, UpstreamConfig, UpstreamError};

/// A gRPC backend: one lazily connected, multiplexed HTTP/2 channel shared by every request.
#[derive(Debug, Clone)]
pub struct GrpcChannel {
    service: &'static str,
    timeout: Duration,
    channel: Channel,
}

impl GrpcChannel {
    /// Connects on first use, so a BFF starts (and reports not-ready) while a backend is down.
    pub fn new(service: &'static str, config: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let endpoint = Endpoint::from_shared(config.url.to_string())
            .map_err(|e| UpstreamError::Config { service, reason: e.to_string() })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(Self { service, timeout: config.timeout, channel: endpoint.connect_lazy() })
    }

    /// The raw channel, for readiness probes that carry no request context.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls one RPC: `rpc` receives a clone of the channel and the request, already carrying
    /// the request id, the verified identity and a `grpc-timeout` within the request's deadline.
    pub async fn call<Req, Resp, F, Fut>(
        &self,
        cx: &CallContext,
        method: &'static str,
        message: Req,
        rpc: F,
    ) -> Result<Resp, UpstreamError>
    where
        F: FnOnce(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let budget = cx.budget(self.service, self.timeout)?;
        let mut request = Request::new(message);
        request.set_timeout(budget);
        for (name, value) in cx.outbound_headers() {
            // Sending the call without an identity value would let the backend take the caller for
            // someone else (a machine client, say): refuse instead.
            let value = value.parse().map_err(|_| UpstreamError::Config {
                service: self.service,
                reason: format!("`{name}` is not representable as gRPC metadata"),
            })?;
            request.metadata_mut().insert(name, value);
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(budget, rpc(self.channel.clone(), request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.status_error(&status, budget)),
            Err(_) => Err(UpstreamError::Timeout { service: self.service, after: budget }),
        };
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => CallOutcome::Failed(e.kind()),
        };
        cx.record(UpstreamCall {
            service: self.service,
            operation: method.to_owned(),
            latency: started.elapsed(),
            outcome,
        });
        result
    }

    fn status_error(&self, status: &Status, budget: Duration) -> UpstreamError {
        let service = self.service;
        match status.code() {
            Code::DeadlineExceeded => UpstreamError::Timeout { service, after: budget },
            Code::Unavailable | Code::Cancelled | Code::ResourceExhausted | Code::Aborted => {
                UpstreamError::Unavailable {
                    service,
                    reason: format!("gRPC {:?}: {}", status.code(), status.message()),
                }
            }
            Code::NotFound => UpstreamError::NotFound { service },
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::AlreadyExists => {
                UpstreamError::Rejected { service, message: status.message().chars().take(200).collect() }
            }
            code => UpstreamError::Failed { service, detail: format!("gRPC {code:?}") },
        }
    }
}
