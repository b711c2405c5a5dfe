//! `CacheStore disk DIR [MAX]`: entries in files beneath DIR that every
//! worker shares (and that outlive a restart), bounded by MAX bytes
//! (default 1G), oldest written out first.
//!
//! Each entry is the file `DIR/e-HASH` (a SHA-256 of the cache key): a
//! header with the time until which it is worth keeping, then the encoded
//! entry. It is written to a new file created exclusively under a random
//! name in DIR (`.tmp-…`) and renamed over the name, so a reader sees the
//! old entry or the new one, never part of either. Files are read through
//! the core's beneath-the-root opener with no symbolic link followed and
//! `O_NONBLOCK`, so a link planted in DIR is never read through and a FIFO
//! never waited on; every file operation runs on the blocking pool.
//!
//! A lookup reads at most the largest entry the cache stores (the largest
//! `CacheMaxEntrySize` and room for the head, as the Redis and memcached
//! tiers): what the cache never writes under an entry's name (a larger
//! file, one that is not a record, a link, a FIFO, a device) is a miss,
//! said once in the worker's log at warn; a regular file among those is
//! removed, the next fill writing the entry again.
//!
//! A fill lock is the file `DIR/l-HASH`, created exclusively (a link to a
//! temporary file already holding its token and when it times out, so it
//! is never seen half-written); a lock left by a worker that died is taken
//! over once it has timed out. Whoever removes a lock (its holder, a
//! worker taking it over, a look at DIR) holds `flock(2)` on the file it
//! judged and checks that the name still leads to that file: a lock taken
//! over meanwhile (a new file under the name) is never removed by one who
//! judged the old one, so two workers never both hold it. What is no
//! regular file at a lock's name (a link, a FIFO, a socket, an empty
//! directory) is removed by a worker wanting the lock, said once at warn:
//! no lock could ever be made under the name while it is there.
//!
//! A file's metadata says all the bound needs, so that looking at DIR
//! costs a stat per file, whatever the entries hold: its mtime is set to
//! the time in its header (until when it is worth keeping), its ctime
//! (which nothing can set) is when it was written, its size is what it
//! counts for.
//!
//! The bound: each worker looks at DIR at its first write, and then when
//! its count of what it wrote since says DIR may be over MAX (or every 64
//! writes): it lists DIR, removes what has expired (entries and timed-out
//! locks), the temporary files of writers that died (over 10 minutes old:
//! a writer renames its own within one blocking call), and then the
//! entries written longest ago until the entries' sizes add up to MAX at
//! most. Each file judged is removed only while its name still leads to
//! it (its device and inode, from a fresh `lstat` just before the unlink):
//! an entry another worker renamed over the name since the listing is
//! kept. With several workers DIR can run over by what the others wrote
//! since their last look.

use std::cell::Cell;
use std::fs::{File, Metadata, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axkit::plugin::{escape_log, DocRoot, Io, Rule, Worker, READ_FLAGS};
use axkit::Level;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::entry::{epoch_ms, Object};
use crate::storage::{Notice, Storage, StoreFuture, StoreResult};

const MAGIC: &[u8; 4] = b"AXD1";

/// Writes between two looks at DIR's size, at most.
const SCAN_EVERY: u32 = 64;

/// How old a temporary file is when its writer is taken for dead. A
/// writer creates, fills and renames its own in one blocking call; a
/// worker killed between those leaves it behind.
const STALE_TMP: Duration = Duration::from_secs(600);

pub struct DiskStore {
    inner: Arc<Dir>,
    /// Bytes written since the last look, and how many writes.
    written: Cell<u64>,
    writes: Cell<u32>,
    /// What DIR held at the last look; None before this worker's first.
    seen: Cell<Option<u64>>,
    /// Something the cache never writes was under an entry's name.
    foreign: Notice,
    /// Something that is no lock was under a lock's name.
    planted: Notice,
}

pub(crate) struct Dir {
    path: PathBuf,
    root: DocRoot,
    max: u64,
    /// The largest entry written, and read.
    limit: u64,
}

/// A file's device and inode: which file a name led to.
type FileId = (u64, u64);

/// What is under a name in DIR.
enum Found {
    Missing,
    /// A regular file's bytes (at most the largest entry).
    File(Vec<u8>, FileId),
    /// What the cache never writes there, unread: what it is, and the
    /// regular file to remove.
    Foreign(String, Option<FileId>),
}

/// What a look at a lock's name did.
enum Cleared {
    /// The lock judged was removed.
    Removed,
    /// Nothing was: no lock there, one not judged so, or one that another
    /// remover holds.
    Kept,
    /// What the cache never makes was there: what it is, and whether it
    /// is gone (a directory holding files is not).
    Planted(String, bool),
}

/// What a look at DIR judged from the files' metadata.
struct Judged {
    /// The files to remove (expired entries, the oldest over the bound,
    /// temporary files of writers that died): each name with the file
    /// judged, so that one renamed over the name since is left.
    files: Vec<(String, FileId)>,
    /// The locks whose mtime says they timed out: their records say.
    locks: Vec<String>,
    /// What the entries left add up to.
    total: u64,
}

fn name(tag: &str, key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{tag}-{hex}")
}

/// `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("disk tier: {e}"))?
}

