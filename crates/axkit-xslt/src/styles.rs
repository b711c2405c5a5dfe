//! Each worker's compiled stylesheets, by path. An entry remembers every
//! file its compilation read (the stylesheet, its `xsl:include`s and
//! `xsl:import`s, as they went through the load policy) with their inode,
//! size and modification time ([`Files`]); at most once a second a use
//! checks them (on the blocking pool) and a change recompiles it. The
//! result cache tracks what a document loaded the same way.

use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axkit::plugin::{DocRoot, Rule, TrustedMap};
use axkit_xml::Stylesheet;

use crate::transform;
use crate::MAX_DOCUMENT;

/// How long a checked stylesheet is used before its files are looked at
/// again.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a version of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
    pub modified: SystemTime,
}

impl Stamp {
    pub(crate) fn of(md: &Metadata) -> Stamp {
        Stamp {
            ino: md.ino(),
            len: md.len(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    pub(crate) fn key(&self) -> String {
        format!("{}-{}-{}", self.ino, self.len, self.mtime_ns)
    }

    /// How many bytes [`Stamp::push_bytes`] writes.
    pub(crate) const KEY_BYTES: usize = 8 + 8 + 16;

    /// The stamp as bytes, for a key made per request (no formatting).
    pub(crate) fn push_bytes(&self, key: &mut Vec<u8>) {
        key.extend_from_slice(&self.ino.to_ne_bytes());
        key.extend_from_slice(&self.len.to_ne_bytes());
        key.extend_from_slice(&self.mtime_ns.to_ne_bytes());
    }
}

/// Files something was made from, with their stamps as they were then;
/// `None` for one it tried to load and could not (a missing `document()`,
/// an XInclude that fell back): its appearing is a change too.
pub(crate) struct Files {
    root: Option<DocRoot>,
    list: Arc<Vec<(PathBuf, Option<Stamp>)>>,
    checked: Cell<Instant>,
    /// Their paths and stamps, for a cache key.
    pub key: String,
    /// The newest of their modification times.
    pub modified: SystemTime,
}

impl Files {
    /// Stamp `paths` (beneath `root`) now. It may wait for a disk.
    pub(crate) fn stat(root: Option<DocRoot>, paths: &[PathBuf]) -> Files {
        let mut list = Vec::with_capacity(paths.len());
        let mut key = String::new();
        let mut modified = SystemTime::UNIX_EPOCH;
        for path in paths {
            let Some(found) = root.as_ref().map(|r| r.metadata(&relative(r, path))) else {
                continue;
            };
            let stamp = found.ok().map(|md| Stamp::of(&md));
            match &stamp {
                Some(stamp) => {
                    key.push_str(&format!("{}@{};", path.display(), stamp.key()));
                    modified = modified.max(stamp.modified);
                }
                None => key.push_str(&format!("{}@none;", path.display())),
            }
            list.push((path.clone(), stamp));
        }
        Files {
            root,
            list: Arc::new(list),
            checked: Cell::new(Instant::now()),
            key,
            modified,
        }
    }

    /// Whether they count as unchanged without a look: checked less than
    /// a second before `now`, or nothing to check.
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        self.list.is_empty() || now.saturating_duration_since(self.checked.get()) < CHECK_EVERY
    }

    /// Whether none of them changed since they were stamped (looked at on
    /// the blocking pool, at most once a second).
    pub(crate) async fn unchanged(&self) -> bool {
        if self.fresh(Instant::now()) {
            return true;
        }
        let (list, root) = (self.list.clone(), self.root.clone());
        let same = tokio::task::spawn_blocking(move || {
            list.iter().all(|(p, stamp)| {
                root.as_ref().is_some_and(|r| {
                    r.metadata(&relative(r, p)).ok().map(|md| Stamp::of(&md)) == *stamp
                })
            })
        })
        .await
        .unwrap_or(false);
        if same {
            self.checked.set(Instant::now());
        }
        same
    }
}

/// `path` (absolute) as `root` names its files (relative to the working
/// directory when the root is).
fn relative(root: &DocRoot, path: &Path) -> PathBuf {
    match (root.path().is_absolute(), transform::cwd()) {
        (false, Some(cwd)) => path.strip_prefix(cwd).unwrap_or(path).to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// A compiled stylesheet and the files it was compiled from.
pub(crate) struct Compiled {
    pub sheet: Arc<Stylesheet>,
    pub files: Files,
}

#[derive(Default)]
pub(crate) struct Styles {
    /// By the path's bytes: a `Path` key hashes component by component,
    /// a good part of a result cache hit. The paths come from the config
    /// or from the site's own `xml-stylesheet` PIs, never from a URL.
    map: RefCell<TrustedMap<OsString, Rc<Compiled>>>,
}

impl Styles {
    /// Compile `path` now, blocking (the constructor's check of the
    /// config), and keep it.
    pub(crate) fn compile_now(&self, path: &Path, doc_root: Option<&Path>) -> Result<(), String> {
        let compiled = compile(path, root_for(path, doc_root))?;
        self.map
            .borrow_mut()
            .insert(path.as_os_str().to_owned(), Rc::new(compiled));
        Ok(())
    }

    /// The compiled stylesheet at `path`, compiled (or recompiled after a
    /// change) on the blocking pool when needed.
    pub(crate) async fn get(
        &self,
        path: &Path,
        doc_root: Option<&Path>,
    ) -> Result<Rc<Compiled>, String> {
        let current = self.map.borrow().get(path.as_os_str()).cloned();
        if let Some(c) = current {
            if c.files.unchanged().await {
                return Ok(c);
            }
        }
        let root = root_for(path, doc_root);
        let owned = path.to_path_buf();
        let compiled = tokio::task::spawn_blocking(move || compile(&owned, root))
            .await
            .map_err(|e| format!("{}: compiling failed: {e}", path.display()))??;
        let compiled = Rc::new(compiled);
        self.map
            .borrow_mut()
            .insert(path.as_os_str().to_owned(), compiled.clone());
        Ok(compiled)
    }
}

/// The root a stylesheet and its includes are read beneath: the
/// DocumentRoot it lies under, else its own directory (a stylesheet the
/// config names outside the site), without following links.
fn root_for(path: &Path, doc_root: Option<&Path>) -> DocRoot {
    match doc_root {
        Some(root) if path.starts_with(transform::absolute(root)) => {
            DocRoot::new(root, Rule::Beneath)
        }
        _ => DocRoot::new(path.parent().unwrap_or(Path::new("/")), Rule::NoSymlinks),
    }
}

/// Compile `path`, recording every file the compilation loads.
fn compile(path: &Path, root: DocRoot) -> Result<Compiled, String> {
    let (policy, loaded) =
        transform::recording(transform::policy(Some(root.clone()), MAX_DOCUMENT));
    let sheet = Stylesheet::compile(path, &policy).map_err(|e| e.to_string())?;
    let mut files = vec![path.to_path_buf()];
    files.extend(transform::loaded(&loaded));
    Ok(Compiled {
        sheet: Arc::new(sheet),
        files: Files::stat(Some(root), &files),
    })
}
