//! Broadcast: a message sent on a channel by any worker wakes every task
//! waiting on that channel in every worker, with the message (long-poll,
//! server-sent events).
//!
//! **How a wake-up crosses processes.** The messages go into a ring in a
//! region of shared memory (`BroadcastBuffer`, default 1 MiB), written
//! under the region's robust lock; the sender then bumps a 32-bit "bell"
//! word in the region and wakes it as a shared futex (`FUTEX_WAKE`, after
//! the lock is released). In each worker that has waiters, one thread
//! sleeps on that futex; woken, it copies the new messages out of the ring
//! and hands them to the worker's event loop over a channel, where a task
//! wakes exactly the waiters of each message's channel. Waiting costs
//! nothing: no polling anywhere, the thread sleeps in the kernel until a
//! message comes, and a waiter is an entry in a map until then. Waking
//! 10,000 waiters is one pass over them on the event loop.
//!
//! The alternatives: an eventfd or socket per worker written by the
//! sender needs every worker's descriptor in every other (workers are
//! started at different times, so they would have to be passed around
//! through the master), and routing messages through the master adds a
//! hop and makes the master part of the request path. A futex in the
//! shared region needs neither: senders and receivers only share memory.
//!
//! **What a waiter gets.** [`wait`] returns a future that resolves to the
//! first message sent on its channel after `wait` was called (each message
//! carries a sequence number, and a waiter records the next one when it
//! starts). The ring keeps the most recent messages that fit; a worker so
//! slow to read that the ring went round loses the oldest it had not read.
//! The hand-off to an event loop holds at most a ring's worth of bytes too
//! (an event loop busy in a script does not take them meanwhile): past it
//! the thread drops messages for that loop rather than queue them without
//! bound. Either loss is counted in the `dropped()` of every subscription
//! of the worker (the worker cannot tell on which channels the lost
//! messages were) and said in its log, at most every 10 s with the count.
//! Messages sent while a worker is starting or restarting are not
//! delivered to it: it has no waiters yet.
//!
//! A loop of waits misses what is sent between one wait's end and the
//! next one's start (while the waiter writes out the message it got, say).
//! A [`Subscription`] stays in the table instead and queues what comes
//! between two reads, up to its capacity (then it drops the oldest and
//! counts them): what server-sent event streams use.
//!
//! A sender that dies while writing leaves the ring as it was: the record
//! becomes visible only when the write position moves past it, which is
//! the last store.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axkit::plugin::{SharedMemory, SharedMemorySpec};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::lock::{Lock, Taken, LOCK_SIZE};
use crate::mem::Mem;
use crate::Error;

/// The region's name.
pub(crate) const REGION: &str = "shared.broadcast";

/// The smallest `BroadcastBuffer`.
pub const MIN_BUFFER: usize = 64 << 10;

/// The longest channel name.
pub const MAX_CHANNEL: usize = 255;

const MAGIC: u64 = u64::from_le_bytes(*b"AXBCST01");

const H_MAGIC: usize = 0;
const H_SIZE: usize = 8;
const H_RING: usize = 16;
const H_RING_SIZE: usize = 24;
const H_NEXT_SEQ: usize = 32;
const H_WRITE_POS: usize = 40;
const H_OLDEST_POS: usize = 48;
const H_BELL: usize = 56;
const H_LOCK: usize = 64;
const RING: usize = H_LOCK + LOCK_SIZE;

// A record: its length (padded to 8), the channel's and the message's
// lengths, its sequence number, then the channel and the message. A
// padding record (channel length PADDING) fills the ring's end when the
// next record does not fit there; it may be only 8 bytes.
const R_LEN: usize = 0;
const R_CHANNEL_LEN: usize = 4;
const R_MESSAGE_LEN: usize = 8;
const R_SEQ: usize = 16;
const R_DATA: usize = 24;
const PADDING: u32 = u32::MAX;

