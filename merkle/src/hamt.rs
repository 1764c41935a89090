//! HAMT-sharded UnixFS directories: building them as Kubo does, and reading them.
//!
//! One job, over 700 lines: about 400 of them are the tests of the trie's edge cases.
//!
//! A directory whose plain node would be too big is stored as a hash array mapped trie of
//! dag-pb nodes of UnixFS type `HAMTShard`. The layout below is the one Kubo v0.22 writes
//! (boxo v0.11, `ipld/unixfs/hamt` and `ipld/unixfs/io/directory.go`); [`build`]
//! reproduces it byte for byte, so the same entries give the same root CID.
//!
//! - Each entry name is hashed with murmur3-x64-64: the first 64-bit half (`h1`) of
//!   MurmurHash3 x64 128 with seed 0, read as its 8 big-endian bytes ([`hash_name`]).
//! - A shard with fanout `F = 2^w` takes the next `w` bits of that hash, most significant
//!   bits first, as the slot index: the root uses bits `0..w`, its child shards `w..2w`,
//!   and so on. There is no rehashing: once the 64 bits are used up the trie can go no
//!   deeper (8 levels at fanout 256), and Kubo refuses names whose hashes agree on every
//!   usable bit.
//! - A slot holding one entry is a link named `<prefix><entry name>` straight to the
//!   entry; a slot that two or more names share is a link named `<prefix>` alone to a child
//!   shard over those names. The prefix is the slot index in upper-case hex, zero-padded to
//!   the width of `F - 1` (two characters at fanout 256: `"00"` to `"FF"`).
//! - Links are in slot order, every link carries a name and a Tsize. The Tsize of a link
//!   to a child shard is that shard's cumulative size: its encoded length plus the Tsizes of
//!   its own links, as for any dag-pb node.
//! - The node's `Data` is a UnixFS message with `Type = HAMTShard`, `Data` = the occupancy
//!   bitfield, `hashType = 0x22` and `fanout = F`, and nothing else. The bitfield is a
//!   big-endian integer in which bit `i` marks slot `i` as occupied, written without its
//!   leading zero bytes (at most `F / 8` bytes; absent for an empty shard).
//!
//! Reading ([`lookup`], [`Entries`]) checks every shard it meets: a fanout that is a power
//! of two between 8 and 1024 and the same throughout, a bitfield that fits the fanout and has
//! as many bits set as the node has links, link names whose hex prefixes name exactly the
//! occupied slots in order, child links that lead to shards, and a depth the hash can reach.
//! A malformed or cyclic DAG is therefore an error, never a hang.
//!
//! When to shard at all is [`Sharding::should_shard`]: a directory becomes a HAMT when its
//! estimated size is over the threshold ([`SHARDING_THRESHOLD`] by default), or when it has
//! more links than a set maximum. The estimate is either the sum over its links of name
//! length plus binary CID length ([`SizeEstimation::Links`], Kubo's default and IPIP-499's
//! `links-bytes`) or the size of the whole dag-pb block ([`SizeEstimation::Block`],
//! `block-bytes`, the `unixfs-v1-2025` profile's). "Over" is `>` as in Kubo 0.40 and later and
//! in IPIP-499; Kubo 0.39 and before sharded at equality (`>=`), which
//! [`Sharding::at_threshold`] reproduces for their CIDs. Kubo checks this per directory, on
//! every added entry; as `ipfs add` only ever adds entries, and every estimate only grows as
//! entries are added, the result is the same as checking the final directory.

use bytes::Bytes;
use cid::Cid;

use crate::block::Block;
use crate::dagpb::{DagPbError, PbLink, PbNode};
use crate::hash::{CidFormat, DAG_PB};
use crate::source::{BlockSource, SourceError};
use crate::unixfs::{DataType, UnixFs, UnixFsError, HAMT_HASH_MURMUR3, MAX_HAMT_FANOUT};

/// The fanout Kubo gives new sharded directories (boxo `DefaultShardWidth`).
pub const DEFAULT_FANOUT: u64 = 256;

/// Kubo's default sharding threshold in bytes of estimated directory size, 256 KiB
/// (boxo `HAMTShardingSize`, Kubo config `Internal.UnixFSShardingSizeThreshold`).
pub const SHARDING_THRESHOLD: usize = 262_144;

/// The smallest fanout accepted: the bitfield must fill whole bytes.
pub const MIN_FANOUT: u64 = 8;

/// Bits of the name hash available to index shards (murmur3-x64-64 gives 64).
const HASH_BITS: u32 = 64;

/// Why a sharded directory cannot be built or read.
///
/// Problems found in the root node given by the caller are reported as they are; problems
/// found in a child shard are wrapped in [`HamtError::InShard`] naming that shard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HamtError {
    /// A shard block could not be had from the block source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A problem inside the child shard `shard`.
    #[error("in HAMT shard {shard}: {source}")]
    InShard {
        /// The child shard's CID.
        shard: Cid,
        /// What is wrong with it.
        #[source]
        source: Box<HamtError>,
    },
    /// A shard block is not valid dag-pb.
    #[error("HAMT shard is not valid dag-pb: {0}")]
    DagPb(#[from] DagPbError),
    /// A shard's UnixFS data is invalid: absent, malformed, a fanout that is zero, not a
    /// power of two or above 1024, or a hash function other than murmur3-x64-64.
    #[error("HAMT shard has invalid UnixFS data: {0}")]
    UnixFs(#[from] UnixFsError),
    /// A node where a shard is expected is not a UnixFS `HAMTShard` node (or not dag-pb).
    #[error("not a HAMTShard node")]
    NotAShard,
    /// A fanout that is not a power of two between [`MIN_FANOUT`] and 1024, either asked of
    /// [`build`] or found in a shard.
    #[error("HAMT fanout {0} is not a power of two between {MIN_FANOUT} and {MAX_HAMT_FANOUT}")]
    BadFanout(u64),
    /// A child shard's fanout differs from its parent's.
    #[error("HAMT fanout {found} differs from the parent shard's {expected}")]
    FanoutMismatch {
        /// The parent's fanout.
        expected: u64,
        /// The child's fanout.
        found: u64,
    },
    /// The bitfield is longer than `fanout / 8` bytes.
    #[error("HAMT bitfield of {len} bytes does not fit fanout {fanout}")]
    BadBitfield {
        /// Length of the bitfield in bytes.
        len: usize,
        /// The shard's fanout.
        fanout: u64,
    },
    /// The number of bits set in the bitfield differs from the number of links.
    #[error("HAMT bitfield has {ones} slots occupied but the node has {links} links")]
    BitfieldMismatch {
        /// Bits set in the bitfield.
        ones: usize,
        /// Links in the node.
        links: usize,
    },
    /// A link name does not start with a hex slot index of the right width below the fanout.
    #[error("HAMT link name {name:?} does not start with a valid slot prefix")]
    BadLinkName {
        /// The offending link name.
        name: String,
    },
    /// A link's slot prefix is not the slot the bitfield puts it in (links out of order, or
    /// bitfield and links disagree).
    #[error("HAMT link {name:?} is where the bitfield has slot {expected:X}")]
    LinkOutOfPlace {
        /// The offending link name.
        name: String,
        /// The slot the bitfield assigns to this link's position.
        expected: u64,
    },
    /// Shards are nested deeper than the 64-bit name hash can index (at fanout 256, more
    /// than 8 levels). A shard that links back to itself ends here too.
    #[error("HAMT shard {shard} is at depth {depth}, deeper than the name hash reaches")]
    TooDeep {
        /// The CID of the shard that would be too deep.
        shard: Cid,
        /// Its depth (the root is at depth 0).
        depth: usize,
    },
    /// A child shard appears twice in one directory. No valid HAMT repeats a shard (each
    /// holds the names of its own slot path); a hostile one does it to list the same entries
    /// 2^64 times from a handful of blocks.
    #[error("HAMT shard {0} appears twice in one directory")]
    RepeatedShard(Cid),
    /// Two names hash alike on every bit the trie can use (all 64 at fanout 256), so no HAMT
    /// can hold both. Kubo fails the same way, with "sharded directory too deep".
    #[error("HAMT: names {first:?} and {second:?} hash alike on every bit the trie can use")]
    HashCollision {
        /// One name.
        first: String,
        /// The other name.
        second: String,
    },
    /// [`build`] was given two entries with the same name.
    #[error("HAMT: duplicate entry name {0:?}")]
    DuplicateName(String),
    /// [`build`] was given an entry without a name (it would read back as a child shard).
    #[error("HAMT: entry without a name")]
    EmptyName,
}

/// Kubo's estimate of a plain directory's size: the sum over its links of the name's byte
/// length and the CID's binary length (boxo `productionLinkSize`, IPIP-499 `links-bytes`).
pub fn estimated_dir_size(links: &[PbLink]) -> usize {
    links.iter().map(|l| l.name().len() + l.cid.encoded_len()).sum()
}

/// How a plain directory's size is estimated for the switch to a HAMT (Kubo's
/// `Import.UnixFSHAMTDirectorySizeEstimation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeEstimation {
    /// Names plus binary CIDs ([`estimated_dir_size`]; Kubo `links`, its default).
    #[default]
    Links,
    /// The exact size of the directory's dag-pb block, links (with their sizes) and data
    /// (Kubo `block`; the `unixfs-v1-2025` profile).
    Block,
    /// No size at all: only [`Sharding::max_links`] decides (Kubo `disabled`).
    Disabled,
}

