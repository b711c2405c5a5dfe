//! The server's metrics: counters, latency histograms and gauges that every
//! worker process writes into one region of shared memory, without locks,
//! and that any process reads (the `stats` plugin's `/metrics` and status
//! page, the `console`).
//!
//! **Who asks for it.** The region exists when a plugin source asks for it
//! ([`spec`], from its [`PluginSource::shared_memory`](super::PluginSource::shared_memory):
//! the built-in `StatsSource` does when the config loads `stats` or
//! `console`). Without it the core counts nothing: a worker then pays one
//! branch per connection and two per request.
//!
//! **Slots.** The region holds one slot per worker process. A worker claims
//! a free slot when it starts (an atomic compare-and-swap on the slot's
//! owner: its pid and its start time, so that a pid the kernel has given
//! to another process since is not taken for the worker; a slot whose
//! owner has exited is free) and is the only
//! writer of that slot for its life, so every counter is a plain relaxed
//! load and store: no lock, no atomic read-modify-write, no shared cache
//! line between workers. The reader sums the slots. The counts of a worker
//! that exits stay in its slot, and the next worker to claim that slot (a
//! worker restarted after a crash prefers the slot of the one it replaces)
//! carries on from them, so a sum never goes down while the master lives.
//! Gauges (connections by state, CGI processes, Lua memory) are summed over
//! the slots whose owner is alive, and reset when a slot is claimed.
//!
//! **Labels.** What the counters are about (a `<Server>` and `<Location>`,
//! a plugin, a gauge's name) is a table of labels in the region, appended
//! to when a worker starts (by reserving an index atomically), never per
//! request: each worker resolves its Locations and plugins to label indexes
//! once, and a request then bumps counters at fixed offsets: no allocation,
//! no hashing, no lookup. Two workers racing to add the same label may both
//! add it; the reader merges labels that are equal. When the table is full,
//! new Locations count under `other`.
//!
//! **Reloads.** The region's name and size do not depend on the config
//! (only on `Workers`, rounded up generously), so a reload keeps it: the
//! new generation's workers claim slots (the old ones' while they drain
//! are still owned), add the labels they need, and every counter goes on
//! from where it was. Changing `Workers` beyond the slot count the region
//! was made for (64, or 4 × `Workers` rounded up to a power of two) makes
//! a new region, and counting starts again from zero, as after a restart.
//!
//! Everything here is laid out in 64-bit words at fixed offsets (each
//! process maps the region at its own address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::log::Level;
use super::{SharedMemory, SharedMemorySpec};
use crate::config::{core, Config};

/// The region's name.
pub const REGION: &str = "axkit:metrics:v1";

const MAGIC: u64 = u64::from_le_bytes(*b"AXKMET01");
const HEADER_SIZE: usize = 4096;
/// Header words.
const H_MAGIC: usize = 0;
const H_SLOTS: usize = 1;
const H_NEXT_LABEL: usize = 2;
const H_LOG_LEVEL: usize = 3;

/// How many labels the region holds.
const LABELS: usize = 512;
const LABEL_SIZE: usize = 256;
/// A label's text: its first part (a server, a plugin, a gauge's name) and
/// its second (a Location's prefix, a gauge's help), each cut to its limit.
const LABEL_TEXT: usize = LABEL_SIZE - 8;
const LABEL_A: usize = 96;

/// Counters per label, in a slot (see `C_*`).
const COUNTERS: usize = 22;
/// The latency buckets' upper bounds, in microseconds (Prometheus's `le`,
/// in seconds: 0.0005 … 10), and `+Inf` after them.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
/// Buckets, with `+Inf`.
pub const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;
/// A series' counters: responses by status class (1xx…5xx), then latency
/// buckets, the latency sum in µs and body bytes sent.
const C_STATUS: usize = 0;
const C_BUCKETS: usize = 5;
const C_LATENCY_SUM: usize = C_BUCKETS + BUCKETS;
const C_BYTES: usize = C_LATENCY_SUM + 1;
const _: () = assert!(C_BYTES + 1 == COUNTERS);

