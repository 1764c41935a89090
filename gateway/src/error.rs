//! The one error of the gateway's three HTTP surfaces (the path gateway, the RPC API and the
//! Pinning Service API), and the one place where each cause gets its status. Each surface
//! writes the error in its own form (plain text, Kubo's JSON, the Pinning Service API's
//! JSON); the status is the same everywhere for the same cause.
//!
//! A block that a read waited for and that was not fetched in time is 504 on every surface
//! (the RPC API answered 500 before the three types became one).

use cairn_node::merkle::car::CarError;
use cairn_node::merkle::exporter::ExportError;
use cairn_node::merkle::source::SourceError;
use cairn_node::merkle::Cid;
use cairn_node::pinning::PinError;
use cairn_node::NodeError;
use hyper::StatusCode;

/// A failed request: the status to answer with and one line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// One line for the body.
    pub message: String,
    /// Not a failure yet: the read stopped at this block, which is being fetched
    /// ([`SourceError::Pending`]). The request waits for it, holding no thread, and reads
    /// again ([`crate::wait::until_local`]). (Boxed to keep results small.)
    pub pending: Option<Box<Cid>>,
    /// The failure is a block the node does not have (or could not fetch), as opposed to a
    /// path the DAG does not hold: a site's `_redirects` answers only the latter.
    pub block_missing: bool,
}

impl HttpError {
    /// A failure with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into(), pending: None, block_missing: false }
    }

    /// 400: the request itself is wrong.
    pub fn bad(message: impl std::fmt::Display) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, message.to_string())
    }

    /// 404: no such thing here.
    pub fn not_found(message: impl std::fmt::Display) -> Self {
        HttpError::new(StatusCode::NOT_FOUND, message.to_string())
    }

    /// 500: this node failed.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }

    /// A node's error, for the RPC API: 500, as Kubo answers a command that failed, except
    /// that a read stopped at a block being fetched is kept apart ([`HttpError::pending`]).
    pub fn node(e: NodeError) -> Self {
        match e.pending() {
            Some(cid) => HttpError { pending: Some(Box::new(cid)), ..HttpError::internal(&e) },
            None => HttpError::internal(e),
        }
    }

    /// The Pinning Service API's `reason` for this error.
    pub fn reason(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "BAD_REQUEST",
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::FORBIDDEN => "QUOTA_EXCEEDED",
            StatusCode::NOT_FOUND => "NOT_FOUND",
            StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
            StatusCode::TOO_MANY_REQUESTS => "RATE_LIMITED",
            _ => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl crate::wait::Stop for HttpError {
    fn pending(&self) -> Option<Cid> {
        self.pending.as_deref().copied()
    }
    fn unfetched(e: SourceError) -> HttpError {
        ExportError::Source(e).into()
    }
    fn lost(why: String) -> HttpError {
        HttpError::internal(why)
    }
}

impl From<ExportError> for HttpError {
    fn from(e: ExportError) -> Self {
        let status = match &e {
            // This node serves what it holds: content it does not have is "not found" (a
            // gateway that fetches from the network answers 504 when a fetch times out).
            ExportError::Source(SourceError::NotFound(_)) => StatusCode::NOT_FOUND,
            ExportError::Source(_) => StatusCode::GATEWAY_TIMEOUT,
            ExportError::NoSuchLink { .. } | ExportError::NotADirectory(_) => StatusCode::NOT_FOUND,
            ExportError::NotUnixFs(_) => StatusCode::NOT_ACCEPTABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            ExportError::Source(SourceError::NotFound(cid)) => {
                format!("block {cid} not found: this node does not have it")
            }
            ExportError::NotUnixFs(cid) => {
                format!("{cid} is not UnixFS; ask for it with ?format=raw or ?format=car")
            }
            _ => e.to_string(),
        };
        let block_missing = matches!(e, ExportError::Source(_));
        HttpError { status, message, pending: e.pending().map(Box::new), block_missing }
    }
}

impl From<CarError> for HttpError {
    fn from(e: CarError) -> Self {
        match e {
            CarError::Source(s) => ExportError::Source(s).into(),
            e => HttpError::internal(e),
        }
    }
}

impl From<PinError> for HttpError {
    fn from(e: PinError) -> HttpError {
        let status = match e {
            PinError::Bad(_) => StatusCode::BAD_REQUEST,
            PinError::NotFound(_) => StatusCode::NOT_FOUND,
            PinError::Quota(_) => StatusCode::FORBIDDEN,
            PinError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e {
            PinError::Bad(d) => d,
            e => e.to_string(),
        };
        HttpError::new(status, message)
    }
}
