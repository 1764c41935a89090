//! Adding files and directory trees from the local file system.
//!
//! This is the I/O half of import: it walks directories in name order, streams each file
//! through [`cairn_merkle::importer`], and builds directory nodes bottom-up. Output follows
//! Kubo's `ipfs add -r`: one [`Added`] per file as it is added, then every directory, each
//! after its contents, the root last.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_merkle::importer::{self, BlockSink, DirEntry, FileSummary, ImportError, ImportOptions};
use cairn_merkle::Cid;

/// One line of `add` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Path as printed: the argument's base name, then components below it, joined by `/`.
    pub path: String,
    /// The CID.
    pub cid: Cid,
    /// Bytes of file content under it.
    pub size: u64,
}

/// Why adding failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    /// The file system could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A directory was given without `recursive`.
    #[error("{0} is a directory; use -r to add directories")]
    IsDirectory(PathBuf),
    /// A file name is not valid UTF-8, so it cannot be a UnixFS name.
    #[error("{0}: file name is not valid UTF-8")]
    NonUtf8Name(PathBuf),
    /// The file is neither a regular file, a directory nor a symlink.
    #[error("{0}: unsupported file type (only files, directories and symlinks can be added)")]
    Unsupported(PathBuf),
    /// Importing failed.
    #[error("{path}: {source}")]
    Import {
        /// The file being imported.
        path: PathBuf,
        /// The error (boxed to keep results small).
        #[source]
        source: Box<ImportError>,
    },
}

/// Settings of one `add` beyond the import options.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// The DAG settings.
    pub import: ImportOptions,
    /// Add directories recursively.
    pub recursive: bool,
    /// Include files whose names start with a dot.
    pub hidden: bool,
    /// Include empty directories below the top one (Kubo's `--empty-dirs`, on by default). A
    /// directory is empty when it holds nothing `add` would take (hidden entries left out
    /// unless [`AddOptions::hidden`]); one holding only empty directories is kept, empty.
    pub empty_dirs: bool,
}

impl Default for AddOptions {
    /// Kubo's defaults: not recursive, no hidden files, empty directories included.
    fn default() -> Self {
        AddOptions { import: ImportOptions::default(), recursive: false, hidden: false, empty_dirs: true }
    }
}

/// Adds `path` (a file, a symlink, or with `recursive` a directory tree), sending blocks to
/// `sink` and reporting each file and directory to `on_added` as Kubo prints them.
/// Returns the root.
pub fn add(
    path: &Path,
    opts: &AddOptions,
    sink: &mut dyn BlockSink,
    on_added: &mut dyn FnMut(&Added),
) -> Result<Added, AddError> {
    let name = match path.file_name() {
        Some(n) => n.to_str().ok_or_else(|| AddError::NonUtf8Name(path.to_owned()))?.to_owned(),
        // `.` or `/`: Kubo names the root after the resolved directory.
        None => fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .unwrap_or_default(),
    };
    let meta = fs::symlink_metadata(path).map_err(|source| AddError::Io { path: path.to_owned(), source })?;
    if meta.is_dir() && !opts.recursive {
        return Err(AddError::IsDirectory(path.to_owned()));
    }
    let mut walker = Walk { opts, sink, on_added, dirs: Vec::new() };
    let root = walker.node(path, &name, &meta)?;
    let root_added = Added { path: name, cid: root.cid, size: root.size };
    let is_dir = meta.is_dir();
    let dirs = std::mem::take(&mut walker.dirs);
    for d in &dirs {
        (walker.on_added)(d);
    }
    if !is_dir {
        (walker.on_added)(&root_added);
    }
    Ok(root_added)
}

/// Convenience: adds `path` and collects every [`Added`] line, root last.
pub fn add_path(path: &Path, opts: &AddOptions, sink: &mut dyn BlockSink) -> Result<Vec<Added>, AddError> {
    let mut out = Vec::new();
    add(path, opts, sink, &mut |a| out.push(a.clone()))?;
    Ok(out)
}

struct Walk<'a> {
    opts: &'a AddOptions,
    sink: &'a mut dyn BlockSink,
    on_added: &'a mut dyn FnMut(&Added),
    /// Directories finished so far, in the post-order Kubo prints them.
    dirs: Vec<Added>,
}

impl Walk<'_> {
    /// Whether the directory at `path` holds nothing this add would take.
    fn is_empty_dir(&self, path: &Path) -> Result<bool, AddError> {
        let io_err = |source| AddError::Io { path: path.to_owned(), source };
        for entry in fs::read_dir(path).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            if self.opts.hidden || !entry.file_name().to_string_lossy().starts_with('.') {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn node(&mut self, path: &Path, display: &str, meta: &fs::Metadata) -> Result<FileSummary, AddError> {
        let import_err = |source| AddError::Import { path: path.to_owned(), source: Box::new(source) };
        let io_err = |source| AddError::Io { path: path.to_owned(), source };
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(io_err)?;
            let target = target.to_str().ok_or_else(|| AddError::NonUtf8Name(path.to_owned()))?;
            importer::symlink(target, &self.opts.import, self.sink).map_err(import_err)
        } else if ft.is_file() {
            let file = fs::File::open(path).map_err(io_err)?;
            importer::import_file(file, &self.opts.import, self.sink).map_err(import_err)
        } else if ft.is_dir() {
            let mut children: Vec<(String, PathBuf)> = Vec::new();
            for entry in fs::read_dir(path).map_err(io_err)? {
                let entry = entry.map_err(io_err)?;
                let name = entry.file_name();
                let name = name.to_str().ok_or_else(|| AddError::NonUtf8Name(entry.path()))?.to_owned();
                if !self.opts.hidden && name.starts_with('.') {
                    continue;
                }
                children.push((name, entry.path()));
            }
            children.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let mut entries = Vec::with_capacity(children.len());
            for (name, child) in children {
                let shown = format!("{display}/{name}");
                let meta =
                    fs::symlink_metadata(&child).map_err(|source| AddError::Io { path: child.clone(), source })?;
                if meta.is_dir() && !self.opts.empty_dirs && self.is_empty_dir(&child)? {
                    continue;
                }
                let summary = self.node(&child, &shown, &meta)?;
                if !meta.is_dir() {
                    (self.on_added)(&Added { path: shown, cid: summary.cid, size: summary.size });
                }
                entries.push(DirEntry::new(name, &summary));
            }
            let dir = importer::build_directory(entries, &self.opts.import, self.sink).map_err(import_err)?;
            self.dirs.push(Added { path: display.to_owned(), cid: dir.cid, size: dir.size });
            Ok(dir)
        } else {
            Err(AddError::Unsupported(path.to_owned()))
        }
    }
}