fn failed(what: &str, e: std::io::Error) -> String {
    format!("disk tier: {what}: {e}")
}

impl DiskStore {
    /// The store in `path`, bounded by `max` bytes, with entries of at
    /// most `limit` bytes encoded; `worker`'s log says when something
    /// else is under an entry's name.
    pub fn new(path: &Path, max: u64, limit: usize, worker: Worker) -> DiskStore {
        DiskStore {
            inner: Arc::new(Dir {
                path: path.to_path_buf(),
                root: DocRoot::new(path, Rule::NoSymlinks),
                max,
                limit: limit as u64,
            }),
            written: Cell::new(0),
            writes: Cell::new(0),
            seen: Cell::new(None),
            foreign: Notice::new(worker.clone()),
            planted: Notice::new(worker),
        }
    }

    /// Say once that the entry file `name` is `what` (it is a miss).
    fn foreign(&self, name: &str, what: &str, removed: bool) {
        let then = if removed { ", removed" } else { "" };
        self.say(
            &self.foreign,
            name,
            what,
            &format_args!("an entry the cache wrote: a miss{then}"),
        );
    }

    /// Say once that what was at the lock name `name` was no lock, if so.
    fn planted(&self, name: &str, cleared: Option<Cleared>) {
        if let Some(Cleared::Planted(what, removed)) = cleared {
            let then = if removed {
                "removed"
            } else {
                "left (a directory holding files)"
            };
            self.say(
                &self.planted,
                name,
                &what,
                &format_args!("a fill lock: {then}"),
            );
        }
    }

    /// `notice` that the file `name` in DIR is `what`, not `wanted`.
    fn say(&self, notice: &Notice, name: &str, what: &str, wanted: &std::fmt::Arguments) {
        notice.say(Level::Warn, || {
            let path = self.inner.path.join(name);
            format!(
                "cache: the disk tier's {} is {what}, not {wanted} (said once)",
                escape_log(&path.to_string_lossy()),
            )
        });
    }
}

