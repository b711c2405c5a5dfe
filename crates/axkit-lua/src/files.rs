//! The `file` global, confined to the directories the config names with
//! `LuaFileRoot DIR` (global, repeatable). Without one, scripts have no
//! file access at all.
//!
//! A path (absolute, or relative to `ServerRoot` — the working directory
//! without one — as everywhere in the config) must lie beneath one of the
//! roots, the first in config order that contains it, and is then resolved
//! by the kernel relative to that root's descriptor under `RESOLVE_BENEATH`:
//! through
//! [`DocRoot`], the opener the server uses for request files. `..` is
//! refused, and a symbolic link is followed only while it stays beneath
//! the root, so neither a path nor a link planted in a root can reach
//! `/etc/shadow`. Operations on a name itself (write, append, delete,
//! rename, mkdir) act on the final component relative to its parent
//! directory's descriptor, never following a link there. The worker's own
//! upload directory (`r:form{ uploads = … }`) counts as a root too, so an
//! upload can be read or moved into place.
//!
//! Every call runs on tokio's blocking pool and returns its value, or
//! `nil` and a message `"PATH: reason"`; only wrong argument types raise.
//! The roots are known once the plugins are built: while scripts load
//! (their top level), file access is not available yet.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use axkit::config::{List, Scopes};
use axkit::plugin::{is_escape, DocRoot, Io, Rule, READ_FLAGS};
use axkit::Context;
use mlua::{IntoLua, Lua, LuaString, Table, Value};
use rustix::fs::{AtFlags, Mode, OFlags};

/// `LuaFileRoot DIR` (global, repeatable).
pub(crate) static LUA_FILE_ROOT: List<PathBuf> =
    List::new("LuaFileRoot").scopes(Scopes::GLOBAL).doc(
        "Directory Lua scripts may read and write beneath (repeatable); without one, \
         the file API is off",
    );

/// The largest file `file.read` reads: the contents are held in Rust
/// memory, outside LuaMemoryLimit, before they become a Lua string.
const MAX_READ: usize = 16 << 20;

const NO_ROOTS: &str = "file access is off (no LuaFileRoot is configured)";
const NOT_BENEATH: &str = "not beneath a LuaFileRoot";

/// The roots of one Lua state.
#[derive(Default)]
pub(crate) struct Files {
    /// Absolute, in config order. None until the plugins are built.
    roots: RefCell<Option<Vec<PathBuf>>>,
    /// What a relative path is taken from: `ServerRoot`, else the working
    /// directory.
    base: RefCell<PathBuf>,
}

impl Files {
    /// Take the roots of the config (`LuaFileRoot`, already beneath
    /// `server_root` when relative), each of which must be a directory.
    pub fn configure(&self, roots: &[PathBuf], server_root: Option<&Path>) -> Result<(), String> {
        let base = match server_root {
            Some(dir) => dir.to_path_buf(),
            None => std::env::current_dir().map_err(|e| format!("LuaFileRoot: {e}"))?,
        };
        let mut absolute = Vec::new();
        for root in roots {
            if root.components().any(|c| c == Component::ParentDir) {
                return Err(format!(
                    "LuaFileRoot {}: `..` is not allowed",
                    root.display()
                ));
            }
            match std::fs::metadata(root) {
                Ok(m) if m.is_dir() => absolute.push(base.join(root)),
                Ok(_) => return Err(format!("LuaFileRoot {}: not a directory", root.display())),
                Err(e) => return Err(format!("LuaFileRoot {}: {}", root.display(), reason(&e))),
            }
        }
        *self.roots.borrow_mut() = Some(absolute);
        *self.base.borrow_mut() = base;
        Ok(())
    }

    /// The root `path` lies beneath, with the path relative to it.
    pub fn locate(&self, path: &Path) -> Result<(DocRoot, PathBuf), String> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err("a path with `..` is refused".into());
        }
        let roots = self.roots.borrow();
        let Some(roots) = roots.as_ref() else {
            return Err(
                "file access is not available while scripts load (LuaFileRoot is \
                        known once the plugins are built)"
                    .into(),
            );
        };
        let full = self.base.borrow().join(path);
        let uploads = axkit::plugin::form::upload_dir_path();
        for root in roots.iter().chain(uploads.as_ref()) {
            if let Ok(rel) = full.strip_prefix(root) {
                return Ok((DocRoot::new(root, Rule::Beneath), rel.to_path_buf()));
            }
        }
        Err(match roots.is_empty() {
            true => NO_ROOTS.into(),
            false => NOT_BENEATH.into(),
        })
    }
}

