//! `LuaTimeLimit` without a per-instruction cost.
//!
//! A Lua state with a count hook set runs every instruction through the
//! hook's bookkeeping (Lua 5.4 traps each instruction while any hook is on),
//! which cost a hello-world handler about a tenth of its instructions. So
//! the coroutines that run hooks carry no hook at all. Each slice of Lua
//! execution (one resumption of such a coroutine, or a script's top level)
//! publishes its deadline; a watchdog thread per Lua state sleeps until the
//! deadline of the slice it sees running and, when that slice is still the
//! one running past it, signals the worker thread. The signal handler, on
//! the worker thread and so between two of its instructions, sets a count
//! hook of one instruction on the slice's coroutine (the way the standalone
//! `lua` interpreter stops a script on Ctrl-C: `lua_sethook` is meant to be
//! called from a signal handler), and that hook stops the slice: it yields
//! when it can (the hook runner then finds the slice killed), else it
//! raises an error, again at every instruction until the code is out.
//!
//! Coroutines that scripts create themselves (`coroutine.create`, `wrap`)
//! run inside a slice's resumption, on their own Lua thread, which a hook
//! set on the slice's coroutine would not reach; they are created with the
//! old instruction-count hook (see [`inherit_count_hook`]), a cost only
//! code that uses them pays.
//!
//! Published state is a sequence number per slice (odd while one runs) and
//! its deadline, written by the worker thread with plain atomic stores, and
//! the coroutine in a thread-local the signal handler reads: a slice costs
//! two clock-free stores at each end and one read of the coarse monotonic
//! clock. The signal carries the sequence number it is about, so a slice
//! that ended just before it arrived is never stopped in its successor's
//! place. A slice is stopped within a few milliseconds of its limit (the
//! coarse clock's resolution, the watchdog's wake-up); one that started
//! while the watchdog slept its idle tick is first seen up to [`IDLE_TICK`]
//! later, and stopped no later than its deadline plus that.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, CStr};
use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use mlua::ffi;

use crate::host::Clock;

/// How long the watchdog sleeps when no slice is running, and how often it
/// signals again while one is past its deadline (in case a signal came
/// while the hook could not be kept, see [`hooked_create`]).
const IDLE_TICK: Duration = Duration::from_millis(50);

/// Instructions between two looks at the clock in the hook of coroutines
/// scripts create.
const CHECK_EVERY: c_int = 10_000;

/// Bumped in every child after `fork`: a Lua state copied into a worker
/// finds its watchdog thread missing (threads do not survive `fork`) and
/// starts another.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// What the signal handler needs of the slice running on this thread.
struct Running {
    /// The slice's sequence number (odd), 0 when none runs.
    seq: Cell<u64>,
    /// The coroutine the slice resumes (or runs on).
    state: Cell<*mut ffi::lua_State>,
    /// The clock the stopping hook records where it stopped in.
    clock: Cell<*const Clock>,
}

thread_local! {
    // Constant-initialised and without a destructor: reading it in a signal
    // handler is a plain thread-local load.
    static RUNNING: Running = const {
        Running {
            seq: Cell::new(0),
            state: Cell::new(ptr::null_mut()),
            clock: Cell::new(ptr::null()),
        }
    };
}

/// Shared between the worker thread and its watchdog.
struct Published {
    seq: AtomicU64,
    /// Coarse monotonic milliseconds.
    deadline: AtomicU64,
    /// The `pthread_t` of the thread running the slice.
    thread: AtomicU64,
}

/// One Lua state's watchdog: its published state, with a thread reading
/// it in this process.
#[derive(Default)]
pub(crate) struct Watchdog {
    published: RefCell<Option<Arc<Published>>>,
    /// [`FORKS`] when the thread was started.
    forks: Cell<u64>,
    last: Cell<u64>,
}

/// The slice [`Watchdog::enter`] interrupted (a hook called from inside
/// another's, such as a logging hook), restored when the new one ends.
pub(crate) struct Entered {
    seq: u64,
    deadline: u64,
    state: *mut ffi::lua_State,
    clock: *const Clock,
    mine: *mut ffi::lua_State,
}

