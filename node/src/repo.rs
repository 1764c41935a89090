//! The repo: a directory holding the config, the identity key, a lock file and the
//! database.
//!
//! ```text
//! $CAIRN_PATH/
//!   config        JSON, Kubo's key names (see docs/config.md)
//!   identity.key  the ed25519 libp2p private key (protobuf encoding), mode 0600
//!   version       the repo format version, one decimal line
//!   repo.lock     held (flock) by the process that has the repo open; holds its PID
//!   datastore/    the RocksDB database (blocks, index, pins, meta)
//! ```
//!
//! Only one process opens a repo at a time: the second gets [`RepoError::Locked`] naming the
//! holder's PID. The lock is an OS file lock, so a killed process never leaves it held.

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId};

use crate::config::{Config, ConfigError, Profile};
use crate::settings::Settings;
use crate::store::{RocksStore, RocksTuning, StoreError};

/// The repo format this build writes and reads.
pub const REPO_VERSION: u32 = 1;

/// Why a repo could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No repo at this path.
    #[error("no Cairn repo at {0} (run `cairn init`)")]
    NotInitialized(PathBuf),
    /// `init` found a repo already there.
    #[error("a Cairn repo already exists at {0}")]
    AlreadyExists(PathBuf),
    /// Another process holds the repo.
    #[error("repo {path} is locked by another process (pid {pid})")]
    Locked {
        /// The repo.
        path: PathBuf,
        /// The holder's PID as it wrote it, or `unknown`.
        pid: String,
    },
    /// The repo was written by a newer Cairn, or an unknown format.
    #[error("repo version {found} is not supported (this Cairn reads up to {REPO_VERSION})")]
    Version {
        /// Version found on disk.
        found: String,
    },
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The identity key is unreadable.
    #[error("identity key: {0}")]
    Identity(String),
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io { path: path.to_owned(), source }
}

/// An open repo. Dropping it releases the lock.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    config: Config,
    /// The config's values typed ([`Settings::from_config`]), or why one is not what it must
    /// be: a repo with a bad value still opens, so that `cairn config` can mend it.
    settings: Result<Settings, ConfigError>,
    keypair: Keypair,
    store: RocksStore,
    _lock: fs::File,
}

impl Repo {
    /// The repo path from `--repo`, else `$CAIRN_PATH`, else `~/.cairn`.
    pub fn default_path(flag: Option<PathBuf>) -> PathBuf {
        flag.or_else(|| std::env::var_os("CAIRN_PATH").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cairn")))
            .unwrap_or_else(|| PathBuf::from(".cairn"))
    }

    /// Creates a repo at `path` and opens it.
    pub fn init(path: &Path, profile: Profile) -> Result<Repo, RepoError> {
        if path.join("config").exists() {
            return Err(RepoError::AlreadyExists(path.to_owned()));
        }
        fs::create_dir_all(path).map_err(io(path))?;
        let lock = lock(path)?;
        let keypair = Keypair::generate_ed25519();
        let key_bytes = keypair.to_protobuf_encoding().map_err(|e| RepoError::Identity(e.to_string()))?;
        write_private(&path.join("identity.key"), &key_bytes)?;
        let config = Config::new(PeerId::from(keypair.public()).to_string(), profile);
        write_atomic(&path.join("config"), config.to_json().as_bytes())?;
        write_atomic(&path.join("version"), format!("{REPO_VERSION}\n").as_bytes())?;
        let store = RocksStore::open(&path.join("datastore"), &RocksTuning::default())?;
        store.set_storage_max(config.storage_max()?.unwrap_or(u64::MAX));
        let settings = Settings::from_config(&config);
        Ok(Repo { path: path.to_owned(), config, settings, keypair, store, _lock: lock })
    }

    /// Opens an existing repo, taking its lock and running any migration.
    pub fn open(path: &Path) -> Result<Repo, RepoError> {
        if !path.join("config").exists() {
            return Err(RepoError::NotInitialized(path.to_owned()));
        }
        let lock = lock(path)?;
        let version_path = path.join("version");
        let found = fs::read_to_string(&version_path).map_err(io(&version_path))?;
        match found.trim().parse::<u32>() {
            Ok(v) if v <= REPO_VERSION => migrate(path, v)?,
            _ => return Err(RepoError::Version { found: found.trim().to_owned() }),
        }
        let config_path = path.join("config");
        keep_private(&config_path)?;
        let config = Config::from_json(&fs::read_to_string(&config_path).map_err(io(&config_path))?)?;
        let key_path = path.join("identity.key");
        let key_bytes = fs::read(&key_path).map_err(io(&key_path))?;
        let keypair = Keypair::from_protobuf_encoding(&key_bytes).map_err(|e| RepoError::Identity(e.to_string()))?;
        let store = RocksStore::open(&path.join("datastore"), &RocksTuning::default())?;
        store.set_storage_max(config.storage_max()?.unwrap_or(u64::MAX));
        let settings = Settings::from_config(&config);
        Ok(Repo { path: path.to_owned(), config, settings, keypair, store, _lock: lock })
    }

    /// The `Import.*` settings of the repo at `path`, read without opening it (a daemon may
    /// hold it), for `add`; none where there is no repo, so that Kubo's defaults apply.
    pub fn import_flags(path: &Path) -> Result<cairn_merkle::importer::AddFlags, RepoError> {
        let config_path = path.join("config");
        let text = match fs::read_to_string(&config_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(io(&config_path)(e)),
        };
        Ok(crate::import_settings::import_flags(&Config::from_json(&text)?.import)?)
    }

    /// The repo directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config as loaded.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The config's values, typed and checked once when the config was loaded or set; the
    /// first value that is not what it must be, if any.
    pub fn settings(&self) -> Result<&Settings, ConfigError> {
        self.settings.as_ref().map_err(Clone::clone)
    }

    /// Replaces the config on disk (atomically) and in memory.
    pub fn set_config(&mut self, config: Config) -> Result<(), RepoError> {
        let max = config.storage_max()?.unwrap_or(u64::MAX);
        write_atomic(&self.path.join("config"), config.to_json().as_bytes())?;
        self.store.set_storage_max(max);
        self.settings = Settings::from_config(&config);
        self.config = config;
        Ok(())
    }

    /// The node's identity key.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The peer ID.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from(self.keypair.public())
    }

