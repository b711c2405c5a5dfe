//! The heartbeat clock: one timer per worker and interval, however many
//! streams use it. Each tick wakes every stream waiting with that interval
//! at once (a `Notify`), and each writes its comment; a stream owes the
//! timer wheel nothing while it waits, so 10,000 idle streams cost one
//! timer and, every interval, one pass over them. The clock stops when no
//! stream uses it any more.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// A shared clock; streams hold it while they live.
pub(crate) struct Clock {
    tick: Notify,
}

impl Clock {
    /// Resolves at the clock's next tick.
    pub async fn tick(&self) {
        self.tick.notified().await;
    }
}

thread_local! {
    static CLOCKS: RefCell<HashMap<Duration, Weak<Clock>>> = RefCell::default();
}

/// The longest heartbeat period: a day between comments keeps no proxy's
/// idle timer from firing anyway, and a longer one could not be added to
/// the clock (`1e19` seconds from a script).
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// This worker's clock for `every` (at least a millisecond, at most
/// [`LONGEST`]), started if no stream uses one. Runs on the worker's
/// `LocalSet`.
pub(crate) fn clock(every: Duration) -> Rc<Clock> {
    let every = every.clamp(Duration::from_millis(1), LONGEST);
    CLOCKS.with(|clocks| {
        let mut clocks = clocks.borrow_mut();
        if let Some(clock) = clocks.get(&every).and_then(Weak::upgrade) {
            return clock;
        }
        let clock = Rc::new(Clock {
            tick: Notify::new(),
        });
        let weak = Rc::downgrade(&clock);
        clocks.insert(every, weak.clone());
        tokio::task::spawn_local(async move {
            let start = tokio::time::Instant::now() + every;
            let mut interval = tokio::time::interval_at(start, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                match weak.upgrade() {
                    Some(clock) => clock.tick.notify_waiters(),
                    None => break,
                }
            }
            // Forget the dead clock, unless a new one took its place.
            CLOCKS.with(|clocks| {
                let mut clocks = clocks.borrow_mut();
                if clocks.get(&every).is_some_and(|w| w.ptr_eq(&weak)) {
                    clocks.remove(&every);
                }
            });
        });
        clock
    })
}