/// What the master creates for a `BroadcastBuffer` of `size` bytes.
pub(crate) fn spec(size: usize) -> SharedMemorySpec {
    SharedMemorySpec {
        name: REGION.to_string(),
        size: size.max(MIN_BUFFER),
        init: format,
    }
}

fn format(region: &mut [u8]) {
    let len = region.len();
    if len < MIN_BUFFER {
        return;
    }
    // SAFETY: the whole region, ours alone while formatted.
    let mem = unsafe { Mem::new(region.as_mut_ptr(), len) };
    mem.w64_raw(H_SIZE, len as u64);
    mem.w64_raw(H_RING, RING as u64);
    mem.w64_raw(H_RING_SIZE, ((len - RING) & !7) as u64);
    // SAFETY: LOCK_SIZE bytes at an 8-aligned offset of the region.
    unsafe { Lock::init(region.as_mut_ptr().add(H_LOCK)) };
    mem.w64_raw(H_MAGIC, MAGIC);
}

/// The broadcast region of this process.
#[derive(Clone, Copy)]
pub(crate) struct Ring {
    mem: Mem,
    lock: Lock,
    ring: usize,
    size: u64,
}

/// A message as it travels to the event loops.
struct Message {
    seq: u64,
    channel: Bytes,
    data: Bytes,
    /// Messages this event loop missed just before this one.
    missed: u64,
}

impl Ring {
    fn get() -> Result<Ring, Error> {
        let region = SharedMemory::get(REGION).ok_or(Error::NoBroadcast)?;
        Ring::attach(region)
    }

    fn attach(region: SharedMemory) -> Result<Ring, Error> {
        // SAFETY: a region is mapped for the life of the process.
        let mem = unsafe { Mem::new(region.as_ptr(), region.len()) };
        if region.len() < MIN_BUFFER
            || mem.r64(H_MAGIC) != MAGIC
            || mem.r64(H_SIZE) != region.len() as u64
        {
            return Err(Error::NotAZone);
        }
        Ok(Ring {
            mem,
            // SAFETY: formatted with the region.
            lock: unsafe { Lock::at(region.as_ptr().add(H_LOCK)) },
            ring: mem.r64(H_RING) as usize,
            size: mem.r64(H_RING_SIZE),
        })
    }

    /// The longest message.
    pub fn max_message(&self) -> usize {
        (self.size as usize / 4).saturating_sub(R_DATA + MAX_CHANNEL)
    }