/// Connection table entries per slot: the connections a console lists
/// (the state gauges count every connection, listed or not).
const CONNS: usize = 128;
const CONN_WORDS: usize = 24;
const LINE_WORDS: usize = 15;
/// Connection entry words.
const E_SEQ: usize = 0;
const E_STATE: usize = 1;
const E_ID: usize = 2;
const E_SINCE: usize = 3;
const E_PEER: usize = 4; // 3 words: address, port, family
const E_REQUEST_SINCE: usize = 7;
const E_LINE_LEN: usize = 8;
const E_LINE: usize = 9;
const _: () = assert!(E_LINE + LINE_WORDS == CONN_WORDS);

/// Slot header words.
/// The owner: [`Owner`] as one word, so that a claim is one
/// compare-and-swap.
const S_OWNER: usize = 0;
const S_GENERATION: usize = 1;
const S_PLACE: usize = 2;
const S_STARTED: usize = 3;
const S_RESTARTS: usize = 4;
const S_ACCEPTED: usize = 5;
const S_STATES: usize = 6; // ConnState::COUNT words
const SLOT_HEADER_WORDS: usize = 16;
const SLOT_WORDS: usize = SLOT_HEADER_WORDS + LABELS * COUNTERS + CONNS * CONN_WORDS;

/// Label kinds.
const K_SERIES: u64 = 1;
const K_PLUGIN: u64 = 2;
const K_GAUGE: u64 = 3;

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Accepted, its first request head not read yet.
    Reading = 0,
    /// A request is being handled or its response written.
    Handler = 1,
    /// Keep-alive, between two requests (reading the next head included).
    Idle = 2,
    /// A handler waits for an event to send (a long poll, an event
    /// stream): see `Context::set_waiting`.
    Waiting = 3,
}

impl ConnState {
    pub const COUNT: usize = 4;
    pub const ALL: [ConnState; 4] = [
        ConnState::Reading,
        ConnState::Handler,
        ConnState::Idle,
        ConnState::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Reading => "reading",
            ConnState::Handler => "handler",
            ConnState::Idle => "idle",
            ConnState::Waiting => "waiting",
        }
    }

    fn from_word(w: u64) -> Option<ConnState> {
        ConnState::ALL
            .get(usize::try_from(w.checked_sub(1)?).ok()?)
            .copied()
    }
}

/// The region `config` needs: give it from a source's `shared_memory`.
pub fn spec(config: &Config) -> SharedMemorySpec {
    let workers = match *config.global.get(&core::WORKERS) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // Room for a reload's two generations side by side and then some;
    // rounded so that changing `Workers` rarely changes the size (a new
    // size is a new region, counting from zero).
    let slots = (workers * 4).next_power_of_two().max(64);
    SharedMemorySpec {
        name: REGION.into(),
        size: HEADER_SIZE + LABELS * LABEL_SIZE + slots * SLOT_WORDS * 8,
        init,
    }
}

fn init(region: &mut [u8]) {
    let slots = (region.len() - HEADER_SIZE - LABELS * LABEL_SIZE) / (SLOT_WORDS * 8);
    region[H_SLOTS * 8..H_SLOTS * 8 + 8].copy_from_slice(&(slots as u64).to_ne_bytes());
    region[H_MAGIC * 8..H_MAGIC * 8 + 8].copy_from_slice(&MAGIC.to_ne_bytes());
}

/// The mapped region, checked.
#[derive(Clone, Copy)]
pub(crate) struct Region {
    base: *mut u8,
    slots: usize,
}

