//! Inbound TLS termination with rustls (ring): TLS 1.2 and 1.3 only, ALPN for HTTP/2 and
//! HTTP/1.1. Plain HTTP stays the default, for BFFs behind a load balancer that terminates TLS.

use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio_rustls::TlsAcceptor;

use super::config::TlsConfig;

/// The acceptor for `config`'s certificate chain and key; an error names the file at fault.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, String> {
    Ok(TlsAcceptor::from(Arc::new(server_config(config)?)))
}

/// Reads and checks the certificate chain and key: what `validate()` runs, so a bad file stops
/// the BFF before it serves.
pub fn server_config(config: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let (cert_file, key_file) = (&config.cert_file, &config.key_file);
    let chain = bff_upstream::tls::read_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The safe defaults are TLS 1.2 and 1.3: nothing older is offered.
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!("{} and {} do not make a certificate and key: {e}", cert_file.display(), key_file.display())
        })?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}
