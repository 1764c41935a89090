//! Reads that wait for missing blocks holding no thread.
//!
//! The node's store is synchronous, so reads run on the blocking pool. A read goes through
//! [`Node::source_nowait`]: where the store lacks a block it stops at once with
//! [`SourceError::Pending`], instead of parking its thread for as long as the fetch takes.
//! [`until_local`] then awaits the block on the runtime and runs the read again, which goes
//! on from where it stopped (or starts over, as each reader's docs say). The gateway and the
//! RPC API both read this way, so a thousand requests for blocks nobody has hold no thread
//! and local content is still served at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cairn_node::merkle::{BlockSource, Cid, SourceError};
use cairn_node::{BlockStore, Node};

use crate::body::{Body, ChunkSender};

/// An error type whose values can say that a read stopped at a block being fetched.
pub(crate) trait Stop: Send + 'static {
    /// The block the read stopped at to be fetched, if that is why it stopped.
    fn pending(&self) -> Option<Cid>;
    /// The block could not be fetched.
    fn unfetched(e: SourceError) -> Self;
    /// The blocking task was lost (it panicked).
    fn lost(why: String) -> Self;
}

/// The wait for one block a read stopped at.
pub(crate) type Fetch<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

/// Runs `job` on a blocking thread until it ends other than at a block being fetched: each
/// time it stops at one, the block is awaited here, on the runtime, holding no thread, and
/// `job` runs again.
pub(crate) async fn until_local<T: Send + 'static, E: Stop>(
    node: &Arc<Node>,
    job: impl FnMut(&Node) -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    until_fetched(node, None, one_block(node), job).await
}

/// Fetches the one block asked for (through [`Node::ensure_local`]).
pub(crate) fn one_block<E: Stop>(node: &Arc<Node>) -> impl FnMut(Cid) -> Fetch<E> + Send + 'static {
    let node = node.clone();
    move |cid| {
        let node = node.clone();
        Box::pin(async move { node.ensure_local(&cid).await.map_err(E::unfetched) })
    }
}

/// [`until_local`] with `fetch` to bring in the block a read stopped at: a reader of a
/// whole DAG can fetch all that is missing of it at the first stop, many blocks in flight.
///
/// A producer of a streamed body (`sender`) may also stop because its client is slow
/// ([`Paced`]): the chunks set aside are then handed to the client here, on the runtime,
/// before the producer runs again, and once more after it ends.
pub(crate) async fn until_fetched<T: Send + 'static, E: Stop>(
    node: &Arc<Node>,
    sender: Option<&ChunkSender>,
    mut fetch: impl FnMut(Cid) -> Fetch<E>,
    mut job: impl FnMut(&Node) -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    let drain = |tx: &ChunkSender| {
        let tx = tx.clone();
        async move { tx.drain().await.map_err(|e| E::lost(format!("the client: {e}"))) }
    };
    loop {
        let n = node.clone();
        let (j, done) = tokio::task::spawn_blocking(move || {
            let done = job(&n);
            (job, done)
        })
        .await
        .map_err(|e| E::lost(format!("read task failed: {e}")))?;
        job = j;
        match done {
            Err(e) => {
                let Some(cid) = e.pending() else { return Err(e) };
                let paused = sender.filter(|tx| tx.paused());
                if let Some(tx) = paused {
                    drain(tx).await?;
                }
                // Stopped for the client only (the block is here): go on at once.
                if paused.is_none() || !node.repo().store().has(&cid).unwrap_or(false) {
                    fetch(cid).await?;
                }
            }
            done => {
                if let Some(tx) = sender {
                    drain(tx).await?;
                }
                return done;
            }
        }
    }
}

/// A source that stops a read, as at a block to be fetched ([`SourceError::Pending`]), when
/// the body it feeds has chunks set aside for a slow client ([`ChunkSender::paused`]): the
/// producer lets its thread go between blocks, and [`until_fetched`] hands the chunks over
/// and runs it again. For readers that go on from where they stopped (a file's bytes, a
/// DAG walk, a listing). A producer that reads no block between what it sends (a listing of
/// a plain directory, whose entries are all in one block) checks
/// [`ChunkSender::paused`] itself and stops the same way, as at a block it holds.
pub(crate) struct Paced<'a, S> {
    inner: S,
    sender: &'a ChunkSender,
}

impl<'a, S: BlockSource> Paced<'a, S> {
    /// Reads from `inner`, pausing for `sender`'s client.
    pub(crate) fn new(inner: S, sender: &'a ChunkSender) -> Self {
        Paced { inner, sender }
    }
}

impl<S: BlockSource> BlockSource for Paced<'_, S> {
    fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
        if self.sender.paused() {
            return Err(SourceError::Pending(*cid));
        }
        self.inner.get(cid)
    }

    fn prefetch(&self, cid: &Cid) {
        self.inner.prefetch(cid);
    }

    fn reading(&self, file: &Cid, from: u64, to: u64, first: &Cid) {
        self.inner.reading(file, from, to, first);
    }
}

/// A streamed body that `produce` writes on the blocking pool, reading through
/// [`Node::source_nowait`] and waiting for blocks with `fetch` between its runs (see
/// [`until_fetched`]). A failure cuts the body short, so the client sees a truncated
/// transfer rather than a short body that looks complete.
pub(crate) fn streamed<E: Stop + std::fmt::Display>(
    node: &Arc<Node>,
    len: Option<u64>,
    what: &'static str,
    fetch: impl FnMut(Cid) -> Fetch<E> + Send + 'static,
    mut produce: impl FnMut(&Node, &ChunkSender) -> Result<(), E> + Send + 'static,
) -> Body {
    let (tx, body) = crate::body::channel(len);
    let (node, sender) = (node.clone(), tx.clone());
    tokio::spawn(async move {
        if let Err(e) = until_fetched(&node, Some(&tx), fetch, move |n| produce(n, &sender)).await {
            tracing::debug!(error = %e, "{what} cut short");
            tx.fail_async(std::io::Error::other(e.to_string())).await;
        }
    });
    body
}