// SAFETY: the region is mapped for the life of the process and only ever
// accessed through atomics.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Region {
    fn get() -> Option<Region> {
        let mem = SharedMemory::get(REGION)?;
        let region = Region {
            base: mem.as_ptr(),
            slots: 0,
        };
        if region.header(H_MAGIC).load(Ordering::Acquire) != MAGIC {
            return None;
        }
        let slots = usize::try_from(region.header(H_SLOTS).load(Ordering::Relaxed)).ok()?;
        (HEADER_SIZE + LABELS * LABEL_SIZE + slots * SLOT_WORDS * 8 <= mem.len())
            .then_some(Region { slots, ..region })
    }

    fn word(&self, offset: usize) -> &'static AtomicU64 {
        // SAFETY: every offset used is within the mapped region (checked
        // against its length in `get`) and 8-aligned (the mapping is page
        // aligned); the mapping lives as long as the process.
        unsafe { &*(self.base.add(offset) as *const AtomicU64) }
    }

    fn header(&self, w: usize) -> &'static AtomicU64 {
        self.word(w * 8)
    }

    fn label_meta(&self, i: usize) -> &'static AtomicU64 {
        self.word(HEADER_SIZE + i * LABEL_SIZE)
    }

    /// The text of label `i` (published: its meta word was read with
    /// Acquire and is not zero).
    fn label_text(&self, i: usize, len: usize) -> &'static [u8] {
        // SAFETY: written once before its meta word was published
        // (Release), never after; within the label's bytes.
        unsafe { std::slice::from_raw_parts(self.base.add(HEADER_SIZE + i * LABEL_SIZE + 8), len) }
    }

    fn slot_word(&self, slot: usize, w: usize) -> &'static AtomicU64 {
        self.word(HEADER_SIZE + LABELS * LABEL_SIZE + (slot * SLOT_WORDS + w) * 8)
    }

    fn counter(&self, slot: usize, label: usize, c: usize) -> &'static AtomicU64 {
        self.slot_word(slot, SLOT_HEADER_WORDS + label * COUNTERS + c)
    }

    fn conn_word(&self, slot: usize, entry: usize, w: usize) -> &'static AtomicU64 {
        self.slot_word(
            slot,
            SLOT_HEADER_WORDS + LABELS * COUNTERS + entry * CONN_WORDS + w,
        )
    }

    /// Every published label: (index, kind, first part, second part).
    fn labels(&self) -> impl Iterator<Item = (usize, u64, &'static [u8], &'static [u8])> + '_ {
        let count = usize::try_from(self.header(H_NEXT_LABEL).load(Ordering::Acquire))
            .unwrap_or(LABELS)
            .min(LABELS);
        (0..count).filter_map(|i| {
            let meta = self.label_meta(i).load(Ordering::Acquire);
            if meta == 0 {
                return None;
            }
            let kind = meta & 0xff;
            let a = ((meta >> 8) & 0xffff) as usize;
            let b = ((meta >> 24) & 0xffff) as usize;
            let text = self.label_text(i, (a + b).min(LABEL_TEXT));
            Some((i, kind, &text[..a], &text[a..]))
        })
    }

    /// The index of label (`kind`, `a`, `b`), added if it is not there;
    /// None when the table is full.
    fn label(&self, kind: u64, a: &str, b: &str) -> Option<usize> {
        let a = cut(a.as_bytes(), LABEL_A);
        let b = cut(b.as_bytes(), LABEL_TEXT - a.len());
        if let Some((i, ..)) = self
            .labels()
            .find(|&(_, k, la, lb)| k == kind && la == a && lb == b)
        {
            return Some(i);
        }
        let i = usize::try_from(self.header(H_NEXT_LABEL).fetch_add(1, Ordering::AcqRel)).ok()?;
        if i >= LABELS {
            return None;
        }
        // SAFETY: index `i` was reserved for us alone; nobody reads its
        // text before the meta word below is published.
        unsafe {
            let text = self.base.add(HEADER_SIZE + i * LABEL_SIZE + 8);
            std::ptr::copy_nonoverlapping(a.as_ptr(), text, a.len());
            std::ptr::copy_nonoverlapping(b.as_ptr(), text.add(a.len()), b.len());
        }
        let meta = kind | (a.len() as u64) << 8 | (b.len() as u64) << 24;
        self.label_meta(i).store(meta, Ordering::Release);
        Some(i)
    }

    /// The pid of the worker that owns `slot`, if it runs.
    fn owner_alive(&self, slot: usize) -> Option<u32> {
        let owner = Owner::from_word(self.slot_word(slot, S_OWNER).load(Ordering::Acquire))?;
        owner.alive().then_some(owner.pid)
    }
}

