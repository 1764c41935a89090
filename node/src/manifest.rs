//! Signing and checking root manifests ([`cairn_merkle::manifest`]) with the node's identity.
//!
//! - [`Node::manifest_sign`] measures a DAG the repo holds, signs a manifest for it with the
//!   node's ed25519 key, stores the manifest block (DAG-JSON) and pins it recursively, which pins
//!   the DAG it links to as well.
//! - [`Node::manifest_verify`] checks a manifest: that its key is the peer ID's, that the
//!   signature covers the fields as they are, then re-hashes every block of the DAG, fetching
//!   the missing ones when the node has a network. It tells a bad signature from corrupt or
//!   missing data, and says whether the config's keyring trusts the publisher.
//! - [`Node::check_dag`] (re-hash a whole DAG) and [`Node::pin_verify`] (every pin's DAG) are
//!   the integrity checks both rest on.

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_merkle::hash::{multihash_matches, DAG_JSON};
use cairn_merkle::manifest::{Manifest, ManifestError, META_KEYS};
use cairn_merkle::{BlockSource, Cid, SourceError};
use libp2p_identity::{PeerId, PublicKey};

use crate::node::{IpfsPath, Node, NodeError};

/// Why a manifest could not be made or checked at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestFailure {
    /// The block is not a manifest.
    #[error("{cid}: {source}")]
    NotAManifest {
        /// The block's CID, as text (which keeps the error small).
        cid: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// A metadata key outside [`META_KEYS`].
    #[error("unknown metadata key {0:?} (use title, source, license or notes)")]
    UnknownMeta(String),
    /// Signing failed (the key cannot sign).
    #[error("signing failed: {0}")]
    Signing(String),
    /// The repo or store failed.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Whether the signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// The publisher's key signed exactly these fields.
    Valid,
    /// It does not: the reason (a key that is not the peer ID's, or a signature that does not
    /// cover the fields as they are).
    Invalid(String),
}

/// Why a block could not be checked.
enum Damage {
    /// The store holds it but cannot read it back.
    Corrupt,
    /// Nobody has it.
    Missing,
}

/// What [`Node::check_dag`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DagCheck {
    /// Blocks checked.
    pub blocks: u64,
    /// Blocks whose bytes do not hash to their CID, or whose links do not decode.
    pub corrupt: Vec<Cid>,
    /// Blocks neither the repo nor (with a network) any peer had.
    pub missing: Vec<Cid>,
}

/// What [`Node::manifest_verify`] found.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The manifest's fields.
    pub manifest: Manifest,
    /// The signature's verdict.
    pub signature: Signature,
    /// The keyring's name for the publisher, when it is trusted.
    pub trusted: Option<String>,
    /// Blocks whose bytes do not hash to their CID.
    pub corrupt: Vec<Cid>,
    /// Blocks neither the repo nor (with a network) any peer had.
    pub missing: Vec<Cid>,
    /// Blocks checked.
    pub blocks: u64,
}

impl Verified {
    /// The report as JSON (the RPC API's answer, which the CLI prints): `Root`, `Name`,
    /// `Size`, `Publisher`, `Created`, `Meta`, `Signature` ("valid" or why not), `Trusted`,
    /// `TrustedName`, `Blocks`, `Corrupt` and `Missing` (CIDs).
    pub fn report(&self) -> serde_json::Value {
        let m = &self.manifest;
        let cids = |v: &[Cid]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        serde_json::json!({
            "Root": m.root.to_string(),
            "Name": m.name,
            "Size": m.size,
            "Publisher": m.publisher,
            "Created": m.created,
            "Meta": m.meta,
            "Signature": match &self.signature { Signature::Valid => "valid".to_owned(), Signature::Invalid(why) => why.clone() },
            "Trusted": self.trusted.is_some(),
            "TrustedName": self.trusted.clone().unwrap_or_default(),
            "Blocks": self.blocks,
            "Corrupt": cids(&self.corrupt),
            "Missing": cids(&self.missing),
        })
    }
}

/// The metadata key of the newest manifest this node signed.
const HEAD_KEY: &[u8] = b"manifest/head";

/// Checks `m`'s signature: its key must be the named peer's, and must have signed the fields.
pub fn check_signature(m: &Manifest) -> Signature {
    let Ok(key) = PublicKey::try_decode_protobuf(&m.public_key) else {
        return Signature::Invalid("the publisher key does not decode".into());
    };
    if PeerId::from_public_key(&key).to_string() != m.publisher {
        return Signature::Invalid(format!("the publisher key is not {}'s", m.publisher));
    }
    if key.verify(&m.signed_bytes(), &m.signature) {
        Signature::Valid
    } else {
        Signature::Invalid("the signature does not match the manifest's fields".into())
    }
}

/// Reads a manifest block.
pub fn decode(cid: &Cid, data: &[u8]) -> Result<Manifest, ManifestFailure> {
    if cid.codec() != DAG_JSON {
        return Err(ManifestFailure::NotAManifest {
            cid: cid.to_string(),
            source: ManifestError::Field("the block is not DAG-JSON".into()),
        });
    }
    Manifest::decode(data).map_err(|source| ManifestFailure::NotAManifest { cid: cid.to_string(), source })
}

