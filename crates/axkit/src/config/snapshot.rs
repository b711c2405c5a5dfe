//! Everything a config load read from the disk, and the reader that records
//! it: the config files exactly as read, the directory listings behind
//! wildcard `Include`s, the files plugin sources load scripts from
//! (`NAME.lua`, including the lookups that found nothing), and the files
//! beneath the directories sources read whole (a `TemplateDir`). The master hands
//! its workers this snapshot, and a worker's load replays it instead of
//! touching the disk.
//!
//! Without it a worker re-read the files itself: a worker restarted after
//! a crash would pick up edits saved since the last SIGHUP and serve a
//! different configuration (or script) from its siblings, or fail to start
//! at all.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::plugin::{DocRoot, Io, Rule, READ_FLAGS};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    files: Vec<FileRead>,
    listings: Vec<Listing>,
    plugin_files: Vec<PluginFileRead>,
    /// Every regular file beneath a directory, as relative paths.
    trees: Vec<Listing>,
    /// The length of [`encode`](Self::encode)'s body so far, kept below
    /// [`MAX_ENCODED`] as reads are recorded.
    encoded_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FileRead {
    /// As the config named it (joined to the including file's directory).
    path: PathBuf,
    canonical: PathBuf,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Listing {
    dir: PathBuf,
    /// Names of the entries that are not directories, unsorted.
    names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PluginFileRead {
    path: PathBuf,
    /// Bytes, not text: a script may hold any bytes in its string literals.
    /// None: there was no regular file at `path`.
    bytes: Option<Vec<u8>>,
}

/// Refuse to record or decode anything larger: it all goes through a pipe
/// to every worker, and is held in memory by the master and each worker.
const MAX_ENCODED: usize = 64 << 20;
/// Starts every encoding: a worker from another build fails with a clear
/// message instead of misreading the bytes.
const MAGIC: &[u8; 8] = b"AXKCONF3";

impl Snapshot {
    /// Every config file read, in the order read (main file first).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Count a record of `fields` (their lengths) towards the size limit.
    fn grow(&mut self, fields: &[usize]) -> io::Result<()> {
        let len = fields.iter().fold(1usize, |n, f| n.saturating_add(8 + f));
        let total = self.encoded_len.saturating_add(len);
        // One byte stays free for the end tag.
        if total >= MAX_ENCODED {
            return Err(too_large());
        }
        self.encoded_len = total;
        Ok(())
    }

    fn record_file(&mut self, path: &Path, canonical: &Path, text: &str) -> io::Result<()> {
        self.grow(&[
            path.as_os_str().len(),
            canonical.as_os_str().len(),
            text.len(),
        ])?;
        self.files.push(FileRead {
            path: path.to_path_buf(),
            canonical: canonical.to_path_buf(),
            text: text.to_string(),
        });
        Ok(())
    }

    fn record_listing(&mut self, dir: &Path, names: &[String]) -> io::Result<()> {
        let mut fields = vec![dir.as_os_str().len(), 8];
        fields.extend(names.iter().map(String::len));
        self.grow(&fields)?;
        self.listings.push(Listing {
            dir: dir.to_path_buf(),
            names: names.to_vec(),
        });
        Ok(())
    }

    fn record_tree(&mut self, dir: &Path, files: &[String]) -> io::Result<()> {
        let mut fields = vec![dir.as_os_str().len(), 8];
        fields.extend(files.iter().map(String::len));
        self.grow(&fields)?;
        self.trees.push(Listing {
            dir: dir.to_path_buf(),
            names: files.to_vec(),
        });
        Ok(())
    }

    fn record_plugin_file(&mut self, path: &Path, bytes: Option<&[u8]>) -> io::Result<()> {
        // A source may read a file again (a module several scripts
        // require): once is enough, and a replay finds the first.
        let same = |f: &PluginFileRead| f.path == path && f.bytes.as_deref() == bytes;
        if self.plugin_files.iter().any(same) {
            return Ok(());
        }
        let mut fields = vec![path.as_os_str().len()];
        fields.extend(bytes.map(<[u8]>::len));
        self.grow(&fields)?;
        self.plugin_files.push(PluginFileRead {
            path: path.to_path_buf(),
            bytes: bytes.map(<[u8]>::to_vec),
        });
        Ok(())
    }

    /// The canonical path and text of `path` as it was read.
    fn file(&self, path: &Path) -> io::Result<(PathBuf, String)> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .map(|f| (f.canonical.clone(), f.text.clone()))
            .ok_or_else(|| missing(path))
    }

    fn listing(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.listings
            .iter()
            .find(|l| l.dir == dir)
            .map(|l| l.names.clone())
            .ok_or_else(|| missing(dir))
    }

    fn tree(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.trees
            .iter()
            .find(|l| l.dir == dir)
            .map(|l| l.names.clone())
            .ok_or_else(|| missing(dir))
    }

    fn plugin_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        self.plugin_files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.bytes.clone())
            .ok_or_else(|| missing(path))
    }

    /// A flat byte encoding: tagged records of length-prefixed fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len + 1);
        let field = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        for f in &self.files {
            out.push(b'F');
            field(&mut out, f.path.as_os_str().as_bytes());
            field(&mut out, f.canonical.as_os_str().as_bytes());
            field(&mut out, f.text.as_bytes());
        }
        for l in &self.listings {
            out.push(b'D');
            field(&mut out, l.dir.as_os_str().as_bytes());
            field(&mut out, &(l.names.len() as u64).to_le_bytes());
            for n in &l.names {
                field(&mut out, n.as_bytes());
            }
        }
        for t in &self.trees {
            out.push(b'T');
            field(&mut out, t.dir.as_os_str().as_bytes());
            field(&mut out, &(t.names.len() as u64).to_le_bytes());
            for n in &t.names {
                field(&mut out, n.as_bytes());
            }
        }
        for p in &self.plugin_files {
            match &p.bytes {
                Some(bytes) => {
                    out.push(b'P');
                    field(&mut out, p.path.as_os_str().as_bytes());
                    field(&mut out, bytes);
                }
                None => {
                    out.push(b'A');
                    field(&mut out, p.path.as_os_str().as_bytes());
                }
            }
        }
        out.push(b'E');
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&(out.len() as u64).to_le_bytes());
        framed.extend_from_slice(&out);
        framed
    }

    /// Read one encoded snapshot from `r`, consuming nothing after it.
    pub fn read_from(r: &mut impl io::Read) -> io::Result<Snapshot> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad(
                "not a configuration snapshot of this version (master and worker from different builds?)",
            ));
        }
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
        if len > MAX_ENCODED {
            return Err(bad("snapshot too large"));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        Snapshot::decode(&body)
    }

    fn decode(mut b: &[u8]) -> io::Result<Snapshot> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
            if b.len() < n {
                return Err(bad("truncated snapshot"));
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn field<'a>(b: &mut &'a [u8]) -> io::Result<&'a [u8]> {
            let n = u64::from_le_bytes(take(b, 8)?.try_into().unwrap_or_default());
            take(b, usize::try_from(n).unwrap_or(usize::MAX))
        }
        fn path(b: &mut &[u8]) -> io::Result<PathBuf> {
            Ok(PathBuf::from(std::ffi::OsString::from_vec(
                field(b)?.to_vec(),
            )))
        }
        fn text(b: &mut &[u8]) -> io::Result<String> {
            String::from_utf8(field(b)?.to_vec()).map_err(|_| bad("snapshot text is not UTF-8"))
        }
        // Recording again counts every record towards `encoded_len`.
        let mut s = Snapshot::default();
        loop {
            match take(&mut b, 1)?[0] {
                b'F' => {
                    let (path, canonical) = (path(&mut b)?, path(&mut b)?);
                    s.record_file(&path, &canonical, &text(&mut b)?)?;
                }
                tag @ (b'D' | b'T') => {
                    let dir = path(&mut b)?;
                    let count = u64::from_le_bytes(field(&mut b)?.try_into().unwrap_or_default());
                    let mut names = Vec::new();
                    for _ in 0..count {
                        names.push(text(&mut b)?);
                    }
                    match tag {
                        b'D' => s.record_listing(&dir, &names)?,
                        _ => s.record_tree(&dir, &names)?,
                    }
                }
                b'P' => {
                    let path = path(&mut b)?;
                    s.record_plugin_file(&path, Some(field(&mut b)?))?;
                }
                b'A' => s.record_plugin_file(&path(&mut b)?, None)?,
                b'E' if b.is_empty() => return Ok(s),
                _ => return Err(bad("malformed snapshot")),
            }
        }
    }
}

