//! `cairn-gateway`: the HTTP gateway, on hyper.
//!
//! - **Path gateway**: `GET`/`HEAD /ipfs/{cid}[/path]`: files with a sniffed `Content-Type`,
//!   byte ranges, `ETag`/`If-None-Match`, immutable caching; directories as `index.html` or a
//!   streamed listing; clear statuses for bad CIDs (400), missing paths (404), blocks that
//!   cannot be had (504).
//! - **Subdomain gateway**: `{cidv1}.ipfs.localhost` serves the same content from its own
//!   origin, and path requests on `localhost` are redirected there.
//! - **Trustless gateway**: `?format=raw` / `application/vnd.ipld.raw` (one block) and
//!   `?format=car` / `application/vnd.ipld.car` with `dag-scope` and `entity-bytes`.
//! - **Delegated routing** (`Gateway.ExposeRoutingAPI`): `/routing/v1/providers`, `/peers`
//!   and `/dht/closest/peers`, read-only, answered from the store and the DHTs
//!   ([`routing`]).
//!
//! The gateway never exposes an RPC API route. Bodies stream from blocking threads (the store is
//! synchronous) through bounded channels; slow or vanished clients are cut off by timeouts,
//! and connections beyond [`GatewayConfig::max_connections`] wait in the kernel's backlog.

pub mod api;
mod body;
mod content;
pub mod error;
mod handler;
mod headers;
mod io;
mod listing;
pub mod metrics;
mod mime;
mod negotiate;
mod path;
pub mod pinning;
mod range;
mod redirects;
pub mod routing;
mod subdomain;
mod wait;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::Node;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use cairn_node::settings::PublicGateway;
pub use handler::Handler;
pub use metrics::GatewayMetrics;

/// The gateway's parsers of untrusted request parts and its CAR writer, reachable from
/// outside the crate only for the fuzz targets in `fuzz/`. Not an API: nothing else may use
/// it, and it changes with the code it exposes.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::content::{write_car, DagScope, EntityBytes};
    pub use crate::error::HttpError;
    pub use crate::negotiate::{negotiate, Format};
    pub use crate::path::{
        decode_segments, encode_segment, parse_ipfs_path, parse_root, parse_root_syntax, ContentPath, PathError,
        MAX_PATH_BYTES, MAX_SEGMENTS,
    };
    pub use crate::pinning::parse_listing_query;
    pub use crate::range::{parse as parse_range, RangeRequest, MAX_RANGES};
    pub use crate::subdomain::{host_of, label_for, parse_label, Host};
}

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The host names the gateway is reached by (`Gateway.PublicGateways`), with what each
    /// serves: hosts with subdomains serve `{cid}.ipfs.{host}`. Other hosts (an IP address)
    /// get the plain path gateway.
    pub public_gateways: Vec<PublicGateway>,
    /// Serve only what the repo holds (`Gateway.NoFetch`): a block it lacks is a 404.
    pub no_fetch: bool,
    /// Serve deserialized forms (files, listings, tar, codec blocks) on hosts that do not
    /// say otherwise (`Gateway.DeserializedResponses`); off, only raw blocks and CARs.
    pub deserialized_responses: bool,
    /// A client must send its request head within this time.
    pub header_timeout: Duration,
    /// Connections served at once; more wait until one closes.
    pub max_connections: usize,
    /// How long open connections get to finish when the gateway shuts down.
    pub shutdown_grace: Duration,
    /// A client that takes none of what it is sent for this long is cut off.
    pub write_timeout: Duration,
    /// Where the gateway counts requests (the API's metrics page shows them).
    pub metrics: Arc<GatewayMetrics>,
    /// Requests served at once (`Gateway.MaxConcurrentRequests`); more get 429 with
    /// `Retry-After`. A request counts until its body is sent.
    pub max_concurrent_requests: usize,
    /// The longest one request may take, body included (`Gateway.MaxRequestDuration`):
    /// an answer not begun by then is a 504, a body not sent by then is cut off.
    pub max_request_duration: Duration,
    /// The delegated routing API under `/routing/v1/` (`Gateway.ExposeRoutingAPI`), when the
    /// node is online and the API is on.
    pub routing: Option<routing::RoutingApi>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            public_gateways: vec![PublicGateway {
                host: "localhost".into(),
                paths: vec!["/ipfs".into(), "/ipns".into()],
                use_subdomains: true,
                deserialized_responses: true,
            }],
            no_fetch: false,
            deserialized_responses: true,
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
            write_timeout: body::SEND_TIMEOUT,
            metrics: Arc::default(),
            max_concurrent_requests: 4096,
            max_request_duration: Duration::from_secs(3600),
            routing: None,
        }
    }
}

/// The largest request head accepted, in bytes.
const MAX_HEAD_BYTES: usize = 16 << 10;

/// Serves the gateway on `listener` until `shutdown` completes, then lets open connections
/// finish (for at most [`GatewayConfig::shutdown_grace`]).
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = Limits {
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        grace: config.shutdown_grace,
        write_timeout: config.write_timeout,
    };
    let slots = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
    let handler = Arc::new(Handler::new(node, config, slots));
    serve_with(listener, limits, shutdown, move |req| handler.clone().limited(req)).await
}

/// Serves the RPC API ([`api::Api`]) on `listener` until `shutdown` completes.
pub async fn serve_api(
    listener: TcpListener,
    api: api::Api,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let api = Arc::new(api);
    serve_with(listener, SERVICE_LIMITS, shutdown, move |req| api.clone().handle(req)).await
}

/// What bounds the connections of one server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A client must send its request head within this time.
    header_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    max_connections: usize,
    /// How long open connections get to finish at shutdown.
    grace: Duration,
    /// A client that takes nothing it is sent for this long is cut off.
    write_timeout: Duration,
}

/// The limits of the API and the pinning service.
const SERVICE_LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(10),
    max_connections: 256,
    grace: Duration::from_secs(5),
    write_timeout: body::SEND_TIMEOUT,
};

/// Serves the Pinning Service API ([`pinning::PinningApi`]) on `listener` until `shutdown`
/// completes.
pub async fn serve_pinning(
    listener: TcpListener,
    api: pinning::PinningApi,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let api = Arc::new(api);
    serve_with(listener, SERVICE_LIMITS, shutdown, move |req| api.clone().handle(req)).await
}

/// The accept loop shared by the gateway and the API: at most `max` connections at once, a
/// head timeout, and a grace period for open connections at shutdown.
async fn serve_with<F, Fut>(
    listener: TcpListener,
    Limits { header_timeout, max_connections: max, grace, write_timeout }: Limits,
    shutdown: impl Future<Output = ()>,
    handle: F,
) -> std::io::Result<()>
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<body::Body>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    // HTTP/1.1 only: it is what browsers speak to a plain-http gateway, and the head timeout
    // covers a connection from its first moment (a client that sends nothing is closed too).
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEAD_BYTES);
    let handle = Arc::new(handle);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        let service = service_fn(move |req| {
            let fut = handle(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let stream = io::WriteTimeout::new(stream, write_timeout);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::debug!("shutdown grace period over"),
    }
    Ok(())
}

/// Binds `addr` and serves on it in the background; returns the bound address (useful with
/// port 0) and the task's handle. The gateway stops when `shutdown` completes.
pub async fn spawn(
    addr: SocketAddr,
    node: Arc<Node>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(listener, node, config, shutdown))))
}
