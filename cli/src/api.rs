//! Talking to a running daemon through its RPC API.
//!
//! While `cairn daemon` runs it holds the repo's lock and writes its API address to
//! `$repo/api`; commands that can go through the API (`add`, `cat`, `pin`, `id`, `swarm`,
//! `routing`) then send their request there instead of opening the repo, as Kubo's commands
//! do. The requests are Kubo's: `POST /api/v0/<command>?arg=...`, multipart bodies for `add`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use cairn_node::add::{Ancestors, Symlinks};
use futures::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::Ctx;

type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A connection to the daemon's API.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    /// The `Authorization` header value, when the API wants a secret.
    auth: Option<String>,
}

/// The daemon's API, if one is running for this repo.
pub fn client(ctx: &Ctx) -> anyhow::Result<Option<Client>> {
    let Ok(text) = std::fs::read_to_string(ctx.repo.join("api")) else { return Ok(None) };
    let addr = cairn_node::config::tcp_socket_addr(text.trim()).context("$repo/api")?;
    // A stale file from a daemon that died: nobody answers.
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(Some(Client { addr, rt, auth: secret(ctx).map(|s| header_value(&s)) }))
}

/// The secret to send: `$CAIRN_API_AUTH` (`bearer:<token>` or `basic:<user>:<password>`), else
/// the first of the repo config's `API.Authorizations` (whoever can read the repo holds them).
fn secret(ctx: &Ctx) -> Option<String> {
    if let Ok(s) = std::env::var("CAIRN_API_AUTH") {
        return Some(s);
    }
    let text = std::fs::read_to_string(ctx.repo.join("config")).ok()?;
    let cfg = cairn_node::Config::from_json(&text).ok()?;
    cfg.api.authorizations.values().next().map(|a| a.auth_secret.clone())
}

fn header_value(secret: &str) -> String {
    match secret.split_once(':') {
        Some(("basic", pair)) => format!("Basic {}", data_encoding::BASE64.encode(pair.as_bytes())),
        Some(("bearer", token)) => format!("Bearer {token}"),
        _ => format!("Bearer {secret}"),
    }
}

/// The daemon's API, or an error saying that the command needs one.
pub fn require(ctx: &Ctx) -> anyhow::Result<Client> {
    client(ctx)?.ok_or_else(|| anyhow!("this command must be run in online mode: start `cairn daemon` first"))
}

/// A text field of an answer, `""` when absent.
pub fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A count field of an answer, 0 when absent.
pub fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `arg=...` query parameters.
pub fn query(args: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(args).finish()
}

impl Client {
    /// Posts `command` with `query`, and hands each chunk of the answer to `on_chunk`.
    fn post(
        &self,
        command: &str,
        query: &str,
        body: ReqBody,
        content_type: Option<String>,
        on_chunk: &mut dyn FnMut(&[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.rt.block_on(async {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("cannot reach the daemon's API at {}", self.addr))?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut req = hyper::Request::post(format!("/api/v0/{command}?{query}"))
                .header(hyper::header::HOST, self.addr.to_string());
            if let Some(ct) = content_type {
                req = req.header(hyper::header::CONTENT_TYPE, ct);
            }
            if let Some(a) = &self.auth {
                req = req.header(hyper::header::AUTHORIZATION, a);
            }
            let resp = send.send_request(req.body(body)?).await.context("the daemon's API")?;
            let status = resp.status();
            let mut body = resp.into_body();
            if !status.is_success() {
                let bytes = body.collect().await?.to_bytes();
                let msg = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("Message").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
                bail!("{msg}");
            }
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.context("the daemon's answer was cut off")?.into_data() {
                    on_chunk(&data)?;
                }
            }
            Ok(())
        })
    }

    /// Posts a command without a body and parses the JSON answer.
    pub fn json(&self, command: &str, query: &str) -> anyhow::Result<Value> {
        let mut buf = Vec::new();
        self.post(command, query, empty(), None, &mut |c| {
            buf.extend_from_slice(c);
            Ok(())
        })?;
        serde_json::from_slice(&buf).with_context(|| format!("the daemon's answer to {command} is not JSON"))
    }

    /// Posts a command whose answer is newline-delimited JSON; `on_line` gets each value.
    pub fn lines(
        &self,
        command: &str,
        query: &str,
        body: Option<(ReqBody, String)>,
        on_line: &mut dyn FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut pending = Vec::new();
        let (body, ct) = body.map_or((empty(), None), |(b, ct)| (b, Some(ct)));
        self.post(command, query, body, ct, &mut |c| {
            pending.extend_from_slice(c);
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                on_line(serde_json::from_slice(&line).context("a line of the daemon's answer is not JSON")?)?;
            }
            Ok(())
        })
    }

    /// Posts a command and streams its raw answer into `out`.
    pub fn stream(&self, command: &str, query: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
        self.post(command, query, empty(), None, &mut |c| Ok(out.write_all(c)?))
    }
}

fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// One part of an `add` upload.
#[derive(Debug)]
pub enum Part {
    /// A file's bytes, read from `path`.
    File { name: String, path: PathBuf },
    /// A directory.
    Dir { name: String },
    /// A symbolic link and its target.
    Symlink { name: String, target: String },
    /// Standard input, as a file without a name (the daemon names it by its CID).
    Stdin,
    /// Bytes held in memory, as a file without a name (a block for `block/put`).
    Bytes(Vec<u8>),
    /// A file's bytes, as a file without a name (a CAR for `dag/import`).
    Unnamed(PathBuf),
}

/// The parts for adding the argument `path`, walking directories when `recursive`; names
/// starting with a dot are left out below it unless `hidden`; symlinks are followed as
/// `symlinks` says. Returns the name the argument is added under.
pub fn parts(
    path: &Path,
    recursive: bool,
    hidden: bool,
    symlinks: Symlinks,
    out: &mut Vec<Part>,
) -> anyhow::Result<String> {
    let (path, name, meta) = cairn_node::add::argument(path, symlinks)?;
    if meta.is_dir() && !recursive {
        bail!("{} is a directory, use the '-r' flag to specify directories", path.display());
    }
    walk_parts(&path, &name, &meta, hidden, symlinks, &mut Ancestors::default(), out)?;
    Ok(name)
}

fn walk_parts(
    path: &Path,
    name: &str,
    meta: &std::fs::Metadata,
    hidden: bool,
    symlinks: Symlinks,
    ancestors: &mut Ancestors,
    out: &mut Vec<Part>,
) -> anyhow::Result<()> {
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?.to_string_lossy().into_owned();
        out.push(Part::Symlink { name: name.to_owned(), target });
    } else if meta.is_dir() {
        ancestors.enter(path, meta)?;
        out.push(Part::Dir { name: name.to_owned() });
        let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let child = e.file_name().to_string_lossy().into_owned();
            if child.starts_with('.') && !hidden {
                continue;
            }
            let meta = cairn_node::add::entry_metadata(&e.path(), symlinks)?;
            walk_parts(&e.path(), &format!("{name}/{child}"), &meta, hidden, symlinks, ancestors, out)?;
        }
        ancestors.leave();
    } else {
        out.push(Part::File { name: name.to_owned(), path: path.to_owned() });
    }
    Ok(())
}

/// A multipart body streaming `parts` (files are read as the request goes), and its content
/// type.
pub fn multipart(parts: Vec<Part>) -> (ReqBody, String) {
    let boundary = format!("cairn-{:016x}", rand_u64());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let enc = |n: &str| percent_encoding::utf8_percent_encode(n, percent_encoding::NON_ALPHANUMERIC).to_string();
    let b2 = boundary.clone();
    let stream = futures::stream::iter(parts)
        .then(move |part| {
            let boundary = boundary.clone();
            async move {
                let (name, kind) = match &part {
                    Part::File { name, .. } => (name.as_str(), "application/octet-stream"),
                    Part::Dir { name } => (name.as_str(), "application/x-directory"),
                    Part::Symlink { name, .. } => (name.as_str(), "application/symlink"),
                    Part::Stdin | Part::Bytes(_) | Part::Unnamed(_) => ("", "application/octet-stream"),
                };
                let head = format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\nContent-Type: {kind}\r\n\r\n",
                    enc(name)
                );
                let head = futures::stream::once(async move { Ok(Bytes::from(head)) });
                let content: futures::stream::BoxStream<'static, std::io::Result<Bytes>> = match part {
                    Part::File { path, .. } | Part::Unnamed(path) => file_chunks(path).boxed(),
                    Part::Bytes(data) => futures::stream::once(async move { Ok(Bytes::from(data)) }).boxed(),
                    Part::Symlink { target, .. } => futures::stream::once(async move { Ok(Bytes::from(target)) }).boxed(),
                    Part::Dir { .. } => futures::stream::empty().boxed(),
                    Part::Stdin => stdin_chunks().boxed(),
                };
                head.chain(content).chain(futures::stream::once(async { Ok(Bytes::from_static(b"\r\n")) }))
            }
        })
        .flatten()
        .chain(futures::stream::once(async move { Ok(Bytes::from(format!("--{b2}--\r\n"))) }));
    (BodyExt::boxed_unsync(StreamBody::new(stream.map(|r| r.map(Frame::data)))), ct)
}

/// Standard input in chunks of up to 256 KiB, read on a thread of its own.
fn stdin_chunks() -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut input = std::io::stdin().lock();
        loop {
            let mut buf = vec![0u8; 256 << 10];
            match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// A file's bytes in chunks of 256 KiB.
fn file_chunks(path: PathBuf) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::unfold(Some((path, None::<tokio::fs::File>)), |state| async move {
        let (path, file) = state?;
        let mut file = match file {
            Some(f) => f,
            None => match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(e) => return Some((Err(e), None)),
            },
        };
        let mut buf = vec![0u8; 256 << 10];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((path, Some(file)))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// A boundary that will not occur in the data by chance.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}
