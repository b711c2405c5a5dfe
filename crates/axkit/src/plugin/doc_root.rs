//! [`DocRoot`]: the directory a request's files are opened beneath, and
//! the one way the server opens them.
//!
//! The rule, for every file the server opens on behalf of a request (the
//! file a URL maps to, a directory's index, precompressed siblings,
//! typeless names, directory listings, error documents, whatever a plugin
//! opens next): the path is resolved by the kernel relative to an open
//! descriptor of the root (`openat2`), never by its full path from the
//! working directory, and under the root's [`Rule`] (from
//! `FollowSymlinks`). A symlink or `..` is checked in the same syscall
//! that opens the file, on every component, so nothing can swap a
//! directory for a symlink between a check and the open: a full path
//! opened with `O_NOFOLLOW` guards only its last component.
//!
//! `uri_to_file` puts the root it resolved a request under in
//! [`Context::doc_root`](crate::Context::doc_root); a plugin that opens
//! a file for the request picks its root with [`DocRoot::for_file`] and
//! opens with [`DocRoot::open`]. Roots stay open for the life of the
//! worker, one descriptor per root shared by every request and by the
//! blocking pool.
//!
//! Where `openat2` cannot be called (a kernel before 5.6, such as RHEL 8's
//! 4.18; a seccomp profile that refuses it, as older container runtimes'
//! do; valgrind), the same rules are kept by walking the path one
//! component at a time with `openat(O_NOFOLLOW)` from the root's
//! descriptor, reading each symlink met and resolving it by hand
//! ([`open_walking`]): `..` pops a directory this walk holds open, so a
//! rename meanwhile cannot lead it out of the root. What the fallback
//! gives up: nothing is opened on the event loop ([`Io::Cached`] always
//! says "would block", so every lookup goes to the blocking pool), and
//! under `FollowSymlinks on` a link into `/proc` (a "magic link") is
//! followed.

use std::cell::RefCell;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::TrustedMap;
use crate::config::{Expect, Key, LocationConfig, Scopes};
use crate::Context;

/// How paths beneath a root are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `FollowSymlinks off`: resolution never leaves the root; a symlink
    /// is followed only while it stays beneath it (`RESOLVE_BENEATH`).
    Beneath,
    /// `FollowSymlinks on`: symlinks are followed wherever they lead.
    Follow,
    /// No symlink anywhere in the path (`RESOLVE_NO_SYMLINKS`): for a
    /// file a plugin named outside any DocumentRoot with `FollowSymlinks
    /// off`, where no root says which links would stay inside.
    NoSymlinks,
}

/// `DocumentRoot PATH` (Server, Location): the directory the URL space
/// maps to. Declared by `uri_to_file`; here because every plugin that
/// opens a request's files reads it.
pub static DOCUMENT_ROOT: Key<Option<PathBuf>> = Key::new("DocumentRoot")
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    // Every request beneath a root that is not there would fail.
    .expect(Expect::Directory)
    .doc("Directory the URL space maps to (in a <Location>, the path after its prefix)");

/// `FollowSymlinks on|off` (default off): the [`Rule`] files are opened
/// under. Declared by `uri_to_file`, like [`DOCUMENT_ROOT`].
pub static FOLLOW_SYMLINKS: Key<bool> = Key::new("FollowSymlinks")
    .default("off")
    .doc("Serve files reached through symlinks that lead outside DocumentRoot");

impl Rule {
    /// The rule `FollowSymlinks` sets for a DocumentRoot of this scope.
    pub fn of(config: &LocationConfig) -> Rule {
        if *config.get(&FOLLOW_SYMLINKS) {
            Rule::Follow
        } else {
            Rule::Beneath
        }
    }

    fn resolve(self) -> u64 {
        match self {
            Rule::Beneath => RESOLVE_BENEATH,
            Rule::Follow => 0,
            Rule::NoSymlinks => RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        }
    }
}

/// A root to open a request's files beneath, with its [`Rule`]. Cheap to
/// clone (one reference count), and `Send`, for the blocking pool.
#[derive(Clone)]
pub struct DocRoot {
    dir: Arc<RootDir>,
    rule: Rule,
}

/// A root directory, opened (`O_PATH`) on first use by whichever thread
/// needs it first, then shared.
struct RootDir {
    path: PathBuf,
    fd: OnceLock<OwnedFd>,
}

