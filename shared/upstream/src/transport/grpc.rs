use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::future::BoxFuture;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tower::Service;

use crate::transport::rest::error_chain;
use crate::{Answer, Target, UpstreamConfig, UpstreamError, UpstreamRequest};

/// The transport of one instance of a gRPC backend: one lazily connected, multiplexed HTTP/2
/// channel shared by every request to it. It carries encoded messages, so every RPC of every service goes through the
/// same stack; the typed clients encode requests and decode answers.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    service: &'static str,
    timeout: Duration,
    expose_errors: bool,
    channel: Channel,
}

impl GrpcTransport {
    /// The transport of the instance at `url`.
    pub fn new(service: &'static str, config: &UpstreamConfig, url: &url::Url) -> Result<Self, UpstreamError> {
        let config_error = |reason: String| UpstreamError::Config { service, reason };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| config_error(e.to_string()))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if url.scheme() == "https" {
            let mut tls = ClientTlsConfig::new().with_webpki_roots();
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|e| config_error(format!("{}: {e}", path.display())))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| config_error(error_chain(&e)))?;
        }
        Ok(Self {
            service,
            timeout: config.timeout,
            expose_errors: config.expose_errors,
            channel: endpoint.connect_lazy(),
        })
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Opens a server-streaming RPC. Streams live as long as whoever reads them (a subscription),
    /// so they do not go through the unary stack: no request deadline and no call timeout apply
    /// to the stream, only to opening it (connecting and the backend's first response). Dropping
    /// the stream resets the HTTP/2 stream, which cancels the RPC on the backend.
    pub(crate) async fn server_streaming(
        &self,
        cx: &crate::CallContext,
        path: &'static str,
        message: Bytes,
    ) -> Result<tonic::Streaming<Bytes>, UpstreamError> {
        let (service, timeout) = (self.service, self.timeout);
        let rpc = request_with_metadata(service, cx, message)?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let open = async {
            grpc.ready().await.map_err(|e| UpstreamError::Unavailable { service, reason: error_chain(&e) })?;
            let path = http::uri::PathAndQuery::from_static(path);
            grpc.server_streaming(rpc, path, RawCodec)
                .await
                .map_err(|status| Self::status_error(service, &status, timeout, self.expose_errors))
        };
        let response = tokio::time::timeout(timeout, open)
            .await
            .unwrap_or(Err(UpstreamError::Timeout { service, after: timeout }))?;
        Ok(response.into_inner())
    }

    /// The error a failed message of an open stream means.
    pub(crate) fn stream_error(&self, status: &Status) -> UpstreamError {
        Self::status_error(self.service, status, self.timeout, self.expose_errors)
    }

    fn status_error(service: &'static str, status: &Status, budget: Duration, expose_errors: bool) -> UpstreamError {
        // A status with a source was made on this side, from a transport error; one without came
        // over the wire from the backend.
        if let Some(source) = std::error::Error::source(status) {
            // tonic's own timer, from the `grpc-timeout` this call carries, can end it at the
            // same moment as the call budget's: a timeout either way, whichever fires first.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
            while let Some(error) = cause {
                if error.downcast_ref::<tonic::TimeoutExpired>().is_some() {
                    return UpstreamError::Timeout { service, after: budget };
                }
                cause = error.source();
            }
            let chain = error_chain(source);
            return if chain.contains("connect") {
                // No connection (refused, unreachable, TLS handshake): the call never left.
                UpstreamError::Unavailable { service, reason: chain }
            } else {
                UpstreamError::Failed { service, detail: chain }
            };
        }
        match status.code() {
            Code::DeadlineExceeded => UpstreamError::Timeout { service, after: budget },
            // tonic's own refusal of a message past its size limit: the backend's fault, not the
            // caller's, whatever code tonic gives it.
            Code::OutOfRange if status.message().contains("message length too large") => {
                UpstreamError::BadBody { service, reason: status.message().chars().take(200).collect() }
            }
            // The backend itself would not take the call (gRPC's "try again"), like an HTTP 503;
            // it may have started on it, so only idempotent calls may be repeated.
            Code::Unavailable | Code::ResourceExhausted => UpstreamError::Overloaded { service, retry_after: None },
            Code::NotFound => UpstreamError::NotFound { service },
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::AlreadyExists => {
                let message = if expose_errors {
                    status.message().chars().take(200).collect()
                } else {
                    crate::error::GENERIC_REJECTION.to_owned()
                };
                UpstreamError::Rejected { service, message }
            }
            code => UpstreamError::Failed { service, detail: format!("gRPC {code:?}") },
        }
    }
}

impl Service<UpstreamRequest> for GrpcTransport {
    type Response = Answer;
    type Error = UpstreamError;
    type Future = BoxFuture<'static, Result<Answer, UpstreamError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        let service = self.service;
        Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.channel, cx)
            .map_err(|e| UpstreamError::Unavailable { service, reason: error_chain(&e) })
    }

    fn call(&mut self, request: UpstreamRequest) -> Self::Future {
        let (service, budget) = (self.service, request.remaining().unwrap_or(self.timeout));
        let expose_errors = self.expose_errors;
        // The ready channel goes into the call; a fresh clone waits for the next poll_ready.
        let fresh = self.channel.clone();
        let channel = std::mem::replace(&mut self.channel, fresh);
        Box::pin(async move {
            let Target::Grpc { path, message } = request.call.target else {
                return Err(UpstreamError::Config { service, reason: "a REST call sent to gRPC".into() });
            };
            let path = http::uri::PathAndQuery::from_static(path);
            let mut rpc = request_with_metadata(service, &request.cx, message)?;
            rpc.set_timeout(budget);
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| UpstreamError::Unavailable { service, reason: error_chain(&e) })?;
            match grpc.unary(rpc, path, RawCodec).await {
                Ok(response) => Ok(Answer::new(response.into_inner())),
                Err(status) => Err(Self::status_error(service, &status, budget, expose_errors)),
            }
        })
    }
}

/// An RPC carrying `message` and the request id and verified identity as metadata. As for REST,
/// a value that cannot be sent fails the call: never send it with an identity value missing.
fn request_with_metadata(
    service: &'static str,
    cx: &crate::CallContext,
    message: Bytes,
) -> Result<tonic::Request<Bytes>, UpstreamError> {
    let mut rpc = tonic::Request::new(message);
    for (name, value) in cx.outbound_headers() {
        let value = value.parse().map_err(|_| UpstreamError::Config {
            service,
            reason: format!("`{name}` is not representable as gRPC metadata"),
        })?;
        rpc.metadata_mut().insert(name, value);
    }
    Ok(rpc)
}

/// Passes already encoded protobuf messages through tonic's framing untouched.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
