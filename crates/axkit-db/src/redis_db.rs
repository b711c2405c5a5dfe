//! Redis through the `redis` crate: a [`Redis`] handle on a worker's pool
//! of connections, commands with their arguments sent as separate bulk
//! strings (never a command line built from text), pipelines, and
//! publish/subscribe on a connection of the subscription's own. Every
//! connection counts what the server sends for each call, so that a reply
//! over `max_result=` fails the call (and closes its connection) before
//! the crate has read it whole; a subscription's, the bytes and the
//! messages it has read and not yet delivered (the crate reads every
//! message as it comes, into a queue without bound), so that a subscriber
//! slower than its publishers ends rather than grow the worker, even with
//! `max_result=0`.
//!
//! A connection is not known to be dead until a command fails on it: the
//! first command after the server restarted fails (as unavailable), and
//! the pool then drops every idle connection it kept, so that the next
//! command opens a new one.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSub, PubSubSink, PubSubStream};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, Msg, Pipeline, RedisError, Value,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::AbortHandle;

use crate::config::{Kind, Spec, Target};
use crate::error::{Error, ErrorKind};
use crate::pool::{Connector, Pool, Pooled};

/// A Redis database of this worker: cheap to clone, every clone sharing
/// one pool. Each call takes a connection for its duration (a blocking
/// `BLPOP` holds only its own) and is bounded by the database's
/// `timeout=`.
#[derive(Clone)]
pub struct Redis {
    pool: Rc<Pool<RedisConnector>>,
}

pub(crate) struct RedisConnector;

/// A pooled connection: the crate's, the count of what its socket has
/// read for the current call, and the task that drives it (the crate's
/// own connect would spawn it too, but over a socket we cannot count).
pub(crate) struct RedisConn {
    conn: MultiplexedConnection,
    meter: Arc<Meter>,
    driver: AbortHandle,
}

impl Drop for RedisConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connector for RedisConnector {
    type Conn = RedisConn;

    async fn connect(&self, spec: &Spec) -> Result<RedisConn, Error> {
        let (socket, meter) = open(spec).await?;
        // The pool's own timeout bounds every call: none of the client's.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let info = client(spec).get_connection_info().redis_settings();
        let (conn, driver) = MultiplexedConnection::new_with_config(info, socket, config)
            .await
            .map_err(|e| failed(spec, &e))?;
        let driver = tokio::spawn(driver).abort_handle();
        Ok(RedisConn {
            conn,
            meter,
            driver,
        })
    }

    fn alive(_: &RedisConn) -> bool {
        true
    }
}

/// The most messages a subscription holds read and not yet delivered,
/// whatever `max_result=` (with `0`, one message may be of any size, but
/// a publisher of small ones must not fill the worker either).
pub const SUBSCRIPTION_QUEUE: usize = 65_536;

/// How much the server has sent on one connection and is still held (a
/// pooled connection: since its call started; a subscription: read and
/// not yet delivered, as the crate reads every message as it comes), and
/// whether that went over `max_result=` (or [`SUBSCRIPTION_QUEUE`]).
struct Meter {
    max: usize,
    read: AtomicUsize,
    /// A subscription's messages read and not yet delivered.
    queued: AtomicUsize,
    over: AtomicBool,
}

impl Meter {
    fn reset(&self) {
        self.read.store(0, Ordering::Relaxed);
        self.queued.store(0, Ordering::Relaxed);
    }

    /// `n` bytes were read, ending `messages` replies (counted for a
    /// subscription only); past a limit, the read fails (the crate then
    /// fails the call, or ends the subscription, and gives the connection
    /// up).
    fn add(&self, n: usize, messages: usize) -> io::Result<()> {
        let read = self.read.fetch_add(n, Ordering::Relaxed) + n;
        let queued = self.queued.fetch_add(messages, Ordering::Relaxed) + messages;
        let over = if self.max != 0 && read > self.max {
            over_max_result(self.max)
        } else if queued > SUBSCRIPTION_QUEUE {
            over_queue()
        } else {
            return Ok(());
        };
        self.over.store(true, Ordering::Relaxed);
        Err(io::Error::other(over))
    }