thread_local! {
    /// This thread's roots (a worker's, since plugins run on its one
    /// thread), by path: each opened once. Only configured roots and `/`
    /// (or the working directory) get here, so it stays small. Keyed by
    /// the path's bytes: a `Path` key hashes and compares component by
    /// component, which cost more than the rest of a cached request's
    /// file lookup. The paths come from the config: a trusted map.
    static ROOTS: RefCell<TrustedMap<OsString, Arc<RootDir>>> = RefCell::default();
    /// The root asked for last: most requests of a worker ask for the
    /// same one, which is then found by one comparison of its path.
    static LAST_ROOT: RefCell<Option<Arc<RootDir>>> = const { RefCell::new(None) };
}

impl fmt::Debug for DocRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocRoot")
            .field("path", &self.dir.path)
            .field("rule", &self.rule)
            .finish()
    }
}

impl DocRoot {
    /// The root at `path` (relative to the working directory, or
    /// absolute) under `rule`. The directory is opened when first used
    /// and stays open for the life of the worker: make roots from the
    /// configuration, never from request data.
    pub fn new(path: &Path, rule: Rule) -> DocRoot {
        let last = LAST_ROOT.with_borrow(|last| {
            last.as_ref()
                .filter(|dir| dir.path.as_os_str() == path.as_os_str())
                .cloned()
        });
        if let Some(dir) = last {
            return DocRoot { dir, rule };
        }
        let dir = ROOTS.with_borrow_mut(|roots| match roots.get(path.as_os_str()) {
            Some(dir) => dir.clone(),
            None => {
                let dir = Arc::new(RootDir {
                    path: path.to_path_buf(),
                    fd: OnceLock::new(),
                });
                roots.insert(path.as_os_str().to_owned(), dir.clone());
                dir
            }
        });
        LAST_ROOT.set(Some(dir.clone()));
        DocRoot { dir, rule }
    }

    /// The root at `path` under `rule`, opened now and shared with no
    /// other: for a config load, which must see the directory as it is
    /// now, not the one a root of this thread opened before (a directory
    /// since replaced by another of its name, then a reload).
    pub fn open_now(path: &Path, rule: Rule) -> io::Result<DocRoot> {
        let dir = Arc::new(RootDir {
            path: path.to_path_buf(),
            fd: OnceLock::new(),
        });
        let root = DocRoot { dir, rule };
        root.fd(Io::Blocking)?;
        Ok(root)
    }

    /// The root a file this request names is opened beneath: the request's
    /// [`Context::doc_root`](crate::Context::doc_root) when `path` lies
    /// under it (what `uri_to_file` resolved); else the `<Location>`'s
    /// DocumentRoot when `path` lies under it, with its `FollowSymlinks`;
    /// else `/` (or the working directory, for a relative path) with no
    /// symlink followed anywhere, unless `FollowSymlinks on`.
    pub fn for_file(ctx: &Context, path: &Path) -> DocRoot {
        if let Some(root) = DocRoot::configured_for(ctx, path) {
            return root;
        }
        let config = ctx.config();
        let rule = match Rule::of(config) {
            Rule::Follow => Rule::Follow,
            _ => Rule::NoSymlinks,
        };
        let top = if path.is_absolute() { "/" } else { "" };
        DocRoot::new(Path::new(top), rule)
    }

    /// The root the configuration gives a file this request names, as
    /// [`for_file`](Self::for_file) picks it, or `None` when `path` lies
    /// under neither the request's root nor the Location's DocumentRoot:
    /// for a plugin that opens only files beneath a configured root.
    pub fn configured_for(ctx: &Context, path: &Path) -> Option<DocRoot> {
        if let Some(root) = ctx.doc_root.as_ref().filter(|r| r.contains(path)) {
            return Some(root.clone());
        }
        let config = ctx.config();
        config
            .get(&DOCUMENT_ROOT)
            .as_ref()
            .filter(|r| path.starts_with(r))
            .map(|root| DocRoot::new(root, Rule::of(config)))
    }

    /// The root directory's path, as configured.
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// Whether `path` (a full path, as `ctx.filename`) lies under this
    /// root.
    pub fn contains(&self, path: &Path) -> bool {
        self.relative(path).is_some()
    }

