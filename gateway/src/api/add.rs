//! `add`: a multipart upload streamed straight into the importer, and the body limits every
//! upload command (`add`, `dag/import`, `block/put`) shares.
//!
//! No part ever reaches the file system: the parts go one by one over a channel to a
//! blocking task that imports them as they arrive (`cairn_node::upload`), a file's bytes
//! through a bounded channel of chunks. A symlink part becomes a UnixFS symlink node.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use cairn_node::upload::{UploadError, UploadLimits, UploadPart, MAX_SYMLINK_TARGET};
use cairn_node::NodeError;
use hyper::header;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::{add_options, ndjson, tsize, Answer, Api, HttpError, Params};

/// Chunks of one file part in flight between the request and the importer.
const CHUNKS_IN_FLIGHT: usize = 4;

/// How much one upload may carry: `API.MaxUploadBytes` and `API.MaxUploadEntries`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UploadBodyLimits {
    pub(crate) bytes: u64,
    pub(crate) entries: usize,
}

impl UploadBodyLimits {
    /// The limits in `config`; a value that does not parse is left at its default (the
    /// daemon refuses to start with it, see `cairn daemon`).
    pub(crate) fn of(config: &cairn_node::Config) -> UploadBodyLimits {
        let defaults = cairn_node::config::Api::default();
        let bytes = config
            .api_max_upload_bytes()
            .unwrap_or_else(|_| cairn_node::config::parse_size(&defaults.max_upload_bytes).unwrap_or(u64::MAX));
        let entries = usize::try_from(config.api.max_upload_entries.max(1)).unwrap_or(usize::MAX);
        UploadBodyLimits { bytes, entries }
    }
}

/// One chunk of a part, or the error that cut the part off (shared: the handler answers the
/// client with it too).
pub(super) type Chunk = Result<Bytes, Arc<multer::Error>>;

/// A blocking `Read` over chunks handed in from the runtime; an `Err` item ends it with that
/// error (an upload cut off mid-part).
pub(super) struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    current: Bytes,
}

impl ChunkReader {
    /// A reader and the sender that feeds it, holding at most `CHUNKS_IN_FLIGHT` chunks.
    pub(super) fn channel() -> (tokio::sync::mpsc::Sender<Chunk>, ChunkReader) {
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        (tx, ChunkReader { rx, current: Bytes::new() })
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// A multipart body's error as the client should see it: a body over the limit is a 413
/// that names the setting, anything else a 400.
pub(super) fn body_error(e: &multer::Error) -> HttpError {
    match e {
        multer::Error::StreamSizeExceeded { limit } => too_large(*limit),
        e => HttpError::bad(e),
    }
}

fn too_large(limit: u64) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over API.MaxUploadBytes ({limit} bytes); raise it with `cairn config`"),
    )
}

/// The most of a refused request's body read before the answer ([`refuse_after_body`]).
const DRAIN_MAX: usize = 1 << 20;

/// `refusal`, once what is left of a multipart upload (the rest of `field`, then of the other
/// parts; up to [`DRAIN_MAX`] bytes, each read within 5 s) is read: a refusal found in the
/// middle of a part (a block over its size limit) then reaches a client still sending.
pub(super) async fn refuse_after_parts(
    field: &mut multer::Field<'static>,
    parts: &mut multer::Multipart<'static>,
    refusal: HttpError,
) -> HttpError {
    let mut read = drain_field(field, 0).await;
    while read < DRAIN_MAX {
        let wait = std::time::Duration::from_secs(5);
        let Ok(Ok(Some(mut next))) = tokio::time::timeout(wait, parts.next_field()).await else { break };
        read = drain_field(&mut next, read).await;
    }
    refusal
}

/// Reads and drops the rest of `field` until [`DRAIN_MAX`] bytes are read in all (`read`
/// so far), each chunk within 5 s; the new total.
async fn drain_field(field: &mut multer::Field<'static>, mut read: usize) -> usize {
    while read < DRAIN_MAX {
        match tokio::time::timeout(std::time::Duration::from_secs(5), field.chunk()).await {
            Ok(Ok(Some(chunk))) => read += chunk.len(),
            _ => break,
        }
    }
    read
}

/// `refusal`, once what is left of `req`'s body (up to [`DRAIN_MAX`] bytes, each read within
/// a few seconds) is read and dropped: a connection closed with bytes unread is reset, and a
/// client still sending its body would see the reset instead of the answer, as Kubo's
/// clients never do for a small upload.
pub(super) async fn refuse_after_body(req: Request<hyper::body::Incoming>, refusal: HttpError) -> HttpError {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut read = 0;
    while read < DRAIN_MAX {
        match tokio::time::timeout(std::time::Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
    refusal
}

/// Copies one field's chunks into `tx` until the field ends or the reader goes away. A body
/// that breaks is told to the reader as well as returned.
pub(super) async fn feed_field(
    field: &mut multer::Field<'static>,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<(), HttpError> {
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(()); // the importer stopped reading: its answer says why
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                let answer = body_error(&e);
                let _ = tx.send(Err(Arc::new(e))).await;
                return Err(answer);
            }
        }
    }
}