impl Dir {
    /// DIR, made (mode 0700) if missing.
    fn ensure(&self) -> StoreResult<()> {
        if self.path.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|e| failed("making the directory", e))
    }

    /// The regular file `name`, opened through no symbolic link and
    /// without waiting (on a FIFO), with its metadata; or what is there
    /// instead.
    fn open(&self, name: &str) -> StoreResult<Result<(File, Metadata), Found>> {
        let flags = READ_FLAGS | libc::O_NOFOLLOW;
        let file = match self.root.open_rel(Path::new(name), flags, Io::Blocking) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(Found::Missing)),
            Err(e) if axkit::plugin::is_escape(&e) => {
                return Ok(Err(Found::Foreign("a symbolic link".into(), None)))
            }
            // A socket, or a device without its driver.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Ok(Err(Found::Foreign("not a regular file".into(), None)))
            }
            Err(e) => return Err(failed("open", e)),
        };
        let meta = file.metadata().map_err(|e| failed("stat", e))?;
        if !meta.is_file() {
            return Ok(Err(Found::Foreign("not a regular file".into(), None)));
        }
        Ok(Ok((file, meta)))
    }

    /// What `file` holds, or None when that is more than the largest
    /// entry (a byte past it is read, should it have grown since `meta`).
    fn contents(&self, file: &File, meta: &Metadata) -> StoreResult<Option<Vec<u8>>> {
        if meta.len() > self.limit {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.take(self.limit + 1)
            .read_to_end(&mut data)
            .map_err(|e| failed("read", e))?;
        Ok((data.len() as u64 <= self.limit).then_some(data))
    }

    /// What is under `name`: a regular file's bytes while they are at
    /// most the largest entry.
    fn read(&self, name: &str) -> StoreResult<Found> {
        let (file, meta) = match self.open(name)? {
            Ok(opened) => opened,
            Err(found) => return Ok(found),
        };
        let id = (meta.dev(), meta.ino());
        Ok(match self.contents(&file, &meta)? {
            Some(data) => Found::File(data, id),
            None => Found::Foreign(
                format!(
                    "over {} bytes (the largest entry the cache stores)",
                    self.limit
                ),
                Some(id),
            ),
        })
    }

    /// A record's time (ms since the epoch) and payload.
    fn parse(data: &[u8]) -> Option<(u64, &[u8])> {
        let rest = data.strip_prefix(MAGIC)?;
        let (until, payload) = rest.split_at_checked(8)?;
        Some((u64::from_le_bytes(until.try_into().ok()?), payload))
    }

    /// A record's payload while it is not expired.
    pub(crate) fn live(data: &[u8]) -> Option<&[u8]> {
        let (until, payload) = Dir::parse(data)?;
        (epoch_ms(SystemTime::now()) < until).then_some(payload)
    }

    /// A new file, created exclusively under a random name in DIR, holding
    /// `record(until, payload)` and with `until` as its mtime.
    fn temporary(&self, until: SystemTime, payload: &[u8]) -> StoreResult<NamedTempFile> {
        self.ensure()?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.path)
            .map_err(|e| failed("temporary file", e))?;
        tmp.write_all(&record(epoch_ms(until), payload))
            .map_err(|e| failed("write", e))?;
        tmp.as_file()
            .set_modified(until)
            .map_err(|e| failed("set the expiry as mtime", e))?;
        Ok(tmp)
    }

    /// Replace `name` with `payload`, worth keeping until `until`: a new
    /// file beside it, renamed over it (a link there is replaced, not
    /// followed).
    fn write(&self, name: &str, until: SystemTime, payload: &[u8]) -> StoreResult<()> {
        let tmp = self.temporary(until, payload)?;
        tmp.persist(self.path.join(name))
            .map_err(|e| failed("rename", e.error))?;
        Ok(())
    }

    fn unlink(&self, name: &str) -> StoreResult<bool> {
        match std::fs::remove_file(self.path.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(failed("remove", e)),
        }
    }

    /// Remove `name` while it still leads to the file `id`: one renamed or
    /// linked there since is left alone. A directory is removed while it is
    /// empty.
    fn remove_same(&self, name: &str, id: FileId) -> StoreResult<bool> {
        let path = self.path.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if (m.dev(), m.ino()) != id => Ok(false),
            Ok(m) if m.is_dir() => match std::fs::remove_dir(&path) {
                Ok(()) => Ok(true),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::ENOENT)) => {
                    Ok(false)
                }
                Err(e) => Err(failed("remove", e)),
            },
            Ok(_) => self.unlink(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(failed("stat", e)),
        }
    }

    /// Remove what the cache never makes from the lock name `name` (a
    /// link, a FIFO, a socket, a device, an empty directory: `what`, as
    /// [`Dir::open`] found it): while it is there no lock is ever made
    /// under the name, and every fill of that key would go without one.
    /// Only the thing looked at is removed, not a lock linked there since.
    fn remove_planted(&self, name: &str, what: String) -> StoreResult<Cleared> {
        let meta = match std::fs::symlink_metadata(self.path.join(name)) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cleared::Kept),
            Err(e) => return Err(failed("stat", e)),
        };
        if meta.is_file() {
            return Ok(Cleared::Kept);
        }
        let removed = self.remove_same(name, (meta.dev(), meta.ino()))?;
        Ok(Cleared::Planted(what, removed))
    }

    /// Remove the lock file `name` if `judge` says so of its record (None
    /// when it holds more than the largest entry), and only the file judged:
    /// under `flock(2)` on it, while the name still leads to it. A
    /// remover that finds the flock taken leaves the file to the one
    /// holding it. What is not a regular file is removed
    /// ([`Dir::remove_planted`]).
    fn remove_lock(
        &self,
        name: &str,
        judge: impl FnOnce(Option<&[u8]>) -> bool,
    ) -> StoreResult<Cleared> {
        let (file, meta) = match self.open(name)? {
            Ok(opened) => opened,
            Err(Found::Foreign(what, _)) => return self.remove_planted(name, what),
            Err(_) => return Ok(Cleared::Kept),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Cleared::Kept),
            Err(TryLockError::Error(e)) => return Err(failed("flock", e)),
        }
        if !judge(self.contents(&file, &meta)?.as_deref()) {
            return Ok(Cleared::Kept);
        }
        Ok(match self.remove_same(name, (meta.dev(), meta.ino()))? {
            true => Cleared::Removed,
            false => Cleared::Kept,
        })
    }

    /// Remove the lock file `name` if it has timed out (its holder died),
    /// or is not one at all.
    fn remove_expired_lock(&self, name: &str) -> StoreResult<Cleared> {
        self.remove_lock(name, |data| data.and_then(Dir::live).is_none())
    }

    /// Take the lock file `name` with `token` until `ttl` from now: the
    /// record is written whole to a temporary file first, then linked
    /// under the lock's name, which fails when the name exists (as
    /// `O_EXCL` would, a link there included). An expired lock (its holder
    /// died), or what is no lock at all, is removed and the lock taken.
    /// Whether it was taken, and what was planted there instead of a lock.
    fn lock(&self, name: &str, token: &str, ttl: Duration) -> StoreResult<(bool, Option<Cleared>)> {
        let tmp = self.temporary(SystemTime::now() + ttl, token.as_bytes())?;
        let mut planted = None;
        for _ in 0..2 {
            match std::fs::hard_link(tmp.path(), self.path.join(name)) {
                Ok(()) => return Ok((true, planted)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Another worker may win the race to take it over.
                    match self.remove_expired_lock(name)? {
                        Cleared::Removed => {}
                        Cleared::Kept => return Ok((false, planted)),
                        found @ Cleared::Planted(_, true) => planted = Some(found),
                        found @ Cleared::Planted(_, false) => return Ok((false, Some(found))),
                    }
                }
                Err(e) => return Err(failed("lock", e)),
            }
        }
        Ok((false, planted))
    }

    /// The token of the lock `name` while it has not timed out.
    fn held(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(match self.read(name)? {
            Found::File(data, _) => Dir::live(&data).map(<[u8]>::to_vec),
            Found::Missing | Found::Foreign(..) => None,
        })
    }

    /// Look at DIR, from each file's metadata alone (no entry is read):
    /// remove the expired entries, the timed-out locks and the temporary
    /// files of writers that died, then the entries written longest ago
    /// until the rest add up to `max` at most; what they add up to.
    fn evict(&self) -> StoreResult<u64> {
        let judged = self.judge()?;
        self.remove_judged(&judged)?;
        Ok(judged.total)
    }

    /// What [`Dir::evict`] removes, judged from a listing of DIR.
    fn judge(&self) -> StoreResult<Judged> {
        let mut judged = Judged {
            files: Vec::new(),
            locks: Vec::new(),
            total: 0,
        };
        let list = match std::fs::read_dir(&self.path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(judged),
            Err(e) => return Err(failed("list", e)),
        };
        let now = SystemTime::now();
        // In seconds since the epoch, as a stat's times are.
        let stale = (epoch_ms(now) / 1000).saturating_sub(STALE_TMP.as_secs()) as i64;
        let mut entries = Vec::new();
        for item in list.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            // The file's own metadata, a link's not its target's.
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let id = (meta.dev(), meta.ino());
            if name.starts_with(".tmp-") {
                // Its mtime is its creation or its expiry, its ctime its
                // last write: a live writer's are both recent.
                if meta.mtime().min(meta.ctime()) < stale {
                    judged.files.push((name.to_string(), id));
                }
                continue;
            }
            let lock = name.starts_with("l-");
            if !lock && !name.starts_with("e-") {
                continue;
            }
            // The mtime is until when it is worth keeping; a lock left by
            // a holder that died is gone once it has timed out (as its
            // record says: the mtime told which to look at).
            if meta.modified().is_ok_and(|until| until <= now) {
                if lock {
                    judged.locks.push(name.to_string());
                } else {
                    judged.files.push((name.to_string(), id));
                }
                continue;
            }
            if !lock {
                let written = (meta.ctime(), meta.ctime_nsec());
                entries.push((written, meta.len(), name.to_string(), id));
            }
        }
        judged.total = entries.iter().map(|f| f.1).sum();
        entries.sort();
        for (_, len, name, id) in entries {
            if judged.total <= self.max {
                break;
            }
            judged.files.push((name, id));
            judged.total -= len;
        }
        Ok(judged)
    }

    /// Remove what [`Dir::judge`] judged: each file only while its name
    /// still leads to it. Another worker may have renamed a fresh entry
    /// over the name since the listing (a whole scan and a sort ago),
    /// which is not the entry judged.
    fn remove_judged(&self, judged: &Judged) -> StoreResult<()> {
        for (name, id) in &judged.files {
            self.remove_same(name, *id)?;
        }
        for name in &judged.locks {
            self.remove_expired_lock(name)?;
        }
        Ok(())
    }
}

