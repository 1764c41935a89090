//! `cairn manifest sign|verify|trust|untrust|trusted`, and the signing behind `add --sign`.
//!
//! `verify` exits 0 when the signature holds and every block is intact, [`EXIT_BAD_SIGNATURE`]
//! when the signature does not hold (or the block is not a manifest), and [`EXIT_BAD_DATA`]
//! when blocks of the DAG are corrupt or cannot be had.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_node::manifest::ManifestFailure;
use cairn_node::Repo;
use serde_json::Value;

use crate::{ipfs_path, Ctx};

/// `manifest verify`: the signature does not hold, or the block is not a manifest.
pub const EXIT_BAD_SIGNATURE: u8 = 3;
/// `manifest verify`: blocks of the DAG are corrupt or missing.
pub const EXIT_BAD_DATA: u8 = 4;

/// The optional metadata a manifest carries.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetaArgs {
    /// The manifest's name for the content (default: the path's last name, or the CID).
    #[arg(long, value_name = "NAME")]
    pub manifest_name: Option<String>,
    /// A title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
    /// Where the content comes from (a URL, say).
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// The licence it is published under.
    #[arg(long, value_name = "TEXT")]
    pub license: Option<String>,
    /// Free notes.
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
}

impl MetaArgs {
    fn meta(&self) -> BTreeMap<String, String> {
        [("title", &self.title), ("source", &self.source), ("license", &self.license), ("notes", &self.notes)]
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
            .collect()
    }

    /// The API's query parameters for these.
    fn query(&self, path: &str) -> String {
        let mut q: Vec<(String, String)> = vec![("arg".into(), path.to_owned())];
        if let Some(n) = &self.manifest_name {
            q.push(("name".into(), n.clone()));
        }
        q.extend(self.meta());
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        crate::api::query(&q)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// Sign a manifest for a DAG the repo holds, store it and pin it (with the DAG).
    Sign {
        /// `/ipfs/<cid>/path`, `<cid>/path` or `<cid>`.
        #[arg(value_name = "PATH")]
        path: String,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Check a manifest's signature, then every block of its DAG (fetching missing ones while
    /// the daemon runs). Exit 0: valid; 3: bad signature; 4: corrupt or missing data.
    Verify {
        /// The manifest's CID.
        #[arg(value_name = "CID")]
        cid: String,
    },
    /// Trust a publisher's signatures (adds it to the config's keyring).
    Trust {
        /// The publisher's peer ID.
        #[arg(value_name = "PEERID")]
        peer: String,
        /// A name for people.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Stop trusting a publisher.
    Untrust {
        /// The publisher's peer ID.
        #[arg(value_name = "PEERID")]
        peer: String,
    },
    /// List the trusted publishers: `<peer-id> <name>`.
    Trusted,
}

/// Signs a manifest for `path`; returns (manifest, root) CIDs as text.
pub fn sign(ctx: &Ctx, path: &str, meta: &MetaArgs) -> anyhow::Result<(String, String)> {
    if let Some(client) = crate::api::client(ctx)? {
        let v = client.json("manifest/sign", &meta.query(path))?;
        return Ok((crate::api::text(&v, "Manifest"), crate::api::text(&v, "Root")));
    }
    let parsed = ipfs_path(path)?;
    let node = ctx.open()?;
    let (cid, manifest) = node.manifest_sign(&parsed, meta.manifest_name.clone(), meta.meta())?;
    Ok((cid.to_string(), manifest.root.to_string()))
}

/// Runs a manifest command; `verify`'s verdict is the exit code.
pub fn run(ctx: &Ctx, cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Sign { path, meta } => {
            let (m, root) = sign(ctx, &path, &meta)?;
            println!("signed {m} {root}");
        }
        ManifestCommand::Verify { cid } => return verify(ctx, &cid),
        ManifestCommand::Trust { peer, name } => {
            let id: cairn_node::net::PeerId = peer.parse().with_context(|| format!("{peer:?} is not a peer ID"))?;
            let mut repo = Repo::open(&ctx.repo)?;
            let mut config = repo.config().clone();
            config.manifest.trusted.insert(id.to_string(), name.unwrap_or_default());
            repo.set_config(config)?;
            println!("trusted {id}");
        }
        ManifestCommand::Untrust { peer } => {
            let mut repo = Repo::open(&ctx.repo)?;
            let mut config = repo.config().clone();
            if config.manifest.trusted.remove(&peer).is_none() {
                anyhow::bail!("{peer} is not trusted");
            }
            repo.set_config(config)?;
            println!("untrusted {peer}");
        }
        ManifestCommand::Trusted => {
            let text = std::fs::read_to_string(ctx.repo.join("config")).context("reading the config")?;
            let config = cairn_node::Config::from_json(&text)?;
            for (peer, name) in &config.manifest.trusted {
                println!("{peer} {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Ctx, cid: &str) -> anyhow::Result<ExitCode> {
    let report = if let Some(client) = crate::api::client(ctx)? {
        client.json("manifest/verify", &crate::api::query(&[("arg", cid)]))?
    } else {
        let cid = ipfs_path(cid)?.root;
        let node = ctx.open()?;
        match node.manifest_verify(&cid, &mut |_| {}) {
            Ok(v) => v.report(),
            Err(e @ ManifestFailure::NotAManifest { .. }) => {
                eprintln!("Error: {e}");
                return Ok(ExitCode::from(EXIT_BAD_SIGNATURE));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let text = |k: &str| crate::api::text(&report, k);
    let list = |k: &str| -> Vec<String> {
        report
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let trusted = report.get("Trusted").and_then(Value::as_bool).unwrap_or(false);
    let who = if trusted {
        format!("{} (trusted as {:?})", text("Publisher"), text("TrustedName"))
    } else {
        format!("{} (not trusted)", text("Publisher"))
    };
    println!("publisher: {who}");
    println!("root: {} ({} bytes, {:?})", text("Root"), report["Size"], text("Name"));
    if text("Signature") != "valid" {
        println!("signature: INVALID: {}", text("Signature"));
        return Ok(ExitCode::from(EXIT_BAD_SIGNATURE));
    }
    println!("signature: valid");
    let (corrupt, missing) = (list("Corrupt"), list("Missing"));
    for c in &corrupt {
        println!("block {c} is corrupt");
    }
    for c in &missing {
        println!("block {c} is missing");
    }
    if corrupt.is_empty() && missing.is_empty() {
        println!("data: {} blocks intact", report["Blocks"]);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("data: {} corrupt, {} missing", corrupt.len(), missing.len());
        Ok(ExitCode::from(EXIT_BAD_DATA))
    }
}