/// At most `max` bytes of `text`, not cutting a UTF-8 sequence.
fn cut(text: &[u8], max: usize) -> &[u8] {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && (text[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    &text[..end]
}

/// A slot's owner: a process named by its pid and its start time, which
/// together are never reused (a pid alone is, once its process is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    pid: u32,
    /// Clock ticks after boot (`/proc/PID/stat`'s `starttime`); 0 if it
    /// could not be read.
    start: u64,
}

/// Pids stay below 2^22 (the kernel's `PID_MAX_LIMIT`), which leaves the
/// owner word 42 bits of start time: 1,394 years of 100 Hz ticks.
const PID_BITS: u32 = 22;

impl Owner {
    /// This process.
    fn me() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    fn word(self) -> u64 {
        u64::from(self.pid) | self.start << PID_BITS
    }

    /// None for a slot never claimed.
    fn from_word(word: u64) -> Option<Owner> {
        let pid = (word & ((1 << PID_BITS) - 1)) as u32;
        (pid != 0).then_some(Owner {
            pid,
            start: word >> PID_BITS,
        })
    }

    /// Whether the owner still runs: a process with its pid that started
    /// when it did. Where the start cannot be read (a `/proc` that hides
    /// other users' processes), whether any process has the pid.
    fn alive(self) -> bool {
        match process_start(self.pid) {
            Some(start) => self.start == 0 || start == self.start,
            None => {
                let Ok(pid) = i32::try_from(self.pid) else {
                    return false;
                };
                // SAFETY: kill with signal 0 only checks that the process exists.
                let r = unsafe { libc::kill(pid, 0) };
                r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
            }
        }
    }
}

/// When process `pid` started, in clock ticks after boot: field 22 of
/// `/proc/PID/stat`. The command name before it (field 2, in parentheses)
/// may hold spaces and parentheses, so the fields are counted from the
/// last `)`.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.iter().rposition(|&b| b == b')')? + 1;
    std::str::from_utf8(&stat[after_name..])
        .ok()?
        .split_ascii_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// Add `n` to a counter only this process writes.
#[inline]
fn bump(word: &AtomicU64, n: u64) {
    word.store(
        word.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Milliseconds since the epoch.
fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This process's slot: what a worker writes its counts into.
pub(crate) struct Slot {
    region: Region,
    index: usize,
    generation: u64,
    /// Label of each plugin of the config (by its index in
    /// `Config::plugins`), then of `core` (requests no plugin answered).
    plugins: Vec<u32>,
    /// `other`: a Location the label table had no room for.
    other_series: u32,
    /// Connection table entries not in use (a lock taken per connection,
    /// by this process only: the slot must be `Sync` to be found from a
    /// plugin's [`Gauge::register`]).
    free: std::sync::Mutex<Vec<u16>>,
}

/// The slot this process claimed, for [`Gauge::register`] and
/// `Worker::set_log_level`.
static SLOT: OnceLock<&'static Slot> = OnceLock::new();

impl Slot {
    /// Claim a slot for this worker (`generation`, `place`) and resolve the
    /// labels of `config`'s plugins. None without the region, or when every
    /// slot is taken (said on stderr).
    pub(crate) fn claim(
        config: &Config,
        generation: u64,
        place: usize,
        respawned: bool,
    ) -> Option<&'static Slot> {
        let region = Region::get()?;
        let me = Owner::me().word();
        let owner = |s| region.slot_word(s, S_OWNER);
        let free = |s| region.owner_alive(s).is_none();
        // The slot of the worker this one replaces, else any free one.
        let same = |s| {
            region.slot_word(s, S_GENERATION).load(Ordering::Relaxed) == generation
                && region.slot_word(s, S_PLACE).load(Ordering::Relaxed) == place as u64
        };
        let candidates = (0..region.slots)
            .filter(|&s| free(s) && same(s))
            .chain((0..region.slots).filter(|&s| free(s)));
        let mut index = None;
        for s in candidates {
            let was = owner(s).load(Ordering::Acquire);
            if was == me
                || (region.owner_alive(s).is_none()
                    && owner(s)
                        .compare_exchange(was, me, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok())
            {
                index = Some(s);
                break;
            }
        }
        let Some(index) = index else {
            super::log_to_stderr(
                Level::Warn,
                &format!(
                    "metrics: all {} worker slots are in use; this worker counts nothing",
                    region.slots
                ),
            );
            return None;
        };
        let word = |w| region.slot_word(index, w);
        word(S_GENERATION).store(generation, Ordering::Relaxed);
        word(S_PLACE).store(place as u64, Ordering::Relaxed);
        word(S_STARTED).store(
            unix_ms(std::time::SystemTime::now()) / 1000,
            Ordering::Relaxed,
        );
        if respawned {
            bump(word(S_RESTARTS), 1);
        }
        // The gauges of the worker that had the slot are not ours.
        for state in ConnState::ALL {
            word(S_STATES + state as usize).store(0, Ordering::Relaxed);
        }
        for e in 0..CONNS {
            region
                .conn_word(index, e, E_STATE)
                .store(0, Ordering::Relaxed);
        }
        for (i, kind, ..) in region.labels() {
            if kind == K_GAUGE {
                region.counter(index, i, 0).store(0, Ordering::Relaxed);
            }
        }
        let other_plugin = region.label(K_PLUGIN, "other", "")?;
        let mut plugins: Vec<u32> = config
            .plugins
            .iter()
            .map(|p| region.label(K_PLUGIN, p, "").unwrap_or(other_plugin) as u32)
            .collect();
        plugins.push(region.label(K_PLUGIN, "core", "")? as u32);
        let other_series = region.label(K_SERIES, "other", "other")? as u32;
        let slot: &'static Slot = Box::leak(Box::new(Slot {
            region,
            index,
            generation,
            plugins,
            other_series,
            free: std::sync::Mutex::new((0..CONNS as u16).rev().collect()),
        }));
        let _ = SLOT.set(slot);
        Some(slot)
    }

    /// The label of the series (`server`, `location`).
    pub(crate) fn series(&self, server: &str, location: &str) -> u32 {
        self.region
            .label(K_SERIES, server, location)
            .map_or(self.other_series, |i| i as u32)
    }

    fn word(&self, w: usize) -> &'static AtomicU64 {
        self.region.slot_word(self.index, w)
    }

    /// A response went out: `series` (see [`series`](Self::series)),
    /// `status`, the time since its head was read, body bytes sent, and
    /// which plugin answered (an index of `Config::plugins` plus one; 0
    /// for the core).
    #[inline]
    pub(crate) fn count(&self, series: u32, status: u16, micros: u64, bytes: u64, answered: u16) {
        let c = |n| self.region.counter(self.index, series as usize, n);
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        bump(c(C_STATUS + class), 1);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&le| micros <= le)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        bump(c(C_BUCKETS + bucket), 1);
        bump(c(C_LATENCY_SUM), micros);
        bump(c(C_BYTES), bytes);
        let plugin = match answered {
            0 => self.plugins.last(),
            n => self.plugins.get(usize::from(n) - 1),
        };
        if let Some(&label) = plugin {
            bump(self.region.counter(self.index, label as usize, 0), 1);
        }
    }

    /// A connection was accepted: its entry in the table (if one is free)
    /// and the `reading` gauge.
    pub(crate) fn open(&self, id: u64, peer: SocketAddr) -> u16 {
        bump(self.word(S_ACCEPTED), 1);
        bump(self.word(S_STATES + ConnState::Reading as usize), 1);
        let Some(entry) = self.free.lock().ok().and_then(|mut f| f.pop()) else {
            return u16::MAX;
        };
        let e = |w| self.region.conn_word(self.index, usize::from(entry), w);
        let seq = e(E_SEQ).load(Ordering::Relaxed);
        e(E_SEQ).store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let (addr, family) = match peer.ip() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 4),
            IpAddr::V6(v6) => (u128::from(v6), 6),
        };
        e(E_ID).store(id, Ordering::Relaxed);
        e(E_SINCE).store(unix_ms(std::time::SystemTime::now()), Ordering::Relaxed);
        e(E_PEER).store(addr as u64, Ordering::Relaxed);
        e(E_PEER + 1).store((addr >> 64) as u64, Ordering::Relaxed);
        e(E_PEER + 2).store(u64::from(peer.port()) | family << 16, Ordering::Relaxed);
        e(E_LINE_LEN).store(0, Ordering::Relaxed);
        e(E_STATE).store(ConnState::Reading as u64 + 1, Ordering::Relaxed);
        e(E_SEQ).store(seq + 2, Ordering::Release);
        entry
    }

    /// Connection `entry` went from state `from` to `to`.
    #[inline]
    pub(crate) fn set_state(&self, entry: u16, from: ConnState, to: ConnState) {
        let gauge = |s: ConnState| self.word(S_STATES + s as usize);
        bump(gauge(from), u64::MAX);
        bump(gauge(to), 1);
        if usize::from(entry) < CONNS {
            self.region
                .conn_word(self.index, usize::from(entry), E_STATE)
                .store(to as u64 + 1, Ordering::Relaxed);
        }
    }

    /// Connection `entry` began handling the request `line`, read at
    /// `started` (it was in state `from`).
    #[inline]
    pub(crate) fn request(
        &self,
        entry: u16,
        from: ConnState,
        line: &[u8],
        started: std::time::SystemTime,
    ) {
        self.set_state(entry, from, ConnState::Handler);
        if usize::from(entry) >= CONNS {
            return;
        }
        let e = |w| self.region.conn_word(self.index, usize::from(entry), w);
        let seq = e(E_SEQ).load(Ordering::Relaxed);
        e(E_SEQ).store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let line = &line[..line.len().min(LINE_WORDS * 8)];
        for (i, chunk) in line.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            e(E_LINE + i).store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        e(E_LINE_LEN).store(line.len() as u64, Ordering::Relaxed);
        e(E_REQUEST_SINCE).store(unix_ms(started), Ordering::Relaxed);
        e(E_SEQ).store(seq + 2, Ordering::Release);
    }

    /// Connection `entry`, in state `state`, closed.
    pub(crate) fn close(&self, entry: u16, state: ConnState) {
        bump(self.word(S_STATES + state as usize), u64::MAX);
        if usize::from(entry) < CONNS {
            self.region
                .conn_word(self.index, usize::from(entry), E_STATE)
                .store(0, Ordering::Relaxed);
            if let Ok(mut free) = self.free.lock() {
                free.push(entry);
            }
        }
    }

    /// The `LogLevel` set for every worker at run time, if any applies to
    /// this worker's generation.
    pub(crate) fn log_level(&self) -> Option<Level> {
        let word = self.region.header(H_LOG_LEVEL).load(Ordering::Relaxed);
        let (generation, level) = (word >> 8, (word & 0xff) as usize);
        if level == 0 || generation < self.generation {
            return None;
        }
        ALL_LEVELS.get(level - 1).copied()
    }
}