    fn atomic64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: an aligned u64 of the region's header (a region is at
        // least MIN_BUFFER long), only ever accessed atomically.
        unsafe { &*(self.mem.base().add(off).cast::<AtomicU64>()) }
    }

    fn bell(&self) -> &AtomicU32 {
        // SAFETY: as `atomic64`.
        unsafe { &*(self.mem.base().add(H_BELL).cast::<AtomicU32>()) }
    }

    /// The sequence number the next message will get.
    fn next_seq(&self) -> u64 {
        self.atomic64(H_NEXT_SEQ).load(Ordering::Acquire)
    }

    fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T, Error> {
        // The ring's writes are safe to abandon (see the module doc):
        // nothing to repair when the owner died.
        if self.lock.lock().map_err(|()| Error::Broken)? == Taken::OwnerDied {
            self.lock.consistent();
        }
        let out = f();
        self.lock.unlock();
        Ok(out)
    }

    fn at(&self, pos: u64) -> usize {
        self.ring + (pos % self.size) as usize
    }

    /// Append a message and ring the bell.
    fn send(&self, channel: &[u8], message: &[u8]) -> Result<(), Error> {
        if channel.is_empty() || channel.len() > MAX_CHANNEL {
            return Err(Error::BadChannel);
        }
        if message.len() > self.max_message() {
            return Err(Error::MessageTooBig);
        }
        let m = self.mem;
        let record = (R_DATA + channel.len() + message.len()).next_multiple_of(8) as u64;
        self.locked(|| {
            let write = m.r64(H_WRITE_POS);
            let room = self.size - write % self.size;
            let pad = if record > room { room } else { 0 };
            let end = write + pad + record;
            // Drop the oldest records the new one will overwrite.
            let mut oldest = m.r64(H_OLDEST_POS);
            while oldest < write && oldest + self.size < end {
                oldest += u64::from(m.r32(self.at(oldest) + R_LEN)).max(8);
            }
            m.w64_raw(H_OLDEST_POS, oldest.min(write));
            if pad > 0 {
                m.w32_raw(self.at(write) + R_LEN, pad as u32);
                m.w32_raw(self.at(write) + R_CHANNEL_LEN, PADDING);
            }
            let r = self.at(write + pad);
            let seq = self.atomic64(H_NEXT_SEQ).load(Ordering::Relaxed);
            m.w32_raw(r + R_LEN, record as u32);
            m.w32_raw(r + R_CHANNEL_LEN, channel.len() as u32);
            m.w32_raw(r + R_MESSAGE_LEN, message.len() as u32);
            m.w64_raw(r + R_SEQ, seq);
            m.write_bytes(r + R_DATA, channel);
            m.write_bytes(r + R_DATA + channel.len(), message);
            self.atomic64(H_NEXT_SEQ).store(seq + 1, Ordering::Release);
            // Last: the record is there for readers from now on.
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            m.w64_raw(H_WRITE_POS, end);
        })?;
        self.bell().fetch_add(1, Ordering::Release);
        // SAFETY: FUTEX_WAKE on a word of the shared mapping (not
        // FUTEX_PRIVATE: the sleepers are in other processes).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.bell().as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
            );
        }
        Ok(())
    }

    /// Where the next message will be written and its sequence number (a
    /// new reader's start).
    fn write_pos(&self) -> Result<(u64, u64), Error> {
        self.locked(|| (self.mem.r64(H_WRITE_POS), self.next_seq()))
    }

    /// The sequence number the next message will get, if a reader at
    /// `pos` has read every message (else None: one came meanwhile).
    fn caught_up(&self, pos: u64) -> Result<Option<u64>, Error> {
        self.locked(|| (self.mem.r64(H_WRITE_POS) == pos).then(|| self.next_seq()))
    }

    /// Copy the message at `*pos` (if any) into `channel` and `data`
    /// (which have room for the largest) and move past it: its sequence
    /// number, whose gap from the last one read counts the messages the
    /// ring dropped before this reader got to them. Ok(None): no new
    /// message.
    fn read(
        &self,
        pos: &mut u64,
        channel: &mut Vec<u8>,
        data: &mut Vec<u8>,
    ) -> Result<Option<u64>, Error> {
        let m = self.mem;
        self.locked(|| {
            let oldest = m.r64(H_OLDEST_POS);
            let write = m.r64(H_WRITE_POS);
            if *pos < oldest {
                *pos = oldest;
            }
            while *pos < write {
                let r = self.at(*pos);
                let len = u64::from(m.r32(r + R_LEN)).max(8);
                *pos += len;
                let channel_len = m.r32(r + R_CHANNEL_LEN);
                if channel_len == PADDING {
                    continue;
                }
                let message_len = m.r32(r + R_MESSAGE_LEN) as usize;
                if channel_len as usize > MAX_CHANNEL || message_len > self.max_message() {
                    // Not a record: a reader out of step; start over.
                    *pos = write;
                    return None;
                }
                m.read_bytes(r + R_DATA, channel_len as usize, channel);
                m.read_bytes(r + R_DATA + channel_len as usize, message_len, data);
                return Some(m.r64(r + R_SEQ));
            }
            None
        })
    }
}

