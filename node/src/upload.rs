//! Adding an upload: a sequence of named parts (files, directories, symlinks) as an HTTP
//! client sends them to `add`, imported straight into blocks.
//!
//! Nothing here touches the file system. A part's name is split into UnixFS names and
//! checked; a file's bytes stream through the importer as they arrive; a symlink part becomes
//! a UnixFS symlink node holding its target as data. The tree in memory holds only names and
//! the summaries of what was imported (bounded by [`UploadLimits`]), and its directories are
//! built once the last part is in, each after its contents, as `ipfs add -r` prints them.

use std::collections::BTreeMap;
use std::io::Read;

use cairn_merkle::importer::{self, BlockSink, DirEntry, FileSummary, ImportError};

use crate::add::{AddOptions, Added};

/// The most UnixFS names one part's name may hold (`a/b/c` holds three).
pub const MAX_DEPTH: usize = 256;
/// The longest part name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 4096;
/// The longest symlink target accepted, in bytes.
pub const MAX_SYMLINK_TARGET: usize = 4096;

/// One part of an upload, in the order it arrives.
pub enum UploadPart<R> {
    /// A directory (its parents are made as needed).
    Dir(String),
    /// A file and its bytes. An empty name makes a file of its own, named by its CID.
    File(String, R),
    /// A symbolic link and its target, kept as data.
    Symlink(String, String),
}

impl<R> std::fmt::Debug for UploadPart<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadPart::Dir(n) => f.debug_tuple("Dir").field(n).finish(),
            UploadPart::File(n, _) => f.debug_tuple("File").field(n).finish_non_exhaustive(),
            UploadPart::Symlink(n, t) => f.debug_tuple("Symlink").field(n).field(t).finish(),
        }
    }
}

/// Bounds on what one upload may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Parts (files, directories, symlinks) in one upload.
    pub max_entries: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits { max_entries: 1_000_000 }
    }
}

/// Why an upload was refused. Every case but [`UploadError::Import`] of a store failure is
/// the client's doing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// A name climbs out of the upload (`..`) or holds a NUL.
    #[error("file name {0:?} escapes the upload")]
    Escapes(String),
    /// A name with no component left (`""` for a directory, `/`, `.`).
    #[error("file name {0:?} is empty")]
    Empty(String),
    /// A name is longer than [`MAX_NAME_BYTES`] or deeper than [`MAX_DEPTH`].
    #[error("file name {name:?}... is over {MAX_NAME_BYTES} bytes or {MAX_DEPTH} levels deep")]
    TooLong {
        /// The name's first 64 characters.
        name: String,
    },
    /// A symlink target is too long.
    #[error("symlink {0:?}: target over {MAX_SYMLINK_TARGET} bytes")]
    TargetTooLong(String),
    /// Two parts have the same name, or one part is inside another that is not a directory.
    #[error("duplicate or conflicting name {0:?} in the upload")]
    Conflict(String),
    /// More parts than [`UploadLimits::max_entries`].
    #[error("the upload has more than {0} parts (API.MaxUploadEntries)")]
    TooManyParts(usize),
    /// No part at all.
    #[error("no file in the request")]
    Nothing,
    /// Importing a part failed: its bytes could not be read, or the store refused a block.
    #[error("{path}: {source}")]
    Import {
        /// The part's name.
        path: String,
        /// The error.
        #[source]
        source: Box<ImportError>,
    },
}

impl UploadError {
    /// Whether the store, not the client, caused it.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, UploadError::Import { source, .. } if matches!(**source, ImportError::Sink(_)))
    }
}

/// A node of the tree being uploaded.
enum Entry {
    /// A file or symlink, already imported.
    Leaf(FileSummary),
    /// A directory; `explicit` once a part named it.
    Dir { explicit: bool, children: BTreeMap<String, Entry> },
}

/// The UnixFS names of a part's name: empty and `.` components dropped, `..` refused.
fn components(name: &str) -> Result<Vec<&str>, UploadError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(UploadError::TooLong { name: name.chars().take(64).collect() });
    }
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(UploadError::Escapes(name.to_owned())),
            c if c.contains('\0') => return Err(UploadError::Escapes(name.to_owned())),
            c => out.push(c),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(UploadError::TooLong { name: name.chars().take(64).collect() });
    }
    if out.is_empty() {
        return Err(UploadError::Empty(name.to_owned()));
    }
    Ok(out)
}

