//! Joining two connections after `101 Switching Protocols`: bytes copied
//! both ways as they come (each way with its own backpressure), until
//! either side closes, nothing moves either way for the idle limit, or the
//! worker drains.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use axkit::plugin::Worker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Why a tunnel ended.
pub(crate) enum End {
    /// A side closed it, or failed.
    Closed,
    /// Nothing moved for the idle limit.
    Idle,
    /// The worker is draining.
    Draining,
}

/// Copy between `a` and `b` until one of the ends above.
pub(crate) async fn join<A, B>(a: A, b: B, idle: Duration, worker: &Worker) -> End
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Rc::new(Cell::new(Instant::now()));
    let mut a = Watched {
        inner: a,
        last: last.clone(),
    };
    let mut b = Watched {
        inner: b,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return End::Closed,
            _ = worker.stopping() => return End::Draining,
            _ = tokio::time::sleep_until(last.get() + idle) => {
                if last.get().elapsed() >= idle {
                    return End::Idle;
                }
            }
        }
    }
}

/// A stream that notes when bytes last moved through it.
struct Watched<T> {
    inner: T,
    last: Rc<Cell<Instant>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.set(Instant::now());
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.last.set(Instant::now());
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