    /// `path` (a full path, as `ctx.filename`) relative to the root;
    /// `None` when it does not lie under it.
    pub fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        // The usual case by bytes: `Path::strip_prefix` walks both paths
        // component by component, several hundred instructions a call on
        // every cached file request. The rest is opened beneath the root
        // either way, so a `.` the bytes keep is harmless.
        let (root, full) = (
            self.dir.path.as_os_str().as_bytes(),
            path.as_os_str().as_bytes(),
        );
        if let Some(rest) = full.strip_prefix(root).filter(|_| !root.is_empty()) {
            if rest.is_empty() || root.ends_with(b"/") || rest[0] == b'/' {
                let start = rest.iter().position(|&b| b != b'/').unwrap_or(rest.len());
                return Some(Path::new(OsStr::from_bytes(&rest[start..])));
            }
        }
        let rel = path.strip_prefix(&self.dir.path).ok()?;
        // The root `""` (the working directory) prefixes any path.
        (!rel.is_absolute()).then_some(rel)
    }

    /// Open `path` (a full path under the root, as `ctx.filename`)
    /// read-only under the root's rule. It may wait for a disk: call it
    /// inside `tokio::task::spawn_blocking`.
    pub fn open(&self, path: &Path) -> io::Result<File> {
        let rel = self.relative(path).ok_or(io::ErrorKind::NotFound)?;
        self.open_rel(rel, READ_FLAGS, Io::Blocking)
    }

    /// The metadata of `path` (a full path under the root), resolved under
    /// the root's rule, without opening it for reading (a program that
    /// may only be executed has metadata too). It may wait for a disk.
    pub fn metadata(&self, path: &Path) -> io::Result<std::fs::Metadata> {
        let rel = self.relative(path).ok_or(io::ErrorKind::NotFound)?;
        let flags = libc::O_PATH | libc::O_CLOEXEC;
        self.open_rel(rel, flags, Io::Blocking)?.metadata()
    }

    /// The directory `path` (a full path under the root) as an `O_PATH`
    /// descriptor, resolved under the root's rule: a handle to run a
    /// program in (its working directory set to `/proc/self/fd/N`)
    /// without its path being looked up again. It may wait for a disk:
    /// call it where blocking is fine.
    pub fn open_dir(&self, path: &Path) -> io::Result<OwnedFd> {
        let rel = self.relative(path).ok_or(io::ErrorKind::NotFound)?;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        self.open_rel(rel, flags, Io::Blocking).map(OwnedFd::from)
    }

    /// The root's descriptor, opened now if this is its first use.
    pub fn fd(&self, io: Io) -> io::Result<RawFd> {
        if let Some(fd) = self.dir.fd.get() {
            return Ok(fd.as_raw_fd());
        }
        // The root itself comes from the configuration: its own path is
        // taken as written, symlinks and all.
        let top = match &self.dir.path {
            p if p.as_os_str().is_empty() => Path::new("."),
            p => p.as_path(),
        };
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        let fd = OwnedFd::from(openat2(libc::AT_FDCWD, top, flags, 0, io)?);
        // Another thread may have opened it meanwhile: keep the first.
        let _ = self.dir.fd.set(fd);
        Ok(self.dir.fd.get().expect("just set").as_raw_fd())
    }

    /// The one opener: `rel` (normal components only; empty is the root
    /// itself) beneath the root, with `flags`, under the root's rule. `..`
    /// and absolute paths are refused whatever the rule.
    pub fn open_rel(&self, rel: &Path, flags: libc::c_int, io: Io) -> io::Result<File> {
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        openat2(self.fd(io)?, rel, flags, self.rule.resolve(), io)
    }
}

/// Whether `e` is a rule refusing the path: it leads outside the root
/// (`RESOLVE_BENEATH`), or through a symlink (`RESOLVE_NO_SYMLINKS`).
pub fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP))
}

/// Whether a filesystem call may wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// On the event loop: only what the kernel's caches can answer;
    /// anything else fails with EAGAIN (see [`Io::would_block`]).
    Cached,
    /// On the blocking pool: whatever it takes.
    Blocking,
}

impl Io {
    /// Whether `e` means "would wait" in this mode: EAGAIN from
    /// `RESOLVE_CACHED`, or EINVAL from a kernel that does not know the
    /// flag.
    pub fn would_block(self, e: &io::Error) -> bool {
        self == Io::Cached && matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINVAL))
    }
}

