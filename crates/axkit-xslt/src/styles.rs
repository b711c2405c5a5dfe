//! Each worker's compiled stylesheets, by path. An entry remembers every
//! file its compilation read (the stylesheet, its `xsl:include`s and
//! `xsl:import`s, as they went through the load policy) with their inode,
//! size and modification time; at most once a second a use checks them
//! (on the blocking pool) and a change recompiles it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axkit::plugin::{DocRoot, Rule};
use axkit_xml::{Policy, Stylesheet};

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
}

/// A compiled stylesheet and the files it was compiled from.
pub(crate) struct Compiled {
    pub sheet: Arc<Stylesheet>,
    /// The path and stamps of every file it was compiled from: part of
    /// the result cache's key.
    pub key: String,
    /// The newest of those files' modification times.
    pub modified: SystemTime,
    deps: Arc<Vec<(PathBuf, Stamp)>>,
    root: DocRoot,
    checked: Cell<Instant>,
}

#[derive(Default)]
pub(crate) struct Styles {
    map: RefCell<HashMap<PathBuf, Rc<Compiled>>>,
}

impl Styles {
    /// Compile `path` now, blocking (the constructor's check of the
    /// config), and keep it.
    pub(crate) fn compile_now(&self, path: &Path, doc_root: Option<&Path>) -> Result<(), String> {
        let compiled = compile(path, root_for(path, doc_root))?;
        self.map
            .borrow_mut()
            .insert(path.to_path_buf(), Rc::new(compiled));
        Ok(())
    }

    /// The compiled stylesheet at `path`, compiled (or recompiled after a
    /// change) on the blocking pool when needed.
    pub(crate) async fn get(
        &self,
        path: &Path,
        doc_root: Option<&Path>,
    ) -> Result<Rc<Compiled>, String> {
        let current = self.map.borrow().get(path).cloned();
        if let Some(c) = current {
            if c.checked.get().elapsed() < CHECK_EVERY {
                return Ok(c);
            }
            let (deps, root) = (c.deps.clone(), c.root.clone());
            let same = tokio::task::spawn_blocking(move || {
                deps.iter()
                    .all(|(p, stamp)| root.metadata(p).is_ok_and(|md| Stamp::of(&md) == *stamp))
            })
            .await
            .unwrap_or(false);
            if same {
                c.checked.set(Instant::now());
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
            .insert(path.to_path_buf(), compiled.clone());
        Ok(compiled)
    }
}

/// The root a stylesheet and its includes are read beneath: the
/// DocumentRoot it lies under, else its own directory (a stylesheet the
/// config names outside the site), without following links.
fn root_for(path: &Path, doc_root: Option<&Path>) -> DocRoot {
    match doc_root {
        Some(root) if path.starts_with(root) => DocRoot::new(root, Rule::Beneath),
        _ => DocRoot::new(path.parent().unwrap_or(Path::new("/")), Rule::NoSymlinks),
    }
}

/// Compile `path`, recording every file the compilation loads.
fn compile(path: &Path, root: DocRoot) -> Result<Compiled, String> {
    let loaded = Arc::new(Mutex::new(vec![path.to_path_buf()]));
    let inner = transform::policy(Some(root.clone()), MAX_DOCUMENT);
    let record = loaded.clone();
    let policy = Policy {
        load: Arc::new(move |p: &Path| {
            if let Ok(mut list) = record.lock() {
                if !list.iter().any(|q| q == p) {
                    list.push(p.to_path_buf());
                }
            }
            (inner.load)(p)
        }),
        max_size: MAX_DOCUMENT,
    };
    let sheet = Stylesheet::compile(path, &policy).map_err(|e| e.to_string())?;
    let files = loaded.lock().map(|l| l.clone()).unwrap_or_default();
    let mut deps = Vec::with_capacity(files.len());
    let mut key = String::new();
    let mut modified = SystemTime::UNIX_EPOCH;
    for file in files {
        let Ok(md) = root.metadata(&file) else {
            continue;
        };
        let stamp = Stamp::of(&md);
        key.push_str(&format!("{}@{};", file.display(), stamp.key()));
        modified = modified.max(stamp.modified);
        deps.push((file, stamp));
    }
    Ok(Compiled {
        sheet: Arc::new(sheet),
        key,
        modified,
        deps: Arc::new(deps),
        root,
        checked: Cell::new(Instant::now()),
    })
}