    /// A message of `n` bytes read earlier was delivered.
    fn delivered(&self, n: usize) {
        let less = |by: usize| move |held: usize| Some(held.saturating_sub(by));
        let _ = self
            .read
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(n));
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(1));
    }

    fn went_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// The error for a call whose reply went over the limit, if it did.
    fn over(&self, spec: &Spec) -> Option<Error> {
        self.went_over().then(|| {
            Error::new(
                &spec.name,
                Kind::Redis,
                ErrorKind::Query,
                over_max_result(self.max),
            )
        })
    }
}

/// What a Redis reply over `max_result=` fails with.
fn over_max_result(max: usize) -> String {
    format!(
        "the reply is over max_result={max} bytes: ask for less (GETRANGE, LRANGE or HSCAN in \
         parts), or raise max_result= on the Database line"
    )
}

/// What ends a subscription whose unread messages are too many.
fn over_queue() -> String {
    format!(
        "the subscription's unread messages are over {SUBSCRIPTION_QUEUE}: the subscriber is \
         too slow, and the subscription is over"
    )
}

/// The socket under a connection, counting what it reads (and, for a
/// subscription, the replies that ends).
struct Metered {
    io: Pin<Box<dyn Socket>>,
    meter: Arc<Meter>,
    replies: Option<Replies>,
}

/// Counts the replies (RESP2 or RESP3 values) in what a connection reads,
/// as the last byte of each comes, keeping none of it: the messages the
/// crate has read for a subscription.
#[derive(Default)]
struct Replies {
    /// The elements still to come in each aggregate under way, innermost
    /// last.
    open: Vec<u64>,
    at: At,
}

#[derive(Default)]
enum At {
    /// A value's type byte is next.
    #[default]
    Start,
    /// In the line after a type byte: the number on it so far.
    Line { kind: u8, n: u64, negative: bool },
    /// In a string's bytes: how many are left, its CRLF included.
    Bulk(u64),
}

impl Replies {
    /// `bytes` were read: how many replies they end.
    fn count(&mut self, mut bytes: &[u8]) -> usize {
        let mut ended = 0;
        while let Some((&b, rest)) = bytes.split_first() {
            match &mut self.at {
                At::Start => {
                    self.at = At::Line {
                        kind: b,
                        n: 0,
                        negative: false,
                    };
                    bytes = rest;
                }
                At::Bulk(left) => {
                    let skip = bytes
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= skip as u64;
                    bytes = &bytes[skip..];
                    if *left == 0 {
                        self.at = At::Start;
                        ended += self.value_ended();
                    }
                }
                At::Line { kind, n, negative } => {
                    bytes = rest;
                    match b {
                        b'0'..=b'9' => {
                            *n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                        }
                        b'-' => *negative = true,
                        b'\n' => {
                            let (kind, n) = (*kind, (!*negative).then_some(*n));
                            self.at = At::Start;
                            ended += self.line_ended(kind, n);
                        }
                        _ => {}
                    }
                }
            }
        }
        ended
    }

    /// The line of a value of type `kind` ended, with the length `n` on
    /// it (None: a null): 1 if that ends a reply.
    fn line_ended(&mut self, kind: u8, n: Option<u64>) -> usize {
        match (kind, n) {
            (b'$' | b'=' | b'!', Some(len)) => {
                self.at = At::Bulk(len.saturating_add(2));
                0
            }
            (b'*' | b'>' | b'~', Some(len)) if len > 0 => {
                self.open.push(len);
                0
            }
            (b'%', Some(len)) if len > 0 => {
                self.open.push(len.saturating_mul(2));
                0
            }
            // An attribute: its pairs, then the value they are about.
            (b'|', Some(len)) => {
                self.open.push(len.saturating_mul(2).saturating_add(1));
                0
            }
            _ => self.value_ended(),
        }
    }

    /// A value ended: 1 if that ends a reply.
    fn value_ended(&mut self) -> usize {
        while let Some(left) = self.open.last_mut() {
            *left -= 1;
            if *left > 0 {
                return 0;
            }
            self.open.pop();
        }
        1
    }
}