const ALL_LEVELS: [Level; 8] = [
    Level::Emerg,
    Level::Alert,
    Level::Crit,
    Level::Error,
    Level::Warn,
    Level::Notice,
    Level::Info,
    Level::Debug,
];

/// Set `LogLevel` for every worker of generation `generation` and older
/// (a reload's new workers go by their config). Err without the region.
pub(crate) fn set_log_level(generation: u64, level: Level) -> Result<(), String> {
    let region = Region::get()
        .ok_or("the metrics region is not in use (load the `stats` or `console` plugin)")?;
    let index = ALL_LEVELS.iter().position(|&l| l == level).unwrap_or(0) as u64 + 1;
    region
        .header(H_LOG_LEVEL)
        .store(generation << 8 | index, Ordering::Relaxed);
    Ok(())
}

/// A gauge every worker sets for itself (CGI processes running, a script
/// host's memory): the reader sums it over the running workers. Register
/// it when a plugin is built or starts; without the metrics region (no
/// `stats` or `console` plugin loaded), it does nothing.
#[derive(Clone, Copy, Debug)]
pub struct Gauge(Option<&'static AtomicU64>);

impl Gauge {
    /// The gauge `name` (a Prometheus metric name, `axkit_` and the
    /// plugin's prefix first: `axkit_cgi_processes`), with its help text.
    /// Registering the same name again gives the same gauge.
    pub fn register(name: &str, help: &str) -> Gauge {
        let Some(slot) = SLOT.get() else {
            return Gauge(None);
        };
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            return Gauge(None);
        }
        let label = slot.region.label(K_GAUGE, name, help);
        Gauge(label.map(|i| slot.region.counter(slot.index, i, 0)))
    }

    pub fn set(&self, value: i64) {
        if let Some(word) = self.0 {
            word.store(value as u64, Ordering::Relaxed);
        }
    }

    pub fn add(&self, delta: i64) {
        if let Some(word) = self.0 {
            bump(word, delta as u64);
        }
    }
}

