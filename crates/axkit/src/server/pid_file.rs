//! `PidFile`: the master's process id in a file, for scripts and init
//! systems to signal it by.
//!
//! The file is written atomically (a new file with a random name in the
//! same directory, renamed over the old one) and the master keeps it open
//! with an exclusive `flock` for as long as it runs. So "another master
//! holds it" is the lock, not a guess from a process id that may have been
//! reused: a file left by a master that died is taken over, one held by a
//! live master makes a new one refuse to start. A binary upgrade moves the
//! file to `FILE.oldbin` (nginx's name) while the new master runs, and
//! back if the new master fails; at exit a master removes its file if it
//! is still its own.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Expect;

pub(crate) struct PidFile {
    path: PathBuf,
    /// Open and locked for our life.
    file: File,
}

/// Lock `file` without waiting; whether we got it.
fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Fail if the pid file at `path` cannot be written (its directory is
/// missing: found before the workers start, not once they serve), or a
/// live master holds it.
pub(crate) fn check_free(path: &Path) -> Result<(), String> {
    if let Some(why) = Expect::InDirectory.unmet(path) {
        return Err(format!("PidFile {}: {why}", path.display()));
    }
    let Ok(file) = File::open(path) else {
        return Ok(());
    };
    if try_lock(&file) {
        // Left by a master that is gone: ours to replace.
        return Ok(());
    }
    let pid = std::fs::read_to_string(path).unwrap_or_default();
    Err(format!(
        "PidFile {}: another axkit master (pid {}) is running",
        path.display(),
        pid.trim()
    ))
}

/// `path` with `.oldbin` appended: where an upgraded master's file goes.
pub(crate) fn oldbin(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".oldbin");
    PathBuf::from(name)
}

impl PidFile {
    /// Write our pid to `path`, atomically, and hold it.
    pub(crate) fn write(path: &Path) -> Result<PidFile, String> {
        check_free(path)?;
        let fail = |e: std::io::Error| format!("PidFile {}: {e}", path.display());
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".axkit-pid-")
            .rand_bytes(12)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(fail)?;
        writeln!(temp, "{}", std::process::id()).map_err(fail)?;
        if !try_lock(temp.as_file()) {
            return Err(fail(std::io::Error::other("cannot lock it")));
        }
        let file = temp.persist(path).map_err(|e| fail(e.error))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Whether the file at `path` is still ours (not replaced since).
    fn is_ours_at(&self, path: &Path) -> bool {
        match (std::fs::metadata(path), self.file.metadata()) {
            (Ok(there), Ok(ours)) => there.dev() == ours.dev() && there.ino() == ours.ino(),
            _ => false,
        }
    }

    /// Move the file to `FILE.oldbin`, for the master that replaces us.
    pub(crate) fn move_to_oldbin(&self) -> Result<(), String> {
        std::fs::rename(&self.path, oldbin(&self.path))
            .map_err(|e| format!("cannot rename PidFile {}: {e}", self.path.display()))
    }

    /// Move it back, when the new master failed (unless something else
    /// is at the name by now).
    pub(crate) fn move_back_from_oldbin(&self) {
        let old = oldbin(&self.path);
        if self.is_ours_at(&old) && !self.path.exists() {
            let _ = std::fs::rename(old, &self.path);
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        for path in [self.path.clone(), oldbin(&self.path)] {
            if self.is_ours_at(&path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