impl Files {
    /// Where a file a request hook names (`r:send_file`, `r:set_filename`)
    /// is opened beneath: the request's DocumentRoot under its
    /// `FollowSymlinks` rule when it lies there, as every request file is
    /// ([`DocRoot::configured_for`]), else a LuaFileRoot; a file under
    /// neither is refused.
    pub fn for_request(&self, ctx: &Context, path: &Path) -> Result<(DocRoot, PathBuf), String> {
        if let Some(root) = DocRoot::configured_for(ctx, path) {
            if let Some(rel) = root.relative(path) {
                let rel = rel.to_path_buf();
                return Ok((root, rel));
            }
        }
        self.locate(path).map_err(|e| match e.as_str() {
            NOT_BENEATH | NO_ROOTS => "not beneath the DocumentRoot or a LuaFileRoot".into(),
            _ => e,
        })
    }
}

/// An error's text without Rust's " (os error N)".
fn reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A failure to resolve a path beneath its root.
fn resolving(e: io::Error) -> String {
    if is_escape(&e) {
        "leads outside its LuaFileRoot".into()
    } else {
        reason(&e)
    }
}

/// An operation on a final path component.
fn naming(e: impl Into<io::Error>) -> String {
    let e = e.into();
    match e.raw_os_error() {
        Some(libc::ELOOP) => "is a symbolic link".into(),
        _ => reason(&e),
    }
}

/// `rel`'s parent directory (an `O_PATH` descriptor resolved beneath
/// `root`) and its last component.
fn parent_of<'a>(root: &DocRoot, rel: &'a Path) -> Result<(File, &'a OsStr), String> {
    let name = rel
        .file_name()
        .ok_or_else(|| String::from("is a LuaFileRoot itself"))?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let dir = root
        .open_rel(parent, flags, Io::Blocking)
        .map_err(resolving)?;
    Ok((dir, name))
}

fn read(root: &DocRoot, rel: &Path) -> Result<Vec<u8>, String> {
    // O_NONBLOCK (READ_FLAGS): a FIFO must not hold a blocking thread
    // until some writer comes; then only a regular file is read.
    let file = root
        .open_rel(rel, READ_FLAGS, Io::Blocking)
        .map_err(resolving)?;
    let metadata = file.metadata().map_err(|e| reason(&e))?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    // Checked before and while reading: a file may grow in between.
    let too_big = || format!("larger than {} MiB", MAX_READ >> 20);
    if metadata.len() > MAX_READ as u64 {
        return Err(too_big());
    }
    let mut data = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_READ as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| reason(&e))?;
    if data.len() > MAX_READ {
        return Err(too_big());
    }
    Ok(data)
}

/// A name for a temporary file that no other writer picks.
fn temp_name() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into it.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Never in practice; O_EXCL still keeps writers apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes[..4].copy_from_slice(&nanos.to_le_bytes());
        bytes[4..].copy_from_slice(&std::process::id().to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(".axkit-write-{hex}.tmp")
}

/// Replace `rel` with `data` so that a reader sees the old file or the
/// new one, never part of either, and a crash leaves one of them whole:
/// the data goes to a new file in the same directory (created exclusively
/// under a random name, so concurrent writers never share one), is flushed
/// to disk and renamed over the name (a symbolic link there is replaced,
/// not followed). On failure the temporary file is removed.
fn write(root: &DocRoot, rel: &Path, data: &[u8]) -> Result<(), String> {
    let (dir, name) = parent_of(root, rel)?;
    let create =
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    // The mode a plain create gives: 0666 less the umask.
    let mode = Mode::from_raw_mode(0o666);
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let tmp = temp_name();
        match rustix::fs::openat(&dir, tmp.as_str(), create, mode) {
            Ok(fd) => break (tmp, File::from(fd)),
            Err(rustix::io::Errno::EXIST) if attempts < 8 => attempts += 1,
            Err(e) => return Err(naming(e)),
        }
    };
    let written = file
        .write_all(data)
        .and_then(|()| file.sync_all())
        .and_then(|()| Ok(rustix::fs::renameat(&dir, tmp.as_str(), &dir, name)?));
    if let Err(e) = written {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(reason(&e));
    }
    // The rename made durable too. It has happened either way: readers
    // see the new contents, so a directory that cannot be synced is no
    // failure.
    let sync = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if let Ok(d) = rustix::fs::openat(&dir, ".", sync, Mode::empty()) {
        let _ = File::from(d).sync_all();
    }
    Ok(())
}