/// A field's whole body, refused past `max` bytes.
async fn small_field(field: &mut multer::Field<'static>, max: usize, what: &str) -> Result<Bytes, HttpError> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| body_error(&e))? {
        if out.len() + chunk.len() > max {
            return Err(HttpError::bad(format!("{what}: over {max} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

impl Api {
    /// The request's multipart body, with the upload limits applied: a declared length over
    /// the limit is refused before a byte is read.
    pub(super) fn multipart(
        &self,
        req: Request<hyper::body::Incoming>,
        command: &str,
    ) -> Result<multer::Multipart<'static>, HttpError> {
        let boundary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| multer::parse_boundary(v).ok())
            .ok_or_else(|| HttpError::bad(format!("{command} takes a multipart/form-data body")))?;
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.bytes) {
            return Err(too_large(self.limits.bytes));
        }
        let constraints =
            multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(self.limits.bytes));
        let stream = http_body_util::BodyExt::into_data_stream(req.into_body());
        Ok(multer::Multipart::with_constraints(stream, boundary, constraints))
    }

    /// `add`: each part is imported as it arrives; the answer lists every entry as
    /// `ipfs add` does (files as they are added, then directories, roots last).
    pub(super) async fn add(&self, req: Request<hyper::body::Incoming>, p: &Params) -> Answer {
        let config = self.node.repo().settings().map_err(HttpError::internal)?.import.clone();
        let opts = add_options(p, &config)?;
        let pin = p.flag("pin", true)?;
        let wrap = p.flag("wrap-with-directory", false)?;
        let mut parts = self.multipart(req, "add")?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<UploadPart<ChunkReader>>(1);
        let node = self.node.clone();
        let limits = UploadLimits { max_entries: self.limits.entries };
        let worker = tokio::task::spawn_blocking(move || {
            let mut added = Vec::new();
            let incoming = std::iter::from_fn(|| rx.blocking_recv());
            let roots =
                node.add_upload(incoming, &opts, limits, pin, wrap, &mut |a| added.push((a.path.clone(), a.cid)))?;
            // Sizes as Kubo reports them, read once the blocks are in the store.
            let lines: Vec<_> = added
                .into_iter()
                .map(|(name, cid)| json!({"Name": name, "Hash": cid.to_string(), "Size": tsize(&node, &cid).to_string()}))
                .collect();
            Ok::<_, NodeError>((lines, roots))
        });
        let fed = async {
            while let Some(mut field) = parts.next_field().await.map_err(|e| body_error(&e))? {
                let raw = field.file_name().unwrap_or("").to_owned();
                let name = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy().into_owned();
                let kind = field.content_type().map(|m| m.essence_str().to_owned()).unwrap_or_default();
                let (part, feed) = match kind.as_str() {
                    "application/x-directory" => (UploadPart::Dir(name), None),
                    "application/symlink" => {
                        let target = small_field(&mut field, MAX_SYMLINK_TARGET, &format!("symlink {name:?}")).await?;
                        let target = String::from_utf8(target.to_vec())
                            .map_err(|_| HttpError::bad(format!("symlink {name:?}: target is not UTF-8")))?;
                        (UploadPart::Symlink(name, target), None)
                    }
                    _ => {
                        let (chunks, reader) = ChunkReader::channel();
                        (UploadPart::File(name, reader), Some(chunks))
                    }
                };
                if tx.send(part).await.is_err() {
                    return Ok(()); // the importer stopped: its answer says why
                }
                if let Some(chunks) = feed {
                    feed_field(&mut field, &chunks).await?;
                }
            }
            Ok::<(), HttpError>(())
        }
        .await;
        drop(tx);
        let imported = worker.await.map_err(|e| HttpError::internal(format!("task failed: {e}")))?;
        // The client's own fault first: an importer cut off mid-file says only that.
        fed?;
        let (lines, roots) = imported.map_err(|e| match e {
            NodeError::Upload(u) if !u.is_store_failure() => HttpError::bad(u),
            NodeError::Upload(UploadError::Import { path, source }) => HttpError::internal(format!("{path}: {source}")),
            e => HttpError::internal(e),
        })?;
        if pin {
            let announced: Vec<_> = roots.iter().map(|r| (r.cid, r.size)).collect();
            self.announce(&announced).await;
        }
        Ok(ndjson(&lines))
    }
}
