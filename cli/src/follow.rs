//! `cairn follow add|rm|ls`: the publishers whose signed manifests this node mirrors.
//!
//! Through the running daemon when there is one (the change takes effect at once), else on the
//! repo directly (the daemon picks it up when it starts).

use anyhow::bail;
use cairn_node::follow::{self, Publisher};
use serde_json::Value;

use crate::api::{query, text};
use crate::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum FollowCommand {
    /// Mirror every manifest PEERID signs, as it announces them (within `Follow.Quota`).
    Add {
        /// The publisher's peer ID.
        peer: String,
        /// Read its announcements from this gossipsub topic (one of its
        /// `Manifest.AnnounceTopics`) instead of the hints topic.
        #[arg(long)]
        topic: Option<String>,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// Stop following PEERID; what was mirrored stays pinned unless `--unpin`.
    Rm {
        /// The publisher's peer ID.
        peer: String,
        /// Unpin its mirrored manifests too (their blocks go at the next `repo gc`).
        #[arg(long)]
        unpin: bool,
    },
    /// List the followed publishers: `<peer-id> <topic> <name>` per line.
    Ls,
}

pub fn run(ctx: &Ctx, cmd: FollowCommand) -> anyhow::Result<()> {
    let client = crate::api::client(ctx)?;
    match cmd {
        FollowCommand::Add { peer, topic, name } => {
            let p = Publisher { peer, name: name.unwrap_or_default(), topic: topic.unwrap_or_default() };
            if let Some(c) = client {
                c.json("follow/add", &query(&[("arg", &p.peer), ("name", &p.name), ("topic", &p.topic)]))?;
            } else {
                follow::add(&ctx.open()?, &p)?;
            }
            println!("following {} on {}", p.peer, p.topic());
        }
        FollowCommand::Rm { peer, unpin } => {
            let was = match client {
                Some(c) => {
                    c.json("follow/rm", &query(&[("arg", &peer), ("unpin", &unpin.to_string())]))?;
                    true
                }
                None => follow::remove(&ctx.open()?, &peer, unpin)?,
            };
            if !was {
                bail!("{peer} is not followed");
            }
            println!("unfollowed {peer}");
        }
        FollowCommand::Ls => {
            let rows: Vec<(String, String, String)> = match client {
                Some(c) => {
                    let v = c.json("follow/ls", "")?;
                    v.get("Publishers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|p| (text(p, "Peer"), text(p, "Topic"), text(p, "Name")))
                        .collect()
                }
                None => follow::publishers(&ctx.open()?)?
                    .into_values()
                    .map(|p| (p.peer.clone(), p.topic().to_owned(), p.name))
                    .collect(),
            };
            for (peer, topic, name) in rows {
                println!("{}", format!("{peer} {topic} {name}").trim_end());
            }
        }
    }
    Ok(())
}
