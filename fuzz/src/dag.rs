//! The DAG script: fuzz bytes that build a map of hostile blocks, for the DAG-level target.
//!
//! Fuzzing a DAG reader with raw bytes would get nowhere: a link is a hash, and libFuzzer
//! cannot invent the hash of another block it is also inventing. So the input is a script
//! of blocks, each of which links to earlier blocks *by index*, and [`build`] computes the
//! real CIDs in order. Every block is stored under its sha2-256 and blake3 multihashes (and
//! inline as an identity CID when it is small), and each link picks the [`form`] of the CID
//! it uses, so one block can be reached under several CIDs: CIDv0 and CIDv1, the wrong
//! codec, another hash, or a CID nobody has.
//!
//! The script makes the shapes that DAG bombs are made of cheap to reach: a link can be
//! repeated (a directory whose every entry is the same subdirectory, a file whose every
//! child is the same block), a HAMT shard record computes its own bitfield and slot prefixes
//! (so a shard whose every slot links the same child shard is a few bytes), and a file node
//! can take its `blocksizes` from its children, so sizes stay consistent while they grow
//! past what any reader may allocate. Blocks are hashed in order, so a script cannot make a
//! cycle, exactly as real hashes cannot.
//!
//! # Format
//!
//! Integers are little-endian; [`Input`] reads zeros past the end, so every byte string is a
//! script.
//!
//! ```text
//! header:  root_form:u8  offset:u32  len:u16 (0: to the end)  choice:u8
//! record:  kind:u8 (mod 5), then by kind:
//!   0 raw   bytes:u16-prefixed
//!   1 pb    data_mode:u8 (mod 3)
//!             0: no Data   1: Data = u16-prefixed bytes
//!             2: UnixFS: type:u8 (mod 8) flags:u8 [data:u16-prefixed if flags&1]
//!                [filesize:u64 if &2] [fanout:u64 if &4] [hashType:u64 if &8]
//!                [mode:u32 if &32] count:u8 blocksizes:u64*count
//!                (flags&16: blocksizes are the children's file sizes, and filesize, when
//!                present, their sum plus the inline data)
//!           links:u8, each  target:u8 form:u8 repeat:u8 flags:u8
//!                           [name:u8-prefixed if flags&1] [tsize:u64 if flags&2]
//!   2 hamt  fanout_log:u8 (fanout = 1 << (v mod 12)) flags:u8
//!             (&1: hashType 0x12 instead of murmur3  &2: bitfield = u8-prefixed bytes
//!              instead of the computed one  &4: no fanout field)
//!           links:u8, each  slot:u16 target:u8 form:u8 repeat:u8 suffix:u8-prefixed
//!                           flags:u8 [tsize:u64 if flags&1]
//!             (a link is named by its slot's hex prefix and the suffix; an empty suffix
//!              makes it a link to a child shard; a repeat fills the following slots)
//!   3 cbor  links:u8, each target:u8 form:u8; then text:u8-prefixed
//!   4 json  the same, as DAG-JSON
//! ```
//!
//! The root is the last block, named in `root_form`. At most [`MAX_BLOCKS`] records and
//! [`MAX_LINKS`] links per node are built; the rest of the input is ignored.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_merkle::dagpb::{PbLink, PbNode};
use cairn_merkle::hamt::link_prefix;
use cairn_merkle::hash::{HashAlg, DAG_CBOR, DAG_JSON, DAG_PB, IDENTITY, RAW, SHA2_256};
use cairn_merkle::unixfs::{DataType, UnixFs, HAMT_HASH_MURMUR3};
use cairn_merkle::{Block, Cid, MemoryBlocks};
use cid::multihash::Multihash;
use ipld_core::ipld::Ipld;

use crate::input::{Input, Output};

/// The most blocks one script builds.
pub const MAX_BLOCKS: usize = 100;
/// The most links one node gets, repeats included.
pub const MAX_LINKS: usize = 1024;
/// The longest block inlined as an identity CID.
pub const MAX_INLINE: usize = 64;

