//! Bitswap's wire format: the protobuf messages of ipfs/specs `bitswap-protocol.md`, the CID
//! prefix that names a block in a 1.1.0+ message, and the length-delimited framing.
//!
//! The protobuf types are private; the rest of Cairn sees [`Message`], in which every CID has
//! been parsed and checked, and every block has been hashed: a [`Block`] decoded here is named
//! by the CID its own bytes hash to, so a peer cannot hand over bytes under a false name. Any
//! malformed part (a bad CID, a prefix Cairn cannot hash with, an unknown enum value) rejects
//! the whole message, as Kubo does.

use bytes::Bytes;
use cairn_merkle::hash::{self, HashAlg, BLAKE3, DAG_PB, SHA2_256, SHA2_512};
use cairn_merkle::{Block, Cid};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use prost::Message as _;

/// The largest message Cairn reads or writes, as go-libp2p's message size limit (4 MiB).
pub const MAX_MESSAGE: usize = 4 << 20;
/// The largest block Cairn sends in one message; blocks up to 2 MiB must be supported.
pub const MAX_BLOCK: usize = 2 << 20;
/// CIDs longer than this in a wantlist are ignored (as Kubo's `MaximumAllowedCid`).
pub const MAX_CID_BYTES: usize = 168;

/// Bitswap protocol versions, newest first, with their protocol IDs.
pub const PROTOCOLS: [(&str, Version); 4] = [
    ("/ipfs/bitswap/1.2.0", Version::V1_2),
    ("/ipfs/bitswap/1.1.0", Version::V1_1),
    ("/ipfs/bitswap/1.0.0", Version::V1_0),
    ("/ipfs/bitswap", Version::V1_0),
];

/// A negotiated Bitswap version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 1.0.0 (and the bare `/ipfs/bitswap`): blocks without prefixes, CIDv0 only.
    V1_0,
    /// 1.1.0: blocks with CID prefixes.
    V1_1,
    /// 1.2.0: want-have, HAVE and DONT_HAVE.
    V1_2,
}

impl Version {
    /// The version a protocol ID names.
    pub fn from_protocol(protocol: &str) -> Option<Version> {
        PROTOCOLS.iter().find(|(p, _)| *p == protocol).map(|(_, v)| *v)
    }

    /// Whether the version has want-have and block presences.
    pub fn has_presences(self) -> bool {
        self == Version::V1_2
    }
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// Not a Bitswap protobuf.
    #[error("malformed bitswap message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A CID in a wantlist entry or presence is missing or malformed.
    #[error("bad CID in bitswap message: {0}")]
    Cid(String),
    /// A block's prefix is malformed or names a hash Cairn cannot compute.
    #[error("bad block prefix: {0}")]
    Prefix(String),
    /// An enum field holds an unknown value.
    #[error("unknown {0} value {1}")]
    Enum(&'static str, i32),
    /// The frame around the message is malformed (a length past the cap, a bad varint).
    #[error("malformed bitswap frame: {0}")]
    Frame(std::io::Error),
    /// The task decoding the message was lost.
    #[error("decoding stopped: {0}")]
    Stopped(String),
}

mod pb {
    use bytes::Bytes;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        #[prost(message, optional, tag = "1")]
        pub wantlist: Option<Wantlist>,
        #[prost(bytes = "bytes", repeated, tag = "2")]
        pub blocks: Vec<Bytes>,
        #[prost(message, repeated, tag = "3")]
        pub payload: Vec<Block>,
        #[prost(message, repeated, tag = "4")]
        pub block_presences: Vec<BlockPresence>,
        #[prost(int32, tag = "5")]
        pub pending_bytes: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Wantlist {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
        #[prost(bool, tag = "2")]
        pub full: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(bytes = "bytes", tag = "1")]
        pub block: Bytes,
        #[prost(int32, tag = "2")]
        pub priority: i32,
        #[prost(bool, tag = "3")]
        pub cancel: bool,
        #[prost(int32, tag = "4")]
        pub want_type: i32,
        #[prost(bool, tag = "5")]
        pub send_dont_have: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Block {
        #[prost(bytes = "bytes", tag = "1")]
        pub prefix: Bytes,
        #[prost(bytes = "bytes", tag = "2")]
        pub data: Bytes,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlockPresence {
        #[prost(bytes = "bytes", tag = "1")]
        pub cid: Bytes,
        #[prost(int32, tag = "2")]
        pub r#type: i32,
    }
}

/// What a want asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WantType {
    /// The block itself.
    Block,
    /// Whether the peer has the block (1.2.0).
    Have,
}

/// One wantlist entry that is not a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The wanted block.
    pub cid: Cid,
    /// Higher first.
    pub priority: i32,
    /// Block or have.
    pub kind: WantType,
    /// Whether the sender wants to hear DONT_HAVE.
    pub send_dont_have: bool,
}

