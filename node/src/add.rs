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
    /// With symlinks dereferenced, a directory is reached again below itself.
    #[error("{0}: a symlink leads back to a directory that holds it (a cycle), so it cannot be dereferenced")]
    SymlinkCycle(PathBuf),
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
    /// What a symlink adds: itself, or what it points to.
    pub symlinks: Symlinks,
}

impl Default for AddOptions {
    /// Kubo's defaults: not recursive, no hidden files, empty directories included, symlinks
    /// added as symlinks.
    fn default() -> Self {
        AddOptions {
            import: ImportOptions::default(),
            recursive: false,
            hidden: false,
            empty_dirs: true,
            symlinks: Symlinks::Keep,
        }
    }
}

/// What `add` makes of a symlink, as Kubo's flags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symlinks {
    /// A UnixFS symlink node holding the link's target text; the link is not followed.
    #[default]
    Keep,
    /// `--dereference-args`: an argument that is a symlink is replaced by what it points to
    /// (and named after it); symlinks inside directories are kept.
    DereferenceArgs,
    /// `--dereference-symlinks`: every symlink, argument or inside a directory, is replaced by
    /// what it points to. A dangling link, or one that leads back to a directory being added,
    /// stops the add with an error.
    Dereference,
}

/// The path, name and metadata `add` goes by for the argument `path`: with dereferencing, a
/// symlink's final target, named after it as Kubo names it.
pub fn argument(path: &Path, symlinks: Symlinks) -> Result<(PathBuf, String, fs::Metadata), AddError> {
    let io_err = |source| AddError::Io { path: path.to_owned(), source };
    let meta = fs::symlink_metadata(path).map_err(io_err)?;
    let (path, meta) = if meta.file_type().is_symlink() && symlinks != Symlinks::Keep {
        let target = fs::canonicalize(path).map_err(io_err)?;
        let meta = fs::metadata(&target).map_err(io_err)?;
        (target, meta)
    } else {
        (path.to_owned(), meta)
    };
    let name = match path.file_name() {
        Some(n) => n.to_str().ok_or_else(|| AddError::NonUtf8Name(path.clone()))?.to_owned(),
        // `.` or `/`: Kubo names the root after the resolved directory.
        None => fs::canonicalize(&path)
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .unwrap_or_default(),
    };
    Ok((path, name, meta))
}

/// The metadata of an entry inside a directory: the entry itself, or with
/// [`Symlinks::Dereference`] what it points to.
pub fn entry_metadata(path: &Path, symlinks: Symlinks) -> Result<fs::Metadata, AddError> {
    let meta = if symlinks == Symlinks::Dereference { fs::metadata(path) } else { fs::symlink_metadata(path) };
    meta.map_err(|source| AddError::Io { path: path.to_owned(), source })
}

/// The directories on a walk's current path, by device and inode: with symlinks followed, a
/// directory met again below itself is a cycle, refused instead of walked until the path is
/// too long. Without following, a real file system has no such cycle.
#[derive(Debug, Default)]
pub struct Ancestors(Vec<(u64, u64)>);

impl Ancestors {
    /// Enters the directory at `path`, or refuses it if it is already on the path.
    pub fn enter(&mut self, path: &Path, meta: &fs::Metadata) -> Result<(), AddError> {
        use std::os::unix::fs::MetadataExt;
        let id = (meta.dev(), meta.ino());
        if self.0.contains(&id) {
            return Err(AddError::SymlinkCycle(path.to_owned()));
        }
        self.0.push(id);
        Ok(())
    }

    /// Leaves the directory entered last.
    pub fn leave(&mut self) {
        self.0.pop();
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
    let (path, name, meta) = argument(path, opts.symlinks)?;
    let path = path.as_path();
    if meta.is_dir() && !opts.recursive {
        return Err(AddError::IsDirectory(path.to_owned()));
    }
    let mut walker = Walk { opts, sink, on_added, dirs: Vec::new(), ancestors: Ancestors::default() };
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
    /// The directories being walked.
    ancestors: Ancestors,
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
            self.ancestors.enter(path, meta)?;
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
                let meta = entry_metadata(&child, self.opts.symlinks)?;
                if meta.is_dir() && !self.opts.empty_dirs && self.is_empty_dir(&child)? {
                    continue;
                }
                let summary = self.node(&child, &shown, &meta)?;
                if !meta.is_dir() {
                    (self.on_added)(&Added { path: shown, cid: summary.cid, size: summary.size });
                }
                entries.push(DirEntry::new(name, &summary));
            }
            self.ancestors.leave();
            let dir = importer::build_directory(entries, &self.opts.import, self.sink).map_err(import_err)?;
            self.dirs.push(Added { path: display.to_owned(), cid: dir.cid, size: dir.size });
            Ok(dir)
        } else {
            Err(AddError::Unsupported(path.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use cairn_merkle::importer::SinkError;
    use cairn_merkle::Block;

    use super::*;

    fn add_tree(path: &Path, symlinks: Symlinks) -> Result<Vec<Added>, AddError> {
        let opts = AddOptions { recursive: true, symlinks, ..AddOptions::default() };
        let mut sink = |_: Block| -> Result<(), SinkError> { Ok(()) };
        add_path(path, &opts, &mut sink)
    }

    /// Dereferenced, a link adds what it points to: the tree's CID is the one of a copy.
    #[test]
    fn a_dereferenced_link_adds_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let (linked, copied) = (dir.path().join("t1/t"), dir.path().join("t2/t"));
        for t in [&linked, &copied] {
            fs::create_dir_all(t.join("sub")).unwrap();
            fs::write(t.join("sub/f"), b"content").unwrap();
        }
        symlink("sub/f", linked.join("g")).unwrap();
        symlink("sub", linked.join("d")).unwrap();
        fs::write(copied.join("g"), b"content").unwrap();
        fs::create_dir_all(copied.join("d")).unwrap();
        fs::write(copied.join("d/f"), b"content").unwrap();
        let root = |lines: Vec<Added>| lines.last().unwrap().cid;
        let followed = root(add_tree(&linked, Symlinks::Dereference).unwrap());
        assert_eq!(followed, root(add_tree(&copied, Symlinks::Keep).unwrap()));
        assert_ne!(root(add_tree(&linked, Symlinks::Keep).unwrap()), followed, "kept links are links");
        // Only the argument: the links inside stay links.
        assert_eq!(
            root(add_tree(&linked, Symlinks::DereferenceArgs).unwrap()),
            root(add_tree(&linked, Symlinks::Keep).unwrap())
        );
    }

    /// A link back up the tree is a cycle, refused at once instead of walked until the path is
    /// too long; a dangling link stops the add too. Kept as links, both are fine.
    #[test]
    fn cycles_and_dangling_links_are_refused_when_followed() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        symlink("../..", t.join("a/b/up")).unwrap();
        assert!(matches!(add_tree(&t, Symlinks::Dereference), Err(AddError::SymlinkCycle(p)) if p.ends_with("a/b/up")));
        add_tree(&t, Symlinks::Keep).unwrap();

        let u = dir.path().join("u");
        fs::create_dir_all(&u).unwrap();
        symlink("nowhere", u.join("dangling")).unwrap();
        let err = add_tree(&u, Symlinks::Dereference).unwrap_err();
        assert!(matches!(&err, AddError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{err}");
        symlink("self", u.join("self")).unwrap();
        add_tree(&u, Symlinks::Keep).unwrap();
        // An argument that is a dangling link, dereferenced.
        assert!(add_tree(&u.join("dangling"), Symlinks::DereferenceArgs).is_err());
    }
}