impl Node {
    /// Signs a manifest for the DAG at `path` (which the repo must hold whole), stores it and
    /// pins it recursively (which pins the DAG). `name` defaults to the path's last component,
    /// else the root CID. Returns the manifest's CID and the manifest.
    pub fn manifest_sign(
        &self,
        path: &IpfsPath,
        name: Option<String>,
        meta: BTreeMap<String, String>,
    ) -> Result<(Cid, Manifest), ManifestFailure> {
        if let Some(k) = meta.keys().find(|k| !META_KEYS.contains(&k.as_str())) {
            return Err(ManifestFailure::UnknownMeta(k.clone()));
        }
        let root = self.resolve(path)?;
        // Sizes from the store's index: the walk already read what it had to.
        let mut size = 0;
        for cid in self.dag_cids(&root)? {
            size += crate::BlockStore::size(self.repo().store(), &cid)
                .map_err(NodeError::from)?
                .ok_or(NodeError::NotFound(cid))?;
        }
        let name = name.unwrap_or_else(|| {
            path.rest.rsplit('/').find(|c| !c.is_empty()).map_or_else(|| root.to_string(), str::to_owned)
        });
        let keypair = self.repo().keypair();
        let mut manifest = Manifest {
            root,
            size,
            name,
            publisher: self.repo().peer_id().to_string(),
            public_key: keypair.public().encode_protobuf(),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            meta: meta.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            prev: self.manifest_head()?,
            signature: Vec::new(),
        };
        manifest.signature =
            keypair.sign(&manifest.signed_bytes()).map_err(|e| ManifestFailure::Signing(e.to_string()))?;
        let format = cairn_merkle::CidFormat { version: 1, hash: cairn_merkle::HashAlg::Sha2_256 };
        let cid = self.block_put(manifest.encode(), DAG_JSON, format)?;
        self.pin_add(&IpfsPath { root: cid, rest: String::new() }, true, Some(format!("manifest {}", manifest.name)))?;
        self.repo().store().put_meta(HEAD_KEY, cid.to_string().as_bytes()).map_err(NodeError::from)?;
        Ok((cid, manifest))
    }

    /// The newest manifest this node signed, if any: the head of its chain.
    pub fn manifest_head(&self) -> Result<Option<Cid>, NodeError> {
        let Some(v) = self.repo().store().get_meta(HEAD_KEY)? else { return Ok(None) };
        let text = String::from_utf8_lossy(&v);
        text.parse::<Cid>().map(Some).map_err(|e| {
            NodeError::from(crate::store::StoreError::Corrupt {
                table: "meta",
                reason: format!("manifest head {text:?}: {e}"),
            })
        })
    }

    /// Checks the manifest `cid`: its signature, the keyring, and every block of its DAG
    /// (`on_block` gets each block's size as it is checked).
    pub fn manifest_verify(&self, cid: &Cid, on_block: &mut dyn FnMut(u64)) -> Result<Verified, ManifestFailure> {
        let source = self.source();
        let data = source.get(cid).map_err(|_| NodeError::NotFound(*cid))?;
        let manifest = decode(cid, &data)?;
        let signature = check_signature(&manifest);
        let trusted = self.repo().config().manifest.trusted.get(&manifest.publisher).cloned();
        let check = self.check_dag(&manifest.root, on_block);
        Ok(Verified {
            manifest,
            signature,
            trusted,
            corrupt: check.corrupt,
            missing: check.missing,
            blocks: check.blocks,
        })
    }

    /// `pin verify`: every recursive pin's DAG checked whole, every direct pin's block alone.
    pub fn pin_verify(&self) -> Result<Vec<(crate::store::Pin, DagCheck)>, NodeError> {
        let pins = self.pins()?;
        Ok(pins
            .into_iter()
            .map(|pin| {
                let check = self.check(&pin.cid, pin.mode.max_depth(), &mut |_| {});
                (pin, check)
            })
            .collect())
    }

    /// A block's bytes: from the store, where a read error is damage (RocksDB found a bad
    /// checksum, say), else from peers when the node has a network.
    fn read_checked(&self, source: &crate::node::StoreSource<'_>, cid: &Cid) -> Result<bytes::Bytes, Damage> {
        match crate::BlockStore::get(self.repo().store(), cid) {
            Ok(Some(data)) => return Ok(data),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%cid, error = %e, "stored block unreadable");
                return Err(Damage::Corrupt);
            }
        }
        source.get(cid).map_err(|e| {
            if !matches!(e, SourceError::NotFound(_)) {
                tracing::warn!(%cid, error = %e, "block unavailable");
            }
            Damage::Missing
        })
    }

    /// Re-hashes every block of the DAG under `root`, depth-first, each block once (by
    /// multihash), fetching missing ones when the node has a network. `on_block` gets each
    /// block's size as it is checked.
    pub fn check_dag(&self, root: &Cid, on_block: &mut dyn FnMut(u64)) -> DagCheck {
        self.check(root, None, on_block)
    }

    /// [`Node::check_dag`] down to `limit` links below the root (`None`: all of them, `Some(0)`:
    /// the root block alone).
    fn check(&self, root: &Cid, limit: Option<u32>, on_block: &mut dyn FnMut(u64)) -> DagCheck {
        let source = self.source();
        let mut report = DagCheck::default();
        let mut seen = HashSet::new();
        let mut walk = crate::node::Walk::new(*root, limit);
        while let Some((cid, _, left)) = walk.next(&mut seen) {
            let data = match self.read_checked(&source, &cid) {
                Ok(d) => d,
                Err(Damage::Corrupt) => {
                    report.corrupt.push(cid);
                    continue;
                }
                Err(Damage::Missing) => {
                    report.missing.push(cid);
                    continue;
                }
            };
            report.blocks += 1;
            on_block(data.len() as u64);
            if !multihash_matches(cid.hash(), &data).unwrap_or(false) {
                report.corrupt.push(cid);
                continue;
            }
            if left == Some(0) {
                continue;
            }
            match cairn_merkle::links::links(&cid, &data) {
                Ok(links) => walk.push_links(links, left),
                Err(_) => report.corrupt.push(cid),
            }
        }
        report
    }
}