/// A decoded Bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The wantlist replaces the sender's previous one.
    pub full: bool,
    /// New or updated wants.
    pub wants: Vec<Want>,
    /// Wants withdrawn.
    pub cancels: Vec<Cid>,
    /// Blocks, each named by the CID its bytes hash to.
    pub blocks: Vec<Block>,
    /// The sender has these blocks.
    pub haves: Vec<Cid>,
    /// The sender does not have these blocks.
    pub dont_haves: Vec<Cid>,
    /// Bytes the sender still has queued for us.
    pub pending_bytes: i32,
}

impl Message {
    /// Whether the message carries nothing.
    pub fn is_empty(&self) -> bool {
        !self.full
            && self.wants.is_empty()
            && self.cancels.is_empty()
            && self.blocks.is_empty()
            && self.haves.is_empty()
            && self.dont_haves.is_empty()
    }

    /// Wantlist entries and presences in the message.
    pub fn entries(&self) -> usize {
        self.wants.len() + self.cancels.len() + self.haves.len() + self.dont_haves.len()
    }

    /// Takes in `later`, a message without blocks that was to be sent after this one, so that
    /// both go as one: a cancel drops an earlier want of the same block, and a want an earlier
    /// cancel, so that no block is both wanted and cancelled in the result, whatever order a
    /// receiver reads the entries in. `later` must not be a full wantlist.
    pub fn merge(&mut self, later: Message) {
        debug_assert!(later.blocks.is_empty() && !later.full);
        for c in later.cancels {
            self.wants.retain(|w| w.cid.hash() != c.hash());
            if !self.cancels.iter().any(|x| x.hash() == c.hash()) {
                self.cancels.push(c);
            }
        }
        for w in later.wants {
            self.cancels.retain(|c| c.hash() != w.cid.hash());
            self.wants.retain(|x| x.cid.hash() != w.cid.hash());
            self.wants.push(w);
        }
        self.haves.extend(later.haves);
        self.dont_haves.extend(later.dont_haves);
    }