/// The flags for opening a file to serve: read-only, and O_NONBLOCK so
/// that a FIFO cannot hang the caller.
pub const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;

/// `struct open_how` of openat2(2); libc's is non-exhaustive.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_CACHED: u64 = 0x20;

/// `path` relative to `dir` (or to the working directory with AT_FDCWD),
/// with `flags` and `resolve` restrictions (magic links are never
/// followed), in [`Io::Cached`] mode from the dentry cache only: by
/// openat2(2), or where it cannot be called by [`open_walking`].
fn openat2(dir: RawFd, path: &Path, flags: libc::c_int, resolve: u64, io: Io) -> io::Result<File> {
    let c =
        CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in path"))?;
    if !have_openat2() {
        return match io {
            Io::Cached => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
            Io::Blocking if resolve == 0 => openat(dir, &c, flags),
            Io::Blocking => open_walking(dir, path, flags, resolve),
        };
    }
    let cached = if io == Io::Cached { RESOLVE_CACHED } else { 0 };
    openat2_call(dir, &c, flags, resolve | cached)
}

/// Whether openat2 can be called here, asked once of the kernel: ENOSYS
/// from a kernel before 5.6 (or valgrind), EPERM from a seccomp filter
/// that does not know it.
fn have_openat2() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        match openat2_call(libc::AT_FDCWD, c"/", flags, 0) {
            Ok(_) => true,
            Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)),
        }
    })
}

/// openat2(2) itself.
fn openat2_call(dir: RawFd, c: &CStr, flags: libc::c_int, resolve: u64) -> io::Result<File> {
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: resolve | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a valid dirfd (or AT_FDCWD), a C string and an
    // open_how of the size we pass; the result is checked.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    fresh(fd as libc::c_int)
}

/// openat(2).
fn openat(dir: RawFd, name: &CStr, flags: libc::c_int) -> io::Result<File> {
    // SAFETY: a valid dirfd (or AT_FDCWD) and a C string; the result is
    // checked.
    fresh(unsafe { libc::openat(dir, name.as_ptr(), flags) })
}

