//! TLS to backends: rustls against a local server whose certificate a test CA signed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use bff_upstream::{CallContext, Probe, UpstreamConfig};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA (its PEM written to a file, as a config would name it) and a server certificate for
/// `localhost` it signed.
struct TestPki {
    ca_file: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = std::env::temp_dir().join(format!("bff-test-ca-{}-{}.pem", std::process::id(), fastrand()));
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self { ca_file, server: Arc::new(server) }
    }

    /// Serves `router` over TLS (HTTP/1.1 or HTTP/2 by ALPN) on a free loopback port.
    async fn serve(&self, router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let service = TowerToHyperService::new(router);
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        addr
    }

    fn upstream(&self, addr: SocketAddr, trust_test_ca: bool) -> UpstreamConfig {
        let mut config = UpstreamConfig::new(format!("https://localhost:{}", addr.port()).parse().unwrap());
        config.ca_file = trust_test_ca.then(|| self.ca_file.clone());
        config
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

fn fastrand() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
}

#[tokio::test]
async fn rest_calls_over_https_verify_the_server() {
    let pki = TestPki::new();
    let user = serde_json::json!({ "id": "u-7", "name": "Ada", "email": "ada@example.com", "avatar_url": null });
    let router = Router::new().route("/users/{id}", get(move || async move { axum::Json(user) }));
    let addr = pki.serve(router).await;

    let users = bff_backends::UsersClient::new(&pki.upstream(addr, true)).unwrap();
    let got = users.get(&CallContext::new("tls"), "u-7", &[]).await.unwrap();
    assert_eq!(got.name().unwrap(), "Ada");

    // Without the CA the same server is not trusted: verification is real.
    let untrusting = bff_backends::UsersClient::new(&pki.upstream(addr, false)).unwrap();
    let error = untrusting.get(&CallContext::new("tls"), "u-7", &[]).await.unwrap_err();
    assert_eq!(error.kind(), "unavailable", "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test]
async fn grpc_calls_over_https_verify_the_server() {
    let pki = TestPki::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("shop.inventory.v1.InventoryService", tonic_health::ServingStatus::Serving).await;
    let addr = pki.serve(tonic::service::Routes::new(health_service).into_axum_router()).await;

    let inventory = bff_backends::InventoryClient::new(&pki.upstream(addr, true)).unwrap();
    inventory.probe().await.unwrap();
    let untrusting = bff_backends::InventoryClient::new(&pki.upstream(addr, false)).unwrap();
    assert!(untrusting.probe().await.is_err());
}

/// A BFF terminating TLS itself (`[server.tls]`, offering HTTP/2 and HTTP/1.1 by ALPN); plain HTTP on the
/// same port gets no answer.
#[tokio::test]
async fn a_bff_terminates_tls_when_configured() {
    let t = crate::support::TestStack::start().await;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let dir = std::env::temp_dir().join(format!("bff-inbound-tls-{}-{}", std::process::id(), fastrand()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let mut config =
        bff_platform::mobile_config(&t.stack.demo, "127.0.0.1:0".parse().unwrap(), std::time::Duration::from_secs(2));
    config.server.tls = Some(bff_gateway::config::TlsConfig { cert_file, key_file });
    let (addr, _server) = bff_platform::spawn_server_with(
        mobile_bff::app(config.clone()).unwrap(),
        &config.server,
        std::future::pending(),
    )
    .await
    .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let response = client.get(format!("https://localhost:{}/healthz", addr.port())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let token = t.token("u-1", "mobile");
    let response = client
        .post(format!("https://localhost:{}/graphql", addr.port()))
        .bearer_auth(token)
        .json(&serde_json::json!({ "query": "{ home { user { id name } } }" }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"]["home"]["user"]["id"], "u-1");
    assert!(t.http.get(format!("http://{addr}/healthz")).send().await.is_err(), "plain HTTP is not served");

    // A key that does not match is a config error naming the files.
    let other = KeyPair::generate().unwrap();
    let mismatched = dir.join("other.pem");
    std::fs::write(&mismatched, other.serialize_pem()).unwrap();
    let tls = bff_gateway::config::TlsConfig { cert_file: dir.join("missing.pem"), key_file: mismatched };
    assert!(bff_gateway::server::tls::server_config(&tls).unwrap_err().contains("missing.pem"));
    let _ = std::fs::remove_dir_all(&dir);
}