/// Send `message` on `channel` to every waiter in every worker. The
/// channel is 1 to 255 bytes; the message at most a quarter of
/// `BroadcastBuffer` (less the channel).
pub fn broadcast(channel: impl AsRef<[u8]>, message: impl AsRef<[u8]>) -> Result<(), Error> {
    Ring::get()?.send(channel.as_ref(), message.as_ref())
}

/// The event loops of this process that receive messages, fed by the
/// thread that sleeps on the bell (started with the first waiter).
static LISTENERS: Mutex<Option<Listeners>> = Mutex::new(None);

type Listeners = Arc<Mutex<Vec<Listener>>>;

/// The bell thread's end of the hand-off to one event loop.
struct Listener {
    tx: mpsc::UnboundedSender<Message>,
    /// Bytes handed off and not yet taken by the event loop.
    queued: Arc<AtomicUsize>,
    missed: Arc<Missed>,
}

/// Messages dropped for an event loop, told apart from the hand-off: the
/// loop may find nothing more in it (the drops were the last messages).
#[derive(Default)]
struct Missed {
    count: AtomicU64,
    /// The latest sequence number dropped: a subscription that began
    /// after it missed none.
    through: AtomicU64,
    wake: tokio::sync::Notify,
}

/// The event loop's end.
struct Feed {
    rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    missed: Arc<Missed>,
}

/// How often at most the bell thread says that the worker missed messages.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A receiver of every message sent from now on, starting the bell thread
/// if this is the first.
fn listen(ring: Ring) -> Result<Feed, Error> {
    let mut started = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
    let listeners = match &*started {
        Some(l) => l.clone(),
        None => {
            let listeners: Listeners = Arc::default();
            let start = ring.write_pos()?;
            let feed = listeners.clone();
            std::thread::Builder::new()
                .name("axkit-broadcast".into())
                .spawn(move || watch(ring, start, &feed))
                .map_err(|e| Error::Thread(e.to_string()))?;
            *started = Some(listeners.clone());
            listeners
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (queued, missed) = (Arc::<AtomicUsize>::default(), Arc::<Missed>::default());
    listeners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Listener {
            tx,
            queued: queued.clone(),
            missed: missed.clone(),
        });
    Ok(Feed { rx, queued, missed })
}

impl Listener {
    /// `n` messages, up to sequence number `through`, will never reach
    /// the loop: tell it.
    fn miss(&self, n: u64, through: u64) {
        self.missed.through.fetch_max(through, Ordering::AcqRel);
        self.missed.count.fetch_add(n, Ordering::AcqRel);
        self.missed.wake.notify_one();
    }

    /// Hand the message (and the `lost` before it) over unless the loop
    /// already has `limit` bytes waiting: then it is counted as missed
    /// (and in `dropped`). False once the loop is gone.
    fn pass(
        &self,
        (seq, channel, data): (u64, &Bytes, &Bytes),
        lost: u64,
        limit: usize,
        dropped: &mut u64,
    ) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        let size = channel.len() + data.len();
        if self.queued.load(Ordering::Acquire) + size > limit {
            self.miss(lost + 1, seq);
            *dropped += 1;
            return true;
        }
        self.queued.fetch_add(size, Ordering::AcqRel);
        let message = Message {
            seq,
            channel: channel.clone(),
            data: data.clone(),
            missed: lost,
        };
        self.tx.send(message).is_ok()
    }
}

