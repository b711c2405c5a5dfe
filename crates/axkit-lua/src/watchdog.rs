//! `LuaTimeLimit` without a per-instruction cost, and without a thread.
//!
//! A Lua state with a count hook set runs every instruction through the
//! hook's bookkeeping (Lua 5.4 traps each instruction while any hook is on),
//! which cost a hello-world handler about a tenth of its instructions. So
//! the coroutines that run hooks carry no hook at all. Each slice of Lua
//! execution (one resumption of such a coroutine, or a script's top level)
//! publishes its deadline in a thread-local, and a POSIX timer of the
//! thread (`timer_create`, its signal sent to that thread alone) looks at
//! it: the signal handler, on the worker thread and so between two of its
//! instructions, finds the slice running past its deadline and sets a count
//! hook of one instruction on the slice's coroutine (the way the standalone
//! `lua` interpreter stops a script on Ctrl-C: `lua_sethook` is meant to be
//! called from a signal handler), and that hook stops the slice: it yields
//! when it can (the hook runner then finds the slice killed), else it
//! raises an error, again at every instruction until the code is out.
//!
//! Not a watchdog thread: a second thread would make the worker a
//! multi-threaded process, for which glibc takes locked paths in `malloc`
//! and `free` and wraps blocking system calls in cancellation bookkeeping,
//! on every request. Nor a timer set per slice: that would be a system call
//! per request. The timer ticks instead, every [`TICK`] at most, while
//! slices keep starting; a tick that finds a slice running sets the next one
//! at that slice's deadline when it comes sooner, and a tick that finds no
//! slice run since the one before stops the timer (the next slice starts it
//! again: one system call after an idle spell). A worker serving Lua
//! requests so takes about twenty signals a second, and an idle one none.
//! A slice is stopped within a few milliseconds of its limit (the coarse
//! clock's resolution), or up to [`TICK`] after it when the limit is
//! shorter than a tick and the slice began just after one.
//!
//! The signal interrupts whatever the worker thread is doing: it is
//! installed with `SA_RESTART`, so socket and pipe calls carry on, and the
//! event loop takes the `EINTR` of `epoll_wait` as a wake-up with nothing to
//! do. It goes to the thread that runs Lua alone, never to the runtime's
//! blocking threads; children neither inherit the timer (a timer does not
//! survive `fork`) nor the handler (`exec` resets it).
//!
//! Coroutines that scripts create themselves (`coroutine.create`, `wrap`)
//! run inside a slice's resumption, on their own Lua thread, which a hook
//! set on the slice's coroutine would not reach; they are created with the
//! old instruction-count hook (see [`inherit_count_hook`]), a cost only
//! code that uses them pays.

use std::cell::Cell;
use std::ffi::{c_int, CStr};
use std::ptr;
use std::sync::atomic::{compiler_fence, Ordering};
use std::sync::Once;
use std::time::Duration;

use mlua::ffi;

use crate::host::Clock;

/// The longest wait between two looks at the running slice while slices
/// keep starting (and between two tries at stopping one past its limit, in
/// case a signal came while the hook could not be kept, see
/// [`inherit_count_hook`]).
const TICK: Duration = Duration::from_millis(50);

/// Instructions between two looks at the clock in the hook of coroutines
/// scripts create.
const CHECK_EVERY: c_int = 10_000;

/// The running slice of this thread and its timer: everything the signal
/// handler reads or writes.
struct Running {
    /// The coroutine the slice resumes (or runs on), null when none runs.
    state: Cell<*mut ffi::lua_State>,
    /// The state that resumes it through mlua, or null: mlua makes the
    /// message of an error object there, with its `__tostring`, as part of
    /// the resumption (see [`enter`]).
    resumer: Cell<*mut ffi::lua_State>,
    /// The slice's deadline, coarse monotonic milliseconds.
    deadline: Cell<u64>,
    /// The clock the stopping hook records where it stopped in.
    clock: Cell<*const Clock>,
    /// Slices started on this thread, and as many as the last tick saw.
    started: Cell<u64>,
    seen: Cell<u64>,
    /// This thread's timer (none before the first slice, and none in a
    /// child after `fork`: timers do not survive it), and whether it is set.
    timer: Cell<Option<libc::timer_t>>,
    ticking: Cell<bool>,
}