/// The CID forms a link (or the root) can use for a block; the byte is taken modulo
/// [`form::COUNT`].
pub mod form {
    /// CIDv0 (dag-pb, sha2-256), whatever the block is.
    pub const V0: u8 = 0;
    /// CIDv1 with the block's own codec, sha2-256.
    pub const SHA2: u8 = 1;
    /// CIDv1 with the block's own codec, blake3.
    pub const BLAKE3: u8 = 2;
    /// CIDv1 claiming the raw codec, sha2-256.
    pub const AS_RAW: u8 = 3;
    /// CIDv1 claiming dag-pb, sha2-256.
    pub const AS_PB: u8 = 4;
    /// The block inline as an identity CID (sha2-256 when it is over the inline limit).
    pub const IDENTITY: u8 = 5;
    /// A CID of bytes nobody has.
    pub const DANGLING: u8 = 6;
    /// How many forms there are.
    pub const COUNT: u8 = 7;
}

/// Record kinds.
pub mod kind {
    /// A raw block.
    pub const RAW: u8 = 0;
    /// A dag-pb node.
    pub const PB: u8 = 1;
    /// A HAMT shard with computed bitfield and slot names.
    pub const HAMT: u8 = 2;
    /// A dag-cbor block of links.
    pub const CBOR: u8 = 3;
    /// A dag-json block of links.
    pub const JSON: u8 = 4;
    /// How many kinds there are.
    pub const COUNT: u8 = 5;
}

/// One block built by the script.
#[derive(Debug, Clone)]
struct Built {
    data: Bytes,
    codec: u64,
    /// What a parent's automatic `blocksizes` takes for it: a raw block's length, a dag-pb
    /// file node's declared size, else 0.
    file_size: u64,
}

/// The blocks a script built, and what a target needs to read them.
#[derive(Debug)]
pub struct Dag {
    /// Every block, under each of its multihashes.
    pub blocks: MemoryBlocks,
    /// The root.
    pub root: Cid,
    /// Records built.
    pub count: usize,
    /// Distinct multihashes stored (a bound on distinct successful reads).
    pub stored: usize,
    /// The bytes of every stored entry added up (a bound on what a walk that reads each
    /// block once can output).
    pub stored_bytes: u64,
    /// Where a range read starts.
    pub offset: u64,
    /// How long a range read is (`None`: to the end).
    pub len: Option<u64>,
    /// A free choice for the target (scopes, modes).
    pub choice: u8,
}

fn digest(alg: HashAlg, data: &[u8]) -> Multihash<64> {
    alg.digest(data)
}

fn identity(data: &[u8]) -> Option<Multihash<64>> {
    (data.len() <= MAX_INLINE).then(|| Multihash::<64>::wrap(IDENTITY, data).ok()).flatten()
}

impl Built {
    /// The CID of this block in `form`.
    fn cid(&self, form: u8) -> Cid {
        let sha = || digest(HashAlg::Sha2_256, &self.data);
        match form % form::COUNT {
            form::V0 => Cid::new_v0(sha()).unwrap_or_else(|_| Cid::new_v1(self.codec, sha())),
            form::SHA2 => Cid::new_v1(self.codec, sha()),
            form::BLAKE3 => Cid::new_v1(self.codec, digest(HashAlg::Blake3, &self.data)),
            form::AS_RAW => Cid::new_v1(RAW, sha()),
            form::AS_PB => Cid::new_v1(DAG_PB, sha()),
            form::IDENTITY => Cid::new_v1(self.codec, identity(&self.data).unwrap_or_else(sha)),
            _ => {
                let mut other = self.data.to_vec();
                other.extend_from_slice(b"\0nobody has this");
                Cid::new_v1(self.codec, digest(HashAlg::Sha2_256, &other))
            }
        }
    }
}

/// The target of a link: block `target` (modulo the blocks built so far) in `form`, or a CID
/// nobody has when there are none yet.
fn link_cid(built: &[Built], target: u8, form: u8) -> (Cid, u64) {
    if built.is_empty() {
        let nothing = Built { data: Bytes::new(), codec: RAW, file_size: 0 };
        return (nothing.cid(form::DANGLING), 0);
    }
    let b = &built[target as usize % built.len()];
    (b.cid(form), b.file_size)
}