impl SizeEstimation {
    /// Kubo's name for it in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SizeEstimation::Links => "links",
            SizeEstimation::Block => "block",
            SizeEstimation::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for SizeEstimation {
    type Err = UnknownEstimation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "links" => Ok(SizeEstimation::Links),
            "block" => Ok(SizeEstimation::Block),
            "disabled" => Ok(SizeEstimation::Disabled),
            _ => Err(UnknownEstimation(s.to_owned())),
        }
    }
}

/// A size estimation Kubo does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("size estimation must be \"links\", \"block\", or \"disabled\", got {0:?}")]
pub struct UnknownEstimation(pub String);

/// When an imported directory becomes a HAMT instead of one dag-pb node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharding {
    /// Estimated bytes a plain directory may reach; one more and it is sharded. 0 turns
    /// sharding off entirely, the link count included, as in Kubo.
    pub threshold: usize,
    /// How the size is estimated.
    pub estimation: SizeEstimation,
    /// Links a plain directory may hold; one more and it is sharded (0: no limit; Kubo's
    /// `Import.UnixFSDirectoryMaxLinks`).
    pub max_links: usize,
    /// Shard when the estimate *equals* the threshold too, as Kubo 0.39 and earlier did: only
    /// to reproduce the CIDs they made.
    pub at_threshold: bool,
}

impl Default for Sharding {
    /// Kubo 0.43's defaults: 256 KiB by links-bytes, no link limit, `>`.
    fn default() -> Self {
        Sharding { threshold: SHARDING_THRESHOLD, estimation: SizeEstimation::Links, max_links: 0, at_threshold: false }
    }
}

impl Sharding {
    /// Whether a directory with these `links` (sorted as they will be written) is sharded.
    /// `data_len` is the length of its UnixFS data section, for the block-size estimate.
    pub fn should_shard(&self, links: &[PbLink], data_len: usize) -> bool {
        if self.threshold == 0 {
            return false;
        }
        if self.max_links > 0 && links.len() > self.max_links {
            return true;
        }
        let estimate = match self.estimation {
            SizeEstimation::Links => estimated_dir_size(links),
            SizeEstimation::Block => crate::dagpb::encoded_len(links, Some(data_len)),
            SizeEstimation::Disabled => return false,
        };
        estimate > self.threshold || (self.at_threshold && estimate == self.threshold)
    }
}

/// The 64-bit murmur3 hash of an entry name that places it in the trie: the `h1` half of
/// MurmurHash3 x64 128 with seed 0. Its most significant bits select the root slot.
pub fn hash_name(name: &str) -> u64 {
    let mut bytes = name.as_bytes();
    // Reading from a byte slice cannot fail.
    let both = murmur3::murmur3_x64_128(&mut bytes, 0).unwrap_or_default();
    both as u64
}

/// The link-name prefix of slot `index` in a shard of `fanout`: upper-case hex, zero-padded
/// to the width of `fanout - 1` (`link_prefix(10, 256) == "0A"`).
pub fn link_prefix(index: u64, fanout: u64) -> String {
    format!("{index:0width$X}", width = prefix_width(fanout))
}

/// Number of hex digits in a slot prefix: the width of `fanout - 1` in hex.
fn prefix_width(fanout: u64) -> usize {
    let top = fanout.saturating_sub(1).max(1);
    (64 - top.leading_zeros() as usize).div_ceil(4)
}

/// Bits per level for a valid fanout, or [`HamtError::BadFanout`].
fn fanout_bits(fanout: u64) -> Result<u32, HamtError> {
    if fanout.is_power_of_two() && (MIN_FANOUT..=MAX_HAMT_FANOUT).contains(&fanout) {
        Ok(fanout.trailing_zeros())
    } else {
        Err(HamtError::BadFanout(fanout))
    }
}

/// The slot of a name with hash `hash` at `depth`, or `None` when the hash has no bits
/// left for that level.
fn slot(hash: u64, depth: usize, bits: u32) -> Option<usize> {
    let start = u32::try_from(depth).ok()?.checked_mul(bits)?;
    if start.checked_add(bits)? > HASH_BITS {
        return None;
    }
    Some(((hash << start) >> (HASH_BITS - bits)) as usize)
}

/// The number of levels a trie of `bits` per level can have.
fn max_levels(bits: u32) -> usize {
    (HASH_BITS / bits) as usize
}

/// Encodes occupied slots as Kubo's bitfield: big-endian, leading zero bytes dropped.
fn encode_bitfield(slots: &[usize], fanout: u64) -> Vec<u8> {
    let len = (fanout / 8) as usize;
    let mut bf = vec![0u8; len];
    for &s in slots {
        bf[len - 1 - s / 8] |= 1 << (s % 8);
    }
    let first = bf.iter().position(|&b| b != 0).unwrap_or(len);
    bf.split_off(first)
}

/// The UnixFS data of a shard node, as Kubo writes it.
fn shard_data(bitfield: Vec<u8>, fanout: u64) -> Bytes {
    let mut fs = UnixFs::hamt_shard(Bytes::from(bitfield), fanout);
    if fs.data.as_ref().is_some_and(|d| d.is_empty()) {
        // Go leaves a nil bitfield out of the message entirely.
        fs.data = None;
    }
    fs.to_bytes()
}

