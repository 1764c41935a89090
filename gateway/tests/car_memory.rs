//! A CAR response's memory does not grow with the DAG: its own test binary, so that the
//! counting allocator sees this test alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The system allocator, counting the bytes live now and the most live since a reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)] // a global allocator is an unsafe trait; this one only counts
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[path = "it/noise.rs"]
mod noise;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_car_of_a_large_dag_streams_in_bounded_memory() {
    const FILE: usize = 128 << 20;
    const BOUND: usize = 32 << 20;
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::init(&dir.path().join("repo"), Profile::Test).unwrap());
    let cid = {
        let data = noise::pseudo_random(FILE, 5);
        node.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, _task) = cairn_gateway::spawn(
        "127.0.0.1:0".parse().unwrap(),
        node.clone(),
        cairn_gateway::GatewayConfig::default(),
        async {
            let _ = rx.await;
        },
    )
    .await
    .unwrap();
    for scope in ["all", "entity"] {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET /ipfs/{cid}?format=car&dag-scope={scope} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0usize;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total > FILE, "{scope}: the CAR is cut short: {total} bytes");
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        assert!(grew < BOUND, "{scope}: a CAR of {} MiB grew the heap by {} MiB", FILE >> 20, grew >> 20);
    }
    let _ = tx.send(());
}