/// One `<Server>` and `<Location>`'s counts, summed over the workers.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub server: String,
    /// The Location's prefix (`/` for the Server itself).
    pub location: String,
    /// Responses by status class: `[0]` 1xx … `[4]` 5xx.
    pub status: [u64; 5],
    /// Responses per latency bucket (not cumulative): `buckets[i]` took at
    /// most `LATENCY_BUCKETS_US[i]` µs and more than the bucket before;
    /// the last one, more than all.
    pub buckets: [u64; BUCKETS],
    pub latency_sum_us: u64,
    /// Response body bytes sent.
    pub bytes: u64,
}

impl Series {
    pub fn requests(&self) -> u64 {
        self.status.iter().sum()
    }
}

/// One worker process (a slot of the region).
#[derive(Clone, Debug)]
pub struct WorkerLoad {
    pub pid: u32,
    pub generation: u64,
    /// Its place in the generation (`Worker::index`).
    pub index: usize,
    /// When it started, in seconds since the epoch.
    pub started: u64,
    /// Its open connections (0 once it has exited).
    pub connections: u64,
    /// Requests answered in this slot (by it and the workers before it).
    pub requests: u64,
    pub alive: bool,
}

/// A gauge's name, help and value summed over the running workers.
#[derive(Clone, Debug)]
pub struct GaugeValue {
    pub name: String,
    pub help: String,
    pub value: i64,
}

