//! Bringing a node online: the one place where a [`Network`] is started for a [`Node`].
//!
//! The network serves and stores through the node's store ([`NodeStore`]), under the node's
//! key; a node that should also read through it (a missing block fetched from peers rather
//! than refused) gets a [`NetFetcher`] attached. Both adapters live here, so that `net`
//! knows nothing of the node: it reads and writes a [`BlockStore`], and the node reads
//! through a [`BlockFetcher`]. The daemon, the RPC API's tests, the
//! benchmarks and the tests all start networks through here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_merkle::{Block, Cid};

use crate::net::{self, NetConfig, NetError, Network};
use crate::node::{BlockFetcher, Node};
use crate::store::BlockStore;

/// A node's running network and the task that drives it.
pub type Started = (Network, tokio::task::JoinHandle<()>);

/// Starts `node`'s network with `cfg`. Peers are served from the node's store and blocks
/// fetched for them are stored in it; the node's own reads do not go through the network
/// (see [`start_reading`]). The future holds no borrow of `node`.
pub fn start(node: &Arc<Node>, cfg: NetConfig) -> impl Future<Output = Result<Started, NetError>> + Send + 'static {
    net::spawn(node.repo().keypair().clone(), Arc::new(NodeStore(node.clone())), cfg)
}

/// [`start`], and `node`'s reads fetch a block the store lacks through the network, waiting
/// up to `timeout` for each (`Gateway.RetrievalTimeout`). A node reads through one network:
/// one that already does is refused before a second network is started.
pub fn start_reading(
    node: &Arc<Node>,
    cfg: NetConfig,
    timeout: Duration,
) -> impl Future<Output = Result<Started, NetError>> + Send + 'static {
    let node = node.clone();
    async move {
        if node.has_fetcher() {
            return Err(NetError::AlreadyOnline);
        }
        let (network, task) = start(&node, cfg).await?;
        node.attach_fetcher(Arc::new(NetFetcher::new(network.clone(), timeout)));
        Ok((network, task))
    }
}

/// A node's block store, shared with the network task.
#[derive(Debug, Clone)]
pub struct NodeStore(pub Arc<Node>);

impl BlockStore for NodeStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, crate::store::StoreError> {
        self.0.repo().store().get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, crate::store::StoreError> {
        self.0.repo().store().has(cid)
    }
    fn size(&self, cid: &Cid) -> Result<Option<u64>, crate::store::StoreError> {
        self.0.repo().store().size(cid)
    }
    fn put_many(&self, blocks: &[Block]) -> Result<Vec<crate::store::Put>, crate::store::StoreError> {
        self.0.repo().store().put_many(blocks)
    }
    fn delete_keys(&self, keys: &[Vec<u8>]) -> Result<u64, crate::store::StoreError> {
        self.0.repo().store().delete_keys(keys)
    }
    fn keys(&self) -> Box<dyn Iterator<Item = Result<Vec<u8>, crate::store::StoreError>> + '_> {
        self.0.repo().store().keys()
    }
    fn blocks(&self) -> crate::store::BlockIter<'_> {
        self.0.repo().store().blocks()
    }
    fn stats(&self) -> Result<crate::store::StoreStats, crate::store::StoreError> {
        self.0.repo().store().stats()
    }
    fn sync(&self) -> Result<(), crate::store::StoreError> {
        self.0.repo().store().sync()
    }
}

/// Fetches blocks from the network for a node's reads ([`BlockFetcher`]): what
/// `cat`, `get` and the gateway read through while the daemon runs. Blocks are verified and
/// stored before they are returned. A file read hints the blocks it will read next
/// ([`cairn_merkle::BlockSource::prefetch`]), and those are fetched in the background, so a
/// reader has up to [`cairn_merkle::exporter::READ_AHEAD`] blocks in flight at once. A block
/// not found in time is [`SourceError::Other`], so that the gateway answers 504 for it. Call
/// it from blocking threads, not from the runtime.
///
/// [`SourceError::Other`]: cairn_merkle::source::SourceError::Other
#[derive(Debug, Clone)]
pub struct NetFetcher {
    net: Network,
    timeout: Duration,
}

impl NetFetcher {
    /// Fetches through `net`, waiting up to `timeout` per block.
    pub fn new(net: Network, timeout: Duration) -> NetFetcher {
        NetFetcher { net, timeout }
    }
}

impl BlockFetcher for NetFetcher {
    fn fetch(&self, cid: &Cid) -> Result<Bytes, cairn_merkle::source::SourceError> {
        self.net.fetch_blocking(*cid, self.timeout).map_err(|e| cairn_merkle::source::SourceError::Other(Box::new(e)))
    }

    fn reading(&self, file: &Cid, from: u64, to: u64) {
        self.net.fetch_range(*file, from, to);
    }

    fn fetch_async(
        &self,
        cid: Cid,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Bytes, cairn_merkle::source::SourceError>> + Send + '_>,
    > {
        Box::pin(async move {
            self.net.fetch(cid, self.timeout).await.map_err(|e| cairn_merkle::source::SourceError::Other(Box::new(e)))
        })
    }

    /// The want goes out now, to peers only; the reader's own fetch, when it comes, waits on
    /// the same want and brings in the origin if the peers are slow.
    fn prefetch(&self, cid: &Cid) {
        self.net.fetch_ahead_detached(*cid, self.timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    fn listen() -> NetConfig {
        NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
    }

    /// A node reads through the network it was started reading with; a second is refused
    /// before it starts, and a network started without reading leaves the node's reads alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_reads_through_one_network() {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(Node::init(&dir.path().join("repo"), Profile::Test).unwrap());
        let (serving, _) = start(&node, listen()).await.unwrap();
        assert!(!node.has_fetcher(), "a serving network does not take the node's reads");
        let (reading, _) = start_reading(&node, listen(), Duration::from_secs(5)).await.unwrap();
        assert!(node.has_fetcher());
        let again = start_reading(&node, listen(), Duration::from_secs(5)).await;
        assert!(matches!(again, Err(NetError::AlreadyOnline)), "{again:?}");
        serving.shutdown().await;
        reading.shutdown().await;
    }
}
