//! The config's values, typed and checked once.
//!
//! [`Config`] is the repo's JSON as written, with Kubo's names; its durations, sizes,
//! addresses and choices are strings there. [`Settings::from_config`] turns every one of
//! them into its type in one pass, and refuses the first that does not parse with its key,
//! its value and what was expected. `cairn config KEY VALUE` checks an edit through it
//! ([`set_key`]), and the daemon reads its settings through it before it starts
//! anything, so a bad value is refused when it is written, or at the latest at start, and
//! never fails later in a running service.
//!
//! The choices a config names (`Routing.Type`, `Origins.Format`, `Reprovider.Strategy`) are
//! defined here too, so that the network and the services take them from
//! below.

use std::net::SocketAddr;
use std::time::Duration;

use libp2p::Multiaddr;

use crate::config::{parse_duration, parse_size, tcp_socket_addr, Config, ConfigError};

/// A host name the gateway is reached by, and what it serves there
/// (`Gateway.PublicGateways`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicGateway {
    /// The host name, lowercase, without a port.
    pub host: String,
    /// The namespaces served (`/ipfs`, `/ipns`).
    pub paths: Vec<String>,
    /// Whether roots are served from `{cid}.ipfs.{host}`.
    pub use_subdomains: bool,
    /// Whether files, listings and other deserialized forms are served there.
    pub deserialized_responses: bool,
}

impl PublicGateway {
    /// Whether requests for `/{namespace}/...` are served on this host.
    pub fn serves(&self, namespace: &str) -> bool {
        self.paths.iter().any(|p| p.trim_end_matches('/') == namespace)
    }
}

/// `localhost`, with subdomains, unless the config says otherwise; then the config's hosts.
fn public_gateways(g: &crate::config::Gateway) -> Result<Vec<PublicGateway>, ConfigError> {
    const KEY: &str = "Gateway.PublicGateways";
    let mut out = Vec::new();
    if !g.public_gateways.contains_key("localhost") {
        out.push(PublicGateway {
            host: "localhost".into(),
            paths: vec!["/ipfs".into(), "/ipns".into()],
            use_subdomains: true,
            deserialized_responses: g.deserialized_responses,
        });
    }
    for (host, spec) in &g.public_gateways {
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !name_ok {
            return Err(invalid(KEY, host, "lowercase host names such as example.com (no port, scheme or wildcard)"));
        }
        let Some(spec) = spec else { continue };
        for p in &spec.paths {
            if !matches!(p.trim_end_matches('/'), "/ipfs" | "/ipns") {
                return Err(invalid(&format!("{KEY}.{host}.Paths"), p, "\"/ipfs\" or \"/ipns\""));
            }
        }
        out.push(PublicGateway {
            host: host.clone(),
            paths: spec.paths.clone(),
            use_subdomains: spec.use_subdomains,
            deserialized_responses: spec.deserialized_responses.unwrap_or(g.deserialized_responses),
        });
    }
    Ok(out)
}

/// How `Routing.Type` sets up the DHTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhtMode {
    /// A WAN server once AutoNAT finds the node reachable (`auto`, `dht`).
    Auto,
    /// A WAN server from the start (`dhtserver`).
    Server,
    /// Clients only, on both DHTs (`dhtclient`).
    Client,
    /// No DHT (`none`).
    Off,
}

impl std::str::FromStr for DhtMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "auto" | "dht" | "" => Ok(DhtMode::Auto),
            "dhtserver" => Ok(DhtMode::Server),
            "dhtclient" => Ok(DhtMode::Client),
            "none" => Ok(DhtMode::Off),
            other => Err(invalid("Routing.Type", other, "one of auto, dht, dhtserver, dhtclient, none")),
        }
    }
}

/// How the origin is asked for blocks (`Origins.Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OriginFormat {
    /// One `application/vnd.ipld.raw` request per block.
    #[default]
    Raw,
    /// A file read's fast start as one CAR with `entity-bytes`; other blocks raw.
    Car,
}