thread_local! {
    // Constant-initialised and without a destructor: reading it in a signal
    // handler is a plain thread-local load.
    static RUNNING: Running = const {
        Running {
            state: Cell::new(ptr::null_mut()),
            resumer: Cell::new(ptr::null_mut()),
            deadline: Cell::new(0),
            clock: Cell::new(ptr::null()),
            started: Cell::new(0),
            seen: Cell::new(0),
            timer: Cell::new(None),
            ticking: Cell::new(false),
        }
    };
    // Deletes the thread's timer when the thread ends (a thread other than
    // a worker's, such as one checking the configuration, may run Lua).
    static TIMER_OWNER: TimerOwner = const { TimerOwner };
}

struct TimerOwner;

impl Drop for TimerOwner {
    fn drop(&mut self) {
        RUNNING.with(|r| {
            if let Some(timer) = r.timer.take() {
                // SAFETY: a timer this thread created in this process.
                unsafe { libc::timer_delete(timer) };
            }
        });
    }
}

/// The slice [`enter`] interrupted (a hook called from inside another's,
/// such as a logging hook), restored when the new one ends.
pub(crate) struct Entered {
    deadline: u64,
    state: *mut ffi::lua_State,
    resumer: *mut ffi::lua_State,
    clock: *const Clock,
    mine: *mut ffi::lua_State,
    my_resumer: *mut ffi::lua_State,
}

/// A slice of at most `limit` starts on `state`, timed by `clock`.
/// `resumer`, when not null, is the state mlua resumes `state` from: a
/// coroutine that ends in an error leaves mlua to make its message there,
/// calling a table's `__tostring` within the resumption, so the slice
/// stops that state too (one that looped hung the worker for good).
pub(crate) fn enter(
    state: *mut ffi::lua_State,
    resumer: *mut ffi::lua_State,
    clock: &Clock,
    limit: Duration,
) -> Entered {
    let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    let deadline = coarse_ms().saturating_add(limit);
    RUNNING.with(|r| {
        // No slice while the deadline changes, so that a signal handled
        // meanwhile never pairs one slice's coroutine with another's
        // deadline.
        let before = r.state.replace(ptr::null_mut());
        compiler_fence(Ordering::SeqCst);
        let entered = Entered {
            deadline: r.deadline.replace(deadline),
            state: before,
            resumer: r.resumer.replace(resumer),
            clock: r.clock.replace(clock),
            mine: state,
            my_resumer: resumer,
        };
        r.started.set(r.started.get().wrapping_add(1));
        compiler_fence(Ordering::SeqCst);
        r.state.set(state);
        compiler_fence(Ordering::SeqCst);
        if !r.ticking.get() {
            start_ticking(r, limit);
        }
        entered
    })
}

/// The slice `entered` began ends: the one it interrupted, if any, is the
/// running one again, and the stopping hook, if the handler set it, comes
/// off the coroutine (a pooled one runs other requests).
pub(crate) fn leave(entered: &Entered) {
    RUNNING.with(|r| {
        r.state.set(ptr::null_mut());
        compiler_fence(Ordering::SeqCst);
        r.deadline.set(entered.deadline);
        r.resumer.set(entered.resumer);
        r.clock.set(entered.clock);
        compiler_fence(Ordering::SeqCst);
        r.state.set(entered.state);
        compiler_fence(Ordering::SeqCst);
        // A tick handled while no slice was published may have stopped the
        // timer under the interrupted slice, which runs on.
        if !entered.state.is_null() && !r.ticking.get() {
            start_ticking(r, TICK.as_millis() as u64);
        }
    });
    // A signal handled from here on leaves this coroutine alone; one
    // handled before may have set the hook, which comes off now.
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `mine` is the coroutine this slice ran on, alive while the
    // caller holds it, and `my_resumer` null or the state resuming it.
    unsafe {
        for state in [entered.mine, entered.my_resumer] {
            if !state.is_null() && is(ffi::lua_gethook(state), stop_hook) {
                ffi::lua_sethook(state, None, 0, 0);
            }
        }
    }
}

