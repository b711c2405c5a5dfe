//! Connections to servers: plain TCP or TLS (rustls), and the pool of
//! idle keep-alive connections a [`Client`](crate::Client) keeps per
//! (scheme, host, port).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::client::TlsStream;

use crate::url::{Origin, OriginHasher};
use crate::{Deadline, Error, ErrorKind};

/// How often the pool looks for connections idle too long, anywhere in it.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The most buffer an idle connection keeps: one that read a large body
/// in large pieces gives the rest back.
const IDLE_BUFFER: usize = 16 * 1024;

/// A byte stream to a server.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether written bytes may wait in the stream until a flush (TLS).
    pub(crate) fn buffered(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connection and the bytes read from it but not used yet. Kept boxed
/// (made once per connection, whatever the requests it carries): a
/// response holds its connection until its body is read, and a response
/// moves several times on its way to the caller, each move a `memcpy` of
/// what it holds inline.
pub(crate) struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
    /// Where each request's head is written (its room kept between
    /// requests).
    pub out: Vec<u8>,
    pub origin: Origin,
    /// Times each wait of the connection (see `Deadline::within`).
    pub timer: Pin<Box<Sleep>>,
    idle_since: Instant,
}

impl Conn {
    /// Whether an idle connection can take a request: the server has
    /// neither closed it nor sent anything (a TLS close_notify, stray
    /// bytes) since its last response. What epoll has told tokio is
    /// enough, as nginx goes by its event loop: `try_read` makes no
    /// syscall unless tokio counts the socket readable, which it stops
    /// doing once a read drains it (and a read it does make takes only
    /// bytes that make the connection unusable anyway).
    fn alive(&self) -> bool {
        matches!(
            self.stream.tcp().try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }
}

/// Open a connection to `origin` within the connect timeout (the TLS
/// handshake included), with `tls` for an `https://` one.
pub(crate) async fn connect(
    origin: &Origin,
    tls: Option<Arc<rustls::ClientConfig>>,
    deadline: &Deadline,
) -> Result<Box<Conn>, Error> {
    let connect = deadline.connect_limit();
    let target = || format!("{}:{}", origin.host(), origin.port());
    // Made here (unarmed), and kept for the connection's every wait.
    let mut timer = Box::pin(tokio::time::sleep_until(tokio::time::Instant::now()));
    let tcp = deadline
        .within(
            timer.as_mut(),
            connect,
            ErrorKind::Connect,
            "connect",
            TcpStream::connect((origin.host(), origin.port())),
        )
        .await
        .map_err(|e| e.context(&target()))?;
    // Requests are written whole or in chunks: no waiting for more.
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let host = origin.host().to_string();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| {
                Error::new(ErrorKind::InvalidRequest, format!("{}: {e}", origin.host()))
            })?;
            let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
            let tls = deadline
                .within(
                    timer.as_mut(),
                    connect,
                    ErrorKind::Tls,
                    "TLS handshake",
                    handshake,
                )
                .await
                .map_err(|e| e.context(&target()))?;
            Stream::Tls(Box::new(tls))
        }
    };
    Ok(Box::new(Conn {
        stream,
        buf: BytesMut::new(),
        out: Vec::new(),
        origin: origin.clone(),
        timer,
        idle_since: Instant::now(),
    }))
}

/// Idle keep-alive connections by what they are to, most recent last.
pub(crate) struct Pool {
    /// Boxed as connections are everywhere (see `Conn`): a connection
    /// goes in and out of the pool per request, as one pointer.
    #[allow(clippy::vec_box)]
    idle: HashMap<Origin, Vec<Box<Conn>>, BuildHasherDefault<OriginHasher>>,
    /// When connections idle too long were last looked for.
    swept: Instant,
    /// At most this many idle connections per (scheme, host, port).
    pub max_idle: usize,
    /// An idle connection is closed after this long.
    pub idle_timeout: Duration,
    /// Connections opened so far (for tests and statistics).
    pub opened: u64,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: HashMap::default(),
            swept: Instant::now(),
            max_idle,
            idle_timeout,
            opened: 0,
        }
    }

    /// An idle connection to `origin` that is still usable, if there is
    /// one. Connections idle for too long, anywhere in the pool, are
    /// closed on the way (at most once a second: the pool has no timer of
    /// its own).
    pub fn take(&mut self, origin: &Origin) -> Option<Box<Conn>> {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        if now.duration_since(self.swept) >= SWEEP_EVERY {
            self.swept = now;
            self.idle.retain(|_, conns| {
                conns.retain(|c| now.duration_since(c.idle_since) < timeout);
                !conns.is_empty()
            });
        }
        let conns = self.idle.get_mut(origin)?;
        while let Some(conn) = conns.pop() {
            if now.duration_since(conn.idle_since) < timeout && conn.alive() {
                return Some(conn);
            }
        }
        None
    }

    /// Keep `conn` for the next request to its server.
    pub fn put(&mut self, mut conn: Box<Conn>) {
        if self.max_idle == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        if conn.buf.capacity() > IDLE_BUFFER {
            conn.buf = BytesMut::new();
        }
        if conn.out.capacity() > IDLE_BUFFER {
            conn.out = Vec::new();
        }
        let Some(conns) = self.idle.get_mut(&conn.origin) else {
            self.idle.insert(conn.origin.clone(), vec![conn]);
            return;
        };
        if conns.len() == self.max_idle {
            conns.remove(0);
        }
        conns.push(conn);
    }
}