/// Add `data` at the end of `rel`, created if missing; a symbolic link
/// there is refused.
fn append(root: &DocRoot, rel: &Path, data: &[u8]) -> Result<(), String> {
    let (dir, name) = parent_of(root, rel)?;
    let flags = OFlags::WRONLY
        | OFlags::APPEND
        | OFlags::CREATE
        | OFlags::CLOEXEC
        | OFlags::NOFOLLOW
        | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o666)).map_err(naming)?;
    let mut file = File::from(fd);
    if !file.metadata().map_err(|e| reason(&e))?.is_file() {
        return Err("not a regular file".into());
    }
    file.write_all(data).map_err(|e| reason(&e))
}

/// Remove a file, a symbolic link (not what it points to) or an empty
/// directory.
fn delete(root: &DocRoot, rel: &Path) -> Result<(), String> {
    let (dir, name) = parent_of(root, rel)?;
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Err(rustix::io::Errno::ISDIR) => {
            rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR).map_err(naming)
        }
        r => r.map_err(naming),
    }
}

/// Rename; an error says whether it is about the destination (true).
fn rename(from: (&DocRoot, &Path), to: (&DocRoot, &Path)) -> Result<(), (bool, String)> {
    let (from_dir, from_name) = parent_of(from.0, from.1).map_err(|e| (false, e))?;
    let (to_dir, to_name) = parent_of(to.0, to.1).map_err(|e| (true, e))?;
    rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name).map_err(|e| match e {
        rustix::io::Errno::XDEV => (false, "the two paths are on different file systems".into()),
        e => (false, naming(e)),
    })
}

/// Make a directory; with `parents`, also the missing directories above
/// it, and an existing directory is no error.
fn mkdir(root: &DocRoot, rel: &Path, parents: bool) -> Result<(), String> {
    let mode = Mode::from_raw_mode(0o777);
    if !parents {
        let (dir, name) = parent_of(root, rel)?;
        return rustix::fs::mkdirat(&dir, name, mode).map_err(naming);
    }
    let mut prefix = PathBuf::new();
    for part in rel.components() {
        prefix.push(part);
        let (dir, name) = parent_of(root, &prefix)?;
        match rustix::fs::mkdirat(&dir, name, mode) {
            Ok(()) => {}
            // Whatever is there must be a directory (beneath the root).
            Err(rustix::io::Errno::EXIST) => {
                let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
                root.open_rel(&prefix, flags, Io::Blocking)
                    .map_err(resolving)?;
            }
            Err(e) => return Err(naming(e)),
        }
    }
    Ok(())
}

fn exists(root: &DocRoot, rel: &Path) -> Result<bool, String> {
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    match root.open_rel(rel, flags, Io::Blocking) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(false),
        Err(e) => Err(resolving(e)),
    }
}

/// The names in a directory (not `.` and `..`), sorted.
fn list(root: &DocRoot, rel: &Path) -> Result<Vec<Vec<u8>>, String> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let dir = root.open_rel(rel, flags, Io::Blocking).map_err(resolving)?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).map_err(naming)? {
        let entry = entry.map_err(naming)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

/// What `file.stat` tells.
struct Stat {
    kind: &'static str,
    size: u64,
    modified: f64,
    mode: u32,
}

fn stat(root: &DocRoot, rel: &Path) -> Result<Stat, String> {
    use std::os::unix::fs::PermissionsExt;
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    let file = root.open_rel(rel, flags, Io::Blocking).map_err(resolving)?;
    let m = file.metadata().map_err(|e| reason(&e))?;
    let kind = match m.file_type() {
        t if t.is_file() => "file",
        t if t.is_dir() => "directory",
        _ => "other",
    };
    let modified = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Ok(Stat {
        kind,
        size: m.len(),
        modified,
        mode: m.permissions().mode() & 0o7777,
    })
}

/// Run `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// The value, or nil and `"PATH: reason"`.
fn answer(lua: &Lua, path: &str, r: Result<impl IntoLua, String>) -> mlua::Result<(Value, Value)> {
    match r {
        Ok(v) => Ok((v.into_lua(lua)?, Value::Nil)),
        Err(why) => Ok((
            Value::Nil,
            Value::String(lua.create_string(format!("{path}: {why}"))?),
        )),
    }
}

/// A path argument as a path (Lua strings are bytes, as file names are).
fn path_of(s: &LuaString) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&s.as_bytes()))
}