/// Whether `hook` is `f`.
fn is(hook: Option<ffi::lua_Hook>, f: ffi::lua_Hook) -> bool {
    hook.map(|h| h as usize) == Some(f as usize)
}

/// Set the thread's timer (creating it first in a new thread or process)
/// to tick after `limit_ms`, or [`TICK`] when that is sooner.
fn start_ticking(r: &Running, limit_ms: u64) {
    let timer = match r.timer.get() {
        Some(timer) => timer,
        None => match create_timer() {
            Ok(timer) => {
                r.timer.set(Some(timer));
                TIMER_OWNER.with(|_| ());
                timer
            }
            Err(e) => {
                // Without it, no slice is ever stopped: say so (once per
                // thread and process) rather than fail the hook that
                // needed it.
                r.ticking.set(true);
                axkit::plugin::log_to_stderr(
                    axkit::Level::Error,
                    &format!("LuaTimeLimit: cannot create the timer: {e}"),
                );
                return;
            }
        },
    };
    r.ticking.set(true);
    set_timer(timer, limit_ms.max(1));
}

/// A timer signalling this thread alone.
fn create_timer() -> std::io::Result<libc::timer_t> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(install);
    // SAFETY: a zeroed sigevent is a valid one to fill in; `timer` is a
    // valid out-pointer.
    unsafe {
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal();
        event.sigev_notify_thread_id = libc::gettid();
        let mut timer: libc::timer_t = ptr::null_mut();
        if libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(timer)
    }
}

/// Set `timer` to fire once in `ms` milliseconds (at most [`TICK`]), or
/// stop it when `ms` is 0. Async-signal-safe.
fn set_timer(timer: libc::timer_t, ms: u64) {
    let ms = ms.min(TICK.as_millis() as u64);
    let value = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
        },
    };
    // SAFETY: a timer of this process and a valid itimerspec.
    unsafe { libc::timer_settime(timer, 0, &value, ptr::null_mut()) };
}

/// The signal: one of the real-time signals, which nothing else in the
/// server uses (glibc keeps the first ones for itself; SIGRTMIN says
/// where the free ones start).
fn signal() -> c_int {
    libc::SIGRTMIN() + 6
}

/// The signal handler (process-wide, installed once) and the fork hook.
fn install() {
    // SAFETY: a handler that only reads and writes a constant thread-local,
    // reads the clock and calls timer_settime (async-signal-safe) and
    // lua_sethook (made to be called from a signal handler); SA_RESTART so
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

/// In a child after `fork` (a worker), on its one thread: the parent's
/// timer is not there, so the first slice creates one.
extern "C" fn forked() {
    RUNNING.with(|r| {
        r.timer.set(None);
        r.ticking.set(false);
    });
}

/// A tick: stop the running slice if it is past its deadline, and set the
/// next tick, or none when no slice ran since the last one.
extern "C" fn on_signal(_: c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Errno is the interrupted code's: keep it.
    // SAFETY: __errno_location gives this thread's errno.
    let errno = unsafe { *libc::__errno_location() };
    RUNNING.with(|r| {
        let Some(timer) = r.timer.get() else {
            return;
        };
        let state = r.state.get();
        let next = if !state.is_null() {
            let now = coarse_ms();
            let deadline = r.deadline.get();
            if now >= deadline {
                // SAFETY: the slice publishing `state` still runs on it,
                // resumed from `resumer` if that is not null.
                unsafe { ffi::lua_sethook(state, Some(stop_hook), ffi::LUA_MASKCOUNT, 1) };
                let resumer = r.resumer.get();
                if !resumer.is_null() {
                    // SAFETY: as above.
                    unsafe { ffi::lua_sethook(resumer, Some(stop_hook), ffi::LUA_MASKCOUNT, 1) };
                }
                TICK.as_millis() as u64
            } else {
                deadline - now
            }
        } else if r.seen.get() != r.started.get() {
            r.seen.set(r.started.get());
            TICK.as_millis() as u64
        } else {
            r.ticking.set(false);
            0
        };
        set_timer(timer, next);
    });
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The hook the signal handler sets on a slice past its limit: stop it.
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
    // Keep the stopping hook if the signal handler set it meanwhile.
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