/// Builds the DAG a script describes (see the module docs).
pub fn build(data: &[u8]) -> Dag {
    let mut input = Input::new(data);
    let root_form = input.u8();
    let offset = u64::from(input.u32());
    let len = match input.u16() {
        0 => None,
        n => Some(u64::from(n)),
    };
    let choice = input.u8();
    let mut built: Vec<Built> = Vec::new();
    while !input.is_empty() && built.len() < MAX_BLOCKS {
        let b = match input.u8() % kind::COUNT {
            kind::RAW => {
                let data = Bytes::copy_from_slice(input.long_bytes());
                Built { file_size: data.len() as u64, data, codec: RAW }
            }
            kind::PB => pb_record(&mut input, &built),
            kind::HAMT => hamt_record(&mut input, &built),
            k => links_record(&mut input, &built, k == kind::JSON),
        };
        built.push(b);
    }
    let mut blocks = MemoryBlocks::new();
    let mut stored = 0;
    let mut stored_bytes = 0u64;
    for b in &built {
        let mut hashes = vec![digest(HashAlg::Sha2_256, &b.data), digest(HashAlg::Blake3, &b.data)];
        hashes.extend(identity(&b.data));
        for mh in hashes {
            if blocks.insert(Block::new_unchecked(Cid::new_v1(b.codec, mh), b.data.clone())) {
                stored += 1;
                stored_bytes += b.data.len() as u64;
            }
        }
    }
    let root = match built.last() {
        Some(b) => b.cid(root_form),
        None => link_cid(&[], 0, 0).0,
    };
    Dag { blocks, root, count: built.len(), stored, stored_bytes, offset, len, choice }
}

/// Reads a `pb` record (see the format in the module docs).
fn pb_record(input: &mut Input<'_>, built: &[Built]) -> Built {
    let data_mode = input.u8() % 3;
    let mut fs = None;
    let mut raw_data = None;
    let mut auto_sizes = false;
    match data_mode {
        0 => {}
        1 => raw_data = Some(Bytes::copy_from_slice(input.long_bytes())),
        _ => {
            let r#type = i32::from(input.u8() % 8);
            let flags = input.u8();
            let mut u = UnixFs { r#type, ..UnixFs::default() };
            if flags & 1 != 0 {
                u.data = Some(Bytes::copy_from_slice(input.long_bytes()));
            }
            if flags & 2 != 0 {
                u.filesize = Some(input.u64());
            }
            if flags & 4 != 0 {
                u.fanout = Some(input.u64());
            }
            if flags & 8 != 0 {
                u.hash_type = Some(input.u64());
            }
            if flags & 32 != 0 {
                u.mode = Some(input.u32());
            }
            auto_sizes = flags & 16 != 0;
            let n = input.u8();
            u.blocksizes = (0..n).map(|_| input.u64()).collect();
            fs = Some(u);
        }
    }
    let mut links = Vec::new();
    let mut child_sizes = Vec::new();
    for _ in 0..input.u8() {
        let (target, form, repeat, flags) = (input.u8(), input.u8(), input.u8(), input.u8());
        let name = (flags & 1 != 0).then(|| String::from_utf8_lossy(input.short_bytes()).into_owned());
        let tsize = (flags & 2 != 0).then(|| input.u64());
        let (cid, size) = link_cid(built, target, form);
        for _ in 0..=repeat {
            if links.len() < MAX_LINKS {
                links.push(PbLink { cid, name: name.clone(), tsize });
                child_sizes.push(size);
            }
        }
    }
    if let Some(u) = fs.as_mut() {
        if auto_sizes {
            let inline = u.data.as_ref().map_or(0, |d| d.len() as u64);
            let sum = child_sizes.iter().fold(inline, |a, &b| a.wrapping_add(b));
            u.blocksizes = child_sizes;
            if u.filesize.is_some() {
                u.filesize = Some(sum);
            }
        }
    }
    let file_size = match &fs {
        Some(u) if u.r#type == DataType::File as i32 || u.r#type == DataType::Raw as i32 => {
            u.blocksizes.iter().fold(u.data.as_ref().map_or(0, |d| d.len() as u64), |a, &b| a.wrapping_add(b))
        }
        _ => 0,
    };
    let data = fs.map(|u| u.to_bytes()).or(raw_data);
    Built { data: Bytes::from(PbNode { links, data }.encode()), codec: DAG_PB, file_size }
}