/// Everything counted, summed over the workers.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub series: Vec<Series>,
    /// Responses by the plugin that answered (`core`: none did, a 404 or a
    /// request refused before any hook; `other`: a plugin the label table
    /// had no room for).
    pub plugins: Vec<(String, u64)>,
    pub gauges: Vec<GaugeValue>,
    /// Open connections by state ([`ConnState`] order).
    pub connections: [u64; ConnState::COUNT],
    /// Connections accepted.
    pub accepted: u64,
    /// Worker processes the master started to replace one that died.
    pub restarts: u64,
    /// The newest configuration generation any worker ran (1 at start,
    /// one more per successful reload).
    pub generation: u64,
    /// Every slot that has had a worker, running or not.
    pub workers: Vec<WorkerLoad>,
}

/// Read every slot and sum: None when this process has no metrics region.
pub fn snapshot() -> Option<Snapshot> {
    let region = Region::get()?;
    let mut out = Snapshot::default();
    let labels: Vec<_> = region.labels().collect();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for slot in 0..region.slots {
        let word = |w| region.slot_word(slot, w).load(Ordering::Relaxed);
        let owner = region.slot_word(slot, S_OWNER).load(Ordering::Acquire);
        let Some(owner) = Owner::from_word(owner) else {
            continue;
        };
        let alive = owner.alive();
        let mut requests = 0;
        for &(i, kind, a, b) in &labels {
            let c = |n| region.counter(slot, i, n).load(Ordering::Relaxed);
            match kind {
                K_SERIES => {
                    let series = match out
                        .series
                        .iter_mut()
                        .find(|s| s.server.as_bytes() == a && s.location.as_bytes() == b)
                    {
                        Some(s) => s,
                        None => {
                            out.series.push(Series {
                                server: text(a),
                                location: text(b),
                                ..Series::default()
                            });
                            out.series.last_mut().expect("pushed")
                        }
                    };
                    for n in 0..5 {
                        series.status[n] += c(C_STATUS + n);
                        requests += c(C_STATUS + n);
                    }
                    for n in 0..BUCKETS {
                        series.buckets[n] += c(C_BUCKETS + n);
                    }
                    series.latency_sum_us += c(C_LATENCY_SUM);
                    series.bytes += c(C_BYTES);
                }
                K_PLUGIN => match out.plugins.iter_mut().find(|(n, _)| n.as_bytes() == a) {
                    Some((_, count)) => *count += c(0),
                    None => out.plugins.push((text(a), c(0))),
                },
                K_GAUGE => {
                    let value = if alive { c(0) as i64 } else { 0 };
                    match out.gauges.iter_mut().find(|g| g.name.as_bytes() == a) {
                        Some(g) => g.value += value,
                        None => out.gauges.push(GaugeValue {
                            name: text(a),
                            help: text(b),
                            value,
                        }),
                    }
                }
                _ => {}
            }
        }
        let mut connections = 0;
        if alive {
            for state in ConnState::ALL {
                let n = word(S_STATES + state as usize) as i64;
                out.connections[state as usize] += n.max(0) as u64;
                connections += n.max(0) as u64;
            }
        }
        out.accepted += word(S_ACCEPTED);
        out.restarts += word(S_RESTARTS);
        out.generation = out.generation.max(word(S_GENERATION));
        out.workers.push(WorkerLoad {
            pid: owner.pid,
            generation: word(S_GENERATION),
            index: word(S_PLACE) as usize,
            started: word(S_STARTED),
            connections,
            requests,
            alive,
        });
    }
    Some(out)
}

/// One connection of a running worker, as the connection table has it.
#[derive(Clone, Debug)]
pub struct Connection {
    /// The worker's pid.
    pub pid: u32,
    /// The connection's number in its worker (`ConnInfo::id`).
    pub id: u64,
    pub peer: SocketAddr,
    pub state: ConnState,
    /// When it was accepted, in ms since the epoch.
    pub since_ms: u64,
    /// Its latest request line, as sent (any bytes: escape it), cut to
    /// 120 bytes; empty before the first.
    pub request_line: Vec<u8>,
    /// When that request's head was read, in ms since the epoch.
    pub request_since_ms: u64,
}