    /// A one-line account for traces: wants (`b` or `h`, with priority), cancels, blocks,
    /// HAVEs and DONT_HAVEs, each CID by its last characters.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let short = |c: &Cid| {
            let s = c.to_string();
            s[s.len().saturating_sub(6)..].to_string()
        };
        let mut out = String::new();
        let mut part = |name: &str, items: Vec<String>| {
            if !items.is_empty() {
                let _ = write!(out, "{}{name}[{}]", if out.is_empty() { "" } else { " " }, items.join(","));
            }
        };
        part(
            "want",
            self.wants
                .iter()
                .map(|w| {
                    format!("{}{}:{}", if w.kind == WantType::Block { 'b' } else { 'h' }, short(&w.cid), w.priority)
                })
                .collect(),
        );
        part("cancel", self.cancels.iter().map(short).collect());
        part("block", self.blocks.iter().map(|b| short(b.cid())).collect());
        part("have", self.haves.iter().map(short).collect());
        part("dont", self.dont_haves.iter().map(short).collect());
        out
    }

    /// About the memory the message holds while queued: its blocks' bytes, and a [`Want`]'s
    /// worth for each block, entry and presence.
    pub fn queued_size(&self) -> usize {
        self.block_bytes() + (self.blocks.len() + self.entries()) * std::mem::size_of::<Want>()
    }

    /// Block bytes in the message.
    pub fn block_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.data().len()).sum()
    }

    /// Decodes and checks a message (hashing every block; see the module docs). Given a
    /// [`Bytes`], the blocks share its memory instead of being copied out of it.
    pub fn decode(bytes: impl bytes::Buf) -> Result<Message, ProtoError> {
        let pb = pb::Message::decode(bytes)?;
        let mut m = Message { pending_bytes: pb.pending_bytes, ..Message::default() };
        if let Some(wl) = pb.wantlist {
            m.full = wl.full;
            for e in wl.entries {
                if e.block.len() > MAX_CID_BYTES {
                    continue;
                }
                let cid = parse_cid(&e.block)?;
                if e.cancel {
                    m.cancels.push(cid);
                    continue;
                }
                let kind = match e.want_type {
                    0 => WantType::Block,
                    1 => WantType::Have,
                    other => return Err(ProtoError::Enum("wantType", other)),
                };
                m.wants.push(Want { cid, priority: e.priority, kind, send_dont_have: e.send_dont_have });
            }
        }
        for data in pb.blocks {
            let mh = HashAlg::Sha2_256.digest(&data);
            m.blocks.push(Block::new_unchecked(Cid::new_v0(mh).expect("sha2-256 makes a CIDv0"), data));
        }
        for b in pb.payload {
            let prefix = Prefix::decode(&b.prefix)?;
            m.blocks.push(Block::new_unchecked(prefix.cid_of(&b.data)?, b.data));
        }
        for p in pb.block_presences {
            let cid = parse_cid(&p.cid)?;
            match p.r#type {
                0 => m.haves.push(cid),
                1 => m.dont_haves.push(cid),
                other => return Err(ProtoError::Enum("BlockPresenceType", other)),
            }
        }
        Ok(m)
    }

    /// Encodes the message for a peer speaking `version`.
    ///
    /// Before 1.2.0 there are no presences and no want-have: want-haves go out as
    /// want-blocks, presences are left out. 1.0.0 carries only CIDv0 blocks (bare bytes that
    /// the receiver hashes as sha2-256 dag-pb); other blocks are left out for it.
    pub fn encode(&self, version: Version) -> Vec<u8> {
        let mut pb = pb::Message { pending_bytes: self.pending_bytes, ..pb::Message::default() };
        if self.full || !self.wants.is_empty() || !self.cancels.is_empty() {
            let mut wl = pb::Wantlist { full: self.full, entries: Vec::new() };
            for w in &self.wants {
                let have = w.kind == WantType::Have && version.has_presences();
                wl.entries.push(pb::Entry {
                    block: cid_bytes(&w.cid),
                    priority: w.priority,
                    cancel: false,
                    want_type: i32::from(have),
                    send_dont_have: w.send_dont_have && version.has_presences(),
                });
            }
            for c in &self.cancels {
                wl.entries.push(pb::Entry { block: cid_bytes(c), cancel: true, ..pb::Entry::default() });
            }
            pb.wantlist = Some(wl);
        }
        for b in &self.blocks {
            if version == Version::V1_0 {
                if b.cid().version() == cid::Version::V0 {
                    pb.blocks.push(b.data().clone());
                }
            } else {
                pb.payload.push(pb::Block { prefix: Prefix::of(b.cid()).encode().into(), data: b.data().clone() });
            }
        }
        if version.has_presences() {
            for (list, kind) in [(&self.haves, 0), (&self.dont_haves, 1)] {
                for c in list {
                    pb.block_presences.push(pb::BlockPresence { cid: cid_bytes(c), r#type: kind });
                }
            }
        }
        pb.encode_to_vec()
    }
}

fn cid_bytes(cid: &Cid) -> Bytes {
    Bytes::from(cid.to_bytes())
}

fn parse_cid(bytes: &[u8]) -> Result<Cid, ProtoError> {
    if bytes.is_empty() {
        return Err(ProtoError::Cid("empty".into()));
    }
    hash::parse_cid_bytes(bytes).map_err(|e| ProtoError::Cid(e.to_string()))
}

/// The CID fields that name a block apart from its hash digest: version, codec, multihash
/// function and digest length, as four unsigned varints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// 0 or 1.
    pub version: u64,
    /// The multicodec of the block.
    pub codec: u64,
    /// The multihash function.
    pub hash: u64,
    /// The digest length.
    pub len: u64,
}

impl Prefix {
    /// The prefix of `cid`.
    pub fn of(cid: &Cid) -> Prefix {
        Prefix {
            version: u64::from(cid.version()),
            codec: cid.codec(),
            hash: cid.hash().code(),
            len: u64::from(cid.hash().size()),
        }
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        for v in [self.version, self.codec, self.hash, self.len] {
            out.extend_from_slice(unsigned_varint::encode::u64(v, &mut unsigned_varint::encode::u64_buffer()));
        }
        out
    }