/// The bell thread: sleep on the bell, read what came, pass it on, from
/// `pos` in the ring, where the message numbered `next` will be.
fn watch(ring: Ring, (mut pos, mut next): (u64, u64), listeners: &Mutex<Vec<Listener>>) {
    let mut channel = Vec::with_capacity(MAX_CHANNEL);
    let mut data = Vec::with_capacity(ring.max_message());
    // Each event loop may have a ring's worth of messages waiting.
    let limit = ring.size as usize;
    let (mut unreported, mut warned): (u64, Option<Instant>) = (0, None);
    loop {
        let bell = ring.bell().load(Ordering::Acquire);
        loop {
            channel.clear();
            data.clear();
            let seq = match ring.read(&mut pos, &mut channel, &mut data) {
                Ok(Some(seq)) => seq,
                Ok(None) => {
                    // The last messages may have been lost (overwritten,
                    // or a reader out of step skipped them): with no next
                    // one to show the gap, the sequence numbers do.
                    if let Ok(Some(now)) = ring.caught_up(pos) {
                        if now > next {
                            let tail = now - next;
                            for l in listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                                l.miss(tail, now - 1);
                            }
                            unreported += tail;
                            next = now;
                        }
                    }
                    break;
                }
                Err(e) => {
                    axkit::plugin::log_to_stderr(axkit::Level::Crit, &format!("broadcast: {e}"));
                    return;
                }
            };
            let lost = seq.saturating_sub(next);
            next = seq + 1;
            let (channel, data) = (
                Bytes::copy_from_slice(&channel),
                Bytes::copy_from_slice(&data),
            );
            let mut dropped = 0;
            listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|l| l.pass((seq, &channel, &data), lost, limit, &mut dropped));
            unreported += lost + dropped;
            if unreported > 0 && warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                axkit::plugin::log_to_stderr(
                    axkit::Level::Warn,
                    &format!(
                        "broadcast: this worker fell behind and missed {unreported} messages \
                         (BroadcastBuffer too small, or an event loop busy?)"
                    ),
                );
                (unreported, warned) = (0, Some(Instant::now()));
            }
        }
        // SAFETY: FUTEX_WAIT on a word of the shared mapping: returns at
        // once if the bell rang since we read it.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                ring.bell().as_ptr(),
                libc::FUTEX_WAIT,
                bell,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }
}

/// A waiter's mailbox: one message for a [`Wait`], a bounded queue for a
/// [`Subscription`].
struct Slot {
    start: u64,
    mailbox: Mailbox,
    waker: RefCell<Option<Waker>>,
}

enum Mailbox {
    One(RefCell<Option<Bytes>>),
    Queue {
        messages: RefCell<VecDeque<Bytes>>,
        capacity: usize,
        dropped: Cell<u64>,
    },
}

impl Slot {
    /// Hand `message` over; whether the slot stays (a subscription does).
    fn take(&self, message: &Bytes) -> bool {
        let stays = match &self.mailbox {
            Mailbox::One(one) => {
                *one.borrow_mut() = Some(message.clone());
                false
            }
            Mailbox::Queue {
                messages,
                capacity,
                dropped,
            } => {
                let mut messages = messages.borrow_mut();
                if messages.len() == *capacity {
                    messages.pop_front();
                    dropped.set(dropped.get() + 1);
                }
                messages.push_back(message.clone());
                true
            }
        };
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
        stays
    }

    fn register(&self, cx: &Context<'_>) {
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
    }
}

/// This thread's waiters, by channel, and the task that wakes them.
#[derive(Default)]
struct Waiters {
    by_channel: RefCell<HashMap<Bytes, HashMap<u64, Rc<Slot>>>>,
    next: Cell<u64>,
    /// Waits and subscriptions in the map.
    count: Cell<usize>,
}

impl Waiters {
    /// `n` messages up to sequence number `through` never reached this
    /// event loop. Their channels are unknown: every subscription that was
    /// there by then may have missed them.
    fn missed(&self, n: u64, through: u64) {
        for slot in self.by_channel.borrow().values().flat_map(HashMap::values) {
            if let (Mailbox::Queue { dropped, .. }, true) = (&slot.mailbox, slot.start <= through) {
                dropped.set(dropped.get() + n);
            }
        }
    }

    fn deliver(&self, message: Message) {
        if message.missed > 0 {
            self.missed(message.missed, message.seq.saturating_sub(1));
        }
        let mut map = self.by_channel.borrow_mut();
        let Some(slots) = map.get_mut(&message.channel) else {
            return;
        };
        let before = slots.len();
        slots.retain(|_, slot| slot.start > message.seq || slot.take(&message.data));
        self.count.set(self.count.get() - (before - slots.len()));
        if slots.is_empty() {
            map.remove(&message.channel);
        }
    }