/// Reads a `hamt` record (see the format in the module docs).
fn hamt_record(input: &mut Input<'_>, built: &[Built]) -> Built {
    let fanout = 1u64 << (input.u8() % 12);
    let flags = input.u8();
    let explicit_bitfield = (flags & 2 != 0).then(|| input.short_bytes().to_vec());
    let mut slots = Vec::new();
    let mut links = Vec::new();
    for _ in 0..input.u8() {
        let (slot, target, form, repeat) = (input.u16(), input.u8(), input.u8(), input.u8());
        let suffix = String::from_utf8_lossy(input.short_bytes()).into_owned();
        let tsize = (input.u8() & 1 != 0).then(|| input.u64());
        let (cid, _) = link_cid(built, target, form);
        for r in 0..=u64::from(repeat) {
            if links.len() < MAX_LINKS {
                let s = (u64::from(slot) + r) % fanout;
                slots.push(s);
                links.push(PbLink { cid, name: Some(link_prefix(s, fanout) + &suffix), tsize });
            }
        }
    }
    let bitfield = explicit_bitfield.unwrap_or_else(|| bitfield(&slots, fanout));
    let mut fs = UnixFs::hamt_shard(Bytes::from(bitfield), fanout);
    if flags & 1 != 0 {
        fs.hash_type = Some(SHA2_256);
    } else {
        fs.hash_type = Some(HAMT_HASH_MURMUR3);
    }
    if flags & 4 != 0 {
        fs.fanout = None;
    }
    if fs.data.as_ref().is_some_and(|d| d.is_empty()) {
        fs.data = None;
    }
    Built { data: Bytes::from(PbNode { links, data: Some(fs.to_bytes()) }.encode()), codec: DAG_PB, file_size: 0 }
}

/// The occupancy bitfield of `slots` at `fanout`: big-endian, leading zero bytes dropped,
/// as UnixFS writes it.
pub fn bitfield(slots: &[u64], fanout: u64) -> Vec<u8> {
    let len = fanout.div_ceil(8) as usize;
    let mut bf = vec![0u8; len];
    for &s in slots {
        let s = s as usize;
        if s / 8 < len {
            bf[len - 1 - s / 8] |= 1 << (s % 8);
        }
    }
    let first = bf.iter().position(|&b| b != 0).unwrap_or(len);
    bf.split_off(first)
}

/// Reads a `cbor` or `json` record: a list of links and a string.
fn links_record(input: &mut Input<'_>, built: &[Built], json: bool) -> Built {
    let n = input.u8();
    let cids: Vec<Cid> = (0..n).map(|_| link_cid(built, input.u8(), input.u8()).0).collect();
    let text = String::from_utf8_lossy(input.short_bytes()).into_owned();
    let data = if json {
        let links: Vec<_> = cids.iter().map(|c| serde_json::json!({"/": c.to_string()})).collect();
        serde_json::to_vec(&serde_json::json!({"l": links, "s": text})).unwrap_or_default()
    } else {
        let map: BTreeMap<String, Ipld> = [
            ("l".to_owned(), Ipld::List(cids.into_iter().map(Ipld::Link).collect())),
            ("s".to_owned(), Ipld::String(text)),
        ]
        .into_iter()
        .collect();
        serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap_or_default()
    };
    Built { data: Bytes::from(data), codec: if json { DAG_JSON } else { DAG_CBOR }, file_size: 0 }
}

/// One link of a seed script's `pb` or `hamt` record.
#[derive(Debug, Clone, Default)]
pub struct LinkSpec {
    /// The index of the linked block.
    pub target: u8,
    /// Its CID form ([`form`]).
    pub form: u8,
    /// Extra copies of the link (in a HAMT record: over the following slots).
    pub repeat: u8,
    /// The name (in a HAMT record: the suffix after the slot prefix; `None` is empty).
    pub name: Option<String>,
    /// The Tsize.
    pub tsize: Option<u64>,
    /// The slot (HAMT records only).
    pub slot: u16,
}