    /// Parses the wire form.
    pub fn decode(bytes: &[u8]) -> Result<Prefix, ProtoError> {
        let bad = |e: unsigned_varint::decode::Error| ProtoError::Prefix(e.to_string());
        let (version, rest) = unsigned_varint::decode::u64(bytes).map_err(bad)?;
        let (codec, rest) = unsigned_varint::decode::u64(rest).map_err(bad)?;
        let (hash, rest) = unsigned_varint::decode::u64(rest).map_err(bad)?;
        let (len, rest) = unsigned_varint::decode::u64(rest).map_err(bad)?;
        if !rest.is_empty() {
            return Err(ProtoError::Prefix(format!("{} bytes after the prefix", rest.len())));
        }
        Ok(Prefix { version, codec, hash, len })
    }

    /// Hashes `data` the way the prefix says and returns the CID that names it.
    pub fn cid_of(&self, data: &[u8]) -> Result<Cid, ProtoError> {
        let alg = match (self.hash, self.len) {
            (SHA2_256, 32) => HashAlg::Sha2_256,
            (BLAKE3, 32) => HashAlg::Blake3,
            (SHA2_512, 64) => HashAlg::Sha2_512,
            (h, l) => return Err(ProtoError::Prefix(format!("cannot hash with multihash {h:#x} of length {l}"))),
        };
        let mh = alg.digest(data);
        let cid = match self.version {
            0 if self.codec == DAG_PB && alg == HashAlg::Sha2_256 => Cid::new_v0(mh),
            1 => Ok(Cid::new_v1(self.codec, mh)),
            v => return Err(ProtoError::Prefix(format!("CID version {v} with codec {:#x}", self.codec))),
        }
        .map_err(|e| ProtoError::Prefix(e.to_string()))?;
        hash::check_cid(&cid).map_err(|e| ProtoError::Prefix(e.to_string()))?;
        Ok(cid)
    }
}

/// Reads one length-prefixed message; `None` at a clean end of stream. A length over
/// [`MAX_MESSAGE`] is an error, and nothing of such a message is read.
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    read_frame_counting(io, &AtomicU64::new(0)).await
}

/// The first room a frame's body is read into; it doubles as the body arrives.
const FIRST_READ: usize = 16 << 10;

/// Messages at least this long are counted by [`read_frame_counting`]: only a message that
/// carries blocks gets this long (a wantlist this size would hold about 800 entries), so
/// the count shows blocks on their way rather than chatter.
pub const COUNTED_FROM: usize = 32 << 10;