trait Socket: AsyncRead + AsyncWrite + Send + Sync {}
impl<S: AsyncRead + AsyncWrite + Send + Sync> Socket for S {}

/// Connect to `spec`'s server as the crate would (TCP with Nagle off, or
/// a Unix socket), the socket metered.
async fn open(spec: &Spec) -> Result<(Metered, Arc<Meter>), Error> {
    let io: io::Result<Pin<Box<dyn Socket>>> = match client(spec).get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) => tokio::net::TcpStream::connect((host.as_str(), *port))
            .await
            .and_then(|s| s.set_nodelay(true).map(|()| s))
            .map(|s| Box::pin(s) as _),
        ConnectionAddr::Unix(path) => tokio::net::UnixStream::connect(path)
            .await
            .map(|s| Box::pin(s) as _),
        // The config refuses rediss:// URLs.
        other => Err(io::Error::other(format!("unsupported address {other}"))),
    };
    let io = io.map_err(|e| {
        Error::new(
            &spec.name,
            Kind::Redis,
            ErrorKind::Unavailable,
            format!("could not connect: {e}"),
        )
    })?;
    let meter = Arc::new(Meter {
        max: spec.max_result,
        read: AtomicUsize::new(0),
        queued: AtomicUsize::new(0),
        over: AtomicBool::new(false),
    });
    let socket = Metered {
        io,
        meter: meter.clone(),
        replies: None,
    };
    Ok((socket, meter))
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.io.as_mut().poll_read(cx, buf);
        let read = &buf.filled()[before..];
        let this = &mut *self;
        let replies = this.replies.as_mut().map_or(0, |r| r.count(read));
        if let Err(e) = this.meter.add(read.len(), replies) {
            return Poll::Ready(Err(e));
        }
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.io.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.io.as_mut().poll_shutdown(cx)
    }
}

fn client(spec: &Spec) -> &redis::Client {
    match &spec.target {
        Target::Redis(client) => client,
        _ => unreachable!("a redis pool of another database"),
    }
}

/// Whether `e` means the connection is gone (or never was).
fn lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
}

fn failed(spec: &Spec, e: &RedisError) -> Error {
    let kind = if lost(e) || e.kind() == redis::ErrorKind::AuthenticationFailed {
        ErrorKind::Unavailable
    } else if matches!(
        e.kind(),
        redis::ErrorKind::Server(_) | redis::ErrorKind::Extension
    ) {
        ErrorKind::Query
    } else {
        ErrorKind::Usage
    };
    let error = Error::new(&spec.name, Kind::Redis, kind, e.to_string());
    match e.code() {
        Some(code) if kind == ErrorKind::Query => error.with_code(code),
        _ => error,
    }
}

impl Redis {
    pub(crate) fn new(spec: Spec) -> Redis {
        Redis {
            pool: Pool::new(spec, RedisConnector),
        }
    }

    /// A handle with a pool of its own on `spec` ([`Spec::redis`]), for a
    /// plugin whose Redis is not one of the config's `Database` lines.
    pub fn open(spec: Spec) -> Result<Redis, String> {
        match spec.target {
            Target::Redis(_) => Ok(Redis::new(spec)),
            _ => Err(format!("{:?} is not a Redis database", spec.name)),
        }
    }

    /// The database's name in the config.
    pub fn name(&self) -> &str {
        &self.pool.spec.name
    }

    /// Run `op` on a lent connection, bounded by the timeout.
    async fn with<T>(
        &self,
        op: impl AsyncFnOnce(&mut MultiplexedConnection) -> Result<T, RedisError>,
    ) -> Result<T, Error> {
        let spec = &self.pool.spec;
        self.pool
            .within(async {
                let mut c: Pooled<RedisConnector> = self.pool.get().await?;
                let lent = c.start();
                lent.meter.reset();
                let result = op(&mut lent.conn).await;
                if let Some(over) = lent.meter.over(spec) {
                    c.discard();
                    return Err(over);
                }
                match &result {
                    Err(e) if lost(e) => {
                        c.discard();
                        // Probably a restarted server: the other idle
                        // connections are gone too.
                        self.pool.drop_idle();
                    }
                    _ => c.done(),
                }
                result.map_err(|e| failed(spec, &e))
            })
            .await
    }

