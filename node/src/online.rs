//! Bringing a node online: the one place where a [`Network`] is started for a [`Node`].
//!
//! The network serves and stores through the node's store ([`NodeStore`]), under the node's
//! key; a node that should also read through it (a missing block fetched from peers rather
//! than refused) gets a [`NetFetcher`] attached. The daemon, the RPC API's tests, the
//! benchmarks and the tests all start networks through here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::net::{self, NetConfig, NetError, NetFetcher, Network, NodeStore};
use crate::node::Node;

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
            return Err(NetError::Config("this node already reads through a network".into()));
        }
        let (network, task) = start(&node, cfg).await?;
        node.attach_fetcher(Arc::new(NetFetcher::new(network.clone(), timeout)));
        Ok((network, task))
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
        assert!(matches!(again, Err(NetError::Config(_))), "{again:?}");
        serving.shutdown().await;
        reading.shutdown().await;
    }
}
