//! Bounds on what a script's arguments may make the Rust side do, where
//! neither `LuaMemoryLimit` (Rust memory is not Lua's) nor `LuaTimeLimit`
//! (its count hook fires only between Lua instructions) can see it.
//!
//! Copying a Lua value out of Lua (a zone's or a session's value, JSON
//! text, template data) is bounded by a [`Budget`] of bytes, spent as the
//! copy goes: a table may hold the same subtable or string many times
//! over, so `t = {t, t}` repeated twenty times, a few hundred bytes in
//! Lua, would otherwise be a million leaves copied in C and Rust, and a
//! thousand references to one big string a thousand copies of it.
//!
//! A span of time a script gives (a timer's delay, a wait's timeout, a
//! heartbeat) is at most [`MAX_SPAN`] ([`seconds`]): the clock cannot add
//! any span to now (an `Instant` plus about 292 billion years panics).

use std::fmt;
use std::time::Duration;

use mlua::Lua;

/// `LuaMemoryLimit` as the worker set it (0: none), kept in the Lua
/// state's app data for [`Budget::of_lua`].
pub(crate) struct MemoryLimit(pub usize);

/// The bytes a copy may still take.
pub(crate) struct Budget {
    limit: usize,
    spent: usize,
}

/// A copy went past its budget of this many bytes.
#[derive(Debug)]
pub(crate) struct OverBudget(pub usize);

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl Budget {
    /// At most `LuaMemoryLimit`: what Lua could not hold would not be
    /// read back into it either (a value stored, then read, is at least
    /// as big in Lua as in its copy).
    pub fn of_lua(lua: &Lua) -> Budget {
        let limit = match lua.app_data_ref::<MemoryLimit>().map(|m| m.0) {
            None | Some(0) => usize::MAX,
            Some(n) => n,
        };
        Budget { limit, spent: 0 }
    }

    /// No more than `limit` bytes, whatever the memory limit allows.
    pub fn at_most(self, limit: usize) -> Budget {
        Budget {
            limit: self.limit.min(limit),
            ..self
        }
    }

    /// Take `n` more bytes, before they are copied.
    pub fn spend(&mut self, n: usize) -> Result<(), OverBudget> {
        self.reach(self.spent.saturating_add(n))
    }

    /// The copy has grown to `total` bytes in all (for one that writes
    /// into a single buffer).
    pub fn reach(&mut self, total: usize) -> Result<(), OverBudget> {
        if total > self.limit {
            return Err(OverBudget(self.limit));
        }
        self.spent = self.spent.max(total);
        Ok(())
    }
}

/// The longest span of time, in years: longer than any server runs, and
/// far enough below what the clock can add that a deadline, or a
/// repeating timer's next one, always fits.
pub(crate) const MAX_SPAN_YEARS: u64 = 100;
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(MAX_SPAN_YEARS * 365 * 24 * 3600);

/// `seconds` as a span the clock can add: not negative, NaN or more than
/// [`MAX_SPAN`] (an error naming `what`, the call).
pub(crate) fn seconds(what: &str, seconds: f64) -> mlua::Result<Duration> {
    let span = Duration::try_from_secs_f64(seconds)
        .map_err(|e| mlua::Error::runtime(format!("{what}: {seconds} seconds: {e}")))?;
    if span > MAX_SPAN {
        return Err(mlua::Error::runtime(format!(
            "{what}: {seconds} seconds: more than {MAX_SPAN_YEARS} years"
        )));
    }
    Ok(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_spent_as_the_copy_goes() {
        let lua = Lua::new();
        lua.set_app_data(MemoryLimit(100));
        let mut b = Budget::of_lua(&lua).at_most(1000);
        assert!(b.spend(60).is_ok());
        assert!(b.reach(90).is_ok());
        assert_eq!(b.spend(11).unwrap_err().to_string(), "more than 100 bytes");
        let mut none = Budget::of_lua(&Lua::new());
        assert!(none.spend(usize::MAX).is_ok());
        assert!(
            none.spend(usize::MAX).is_ok(),
            "saturates rather than wraps"
        );
    }
}