impl Watchdog {
    /// A slice of at most `limit` starts on `state`, timed by `clock`.
    pub fn enter(&self, state: *mut ffi::lua_State, clock: &Clock, limit: Duration) -> Entered {
        let mut published = self.published.borrow_mut();
        let forks = FORKS.load(Ordering::Relaxed);
        if published.is_none() || self.forks.get() != forks {
            self.forks.set(forks);
            *published = Some(start());
        }
        let Some(published) = published.as_ref() else {
            unreachable!("set above")
        };
        let seq = (self.last.get() + 2) | 1;
        self.last.set(seq);
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let deadline = coarse_ms().saturating_add(limit);
        let before = RUNNING.with(|r| Entered {
            seq: r.seq.replace(seq),
            deadline: published.deadline.load(Ordering::Relaxed),
            state: r.state.replace(state),
            clock: r.clock.replace(clock),
            mine: state,
        });
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as u64;
        published.thread.store(me, Ordering::Relaxed);
        published.deadline.store(deadline, Ordering::Relaxed);
        published.seq.store(seq, Ordering::Release);
        before
    }

    /// The slice `entered` began ends: the one it interrupted, if any, is
    /// the running one again, and the stopping hook, if the watchdog had it
    /// set, comes off the coroutine (a pooled one runs other requests).
    pub fn leave(&self, entered: &Entered) {
        if let Some(published) = self.published.borrow().as_ref() {
            published
                .deadline
                .store(entered.deadline, Ordering::Relaxed);
            published.seq.store(entered.seq, Ordering::Release);
        }
        RUNNING.with(|r| {
            r.seq.set(entered.seq);
            r.state.set(entered.state);
            r.clock.set(entered.clock);
        });
        // A signal handled from here on finds another sequence number and
        // leaves the coroutine alone; one handled before has set the hook,
        // which comes off now.
        compiler_fence(Ordering::SeqCst);
        // SAFETY: `mine` is the coroutine this slice ran on, alive while
        // the caller holds it.
        unsafe {
            if is(ffi::lua_gethook(entered.mine), stop_hook) {
                ffi::lua_sethook(entered.mine, None, 0, 0);
            }
        }
    }
}

/// Whether `hook` is `f`.
fn is(hook: Option<ffi::lua_Hook>, f: ffi::lua_Hook) -> bool {
    hook.map(|h| h as usize) == Some(f as usize)
}

/// Start a watchdog thread for a new published state.
fn start() -> Arc<Published> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(install);
    let published = Arc::new(Published {
        seq: AtomicU64::new(0),
        deadline: AtomicU64::new(0),
        thread: AtomicU64::new(0),
    });
    let weak = Arc::downgrade(&published);
    let spawned = std::thread::Builder::new()
        .name("lua-watchdog".into())
        .spawn(move || watch(weak));
    if let Err(e) = spawned {
        // Without it, no slice is ever stopped: say so rather than fail the
        // hook that needed it.
        axkit::plugin::log_to_stderr(
            axkit::Level::Error,
            &format!("LuaTimeLimit: cannot start the watchdog thread: {e}"),
        );
    }
    published
}

/// The watchdog: until the Lua state is gone, sleep until the running
/// slice's deadline (or the idle tick) and signal a slice past it.
fn watch(published: Weak<Published>) {
    loop {
        let Some(p) = published.upgrade() else {
            return;
        };
        let seq = p.seq.load(Ordering::Acquire);
        let mut sleep = IDLE_TICK;
        if seq & 1 == 1 {
            let deadline = p.deadline.load(Ordering::Relaxed);
            let thread = p.thread.load(Ordering::Relaxed);
            let now = coarse_ms();
            if p.seq.load(Ordering::Acquire) != seq {
                sleep = Duration::ZERO;
            } else if now >= deadline {
                let value = libc::sigval {
                    sival_ptr: seq as usize as *mut libc::c_void,
                };
                // SAFETY: `thread` ran the slice whose sequence number is
                // still published; the Lua state (which `p` keeps alive)
                // lives on that thread.
                unsafe {
                    libc::pthread_sigqueue(thread as libc::pthread_t, signal(), value);
                }
            } else {
                sleep = sleep.min(Duration::from_millis(deadline - now));
            }
        }
        drop(p);
        std::thread::sleep(sleep.max(Duration::from_millis(1)));
    }
}

