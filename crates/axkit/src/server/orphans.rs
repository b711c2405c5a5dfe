//! What a dead worker leaves behind. The master is a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), so a process whose parent dies anywhere
//! beneath it (a CGI script or a Lua `process.run` program of a worker that
//! was killed, a child that outlived its script) is reparented to the
//! master rather than to init. These adopted processes are the master's
//! children that it did not start itself; once a worker has exited, and
//! when the master stops, it ends them all (SIGTERM to each one's process
//! group, [`GRACE`], SIGKILL) and reaps them. The rest of the time it only
//! reaps those that exit: one adopted while the workers all run (a CGI
//! script's `CGIKillGroup off` child or `setsid` daemon, left when the
//! script exited) may be meant to outlive its request, and nothing says
//! which worker it came from, so it lives until some worker exits.
//!
//! Reaping is by pid (`waitpid(pid)`), never `waitpid(-1)`: the master's
//! own children (workers, a new master) belong to their tokio `Child`,
//! which must get their status. A pid is signalled only while it is our
//! unreaped child, so it cannot have been reused; a group only while its
//! leader is.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use crate::plugin::{escape_log_bytes, Level};
use crate::server::master_log::log;

/// How long an adopted process has between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(1);

/// How often a process being ended is looked at.
const POLL: Duration = Duration::from_millis(10);

/// Make this process the reaper of its descendants' orphans. Not when
/// its children cannot be listed (`/proc/PID/task/TID/children` needs
/// `CONFIG_PROC_CHILDREN`): adopted processes could then never be reaped.
pub(super) fn become_subreaper() -> Result<(), String> {
    let tid = std::process::id();
    std::fs::metadata(format!("/proc/self/task/{tid}/children"))
        .map_err(|e| format!("cannot list child processes in /proc: {e}"))?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// An adopted process, as `/proc/PID/stat` describes it.
struct Adopted {
    pid: i32,
    pgid: i32,
    /// Its command name, escaped for the log.
    comm: String,
    exited: bool,
}

impl Adopted {
    fn read(pid: i32) -> Option<Adopted> {
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        // `PID (COMM) STATE PPID PGRP …`: the name may hold anything, `)` too.
        let open = stat.iter().position(|&b| b == b'(')?;
        let close = stat.iter().rposition(|&b| b == b')')?;
        let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
        let mut fields = rest.split(' ');
        let state = fields.next()?;
        let pgid = fields.nth(1)?.parse().ok()?;
        Some(Adopted {
            pid,
            pgid,
            comm: escape_log_bytes(stat.get(open + 1..close)?).into_owned(),
            exited: matches!(state, "Z" | "X"),
        })
    }

    fn exited(&self) -> bool {
        Adopted::read(self.pid).is_none_or(|now| now.exited)
    }

    /// Signal its process group if it leads one (its pid being still its
    /// own, the group's id is too), else the process alone: a group whose
    /// leader is gone may have a reused id.
    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory effects; both ids are positive.
        unsafe {
            if self.pgid == self.pid {
                libc::kill(-self.pgid, signal);
            } else {
                libc::kill(self.pid, signal);
            }
        }
    }

    /// Reap it if it has exited; whether it is gone.
    fn try_reap(&self) -> bool {
        // SAFETY: waitpid on one pid that is our child.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), libc::WNOHANG) != 0 }
    }

    /// Reap it once it has exited, within `limit`.
    async fn reap(&self, limit: Instant) {
        while !self.try_reap() && Instant::now() < limit {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// This process's children that `own` does not name, read from
/// `/proc/self/task/*/children` (an orphan goes to one of our threads).
fn adopted(own: &HashSet<u32>) -> Vec<Adopted> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .filter(|&pid| pid > 0 && !own.contains(&(pid as u32)))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter().filter_map(Adopted::read).collect()
}

/// Reap the adopted processes that have exited, sending no signal.
pub(super) fn reap_exited(own: &HashSet<u32>) {
    for p in adopted(own).into_iter().filter(|p| p.exited) {
        p.try_reap();
    }
}

/// End every adopted process and reap it, in rounds (ending one may
/// orphan its children, which are adopted in turn), for at most `limit`.
/// Returns whether none is left. `own()` names the processes we started,
/// read afresh each round.
pub(super) async fn end_all(own: impl Fn() -> HashSet<u32>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let found = adopted(&own());
        if found.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            let pids: Vec<String> = found.iter().map(|p| p.pid.to_string()).collect();
            log(
                Level::Error,
                &format!(
                    "processes left by a worker did not end in {limit:?}: {}",
                    pids.join(" ")
                ),
            );
            return false;
        }
        end(&found, deadline).await;
    }
}

/// One round: SIGTERM, up to [`GRACE`], SIGKILL (to the group members
/// that outlived their leader too), reap.
async fn end(found: &[Adopted], deadline: Instant) {
    for p in found.iter().filter(|p| !p.exited) {
        log(
            Level::Warn,
            &format!(
                "ending process {} ({}), left running by a worker that exited",
                p.pid, p.comm
            ),
        );
    }
    for p in found {
        p.signal(libc::SIGTERM);
    }
    let grace = Instant::now() + GRACE;
    while Instant::now() < grace && !found.iter().all(Adopted::exited) {
        tokio::time::sleep(POLL).await;
    }
    for p in found {
        if !p.exited() {
            log(
                Level::Warn,
                &format!(
                    "process {} ({}) still running {GRACE:?} after SIGTERM: SIGKILL",
                    p.pid, p.comm
                ),
            );
        }
        p.signal(libc::SIGKILL);
    }
    for p in found {
        p.reap(deadline).await;
    }
}