/// The open connections of every running worker (at most 128 each are
/// listed): None when this process has no metrics region.
pub fn connections() -> Option<Vec<Connection>> {
    let region = Region::get()?;
    let mut out = Vec::new();
    for slot in 0..region.slots {
        let Some(pid) = region.owner_alive(slot) else {
            continue;
        };
        for entry in 0..CONNS {
            let e = |w| region.conn_word(slot, entry, w);
            // A torn read (the worker wrote meanwhile) is read again.
            for _ in 0..4 {
                let seq = e(E_SEQ).load(Ordering::Acquire);
                if seq % 2 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let Some(state) = ConnState::from_word(e(E_STATE).load(Ordering::Relaxed)) else {
                    break;
                };
                let len = (e(E_LINE_LEN).load(Ordering::Relaxed) as usize).min(LINE_WORDS * 8);
                let mut line = Vec::with_capacity(len);
                for i in 0..len.div_ceil(8) {
                    line.extend_from_slice(&e(E_LINE + i).load(Ordering::Relaxed).to_ne_bytes());
                }
                line.truncate(len);
                let lo = e(E_PEER).load(Ordering::Relaxed);
                let hi = e(E_PEER + 1).load(Ordering::Relaxed);
                let rest = e(E_PEER + 2).load(Ordering::Relaxed);
                let addr = u128::from(lo) | u128::from(hi) << 64;
                let ip = match rest >> 16 {
                    4 => IpAddr::V4(Ipv4Addr::from(addr as u32)),
                    _ => IpAddr::V6(Ipv6Addr::from(addr)),
                };
                let conn = Connection {
                    pid,
                    id: e(E_ID).load(Ordering::Relaxed),
                    peer: SocketAddr::new(ip, (rest & 0xffff) as u16),
                    state,
                    since_ms: e(E_SINCE).load(Ordering::Relaxed),
                    request_line: line,
                    request_since_ms: e(E_REQUEST_SINCE).load(Ordering::Relaxed),
                };
                fence(Ordering::Acquire);
                if e(E_SEQ).load(Ordering::Relaxed) == seq {
                    out.push(conn);
                    break;
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_fits_its_spec() {
        let size = HEADER_SIZE + LABELS * LABEL_SIZE + 64 * SLOT_WORDS * 8;
        let mut region = vec![0u8; size.next_multiple_of(4096)];
        init(&mut region);
        assert_eq!(u64::from_ne_bytes(region[8..16].try_into().unwrap()), 64);
    }

    #[test]
    fn an_owner_is_its_pid_and_start_time() {
        let me = Owner::me();
        assert!(me.start > 0, "no start time read for this process");
        assert_eq!(Owner::from_word(me.word()), Some(me));
        assert_eq!(Owner::from_word(0), None);
        assert!(me.alive());
        // The same pid with another start time: the pid reused by another
        // process since the owner exited.
        assert!(!Owner {
            start: me.start + 1,
            ..me
        }
        .alive());
        // A process that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = Owner {
            pid: child.id(),
            start: process_start(child.id()).unwrap_or(1),
        };
        child.wait().unwrap();
        assert!(!gone.alive());
    }

    #[test]
    fn a_start_time_is_read_past_any_command_name() {
        // A command name with the characters that would throw a reader
        // splitting /proc/PID/stat at its first `)` onto other fields.
        let dir = std::env::temp_dir().join(format!("axkit-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join(") R 1 2 3 4 (");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
        let mut child = std::process::Command::new(&link).arg("30").spawn().unwrap();
        let theirs = process_start(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mine = Owner::me().start;
        let theirs = theirs.expect("no start time read for the child");
        // The child started after this process, and within the hour (in
        // clock ticks of at most 1000 Hz).
        assert!(
            theirs >= mine && theirs - mine < 3_600_000,
            "{mine} {theirs}"
        );
    }

    #[test]
    fn labels_are_cut_on_character_boundaries() {
        assert_eq!(cut("aé".as_bytes(), 2), b"a");
        assert_eq!(cut(b"abc", 5), b"abc");
    }
}