/// [`read_frame`], adding the body's bytes of a message of [`COUNTED_FROM`] bytes or more to
/// `arrived` as they come in, so that a message still on its way (a large block over a slow
/// link) shows progress before it is whole.
pub async fn read_frame_counting<R: AsyncRead + Unpin>(
    io: &mut R,
    arrived: &AtomicU64,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        if io.read(&mut byte).await? == 0 {
            return match i {
                0 => Ok(None),
                _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
            };
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            if len as usize > MAX_MESSAGE {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("message of {len} bytes is over the {MAX_MESSAGE}-byte limit"),
                ));
            }
            // The buffer grows as the body arrives (doubling, from FIRST_READ): a peer that
            // announces 4 MiB and sends a byte makes Cairn hold a few KiB, not 4 MiB, on each
            // of the streams it opens.
            let len = len as usize;
            let mut buf = Vec::new();
            let mut filled = 0;
            while filled < len {
                if filled == buf.len() {
                    let more = buf.len().max(FIRST_READ).min(len - buf.len());
                    buf.resize(buf.len() + more, 0);
                }
                match io.read(&mut buf[filled..]).await? {
                    0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    n => {
                        filled += n;
                        if len >= COUNTED_FROM {
                            arrived.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            }
            return Ok(Some(buf));
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message length varint too long"))
}

/// Writes one length-prefixed message and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, msg: &[u8]) -> std::io::Result<()> {
    let mut head = unsigned_varint::encode::usize_buffer();
    io.write_all(unsigned_varint::encode::usize(msg.len(), &mut head)).await?;
    io.write_all(msg).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_merkle::hash::{CidFormat, RAW};

    fn raw_block(data: &[u8]) -> Block {
        let cid = CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, data);
        Block::new_unchecked(cid, Bytes::copy_from_slice(data))
    }

    /// Hands out `data` 1 KiB at a time, noting the most room a read offered beyond what
    /// had arrived by then.
    struct Trickle {
        data: Vec<u8>,
        /// Bytes of the length prefix.
        head: usize,
        at: usize,
        worst: f64,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let body_so_far = self.at.saturating_sub(self.head) as f64;
            if self.at >= self.head {
                self.worst = self.worst.max(buf.len() as f64 / body_so_far.max((FIRST_READ / 2) as f64));
            }
            let n = buf.len().min(1024).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(n))
        }
    }

    /// A frame is read into room that grows with what arrived (at most about twice it), not
    /// into the room its length prefix claims: a peer that announces 4 MiB and sends little
    /// holds little (before, the whole claim was allocated at once).
    #[test]
    fn a_frame_is_held_in_proportion_to_what_arrived() {
        let body: Vec<u8> = (0..MAX_MESSAGE as u32).map(|i| (i % 251) as u8).collect();
        let mut data =
            unsigned_varint::encode::usize(body.len(), &mut unsigned_varint::encode::usize_buffer()).to_vec();
        let head = data.len();
        data.extend_from_slice(&body);
        let mut r = Trickle { data, head, at: 0, worst: 0.0 };
        let frame = futures::executor::block_on(read_frame(&mut r)).unwrap().unwrap();
        assert!(frame == body);
        assert!(r.worst <= 4.0, "a read offered {:.0}x the bytes that had arrived", r.worst);
    }

    fn v0_block(data: &[u8]) -> Block {
        let cid = CidFormat { version: 0, hash: HashAlg::Sha2_256 }.cid(DAG_PB, data);
        Block::new_unchecked(cid, Bytes::copy_from_slice(data))
    }

    #[test]
    fn prefixes_match_the_spec_vectors() {
        assert_eq!(Prefix::of(v0_block(b"x").cid()).encode(), [0x00, 0x70, 0x12, 0x20]);
        assert_eq!(Prefix::of(raw_block(b"x").cid()).encode(), [0x01, 0x55, 0x12, 0x20]);
        let b3 = CidFormat { version: 1, hash: HashAlg::Blake3 }.cid(RAW, b"x");
        assert_eq!(Prefix::of(&b3).encode(), [0x01, 0x55, 0x1e, 0x20]);
        assert_eq!(Prefix::decode(&[0x01, 0x55, 0x1e, 0x20]).unwrap().cid_of(b"x").unwrap(), b3);
        // sha2-512 (`add --hash sha2-512`, `block/put?mhtype=sha2-512`): a 64-byte digest.
        let s512 = CidFormat { version: 1, hash: HashAlg::Sha2_512 }.cid(RAW, b"x");
        assert_eq!(Prefix::of(&s512).encode(), [0x01, 0x55, 0x13, 0x40]);
        assert_eq!(Prefix::decode(&[0x01, 0x55, 0x13, 0x40]).unwrap().cid_of(b"x").unwrap(), s512);
    }

    #[test]
    fn messages_round_trip_on_1_2() {
        let a = raw_block(b"alpha");
        let b = v0_block(b"beta");
        let m = Message {
            full: true,
            wants: vec![
                Want { cid: *a.cid(), priority: 7, kind: WantType::Have, send_dont_have: true },
                Want { cid: *b.cid(), priority: 1, kind: WantType::Block, send_dont_have: false },
            ],
            cancels: vec![*b.cid()],
            blocks: vec![a.clone(), b.clone()],
            haves: vec![*a.cid()],
            dont_haves: vec![*b.cid()],
            pending_bytes: 12,
        };
        assert_eq!(Message::decode(&m.encode(Version::V1_2)[..]).unwrap(), m);
    }

    #[test]
    fn merged_messages_keep_the_last_word_on_each_block() {
        let [a, b, c] = [b"a", b"b", b"c"].map(|d| *raw_block(d).cid());
        let want = |cid, kind| Want { cid, priority: 1, kind, send_dont_have: true };
        let mut m = Message { wants: vec![want(a, WantType::Have), want(b, WantType::Have)], ..Message::default() };
        // a is cancelled after it was wanted, c wanted after it was cancelled, b asked for again.
        m.merge(Message { cancels: vec![a, c], haves: vec![b], ..Message::default() });
        m.merge(Message { wants: vec![want(c, WantType::Block), want(b, WantType::Block)], ..Message::default() });
        assert_eq!(m.wants, vec![want(c, WantType::Block), want(b, WantType::Block)]);
        assert_eq!(m.cancels, vec![a], "a cancel stays for a want sent before");
        assert_eq!((m.haves.clone(), m.entries()), (vec![b], 4));
        assert_eq!(Message::decode(&m.encode(Version::V1_2)[..]).unwrap(), m);
    }

    #[test]
    fn older_versions_drop_what_they_cannot_carry() {
        let a = raw_block(b"alpha");
        let b = v0_block(b"beta");
        let m = Message {
            wants: vec![Want { cid: *a.cid(), priority: 1, kind: WantType::Have, send_dont_have: true }],
            blocks: vec![a.clone(), b.clone()],
            haves: vec![*a.cid()],
            ..Message::default()
        };
        let v11 = Message::decode(&m.encode(Version::V1_1)[..]).unwrap();
        assert_eq!(v11.wants[0].kind, WantType::Block);
        assert!(!v11.wants[0].send_dont_have);
        assert_eq!(v11.blocks, vec![a, b.clone()]);
        assert!(v11.haves.is_empty());
        let v10 = Message::decode(&m.encode(Version::V1_0)[..]).unwrap();
        assert_eq!(v10.blocks, vec![b], "1.0.0 carries CIDv0 blocks only");
    }

    #[test]
    fn a_block_is_named_by_what_its_bytes_hash_to() {
        let real = raw_block(b"real");
        let pb = pb::Message {
            payload: vec![pb::Block {
                prefix: Prefix::of(real.cid()).encode().into(),
                data: Bytes::from_static(b"fake"),
            }],
            ..pb::Message::default()
        };
        let m = Message::decode(&pb.encode_to_vec()[..]).unwrap();
        assert_ne!(m.blocks[0].cid(), real.cid());
        assert_eq!(m.blocks[0].cid(), raw_block(b"fake").cid());
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(matches!(Message::decode(&[0xff, 0xff, 0xff][..]), Err(ProtoError::Decode(_))));
        let empty_cid = pb::Message {
            wantlist: Some(pb::Wantlist { entries: vec![pb::Entry::default()], full: false }),
            ..pb::Message::default()
        };
        assert!(matches!(Message::decode(&empty_cid.encode_to_vec()[..]), Err(ProtoError::Cid(_))));
        let bad_prefix = pb::Message {
            payload: vec![pb::Block { prefix: Bytes::from_static(&[1, 0x55, 0x16, 0x20]), data: Bytes::new() }],
            ..pb::Message::default()
        };
        assert!(matches!(Message::decode(&bad_prefix.encode_to_vec()[..]), Err(ProtoError::Prefix(_))));
        let bad_type = pb::Message {
            block_presences: vec![pb::BlockPresence { cid: cid_bytes(raw_block(b"a").cid()), r#type: 9 }],
            ..pb::Message::default()
        };
        assert!(matches!(Message::decode(&bad_type.encode_to_vec()[..]), Err(ProtoError::Enum(..))));
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, b"hello").await.unwrap();
            write_frame(&mut buf, b"").await.unwrap();
            let mut r = futures::io::Cursor::new(buf);
            assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"hello");
            assert_eq!(read_frame(&mut r).await.unwrap().unwrap(), b"");
            assert!(read_frame(&mut r).await.unwrap().is_none());

            let mut head = unsigned_varint::encode::usize_buffer();
            let huge = unsigned_varint::encode::usize(MAX_MESSAGE + 1, &mut head).to_vec();
            let err = read_frame(&mut futures::io::Cursor::new(huge)).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
            let cut = read_frame(&mut futures::io::Cursor::new(vec![0x05, 1, 2])).await.unwrap_err();
            assert_eq!(cut.kind(), std::io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn body_bytes_are_counted_as_they_arrive() {
        futures::executor::block_on(async {
            let arrived = AtomicU64::new(0);
            let mut buf = Vec::new();
            write_frame(&mut buf, &[7; 300]).await.unwrap();
            write_frame(&mut buf, &[7; COUNTED_FROM]).await.unwrap();
            let mut r = futures::io::Cursor::new(buf);
            let small = read_frame_counting(&mut r, &arrived).await.unwrap().unwrap();
            assert_eq!((small.len(), arrived.load(Ordering::Relaxed)), (300, 0), "small messages are chatter");
            let big = read_frame_counting(&mut r, &arrived).await.unwrap().unwrap();
            assert_eq!(big.len() as u64, arrived.load(Ordering::Relaxed));
            // A large message cut short still shows the part that came.
            let mut head = unsigned_varint::encode::usize_buffer();
            let mut cut = unsigned_varint::encode::usize(COUNTED_FROM, &mut head).to_vec();
            cut.extend([1; 1000]);
            assert!(read_frame_counting(&mut futures::io::Cursor::new(cut), &arrived).await.is_err());
            assert_eq!(arrived.load(Ordering::Relaxed), COUNTED_FROM as u64 + 1000);
        });
    }
}