/// Builds the tree of one upload; see the module docs.
pub struct Upload<'a> {
    opts: &'a AddOptions,
    limits: UploadLimits,
    /// Top-level entries by name.
    tops: BTreeMap<String, Entry>,
    /// Top-level names in the order they first arrived (the roots' order).
    order: Vec<Top>,
    parts: usize,
}

impl std::fmt::Debug for Upload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("parts", &self.parts).finish_non_exhaustive()
    }
}

/// A top-level entry: a name in `tops`, or a nameless file known by its CID.
enum Top {
    Named(String),
    Nameless(FileSummary),
}

impl<'a> Upload<'a> {
    /// An empty upload with these settings.
    pub fn new(opts: &'a AddOptions, limits: UploadLimits) -> Self {
        Upload { opts, limits, tops: BTreeMap::new(), order: Vec::new(), parts: 0 }
    }

    /// Takes one part: files and symlinks are imported into `sink` at once and reported to
    /// `on_added`.
    pub fn push<R: Read + Send>(
        &mut self,
        part: UploadPart<R>,
        sink: &mut dyn BlockSink,
        on_added: &mut dyn FnMut(&Added),
    ) -> Result<(), UploadError> {
        self.parts += 1;
        if self.parts > self.limits.max_entries {
            return Err(UploadError::TooManyParts(self.limits.max_entries));
        }
        let (name, leaf) = match part {
            UploadPart::File(name, reader) if name.is_empty() => {
                let summary = importer::import_file(reader, &self.opts.import, sink)
                    .map_err(|e| UploadError::Import { path: "<unnamed>".into(), source: Box::new(e) })?;
                on_added(&Added { path: summary.cid.to_string(), cid: summary.cid, size: summary.size });
                self.order.push(Top::Nameless(summary));
                return Ok(());
            }
            UploadPart::Dir(name) => (name, None),
            UploadPart::File(name, reader) => (name, Some(Ok(reader))),
            UploadPart::Symlink(name, target) => {
                if target.len() > MAX_SYMLINK_TARGET {
                    return Err(UploadError::TargetTooLong(name));
                }
                (name, Some(Err(target)))
            }
        };
        let names = components(&name)?;
        if !self.opts.hidden && names.iter().any(|n| n.starts_with('.')) {
            // Left out, as `add` leaves out hidden files; a file's bytes are not read.
            return Ok(());
        }
        let shown = names.join("/");
        let conflict = || UploadError::Conflict(shown.clone());
        let (last, parents) = names.split_last().ok_or_else(|| UploadError::Empty(name.clone()))?;
        if !self.tops.contains_key(names[0]) {
            self.order.push(Top::Named(names[0].to_owned()));
        }
        // Walk (making) the parent directories.
        let mut dir = &mut self.tops;
        for p in parents {
            let e =
                dir.entry((*p).to_owned()).or_insert_with(|| Entry::Dir { explicit: false, children: BTreeMap::new() });
            match e {
                Entry::Dir { children, .. } => dir = children,
                Entry::Leaf(_) => return Err(conflict()),
            }
        }
        let Some(content) = leaf else {
            match dir.entry((*last).to_owned()).or_insert(Entry::Dir { explicit: false, children: BTreeMap::new() }) {
                Entry::Dir { explicit: explicit @ false, .. } => *explicit = true,
                _ => return Err(conflict()),
            }
            return Ok(());
        };
        if dir.contains_key(*last) {
            return Err(conflict());
        }
        let import_err = |e| UploadError::Import { path: shown.clone(), source: Box::new(e) };
        let summary = match content {
            Ok(reader) => importer::import_file(reader, &self.opts.import, sink).map_err(import_err)?,
            Err(target) => importer::symlink(&target, &self.opts.import, sink).map_err(import_err)?,
        };
        on_added(&Added { path: shown.clone(), cid: summary.cid, size: summary.size });
        dir.insert((*last).to_owned(), Entry::Leaf(summary));
        Ok(())
    }

