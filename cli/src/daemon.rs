//! `cairn daemon`: runs the node's services until SIGINT or SIGTERM.
//!
//! - The libp2p swarm on `Addresses.Swarm` (Bitswap, the WAN and LAN DHTs, gossipsub,
//!   identify, ping, AutoNAT), dialing the `Bootstrap` peers, which are none unless
//!   configured. Reads of blocks the repo lacks are fetched from peers while the daemon runs,
//!   found on the DHT when no connected peer has them.
//! - The reprovider, renewing the DHT announcements of `Reprovider.Strategy` every
//!   `Reprovider.Interval`.
//! - The RPC API (a subset of Kubo's `/api/v0`) on `Addresses.API`; its bound address goes
//!   to `$repo/api` as a multiaddr, which the CLI reads to send its commands there.
//! - The Pinning Service API on `Addresses.PinningService`, when `PinningService.Tokens` has
//!   a token (its URL goes to `$repo/pinning-service`), and the worker that fetches pin
//!   requests, queued ones from before a restart included.
//! - The follower, mirroring the manifests of the publishers `cairn follow` names, and the
//!   announcement of this node's newest manifest every `Manifest.AnnounceInterval`.
//! - The scrub, re-hashing every stored block once per `Scrub.Interval` and repairing damaged
//!   ones from peers.
//! - The HTTP gateway on `Addresses.Gateway`. The address actually bound (it differs from the
//!   config when the config asks for port 0) is written to `$repo/gateway` as a URL, as Kubo
//!   does, and removed again on a clean shutdown.
//!
//! Shutdown stops accepting, lets open responses finish for a few seconds, stops the swarm,
//! then closes the repo (flushing it).

use std::sync::Arc;

use anyhow::Context as _;
use cairn_gateway::GatewayConfig;
use cairn_node::config::tcp_multiaddr;
use cairn_node::follow::Follower;
use cairn_node::net::NetConfig;
use cairn_node::pinning::{PinService, Settings};
use cairn_node::scrub::Scrubber;
use cairn_node::services::reprovide::Reprovider;
use clap::Args;

use crate::Ctx;

