//! Traces exported over OTLP to a real OTLP receiver (the OTLP trace service from
//! `opentelemetry-proto`, served by tonic in this process): one mobile `home` query is one trace,
//! its server span named by the operation and a client span per backend call, and the backends
//! received the same trace id in their headers and gRPC metadata. A caller's `traceparent` is
//! continued only from a trusted address.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use crate::support::{HOME_QUERY, TestStack};

/// Every span the receiver was sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans `pick` keeps, once at least `count` of them have arrived (at most five seconds).
async fn received(receiver: &Receiver, count: usize, pick: impl Fn(&Span) -> bool) -> Vec<Span> {
    for _ in 0..250 {
        let spans: Vec<Span> = receiver.0.lock().unwrap().iter().filter(|s| pick(s)).cloned().collect();
        if spans.len() >= count {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{count} spans did not arrive: {} received in all", receiver.0.lock().unwrap().len());
}

/// Mobile's `Home`, sent with a caller's `traceparent` naming trace `trace_id`, sampled.
async fn home_in_trace(t: &TestStack, trace_id: &str) {
    home_in_trace_with_flags(t, trace_id, "01").await;
}

/// [`home_in_trace`] with the caller's trace `flags` (`01` sampled, `00` not).
async fn home_in_trace_with_flags(t: &TestStack, trace_id: &str, flags: &str) {
    let reply = TestStack::reply(
        t.http
            .post(TestStack::url(t.stack.mobile, "/graphql"))
            .bearer_auth(t.token("u-1", "mobile"))
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-{flags}"))
            .json(&json!({ "query": HOME_QUERY })),
    )
    .await;
    assert!(reply.body.get("errors").is_none(), "{:#}", reply.body);
}

/// A real OTLP receiver on a free port, tracing installed to export to it (continuing the trace
/// context of callers in `trusted`), and a stack on ephemeral ports.
async fn traced_stack(trusted: &str) -> (Receiver, TestStack, bff_gateway::telemetry::traces::TracesGuard) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(receiver.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let mut config = bff_platform::StackConfig::ephemeral();
    config.otlp = Some(format!("http://{collector}").parse().unwrap());
    let mut telemetry = config.telemetry();
    telemetry.trust_traceparent_from = vec![trusted.parse().unwrap()];
    let guard = bff_gateway::telemetry::init_with_tracing("bff-test", &telemetry).unwrap().expect("a tracer");
    (receiver, TestStack::start_with(config).await, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_is_one_trace_across_rest_and_grpc_and_the_backends_see_it() {
    // Continue only this machine's traces: a test client here is trusted.
    let (receiver, t, _guard) = traced_stack("127.0.0.1").await;
    t.reset().await;

    // A caller's trace, continued: the whole request is in it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    home_in_trace(&t, trace_id).await;
    let spans = received(&receiver, 7, |s| hex(&s.trace_id) == trace_id).await;
    let server: Vec<&Span> = spans.iter().filter(|s| s.name == "Home").collect();
    assert_eq!(server.len(), 1, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert_eq!(hex(&server[0].parent_span_id), "00f067aa0ba902b7", "the caller's span is the parent");
    // The phases are the request's children; the backend calls are made while executing.
    let children_of = |parent: &[u8]| {
        let mut names: Vec<&str> =
            spans.iter().filter(|s| s.parent_span_id == parent).map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names
    };
    assert_eq!(children_of(&server[0].span_id), ["authenticate", "graphql.check", "graphql.execute"], "{spans:#?}");
    let execute = spans.iter().find(|s| s.name == "graphql.execute").unwrap();
    assert_eq!(
        children_of(&execute.span_id),
        ["GET /users/{id}", "GET /users/{id}/recommendations", "ListOrders"],
        "{spans:#?}"
    );

    // The request's latency bucket leads to its trace (an exemplar).
    let scraped = crate::metrics::scrape(&t, t.stack.admin[0]).await;
    let linked = scraped
        .iter()
        .any(|s| s.name == "bff_request_duration_seconds_bucket" && s.exemplar.as_deref() == Some(trace_id));
    assert!(linked, "no latency bucket names trace {trace_id}");

    // Each backend was told the trace, over HTTP headers and gRPC metadata alike, with its own
    // call's client span as the parent.
    let recorded = t.calls().await;
    for (backend, call_span) in
        [("users", "GET /users/{id}"), ("recommendations", "GET /users/{id}/recommendations"), ("orders", "ListOrders")]
    {
        let call = recorded[backend]["recent"].as_array().and_then(|r| r.last()).unwrap_or_else(|| panic!("{backend}"));
        let traceparent = call["headers"]["traceparent"].as_str().unwrap_or_else(|| panic!("{backend}: {call:#}"));
        let span = spans.iter().find(|s| s.name == call_span).unwrap();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!((parts[1], parts[2]), (trace_id, hex(&span.span_id).as_str()), "{backend}");
    }
}

/// From a caller the config does not trust, a `traceparent` is ignored: the request starts a
/// trace of its own, so an outsider can neither join the BFF's traces nor force their sampling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_callers_trace_context_starts_a_new_trace() {
    let (receiver, t, _guard) = traced_stack("10.0.0.0/8").await;
    let forged = "4bf92f3577b34da6a3ce929d0e0e4736";
    home_in_trace(&t, forged).await;
    // The request was traced (sampling 1), in a trace of its own.
    let home = received(&receiver, 1, |s| s.name == "Home").await.remove(0);
    assert_ne!(hex(&home.trace_id), forged);
    assert!(home.parent_span_id.is_empty(), "a root span, not the caller's child");
    let users = t.recent_calls("users").await;
    let traceparent = users.last().unwrap()["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert_eq!(traceparent.split('-').nth(1), Some(hex(&home.trace_id).as_str()), "the backend got the new trace");
}

/// A trusted caller that decided not to sample is followed, and the decision is made before any
/// span exists: its request exports nothing and its backend calls carry no trace context, while
/// the next, sampled request exports its whole trace (the exporter works; the silence is the
/// decision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_request_makes_no_spans_at_all() {
    let (receiver, t, _guard) = traced_stack("127.0.0.1").await;
    t.reset().await;
    home_in_trace_with_flags(&t, "0af7651916cd43dd8448eb211c80319c", "00").await;
    let users = t.recent_calls("users").await;
    assert!(users.last().unwrap()["headers"]["traceparent"].is_null(), "{:#}", users.last().unwrap());

    let sampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    home_in_trace(&t, sampled).await;
    received(&receiver, 7, |s| hex(&s.trace_id) == sampled).await;
    let stray: Vec<String> =
        receiver.0.lock().unwrap().iter().map(|s| hex(&s.trace_id)).filter(|id| id != sampled).collect();
    assert!(stray.is_empty(), "spans of other traces were exported: {stray:?}");
}