/// The bytes of a record before its payload: [`MAGIC`] and the time.
const HEADER: usize = 12;

pub(crate) fn record(until_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&until_ms.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

impl Storage for DiskStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Rc<Object>>> {
        let dir = self.inner.clone();
        let name = name("e", key);
        Box::pin(async move {
            let (found, name) = {
                let dir = dir.clone();
                blocking(move || Ok((dir.read(&name)?, name))).await?
            };
            let (what, id) = match found {
                Found::Missing => return Ok(None),
                Found::File(data, id) => match Dir::parse(&data) {
                    Some((until, _)) if until <= epoch_ms(SystemTime::now()) => return Ok(None),
                    Some((_, payload)) => match Object::decode(payload) {
                        Some(object) => return Ok(Some(Rc::new(object))),
                        None => ("not a record".to_string(), id),
                    },
                    None => ("not a record".to_string(), id),
                },
                Found::Foreign(what, Some(id)) => (what, id),
                // Replaced, not removed, by the next fill.
                Found::Foreign(what, None) => {
                    self.foreign(&name, &what, false);
                    return Ok(None);
                }
            };
            self.foreign(&name, &what, true);
            blocking(move || dir.remove_same(&name, id)).await?;
            Ok(None)
        })
    }
    fn put<'a>(&'a self, key: &'a [u8], object: Rc<Object>, keep: Duration) -> StoreFuture<'a, ()> {
        let dir = self.inner.clone();
        let name = name("e", key);
        let until = SystemTime::now() + keep;
        let payload = object.encode();
        let size = (HEADER + payload.len()) as u64;
        self.written.set(self.written.get() + size);
        self.writes.set(self.writes.get() + 1);
        let scan = self.seen.get().is_none_or(|seen| {
            seen + self.written.get() > dir.max || self.writes.get() >= SCAN_EVERY
        });
        if scan {
            self.written.set(0);
            self.writes.set(0);
        }
        Box::pin(async move {
            if size > dir.max || size > dir.limit {
                return Ok(());
            }
            let left = blocking(move || {
                dir.write(&name, until, &payload)?;
                if scan {
                    dir.evict().map(Some)
                } else {
                    Ok(None)
                }
            })
            .await?;
            if left.is_some() {
                self.seen.set(left);
            }
            Ok(())
        })
    }
    fn remove<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        let dir = self.inner.clone();
        let name = name("e", key);
        Box::pin(blocking(move || dir.unlink(&name)))
    }
    fn lock<'a>(&'a self, key: &'a [u8], token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        let dir = self.inner.clone();
        let name = name("l", key);
        let token = token.to_string();
        Box::pin(async move {
            let ((taken, planted), name) =
                blocking(move || Ok((dir.lock(&name, &token, ttl)?, name))).await?;
            self.planted(&name, planted);
            Ok(taken)
        })
    }
    fn locked<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, bool> {
        let dir = self.inner.clone();
        let name = name("l", key);
        Box::pin(blocking(move || Ok(dir.held(&name)?.is_some())))
    }
    fn unlock<'a>(&'a self, key: &'a [u8], token: &'a str) -> StoreFuture<'a, ()> {
        let dir = self.inner.clone();
        let name = name("l", key);
        let token = token.to_string();
        Box::pin(async move {
            let (cleared, name) = blocking(move || {
                // Only our own lock: one that timed out may be another's now.
                let ours = |data: Option<&[u8]>| {
                    data.and_then(Dir::parse)
                        .is_some_and(|(_, held)| held == token.as_bytes())
                };
                Ok((dir.remove_lock(&name, ours)?, name))
            })
            .await?;
            self.planted(&name, Some(cleared));
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tier in `path`, bounded by `max` bytes.
    fn dir_in(path: &Path, max: u64) -> Dir {
        Dir {
            path: path.to_path_buf(),
            root: DocRoot::new(path, Rule::NoSymlinks),
            max,
            limit: 1 << 16,
        }
    }

    #[test]
    fn links_are_never_followed_and_locks_time_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_in(tmp.path(), 1 << 20);
        let until = SystemTime::now() + Duration::from_secs(3600);
        let rec = record(epoch_ms(until), b"payload");
        dir.write("e-x", until, b"payload").unwrap();
        assert!(matches!(dir.read("e-x").unwrap(), Found::File(d, _) if d == rec));
        assert_eq!(Dir::live(&rec), Some(&b"payload"[..]));
        assert_eq!(Dir::live(&record(1, b"old")), None, "expired");
        // A link planted in DIR is not read through, and a write replaces
        // the link, not what it points to.
        let target = tmp.path().join("target");
        std::fs::write(&target, &rec).unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("e-y")).unwrap();
        assert!(matches!(dir.read("e-y").unwrap(), Found::Foreign(_, None)));
        dir.write("e-y", until, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), rec);
        // A lock is exclusive until it times out.
        let minute = Duration::from_secs(60);
        assert!(dir.lock("l-a", "t1", minute).unwrap().0);
        assert!(!dir.lock("l-a", "t2", minute).unwrap().0);
        assert_eq!(dir.held("l-a").unwrap().as_deref(), Some(&b"t1"[..]));
        assert!(dir.lock("l-b", "t1", Duration::ZERO).unwrap().0);
        assert!(dir.lock("l-b", "t2", minute).unwrap().0, "taken over");
        // A socket at an entry's name is no entry (opening one fails with
        // ENXIO: it used to be a failure of the tier), and one at a lock's
        // name is removed for the lock, as an empty directory is; one
        // holding files is left.
        let _socket = std::os::unix::net::UnixListener::bind(tmp.path().join("e-s")).unwrap();
        assert!(matches!(dir.read("e-s").unwrap(), Found::Foreign(_, None)));
        std::fs::hard_link(tmp.path().join("e-s"), tmp.path().join("l-s")).unwrap();
        std::fs::create_dir(tmp.path().join("l-d")).unwrap();
        for name in ["l-s", "l-d"] {
            let taken = dir.lock(name, "t1", minute).unwrap();
            assert!(matches!(taken, (true, Some(Cleared::Planted(_, true)))));
            assert_eq!(dir.held(name).unwrap().as_deref(), Some(&b"t1"[..]));
        }
        std::fs::create_dir_all(tmp.path().join("l-f/x")).unwrap();
        let taken = dir.lock("l-f", "t1", minute).unwrap();
        assert!(matches!(taken, (false, Some(Cleared::Planted(_, false)))));
    }

    /// Workers taking over one timed-out lock at once: one gets it. Each
    /// used to remove the lock by its name after judging the old one, so
    /// a late one removed the lock an early one had just taken, and took
    /// it too.
    #[test]
    fn one_taker_of_a_timed_out_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(dir_in(tmp.path(), 1 << 20));
        for round in 0..200 {
            let name = format!("l-{round}");
            assert!(dir.lock(&name, "dead", Duration::ZERO).unwrap().0);
            let start = Arc::new(std::sync::Barrier::new(8));
            let takers: Vec<_> = (0..8)
                .map(|i| {
                    let (dir, name, start) = (dir.clone(), name.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        dir.lock(&name, &format!("t{i}"), Duration::from_secs(60))
                            .unwrap()
                            .0
                    })
                })
                .collect();
            let won = takers
                .into_iter()
                .filter_map(|t| t.join().unwrap().then_some(()))
                .count();
            assert!(won <= 1, "round {round}: {won} workers hold the lock");
        }
    }

    /// An entry another worker rewrote (renamed a fresh file over its
    /// name) between a look at DIR judging it the oldest and its removal
    /// is kept. It used to be removed by its name, the fresh entry with
    /// it.
    #[test]
    fn eviction_keeps_an_entry_rewritten_since_it_was_judged() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir_in(tmp.path(), 100);
        let until = SystemTime::now() + Duration::from_secs(3600);
        dir.write("e-old", until, &[0; 80]).unwrap();
        dir.write("e-new", until, &[0; 80]).unwrap();
        let judged = dir.judge().unwrap();
        assert_eq!(judged.files.len(), 1);
        assert_eq!(judged.files[0].0, "e-old");
        dir.write("e-old", until, b"fresh").unwrap();
        dir.remove_judged(&judged).unwrap();
        let kept = Dir::live(&std::fs::read(tmp.path().join("e-old")).unwrap()).map(<[u8]>::to_vec);
        assert_eq!(kept.as_deref(), Some(&b"fresh"[..]));
        // The other is the oldest now.
        assert_eq!(dir.evict().unwrap(), (HEADER + 5) as u64);
        assert!(!tmp.path().join("e-new").exists());
    }
}
