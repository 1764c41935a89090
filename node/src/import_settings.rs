//! The config's `Import.*` keys: typed and checked with Kubo 0.43's rules and messages, and set
//! by the import profiles of IPIP-499.
//!
//! [`import_flags`] turns the keys into the [`AddFlags`] that `add`'s own flags are laid over
//! ([`AddFlags::or`]), as Kubo does: a flag given wins, then the key when it is set, then Kubo's
//! default. Kubo checks the keys when a node is built; Cairn checks them when they are written
//! (`cairn config`) and when the daemon starts, with Kubo's messages, and refuses at once what
//! Kubo would refuse only at `add`: a chunker its importer cannot use, CIDv0 with a hash other
//! than sha2-256, a hash Kubo knows but Cairn does not build.

use cairn_merkle::chunker::ChunkerSpec;
use cairn_merkle::hamt::SizeEstimation;
use cairn_merkle::hash::HashAlg;
use cairn_merkle::importer::{AddFlags, ImportOptions, Layout, Profile};
use serde_json::Value;

use crate::config::{parse_size, ConfigError, Import};

fn bad(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// The `Import.*` keys of `import` as add flags, after Kubo's checks in Kubo's order; `None`
/// for every key that is not set.
pub fn import_flags(import: &Import) -> Result<AddFlags, ConfigError> {
    let cid_version = match import.cid_version {
        None => None,
        Some(v @ (0 | 1)) => Some(v as u8),
        Some(v) => return Err(bad(format!("Import.CidVersion must be 0 or 1, got {v}"))),
    };
    let max_file_links = match import.unixfs_file_max_links {
        Some(n) if n <= 0 => return Err(bad(format!("Import.UnixFSFileMaxLinks must be positive, got {n}"))),
        n => n.map(to_usize),
    };
    let max_directory_links = match import.unixfs_directory_max_links {
        Some(n) if n < 0 => return Err(bad(format!("Import.UnixFSDirectoryMaxLinks must be non-negative, got {n}"))),
        n => n.map(to_usize),
    };
    let max_hamt_fanout = match import.unixfs_hamt_directory_max_fanout {
        Some(n) if !(8..=1024).contains(&n) || !(n as u64).is_power_of_two() => {
            return Err(bad(format!(
                "Import.UnixFSHAMTDirectoryMaxFanout must be a power of 2, between 8 and 1024 (got {n})"
            )))
        }
        n => n.map(|n| n as u64),
    };
    for key in ["BatchMaxNodes", "BatchMaxSize"] {
        match import.extra.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_i64().is_some_and(|n| n > 0) => {}
            Some(v) => return Err(bad(format!("Import.{key} must be positive, got {v}"))),
        }
    }
    let chunker = import.unixfs_chunker.as_deref().map(chunker).transpose()?;
    let hash = import.hash_function.as_deref().map(hash_function).transpose()?;
    let hamt_estimation = match import.unixfs_hamt_directory_size_estimation.as_deref() {
        None => None,
        Some(e) => Some(e.parse::<SizeEstimation>().map_err(|_| {
            bad(format!(
                "Import.UnixFSHAMTDirectorySizeEstimation must be \"links\", \"block\", or \"disabled\", got {e:?}"
            ))
        })?),
    };
    let trickle = match import.unixfs_dag_layout.as_deref() {
        None => None,
        Some("balanced") => Some(false),
        Some("trickle") => Some(true),
        Some(l) => return Err(bad(format!("Import.UnixFSDAGLayout must be \"balanced\" or \"trickle\", got {l:?}"))),
    };
    match import.unixfs_pb_node_field_order.as_deref() {
        None | Some("links-first") => {}
        Some("data-first") => {
            return Err(bad(
                "Import.UnixFSPBNodeFieldOrder \"data-first\" is not supported: Cairn writes dag-pb links \
                 first, as the dag-pb spec says"
                    .into(),
            ))
        }
        Some(o) => {
            return Err(bad(format!(
                "Import.UnixFSPBNodeFieldOrder must be \"links-first\" or \"data-first\", got {o:?}"
            )))
        }
    }
    let flags = AddFlags {
        cid_version,
        raw_leaves: import.unixfs_raw_leaves,
        hash,
        chunker,
        trickle,
        max_file_links,
        max_directory_links,
        max_hamt_fanout,
        hamt_threshold: import.unixfs_hamt_directory_size_threshold.as_ref().map(threshold).transpose()?,
        hamt_estimation,
        hamt_at_threshold: import.unixfs_hamt_shard_at_threshold,
    };
    // What Kubo would refuse only when adding (CIDv0 with blake3, one link per node).
    ImportOptions::resolve(None, &flags).map_err(|e| bad(format!("Import: {e}")))?;
    Ok(flags)
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// `Import.UnixFSChunker`: Kubo's format check, then what Cairn's chunkers (like Kubo's at
/// `add`) accept.
fn chunker(spec: &str) -> Result<ChunkerSpec, ConfigError> {
    let number = |s: &str| s.parse::<i64>().ok();
    let kubo_format = match spec.split('-').collect::<Vec<_>>().as_slice() {
        ["buzhash"] => true,
        ["size", n] => number(n).is_some_and(|n| n > 0),
        ["rabin", a, b, c] => match (number(a), number(b), number(c)) {
            (Some(a), Some(b), Some(c)) => a <= b && b <= c,
            _ => false,
        },
        _ => false,
    };
    if !kubo_format {
        return Err(bad(format!(
            "Import.UnixFSChunker invalid format: {spec:?} (expected \"size-<bytes>\", \"rabin-<min>-<avg>-<max>\", \
             or \"buzhash\")"
        )));
    }
    spec.parse::<ChunkerSpec>().map_err(|e| bad(format!("Import.UnixFSChunker: {e}")))
}

/// `Import.HashFunction`, a multihash name in any case: Kubo's "unrecognized" and "not allowed"
/// sets, then the three Cairn builds with.
fn hash_function(name: &str) -> Result<HashAlg, ConfigError> {
    let lower = name.to_ascii_lowercase();
    match kubo_hash(&lower) {
        KuboHash::Unknown => Err(bad(format!("Import.HashFunction unrecognized: {name:?}"))),
        KuboHash::NotAllowed => Err(bad(format!("Import.HashFunction {name:?} is not allowed for use in IPFS"))),
        KuboHash::Allowed => lower.parse::<HashAlg>().map_err(|_| {
            bad(format!("Import.HashFunction {name:?} is not supported by Cairn (use sha2-256, sha2-512 or blake3)"))
        }),
    }
}

pub(crate) enum KuboHash {
    Allowed,
    NotAllowed,
    Unknown,
}

/// Where Kubo 0.43 puts a (lower-case) multihash name: not a name it knows, a name it knows but
/// refuses as too weak, or one it builds with.
pub(crate) fn kubo_hash(name: &str) -> KuboHash {
    const ALLOWED: &[&str] = &[
        "sha2-256",
        "sha2-512",
        "sha2-224",
        "sha2-384",
        "sha2-512-224",
        "sha2-512-256",
        "sha1",
        "dbl-sha2-256",
        "shake-256",
        "sha3-224",
        "sha3-256",
        "sha3-384",
        "sha3-512",
        "keccak-224",
        "keccak-256",
        "keccak-384",
        "keccak-512",
        "blake3",
        "identity",
    ];
    const NOT_ALLOWED: &[&str] =
        &["md5", "murmur3-x64-64", "murmur3-32", "shake-128", "x11", "sha2-256-trunc254-padded"];
    // blake2b-8 to -512 and blake2s-8 to -256, by 8; those under 160 bits are not allowed.
    let blake2 = |prefix: &str, max: u32| {
        name.strip_prefix(prefix).and_then(|b| b.parse::<u32>().ok()).filter(|b| b % 8 == 0 && (8..=max).contains(b))
    };
    if ALLOWED.contains(&name) {
        KuboHash::Allowed
    } else if NOT_ALLOWED.contains(&name) || name.starts_with("poseidon-") {
        KuboHash::NotAllowed
    } else if let Some(bits) = blake2("blake2b-", 512).or_else(|| blake2("blake2s-", 256)) {
        if bits >= 160 {
            KuboHash::Allowed
        } else {
            KuboHash::NotAllowed
        }
    } else {
        KuboHash::Unknown
    }
}

/// `Import.UnixFSHAMTDirectorySizeThreshold`: bytes, as a number or a size string (`"256KiB"`
/// is 262144, `"256KB"` 256000).
fn threshold(v: &Value) -> Result<usize, ConfigError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_size(s),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
        bad(format!(
            "Import.UnixFSHAMTDirectorySizeThreshold {v} is not a size: expected a size string (e.g., \"256KiB\") \
             or a number"
        ))
    })
}