impl std::str::FromStr for OriginFormat {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "raw" => Ok(OriginFormat::Raw),
            "car" => Ok(OriginFormat::Car),
            other => Err(invalid("Origins.Format", other, "\"raw\" or \"car\"")),
        }
    }
}

/// What the reprovider announces (`Reprovider.Strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The roots of pins.
    Roots,
    /// Every block of every pin.
    Pinned,
    /// Every block held.
    All,
}

impl std::str::FromStr for Strategy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "roots" | "" => Ok(Strategy::Roots),
            "pinned" => Ok(Strategy::Pinned),
            "all" => Ok(Strategy::All),
            other => Err(invalid("Reprovider.Strategy", other, "one of roots, pinned, all")),
        }
    }
}

/// Every typed value of a [`Config`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `Addresses.API`.
    pub api: SocketAddr,
    /// `Addresses.Gateway`.
    pub gateway: SocketAddr,
    /// `Addresses.PinningService`.
    pub pinning_service: SocketAddr,
    /// `Addresses.Swarm`.
    pub swarm: Vec<Multiaddr>,
    /// `Addresses.Announce`.
    pub announce: Vec<Multiaddr>,
    /// `Addresses.AppendAnnounce`.
    pub append_announce: Vec<Multiaddr>,
    /// `Bootstrap`.
    pub bootstrap: Vec<Multiaddr>,
    /// `Datastore.StorageMax` (`None`: no limit).
    pub storage_max: Option<u64>,
    /// `Datastore.GCPeriod`.
    pub gc_period: Duration,
    /// `Datastore.StorageGCWatermark`, a percentage of `StorageMax`.
    pub gc_watermark: u64,
    /// `Gateway.RetrievalTimeout`.
    pub retrieval_timeout: Duration,
    /// `Gateway.MaxRequestDuration`.
    pub max_request_duration: Duration,
    /// `Gateway.MaxConcurrentRequests`.
    pub max_concurrent_requests: u64,
    /// `Gateway.ExposeRoutingAPI`: the delegated routing API on the gateway's port.
    pub expose_routing_api: bool,
    /// `Gateway.NoFetch`.
    pub no_fetch: bool,
    /// `Gateway.DeserializedResponses`.
    pub deserialized_responses: bool,
    /// `Gateway.PublicGateways` over the default (`localhost`), checked.
    pub public_gateways: Vec<PublicGateway>,
    /// `API.MaxUploadBytes`.
    pub api_max_upload_bytes: u64,
    /// `Swarm.RateLimit.Upload`, bytes per second (`None`: no cap).
    pub upload_limit: Option<u64>,
    /// `Swarm.RateLimit.Download`, bytes per second.
    pub download_limit: Option<u64>,
    /// `Swarm.RateLimit.UploadBudget`, bytes a day.
    pub upload_budget: Option<u64>,
    /// `Routing.Type`.
    pub routing: DhtMode,
    /// `Routing.DelegatedRouters`, checked.
    pub delegated_routers: Vec<String>,
    /// `Reprovider.Strategy`.
    pub reprovide_strategy: Strategy,
    /// `Reprovider.Interval` (`None`: no renewal).
    pub reprovide_interval: Option<Duration>,
    /// `Manifest.AnnounceInterval` (`None`: never).
    pub announce_interval: Option<Duration>,
    /// `PinningService.RetryDelay`.
    pub pin_retry_delay: Duration,
    /// `PinningService.MaxBytes` (`None`: no quota of its own).
    pub pin_max_bytes: Option<u64>,
    /// `Origins.StallTimeout`.
    pub origin_stall: Duration,
    /// `Origins.Format`.
    pub origin_format: OriginFormat,
    /// `Scrub.Interval` (`None`: no scrub).
    pub scrub_interval: Option<Duration>,
    /// `Follow.Quota` (`None`: no quota of its own).
    pub follow_quota: Option<u64>,
    /// `Import.*`: what `add` uses where its own flags do not say.
    pub import: cairn_merkle::importer::AddFlags,
}

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::Invalid(format!("{key} {value:?} is not {expected}"))
}