/// `cairn daemon` flags.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Collect garbage on its own: every `Datastore.GCPeriod`, when the repo holds more than
    /// `StorageGCWatermark` percent of `StorageMax`. Adds, pins and the gateway go on meanwhile.
    #[arg(long)]
    pub enable_gc: bool,
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the daemon.
pub fn run(ctx: &Ctx, args: DaemonArgs) -> anyhow::Result<()> {
    let node = Arc::new(ctx.open()?);
    let config = node.repo().config().clone();
    // Every value typed and checked before anything starts.
    let settings = node.repo().settings()?.clone();
    let gateway_addr = settings.gateway;
    let gateway_file = node.repo().path().join("gateway");
    let api_addr = settings.api;
    if !api_addr.ip().is_loopback() && config.api.authorizations.is_empty() {
        anyhow::bail!(
            "Addresses.API {} is not a loopback address: set API.Authorizations first, or anyone who can reach it controls the node",
            config.addresses.api
        );
    }
    let auto_gc_settings = (settings.gc_period, settings.gc_at());
    let api_file = node.repo().path().join("api");
    let pinning_file = node.repo().path().join("pinning-service");
    let pinning_addr = (!config.pinning_service.tokens.is_empty()).then_some(settings.pinning_service);
    let pin_service = PinService::open(node.clone(), Settings::from_config(&config)?)?;
    let scrub_interval = settings.scrub_interval;
    let follow_quota = settings.follow_quota;
    let announce_interval = settings.announce_interval;
    let net_config = NetConfig::from_repo(node.repo())?;
    let fetch_timeout = settings.retrieval_timeout;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let (network, net_task) = cairn_node::online::start_reading(&node, net_config, fetch_timeout).await?;
        let reprovider = tokio::spawn(Reprovider::from_repo(node.clone(), network.clone())?.run());
        let collector = args.enable_gc.then(|| {
            let (period, at) = auto_gc_settings;
            tokio::spawn(cairn_node::autogc::run(node.clone(), period, at))
        });
        let pin_worker = tokio::spawn(pin_service.clone().run(network.clone()));
        // Followed publishers' manifests are mirrored as they are announced; this node's own
        // newest manifest is announced again now and then for its followers.
        let follower = Follower::start(node.clone(), network.clone(), fetch_timeout, follow_quota).await?;
        let reannounce = announce_interval.map(|every| {
            let topics = config.manifest.announce_topics.clone();
            tokio::spawn(cairn_node::follow::reannounce_head(node.clone(), network.clone(), every, topics))
        });
        // The scrub re-hashes every block once per Scrub.Interval, repairing from peers.
        let scrub = match scrub_interval {
            Some(interval) => {
                let s = Scrubber::new(node.clone(), interval, Some((network.clone(), fetch_timeout)));
                let stats = s.stats();
                Some((s.spawn().context("starting the scrub")?, stats))
            }
            None => None,
        };
        let (pinning_done_tx, pinning_done_rx) = tokio::sync::oneshot::channel::<()>();
        let pinning_task = match pinning_addr {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for the Pinning Service API"))?;
                let bound = listener.local_addr()?;
                let delegates = network.listen_addrs().iter().map(ToString::to_string).collect();
                let api = cairn_gateway::pinning::PinningApi::new(
                    pin_service.clone(),
                    &config.pinning_service.tokens,
                    delegates,
                );
                std::fs::write(&pinning_file, format!("http://{bound}"))
                    .with_context(|| format!("writing {}", pinning_file.display()))?;
                let task = tokio::spawn(cairn_gateway::serve_pinning(listener, api, async {
                    let _ = pinning_done_rx.await;
                }));
                Some((bound, task))
            }
            None => None,
        };
        // The RPC API, for the CLI and Kubo's clients; `$repo/api` tells them where.
        let api_listener = tokio::net::TcpListener::bind(api_addr)
            .await
            .with_context(|| format!("cannot listen on {api_addr} for the RPC API"))?;
        let api_bound = api_listener.local_addr()?;
        let (stop_tx, mut stop_rx) = tokio::sync::mpsc::channel::<()>(1);
        let gateway_config = GatewayConfig {
            max_concurrent_requests: usize::try_from(settings.max_concurrent_requests).unwrap_or(usize::MAX),
            max_request_duration: settings.max_request_duration,
            routing: settings.expose_routing_api.then(|| cairn_gateway::routing::RoutingApi::new(network.clone())),
            public_gateways: settings.public_gateways.clone(),
            no_fetch: settings.no_fetch,
            deserialized_responses: settings.deserialized_responses,
            ..GatewayConfig::default()
        };
        let api = cairn_gateway::api::Api::new(node.clone(), Some(network.clone()), stop_tx)
            .with_gateway_metrics(gateway_config.metrics.clone())
            .with_services(cairn_gateway::metrics::Services {
                gateway: None,
                scrub: scrub.as_ref().map(|(_, stats)| stats.clone()),
                pinning: Some(pin_service.clone()),
                follow: Some(follower.stats()),
            })
            .with_follower(follower.clone());
        let (api_done_tx, api_done_rx) = tokio::sync::oneshot::channel::<()>();
        let api_task = tokio::spawn(cairn_gateway::serve_api(api_listener, api, async {
            let _ = api_done_rx.await;
        }));
        std::fs::write(&api_file, tcp_multiaddr(api_bound))
            .with_context(|| format!("writing {}", api_file.display()))?;
        let listener = tokio::net::TcpListener::bind(gateway_addr)
            .await
            .with_context(|| format!("cannot listen on {gateway_addr} for the gateway"))?;
        let bound = listener.local_addr()?;
        std::fs::write(&gateway_file, format!("http://{bound}"))
            .with_context(|| format!("writing {}", gateway_file.display()))?;
        println!("Peer identity: {}", node.repo().peer_id());
        for addr in network.listen_addrs() {
            println!("Swarm listening on {addr}");
        }
        println!("RPC API server listening on {}", tcp_multiaddr(api_bound));
        if let Some((addr, _)) = &pinning_task {
            println!("Pinning service listening on {}", tcp_multiaddr(*addr));
        }
        println!("Gateway server listening on {}", tcp_multiaddr(bound));
        println!("Daemon is ready");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        let stop = async {
            tokio::select! {
                () = stop_signal() => {}
                _ = stop_rx.recv() => {}
            }
        };
        let served = cairn_gateway::serve(listener, node.clone(), gateway_config, stop).await;
        let _ = std::fs::remove_file(&gateway_file);
        let _ = std::fs::remove_file(&api_file);
        let _ = std::fs::remove_file(&pinning_file);
        let _ = api_done_tx.send(());
        let _ = api_task.await;
        let _ = pinning_done_tx.send(());
        if let Some((_, task)) = pinning_task {
            let _ = task.await;
        }
        pin_worker.abort();
        if let Some(task) = reannounce {
            task.abort();
        }
        reprovider.abort();
        if let Some(task) = collector {
            task.abort();
        }
        network.shutdown().await;
        let _ = net_task.await;
        // After the network: a repair fetch in flight then fails at once instead of waiting.
        if let Some((handle, _)) = scrub {
            handle.stop();
        }
        served.context("gateway")?;
        println!("Received interrupt signal, shutting down...");
        anyhow::Ok(())
    })?;
    // Blocking tasks still streaming hold the node; give them a moment, then close the repo.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(node);
    Ok(())
}