/// Reads what a config load needs from the disk: config files, the
/// listings behind wildcard `Include`s, and the files a
/// [`PluginSource`](crate::PluginSource) loads plugins from. Each read is
/// recorded into a [`Snapshot`]; or, given a snapshot to replay (in a
/// worker), every read is answered from it and the disk is never touched.
///
/// It is also what says which file a path in the config means
/// ([`path`](Self::path): relative paths are taken from `ServerRoot`), and
/// where a directive's parse function says what must be at a path it
/// names for the directive to work ([`expect`](Self::expect)).
pub struct FileReader<'a> {
    recorded: Snapshot,
    replay: Option<&'a Snapshot>,
    /// `ServerRoot`, once the config's lines are read.
    root: Option<PathBuf>,
    /// What the occurrence being converted expects at the paths it names,
    /// taken by the validator after each conversion.
    expected: Vec<(PathBuf, Expect)>,
}

/// What must be at a path a directive names for the directive to work:
/// `axkit --check` reports a path where it is not, with the directive's
/// file:line and the path as resolved. The server still starts (the path
/// may be mounted, or made, later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A directory (a `DocumentRoot`).
    Directory,
    /// A directory or a regular file (a `ScriptAlias` target: a directory
    /// of scripts, or one program).
    DirectoryOrFile,
    /// A file the server makes in an existing directory (a `PidFile`).
    InDirectory,
}

