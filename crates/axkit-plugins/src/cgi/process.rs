//! Starting and ending CGI processes: the spawner threads that keep
//! posix_spawn off the event loop, descriptor hygiene, and ending a
//! script's whole process group.
//!
//! A script leads a process group of its own, whose id is the script's
//! pid. That id can name another group only once the script has been
//! reaped and nothing is left in its group, so the group is signalled
//! while the script is unreaped (a zombie at worst), or right after a
//! check that something is still in it.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ScriptSlot;

/// How often a process group is looked at while it is given time to end.
const POLL: Duration = Duration::from_millis(10);

/// Threads per worker that start scripts (see `Spawner`).
const SPAWN_THREADS: usize = 4;

/// Starts scripts on threads of its own. posix_spawn returns in the parent
/// only once the child has exec'd (vfork semantics), which on a busy
/// machine takes milliseconds; meanwhile the event loop keeps serving
/// (measured: 2.5x the requests/s of spawning inline, under load), and
/// several children can be on their way at once. A fixed few threads per
/// worker, started on first use, rather than tokio's blocking pool, which
/// grows a thread (and a malloc arena) per concurrent spawn.
#[derive(Default)]
pub(super) struct Spawner {
    jobs: std::cell::OnceCell<Option<SpawnQueue>>,
}

type SpawnQueue = std::sync::mpsc::Sender<(Command, oneshot::Sender<std::io::Result<Child>>)>;

impl Spawner {
    pub(super) async fn spawn(&self, mut command: Command) -> std::io::Result<Child> {
        let queue = self.jobs.get_or_init(|| {
            let (queue, jobs) = std::sync::mpsc::channel::<(Command, oneshot::Sender<_>)>();
            let jobs = Arc::new(std::sync::Mutex::new(jobs));
            // The children's pipes register with this worker's event loop.
            let runtime = tokio::runtime::Handle::current();
            let started = (0..SPAWN_THREADS).filter(|_| {
                let jobs = jobs.clone();
                let runtime = runtime.clone();
                let thread = std::thread::Builder::new()
                    .name("cgi-spawner".into())
                    .spawn(move || {
                        let _context = runtime.enter();
                        loop {
                            // The lock is held while waiting, not while spawning.
                            let job = jobs.lock().ok().and_then(|j| j.recv().ok());
                            let Some((mut command, reply)) = job else {
                                return;
                            };
                            let _ = reply.send(command.spawn());
                        }
                    });
                thread.is_ok()
            });
            (started.count() > 0).then_some(queue)
        });
        // Without threads (none could be started), spawn inline.
        let Some(queue) = queue else {
            return command.spawn();
        };
        let (reply, result) = oneshot::channel();
        queue
            .send((command, reply))
            .map_err(|_| std::io::Error::other("the spawner threads are gone"))?;
        result
            .await
            .map_err(|_| std::io::Error::other("the spawner threads are gone"))?
    }
}

/// End a script's whole process group: SIGTERM, the grace period, then
/// SIGKILL. The leader is reaped only at the end, so that its pid (the
/// group's id) cannot be reused by an unrelated process while we signal
/// it; then its slot is freed. Returns how the leader ended.
pub(super) async fn terminate(
    mut child: Child,
    pgid: i32,
    grace: Duration,
    permit: ScriptSlot,
) -> Option<ExitStatus> {
    signal_group(pgid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while !exited_unreaped(pgid) && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    // The leader is at worst a zombie, so the group id is still ours. Kills
    // what ignored SIGTERM or outlived it.
    signal_group(pgid, libc::SIGKILL);
    let status = child.wait().await.ok();
    drop(permit);
    status
}

/// Send `signal` to the process group `pgid` (never to our own: killpg
/// with 0 would mean that). Only for a group whose id is still ours (see
/// the module's doc).
pub(super) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) on a process group we created.
        unsafe { libc::killpg(pgid, signal) };
    }
}

/// After a group's leader was signalled with SIGTERM (while unreaped) and
/// then reaped: give what is left of the group until `deadline` to go,
/// then SIGKILL it. Returns whether SIGKILL was needed. The signal goes
/// out right after a check that the group still has members, so its id is
/// still theirs (for it to name another group, the kernel's pids would
/// have to wrap around in between).
pub(super) async fn end_leftovers(pgid: i32, deadline: Instant) -> bool {
    // SAFETY: kill(2) with signal 0 only checks; ESRCH: nobody is left.
    while pgid > 0 && unsafe { libc::kill(-pgid, 0) } == 0 {
        if Instant::now() >= deadline {
            signal_group(pgid, libc::SIGKILL);
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

/// Resolves once our child `pid` has exited, leaving it unreaped. A pidfd
/// turns readable then; without one (no descriptor left), poll.
pub(super) async fn exited(pid: i32) {
    if pid <= 0 || exited_unreaped(pid) {
        return;
    }
    if let Ok(fd) = pidfd(pid) {
        // SAFETY: the AsyncFd owns the OwnedFd, which keeps the descriptor
        // open and unchanged for as long as it is registered.
        if let Ok(fd) = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            let _ = fd.readable().await;
            return;
        }
    }
    while !exited_unreaped(pid) {
        tokio::time::sleep(POLL).await;
    }
}

fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags; it returns a new
    // descriptor (close-on-exec) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is new and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `pid` has exited, without reaping it.
pub(super) fn exited_unreaped(pid: i32) -> bool {
    // SAFETY: waitid with WNOWAIT only inspects our own child.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r != 0 || info.si_pid() != 0
    }
}
