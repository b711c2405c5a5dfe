//! State shared across AxKit's worker processes: dictionary **zones** in
//! shared memory ([`Zone`]: typed values, TTL, atomic `incr`, `add`,
//! `replace`, compare-and-swap, LRU eviction with counters) and a
//! **broadcast** that wakes waiters in every worker ([`broadcast`],
//! [`wait`], and [`subscribe`] for a queue that misses nothing between two
//! reads). The Lua global `shared` (in `axkit-lua`) is built on this
//! crate; docs/shared.md documents both, with an example per call.
//!
//! Register the source in a binary, `axkit::Server::new()
//! .source(axkit_shared::SharedSource::new())` (the stock `axkit` command
//! does); its directives then apply in every config, global scope:
//!
//! - `SharedZone NAME SIZE` (repeatable): a zone of SIZE bytes (at least
//!   64K). NAME is 1 to 48 of `A-Z a-z 0-9 _ -`.
//! - The zone `default` ([`DEFAULT_ZONE`], what `shared.get` and
//!   [`Zone::default_zone`] use) exists in every config, at
//!   [`DEFAULT_ZONE_SIZE`] (4 MiB) unless `SharedZone default SIZE` says
//!   otherwise. A zone's memory is taken from the system as it fills, so
//!   an unused zone costs a few pages.
//! - `BroadcastBuffer SIZE` (default 1M, at least 64K): the ring the
//!   broadcast messages go through; a message may be up to a quarter of it.
//!
//! **Processes.** The zones are regions of shared memory that the master
//! creates before it starts the workers and hands to each of them (see
//! `axkit::plugin::SharedMemory`): a worker that crashes loses nothing,
//! its replacement maps the same memory; a reload (SIGHUP) keeps a zone
//! whose name and size are unchanged, with its contents (a zone whose size
//! changed starts empty).
//!
//! **Locking.** Each zone has one lock, a robust process-shared mutex in
//! the zone itself (`lock.rs`), held for a bounded time: no syscall, no
//! allocation and no caller code under it. A worker that dies holding it
//! does not wedge the others: the next one to take the lock rolls back
//! the dead worker's unfinished change from the zone's undo journal
//! (`mem.rs`) and goes on. The structures inside a zone (allocator, hash
//! table, LRU list) are in `alloc.rs` and `zone.rs`; the broadcast's
//! design, its futex and its per-worker thread, in `broadcast.rs`.

mod alloc;
mod broadcast;
mod lock;
mod mem;
mod value;
mod zone;

use std::fmt;
use std::rc::Rc;

use axkit::config::{parse, Args, Config, Directive, Key, List, Scopes};
use axkit::plugin::{InUse, PluginSource, SharedMemorySpec};
use axkit::{Plugin, PluginInit};

pub use broadcast::{
    broadcast, subscribe, wait, waiting, Subscription, Wait, DEFAULT_QUEUE, MAX_CHANNEL, MIN_BUFFER,
};
pub use value::{Number, Value, MAX_DEPTH};
pub use zone::{Entry, Options, Stats, Zone, MAX_EVICT, MAX_KEY, MIN_SIZE};

/// The zone used when none is named.
pub const DEFAULT_ZONE: &str = "default";

/// The default zone's size unless `SharedZone default SIZE` is written.
pub const DEFAULT_ZONE_SIZE: usize = 4 << 20;