impl Expect {
    /// Why `path` does not hold what is expected; None if it does.
    pub(crate) fn unmet(self, path: &Path) -> Option<String> {
        if self == Expect::InDirectory {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            return Expect::Directory
                .unmet(dir)
                .map(|why| format!("its directory {}: {why}", dir.display()));
        }
        match (std::fs::metadata(path), self) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(md), _) if md.is_dir() => None,
            (Ok(md), Expect::DirectoryOrFile) if md.is_file() => None,
            (Ok(_), Expect::Directory | Expect::InDirectory) => Some("not a directory".to_string()),
            (Ok(_), Expect::DirectoryOrFile) => {
                Some("neither a directory nor a regular file".to_string())
            }
        }
    }
}

/// A file read for a plugin source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFile {
    pub bytes: Vec<u8>,
    /// The file's modification time when it was read from the disk; None
    /// when it came from the master's snapshot (the file on disk may have
    /// changed since).
    pub modified: Option<SystemTime>,
}

impl<'a> FileReader<'a> {
    /// A reader of the disk (`replay` None) or of `replay`.
    pub fn new(replay: Option<&'a Snapshot>) -> FileReader<'a> {
        FileReader {
            recorded: Snapshot::default(),
            replay,
            root: None,
            expected: Vec::new(),
        }
    }

    /// Take relative paths from `root` from now on (the config's
    /// `ServerRoot`; None: the working directory).
    pub(crate) fn set_root(&mut self, root: Option<PathBuf>) {
        self.root = root;
    }

    /// `path` as the config means it: beneath `ServerRoot` when it is
    /// relative and a `ServerRoot` is set; as written otherwise (taken from
    /// the working directory). Every path a config names goes through
    /// here: the values of path-typed keys, `PluginDir`, and what a custom
    /// parse function ([`Key::parsed_with_files`](super::Key::parsed_with_files))
    /// finds inside its words (a `ScriptAlias` target, a `sqlite:` URL's
    /// file), so that all of them mean the same file, and the messages that
    /// quote them show that file.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        match &self.root {
            Some(root) if path.is_relative() => root.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// The file a directive names (`written` as in the config; relative:
    /// beneath `ServerRoot`), read through the snapshot as
    /// [`plugin_file`](Self::plugin_file) does: its resolved path, which
    /// messages should show, and its bytes; a missing or unreadable file
    /// is an error that says which (for `SessionKey FILE`, `DatabaseFile`,
    /// `AuthUserFile`).
    pub fn required_file(&mut self, written: &str) -> Result<(PathBuf, Vec<u8>), String> {
        let path = self.path(written);
        match self.plugin_file(&path) {
            Ok(Some(file)) => Ok((path, file.bytes)),
            Ok(None) => Err(format!("{}: no such file", path.display())),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Say, from a parse function, that the occurrence being parsed names
    /// `path` (as [`path`](Self::path) resolved it), which must be `what`
    /// for the directive to work: `axkit --check` looks (see [`Expect`]).
    pub fn expect(&mut self, path: &Path, what: Expect) {
        self.expected.push((path.to_path_buf(), what));
    }

    /// What the occurrence just converted expects (see
    /// [`expect`](Self::expect)), leaving none for the next one.
    pub(crate) fn take_expected(&mut self) -> Vec<(PathBuf, Expect)> {
        std::mem::take(&mut self.expected)
    }

    /// What was read from the disk (nothing when replaying).
    pub fn into_snapshot(self) -> Snapshot {
        self.recorded
    }

    /// A config file's canonical path and text. Only regular files:
    /// `Include /dev/zero` or a FIFO would hang or exhaust memory instead
    /// of failing.
    pub(crate) fn config_file(&mut self, path: &Path) -> io::Result<(PathBuf, String)> {
        if let Some(replay) = self.replay {
            return replay.file(path);
        }
        let canon = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&canon)?;
        if !meta.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        self.check_room(&meta)?;
        let text = std::fs::read_to_string(&canon)?;
        self.recorded.record_file(path, &canon, &text)?;
        Ok((canon, text))
    }

    /// The names of the entries of `dir` that are not directories.
    pub(crate) fn list_dir(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        if let Some(replay) = self.replay {
            return replay.listing(dir);
        }
        let listing = if dir.as_os_str().is_empty() {
            std::fs::read_dir(".")
        } else {
            std::fs::read_dir(dir)
        }?;
        let names: Vec<String> = listing
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        self.recorded.record_listing(dir, &names)?;
        Ok(names)
    }

    /// The regular file at `path`, or Ok(None) if there is none: a plugin
    /// source looks for its files with this alone, so that a worker
    /// replaying the snapshot finds exactly what the master found (the
    /// misses too) without looking at the disk.
    pub fn plugin_file(&mut self, path: &Path) -> io::Result<Option<PluginFile>> {
        if let Some(replay) = self.replay {
            return Ok(replay.plugin_file(path)?.map(|bytes| PluginFile {
                bytes,
                modified: None,
            }));
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => Some(meta).filter(std::fs::Metadata::is_file),
            // `dir/NAME/init.lua` where `dir/NAME` is a file is no error.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        if meta.is_none() {
            self.recorded.record_plugin_file(path, None)?;
            return Ok(None);
        }
        self.read_opened(path, File::open(path)?)
    }

    /// Read `file`, opened for `path`, if it is a regular file (a FIFO
    /// would hang, `/dev/zero` exhaust memory), and record it as `path`.
    fn read_opened(&mut self, path: &Path, mut file: File) -> io::Result<Option<PluginFile>> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            self.recorded.record_plugin_file(path, None)?;
            return Ok(None);
        }
        self.check_room(&meta)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.recorded.record_plugin_file(path, Some(&bytes))?;
        Ok(Some(PluginFile {
            bytes,
            modified: meta.modified().ok(),
        }))
    }