/// The descriptor an open call returned, or its error.
fn fresh(fd: libc::c_int) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Links followed in one walk, at most (the kernel's limit, ELOOP past it).
const MAX_LINKS: usize = 40;

/// `RESOLVE_BENEATH` (and `RESOLVE_NO_SYMLINKS`, if in `resolve`) without
/// openat2: `path` from `root` one component at a time, each looked at
/// with `O_PATH | O_NOFOLLOW` before it is entered or opened, so that a
/// symlink is never followed by the kernel. A link is read and its target
/// walked in its place, from the directory that holds it: an absolute
/// target, or `..` above the root, is EXDEV (as openat2 says it); any
/// link under `RESOLVE_NO_SYMLINKS` is ELOOP. The directories entered are
/// held open, and `..` goes back to the one before rather than asking the
/// kernel, so a directory renamed meanwhile cannot take the walk out of
/// the root. The final open adds `O_NOFOLLOW`: a name swapped for a link
/// since it was looked at fails (ELOOP) rather than being followed.
fn open_walking(root: RawFd, path: &Path, flags: libc::c_int, resolve: u64) -> io::Result<File> {
    let error = io::Error::from_raw_os_error;
    let names = |p: &Path| -> io::Result<Vec<OsString>> {
        p.components()
            .rev()
            .map(|c| match c {
                Component::Normal(n) => Ok(n.to_os_string()),
                Component::CurDir => Ok(".".into()),
                Component::ParentDir => Ok("..".into()),
                Component::RootDir | Component::Prefix(_) => Err(error(libc::EXDEV)),
            })
            .collect()
    };
    // The names still to walk, the next one last.
    let mut todo = names(path)?;
    // The directories entered below the root.
    let mut dirs: Vec<File> = Vec::new();
    let mut links = 0;
    loop {
        let at = dirs.last().map_or(root, |d| d.as_raw_fd());
        let Some(name) = todo.pop() else {
            // The path ended at a directory (`.`, `..`, a link to one).
            return openat(at, c".", flags | libc::O_NOFOLLOW);
        };
        match name.as_bytes() {
            b"." => continue,
            b".." => {
                dirs.pop().ok_or_else(|| error(libc::EXDEV))?;
                continue;
            }
            _ => {}
        }
        let c = CString::new(name.as_bytes()).map_err(|_| io::Error::other("NUL in path"))?;
        let probe = openat(at, &c, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)?;
        let kind = probe.metadata()?.file_type();
        if kind.is_symlink() {
            links += 1;
            if resolve & RESOLVE_NO_SYMLINKS != 0 || links > MAX_LINKS {
                return Err(error(libc::ELOOP));
            }
            let mut target = vec![0u8; libc::PATH_MAX as usize];
            // SAFETY: readlinkat into a buffer of the length passed; the
            // result is checked.
            let n = unsafe {
                libc::readlinkat(at, c.as_ptr(), target.as_mut_ptr().cast(), target.len())
            };
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            target.truncate(n);
            todo.extend(names(Path::new(OsStr::from_bytes(&target)))?);
        } else if !todo.is_empty() {
            if !kind.is_dir() {
                return Err(error(libc::ENOTDIR));
            }
            dirs.push(probe);
        } else if flags & libc::O_PATH != 0 {
            if flags & libc::O_DIRECTORY != 0 && !kind.is_dir() {
                return Err(error(libc::ENOTDIR));
            }
            return Ok(probe);
        } else {
            return openat(at, &c, flags | libc::O_NOFOLLOW);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule as the kernel applies it, and `..` or an absolute path
    /// refused under every rule.
    #[test]
    fn rules() {
        let dir = std::env::temp_dir().join(format!("axkit-docroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www/sub")).unwrap();
        std::fs::write(dir.join("www/sub/in.txt"), "in").unwrap();
        std::fs::write(dir.join("out.txt"), "out").unwrap();
        std::os::unix::fs::symlink("sub/in.txt", dir.join("www/link-in")).unwrap();
        std::os::unix::fs::symlink("../out.txt", dir.join("www/link-out")).unwrap();
        let www = dir.join("www");
        let read = |rule, rel: &str| {
            let file = DocRoot::new(&www, rule).open(&www.join(rel));
            file.map(|f| std::io::read_to_string(f).unwrap())
                .map_err(|e| e.raw_os_error())
        };
        assert_eq!(read(Rule::Beneath, "sub/in.txt"), Ok("in".into()));
        assert_eq!(read(Rule::Beneath, "link-in"), Ok("in".into()));
        assert_eq!(read(Rule::Beneath, "link-out"), Err(Some(libc::EXDEV)));
        assert_eq!(read(Rule::Follow, "link-out"), Ok("out".into()));
        assert_eq!(read(Rule::NoSymlinks, "sub/in.txt"), Ok("in".into()));
        assert_eq!(read(Rule::NoSymlinks, "link-in"), Err(Some(libc::ELOOP)));
        let root = DocRoot::new(&www, Rule::Follow);
        for rel in ["../out.txt", "sub/../../out.txt", "/etc/passwd"] {
            let e = root.open_rel(Path::new(rel), READ_FLAGS, Io::Blocking);
            assert_eq!(e.unwrap_err().raw_os_error(), Some(libc::EXDEV), "{rel}");
        }
        // Not under the root at all.
        assert!(root.open(&dir.join("out.txt")).is_err());
        assert_eq!(root.relative(&www.join("a/b")), Some(Path::new("a/b")));
        assert_eq!(
            DocRoot::new(Path::new(""), Rule::Beneath).relative(&www),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The walk that stands in for openat2 keeps its rules: links
    /// followed while they stay beneath the root (through `..` too),
    /// refused when they leave it or when no link is allowed, loops cut,
    /// and the root itself and directories reached through links opened.
    #[test]
    fn walking_keeps_the_rules() {
        let dir = std::env::temp_dir().join(format!("axkit-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www/sub/deep")).unwrap();
        std::fs::write(dir.join("www/sub/in.txt"), "in").unwrap();
        std::fs::write(dir.join("out.txt"), "out").unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, dir.join("www").join(name)).unwrap()
        };
        link("sub/in.txt", "link-in");
        link("../out.txt", "link-out");
        link("../in.txt", "sub/deep/up");
        link("../../../out.txt", "sub/deep/escape");
        link("/etc/passwd", "absolute");
        link("loop-b", "loop-a");
        link("loop-a", "loop-b");
        link("sub", "to-sub");
        link("link-in", "chain");
        let root = File::open(dir.join("www")).unwrap();
        let read = |resolve, rel: &str| {
            open_walking(root.as_raw_fd(), Path::new(rel), READ_FLAGS, resolve)
                .map(|f| std::io::read_to_string(f).unwrap())
                .map_err(|e| e.raw_os_error())
        };
        let beneath = Rule::Beneath.resolve();
        let none = Rule::NoSymlinks.resolve();
        assert_eq!(read(beneath, "sub/in.txt"), Ok("in".into()));
        assert_eq!(read(beneath, "link-in"), Ok("in".into()));
        assert_eq!(read(beneath, "chain"), Ok("in".into()));
        assert_eq!(read(beneath, "sub/deep/up"), Ok("in".into()));
        assert_eq!(read(beneath, "to-sub/in.txt"), Ok("in".into()));
        assert_eq!(read(beneath, "link-out"), Err(Some(libc::EXDEV)));
        assert_eq!(read(beneath, "sub/deep/escape"), Err(Some(libc::EXDEV)));
        assert_eq!(read(beneath, "absolute"), Err(Some(libc::EXDEV)));
        assert_eq!(read(beneath, "loop-a"), Err(Some(libc::ELOOP)));
        assert_eq!(read(beneath, "sub/in.txt/x"), Err(Some(libc::ENOTDIR)));
        assert_eq!(read(beneath, "missing"), Err(Some(libc::ENOENT)));
        assert_eq!(read(none, "sub/in.txt"), Ok("in".into()));
        assert_eq!(read(none, "link-in"), Err(Some(libc::ELOOP)));
        assert_eq!(read(none, "to-sub/in.txt"), Err(Some(libc::ELOOP)));
        let open_dir = |rel: &str| {
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
            open_walking(root.as_raw_fd(), Path::new(rel), flags, beneath)
                .map(|f| f.metadata().unwrap().is_dir())
                .map_err(|e| e.raw_os_error())
        };
        assert_eq!(open_dir("."), Ok(true));
        assert_eq!(open_dir("to-sub"), Ok(true));
        assert_eq!(open_dir("sub/deep/.."), Ok(true));
        assert_eq!(open_dir("link-in"), Err(Some(libc::ENOTDIR)));
        // Where the kernel has openat2, the two agree on every name.
        if have_openat2() {
            let names = [
                "sub/in.txt",
                "link-in",
                "chain",
                "sub/deep/up",
                "to-sub/in.txt",
            ];
            let refused = [
                "link-out",
                "sub/deep/escape",
                "absolute",
                "loop-a",
                "missing",
            ];
            for rel in names.into_iter().chain(refused).chain(["sub/in.txt/x"]) {
                for resolve in [beneath, none] {
                    let c = CString::new(rel).unwrap();
                    let kernel = openat2_call(root.as_raw_fd(), &c, READ_FLAGS, resolve)
                        .map(|f| std::io::read_to_string(f).unwrap())
                        .map_err(|e| e.raw_os_error());
                    assert_eq!(read(resolve, rel), kernel, "{rel} {resolve:#x}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `relative` by bytes agrees with `Path::strip_prefix` on what lies
    /// under a root: a sibling whose name only starts like the root does
    /// not, a root spelt with a trailing slash or followed by doubled
    /// slashes does.
    #[test]
    fn relative_paths() {
        let rel = |root: &str, path: &str| {
            DocRoot::new(Path::new(root), Rule::Beneath)
                .relative(Path::new(path))
                .map(|p| p.to_str().unwrap().to_string())
        };
        assert_eq!(rel("/srv/www", "/srv/www/a/b"), Some("a/b".into()));
        assert_eq!(rel("/srv/www", "/srv/www"), Some("".into()));
        assert_eq!(rel("/srv/www", "/srv/www//a"), Some("a".into()));
        assert_eq!(rel("/srv/www/", "/srv/www/a"), Some("a".into()));
        assert_eq!(rel("/srv/www", "/srv/www2/a"), None);
        assert_eq!(rel("/srv/www", "/srv/ww"), None);
        assert_eq!(rel("/", "/etc/passwd"), Some("etc/passwd".into()));
        assert_eq!(rel("www", "www/a"), Some("a".into()));
        assert_eq!(rel("", "/abs"), None);
        assert_eq!(rel("", "rel/a"), Some("rel/a".into()));
    }
}