    /// Builds every directory (reported after its contents) and returns the roots: one per
    /// top-level entry in arrival order, or with `wrap` one directory holding them all,
    /// reported with an empty name as Kubo does.
    pub fn finish(
        self,
        wrap: bool,
        sink: &mut dyn BlockSink,
        on_added: &mut dyn FnMut(&Added),
    ) -> Result<Vec<Added>, UploadError> {
        let Upload { opts, mut tops, order, .. } = self;
        if order.is_empty() {
            return Err(UploadError::Nothing);
        }
        let mut roots = Vec::new();
        let mut wrapped = Vec::new();
        for top in order {
            let (name, summary) = match top {
                Top::Nameless(s) => (s.cid.to_string(), s),
                Top::Named(name) => {
                    let Some(entry) = tops.remove(&name) else { continue };
                    let s = build(entry, &name, opts, sink, on_added)?;
                    (name, s)
                }
            };
            if wrap {
                wrapped.push(DirEntry::new(name, &summary));
            } else {
                roots.push(Added { path: name, cid: summary.cid, size: summary.size });
            }
        }
        if wrap {
            let dir = importer::build_directory(wrapped, &opts.import, sink)
                .map_err(|e| UploadError::Import { path: String::new(), source: Box::new(e) })?;
            let root = Added { path: String::new(), cid: dir.cid, size: dir.size };
            on_added(&root);
            roots.push(root);
        }
        Ok(roots)
    }
}

