//! Garbage collection on its own (`cairn daemon --enable-gc`): every `Datastore.GCPeriod`,
//! when the store holds more than `StorageGCWatermark` percent of `StorageMax`, a collection
//! runs ([`Node::gc`], beside adds, pins and reads).

use std::sync::Arc;

use crate::node::Node;

/// Collects garbage every `period` while the store holds more than `at` block bytes.
pub async fn run(node: Arc<Node>, period: std::time::Duration, at: u64) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let node = node.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let held = node.stat()?.store.bytes;
            if held < at {
                return Ok(None);
            }
            node.gc().map(|r| Some((held, r)))
        })
        .await;
        match ran {
            Ok(Ok(Some((held, r)))) => tracing::info!(
                held,
                removed_blocks = r.removed_blocks,
                removed_bytes = r.removed_bytes,
                holes = r.holes.len(),
                "automatic garbage collection"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "automatic garbage collection failed"),
            Err(e) => tracing::warn!(error = %e, "automatic garbage collection task failed"),
        }
    }
}