    /// The regular files beneath `dir`, at any depth, as paths relative to
    /// it (`/`-separated, sorted): what a source that reads a whole
    /// directory (a `TemplateDir`) reads with
    /// [`file_beneath`](Self::file_beneath) next. A symbolic link to a
    /// file counts while it stays beneath `dir` (resolved as
    /// `RESOLVE_BENEATH` resolves it: a relative target, never above
    /// `dir`); one that leads out is an error naming it, since the master
    /// reads these files as root. Directories behind symbolic links are not
    /// entered (no loops; one outside is no error), and neither are names
    /// that are not UTF-8. At
    /// most 10,000 files, 16 levels deep: a directory named by mistake
    /// (`/`) is an error, not a long walk.
    pub fn files_beneath(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        if let Some(replay) = self.replay {
            return replay.tree(dir);
        }
        let root = DocRoot::open_now(dir, Rule::Beneath)?;
        let mut files = Vec::new();
        walk(&root, dir, "", 0, &mut files)?;
        files.sort();
        self.recorded.record_tree(dir, &files)?;
        Ok(files)
    }

    /// The file `name` (as [`files_beneath`](Self::files_beneath) lists
    /// it) beneath `dir`, read as [`plugin_file`](Self::plugin_file) reads
    /// `dir/name` and recorded under that path, but opened beneath `dir`:
    /// a link swapped in since the listing cannot lead the read out of it.
    pub fn file_beneath(&mut self, dir: &Path, name: &str) -> io::Result<Option<PluginFile>> {
        let path = dir.join(name);
        if self.replay.is_some() {
            return self.plugin_file(&path);
        }
        let opened = DocRoot::open_now(dir, Rule::Beneath)
            .and_then(|root| root.open_rel(Path::new(name), READ_FLAGS, Io::Blocking));
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Err(leads_out(name)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                self.recorded.record_plugin_file(&path, None)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        self.read_opened(&path, file)
    }

    /// Refuse a file that would take the snapshot past its limit before
    /// reading it into memory.
    fn check_room(&self, meta: &std::fs::Metadata) -> io::Result<()> {
        let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if self.recorded.encoded_len.saturating_add(len) >= MAX_ENCODED {
            return Err(too_large());
        }
        Ok(())
    }
}

/// The most files [`FileReader::files_beneath`] lists.
const MAX_TREE_FILES: usize = 10_000;
/// The most levels of directories [`FileReader::files_beneath`] enters.
const MAX_TREE_DEPTH: usize = 16;

/// Add the regular files of `dir` (at `prefix` beneath the walk's `root`)
/// to `files`, and those of its subdirectories.
fn walk(
    root: &DocRoot,
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut Vec<String>,
) -> io::Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(io::Error::other(format!(
            "more than {MAX_TREE_DEPTH} levels of directories"
        )));
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let rel = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &entry.path(), &format!("{rel}/"), depth + 1, files)?;
        } else if kind.is_file() || (kind.is_symlink() && links_to_file(root, &rel, &entry.path())?)
        {
            if files.len() == MAX_TREE_FILES {
                return Err(io::Error::other(format!(
                    "more than {MAX_TREE_FILES} files"
                )));
            }
            files.push(rel);
        }
    }
    Ok(())
}