    fn add(&self, channel: &[u8], slot: Rc<Slot>) -> (Bytes, u64) {
        let id = self.next.get();
        self.next.set(id + 1);
        let channel = Bytes::copy_from_slice(channel);
        self.by_channel
            .borrow_mut()
            .entry(channel.clone())
            .or_default()
            .insert(id, slot);
        self.count.set(self.count.get() + 1);
        (channel, id)
    }

    fn remove(&self, channel: &Bytes, id: u64) {
        let mut map = self.by_channel.borrow_mut();
        if let Some(slots) = map.get_mut(channel) {
            if slots.remove(&id).is_some() {
                self.count.set(self.count.get() - 1);
            }
            if slots.is_empty() {
                map.remove(channel);
            }
        }
    }
}

thread_local! {
    /// The waiters of this thread's event loop, and the task feeding them.
    static HUB: RefCell<Option<(Rc<Waiters>, tokio::task::JoinHandle<()>)>> =
        const { RefCell::new(None) };
}

/// This thread's waiters, starting the task that delivers to them (on the
/// current `LocalSet`, as every worker's event loop is) if need be.
fn hub(ring: Ring) -> Result<Rc<Waiters>, Error> {
    HUB.with(|hub| {
        let mut hub = hub.borrow_mut();
        if let Some((waiters, task)) = &*hub {
            if !task.is_finished() {
                return Ok(waiters.clone());
            }
        }
        let mut feed = listen(ring)?;
        let waiters = Rc::new(Waiters::default());
        let to = waiters.clone();
        let task = tokio::task::spawn_local(async move {
            loop {
                tokio::select! {
                    message = feed.rx.recv() => {
                        let Some(message) = message else { break };
                        let size = message.channel.len() + message.data.len();
                        feed.queued.fetch_sub(size, Ordering::AcqRel);
                        to.deliver(message);
                    }
                    () = feed.missed.wake.notified() => {}
                }
                let n = feed.missed.count.swap(0, Ordering::AcqRel);
                if n > 0 {
                    to.missed(n, feed.missed.through.load(Ordering::Acquire));
                }
            }
        });
        *hub = Some((waiters.clone(), task));
        Ok(waiters)
    })
}

/// The next message sent on `channel` (by any worker, this one included)
/// after this call. Must run on a tokio `LocalSet` (as hooks do: each
/// worker's event loop is one). Dropping the future stops waiting.
///
/// ```no_run
/// # async fn f() -> Result<(), axkit_shared::Error> {
/// let message = axkit_shared::wait("news")?.await;
/// # Ok(()) }
/// ```
pub fn wait(channel: impl AsRef<[u8]>) -> Result<Wait, Error> {
    wait_on(Ring::get()?, channel.as_ref())
}

fn wait_on(ring: Ring, channel: &[u8]) -> Result<Wait, Error> {
    let (waiters, slot, channel, id) = register(ring, channel, Mailbox::One(RefCell::new(None)))?;
    Ok(Wait {
        waiters,
        channel,
        id,
        slot,
    })
}

/// A new slot for `channel` in this thread's waiters, starting with the
/// next message sent.
fn register(
    ring: Ring,
    channel: &[u8],
    mailbox: Mailbox,
) -> Result<(Rc<Waiters>, Rc<Slot>, Bytes, u64), Error> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL {
        return Err(Error::BadChannel);
    }
    let waiters = hub(ring)?;
    let slot = Rc::new(Slot {
        start: ring.next_seq(),
        mailbox,
        waker: RefCell::new(None),
    });
    let (channel, id) = waiters.add(channel, slot.clone());
    Ok((waiters, slot, channel, id))
}