    /// The block and pin store.
    pub fn store(&self) -> &RocksStore {
        &self.store
    }
}

/// Upgrades a repo of `from` to [`REPO_VERSION`]. Version 1 is the first format, so there is
/// nothing to do yet; each future version adds a step here and rewrites `version` last.
fn migrate(_path: &Path, from: u32) -> Result<(), RepoError> {
    debug_assert!(from <= REPO_VERSION);
    Ok(())
}

/// Takes the repo lock, or says who holds it.
fn lock(path: &Path) -> Result<fs::File, RepoError> {
    let lock_path = path.join("repo.lock");
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    if file.try_lock().is_err() {
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        let pid = if pid.trim().is_empty() { "unknown".to_owned() } else { pid.trim().to_owned() };
        return Err(RepoError::Locked { path: path.to_owned(), pid });
    }
    file.set_len(0).map_err(io(&lock_path))?;
    file.rewind().map_err(io(&lock_path))?;
    writeln!(file, "{}", std::process::id()).map_err(io(&lock_path))?;
    Ok(file)
}

/// Writes a file through a temporary name and a rename, so a crash leaves old or new.
/// Replaces `path` with `data` at once, readable by the owner only: the config holds API
/// secrets and Pinning Service tokens.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RepoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))
}

/// Takes group and other permissions off a secret-holding file written by an older version.
fn keep_private(path: &Path) -> Result<(), RepoError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700)).map_err(io(path))?;
    }
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), RepoError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_open_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let repo = Repo::init(&path, Profile::Test).unwrap();
        let peer = repo.peer_id();
        assert_eq!(repo.config().identity.peer_id, peer.to_string());
        match Repo::open(&path) {
            Err(RepoError::Locked { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected a lock error, got {other:?}"),
        }
        assert!(matches!(Repo::init(&path, Profile::Test), Err(RepoError::AlreadyExists(_))));
        drop(repo);
        let again = Repo::open(&path).unwrap();
        assert_eq!(again.peer_id(), peer);
        assert!(matches!(Repo::open(&dir.path().join("nope")), Err(RepoError::NotInitialized(_))));
    }

    #[test]
    fn secrets_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |name: &str| fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        let mut repo = Repo::init(dir.path(), Profile::Test).unwrap();
        assert_eq!(mode("config"), 0o600);
        assert_eq!(mode("identity.key"), 0o600);
        let mut config = repo.config().clone();
        config.pinning_service.tokens.insert("a".into(), "secret".into());
        repo.set_config(config).unwrap();
        assert_eq!(mode("config"), 0o600);
        drop(repo);
        // A config an older version left world-readable is closed on open.
        fs::set_permissions(dir.path().join("config"), fs::Permissions::from_mode(0o644)).unwrap();
        drop(Repo::open(dir.path()).unwrap());
        assert_eq!(mode("config"), 0o600);
    }

    #[test]
    fn newer_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Repo::init(dir.path(), Profile::Test).unwrap());
        fs::write(dir.path().join("version"), "99\n").unwrap();
        assert!(matches!(Repo::open(dir.path()), Err(RepoError::Version { .. })));
    }
}