/// A duration, `0` or empty meaning none.
fn duration(key: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    parse_duration(key, value)
}

/// A duration that must be more than zero.
fn positive_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    duration(key, value)?.ok_or_else(|| invalid(key, value, "a duration more than 0, like 30s or 10m"))
}

/// A size, `0` or empty meaning none.
fn size(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    crate::config::optional_size(key, value)
}

/// A rate: a size per second (or a day), empty meaning no cap; `0` is refused, since it
/// would stop every transfer.
fn rate(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    match parse_size(value) {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => Err(invalid(key, value, "a size like 2MB (empty: no cap)")),
    }
}

fn multiaddrs(key: &str, values: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    values.iter().map(|v| v.parse().map_err(|e| invalid(key, v, &format!("a multiaddr ({e})")))).collect()
}

fn socket(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    tcp_socket_addr(value).map_err(|_| invalid(key, value, "a TCP multiaddr like /ip4/127.0.0.1/tcp/5001"))
}

/// One of a set of names, through its `FromStr` (whose error lists them).
fn choice<T: std::str::FromStr<Err = ConfigError>>(value: &str) -> Result<T, ConfigError> {
    value.parse()
}

/// Sets the value at a dotted key of `config` ([`Config::set_key`]) and checks every typed
/// value of the result, as the daemon will read it: what `cairn config KEY VALUE` writes.
pub fn set_key(config: &Config, key: &str, value: serde_json::Value) -> Result<Config, ConfigError> {
    let edited = config.set_key(key, value)?;
    Settings::from_config(&edited)?;
    Ok(edited)
}