/// A link size as Kubo writes it: sizes above `i64::MAX` are written as 0.
fn written_tsize(tsize: u64) -> u64 {
    if tsize > i64::MAX as u64 {
        0
    } else {
        tsize
    }
}

/// Builds the HAMT of a directory over `entries` (each a link with the entry's name, CID
/// and Tsize), exactly as Kubo would, with `fanout` slots per shard ([`DEFAULT_FANOUT`])
/// and shard CIDs in `format`.
///
/// Every shard block is handed to `sink`, children before their parent, the root last.
/// Returns the root's CID and its cumulative size (the Tsize a parent directory's link to it
/// carries). The order of `entries` does not matter. A missing Tsize counts as 0.
pub fn build(
    entries: Vec<PbLink>,
    fanout: u64,
    format: CidFormat,
    sink: &mut dyn FnMut(Block),
) -> Result<(Cid, u64), HamtError> {
    let bits = fanout_bits(fanout)?;
    let mut items = Vec::with_capacity(entries.len());
    for link in entries {
        if link.name().is_empty() {
            return Err(HamtError::EmptyName);
        }
        items.push((hash_name(link.name()), link));
    }
    // Sorting by hash puts every group of names that shares a slot path next to each other,
    // in slot order at every level.
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name().cmp(b.1.name())));
    if let Some(w) = items.windows(2).find(|w| w[0].1.name() == w[1].1.name()) {
        return Err(HamtError::DuplicateName(w[0].1.name().to_owned()));
    }
    let mut builder = Builder { fanout, bits, format, sink };
    builder.shard(&items, 0)
}

/// The fixed parameters of one [`build`].
struct Builder<'s> {
    fanout: u64,
    bits: u32,
    format: CidFormat,
    sink: &'s mut dyn FnMut(Block),
}

impl Builder<'_> {
    /// Builds the shard at `depth` over `items` (sorted by hash, all sharing the slots
    /// above `depth`), emits it and returns its CID and cumulative size.
    fn shard(&mut self, items: &[(u64, PbLink)], depth: usize) -> Result<(Cid, u64), HamtError> {
        let mut links = Vec::new();
        let mut slots = Vec::new();
        let mut total: u64 = 0;
        let mut i = 0;
        while i < items.len() {
            // The caller only builds levels the hash can index.
            let idx = slot(items[i].0, depth, self.bits).unwrap_or_default();
            let mut j = i + 1;
            while j < items.len() && slot(items[j].0, depth, self.bits) == Some(idx) {
                j += 1;
            }
            let prefix = link_prefix(idx as u64, self.fanout);
            let (cid, name, tsize) = if j - i == 1 {
                let entry = &items[i].1;
                (entry.cid, prefix + entry.name(), entry.tsize.unwrap_or(0))
            } else {
                if slot(items[i].0, depth + 1, self.bits).is_none() {
                    return Err(HamtError::HashCollision {
                        first: items[i].1.name().to_owned(),
                        second: items[i + 1].1.name().to_owned(),
                    });
                }
                let (cid, tsize) = self.shard(&items[i..j], depth + 1)?;
                (cid, prefix, tsize)
            };
            // Go sums sizes in wrapping uint64 arithmetic.
            total = total.wrapping_add(tsize);
            links.push(PbLink { cid, name: Some(name), tsize: Some(written_tsize(tsize)) });
            slots.push(idx);
            i = j;
        }
        let node = PbNode { links, data: Some(shard_data(encode_bitfield(&slots, self.fanout), self.fanout)) };
        let bytes = Bytes::from(node.encode());
        let cid = self.format.cid(DAG_PB, &bytes);
        let size = (bytes.len() as u64).wrapping_add(total);
        (self.sink)(Block::new_unchecked(cid, bytes));
        Ok((cid, size))
    }
}

/// A shard node's layout, checked against its links.
#[derive(Debug, Clone)]
struct Layout {
    fanout: u64,
    bits: u32,
    width: usize,
    /// The bitfield at its full length of `fanout / 8` bytes, big-endian.
    bitfield: Vec<u8>,
}

impl Layout {
    /// Checks a shard node: its UnixFS type, hash and fanout (equal to `expect_fanout` when
    /// given), its bitfield, and that its links carry exactly the occupied slots, in order.
    fn check(node: &PbNode, fs: &UnixFs, expect_fanout: Option<u64>) -> Result<Layout, HamtError> {
        if fs.kind()? != DataType::HamtShard {
            return Err(HamtError::NotAShard);
        }
        let hash = fs.hash_type.unwrap_or(0);
        if hash != HAMT_HASH_MURMUR3 {
            return Err(UnixFsError::BadHamtHash(hash).into());
        }
        let fanout = fs.fanout.unwrap_or(0);
        if let Some(expected) = expect_fanout {
            if fanout != expected {
                return Err(HamtError::FanoutMismatch { expected, found: fanout });
            }
        }
        let bits = fanout_bits(fanout)?;
        let len = (fanout / 8) as usize;
        let raw = fs.data.as_deref().unwrap_or_default();
        if raw.len() > len {
            return Err(HamtError::BadBitfield { len: raw.len(), fanout });
        }
        let mut bitfield = vec![0u8; len - raw.len()];
        bitfield.extend_from_slice(raw);
        let layout = Layout { fanout, bits, width: prefix_width(fanout), bitfield };
        let ones = layout.bitfield.iter().map(|b| b.count_ones() as usize).sum::<usize>();
        if ones != node.links.len() {
            return Err(HamtError::BitfieldMismatch { ones, links: node.links.len() });
        }
        let occupied = (0..fanout as usize).filter(|&i| layout.has(i));
        for (link, expected) in node.links.iter().zip(occupied) {
            let name = link.name();
            let idx = layout.prefix_of(name).ok_or_else(|| HamtError::BadLinkName { name: name.to_owned() })?;
            if idx != expected {
                return Err(HamtError::LinkOutOfPlace { name: name.to_owned(), expected: expected as u64 });
            }
        }
        Ok(layout)
    }

    /// Whether slot `i` is occupied.
    fn has(&self, i: usize) -> bool {
        let len = self.bitfield.len();
        i / 8 < len && self.bitfield[len - 1 - i / 8] & (1 << (i % 8)) != 0
    }

    /// The position among the links of slot `i`: the number of occupied slots below it.
    fn ones_before(&self, i: usize) -> usize {
        let len = self.bitfield.len();
        let byte = len - 1 - i / 8;
        let below = (self.bitfield[byte] & ((1u16 << (i % 8)) - 1) as u8).count_ones() as usize;
        below + self.bitfield[byte + 1..].iter().map(|b| b.count_ones() as usize).sum::<usize>()
    }

    /// The slot named by the hex prefix of a link name, if it is valid.
    fn prefix_of(&self, name: &str) -> Option<usize> {
        let prefix = name.get(..self.width)?;
        if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let idx = usize::from_str_radix(prefix, 16).ok()?;
        (idx < self.fanout as usize).then_some(idx)
    }

    /// Whether a (checked) link leads to a child shard rather than to an entry.
    fn is_shard_link(&self, link: &PbLink) -> bool {
        link.name().len() == self.width
    }
}