/// Install `file` into the base; the roots come later
/// ([`Files::configure`]).
pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<Rc<Files>> {
    let files = Rc::new(Files::default());
    let file = lua.create_table()?;

    // One async function per call: locate the path(s), run `op` on the
    // blocking pool, answer.
    macro_rules! call {
        ($name:literal, |$root:ident, $rel:ident $(, $arg:ident : $ty:ty)*| $body:expr) => {{
            let files = files.clone();
            file.raw_set(
                $name,
                lua.create_async_function(move |lua, (path, $($arg,)*): (LuaString, $($ty,)*)| {
                    let located = files.locate(&path_of(&path));
                    async move {
                        let shown = path.to_string_lossy();
                        let r = match located {
                            Ok(($root, $rel)) => blocking(move || $body).await,
                            Err(e) => Err(e),
                        };
                        answer(&lua, &shown, r)
                    }
                })?,
            )?;
        }};
    }

    call!("read", |root, rel| read(&root, &rel).map(Bytes));
    call!("write", |root, rel, data: Data| {
        write(&root, &rel, &data).map(|()| true)
    });
    call!("append", |root, rel, data: Data| {
        append(&root, &rel, &data).map(|()| true)
    });
    call!("delete", |root, rel| delete(&root, &rel).map(|()| true));
    call!("mkdir", |root, rel, parents: Option<bool>| {
        mkdir(&root, &rel, parents.unwrap_or(false)).map(|()| true)
    });
    call!("exists", |root, rel| exists(&root, &rel));
    call!("list", |root, rel| list(&root, &rel).map(Names));
    call!("stat", |root, rel| stat(&root, &rel));
    // A message names the source, or the destination when that is what
    // could not be located.
    let roots = files.clone();
    file.raw_set(
        "rename",
        lua.create_async_function(move |lua, (from, to): (LuaString, LuaString)| {
            let source = roots.locate(&path_of(&from));
            let target = roots.locate(&path_of(&to));
            async move {
                let (shown, r) = match (source, target) {
                    (Err(e), _) => (from, Err(e)),
                    (_, Err(e)) => (to, Err(e)),
                    (Ok((fr, frel)), Ok((tr, trel))) => {
                        let renamed =
                            tokio::task::spawn_blocking(move || rename((&fr, &frel), (&tr, &trel)))
                                .await
                                .unwrap_or_else(|e| Err((false, e.to_string())));
                        match renamed {
                            Ok(()) => (from, Ok(true)),
                            Err((false, e)) => (from, Err(e)),
                            Err((true, e)) => (to, Err(e)),
                        }
                    }
                };
                answer(&lua, &shown.to_string_lossy(), r)
            }
        })?,
    )?;
    base.raw_set("file", file)?;
    Ok(files)
}

/// Data to write: a string's bytes (numbers are taken as Lua writes
/// them), copied for the blocking pool.
struct Data(Vec<u8>);

impl mlua::FromLua for Data {
    fn from_lua(value: Value, lua: &Lua) -> mlua::Result<Self> {
        Ok(Data(LuaString::from_lua(value, lua)?.as_bytes().to_vec()))
    }
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// File contents, made a Lua string.
struct Bytes(Vec<u8>);

impl IntoLua for Bytes {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        lua.create_string(self.0).map(Value::String)
    }
}

/// File names, made a list of Lua strings.
struct Names(Vec<Vec<u8>>);

impl IntoLua for Names {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(self.0.len(), 0)?;
        for (i, name) in self.0.into_iter().enumerate() {
            t.raw_set(i + 1, lua.create_string(name)?)?;
        }
        Ok(Value::Table(t))
    }
}

impl IntoLua for Stat {
    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        let t = lua.create_table()?;
        t.raw_set("type", self.kind)?;
        t.raw_set("size", self.size)?;
        t.raw_set("modified", self.modified)?;
        t.raw_set("mode", self.mode)?;
        Ok(Value::Table(t))
    }
}