/// Builds `entry` (named `shown` in reports) bottom-up.
fn build(
    entry: Entry,
    shown: &str,
    opts: &AddOptions,
    sink: &mut dyn BlockSink,
    on_added: &mut dyn FnMut(&Added),
) -> Result<FileSummary, UploadError> {
    match entry {
        Entry::Leaf(s) => Ok(s),
        Entry::Dir { children, .. } => {
            let mut entries = Vec::with_capacity(children.len());
            for (name, child) in children {
                if !opts.empty_dirs && matches!(&child, Entry::Dir { children, .. } if children.is_empty()) {
                    continue;
                }
                let s = build(child, &format!("{shown}/{name}"), opts, sink, on_added)?;
                entries.push(DirEntry::new(name, &s));
            }
            let dir = importer::build_directory(entries, &opts.import, sink)
                .map_err(|e| UploadError::Import { path: shown.to_owned(), source: Box::new(e) })?;
            on_added(&Added { path: shown.to_owned(), cid: dir.cid, size: dir.size });
            Ok(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_merkle::importer::Discard;
    use cairn_merkle::MemoryBlocks;

    type Part = UploadPart<&'static [u8]>;

    fn upload(parts: Vec<Part>, wrap: bool, limits: UploadLimits) -> Result<(Vec<String>, Vec<Added>), UploadError> {
        let opts = AddOptions { recursive: true, hidden: true, ..Default::default() };
        let mut up = Upload::new(&opts, limits);
        let mut lines = Vec::new();
        let mut sink = Discard;
        for p in parts {
            up.push(p, &mut sink, &mut |a| lines.push(a.path.clone()))?;
        }
        let roots = up.finish(wrap, &mut sink, &mut |a| lines.push(a.path.clone()))?;
        Ok((lines, roots))
    }

    #[test]
    fn a_tree_is_reported_files_first_then_directories_after_their_contents() {
        let parts = vec![
            Part::Dir("t".into()),
            Part::Dir("t/sub".into()),
            Part::File("t/sub/x.txt".into(), b"x\n"),
            Part::Symlink("t/link".into(), "/etc/passwd".into()),
            Part::File("t/a".into(), b"a"),
        ];
        let (lines, roots) = upload(parts, false, UploadLimits::default()).unwrap();
        assert_eq!(lines, ["t/sub/x.txt", "t/link", "t/a", "t/sub", "t"]);
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].path, "t");
    }

    #[test]
    fn the_same_tree_hashes_as_a_local_add_would() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        std::fs::create_dir_all(t.join("sub")).unwrap();
        std::fs::write(t.join("sub/x.txt"), "x\n").unwrap();
        std::fs::write(t.join("a"), "a").unwrap();
        std::os::unix::fs::symlink("../a", t.join("sub/l")).unwrap();
        let opts = AddOptions { recursive: true, hidden: true, ..Default::default() };
        let local = crate::add::add_path(&t, &opts, &mut MemoryBlocks::new()).unwrap();
        let parts = vec![
            Part::Dir("t".into()),
            Part::File("t/a".into(), b"a"),
            Part::Dir("t/sub".into()),
            Part::Symlink("t/sub/l".into(), "../a".into()),
            Part::File("t/sub/x.txt".into(), b"x\n"),
        ];
        let (_, roots) = upload(parts, false, UploadLimits::default()).unwrap();
        assert_eq!(roots[0].cid, local.last().unwrap().cid);
    }

    #[test]
    fn duplicate_and_conflicting_names_are_refused() {
        let cases: Vec<Vec<Part>> = vec![
            // The spool-era attack: a symlink part, then a file of the same name.
            vec![Part::Symlink("x".into(), "/root/.ssh/authorized_keys".into()), Part::File("x".into(), b"key")],
            vec![Part::File("x".into(), b"1"), Part::File("x".into(), b"2")],
            vec![Part::File("x".into(), b"1"), Part::File("x/y".into(), b"2")],
            vec![Part::File("x".into(), b"1"), Part::Dir("x".into())],
            vec![Part::Dir("x".into()), Part::Dir("x".into())],
            vec![Part::Dir("x".into()), Part::File("x".into(), b"1")],
            vec![Part::File("d/x".into(), b"1"), Part::File("d//x".into(), b"2")],
        ];
        for parts in cases {
            let shown = format!("{parts:?}");
            let err = upload(parts, false, UploadLimits::default()).unwrap_err();
            assert!(matches!(err, UploadError::Conflict(_)), "{shown}: {err}");
        }
    }

    #[test]
    fn names_cannot_climb_out_or_be_empty() {
        for bad in ["../x", "a/../../x", "a/..", "a\0b"] {
            let err = upload(vec![Part::File(bad.into(), b"")], false, UploadLimits::default()).unwrap_err();
            assert!(matches!(err, UploadError::Escapes(_)), "{bad}: {err}");
        }
        for empty in ["/", ".", "./"] {
            let err = upload(vec![Part::File(empty.into(), b"")], false, UploadLimits::default()).unwrap_err();
            assert!(matches!(err, UploadError::Empty(_)), "{empty}: {err}");
        }
        // Leading slashes and `.` are dropped: the name stays inside the upload.
        let (lines, _) = upload(vec![Part::File("/./etc/passwd".into(), b"")], false, UploadLimits::default()).unwrap();
        assert_eq!(lines, ["etc/passwd", "etc"]);
        let deep = "d/".repeat(MAX_DEPTH + 1);
        let err = upload(vec![Part::File(deep, b"")], false, UploadLimits::default()).unwrap_err();
        assert!(matches!(err, UploadError::TooLong { .. }), "{err}");
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            upload(vec![Part::File(long, b"")], false, UploadLimits::default()),
            Err(UploadError::TooLong { .. })
        ));
        let target = "t".repeat(MAX_SYMLINK_TARGET + 1);
        assert!(matches!(
            upload(vec![Part::Symlink("l".into(), target)], false, UploadLimits::default()),
            Err(UploadError::TargetTooLong(_))
        ));
    }

    #[test]
    fn the_part_count_is_bounded() {
        let parts: Vec<Part> = (0..4).map(|i| Part::File(format!("f{i}"), b"")).collect();
        let limits = UploadLimits { max_entries: 3 };
        assert!(matches!(upload(parts, false, limits), Err(UploadError::TooManyParts(3))));
        let parts: Vec<Part> = (0..3).map(|i| Part::File(format!("f{i}"), b"")).collect();
        assert_eq!(upload(parts, false, limits).unwrap().1.len(), 3);
    }

    #[test]
    fn nameless_files_are_named_by_their_cid_and_wrap_holds_everything() {
        let parts = vec![Part::File(String::new(), b"one"), Part::File("b".into(), b"two")];
        let (lines, roots) = upload(parts, true, UploadLimits::default()).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "");
        assert!(lines[0].starts_with("Qm"), "{lines:?}");
        assert_eq!(lines[1], "b");
        assert!(matches!(upload(vec![], false, UploadLimits::default()), Err(UploadError::Nothing)));
    }

    #[test]
    fn hidden_names_are_left_out_unless_asked_for() {
        let opts = AddOptions { recursive: true, hidden: false, ..Default::default() };
        let mut up = Upload::new(&opts, UploadLimits::default());
        let mut lines = Vec::new();
        for p in [Part::Dir("t".into()), Part::File("t/.h".into(), b"h"), Part::File("t/v".into(), b"v")] {
            up.push(p, &mut Discard, &mut |a| lines.push(a.path.clone())).unwrap();
        }
        up.finish(false, &mut Discard, &mut |a| lines.push(a.path.clone())).unwrap();
        assert_eq!(lines, ["t/v", "t"]);
    }
}
