//! Hostile peers over real libp2p connections: malformed and oversized Bitswap messages, a
//! wantlist flood, a peer that never reads (Bitswap replies, or DHT announcements), and a
//! storm of half-open connections. Each time
//! an honest peer is still served, and what the node holds for the hostile one stays bounded.
//!
//! The hostile peer is a bare libp2p swarm that opens Bitswap streams and writes whatever the
//! test says (`libp2p-stream`), and accepts Cairn's streams to read them or not. The same bare
//! peer, speaking only Bitswap 1.0.0 or 1.1.0, shows that Cairn serves and fetches in those
//! versions' wire formats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_merkle::exporter;
use cairn_node::add::AddOptions;
use cairn_node::config::Profile;
use cairn_node::net::bitswap::{self, Message, Version, Want, WantType};
use cairn_node::net::{self, NetConfig, Network};
use cairn_node::Node;
use futures::{AsyncWriteExt as _, StreamExt as _};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

const BITSWAP: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

async fn start(node: &Arc<Node>, cfg: NetConfig) -> Network {
    cairn_node::online::start(node, cfg).await.unwrap().0
}

/// Starts `node`'s network on loopback, its reads fetching through it.
async fn reading(node: &Arc<Node>) -> Network {
    cairn_node::online::start_reading(node, listen(), Duration::from_secs(30)).await.unwrap().0
}

fn listen() -> NetConfig {
    NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
}

/// What the hostile peer does with the streams Cairn opens to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// Reads and discards them.
    Drain,
    /// Accepts them and never reads.
    Ignore,
    /// Hands them to the test ([`Hostile::next_stream`]).
    Hand,
}

/// A bare swarm that speaks raw Bitswap streams.
struct Hostile {
    control: libp2p_stream::Control,
    id: PeerId,
    /// Asks the swarm to dial an address again (same identity).
    dial: tokio::sync::mpsc::UnboundedSender<Multiaddr>,
    /// Cairn's streams, with [`Inbound::Hand`].
    handed: tokio::sync::mpsc::UnboundedReceiver<libp2p::Stream>,
}

impl Hostile {
    async fn connect(target: &Multiaddr, inbound: Inbound) -> Hostile {
        Hostile::connect_accepting(target, inbound, BITSWAP).await
    }