/// A UnixFS data section for a seed script's `pb` record.
#[derive(Debug, Clone, Default)]
pub struct FsSpec {
    /// The UnixFS type number.
    pub r#type: u8,
    /// Inline data.
    pub data: Option<Vec<u8>>,
    /// The declared file size.
    pub filesize: Option<u64>,
    /// The HAMT fanout field.
    pub fanout: Option<u64>,
    /// The HAMT hash field.
    pub hash_type: Option<u64>,
    /// Take `blocksizes` (and `filesize`, when present) from the children.
    pub auto_sizes: bool,
    /// Explicit blocksizes (ignored with `auto_sizes`).
    pub blocksizes: Vec<u64>,
}

/// Writes DAG scripts, for seeds; each method returns the new block's index.
#[derive(Debug)]
pub struct Script {
    out: Output,
    count: u8,
}

impl Script {
    /// A script whose root is named in `root_form`, with a range read of `len` bytes (0: to
    /// the end) from `offset`, and `choice` for the target.
    pub fn new(root_form: u8, offset: u32, len: u16, choice: u8) -> Script {
        let mut out = Output::default();
        out.u8(root_form).u32(offset).u16(len).u8(choice);
        Script { out, count: 0 }
    }

    fn next(&mut self) -> u8 {
        self.count += 1;
        self.count - 1
    }

    /// A raw block.
    pub fn raw(&mut self, data: &[u8]) -> u8 {
        self.out.u8(kind::RAW).long_bytes(data);
        self.next()
    }

    /// A dag-pb node with verbatim `Data` (or none).
    pub fn pb_raw(&mut self, data: Option<&[u8]>, links: &[LinkSpec]) -> u8 {
        self.out.u8(kind::PB);
        match data {
            None => self.out.u8(0),
            Some(d) => self.out.u8(1).long_bytes(d),
        };
        self.pb_links(links);
        self.next()
    }

    /// A dag-pb node with a UnixFS data section.
    pub fn pb(&mut self, fs: &FsSpec, links: &[LinkSpec]) -> u8 {
        self.out.u8(kind::PB).u8(2).u8(fs.r#type);
        let flags = u8::from(fs.data.is_some())
            | u8::from(fs.filesize.is_some()) << 1
            | u8::from(fs.fanout.is_some()) << 2
            | u8::from(fs.hash_type.is_some()) << 3
            | u8::from(fs.auto_sizes) << 4;
        self.out.u8(flags);
        if let Some(d) = &fs.data {
            self.out.long_bytes(d);
        }
        for v in [fs.filesize, fs.fanout, fs.hash_type].into_iter().flatten() {
            self.out.u64(v);
        }
        self.out.u8(fs.blocksizes.len() as u8);
        for &b in &fs.blocksizes {
            self.out.u64(b);
        }
        self.pb_links(links);
        self.next()
    }

    fn pb_links(&mut self, links: &[LinkSpec]) {
        self.out.u8(links.len() as u8);
        for l in links {
            let flags = u8::from(l.name.is_some()) | u8::from(l.tsize.is_some()) << 1;
            self.out.u8(l.target).u8(l.form).u8(l.repeat).u8(flags);
            if let Some(n) = &l.name {
                self.out.short_bytes(n.as_bytes());
            }
            if let Some(t) = l.tsize {
                self.out.u64(t);
            }
        }
    }

    /// A HAMT shard of `1 << fanout_log` slots with a computed bitfield; `flags` as in the
    /// format.
    pub fn hamt(&mut self, fanout_log: u8, flags: u8, links: &[LinkSpec]) -> u8 {
        self.out.u8(kind::HAMT).u8(fanout_log).u8(flags & !2);
        self.out.u8(links.len() as u8);
        for l in links {
            self.out.u16(l.slot).u8(l.target).u8(l.form).u8(l.repeat);
            self.out.short_bytes(l.name.as_deref().unwrap_or("").as_bytes());
            match l.tsize {
                Some(t) => self.out.u8(1).u64(t),
                None => self.out.u8(0),
            };
        }
        self.next()
    }

    /// A dag-cbor (or with `json`, dag-json) block linking to `targets` in their forms.
    pub fn links(&mut self, json: bool, targets: &[(u8, u8)], text: &str) -> u8 {
        self.out.u8(if json { kind::JSON } else { kind::CBOR }).u8(targets.len() as u8);
        for &(t, f) in targets {
            self.out.u8(t).u8(f);
        }
        self.out.short_bytes(text.as_bytes());
        self.next()
    }

    /// The script's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out.bytes
    }
}