/// What went wrong. Its text is what the Lua API returns as the error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No zone of this name is declared (`SharedZone NAME SIZE`), or the
    /// binary does not register [`SharedSource`].
    NoZone(String),
    /// The binary does not register [`SharedSource`].
    NoBroadcast,
    /// The region is not a zone of this version.
    NotAZone,
    EmptyKey,
    KeyTooLong,
    /// A table nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The value (with its key) is larger than the whole zone.
    TooBig,
    /// No room, even after evicting [`MAX_EVICT`] entries.
    NoMemory,
    /// `replace`, `cas`, `incr`…: the key has no value.
    NotFound,
    /// `add`: the key has a value.
    Exists,
    /// `cas`: the value (or version) is not the one expected.
    Changed,
    /// `incr` on a value that is not a number.
    NotANumber,
    /// `incr` past the range of a 64-bit integer.
    Overflow,
    /// A stored value that cannot be read back (a bug).
    Corrupt,
    /// The zone's lock cannot be taken (never, unless a bug).
    Broken,
    /// A channel name is 1 to [`MAX_CHANNEL`] bytes.
    BadChannel,
    /// A message is at most a quarter of `BroadcastBuffer`.
    MessageTooBig,
    /// The broadcast's thread could not start.
    Thread(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoZone(name) => write!(
                f,
                "no shared zone `{name}` (declare it with `SharedZone {name} SIZE`)"
            ),
            Error::NoBroadcast => f.write_str("no broadcast in this server"),
            Error::NotAZone => f.write_str("not a shared zone of this version"),
            Error::EmptyKey => f.write_str("empty key"),
            Error::KeyTooLong => write!(f, "key longer than {MAX_KEY} bytes"),
            Error::TooDeep => write!(f, "table nested deeper than {MAX_DEPTH}"),
            Error::TooBig => f.write_str("value too big for the zone"),
            Error::NoMemory => f.write_str("no memory"),
            Error::NotFound => f.write_str("not found"),
            Error::Exists => f.write_str("exists"),
            Error::Changed => f.write_str("changed"),
            Error::NotANumber => f.write_str("not a number"),
            Error::Overflow => f.write_str("integer overflow"),
            Error::Corrupt => f.write_str("corrupt value"),
            Error::Broken => f.write_str("zone lock unusable"),
            Error::BadChannel => write!(f, "a channel is 1 to {MAX_CHANNEL} bytes"),
            Error::MessageTooBig => f.write_str("message too big for BroadcastBuffer"),
            Error::Thread(e) => write!(f, "cannot start the broadcast thread: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn parse_zone(args: &[&str]) -> Result<(String, usize), String> {
    let [name, size] = args else {
        return Err("expected NAME SIZE".into());
    };
    let valid = (1..=48).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(format!("zone name {name:?}: 1 to 48 of A-Z a-z 0-9 _ -"));
    }
    let size = parse_size_at_least(size, MIN_SIZE)?;
    Ok((name.to_string(), size))
}

fn parse_size_at_least(text: &str, min: usize) -> Result<usize, String> {
    let size = parse::size(text)?;
    // At most 32 GiB: a zone's offsets are 32-bit counts of 16 bytes.
    match usize::try_from(size) {
        Ok(n) if n < min => Err(format!("{text}: at least {}K", min >> 10)),
        Ok(n) if n <= 32 << 30 => Ok(n),
        _ => Err(format!("{text}: at most 32G")),
    }
}

static SHARED_ZONE: List<(String, usize)> = List::parsed("SharedZone", parse_zone)
    .args(Args::Range(2, 2))
    .scopes(Scopes::GLOBAL)
    .doc(
        "A dictionary zone shared by every worker: SharedZone NAME SIZE \
         (the zone `default` exists at 4M unless declared)",
    );

static BROADCAST_BUFFER: Key<usize> = Key::parsed("BroadcastBuffer", |args| match args {
    [size] => parse_size_at_least(size, MIN_BUFFER),
    _ => Err("expected a size".into()),
})
.scopes(Scopes::GLOBAL)
.default("1M")
.doc("The ring broadcast messages go through (a message is at most a quarter of it)");

/// Whether `config` has a zone `name` (declared by `SharedZone`, or the
/// default zone, which always exists): for a plugin that is told a zone's
/// name in its own directives and checks it at load.
pub fn zone_declared(config: &Config, name: &str) -> bool {
    name == DEFAULT_ZONE
        || config
            .global
            .list(&SHARED_ZONE)
            .iter()
            .any(|(n, _)| n == name)
}

/// The source that declares `SharedZone` and `BroadcastBuffer` and asks
/// the master for the zones and the broadcast ring. It has no plugins:
/// every plugin, Rust or Lua, uses the zones through [`Zone`].
#[derive(Default)]
pub struct SharedSource;

impl SharedSource {
    pub fn new() -> SharedSource {
        SharedSource
    }
}

impl PluginSource for SharedSource {
    fn name(&self) -> &str {
        "shared"
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn directives(&self) -> Vec<Directive> {
        vec![SHARED_ZONE.declare(), BROADCAST_BUFFER.declare()]
    }

    fn shared_memory(&self, config: &Config) -> Vec<SharedMemorySpec> {
        let zones = config.global.list(&SHARED_ZONE);
        let mut specs: Vec<SharedMemorySpec> = zones
            .iter()
            .map(|(name, size)| Zone::spec(name, *size))
            .collect();
        if !zones.iter().any(|(name, _)| name == DEFAULT_ZONE) {
            specs.push(Zone::spec(DEFAULT_ZONE, DEFAULT_ZONE_SIZE));
        }
        specs.push(broadcast::spec(*config.global.get(&BROADCAST_BUFFER)));
        specs
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}