    /// [`Hostile::connect`], taking Cairn's streams of `protocol` instead of Bitswap's.
    async fn connect_accepting(target: &Multiaddr, inbound: Inbound, protocol: StreamProtocol) -> Hostile {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(libp2p::tcp::Config::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let id = *swarm.local_peer_id();
        let mut control = swarm.behaviour().new_control();
        let mut incoming = control.accept(protocol).unwrap();
        let (hand, handed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some((_, mut stream)) = incoming.next().await {
                match inbound {
                    Inbound::Hand => {
                        let _ = hand.send(stream);
                    }
                    Inbound::Drain => {
                        tokio::spawn(async move {
                            let _ = futures::io::copy(&mut stream, &mut futures::io::sink()).await;
                        });
                    }
                    Inbound::Ignore => held.push(stream),
                }
            }
        });
        swarm.dial(target.clone()).unwrap();
        let (dial, mut dials) = tokio::sync::mpsc::unbounded_channel::<Multiaddr>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = swarm.select_next_some() => {}
                    Some(addr) = dials.recv() => {
                        let _ = swarm.dial(addr);
                    }
                }
            }
        });
        let peer = match target.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
            _ => panic!("address without /p2p"),
        };
        Hostile { control, id, dial, handed }.wait_for(peer).await
    }

    /// Dials `target` again and reports whether a Bitswap stream opens within `within`.
    async fn comes_back(&mut self, target: &Multiaddr, within: Duration) -> bool {
        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = target.iter().last() else { panic!("address without /p2p") };
        let started = Instant::now();
        while started.elapsed() < within {
            let _ = self.dial.send(target.clone());
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.control.open_stream(peer, BITSWAP).await.is_ok() {
                return true;
            }
        }
        false
    }

    async fn wait_for(mut self, peer: PeerId) -> Hostile {
        // The first stream succeeds once the connection is up.
        for _ in 0..100 {
            if self.control.open_stream(peer, BITSWAP).await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the hostile peer never connected");
    }

    /// Opens a stream and writes `bytes` to it; the write's outcome.
    async fn send_raw(&mut self, peer: PeerId, bytes: &[u8]) -> std::io::Result<()> {
        self.send_raw_on(peer, BITSWAP, bytes).await
    }

    /// [`Hostile::send_raw`] on a stream of `protocol`.
    async fn send_raw_on(&mut self, peer: PeerId, protocol: StreamProtocol, bytes: &[u8]) -> std::io::Result<()> {
        let mut s = self.control.open_stream(peer, protocol).await.map_err(std::io::Error::other)?;
        s.write_all(bytes).await?;
        s.flush().await?;
        // Give the other side time to read before the stream goes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.close().await
    }

    async fn send(&mut self, peer: PeerId, m: &Message) -> std::io::Result<()> {
        self.send_as(peer, m, BITSWAP, Version::V1_2).await
    }

    /// Sends `m` on a stream of `protocol`, encoded for `version`.
    async fn send_as(
        &mut self,
        peer: PeerId,
        m: &Message,
        protocol: StreamProtocol,
        version: Version,
    ) -> std::io::Result<()> {
        let body = m.encode(version);
        let mut frame =
            unsigned_varint::encode::usize(body.len(), &mut unsigned_varint::encode::usize_buffer()).to_vec();
        frame.extend_from_slice(&body);
        self.send_raw_on(peer, protocol, &frame).await
    }

    /// The next stream Cairn opened to this peer ([`Inbound::Hand`]).
    async fn next_stream(&mut self) -> libp2p::Stream {
        tokio::time::timeout(Duration::from_secs(10), self.handed.recv())
            .await
            .expect("Cairn opened no stream in 10 s")
            .expect("the swarm task ended")
    }
}

/// A seed with a file, and an honest peer that reads it through Bitswap.
struct Scene {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    seed: Arc<Node>,
    seed_net: Network,
    honest: Arc<Node>,
    honest_net: Network,
}

impl Scene {
    fn new() -> Scene {
        Scene::with(listen())
    }

    /// A scene whose seed runs with `seed_cfg`.
    fn with(seed_cfg: NetConfig) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let seed = Arc::new(Node::init(&dir.path().join("seed"), Profile::Test).unwrap());
        let honest = Arc::new(Node::init(&dir.path().join("honest"), Profile::Test).unwrap());
        let (seed_net, honest_net) = rt.block_on(async { (start(&seed, seed_cfg).await, reading(&honest).await) });
        Scene { _dir: dir, rt, seed, seed_net, honest, honest_net }
    }

    fn addr(&self) -> Multiaddr {
        self.seed_net.listen_addrs()[0].clone()
    }

    /// The honest peer connects and reads a fresh file of `len` bytes from the seed.
    fn honest_read(&self, seed: u64, len: usize) {
        let data = crate::noise(seed, len);
        let root = self.seed.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
        self.rt.block_on(self.honest_net.connect(self.addr())).unwrap();
        let mut out = Vec::new();
        exporter::read_range(&self.honest.source(), &root, 0, None, &mut out).unwrap();
        assert!(out == data, "the honest peer got other bytes");
    }

    fn is_connected(&self, peer: PeerId) -> bool {
        self.rt.block_on(self.seed_net.peers()).unwrap().iter().any(|p| p.peer == peer)
    }
}

fn frame_of_len(len: u64, body: &[u8]) -> Vec<u8> {
    let mut v = unsigned_varint::encode::u64(len, &mut unsigned_varint::encode::u64_buffer()).to_vec();
    v.extend_from_slice(body);
    v
}

