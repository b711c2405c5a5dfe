//! `CacheStore disk DIR [MAX]`: entries in files beneath DIR that every
//! worker shares (and that outlive a restart), bounded by MAX bytes
//! (default 1G), oldest written out first.
//!
//! Each entry is the file `DIR/e-HASH` (a SHA-256 of the cache key): a
//! header with the time until which it is worth keeping, then the encoded
//! entry. It is written to a new file created exclusively under a random
//! name in DIR (`.tmp-…`) and renamed over the name, so a reader sees the
//! old entry or the new one, never part of either. Files are read through
//! the core's beneath-the-root opener with no symbolic link followed, so a
//! link planted in DIR is never read through; every file operation runs on
//! the blocking pool. A fill lock is the file `DIR/l-HASH`, created
//! exclusively (a link to a temporary file already holding its token and
//! when it times out, so it is never seen half-written); a lock left by a
//! worker that died is taken over once it has timed out.
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
//! most. With several workers DIR can run over by what the others wrote
//! since their last look.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axkit::plugin::{DocRoot, Io, Rule, READ_FLAGS};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::entry::{epoch_ms, Object};
use crate::storage::{Storage, StoreFuture, StoreResult};

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
}

pub(crate) struct Dir {
    path: PathBuf,
    root: DocRoot,
    max: u64,
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
    pub fn new(path: &Path, max: u64) -> DiskStore {
        DiskStore {
            inner: Arc::new(Dir {
                path: path.to_path_buf(),
                root: DocRoot::new(path, Rule::NoSymlinks),
                max,
            }),
            written: Cell::new(0),
            writes: Cell::new(0),
            seen: Cell::new(None),
        }
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

    /// The file `name`'s bytes, or None when there is none; never through
    /// a symbolic link, never anything but a regular file.
    fn read(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        let flags = READ_FLAGS | libc::O_NOFOLLOW;
        let mut file = match self.root.open_rel(Path::new(name), flags, Io::Blocking) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if axkit::plugin::is_escape(&e) => return Ok(None),
            Err(e) => return Err(failed("open", e)),
        };
        let meta = file.metadata().map_err(|e| failed("stat", e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut data).map_err(|e| failed("read", e))?;
        Ok(Some(data))
    }

    /// A record's payload while it is not expired.
    pub(crate) fn live(data: &[u8]) -> Option<&[u8]> {
        let rest = data.strip_prefix(MAGIC)?;
        let (until, payload) = rest.split_at_checked(8)?;
        let until = u64::from_le_bytes(until.try_into().ok()?);
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

    /// Take the lock file `name` with `token` until `ttl` from now: the
    /// record is written whole to a temporary file first, then linked
    /// under the lock's name, which fails when the name exists (as
    /// `O_EXCL` would, a link there included). An expired lock (its holder
    /// died) is removed and taken.
    fn lock(&self, name: &str, token: &str, ttl: Duration) -> StoreResult<bool> {
        let tmp = self.temporary(SystemTime::now() + ttl, token.as_bytes())?;
        for _ in 0..2 {
            match std::fs::hard_link(tmp.path(), self.path.join(name)) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if self.held(name)?.is_some() {
                        return Ok(false);
                    }
                    // Another worker may win the race to take it over.
                    self.unlink(name)?;
                }
                Err(e) => return Err(failed("lock", e)),
            }
        }
        Ok(false)
    }

    /// The token of the lock `name` while it has not timed out.
    fn held(&self, name: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .read(name)?
            .and_then(|data| Dir::live(&data).map(<[u8]>::to_vec)))
    }

    /// Look at DIR, from each file's metadata alone (none is read):
    /// remove the expired entries, the timed-out locks and the temporary
    /// files of writers that died, then the entries written longest ago
    /// until the rest add up to `max` at most; what they add up to.
    fn evict(&self) -> StoreResult<u64> {
        let list = match std::fs::read_dir(&self.path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(failed("list", e)),
        };
        let now = SystemTime::now();
        // In seconds since the epoch, as a stat's times are.
        let stale = (epoch_ms(now) / 1000).saturating_sub(STALE_TMP.as_secs()) as i64;
        let mut files = Vec::new();
        for item in list.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            // The file's own metadata, a link's not its target's.
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            if name.starts_with(".tmp-") {
                // Its mtime is its creation or its expiry, its ctime its
                // last write: a live writer's are both recent.
                if meta.mtime().min(meta.ctime()) < stale {
                    self.unlink(name)?;
                }
                continue;
            }
            let lock = name.starts_with("l-");
            if !lock && !name.starts_with("e-") {
                continue;
            }
            // The mtime is until when it is worth keeping; a lock left by
            // a holder that died is gone once it has timed out.
            if meta.modified().is_ok_and(|until| until <= now) {
                self.unlink(name)?;
                continue;
            }
            if !lock {
                let written = (meta.ctime(), meta.ctime_nsec());
                files.push((written, meta.len(), name.to_string()));
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, name) in files {
            if total <= self.max {
                break;
            }
            self.unlink(&name)?;
            total -= len;
        }
        Ok(total)
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
            let data = blocking(move || dir.read(&name)).await?;
            Ok(data
                .as_deref()
                .and_then(Dir::live)
                .and_then(Object::decode)
                .map(Rc::new))
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
            if size > dir.max {
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
        Box::pin(blocking(move || dir.lock(&name, &token, ttl)))
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
        Box::pin(blocking(move || {
            // Only our own lock: one that timed out may be another's now.
            if dir.held(&name)?.as_deref() == Some(token.as_bytes()) {
                dir.unlink(&name)?;
            }
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_never_followed_and_locks_time_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir {
            path: tmp.path().to_path_buf(),
            root: DocRoot::new(tmp.path(), Rule::NoSymlinks),
            max: 1 << 20,
        };
        let until = SystemTime::now() + Duration::from_secs(3600);
        let rec = record(epoch_ms(until), b"payload");
        dir.write("e-x", until, b"payload").unwrap();
        assert_eq!(dir.read("e-x").unwrap().as_deref(), Some(&rec[..]));
        assert_eq!(Dir::live(&rec), Some(&b"payload"[..]));
        assert_eq!(Dir::live(&record(1, b"old")), None, "expired");
        // A link planted in DIR is not read through, and a write replaces
        // the link, not what it points to.
        let target = tmp.path().join("target");
        std::fs::write(&target, &rec).unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("e-y")).unwrap();
        assert_eq!(dir.read("e-y").unwrap(), None);
        dir.write("e-y", until, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), rec);
        // A lock is exclusive until it times out.
        let minute = Duration::from_secs(60);
        assert!(dir.lock("l-a", "t1", minute).unwrap());
        assert!(!dir.lock("l-a", "t2", minute).unwrap());
        assert_eq!(dir.held("l-a").unwrap().as_deref(), Some(&b"t1"[..]));
        assert!(dir.lock("l-b", "t1", Duration::ZERO).unwrap());
        assert!(dir.lock("l-b", "t2", minute).unwrap(), "taken over");
    }
}