/// The `Import.*` keys an import profile sets, every one of them, as `ipfs init --profile`
/// writes them.
pub fn profile_import(profile: Profile) -> Import {
    let o = profile.options();
    let threshold = match o.sharding.threshold {
        n if n % 1024 == 0 && n > 0 => format!("{}KiB", n / 1024),
        n => n.to_string(),
    };
    Import {
        cid_version: Some(i64::from(o.format.version)),
        unixfs_raw_leaves: Some(o.raw_leaves),
        unixfs_chunker: Some(o.chunker.to_string()),
        hash_function: Some(o.format.hash.to_string()),
        unixfs_file_max_links: Some(o.max_links as i64),
        unixfs_directory_max_links: Some(o.sharding.max_links as i64),
        unixfs_hamt_directory_max_fanout: Some(o.hamt_fanout as i64),
        unixfs_hamt_directory_size_threshold: Some(Value::String(threshold)),
        unixfs_hamt_directory_size_estimation: Some(o.sharding.estimation.as_str().to_owned()),
        unixfs_dag_layout: Some(if o.layout == Layout::Trickle { "trickle" } else { "balanced" }.to_owned()),
        unixfs_pb_node_field_order: Some("links-first".to_owned()),
        unixfs_hamt_shard_at_threshold: None,
        extra: serde_json::Map::new(),
    }
}