/// The signal: one of the real-time signals, which nothing else in the
/// server uses (glibc keeps the first ones for itself; SIGRTMIN says
/// where the free ones start).
fn signal() -> c_int {
    libc::SIGRTMIN() + 6
}

/// The signal handler (process-wide, installed once) and the fork hook.
fn install() {
    // SAFETY: a handler that only reads thread-locals and calls
    // lua_sethook, which is async-signal-safe by Lua's design; SA_RESTART so
    // that an interrupted system call carries on.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal(), &action, ptr::null_mut());
        libc::pthread_atfork(None, None, Some(forked));
    }
}

extern "C" fn forked() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn on_signal(_: c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let seq = unsafe { (*info).si_value().sival_ptr } as usize as u64;
    RUNNING.with(|r| {
        let state = r.state.get();
        if r.seq.get() == seq && !state.is_null() {
            // SAFETY: the slice that published `seq` still runs on `state`.
            unsafe { ffi::lua_sethook(state, Some(stop_hook), ffi::LUA_MASKCOUNT, 1) };
        }
    });
}

/// The hook the watchdog sets on a slice past its limit: stop it.
unsafe extern "C-unwind" fn stop_hook(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    let clock = RUNNING.with(|r| r.clock.get());
    if clock.is_null() {
        ffi::lua_sethook(state, None, 0, 0);
        return;
    }
    stop(state, ar, &*clock);
}

/// The hook of coroutines that scripts create: every CHECK_EVERY
/// instructions, stop the slice if it is past its limit.
unsafe extern "C-unwind" fn count_hook(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    let clock = RUNNING.with(|r| r.clock.get());
    if clock.is_null() || !(*clock).overran() {
        return;
    }
    stop(state, ar, &*clock);
}

/// Stop the running slice: note where, then yield out of the coroutine if
/// it can (the hook runner sees the slice killed and drops it), else raise
/// an error (which `pcall` cannot keep: see `time_up` in api.rs, and this
/// hook raises it again at the next check).
unsafe fn stop(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug, clock: &Clock) {
    if !clock.is_killed() {
        let at = if ffi::lua_getinfo(state, c"Sl".as_ptr(), ar) != 0 {
            let file = CStr::from_ptr((*ar).short_src.as_ptr()).to_string_lossy();
            format!("{file}:{}", (*ar).currentline)
        } else {
            "?".to_string()
        };
        clock.kill(at);
        if ffi::lua_isyieldable(state) != 0 {
            ffi::lua_yield(state, 0);
            return;
        }
    }
    // No Rust value with a destructor is alive here: lua_error leaves this
    // frame by longjmp.
    ffi::lua_pushstring(state, c"LuaTimeLimit exceeded".as_ptr());
    ffi::lua_error(state);
}

/// `hooked(create, f)`: `create(f)` with the instruction-count hook on the
/// calling coroutine meanwhile, so that the coroutine it makes inherits it
/// (Lua copies the creator's hook into a new thread).
pub(crate) unsafe extern "C-unwind" fn inherit_count_hook(state: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(state, 1, ffi::LUA_TFUNCTION);
    ffi::luaL_checktype(state, 2, ffi::LUA_TFUNCTION);
    ffi::lua_settop(state, 2);
    let (hook, mask, count) = (
        ffi::lua_gethook(state),
        ffi::lua_gethookmask(state),
        ffi::lua_gethookcount(state),
    );
    ffi::lua_sethook(state, Some(count_hook), ffi::LUA_MASKCOUNT, CHECK_EVERY);
    ffi::lua_call(state, 1, 1);
    // Keep the stopping hook if the watchdog set it meanwhile.
    if is(ffi::lua_gethook(state), count_hook) {
        ffi::lua_sethook(state, hook, mask, count);
    }
    1
}

/// Milliseconds of the coarse monotonic clock (a read of the vDSO page,
/// no system call).
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