/// Fetches, decodes and checks the child shard `cid` of a shard with `fanout`.
fn load_shard<S: BlockSource + ?Sized>(source: &S, cid: &Cid, fanout: u64) -> Result<(PbNode, Layout), HamtError> {
    let in_shard = |e: HamtError| HamtError::InShard { shard: *cid, source: Box::new(e) };
    if cid.codec() != DAG_PB {
        return Err(in_shard(HamtError::NotAShard));
    }
    let bytes = source.get(cid)?;
    let node = PbNode::decode(&bytes).map_err(|e| in_shard(e.into()))?;
    let fs = UnixFs::decode(node.data.clone().unwrap_or_default()).map_err(|e| in_shard(e.into()))?;
    let layout = Layout::check(&node, &fs, Some(fanout)).map_err(in_shard)?;
    Ok((node, layout))
}

/// One step of a lookup inside one shard.
enum Step {
    Found(PbLink),
    Absent,
    Descend(Cid),
}

/// Looks `name` up in the slot its hash gives at `depth` of a checked shard.
fn step(node: &PbNode, layout: &Layout, hash: u64, depth: usize, name: &str) -> Step {
    let Some(idx) = slot(hash, depth, layout.bits) else {
        return Step::Absent;
    };
    if !layout.has(idx) {
        return Step::Absent;
    }
    let Some(link) = node.links.get(layout.ones_before(idx)) else {
        return Step::Absent;
    };
    if layout.is_shard_link(link) {
        return Step::Descend(link.cid);
    }
    match link.name().get(layout.width..) {
        Some(entry) if entry == name => {
            Step::Found(PbLink { cid: link.cid, name: Some(name.to_owned()), tsize: link.tsize })
        }
        _ => Step::Absent,
    }
}

/// Finds the entry `name` in the sharded directory whose root shard is `node` (with its
/// decoded UnixFS data `fs`), reading only the child shards on the way to it.
///
/// Returns the entry's link with its plain name (no slot prefix), or `None` when the
/// directory has no such entry. Every shard on the way is checked as described in the
/// [module documentation](self).
pub fn lookup<S: BlockSource + ?Sized>(
    source: &S,
    node: &PbNode,
    fs: &UnixFs,
    name: &str,
) -> Result<Option<PbLink>, HamtError> {
    let layout = Layout::check(node, fs, None)?;
    let levels = max_levels(layout.bits);
    let hash = hash_name(name);
    let mut next = step(node, &layout, hash, 0, name);
    let mut depth = 0;
    loop {
        match next {
            Step::Found(link) => return Ok(Some(link)),
            Step::Absent => return Ok(None),
            Step::Descend(cid) => {
                depth += 1;
                if depth >= levels {
                    return Err(HamtError::TooDeep { shard: cid, depth });
                }
                let (child, child_layout) = load_shard(source, &cid, layout.fanout)?;
                next = step(&child, &child_layout, hash, depth, name);
            }
        }
    }
}

/// Where a listing of a sharded directory is: the shards on the current path and the links
/// of each still to list. It holds no source, so it can be kept between reads: a listing
/// that stops at a shard being fetched ([`SourceError::Pending`]) keeps its place, and
/// [`Cursor::next`] called again once the shard is in goes on from there. Any other error
/// ends the listing.
///
/// Entries come depth first through child shards in slot order: the order of Kubo's
/// sequential walk (`ForEachLink`), which is also ascending order of [`hash_name`]. (Kubo's
/// parallel listing has no fixed order.) Each item is an entry's plain name and its link
/// (whose `name` is that plain name too). Only the shards on the current path are held, so
/// memory is bounded by the trie's depth (and each shard by the block size).
#[derive(Debug, Clone)]
pub struct Cursor {
    fanout: u64,
    width: usize,
    levels: usize,
    stack: Vec<Frame>,
    /// Child shards met so far: each may be listed once.
    shards: std::collections::HashSet<Cid>,
}

/// One shard being listed: its remaining links and its depth.
#[derive(Debug, Clone)]
struct Frame {
    links: std::vec::IntoIter<PbLink>,
    depth: usize,
}

impl Cursor {
    /// Starts listing the sharded directory whose root shard is `node`, with its decoded
    /// UnixFS data `fs`. The root is checked at once; child shards as they are reached.
    pub fn new(node: PbNode, fs: UnixFs) -> Result<Self, HamtError> {
        let layout = Layout::check(&node, &fs, None)?;
        Ok(Cursor {
            fanout: layout.fanout,
            width: layout.width,
            levels: max_levels(layout.bits),
            stack: vec![Frame { links: node.links.into_iter(), depth: 0 }],
            shards: std::collections::HashSet::new(),
        })
    }

    /// The next entry, reading child shards from `source` as they are reached; `None` at
    /// the end. A shard being fetched is said once (its [`HamtError::Source`] is pending),
    /// after hinting `source` of the shards ahead, and the cursor stays where it was.
    pub fn next<S: BlockSource + ?Sized>(&mut self, source: &S) -> Option<Result<(String, PbLink), HamtError>> {
        match self.advance(source) {
            Ok(item) => item.map(Ok),
            Err(e) => {
                if matches!(&e, HamtError::Source(s) if s.pending().is_some()) {
                    self.prefetch_shards(source);
                } else {
                    self.stack.clear();
                }
                Some(Err(e))
            }
        }
    }

    /// The entries just ahead at the current level, up to `n` (child shards ahead are not
    /// entered): what a reader can ask for before it stops.
    pub fn ahead(&self, n: usize) -> impl Iterator<Item = &PbLink> + '_ {
        let width = self.width;
        self.stack.last().into_iter().flat_map(|f| f.links.as_slice()).filter(move |l| l.name().len() > width).take(n)
    }

    fn advance<S: BlockSource + ?Sized>(&mut self, source: &S) -> Result<Option<(String, PbLink)>, HamtError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let depth = frame.depth;
            let Some(next) = frame.links.as_slice().first() else {
                self.stack.pop();
                continue;
            };
            if next.name().len() == self.width {
                let shard = next.cid;
                if depth + 1 >= self.levels {
                    return Err(HamtError::TooDeep { shard, depth: depth + 1 });
                }
                if self.shards.contains(&shard) {
                    return Err(HamtError::RepeatedShard(shard));
                }
                // Taken off the frame only once it is read: a shard being fetched is
                // reached again when the listing goes on.
                let (child, _) = load_shard(source, &shard, self.fanout)?;
                frame.links.next();
                self.shards.insert(shard);
                self.stack.push(Frame { links: child.links.into_iter(), depth: depth + 1 });
                continue;
            }
            let Some(mut link) = frame.links.next() else { continue };
            // Checked when the shard was loaded: the name starts with `width` hex digits.
            let entry = link.name().get(self.width..).unwrap_or_default().to_owned();
            link.name = Some(entry.clone());
            return Ok(Some((entry, link)));
        }
    }

    /// The listing stopped at a shard that is to be fetched: the shards still ahead on the
    /// current path (at most the fanout a level) are hinted to the source too, so that the
    /// listing gone on with finds them on their way rather than stopping at each in turn.
    fn prefetch_shards<S: BlockSource + ?Sized>(&self, source: &S) {
        for (i, frame) in self.stack.iter().enumerate() {
            let shards = frame.links.as_slice().iter().filter(|l| l.name().len() == self.width);
            // The one being fetched heads the top frame.
            let skip = usize::from(i + 1 == self.stack.len());
            for link in shards.skip(skip) {
                source.prefetch(&link.cid);
            }
        }
    }
}

/// A [`Cursor`] with its source, as an iterator. Any error, a shard being fetched included,
/// is yielded once and ends the iteration.
pub struct Entries<'a, S: BlockSource + ?Sized> {
    source: &'a S,
    cursor: Cursor,
}

