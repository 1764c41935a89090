//! Reading content: `cat` and `get` (tar), and the reads every command makes, which wait
//! for missing blocks on the runtime, holding no thread ([`crate::wait`]).

use std::sync::Arc;

use cairn_node::merkle::exporter::{self, Stat};
use cairn_node::merkle::Cid;
use cairn_node::{IpfsPath, Node};
use hyper::header::{self, HeaderValue};
use hyper::Response;

use super::{parse_path, Answer, Api, HttpError, Params};

impl Api {
    /// Runs a read on the blocking pool through [`Node::reader_nowait`], waiting for missing
    /// blocks on the runtime between its runs ([`crate::wait::until_local`]).
    pub(super) async fn read<T: Send + 'static>(
        &self,
        job: impl FnMut(&Node) -> Result<T, HttpError> + Send + 'static,
    ) -> Result<T, HttpError> {
        crate::wait::until_local(&self.node, job).await
    }

    /// What `path` names, and its stat, read without holding a thread while blocks arrive.
    pub(super) async fn resolve_stat(&self, path: IpfsPath) -> Result<(Cid, Stat), HttpError> {
        self.read(move |node| {
            let reader = node.reader_nowait();
            let cid = reader.resolve(&path).map_err(HttpError::node)?;
            let stat = exporter::stat(reader.source(), &cid).map_err(|e| HttpError::node(e.into()))?;
            Ok((cid, stat))
        })
        .await
    }

    /// How a streamed answer over the whole DAG under `root` waits for blocks: at its first
    /// stop, all that is missing of the DAG is fetched at once, many blocks in flight (as
    /// `pin/add` does); at a later stop (a block the collector took since), the one block.
    pub(super) fn dag_fetch(&self, root: Cid) -> impl FnMut(Cid) -> crate::wait::Fetch<HttpError> + Send + 'static {
        let mut one = crate::wait::one_block(&self.node);
        let timeout = self.node.repo().settings().ok().map(|s| s.retrieval_timeout);
        let store: cairn_node::net::SharedStore = Arc::new(cairn_node::online::NodeStore(self.node.clone()));
        let mut whole = self.net.clone().zip(timeout).map(|(net, timeout)| (net, store, timeout));
        move |cid| match whole.take() {
            Some((net, store, timeout)) => Box::pin(async move {
                let fetched = net.fetch_dag(&store, root, cairn_node::net::session::Order::File, 32, timeout).await;
                fetched.map(|_| ()).map_err(HttpError::internal)
            }),
            None => one(cid),
        }
    }

    /// `cat`: the file's bytes, streamed. After a stop at a block being fetched, or for a
    /// slow client, the read goes on from the byte it stopped at.
    pub(super) async fn cat(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let offset = p.number("offset")?.unwrap_or(0);
        let length = p.number("length")?;
        // Errors found before the first byte get a proper error answer; a failure later can
        // only cut the stream.
        let (cid, stat) = self.resolve_stat(path).await?;
        if stat.kind.is_dir() {
            return Err(HttpError::internal("this dag node is a directory"));
        }
        let mut sent = 0u64;
        let one = crate::wait::one_block::<HttpError>(&self.node);
        let body = crate::wait::streamed(&self.node, None, "cat", one, move |node, tx| {
            let left = length.map(|l| l.saturating_sub(sent));
            let source = crate::wait::Paced::new(*node.reader_nowait().source(), tx);
            let segments = exporter::FileSegments::new(&source, &cid, offset + sent, left);
            for seg in segments.map_err(|e| HttpError::node(e.into()))? {
                let seg = seg.map_err(|e| HttpError::node(e.into()))?;
                let n = seg.len() as u64;
                tx.send(seg).map_err(HttpError::internal)?;
                sent += n;
            }
            Ok(())
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r.headers_mut().insert("X-Stream-Output", HeaderValue::from_static("1"));
        Ok(r)
    }

    /// The file or tree at `arg` as a tar stream, its top entry named after the path's last
    /// component (or the CID); `X-Content-Length` tells the file bytes to come, when known.
    /// A tar stopped at a block being fetched goes on from where it stopped once the DAG's
    /// missing blocks are in; one whose client is slower than it stops between blocks,
    /// letting its thread go, and goes on the same way.
    pub(super) async fn get(&self, p: &Params) -> Answer {
        let path = parse_path(p.arg()?)?;
        let name = path.rest.rsplit('/').find(|c| !c.is_empty()).map_or_else(|| path.root.to_string(), str::to_owned);
        let (cid, stat) = self.resolve_stat(path).await?;
        let mut at = cairn_node::read::Tar::new(&cid, &name);
        let body = crate::wait::streamed(&self.node, None, "get", self.dag_fetch(cid), move |node, tx| {
            let source = crate::wait::Paced::new(*node.reader_nowait().source(), tx);
            cairn_node::read::write_tar(&source, &mut at, &mut tx.writer(), &mut |_| {}).map_err(HttpError::node)
        });
        let mut r = Response::new(body);
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
        r.headers_mut().insert("X-Stream-Output", HeaderValue::from_static("1"));
        if !stat.kind.is_dir() {
            r.headers_mut().insert("X-Content-Length", HeaderValue::from(stat.size));
        }
        Ok(r)
    }
}