    /// Refuse a command that would change the state of the connection it
    /// runs on, which goes back to the pool for whoever borrows it next
    /// (a `MULTI` left open would queue their commands, a `SELECT` point
    /// them at another database, `CLIENT REPLY OFF` shift every reply).
    fn kept_as_it_is(&self, cmd: &Cmd) -> Result<(), Error> {
        let Some(redis::Arg::Simple(name)) = cmd.args_iter().next() else {
            return Ok(());
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        let instead = match name.as_str() {
            "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" => {
                "use an atomic pipeline (MULTI/EXEC around it) or a script (EVAL)"
            }
            "SELECT" => "give the database number in the Database URL (redis://host/2)",
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
            | "SUNSUBSCRIBE" | "MONITOR" => "subscribe through the subscription calls",
            "AUTH" | "HELLO" | "CLIENT" | "RESET" | "QUIT" | "READONLY" | "READWRITE" => {
                "set what the connection needs in the Database URL"
            }
            _ => return Ok(()),
        };
        Err(Error::new(
            &self.pool.spec.name,
            Kind::Redis,
            ErrorKind::Usage,
            format!(
                "{name} would change the pooled connection for the calls that borrow it next: \
                 {instead}"
            ),
        ))
    }

    /// One command, its reply as the server gave it (an error reply is an
    /// [`ErrorKind::Query`] error).
    ///
    /// ```no_run
    /// # async fn f(r: axkit_db::Redis) -> Result<(), axkit_db::Error> {
    /// r.cmd(redis::cmd("SET").arg("greeting").arg("hello")).await?;
    /// let n: i64 = r.query(redis::cmd("INCR").arg("visits")).await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn cmd(&self, cmd: &Cmd) -> Result<Value, Error> {
        self.query(cmd).await
    }

    /// One command, its reply converted to `T`.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        self.kept_as_it_is(cmd)?;
        self.with(async |conn: &mut MultiplexedConnection| cmd.query_async(conn).await)
            .await
    }

    /// Several commands sent at once (`redis::pipe()`, `.atomic()` for
    /// MULTI/EXEC): their replies in order. An error reply from any of
    /// them fails the call (the others have run).
    pub async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, Error> {
        for cmd in pipe.cmd_iter() {
            self.kept_as_it_is(cmd)?;
        }
        self.with(async |conn: &mut MultiplexedConnection| pipe.query_async(conn).await)
            .await
    }

    /// Subscribe to `channels`, on a connection of the subscription's own
    /// (not one of the pool's): it lasts until the [`Subscription`] is
    /// dropped.
    pub async fn subscribe<C: AsRef<[u8]>>(&self, channels: &[C]) -> Result<Subscription, Error> {
        self.open_subscription(channels, false).await
    }

    /// Subscribe to the channels matching `patterns` (`room:*`), as
    /// [`subscribe`](Self::subscribe) does.
    pub async fn psubscribe<P: AsRef<[u8]>>(&self, patterns: &[P]) -> Result<Subscription, Error> {
        self.open_subscription(patterns, true).await
    }

    async fn open_subscription<N: AsRef<[u8]>>(
        &self,
        names: &[N],
        patterns: bool,
    ) -> Result<Subscription, Error> {
        let spec = &self.pool.spec;
        self.pool
            .within(async {
                let (mut socket, meter) = open(spec).await?;
                socket.replies = Some(Replies::default());
                let info = client(spec).get_connection_info().redis_settings();
                let pubsub = PubSub::new(info, socket)
                    .await
                    .map_err(|e| failed(spec, &e))?;
                let (mut sink, stream) = pubsub.split();
                for name in names {
                    let name = name.as_ref();
                    let done = if patterns {
                        sink.psubscribe(name).await
                    } else {
                        sink.subscribe(name).await
                    };
                    done.map_err(|e| failed(spec, &e))?;
                }
                meter.reset();
                Ok(Subscription {
                    _sink: sink,
                    stream,
                    meter,
                    spec: spec.clone(),
                })
            })
            .await
    }
}

