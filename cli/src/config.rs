//! `cairn init` and `cairn config`.

use anyhow::{bail, Context};
use cairn_node::import_settings::init_profiles;
use cairn_node::{Node, Repo};
use serde_json::Value;

use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Starting configuration, a comma-separated list applied left to right: `default`
    /// (loopback, default ports) or `test` (loopback, port 0 everywhere, no bootstrap peers),
    /// and an import profile of IPIP-499 that sets every `Import.*` key: `unixfs-v1-2025`, or
    /// `unixfs-v0-2015` (alias `legacy-cid-v0`). For example `test,unixfs-v1-2025`.
    #[arg(long, default_value = "default", value_name = "PROFILES")]
    profile: String,
}

pub fn init(ctx: &Ctx, args: InitArgs) -> anyhow::Result<()> {
    let (profile, import) = init_profiles(&args.profile)?;
    let mut node = Node::init(&ctx.repo, profile)?;
    if let Some(import) = import {
        let mut config = node.repo().config().clone();
        config.import = import;
        node.repo_mut().set_config(config)?;
    }
    println!("initialized repo at {}", node.repo().path().display());
    println!("peer identity: {}", node.repo().peer_id());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The dotted key, e.g. `Addresses.API`; `show` prints the whole config.
    key: String,
    /// The value to set. Without it, the current value is printed.
    value: Option<String>,
    /// Parse VALUE as JSON (arrays, objects, numbers, booleans).
    #[arg(long)]
    json: bool,
    /// Parse VALUE as a boolean.
    #[arg(long, conflicts_with = "json")]
    bool: bool,
}

pub fn run(ctx: &Ctx, args: ConfigArgs) -> anyhow::Result<()> {
    let mut repo = Repo::open(&ctx.repo)?;
    if args.key == "show" && args.value.is_none() {
        println!("{}", repo.config().to_json());
        return Ok(());
    }
    let Some(raw) = args.value else {
        match repo.config().get_key(&args.key)? {
            // Strings print bare, as Kubo prints them; everything else as JSON.
            Value::String(s) => println!("{s}"),
            other => println!("{}", serde_json::to_string_pretty(&other)?),
        }
        return Ok(());
    };
    let value = if args.json {
        serde_json::from_str::<Value>(&raw).with_context(|| format!("value {raw:?} is not valid JSON"))?
    } else if args.bool {
        match raw.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => bail!("value {raw:?} is not a boolean (use true or false)"),
        }
    } else {
        Value::String(raw)
    };
    let config = cairn_node::settings::set_key(repo.config(), &args.key, value)?;
    repo.set_config(config)?;
    Ok(())
}