/// The profiles of `cairn init --profile a,b,...`, applied left to right as in Kubo: the
/// config profile (`default` or `test`; `default` if none is named) and the `Import.*` keys of
/// the last import profile named, if any. Names are not trimmed, as in Kubo.
pub fn init_profiles(list: &str) -> Result<(crate::config::Profile, Option<Import>), ConfigError> {
    let mut base = crate::config::Profile::Default;
    let mut import = None;
    for name in list.split(',') {
        if let Ok(p) = name.parse::<crate::config::Profile>() {
            base = p;
        } else if let Ok(p) = name.parse::<Profile>() {
            import = Some(profile_import(p));
        } else {
            return Err(bad(format!(
                "invalid configuration profile: {name:?} (known: default, test, unixfs-v1-2025, unixfs-v0-2015, \
                 legacy-cid-v0)"
            )));
        }
    }
    Ok((base, import))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with(key: &str, value: Value) -> Import {
        serde_json::from_value(json!({ key: value })).unwrap()
    }

    fn error(key: &str, value: Value) -> String {
        import_flags(&with(key, value)).unwrap_err().to_string()
    }

    /// Each key refuses what Kubo 0.43 refuses, with Kubo's words.
    #[test]
    fn bad_keys_are_refused_with_kubos_messages() {
        let cases = [
            ("CidVersion", json!(5), "Import.CidVersion must be 0 or 1, got 5"),
            ("UnixFSFileMaxLinks", json!(0), "Import.UnixFSFileMaxLinks must be positive, got 0"),
            ("UnixFSDirectoryMaxLinks", json!(-1), "Import.UnixFSDirectoryMaxLinks must be non-negative, got -1"),
            (
                "UnixFSHAMTDirectoryMaxFanout",
                json!(300),
                "Import.UnixFSHAMTDirectoryMaxFanout must be a power of 2, between 8 and 1024 (got 300)",
            ),
            ("UnixFSHAMTDirectoryMaxFanout", json!(2048), "between 8 and 1024 (got 2048)"),
            ("BatchMaxNodes", json!(0), "Import.BatchMaxNodes must be positive, got 0"),
            (
                "UnixFSChunker",
                json!("rabin"),
                r#"Import.UnixFSChunker invalid format: "rabin" (expected "size-<bytes>", "rabin-<min>-<avg>-<max>", or "buzhash")"#,
            ),
            ("UnixFSChunker", json!("rabin-64-32-128"), "invalid format"),
            ("UnixFSChunker", json!("size-0"), "invalid format"),
            // Kubo's format, but more than its importer takes.
            ("UnixFSChunker", json!("size-3000000"), "2096896"),
            ("HashFunction", json!("sha2-257"), r#"Import.HashFunction unrecognized: "sha2-257""#),
            ("HashFunction", json!("md5"), r#"Import.HashFunction "md5" is not allowed for use in IPFS"#),
            ("HashFunction", json!("blake2b-128"), "is not allowed for use in IPFS"),
            ("HashFunction", json!("sha3-256"), r#"Import.HashFunction "sha3-256" is not supported by Cairn"#),
            (
                "UnixFSHAMTDirectorySizeEstimation",
                json!("bytes"),
                r#"Import.UnixFSHAMTDirectorySizeEstimation must be "links", "block", or "disabled", got "bytes""#,
            ),
            ("UnixFSDAGLayout", json!("wide"), r#"Import.UnixFSDAGLayout must be "balanced" or "trickle", got "wide""#),
            (
                "UnixFSPBNodeFieldOrder",
                json!("random"),
                r#"Import.UnixFSPBNodeFieldOrder must be "links-first" or "data-first", got "random""#,
            ),
            ("UnixFSPBNodeFieldOrder", json!("data-first"), "not supported"),
            ("UnixFSHAMTDirectorySizeThreshold", json!("lots"), "Import.UnixFSHAMTDirectorySizeThreshold"),
            ("UnixFSHAMTDirectorySizeThreshold", json!(-1), "is not a size"),
        ];
        for (key, value, message) in cases {
            let got = error(key, value.clone());
            assert!(got.contains(message), "{key} = {value}: {got}");
        }
        // Each alone is fine; together Kubo refuses them at add, Cairn when they are written.
        let both = serde_json::from_value(json!({"CidVersion": 0, "HashFunction": "blake3"})).unwrap();
        assert!(import_flags(&both).unwrap_err().to_string().contains("CIDv0 only supports sha2-256"));
    }

    #[test]
    fn good_keys_become_flags() {
        assert_eq!(import_flags(&Import::default()).unwrap(), AddFlags::default());
        let import = serde_json::from_value(json!({
            "CidVersion": 1, "UnixFSRawLeaves": false, "UnixFSChunker": "rabin-65536-262144-524288",
            "HashFunction": "BLAKE3", "UnixFSFileMaxLinks": 1024, "UnixFSDirectoryMaxLinks": 0,
            "UnixFSHAMTDirectoryMaxFanout": 1024, "UnixFSHAMTDirectorySizeThreshold": "256KB",
            "UnixFSHAMTDirectorySizeEstimation": "disabled", "UnixFSDAGLayout": "trickle",
            "UnixFSPBNodeFieldOrder": "links-first", "BatchMaxNodes": 128, "FastProvideRoot": true
        }))
        .unwrap();
        let flags = import_flags(&import).unwrap();
        assert_eq!(flags.cid_version, Some(1));
        assert_eq!(flags.raw_leaves, Some(false));
        assert_eq!(flags.chunker, Some(ChunkerSpec::Rabin { min: 65536, avg: 262144, max: 524288 }));
        assert_eq!(flags.hash, Some(HashAlg::Blake3));
        assert_eq!(flags.max_file_links, Some(1024));
        assert_eq!(flags.max_directory_links, Some(0));
        assert_eq!(flags.max_hamt_fanout, Some(1024));
        assert_eq!(flags.hamt_threshold, Some(256_000));
        assert_eq!(flags.hamt_estimation, Some(SizeEstimation::Disabled));
        assert_eq!(flags.trickle, Some(true));
        assert_eq!(
            import_flags(&with("UnixFSHAMTDirectorySizeThreshold", json!(1000))).unwrap().hamt_threshold,
            Some(1000)
        );
        assert_eq!(
            import_flags(&with("UnixFSHAMTDirectorySizeThreshold", json!("256KiB"))).unwrap().hamt_threshold,
            Some(262_144)
        );
    }

    /// A profile's keys, read back, give exactly the profile's settings.
    #[test]
    fn profiles_write_every_key_and_read_back_the_same() {
        for (profile, _) in Profile::NAMES {
            let import = profile_import(*profile);
            let json = serde_json::to_value(&import).unwrap();
            assert_eq!(json.as_object().unwrap().values().filter(|v| !v.is_null()).count(), 11, "{json}");
            let flags = import_flags(&import).unwrap();
            assert_eq!(ImportOptions::resolve(None, &flags).unwrap(), profile.options(), "{profile}");
        }
        let v1 = serde_json::to_value(profile_import(Profile::UnixfsV1_2025)).unwrap();
        assert_eq!(v1["UnixFSChunker"], "size-1048576");
        assert_eq!(v1["UnixFSHAMTDirectorySizeThreshold"], "256KiB");
        assert_eq!(v1["UnixFSHAMTDirectorySizeEstimation"], "block");
    }

    #[test]
    fn init_profiles_apply_left_to_right() {
        use crate::config::Profile as Base;
        assert_eq!(init_profiles("default").unwrap(), (Base::Default, None));
        let (base, import) = init_profiles("test,unixfs-v1-2025").unwrap();
        assert_eq!((base, import), (Base::Test, Some(profile_import(Profile::UnixfsV1_2025))));
        let (_, import) = init_profiles("unixfs-v1-2025,legacy-cid-v0").unwrap();
        assert_eq!(import, Some(profile_import(Profile::UnixfsV0_2015)));
        let e = init_profiles("test, unixfs-v1-2025").unwrap_err().to_string();
        assert!(e.contains(r#"invalid configuration profile: " unixfs-v1-2025""#), "{e}");
    }
}