/// The form that names `cid` for a block of codec `codec`, if there is one.
fn form_of(cid: &Cid, codec: u64) -> u8 {
    let code = cid.hash().code();
    match (cid.version(), cid.codec(), code) {
        (cid::Version::V0, _, _) => form::V0,
        (_, _, IDENTITY) => form::IDENTITY,
        (_, c, SHA2_256) if c == codec => form::SHA2,
        (_, c, _) if c == codec => form::BLAKE3,
        (_, RAW, _) => form::AS_RAW,
        (_, DAG_PB, _) => form::AS_PB,
        _ => form::DANGLING,
    }
}

/// A script that rebuilds `blocks` exactly (raw and dag-pb blocks, children before parents,
/// at most [`MAX_BLOCKS`], at most 255 links each), with the last one as the root in the
/// form its CID has. Links to blocks not among them dangle.
pub fn script_of(blocks: &[Block]) -> Vec<u8> {
    let root_form = blocks.last().map_or(0, |b| form_of(b.cid(), b.cid().codec()));
    let mut s = Script::new(root_form, 0, 0, 0);
    let mut index: Vec<Vec<u8>> = Vec::new();
    for b in blocks.iter().take(MAX_BLOCKS) {
        if b.cid().codec() == DAG_PB {
            let node = PbNode::decode(b.data()).expect("seed blocks are valid dag-pb");
            let links: Vec<LinkSpec> = node
                .links
                .iter()
                .map(|l| match index.iter().position(|h| *h == l.cid.hash().digest()) {
                    Some(i) => LinkSpec {
                        target: i as u8,
                        form: form_of(&l.cid, blocks[i].cid().codec()),
                        name: l.name.clone(),
                        tsize: l.tsize,
                        ..LinkSpec::default()
                    },
                    None => {
                        LinkSpec { form: form::DANGLING, name: l.name.clone(), tsize: l.tsize, ..Default::default() }
                    }
                })
                .collect();
            s.pb_raw(node.data.as_deref(), &links);
        } else {
            s.raw(b.data());
        }
        index.push(b.cid().hash().digest().to_vec());
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_merkle::hash::CidFormat;
    use cairn_merkle::BlockSource;

    #[test]
    fn a_script_of_real_blocks_rebuilds_them() {
        let leaf = Block::new_unchecked(CidFormat { version: 1, hash: HashAlg::Sha2_256 }.cid(RAW, b"hi"), "hi".into());
        let fs = UnixFs::file_node(vec![2, 2]);
        let node = PbNode {
            links: vec![PbLink::new(*leaf.cid(), "", 2), PbLink::new(*leaf.cid(), "", 2)],
            data: Some(fs.to_bytes()),
        };
        let bytes = Bytes::from(node.encode());
        let root = Block::new_unchecked(CidFormat::default().cid(DAG_PB, &bytes), bytes.clone());
        let dag = build(&script_of(&[leaf, root.clone()]));
        assert_eq!(dag.root, *root.cid());
        assert_eq!(dag.blocks.get(&dag.root).unwrap(), bytes);
    }

    #[test]
    fn bitfields_are_trimmed_big_endian() {
        assert_eq!(bitfield(&[0, 7], 256).as_slice(), [0x81]);
        assert_eq!(bitfield(&[8], 256).as_slice(), [0x01, 0x00]);
        assert!(bitfield(&[], 256).is_empty());
        assert_eq!(bitfield(&[1], 2).as_slice(), [0x02]);
    }
}