/// A message announced as 100 MiB, protobuf garbage, and a block nobody asked for (whose CID
/// is whatever its bytes hash to, so it cannot pass for a wanted one): each costs the sender
/// score, the node bans it, and the honest peer is served.
#[test]
fn malformed_messages_get_their_sender_banned() {
    let s = Scene::new();
    let target = s.seed_net.peer_id();
    let mut h = s.rt.block_on(Hostile::connect(&s.addr(), Inbound::Drain));
    assert!(s.is_connected(h.id));
    s.rt.block_on(async {
        // Oversized: refused from the length prefix alone, nothing allocated.
        let _ = h.send_raw(target, &frame_of_len(100 << 20, &[0u8; 64])).await;
        // Garbage where a protobuf should be.
        let _ = h.send_raw(target, &frame_of_len(40, &[0xff; 40])).await;
        // A block whose bytes do not hash to the CID its prefix names.
        let lie = cairn_merkle::Block::new_unchecked(
            cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"the truth"),
            bytes::Bytes::from_static(b"a lie"),
        );
        let _ = h.send(target, &Message { blocks: vec![lie], ..Message::default() }).await;
        // The score decays as it goes: a few more offences take it well over the ban line.
        for _ in 0..3 {
            let _ = h.send_raw(target, &frame_of_len(40, &[0xfe; 40])).await;
        }
    });
    let started = Instant::now();
    while s.is_connected(h.id) {
        assert!(started.elapsed() < Duration::from_secs(10), "the hostile peer was never disconnected");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Banned: it cannot come back while its score decays.
    let back = s.rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.control.open_stream(target, BITSWAP).await.is_ok()
    });
    assert!(!back && !s.is_connected(h.id), "a banned peer got back in");
    s.honest_read(41, 1 << 20);
}