/// A subscription: the messages published to its channels, in order.
pub struct Subscription {
    /// Dropped with the stream: the connection closes and the server
    /// forgets the subscription.
    _sink: PubSubSink,
    stream: PubSubStream,
    meter: Arc<Meter>,
    spec: Spec,
}

impl Subscription {
    /// The next message; an [`ErrorKind::Unavailable`] error when the
    /// connection was lost, an [`ErrorKind::Query`] one when the messages
    /// read and not yet delivered went over `max_result=` bytes or
    /// [`SUBSCRIPTION_QUEUE`] messages (one too big, or a subscriber slower
    /// than its publishers, as Redis's own `client-output-buffer-limit`
    /// would have it): the subscription is over then, and every later call
    /// says so.
    pub async fn next(&mut self) -> Result<Msg, Error> {
        if !self.meter.went_over() {
            let next = self.stream.next().await;
            if !self.meter.went_over() {
                let msg = next.ok_or_else(|| {
                    Error::new(
                        &self.spec.name,
                        Kind::Redis,
                        ErrorKind::Unavailable,
                        "the subscription's connection was lost",
                    )
                })?;
                self.meter.delivered(sent_size(&msg));
                return Ok(msg);
            }
        }
        let why = if self.meter.queued.load(Ordering::Relaxed) > SUBSCRIPTION_QUEUE {
            over_queue()
        } else {
            format!(
                "the subscription's unread messages are over max_result={} bytes: the \
                 subscriber is too slow (or a message too big), and the subscription is over",
                self.meter.max
            )
        };
        Err(Error::new(
            &self.spec.name,
            Kind::Redis,
            ErrorKind::Query,
            why,
        ))
    }
}

/// The bytes the server sent for `msg`: `*3` (`*4` from a pattern), then
/// `message` (`pmessage`), the pattern, the channel and the payload as
/// bulk strings (RESP3's `>` is as long as `*`).
fn sent_size(msg: &Msg) -> usize {
    let digits = |n: usize| n.checked_ilog10().map_or(1, |d| d as usize + 1);
    let bulk = |len: usize| 1 + digits(len) + 2 + len + 2;
    let pattern = msg.get_pattern::<Option<Vec<u8>>>().ok().flatten();
    let (count, kind) = match &pattern {
        Some(_) => (4, "pmessage"),
        None => (3, "message"),
    };
    let channel = msg.get_channel::<Vec<u8>>().map_or(0, |c| c.len());
    1 + digits(count)
        + 2
        + bulk(kind.len())
        + pattern.map_or(0, |p| bulk(p.len()))
        + bulk(channel)
        + bulk(msg.get_payload_bytes().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies are counted as their last byte comes, however the reads
    /// split them.
    #[test]
    fn replies_are_counted_as_they_end() {
        let stream: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n\
            *3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$0\r\n\r\n\
            >4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$-1\r\n\
            +OK\r\n-ERR no: $5\r\n:-3\r\n*-1\r\n*0\r\n\
            %2\r\n+a\r\n*1\r\n:1\r\n+b\r\n_\r\n\
            |1\r\n+ttl\r\n:3\r\n$2\r\n\r\n\r\n\
            *2\r\n$12\r\nbig\r\nmessage\r\n*1\r\n#t\r\n";
        let ends: Vec<usize> = {
            let mut r = Replies::default();
            (0..stream.len())
                .filter(|&i| r.count(&stream[i..=i]) == 1)
                .map(|i| i + 1)
                .collect()
        };
        assert_eq!(ends.len(), 11, "{ends:?}");
        assert_eq!(ends[0], 33);
        for (i, &end) in ends.iter().enumerate() {
            assert_eq!(&stream[end - 2..end], b"\r\n", "reply {i} ends at {end}");
        }
        for split in 0..stream.len() {
            let mut r = Replies::default();
            let n = r.count(&stream[..split]) + r.count(&stream[split..]);
            assert_eq!(n, 11, "split at {split}");
        }
    }
}
