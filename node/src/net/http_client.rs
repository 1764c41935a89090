//! The node's HTTP client, shared by everything that asks other servers over HTTP: the
//! delegated routers ([`super::delegated`]) and the origins and HTTP providers
//! ([`super::origin`]). It speaks plain HTTP and HTTPS (rustls, TLS 1.2 and 1.3), and trusts
//! the system's roots: the platform's store, or the files `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! name. A root that cannot be read is skipped; with none at all, HTTPS fails (each request
//! with its error) and plain HTTP still works.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;

/// A client for GETs with empty bodies, over HTTP or HTTPS.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client that trusts the system's roots.
pub fn client() -> HttpClient {
    with_roots(&[])
}

/// A client that trusts the system's roots and `extra` (a test's own authority).
pub fn with_roots(extra: &[CertificateDer<'static>]) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("a system root could not be read: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!("{ignored} system roots were not usable ({added} taken)");
    }
    for c in extra {
        if let Err(e) = roots.add(c.clone()) {
            tracing::warn!("an extra root was refused: {e}");
        }
    }
    // The provider is named: libp2p's QUIC brings another into the build, and rustls will
    // not pick one of two by itself.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(https)
}