/// A wait for the next message on a channel ([`wait`]).
pub struct Wait {
    waiters: Rc<Waiters>,
    channel: Bytes,
    id: u64,
    slot: Rc<Slot>,
}

impl Future for Wait {
    type Output = Bytes;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Bytes> {
        if let Mailbox::One(one) = &self.slot.mailbox {
            if let Some(message) = one.borrow_mut().take() {
                return Poll::Ready(message);
            }
        }
        self.slot.register(cx);
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.waiters.remove(&self.channel, self.id);
    }
}

/// The messages queued for a subscriber when none is given
/// ([`subscribe`]).
pub const DEFAULT_QUEUE: usize = 64;

/// Every message sent on `channel` from now on, by any worker, queued for
/// this subscriber until it reads them ([`Subscription::recv`]): unlike a
/// loop of [`wait`] calls, which misses what is sent while it is busy
/// between two waits, a subscription misses nothing while it keeps up.
/// At most `capacity` messages wait in its queue (at least 1); when
/// another comes, the oldest is dropped and counted
/// ([`Subscription::dropped`], which also counts what the worker missed
/// when it fell behind). Must run on a tokio `LocalSet`; dropping
/// it unsubscribes.
///
/// ```no_run
/// # async fn f() -> Result<(), axkit_shared::Error> {
/// let mut news = axkit_shared::subscribe("news", 64)?;
/// loop {
///     let message = news.recv().await;
///     // … send it on; messages sent meanwhile wait in the queue.
/// #   let _ = message;
/// }
/// # }
/// ```
pub fn subscribe(channel: impl AsRef<[u8]>, capacity: usize) -> Result<Subscription, Error> {
    subscribe_on(Ring::get()?, channel.as_ref(), capacity)
}

fn subscribe_on(ring: Ring, channel: &[u8], capacity: usize) -> Result<Subscription, Error> {
    let mailbox = Mailbox::Queue {
        messages: RefCell::new(VecDeque::new()),
        capacity: capacity.max(1),
        dropped: Cell::new(0),
    };
    let (waiters, slot, channel, id) = register(ring, channel, mailbox)?;
    Ok(Subscription {
        waiters,
        channel,
        id,
        slot,
    })
}

/// A subscription to a channel ([`subscribe`]).
pub struct Subscription {
    waiters: Rc<Waiters>,
    channel: Bytes,
    id: u64,
    slot: Rc<Slot>,
}

impl Subscription {
    /// The next message: the oldest queued, or the next one sent.
    pub fn recv(&mut self) -> impl Future<Output = Bytes> + '_ {
        std::future::poll_fn(move |cx| match self.try_recv() {
            Some(message) => Poll::Ready(message),
            None => {
                self.slot.register(cx);
                Poll::Pending
            }
        })
    }

    /// The oldest queued message, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        match &self.slot.mailbox {
            Mailbox::Queue { messages, .. } => messages.borrow_mut().pop_front(),
            Mailbox::One(_) => None,
        }
    }

    /// How many messages it missed: dropped because the queue was full,
    /// or missed by the whole worker, which fell behind (counted for every
    /// subscription: the worker cannot tell on which channels they were).
    pub fn dropped(&self) -> u64 {
        match &self.slot.mailbox {
            Mailbox::Queue { dropped, .. } => dropped.get(),
            Mailbox::One(_) => 0,
        }
    }

    /// The channel subscribed to.
    pub fn channel(&self) -> &[u8] {
        &self.channel
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.waiters.remove(&self.channel, self.id);
    }
}

/// How many waits ([`wait`]) and subscriptions ([`subscribe`]) this
/// worker has (this thread's, to be exact): what a status page or a test
/// watches to see that clients that went away were let go.
pub fn waiting() -> usize {
    HUB.with(|hub| hub.borrow().as_ref().map_or(0, |(w, _)| w.count.get()))
}

#[cfg(test)]
#[path = "broadcast_tests.rs"]
mod tests;