/// Whether the symbolic link `rel` (at `path`) beneath `root` leads to a
/// regular file beneath it; an error if it leads out, unless to a
/// directory, which is not entered anyway. A dangling link or a loop is
/// no file.
fn links_to_file(root: &DocRoot, rel: &str, path: &Path) -> io::Result<bool> {
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    match root.open_rel(Path::new(rel), flags, Io::Blocking) {
        Ok(file) => Ok(file.metadata()?.is_file()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) && !path.is_dir() => Err(leads_out(rel)),
        Err(_) => Ok(false),
    }
}

fn leads_out(name: &str) -> io::Error {
    io::Error::other(format!(
        "{name} is a symbolic link that leads outside the directory (only links that stay \
         beneath it, with a relative target, are followed)"
    ))
}

fn too_large() -> io::Error {
    io::Error::other(format!(
        "the config files and plugin scripts loaded exceed {} MiB in all, the most a master \
         hands its workers",
        MAX_ENCODED >> 20
    ))
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{} is not in the configuration the master loaded",
            path.display()
        ),
    )
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut s = Snapshot::default();
        s.record_file(Path::new("a.conf"), Path::new("/etc/a.conf"), "Port 1\n")
            .unwrap();
        s.record_file(
            Path::new("conf.d/x.conf"),
            Path::new("/etc/conf.d/x.conf"),
            "é\n",
        )
        .unwrap();
        s.record_listing(Path::new("conf.d"), &["x.conf".into(), "y".into()])
            .unwrap();
        // Not UTF-8: a script's string literals may hold any bytes.
        s.record_plugin_file(Path::new("lua/x.lua"), Some(b"s = '\xff\xfe\0'\n"))
            .unwrap();
        s.record_plugin_file(Path::new("lua/y.lua"), None).unwrap();
        s.record_tree(Path::new("templates"), &["a.html".into(), "x/b.txt".into()])
            .unwrap();
        s
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(bytes.len(), 16 + s.encoded_len + 1);
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"after");
        let mut r = &extra[..];
        let decoded = Snapshot::read_from(&mut r).unwrap();
        assert_eq!(decoded, s);
        assert_eq!(r, b"after", "reads exactly one snapshot");
        assert_eq!(
            decoded.file(Path::new("a.conf")).unwrap(),
            ("/etc/a.conf".into(), "Port 1\n".into())
        );
        assert!(decoded.file(Path::new("b.conf")).is_err());
        assert_eq!(decoded.listing(Path::new("conf.d")).unwrap().len(), 2);
        assert_eq!(
            decoded
                .plugin_file(Path::new("lua/x.lua"))
                .unwrap()
                .unwrap(),
            b"s = '\xff\xfe\0'\n"
        );
        assert_eq!(decoded.plugin_file(Path::new("lua/y.lua")).unwrap(), None);
        assert_eq!(
            decoded.tree(Path::new("templates")).unwrap(),
            ["a.html", "x/b.txt"]
        );
    }

    #[test]
    fn a_replaying_reader_answers_from_the_snapshot_only() {
        let s = sample();
        let mut files = FileReader::new(Some(&s));
        assert_eq!(
            files.plugin_file(Path::new("lua/x.lua")).unwrap(),
            Some(PluginFile {
                bytes: b"s = '\xff\xfe\0'\n".to_vec(),
                modified: None
            })
        );
        // A miss the master recorded, and a path it never looked at.
        assert_eq!(files.plugin_file(Path::new("lua/y.lua")).unwrap(), None);
        let err = files.plugin_file(Path::new("/etc/passwd")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/passwd is not in the configuration the master loaded"
        );
        assert_eq!(files.into_snapshot(), Snapshot::default());
    }

    #[test]
    fn files_beneath_a_directory_are_listed_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("top.html"), "").unwrap();
        std::fs::write(root.join("a/b/deep.txt"), "").unwrap();
        std::fs::write(root.join(".hidden"), "").unwrap();
        std::os::unix::fs::symlink("top.html", root.join("link.html")).unwrap();
        std::os::unix::fs::symlink("../../top.html", root.join("a/b/up.html")).unwrap();
        // A loop, which must not be followed, and a link to a directory
        // outside, which is not entered.
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        std::os::unix::fs::symlink("/", root.join("a/slash")).unwrap();
        let mut files = FileReader::new(None);
        let found = files.files_beneath(root).unwrap();
        let names = [
            ".hidden",
            "a/b/deep.txt",
            "a/b/up.html",
            "link.html",
            "top.html",
        ];
        assert_eq!(found, names);
        assert_eq!(
            files
                .file_beneath(root, "a/b/up.html")
                .unwrap()
                .unwrap()
                .bytes,
            b""
        );
        let snapshot = files.into_snapshot();
        let mut replay = FileReader::new(Some(&snapshot));
        assert_eq!(replay.files_beneath(root).unwrap(), found);
        assert!(replay.files_beneath(&root.join("a")).is_err());
        assert!(replay.file_beneath(root, "a/b/up.html").unwrap().is_some());

        // A link to a file outside, absolute or climbing out: an error
        // naming it, listed or read.
        for target in [Path::new("/etc/passwd"), Path::new("../../../etc/passwd")] {
            let link = root.join("a/b/out.txt");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).unwrap();
            let mut files = FileReader::new(None);
            let e = files.files_beneath(root).unwrap_err().to_string();
            assert!(
                e.starts_with("a/b/out.txt is a symbolic link that leads outside"),
                "{e}"
            );
            let e = files
                .file_beneath(root, "a/b/out.txt")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("a/b/out.txt is a symbolic link"), "{e}");
        }
    }

    #[test]
    fn the_size_limit_counts_scripts() {
        let mut s = Snapshot::default();
        let big = vec![b'x'; MAX_ENCODED / 2];
        s.record_plugin_file(Path::new("a.lua"), Some(&big))
            .unwrap();
        let err = s
            .record_plugin_file(Path::new("b.lua"), Some(&big))
            .unwrap_err();
        assert!(err.to_string().contains("exceed 64 MiB"), "{err}");
        assert_eq!(s.plugin_files.len(), 1);
    }

    /// A module several scripts require is read once per script: the
    /// snapshot keeps one copy.
    #[test]
    fn a_file_read_again_is_recorded_once() {
        let mut s = Snapshot::default();
        for _ in 0..3 {
            s.record_plugin_file(Path::new("lib/m.lua"), Some(b"return 1"))
                .unwrap();
            s.record_plugin_file(Path::new("lib/none.lua"), None)
                .unwrap();
        }
        assert_eq!(s.plugin_files.len(), 2);
        let len = s.encode().len();
        s.record_plugin_file(Path::new("lib/m.lua"), Some(b"return 1"))
            .unwrap();
        assert_eq!(s.encode().len(), len);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = sample().encode();
        for cut in 0..good.len() {
            assert!(
                Snapshot::read_from(&mut &good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut rng = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % bytes.len();
                bytes[i] = (rng >> 32) as u8;
            }
            let _ = Snapshot::read_from(&mut &bytes[..]);
        }
    }
}
