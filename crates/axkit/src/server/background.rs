//! Background requests ([`Context::background_request`]): a GET the worker
//! runs on its own, detached from the request that asked for it, through
//! the same walk as a client's (the `cache` plugin refreshes a stale entry
//! this way while the client gets the stale one at once).
//!
//! The request goes over a loopback TCP connection the worker makes to
//! itself rather than through a socketless path in the walk: the walk, the
//! response writer and every plugin's streaming then stay exactly what a
//! client gets (sendfile, backpressure, body filters), and the hot path
//! carries no second kind of connection. The cost (a temporary listener
//! and a connection per request) suits what this is for: a refresh now
//! and then, not a request per request.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::plugin::{ConnInfo, Context};
use crate::server::walk;

/// Request fields a background request never copies from its caller,
/// besides the hop-by-hop ones: the core writes its own `Host`, and the
/// request has no body to expect.
const NOT_COPIED: [&str; 3] = ["host", "expect", "http2-settings"];

/// How long making the loopback connection may take: it is local, so this
/// only bounds a wait that should never happen.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);

/// See [`Context::background_request`].
pub(crate) fn start<'h>(
    ctx: &Context,
    target: &str,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> Result<impl Future<Output = io::Result<u16>> + 'static, String> {
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{target:?} is not a local path"));
    }
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"GET ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    // The Host as the caller's client sent it, port and all: what the
    // request is keyed and routed by (a cache's entry) must be the same.
    match ctx.request.header("Host").filter(|h| !h.is_empty()) {
        Some(host) => head.extend_from_slice(host.as_bytes()),
        None => head.extend_from_slice(ctx.conn.local.to_string().as_bytes()),
    }
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if axkit_http::hop_by_hop(name) || NOT_COPIED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        if !axkit_http::valid_header_name(name) || !axkit_http::valid_header_value(value) {
            return Err(format!("invalid header field {name:?}"));
        }
        axkit_http::write_header(&mut head, name, value);
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let head = BytesMut::from(&head[..]);
    let worker = ctx.rt.worker.clone();
    let parent = ConnInfo {
        background: true,
        ..(*ctx.conn).clone()
    };
    Ok(async move {
        if worker.shutting_down.get() {
            return Err(io::Error::other("the worker is stopping"));
        }
        // A full worker serves its clients first; the caller may try
        // again later.
        if worker.active.get() >= worker.max_connections.get() {
            return Err(io::Error::other("the worker is at MaxConnections"));
        }
        let (mut ours, theirs) = tokio::time::timeout(CONNECT_LIMIT, loopback_pair())
            .await
            .map_err(|_| io::Error::other("the loopback connection timed out"))??;
        let conn = Rc::new(ConnInfo {
            id: worker.next_conn_id(),
            ..parent
        });
        // Counted like an accepted connection: a draining worker waits for
        // it, and `serve_background` uncounts it when it ends.
        worker.connection_opened();
        tokio::task::spawn_local(walk::serve_background(worker, theirs, conn, head));
        read_status(&mut ours).await
    })
}

/// A connected pair of loopback sockets: ours, and the worker's side.
/// Another local process may connect to the temporary listener first, so
/// only the connection whose peer is our socket is taken.
async fn loopback_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
        Ok(listener) => listener,
        Err(_) => TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await?,
    };
    let ours = TcpStream::connect(listener.local_addr()?).await?;
    let me: SocketAddr = ours.local_addr()?;
    loop {
        let (theirs, peer) = listener.accept().await?;
        if peer == me {
            return Ok((ours, theirs));
        }
    }
}

/// Read the response to its end, keeping only its status.
async fn read_status(stream: &mut TcpStream) -> io::Result<u16> {
    let mut first = Vec::with_capacity(16);
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let want = 12usize.saturating_sub(first.len()).min(n);
        first.extend_from_slice(&buf[..want]);
    }
    // "HTTP/1.1 200"
    std::str::from_utf8(first.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("no response to the background request"))
}