impl Settings {
    /// Types and checks every value of `c`; the first that does not parse is refused with
    /// its key, its value and what was expected.
    pub fn from_config(c: &Config) -> Result<Settings, ConfigError> {
        let a = &c.addresses;
        let gc_watermark = c.datastore.storage_gc_watermark;
        if !(1..=100).contains(&gc_watermark) {
            let value = gc_watermark.to_string();
            return Err(invalid("Datastore.StorageGCWatermark", &value, "a percentage 1-100"));
        }
        if c.gateway.max_concurrent_requests == 0 {
            return Err(invalid("Gateway.MaxConcurrentRequests", "0", "more than 0"));
        }
        for url in &c.origins.gateways {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid("Origins.Gateways", url, "a base URL like http://host:port"));
            }
        }
        let rl = &c.swarm.rate_limit;
        Ok(Settings {
            api: socket("Addresses.API", &a.api)?,
            gateway: socket("Addresses.Gateway", &a.gateway)?,
            pinning_service: socket("Addresses.PinningService", &a.pinning_service)?,
            swarm: multiaddrs("Addresses.Swarm", &a.swarm)?,
            announce: multiaddrs("Addresses.Announce", &a.announce)?,
            append_announce: multiaddrs("Addresses.AppendAnnounce", &a.append_announce)?,
            bootstrap: multiaddrs("Bootstrap", &c.bootstrap)?,
            storage_max: c.storage_max()?,
            gc_period: positive_duration("Datastore.GCPeriod", &c.datastore.gc_period)?,
            gc_watermark,
            retrieval_timeout: positive_duration("Gateway.RetrievalTimeout", &c.gateway.retrieval_timeout)?,
            max_request_duration: positive_duration("Gateway.MaxRequestDuration", &c.gateway.max_request_duration)?,
            max_concurrent_requests: c.gateway.max_concurrent_requests,
            expose_routing_api: c.gateway.expose_routing_api,
            no_fetch: c.gateway.no_fetch,
            deserialized_responses: c.gateway.deserialized_responses,
            public_gateways: public_gateways(&c.gateway)?,
            api_max_upload_bytes: c.api_max_upload_bytes()?,
            upload_limit: rate("Swarm.RateLimit.Upload", &rl.upload)?,
            download_limit: rate("Swarm.RateLimit.Download", &rl.download)?,
            upload_budget: rate("Swarm.RateLimit.UploadBudget", &rl.upload_budget)?,
            routing: choice(&c.routing.kind)?,
            delegated_routers: {
                crate::net::delegated::bases(&c.routing.delegated_routers)
                    .map_err(|e| ConfigError::Invalid(format!("Routing.DelegatedRouters: {e}")))?;
                c.routing.delegated_routers.clone()
            },
            reprovide_strategy: choice(&c.reprovider.strategy)?,
            reprovide_interval: duration("Reprovider.Interval", &c.reprovider.interval)?,
            announce_interval: duration("Manifest.AnnounceInterval", &c.manifest.announce_interval)?,
            pin_retry_delay: positive_duration("PinningService.RetryDelay", &c.pinning_service.retry_delay)?,
            pin_max_bytes: size("PinningService.MaxBytes", &c.pinning_service.max_bytes)?,
            origin_stall: duration("Origins.StallTimeout", &c.origins.stall_timeout)?.unwrap_or(Duration::ZERO),
            origin_format: choice(&c.origins.format)?,
            scrub_interval: c.scrub_interval()?,
            follow_quota: c.follow_quota()?,
            import: crate::import_settings::import_flags(&c.import)?,
        })
    }

    /// With `--enable-gc`: the block bytes past which a collection runs
    /// (`StorageGCWatermark` percent of `StorageMax`; with no `StorageMax`, 0: every period).
    pub fn gc_at(&self) -> u64 {
        self.storage_max.map_or(0, |max| (u128::from(max) * u128::from(self.gc_watermark) / 100) as u64)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::config::Profile;

    /// Every string-typed key refuses a value that does not parse, when it is set, naming the
    /// key, the value and what was expected; a good value is taken.
    #[test]
    fn every_typed_key_is_checked_when_it_is_set() {
        let c = Config::new("12D3KooWtest".into(), Profile::Test);
        let defaults = Settings::from_config(&c).unwrap();
        assert_eq!(defaults.scrub_interval, Some(Duration::from_secs(30 * 86_400)));
        for (key, bad, expected) in [
            ("Scrub.Interval", "banana", "duration"),
            ("Reprovider.Interval", "22 hours", "duration"),
            ("Manifest.AnnounceInterval", "often", "duration"),
            ("Datastore.GCPeriod", "0", "more than 0"),
            ("Gateway.RetrievalTimeout", "soon", "duration"),
            ("Gateway.MaxRequestDuration", "0", "more than 0"),
            ("PinningService.RetryDelay", "-1s", "duration"),
            ("Origins.StallTimeout", "1 s", "duration"),
            ("Datastore.StorageMax", "lots", "size"),
            ("PinningService.MaxBytes", "10 apples", "size"),
            ("Follow.Quota", "all", "size"),
            ("API.MaxUploadBytes", "0", "size"),
            ("Swarm.RateLimit.Upload", "fast", "size"),
            ("Swarm.RateLimit.Download", "0", "size"),
            ("Swarm.RateLimit.UploadBudget", "1 GB a day", "size"),
            ("Addresses.API", "localhost:5001", "TCP multiaddr"),
            ("Addresses.Gateway", "/ip4/127.0.0.1/udp/8080", "TCP multiaddr"),
            ("Addresses.PinningService", "", "TCP multiaddr"),
            ("Routing.Type", "dhtmaybe", "one of"),
            ("Reprovider.Strategy", "some", "one of"),
            ("Origins.Format", "zip", "\"raw\" or \"car\""),
        ] {
            let err = set_key(&c, key, Value::String(bad.into())).expect_err(key).to_string();
            assert!(err.contains(key) && err.contains(&format!("{bad:?}")), "{key}: {err}");
            assert!(err.contains(expected), "{key}: {err}");
        }
        for (key, bad) in [
            ("Addresses.Swarm", serde_json::json!(["/ip4/127.0.0.1/tcp/x"])),
            ("Bootstrap", serde_json::json!(["not a multiaddr"])),
            ("Addresses.Announce", serde_json::json!(["/dns4"])),
            ("Origins.Gateways", serde_json::json!(["ftp://example"])),
            ("Routing.DelegatedRouters", serde_json::json!(["auto"])),
            ("Routing.DelegatedRouters", serde_json::json!(["ftp://delegated-ipfs.dev"])),
            ("Gateway.ExposeRoutingAPI", serde_json::json!("yes")),
            ("Datastore.StorageGCWatermark", serde_json::json!(101)),
            ("Gateway.PublicGateways", serde_json::json!({"*.example.com": {"Paths": ["/ipfs"]}})),
            ("Gateway.PublicGateways", serde_json::json!({"example.com:8080": {"Paths": ["/ipfs"]}})),
            ("Gateway.PublicGateways", serde_json::json!({"Example.com": null})),
            ("Gateway.PublicGateways", serde_json::json!({"example.com": {"Paths": ["/api"]}})),
            ("Gateway.PublicGateways", serde_json::json!({"example.com": {"UseSubdomains": "yes"}})),
            ("Gateway.NoFetch", serde_json::json!(1)),
            ("Gateway.DeserializedResponses", serde_json::json!("false")),
            ("Gateway.MaxConcurrentRequests", serde_json::json!(0)),
        ] {
            let err = set_key(&c, key, bad).expect_err(key).to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let c = set_key(&c, "Scrub.Interval", Value::String("12h".into())).unwrap();
        let c = set_key(&c, "Routing.Type", Value::String("dhtclient".into())).unwrap();
        let c = set_key(&c, "Swarm.RateLimit.Upload", Value::String("2MB".into())).unwrap();
        let c = set_key(&c, "Routing.DelegatedRouters", serde_json::json!(["http://127.0.0.1:8080/"])).unwrap();
        assert!(defaults.expose_routing_api, "the routing API is on unless turned off");
        let c = set_key(&c, "Gateway.ExposeRoutingAPI", serde_json::json!(false)).unwrap();
        assert_eq!(defaults.public_gateways.len(), 1, "localhost, by default");
        assert!(defaults.public_gateways[0].use_subdomains && defaults.public_gateways[0].serves("/ipfs"));
        let c = set_key(
            &c,
            "Gateway.PublicGateways",
            serde_json::json!({"localhost": null, "example.com": {"Paths": ["/ipfs"], "UseSubdomains": true,
                "DeserializedResponses": false, "InlineDNSLink": true}}),
        )
        .unwrap();
        let c = set_key(&c, "Gateway.NoFetch", serde_json::json!(true)).unwrap();
        let s = Settings::from_config(&c).unwrap();
        assert!(s.no_fetch && s.deserialized_responses);
        assert_eq!(
            s.public_gateways,
            vec![PublicGateway {
                host: "example.com".into(),
                paths: vec!["/ipfs".into()],
                use_subdomains: true,
                deserialized_responses: false,
            }]
        );
        assert_eq!(s.delegated_routers, vec!["http://127.0.0.1:8080/".to_owned()]);
        assert!(!s.expose_routing_api);
        assert_eq!(s.scrub_interval, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(s.routing, DhtMode::Client);
        assert_eq!(s.upload_limit, Some(2_000_000));
    }

    #[test]
    fn the_collection_watermark_is_a_share_of_the_storage_limit() {
        let c = Config::new("12D3KooWtest".into(), Profile::Test);
        let s = Settings::from_config(&c).unwrap();
        assert_eq!((s.gc_period, s.gc_at()), (Duration::from_secs(3600), 9_000_000_000));
        let c = set_key(&c, "Datastore.StorageMax", Value::String("0".into())).unwrap();
        assert_eq!(Settings::from_config(&c).unwrap().gc_at(), 0);
    }
}