impl<S: BlockSource + ?Sized> std::fmt::Debug for Entries<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries").field("cursor", &self.cursor).finish()
    }
}

impl<'a, S: BlockSource + ?Sized> Entries<'a, S> {
    /// Starts listing the sharded directory whose root shard is `node` (see [`Cursor::new`]).
    pub fn new(source: &'a S, node: PbNode, fs: UnixFs) -> Result<Self, HamtError> {
        Ok(Entries { source, cursor: Cursor::new(node, fs)? })
    }
}

impl<S: BlockSource + ?Sized> Iterator for Entries<'_, S> {
    type Item = Result<(String, PbLink), HamtError>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.cursor.next(self.source);
        if matches!(r, Some(Err(_))) {
            self.cursor.stack.clear();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{HashAlg, RAW};
    use crate::source::MemoryBlocks;

    const V0: CidFormat = CidFormat { version: 0, hash: HashAlg::Sha2_256 };
    const V1: CidFormat = CidFormat { version: 1, hash: HashAlg::Sha2_256 };

    fn file_cid(i: usize) -> Cid {
        V1.cid(RAW, format!("content {i}").as_bytes())
    }

    fn entry(name: &str, i: usize) -> PbLink {
        PbLink::new(file_cid(i), name, 100 + i as u64)
    }

    /// Builds `entries` into a fresh block map; returns the map, root node and its UnixFS.
    fn build_into(entries: Vec<PbLink>, fanout: u64) -> (MemoryBlocks, Cid, PbNode, UnixFs) {
        let mut blocks = MemoryBlocks::new();
        let (root, _) = build(entries, fanout, V0, &mut |b| {
            blocks.insert(b);
        })
        .unwrap();
        let (node, fs) = decode_shard(&blocks, &root);
        blocks.reset_reads();
        (blocks, root, node, fs)
    }

    fn decode_shard(blocks: &MemoryBlocks, cid: &Cid) -> (PbNode, UnixFs) {
        let node = PbNode::decode(&blocks.get(cid).unwrap()).unwrap();
        let fs = UnixFs::decode(node.data.clone().unwrap()).unwrap();
        (node, fs)
    }

    /// A shard node with the given links and raw bitfield bytes.
    fn raw_shard(links: Vec<PbLink>, bitfield: &[u8], fanout: u64) -> (PbNode, UnixFs) {
        let fs = UnixFs::hamt_shard(Bytes::copy_from_slice(bitfield), fanout);
        (PbNode { links, data: Some(fs.to_bytes()) }, fs)
    }

    fn list<S: BlockSource + ?Sized>(s: &S, node: PbNode, fs: UnixFs) -> Result<Vec<(String, PbLink)>, HamtError> {
        Entries::new(s, node, fs)?.collect()
    }

    /// Blocks of which some are still to be fetched: those answer `Pending`, and hints are
    /// recorded.
    struct Fetching {
        blocks: MemoryBlocks,
        missing: std::collections::HashSet<Cid>,
        hinted: std::sync::Mutex<Vec<Cid>>,
    }

    impl BlockSource for Fetching {
        fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
            match self.missing.contains(cid) {
                true => Err(SourceError::Pending(*cid)),
                false => self.blocks.get(cid),
            }
        }
        fn prefetch(&self, cid: &Cid) {
            self.hinted.lock().unwrap().push(*cid);
        }
    }

    /// A listing that stops at a child shard being fetched hints every other child shard of
    /// the root, so that the listing started again does not stop at each in turn.
    #[test]
    fn a_listing_stopped_at_a_shard_hints_the_shards_ahead() {
        let entries: Vec<PbLink> = (0..2000).map(|i| entry(&format!("file-{i}"), i)).collect();
        let (blocks, _, node, fs) = build_into(entries, 256);
        let shards: Vec<Cid> = node.links.iter().filter(|l| l.name().len() == 2).map(|l| l.cid).collect();
        assert!(shards.len() > 100, "the root has {} child shards", shards.len());
        let source = Fetching { blocks, missing: shards.iter().copied().collect(), hinted: Default::default() };
        let mut listing = Entries::new(&source, node, fs).unwrap();
        let stop = listing.find_map(Result::err).expect("the listing stops");
        let HamtError::Source(SourceError::Pending(first)) = stop else { panic!("{stop:?}") };
        assert_eq!(first, shards[0]);
        assert_eq!(*source.hinted.lock().unwrap(), shards[1..], "every shard ahead is hinted, in order");
    }

    /// Blocks of which those in the set are still to be fetched.
    struct Lacking<'a>(&'a MemoryBlocks, &'a std::collections::HashSet<Cid>);

    impl BlockSource for Lacking<'_> {
        fn get(&self, cid: &Cid) -> Result<Bytes, SourceError> {
            match self.1.contains(cid) {
                true => Err(SourceError::Pending(*cid)),
                false => self.0.get(cid),
            }
        }
    }

    /// A cursor stopped at each shard being fetched in turn keeps its place: gone on with
    /// once the shard is in, it lists every entry once, in the order of a listing that
    /// never stopped.
    #[test]
    fn a_cursor_stopped_at_a_shard_goes_on_from_where_it_was() {
        let entries: Vec<PbLink> = (0..3000).map(|i| entry(&format!("file-{i}"), i)).collect();
        let (blocks, _, node, fs) = build_into(entries, 256);
        let whole: Vec<String> = list(&blocks, node.clone(), fs.clone()).unwrap().into_iter().map(|e| e.0).collect();
        let mut missing: std::collections::HashSet<Cid> =
            node.links.iter().filter(|l| l.name().len() == 2).map(|l| l.cid).collect();
        let shards = missing.len();
        assert!(shards > 100, "the root has {shards} child shards");
        let mut cursor = Cursor::new(node, fs).unwrap();
        let (mut listed, mut stops) = (Vec::new(), 0);
        loop {
            // A new source each time: the cursor holds none between reads.
            let source = Lacking(&blocks, &missing);
            match cursor.next(&source) {
                None => break,
                Some(Ok((name, _))) => listed.push(name),
                Some(Err(HamtError::Source(SourceError::Pending(shard)))) => {
                    assert!(missing.remove(&shard), "stopped at {shard}, which is not missing");
                    stops += 1;
                }
                Some(Err(e)) => panic!("{e}"),
            }
        }
        assert_eq!(stops, shards, "one stop a shard");
        assert_eq!(listed, whole);
    }

    /// Names whose hashes share their first `bytes` bytes, found by brute force.
    fn colliding(bytes: usize, count: usize) -> Vec<String> {
        let mut seen: std::collections::HashMap<u64, Vec<String>> = std::collections::HashMap::new();
        for i in 0.. {
            let name = format!("n{i}");
            let key = hash_name(&name) >> (64 - 8 * bytes);
            let group = seen.entry(key).or_default();
            group.push(name);
            if group.len() == count {
                return group.clone();
            }
        }
        unreachable!()
    }

    /// Eight blocks: seven levels of full shards whose every slot links the same child shard,
    /// over one shard with one file (as deep as fanout 256 goes). Listed naively, 256^7 =
    /// 2^56 entries.
    fn repeated_link_bomb() -> (MemoryBlocks, PbNode, UnixFs) {
        let mut blocks = MemoryBlocks::new();
        let (bottom, _) = raw_shard(vec![PbLink::new(file_cid(0), "00file".to_owned(), 10)], &[1], 256);
        let bottom = Block::new_unchecked(V1.cid(DAG_PB, &bottom.encode()), Bytes::from(bottom.encode()));
        let mut child = *bottom.cid();
        blocks.insert(bottom);
        let full = [0xffu8; 32];
        for level in 0..7 {
            let links = (0..256).map(|i| PbLink::new(child, link_prefix(i, 256), 100)).collect();
            let (node, fs) = raw_shard(links, &full, 256);
            if level == 6 {
                return (blocks, node, fs);
            }
            let data = Bytes::from(node.encode());
            child = V1.cid(DAG_PB, &data);
            blocks.insert(Block::new_unchecked(child, data));
        }
        unreachable!()
    }

    #[test]
    fn a_shard_linked_twice_ends_the_listing_at_once() {
        let (blocks, node, fs) = repeated_link_bomb();
        let mut listed = 0;
        let mut failed = None;
        for item in Entries::new(&blocks, node, fs).unwrap() {
            match item {
                Ok(_) => listed += 1,
                Err(e) => failed = Some(e),
            }
        }
        assert_eq!(listed, 1, "the one file, once");
        assert!(matches!(failed, Some(HamtError::RepeatedShard(_))), "{failed:?}");
        assert!(blocks.reads() <= 8, "read {} blocks", blocks.reads());
    }

    #[test]
    fn murmur3_is_h1_of_x64_128() {
        // MurmurHash3_x64_128("hello", seed 0) = cbd8a7b341bd9b02 5b1e906a48ae1d19 (h1, h2).
        assert_eq!(hash_name("hello"), 0xcbd8_a7b3_41bd_9b02);
        // The spec's example (unixfs.md, HAMT path resolution): "470.txt" sits in root slot
        // 00 and then slot 6E; "742.txt" in 00 and then FF.
        assert_eq!(hash_name("470.txt") >> 48, 0x006E);
        assert_eq!(hash_name("742.txt") >> 48, 0x00FF);
    }

    #[test]
    fn slots_take_most_significant_bits_first() {
        let h = 0xABCD_EF01_2345_6789u64;
        assert_eq!(slot(h, 0, 8), Some(0xAB));
        assert_eq!(slot(h, 1, 8), Some(0xCD));
        assert_eq!(slot(h, 7, 8), Some(0x89));
        assert_eq!(slot(h, 8, 8), None);
        assert_eq!(slot(h, 0, 10), Some(0xABCD >> 6));
        assert_eq!(slot(h, 1, 10), Some((0x00AB_CDEF >> 4) & 0x3FF));
        assert_eq!(slot(h, 5, 10), Some(((h >> 4) & 0x3FF) as usize));
        assert_eq!(slot(h, 6, 10), None, "fanout 1024 has 6 levels, 4 bits unused");
        assert_eq!(max_levels(8), 8);
        assert_eq!(max_levels(10), 6);
        assert_eq!(max_levels(3), 21);
    }

    #[test]
    fn prefixes_are_padded_upper_hex() {
        assert_eq!(link_prefix(0, 256), "00");
        assert_eq!(link_prefix(10, 256), "0A");
        assert_eq!(link_prefix(255, 256), "FF");
        assert_eq!(link_prefix(0, 1024), "000");
        assert_eq!(link_prefix(1023, 1024), "3FF");
        assert_eq!(link_prefix(7, 8), "7");
        assert_eq!(link_prefix(15, 16), "F");
        assert_eq!(link_prefix(31, 32), "1F");
        assert_eq!(link_prefix(511, 512), "1FF");
    }

    #[test]
    fn bitfield_is_big_endian_and_trimmed() {
        assert_eq!(encode_bitfield(&[0], 256), [0x01]);
        assert_eq!(encode_bitfield(&[0, 7], 256), [0x81]);
        assert_eq!(encode_bitfield(&[8], 256), [0x01, 0x00]);
        let mut top = vec![0x80];
        top.extend([0; 31]);
        assert_eq!(encode_bitfield(&[255], 256), top);
        assert_eq!(encode_bitfield(&(0..256).collect::<Vec<_>>(), 256), [0xFF; 32]);
        assert!(encode_bitfield(&[], 256).is_empty());
        // An empty bitfield is left out of the message, as Go does with a nil slice.
        let fs = <UnixFs as prost::Message>::decode(shard_data(Vec::new(), 256)).unwrap();
        assert_eq!(fs.data, None);
        assert_eq!(shard_data(vec![0x01], 256).as_ref(), [0x08, 0x05, 0x12, 0x01, 0x01, 0x28, 0x22, 0x30, 0x80, 0x02]);
    }

    #[test]
    fn layout_reads_trimmed_and_full_bitfields() {
        let mut full = [0u8; 32];
        full[31] = 0b0000_0101;
        full[0] = 0x80;
        let fs = UnixFs::hamt_shard(Bytes::from(full[..].to_vec()), 256);
        let links: Vec<_> = ["00a", "02b", "FFc"].iter().map(|n| entry(n, 0)).collect();
        let node = PbNode { links, data: Some(fs.to_bytes()) };
        let l = Layout::check(&node, &fs, None).unwrap();
        assert!(l.has(0) && !l.has(1) && l.has(2) && l.has(255));
        assert_eq!((l.ones_before(0), l.ones_before(2), l.ones_before(3), l.ones_before(255)), (0, 1, 2, 2));
    }

    #[test]
    fn the_switch_is_over_the_threshold_unless_told_equality() {
        let v0 = V0.cid(DAG_PB, b"x");
        let links = vec![PbLink::new(v0, "abc", 1), PbLink::new(file_cid(1), "", 1)];
        assert_eq!(estimated_dir_size(&links), 3 + 34 + 36);
        let block = crate::dagpb::encoded_len(&links, Some(2));
        assert_eq!(block, PbNode { links: links.clone(), data: Some(Bytes::from_static(&[8, 1])) }.encode().len());
        let at = |threshold, estimation| Sharding { threshold, estimation, ..Sharding::default() };
        assert!(!at(73, SizeEstimation::Links).should_shard(&links, 2), "equal stays plain (Kubo >= 0.40)");
        assert!(at(72, SizeEstimation::Links).should_shard(&links, 2));
        assert!(Sharding { at_threshold: true, ..at(73, SizeEstimation::Links) }.should_shard(&links, 2));
        assert!(!at(block, SizeEstimation::Block).should_shard(&links, 2));
        assert!(at(block - 1, SizeEstimation::Block).should_shard(&links, 2));
        assert!(!at(1, SizeEstimation::Disabled).should_shard(&links, 2), "disabled: links only");
        let capped = |max_links, threshold| Sharding { max_links, threshold, ..Sharding::default() };
        assert!(capped(1, SHARDING_THRESHOLD).should_shard(&links, 2), "2 links over a cap of 1");
        assert!(!capped(2, SHARDING_THRESHOLD).should_shard(&links, 2));
        assert!(Sharding { estimation: SizeEstimation::Disabled, ..capped(1, 9) }.should_shard(&links, 2));
        assert!(!capped(1, 0).should_shard(&links, 2), "a threshold of 0 turns sharding off");
        for e in [SizeEstimation::Links, SizeEstimation::Block, SizeEstimation::Disabled] {
            assert_eq!(e.as_str().parse::<SizeEstimation>(), Ok(e));
        }
        assert!("bytes".parse::<SizeEstimation>().is_err());
    }

    #[test]
    fn single_entries_sit_in_root_slots() {
        let (_, _, node, fs) = build_into(vec![entry("hello", 1)], 256);
        assert_eq!(node.links.len(), 1);
        let idx = hash_name("hello") >> 56;
        assert_eq!(node.links[0].name(), format!("{idx:02X}hello"));
        assert_eq!(node.links[0].tsize, Some(101));
        assert_eq!(fs.fanout, Some(256));
        assert_eq!(fs.hash_type, Some(0x22));
        assert_eq!(fs.filesize, None);
        assert!(fs.blocksizes.is_empty());
        assert_eq!(fs.data.unwrap().as_ref(), encode_bitfield(&[idx as usize], 256));
    }

    #[test]
    fn colliding_names_get_a_child_shard() {
        let names = colliding(1, 2);
        let prefix = format!("{:02X}", hash_name(&names[0]) >> 56);
        let mut entries: Vec<_> = names.iter().enumerate().map(|(i, n)| entry(n, i)).collect();
        entries.push(entry("other", 9));
        let mut emitted = Vec::new();
        let (root, tsize) = build(entries, 256, V1, &mut |b| emitted.push(b)).unwrap();
        assert_eq!(emitted.len(), 2, "one child shard and the root");
        assert_eq!(emitted[1].cid(), &root, "the root comes last");
        let child = PbNode::decode(emitted[0].data()).unwrap();
        let top = PbNode::decode(emitted[1].data()).unwrap();
        let link = top.links.iter().find(|l| l.name() == prefix).expect("child shard link named by its slot only");
        assert_eq!(link.cid, *emitted[0].cid());
        assert_eq!(link.tsize, Some(emitted[0].data().len() as u64 + 100 + 101));
        assert_eq!(child.links.len(), 2);
        for l in &child.links {
            let name = &l.name()[2..];
            assert!(names.iter().any(|n| n == name));
            assert_eq!(l.name()[..2], format!("{:02X}", (hash_name(name) >> 48) & 0xFF));
        }
        assert!(child.links[0].name() < child.links[1].name());
        let total: u64 = emitted.iter().map(|b| b.data().len() as u64).sum::<u64>() + 100 + 101 + 109;
        assert_eq!(tsize, total);
        assert_eq!(root.version(), cid::Version::V1);
    }

    #[test]
    fn names_sharing_two_bytes_nest_twice() {
        let names = colliding(2, 2);
        let (blocks, _, node, fs) = build_into(names.iter().enumerate().map(|(i, n)| entry(n, i)).collect(), 256);
        assert_eq!(blocks.len(), 3);
        assert_eq!(node.links.len(), 1);
        assert_eq!(node.links[0].name().len(), 2);
        for (i, n) in names.iter().enumerate() {
            let found = lookup(&blocks, &node, &fs, n).unwrap().unwrap();
            assert_eq!((found.name(), found.cid), (n.as_str(), file_cid(i)));
        }
        assert_eq!(blocks.reads(), 4, "two child shards per lookup");
    }

    #[test]
    fn round_trip_lists_in_hash_order_and_finds_everything() {
        let n = 3000;
        let names: Vec<String> = (0..n).map(|i| format!("file-{i}.bin")).collect();
        let entries: Vec<_> = names.iter().enumerate().map(|(i, s)| entry(s, i)).collect();
        let mut total = 0u64;
        let mut blocks = MemoryBlocks::new();
        let (root, tsize) = build(entries.clone(), 256, V0, &mut |b| {
            total += b.data().len() as u64;
            blocks.insert(b);
        })
        .unwrap();
        assert_eq!(tsize, total + entries.iter().map(|e| e.tsize.unwrap()).sum::<u64>());
        let (node, fs) = decode_shard(&blocks, &root);
        let listed = list(&blocks, node.clone(), fs.clone()).unwrap();
        assert_eq!(listed.len(), n);
        assert!(listed.windows(2).all(|w| hash_name(&w[0].0) <= hash_name(&w[1].0)));
        let mut got: Vec<_> = listed.iter().map(|(name, l)| (name.clone(), l.cid, l.tsize)).collect();
        got.sort();
        let mut want: Vec<_> = entries.iter().map(|e| (e.name().to_owned(), e.cid, e.tsize)).collect();
        want.sort();
        assert_eq!(got, want);
        for e in &entries {
            assert_eq!(lookup(&blocks, &node, &fs, e.name()).unwrap().as_ref(), Some(e));
        }
        for absent in ["", "file-3000.bin", "x", "file-1.bin/"] {
            assert_eq!(lookup(&blocks, &node, &fs, absent).unwrap(), None);
        }
        // The input order does not change the result.
        let mut reversed = entries;
        reversed.reverse();
        assert_eq!(build(reversed, 256, V0, &mut |_| {}).unwrap(), (root, tsize));
    }

    #[test]
    fn other_fanouts_round_trip() {
        for fanout in [8, 16, 32, 1024] {
            let entries: Vec<_> = (0..500).map(|i| entry(&format!("e{i}"), i)).collect();
            let (blocks, _, node, fs) = build_into(entries.clone(), fanout);
            let width = prefix_width(fanout);
            assert!(node.links.iter().all(|l| l.name().len() >= width));
            assert_eq!(list(&blocks, node.clone(), fs.clone()).unwrap().len(), 500, "fanout {fanout}");
            for e in &entries {
                assert_eq!(lookup(&blocks, &node, &fs, e.name()).unwrap().as_ref(), Some(e), "fanout {fanout}");
            }
        }
    }

    #[test]
    fn build_refuses_bad_input() {
        for fanout in [0, 2, 3, 4, 100, 2048] {
            assert!(
                matches!(build(vec![entry("a", 1)], fanout, V0, &mut |_| {}), Err(HamtError::BadFanout(f)) if f == fanout)
            );
        }
        let dup = vec![entry("a", 1), entry("b", 2), entry("a", 3)];
        assert!(matches!(build(dup, 256, V0, &mut |_| {}), Err(HamtError::DuplicateName(n)) if n == "a"));
        let unnamed = vec![PbLink { cid: file_cid(1), name: None, tsize: Some(1) }];
        assert!(matches!(build(unnamed, 256, V0, &mut |_| {}), Err(HamtError::EmptyName)));
        assert!(matches!(build(vec![entry("", 1)], 256, V0, &mut |_| {}), Err(HamtError::EmptyName)));
    }

    #[test]
    fn empty_build_is_an_empty_shard() {
        let mut out = Vec::new();
        let (root, tsize) = build(Vec::new(), 256, V0, &mut |b| out.push(b)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(tsize, out[0].data().len() as u64);
        let node = PbNode::decode(out[0].data()).unwrap();
        let fs = UnixFs::decode(node.data.clone().unwrap()).unwrap();
        assert_eq!(fs.data, None);
        let blocks = MemoryBlocks::new();
        assert_eq!(list(&blocks, node.clone(), fs.clone()).unwrap().len(), 0);
        assert_eq!(lookup(&blocks, &node, &fs, "a").unwrap(), None);
        assert_eq!(root.version(), cid::Version::V0);
    }

    #[test]
    fn bad_fanouts_are_refused_when_reading() {
        let blocks = MemoryBlocks::new();
        for fanout in [0, 2, 3, 4, 2048] {
            let (node, fs) = raw_shard(vec![], &[], fanout);
            assert!(matches!(lookup(&blocks, &node, &fs, "a"), Err(HamtError::BadFanout(f)) if f == fanout));
            assert!(matches!(Entries::new(&blocks, node, fs), Err(HamtError::BadFanout(_))));
        }
        let (node, mut fs) = raw_shard(vec![], &[], 256);
        fs.hash_type = Some(0x12);
        assert!(matches!(lookup(&blocks, &node, &fs, "a"), Err(HamtError::UnixFs(UnixFsError::BadHamtHash(0x12)))));
        let dir = UnixFs::directory();
        assert!(matches!(lookup(&blocks, &node, &dir, "a"), Err(HamtError::NotAShard)));

        // A child shard with a fanout UnixFS refuses, or one differing from its parent.
        for fanout in [3u64, 2048, 4, 512] {
            let (child, _) = raw_shard(vec![], &[], fanout);
            let mut blocks = MemoryBlocks::new();
            let child_cid = V0.cid(DAG_PB, &child.encode());
            blocks.insert(Block::new_unchecked(child_cid, Bytes::from(child.encode())));
            let (root, fs) = raw_shard(vec![PbLink::new(child_cid, "00", 1)], &[1], 256);
            let err = list(&blocks, root, fs).unwrap_err();
            let HamtError::InShard { shard, source } = &err else {
                panic!("{err}");
            };
            assert_eq!(*shard, child_cid);
            match fanout {
                3 | 2048 => {
                    assert!(matches!(**source, HamtError::UnixFs(UnixFsError::BadFanout(f)) if f == fanout), "{err}")
                }
                _ => assert!(
                    matches!(**source, HamtError::FanoutMismatch { expected: 256, found } if found == fanout),
                    "{err}"
                ),
            }
        }
    }

    #[test]
    fn malformed_shards_are_refused() {
        let blocks = MemoryBlocks::new();
        let check = |links: Vec<PbLink>, bitfield: &[u8], fanout: u64| {
            let (node, fs) = raw_shard(links, bitfield, fanout);
            let a = lookup(&blocks, &node, &fs, "x").unwrap_err();
            let b = Entries::new(&blocks, node, fs).unwrap_err();
            assert_eq!(a.to_string(), b.to_string());
            a
        };
        // Bitfield and link count disagree.
        let e = check(vec![entry("00a", 1), entry("01b", 2)], &[0x01], 256);
        assert!(matches!(e, HamtError::BitfieldMismatch { ones: 1, links: 2 }), "{e}");
        let e = check(vec![entry("00a", 1)], &[0x03], 256);
        assert!(matches!(e, HamtError::BitfieldMismatch { ones: 2, links: 1, .. }), "{e}");
        // Bitfield longer than the fanout allows.
        let e = check(vec![entry("00a", 1)], &[0, 0, 1], 8);
        assert!(matches!(e, HamtError::BadBitfield { len: 3, fanout: 8, .. }), "{e}");
        // Prefixes that are not hex, too short, or not below the fanout.
        for bad in ["ZZa", "0", "", "+1a", "\u{e9}a"] {
            let e = check(vec![entry(bad, 1)], &[0x01], 256);
            assert!(matches!(e, HamtError::BadLinkName { .. }), "{bad:?}: {e}");
        }
        let e = check(vec![entry("200a", 1)], &[0x01], 512);
        assert!(matches!(e, HamtError::BadLinkName { .. }), "{e}");
        // A prefix the bitfield does not put there, and links out of order.
        let e = check(vec![entry("01a", 1)], &[0x01], 256);
        assert!(matches!(e, HamtError::LinkOutOfPlace { expected: 0, .. }), "{e}");
        let e = check(vec![entry("01a", 1), entry("00b", 2)], &[0x03], 256);
        assert!(matches!(e, HamtError::LinkOutOfPlace { expected: 0, .. }), "{e}");
        // Lower-case hex is accepted.
        let (node, fs) = raw_shard(vec![entry("0a", 1), entry("0bname", 2)], &[0x0C, 0x00], 256);
        assert!(Layout::check(&node, &fs, None).is_ok());
    }

    #[test]
    fn child_links_must_lead_to_shards() {
        let mut blocks = MemoryBlocks::new();
        let dir = PbNode { links: vec![], data: Some(UnixFs::directory().to_bytes()) };
        let dir_bytes = Bytes::from(dir.encode());
        let dir_cid = V0.cid(DAG_PB, &dir_bytes);
        blocks.insert(Block::new_unchecked(dir_cid, dir_bytes));
        let raw = V1.cid(RAW, b"raw");
        blocks.insert(Block::new_unchecked(raw, Bytes::from_static(b"raw")));
        let garbage_cid = V0.cid(DAG_PB, b"\xff\xff");
        blocks.insert(Block::new_unchecked(garbage_cid, Bytes::from_static(b"\xff\xff")));
        for (target, want) in [(dir_cid, "not a HAMTShard"), (raw, "not a HAMTShard"), (garbage_cid, "dag-pb")] {
            let (node, fs) = raw_shard(vec![PbLink::new(target, "00", 1)], &[0x01], 256);
            let e = list(&blocks, node, fs).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        // A missing child shard is a source error, yielded once, then the listing ends.
        let missing = V0.cid(DAG_PB, b"missing");
        let (node, fs) = raw_shard(vec![entry("00a", 1), PbLink::new(missing, "01", 1), entry("02c", 2)], &[0x07], 256);
        let mut it = Entries::new(&blocks, node, fs).unwrap();
        assert_eq!(it.next().unwrap().unwrap().0, "a");
        assert!(matches!(it.next(), Some(Err(HamtError::Source(SourceError::NotFound(c)))) if c == missing));
        assert!(it.next().is_none());
    }

    #[test]
    fn a_shard_linking_to_itself_is_an_error() {
        // Fill every slot with a link to the shard itself: any name leads back into it.
        let cid = V0.cid(DAG_PB, b"the shard claims this CID");
        let links: Vec<_> = (0..256).map(|i| PbLink::new(cid, format!("{i:02X}"), 1)).collect();
        let (node, fs) = raw_shard(links, &[0xFF; 32], 256);
        let mut blocks = MemoryBlocks::new();
        blocks.insert(Block::new_unchecked(cid, Bytes::from(node.encode())));
        let e = lookup(&blocks, &node, &fs, "anything").unwrap_err();
        assert!(matches!(e, HamtError::TooDeep { depth: 8, .. }), "{e}");
        assert_eq!(blocks.reads(), 7);
        // A listing meets the shard a second time at once.
        let e = list(&blocks, node, fs).unwrap_err();
        assert!(matches!(e, HamtError::RepeatedShard(c) if c == cid), "{e}");
    }

    #[test]
    fn tsize_beyond_i64_is_written_as_zero() {
        let big = PbLink::new(file_cid(1), "big", u64::MAX);
        let mut out = Vec::new();
        let (_, tsize) = build(vec![big, entry("small", 2)], 256, V0, &mut |b| out.push(b)).unwrap();
        let node = PbNode::decode(out[0].data()).unwrap();
        let l = node.links.iter().find(|l| l.name().ends_with("big")).unwrap();
        assert_eq!(l.tsize, Some(0));
        assert_eq!(tsize, (out[0].data().len() as u64).wrapping_add(u64::MAX).wrapping_add(102));
    }
}