/// One block nobody asked for gets its sender disconnected and kept out while its score
/// decays (here with a half-life of one second: out for about two), and then let back in;
/// the node's metrics count the ban, and the honest peer is served throughout.
#[test]
fn a_peer_that_sends_a_wrong_block_is_kept_out_until_its_score_decays() {
    let half_life = Duration::from_secs(1);
    let s = Scene::with(NetConfig { score_half_life: half_life, ..listen() });
    let target = s.seed_net.peer_id();
    let mut h = s.rt.block_on(Hostile::connect(&s.addr(), Inbound::Drain));
    let wrong = cairn_merkle::Block::new_unchecked(
        cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, b"never wanted"),
        bytes::Bytes::from_static(b"never wanted"),
    );
    s.rt.block_on(h.send(target, &Message { blocks: vec![wrong], ..Message::default() })).unwrap();
    let banned_at = Instant::now();
    while s.is_connected(h.id) {
        assert!(banned_at.elapsed() < Duration::from_secs(10), "the peer was never disconnected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = s.rt.block_on(s.seed_net.stats()).unwrap();
    assert_eq!((stats.forged_blocks, stats.banned_peers), (1, 1), "{stats:?}");
    // Out for the first half-life (its score is still at least half the ban line)...
    let back = s.rt.block_on(h.comes_back(&s.addr(), half_life / 2));
    assert!(!back, "a banned peer got back in after {:?}", banned_at.elapsed());
    assert!(banned_at.elapsed() < half_life, "the check ran too late to tell: {:?}", banned_at.elapsed());
    s.honest_read(44, 1 << 20);
    // ...and back once the score decayed under a quarter of it (two half-lives).
    let back = s.rt.block_on(h.comes_back(&s.addr(), Duration::from_secs(10)));
    assert!(back, "the peer was never let back in");
    assert!(
        banned_at.elapsed() >= half_life * 2 - Duration::from_millis(300),
        "let back in after {:?}",
        banned_at.elapsed()
    );
    assert_eq!(s.rt.block_on(s.seed_net.stats()).unwrap().banned_peers, 0);
}

/// Twenty messages of a thousand wants each, for blocks the node lacks: it answers, keeps at
/// most its ledger's worth of them, and serves the honest peer meanwhile.
#[test]
fn a_wantlist_flood_stays_bounded() {
    let s = Scene::new();
    let target = s.seed_net.peer_id();
    let mut h = s.rt.block_on(Hostile::connect(&s.addr(), Inbound::Drain));
    s.rt.block_on(async {
        for round in 0..20u32 {
            let wants = (0..1000u32)
                .map(|i| Want {
                    cid: cairn_merkle::hash::CidFormat::default()
                        .cid(cairn_merkle::hash::RAW, &(round * 1000 + i).to_le_bytes()),
                    priority: 1,
                    kind: WantType::Block,
                    send_dont_have: true,
                })
                .collect();
            h.send(target, &Message { wants, ..Message::default() }).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let stats = s.rt.block_on(s.seed_net.stats()).unwrap();
    assert!(stats.ledger_wants > 0, "the flood never arrived: {stats:?}");
    assert!(stats.ledger_wants <= net::bitswap::engine::MAX_LEDGER as u64, "{stats:?}");
    s.honest_read(42, 1 << 20);
}

/// A peer asks for 32 MiB and never reads what comes: the node stops serving it once about
/// [`net::MAX_PENDING_PER_PEER`] is queued, and the honest peer is served all along.
#[test]
fn a_peer_that_never_reads_holds_little() {
    let s = Scene::new();
    let target = s.seed_net.peer_id();
    let big = crate::noise(43, 32 << 20);
    let root = s.seed.add_reader(&big[..], &AddOptions::default(), true).unwrap().cid;
    let leaves = s.seed.dag_cids(&root).unwrap();
    let mut h = s.rt.block_on(Hostile::connect(&s.addr(), Inbound::Ignore));
    s.rt.block_on(async {
        let wants =
            leaves.iter().map(|c| Want { cid: *c, priority: 1, kind: WantType::Block, send_dont_have: true }).collect();
        h.send(target, &Message { wants, ..Message::default() }).await.unwrap();
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = s.rt.block_on(s.seed_net.stats()).unwrap().bytes_sent;
    s.honest_read(44, 2 << 20);
    let after = s.rt.block_on(s.seed_net.stats()).unwrap().bytes_sent;
    assert!(after - before >= 2 << 20, "the honest peer's bytes are counted");
    // What went to the silent peer: at most the pending cap, one serving turn, and what the
    // connection's buffers absorbed; far from all 32 MiB.
    assert!(before < 20 << 20, "{} MiB queued to a peer that reads nothing", before >> 20);
    assert!(s.is_connected(h.id), "a slow reader is not misbehaving");
}

/// A DHT peer that takes the announcement stream of a sweep and never reads it: the send gives
/// up within its time limit with a clear error instead of holding the sweep, and the node goes
/// on serving.
#[test]
fn a_dht_peer_that_never_reads_announcements_times_out() {
    let s = Scene::new();
    let h = s.rt.block_on(Hostile::connect_accepting(&s.addr(), Inbound::Ignore, net::dht::LAN_PROTOCOL));
    // 5,000 keys are about 400 KiB of messages: more than a stream's window takes unread.
    let keys: Vec<Vec<u8>> =
        (0..5000u32).map(|i| cairn_merkle::hash::HashAlg::Sha2_256.digest(&i.to_be_bytes()).to_bytes()).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let started = Instant::now();
    let addrs = s.rt.block_on(s.seed_net.external_addrs()).unwrap();
    let err = s.rt.block_on(s.seed_net.send_providers(net::dht::Dht::Lan, h.id, &addrs, &refs)).unwrap_err();
    assert!(matches!(err, net::sweep::SendError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    s.honest_read(45, 1 << 20);
}

/// Five hundred TCP connections that never finish a handshake: the node keeps serving the
/// peer it has, and once they go, a new peer connects and is served.
#[test]
fn a_storm_of_half_open_connections_passes() {
    let s = Scene::new();
    s.honest_read(45, 256 << 10);
    let port = s.addr().iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
        _ => None,
    });
    let port = port.unwrap();
    let storm: Vec<std::net::TcpStream> =
        (0..500).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(storm.len() >= 100, "the storm did not happen");
    s.honest_read(46, 1 << 20);
    drop(storm);
    let late = Arc::new(Node::init(&s._dir.path().join("late"), Profile::Test).unwrap());
    let late_net = s.rt.block_on(reading(&late));
    let data = crate::noise(47, 300_000);
    let root = s.seed.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    s.rt.block_on(late_net.connect(s.addr())).unwrap();
    let mut out = Vec::new();
    exporter::read_range(&late.source(), &root, 0, None, &mut out).unwrap();
    assert!(out == data);
}

/// Reads messages from `stream` until one satisfies `pick`; returns its raw body too.
async fn read_until(stream: &mut libp2p::Stream, pick: impl Fn(&Message) -> bool) -> (Message, Vec<u8>) {
    let read = async {
        loop {
            let body = bitswap::proto::read_frame(stream).await.unwrap().expect("Cairn ended its stream");
            let m = Message::decode(&body[..]).unwrap();
            if pick(&m) {
                return (m, body);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("no such message from Cairn in 10 s")
}

/// Peers that speak only Bitswap 1.0.0 or only 1.1.0: Cairn answers their wants in their
/// version's format (1.0.0: bare block bytes in `blocks`; 1.1.0: `payload` with CID
/// prefixes), and fetches from them although they never answer a want-have with HAVE.
#[test]
fn peers_of_bitswap_1_0_and_1_1_are_served_and_fetched_from() {
    for (protocol, version, block_field) in [
        ("/ipfs/bitswap/1.0.0", Version::V1_0, 2u8), // Message.blocks
        ("/ipfs/bitswap/1.1.0", Version::V1_1, 3u8), // Message.payload
    ] {
        let protocol = StreamProtocol::new(protocol);
        let s = Scene::new();
        let target = s.seed_net.peer_id();
        // One block each (CIDv0 dag-pb, which both versions carry): one the seed holds, and
        // one only the old peer holds (made in a scratch repo).
        let held = s.seed.add_reader(&crate::noise(1, 1000)[..], &AddOptions::default(), true).unwrap().cid;
        let scratch_dir = tempfile::tempdir().unwrap();
        let scratch = Node::init(scratch_dir.path(), Profile::Test).unwrap();
        let theirs = scratch.add_reader(&crate::noise(2, 1000)[..], &AddOptions::default(), true).unwrap().cid;
        let theirs_bytes = cairn_merkle::BlockSource::get(&scratch.source(), &theirs).unwrap();

        s.rt.block_on(async {
            let mut old = Hostile::connect_accepting(&s.addr(), Inbound::Hand, protocol.clone()).await;
            // Served.
            let want = Want { cid: held, priority: 1, kind: WantType::Block, send_dont_have: false };
            old.send_as(target, &Message { wants: vec![want], ..Message::default() }, protocol.clone(), version)
                .await
                .unwrap();
            let mut from_cairn = old.next_stream().await;
            let (reply, body) = read_until(&mut from_cairn, |m| !m.blocks.is_empty()).await;
            assert_eq!(reply.blocks.len(), 1);
            assert_eq!(*reply.blocks[0].cid(), held);
            assert_eq!(body[0] >> 3, block_field, "{protocol}: the block travels in field {block_field}");

            // Fetched: Cairn's want reaches the old peer as a want-block (these versions have no
            // want-have), and the block it sends back is taken.
            let net = s.seed_net.clone();
            let fetch = tokio::spawn(async move { net.fetch(theirs, Duration::from_secs(10)).await });
            let (asked, _) = read_until(&mut from_cairn, |m| m.wants.iter().any(|w| w.cid == theirs)).await;
            let w = asked.wants.iter().find(|w| w.cid == theirs).unwrap();
            assert_eq!(w.kind, WantType::Block, "{protocol}: a want-have was sent");
            let block = cairn_merkle::Block::new_unchecked(theirs, theirs_bytes.clone());
            old.send_as(target, &Message { blocks: vec![block], ..Message::default() }, protocol.clone(), version)
                .await
                .unwrap();
            assert_eq!(fetch.await.unwrap().unwrap(), theirs_bytes);
        });
    }
}

/// Encodes `m` as one length-prefixed Bitswap 1.2.0 frame.
fn frame(m: &Message) -> Vec<u8> {
    let body = m.encode(Version::V1_2);
    frame_of_len(body.len() as u64, &body)
}

/// `n` want-haves (DONT_HAVE asked for) of blocks nobody has, numbered from `from`.
fn want_haves(from: u32, n: u32) -> Vec<Want> {
    (from..from + n)
        .map(|i| Want {
            cid: cairn_merkle::hash::CidFormat::default().cid(cairn_merkle::hash::RAW, &i.to_be_bytes()),
            priority: 1,
            kind: WantType::Have,
            send_dont_have: true,
        })
        .collect()
}

/// Writes `message(i)` for i = 0, 1, ... on one stream to `peer` until the stream fails or
/// `stop` is set; returns how many were written.
fn flood(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    stop: Arc<std::sync::atomic::AtomicBool>,
    message: impl Fn(u32) -> Message + Send + 'static,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let Ok(mut s) = control.open_stream(peer, BITSWAP).await else { return 0 };
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if s.write_all(&frame(&message(i))).await.is_err() {
                break;
            }
            i += 1;
        }
        i
    })
}

/// Reads a fresh file of `len` bytes from the seed as the honest peer; how long it took.
fn timed_read(s: &Scene, seed: u64, len: usize) -> Duration {
    let started = Instant::now();
    s.honest_read(seed, len);
    started.elapsed()
}

/// A peer sends full wantlists of a thousand want-haves, one after another as fast as it can,
/// and never reads an answer. The questions are answered on serving turns from its ledger
/// (as want-blocks are), not on the swarm's task, so what is queued for it stays under the
/// connection's cap however long it goes on; and the honest peer reads at about the speed it
/// reads without the flood. (Before, every want-have was answered at once on the swarm's
/// task, whatever the ledger, caps or budget, and the answers queued without a byte bound.)
#[test]
#[allow(clippy::print_stderr)] // the measured speeds, for the person running the test
fn a_want_have_flood_is_answered_in_turns_and_queues_boundedly() {
    let s = Scene::new();
    let target = s.seed_net.peer_id();
    let alone = timed_read(&s, 50, 16 << 20);
    let h = s.rt.block_on(Hostile::connect(&s.addr(), Inbound::Ignore));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = {
        let _runtime = s.rt.enter();
        let message = |i: u32| Message { full: true, wants: want_haves(i * 1000, 1000), ..Message::default() };
        flood(h.control.clone(), target, stop.clone(), message)
    };
    // The flood goes on for three seconds; what the node queues for the peer that reads
    // nothing stays within the cap on presences (and the message being written).
    let mut most = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let stats = s.rt.block_on(s.seed_net.stats()).unwrap();
        assert!(stats.ledger_wants <= net::bitswap::engine::MAX_LEDGER as u64, "{stats:?}");
        most = most.max(stats.queued_bytes);
        std::thread::sleep(Duration::from_millis(50));
    }
    let cap = (bitswap::handler::MAX_QUEUED_URGENT_BYTES + (1 << 20)) as u64;
    assert!(most > 0, "nothing was ever queued for the flooding peer");
    assert!(most <= cap, "{most} bytes queued for a peer that reads nothing (cap {cap})");
    let flooded = timed_read(&s, 51, 16 << 20);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let messages = s.rt.block_on(sent).unwrap();
    let ratio = alone.as_secs_f64() / flooded.as_secs_f64();
    eprintln!(
        "want-have flood: {messages} messages of 1000; honest 16 MiB read {alone:?} alone, {flooded:?} \
         flooded (speed ratio {ratio:.2}); at most {most} bytes queued"
    );
    assert!(messages >= 100, "the flood was too thin to tell: {messages} messages");
    assert!(ratio > 0.2, "the honest peer read at {ratio:.2} of its speed during the flood");
    assert!(s.is_connected(h.id), "a full wantlist is not an offence");
}

/// A peer whose want-haves overflow its ledger is flooding, as with want-blocks: each
/// overflowing message costs score until the peer is banned. (Before, want-haves bypassed
/// the ledger and a peer could ask any number without cost.)
#[test]
fn want_haves_that_overflow_the_ledger_get_their_sender_banned() {
    let s = Scene::new();
    let target = s.seed_net.peer_id();
    let h = s.rt.block_on(Hostile::connect(&s.addr(), Inbound::Drain));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = {
        let _runtime = s.rt.enter();
        let message = |i: u32| Message { wants: want_haves(i * 2000, 2000), ..Message::default() };
        flood(h.control.clone(), target, stop.clone(), message)
    };
    let started = Instant::now();
    while s.is_connected(h.id) {
        assert!(started.elapsed() < Duration::from_secs(10), "the flooding peer was never banned");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let messages = s.rt.block_on(sent).unwrap();
    let limit = (net::bitswap::engine::BAN_SCORE / net::bitswap::engine::PENALTY_FLOOD) as u32;
    assert!(messages >= limit, "banned after {messages} messages, fewer than {limit} overflowing ones");
    assert_eq!(s.rt.block_on(s.seed_net.stats()).unwrap().banned_peers, 1);
    s.honest_read(52, 1 << 20);
}

/// One address opens ten TCP connections (and never says a word) with the per-IP limit at
/// three: the node keeps three, closes the other seven at once, and a real peer from that
/// address is refused while the three stay; a peer from another address (here `::1`) is
/// served all along; and once the three go, the address is welcome again.
#[test]
fn one_address_gets_its_share_of_connections() {
    let seed_cfg = NetConfig {
        max_connections_per_ip: 3,
        limit_loopback: true,
        ..NetConfig::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap(), "/ip6/::1/tcp/0".parse().unwrap()])
    };
    let s = Scene::with(seed_cfg);
    let addrs = s.seed_net.listen_addrs();
    let v4 = addrs.iter().find(|a| a.to_string().starts_with("/ip4/")).unwrap().clone();
    let v6 = addrs.iter().find(|a| a.to_string().starts_with("/ip6/")).unwrap().clone();
    let port = v4.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
        _ => None,
    });
    let storm: Vec<std::net::TcpStream> =
        (0..10).map(|_| std::net::TcpStream::connect(("127.0.0.1", port.unwrap())).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    // A closed connection reads end-of-file at once; a held one times out.
    let held = storm
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut buf = [0u8; 64];
            // The node may have sent its side of the handshake first: read until EOF or silence.
            loop {
                match std::io::Read::read(&mut &**c, &mut buf) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        return true
                    }
                    Err(_) => return false,
                }
            }
        })
        .count();
    assert_eq!(held, 3, "connections from one address held past the limit");
    // A real peer from the same address is refused while the three are held.
    let late = Arc::new(Node::init(&s._dir.path().join("late"), Profile::Test).unwrap());
    let late_net = s.rt.block_on(start(&late, listen()));
    let refused =
        s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), late_net.connect(v4.clone())).await });
    assert!(!matches!(refused, Ok(Ok(_))), "a fourth connection from 127.0.0.1 got in");
    // Another address is served meanwhile.
    let data = crate::noise(53, 1 << 20);
    let root = s.seed.add_reader(&data[..], &AddOptions::default(), true).unwrap().cid;
    s.rt.block_on(s.honest_net.connect(v6)).unwrap();
    let mut out = Vec::new();
    exporter::read_range(&s.honest.source(), &root, 0, None, &mut out).unwrap();
    assert!(out == data);
    // The three leave: the address gets its share back.
    drop(storm);
    std::thread::sleep(Duration::from_millis(300));
    s.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), late_net.connect(v4)).await })
        .expect("the dial hung")
        .expect("the address is welcome again once its connections closed");
}
