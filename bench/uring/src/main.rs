//! uring-bench — one-thread HTTP/1.1 keep-alive server answering every
//! request with a fixed 1 KiB response, on epoll or on io_uring, so that
//! `bench/uring.sh` can measure whether an io_uring worker loop would cut
//! the server CPU per request of AxKit's 1 KiB static path (issue #15).
//!
//! Not part of the AxKit workspace and not built by CI: a measurement.
//! Both mechanisms share everything else: the connection state, the head
//! scan (a request ends at "\r\n\r\n"; pipelined requests are answered in
//! order) and the response bytes (AxKit's head fields and sizes for a 1 KiB
//! file: status line, Server, Date, Content-Type, Last-Modified, ETag,
//! Accept-Ranges, Content-Length, then the body, sent as one buffer).
//!
//!     uring-bench MODE PORT      (listens on 127.0.0.1:PORT, prints "ready")
//!
//! MODE:
//! - `epoll`: non-blocking sockets registered once, edge-triggered
//!   (tokio's way); per request one `recv` and one `send`.
//! - `uring`: accept (multishot), recv and send as submissions, one
//!   `io_uring_enter` per loop turn to submit and wait; a plain recv per
//!   connection into its own buffer, re-armed after each completion.
//! - `uring-defer`: `uring` with `SINGLE_ISSUER | DEFER_TASKRUN` (the
//!   kernel's completion work runs inside the next enter, not on interrupts).
//! - `uring-ms`: `uring-defer` with one multishot recv per connection into
//!   a ring of provided buffers.
//! - `uring-ms-fixed`: `uring-ms` with registered (direct) descriptors:
//!   accept installs the socket in the ring's file table, no fd lookups.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// Longest request head accepted: a longer one closes the connection.
const HEAD_MAX: usize = 4096;

/// The answer to every request: AxKit's head for `/1k.bin` and 1 KiB body.
fn response() -> Vec<u8> {
    let date = http_date();
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: AxKit\r\nDate: {date}\r\n\
         Content-Type: application/octet-stream\r\nLast-Modified: {date}\r\n\
         ETag: \"9aa00a-400-18edae41b79e92f1\"\r\nAccept-Ranges: bytes\r\n\
         Content-Length: 1024\r\n\r\n"
    )
    .into_bytes();
    r.extend(b"0123456789abcdef".iter().cycle().take(1024));
    r
}

/// Now as an IMF-fixdate. Formatted once: AxKit formats its Date once a
/// second, so per request it is a copy either way.
fn http_date() -> String {
    let mut buf = [0u8; 64];
    // SAFETY: time/gmtime_r/strftime on local, correctly sized buffers.
    let n = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&t, &mut tm);
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a, %d %b %Y %H:%M:%S GMT".as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A connection's state, the same for every mode.
#[derive(Default)]
struct Conn {
    /// Bytes of an unfinished request head.
    partial: Vec<u8>,
    /// Responses owed (more than one when requests were pipelined).
    owed: u32,
    /// Bytes of the current response already sent.
    off: usize,
    /// io_uring: a send or a recv is in flight (the slot stays until both end).
    sending: bool,
    receiving: bool,
    closing: bool,
}

/// Counts the complete request heads in `data`; returns the bytes used.
fn scan(data: &[u8], owed: &mut u32) -> usize {
    let mut used = 0;
    while let Some(end) = find_head_end(&data[used..]) {
        used += end;
        *owed += 1;
    }
    used
}

fn find_head_end(d: &[u8]) -> Option<usize> {
    d.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

impl Conn {
    /// Takes bytes read from the socket; false when the head is too long.
    fn feed(&mut self, data: &[u8]) -> bool {
        if self.partial.is_empty() {
            let used = scan(data, &mut self.owed);
            self.partial.extend_from_slice(&data[used..]);
        } else {
            self.partial.extend_from_slice(data);
            let used = scan(&self.partial, &mut self.owed);
            self.partial.drain(..used);
        }
        self.partial.len() < HEAD_MAX
    }
    /// What is left to send of the current response.
    fn pending<'r>(&self, resp: &'r [u8]) -> Option<&'r [u8]> {
        (self.owed > 0).then(|| &resp[self.off..])
    }
    fn sent(&mut self, n: usize, resp_len: usize) {
        self.off += n;
        if self.off == resp_len {
            self.off = 0;
            self.owed -= 1;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, port) = match args.as_slice() {
        [_, m, p] => (m.as_str(), p.parse::<u16>().expect("PORT")),
        _ => {
            eprintln!("usage: uring-bench epoll|uring|uring-defer|uring-ms|uring-ms-fixed PORT");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let resp = response();
    let r = match mode {
        "epoll" => {
            listener.set_nonblocking(true).expect("nonblocking");
            println!("ready");
            epoll_loop(&listener, &resp)
        }
        "uring" | "uring-defer" | "uring-ms" | "uring-ms-fixed" => {
            let opts = Uring {
                defer: mode != "uring",
                multishot: mode.starts_with("uring-ms"),
                fixed: mode == "uring-ms-fixed",
            };
            uring_loop(&listener, &resp, opts)
        }
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("uring-bench {mode}: {e}");
        std::process::exit(1);
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option; AxKit sets TCP_NODELAY too.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            4,
        );
    }
}

fn slot(conns: &mut Vec<Option<Conn>>, i: usize) -> &mut Option<Conn> {
    if conns.len() <= i {
        conns.resize_with(i + 1, || None);
    }
    &mut conns[i]
}

// ---- epoll ------------------------------------------------------------------

const LISTENER: u64 = u64::MAX;

fn epoll_loop(listener: &TcpListener, resp: &[u8]) -> io::Result<()> {
    // SAFETY: plain syscalls on descriptors this function owns.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    let ctl = |fd: RawFd, events: u32, data: u64| {
        let mut ev = libc::epoll_event { events, u64: data };
        cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) })
    };
    ctl(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut scratch = vec![0u8; HEAD_MAX];
    loop {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let (flags, data) = (ev.events, ev.u64);
            if data == LISTENER {
                // Bounded: at most 64 accepts per readiness event.
                for _ in 0..64 {
                    let fd = unsafe {
                        libc::accept4(
                            listener.as_raw_fd(),
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        break;
                    }
                    set_nodelay(fd);
                    let et = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
                    ctl(fd, et as u32, fd as u64)?;
                    *slot(&mut conns, fd as usize) = Some(Conn::default());
                }
                continue;
            }
            let fd = data as RawFd;
            let Some(c) = conns[fd as usize].as_mut() else {
                continue;
            };
            let mut ok = true;
            if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLERR | libc::EPOLLHUP) as u32
                != 0
            {
                ok = epoll_read(fd, c, &mut scratch);
            }
            ok = ok && epoll_flush(fd, c, resp);
            if !ok {
                conns[fd as usize] = None;
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Reads until the socket is drained; false when the connection is done.
fn epoll_read(fd: RawFd, c: &mut Conn, scratch: &mut [u8]) -> bool {
    loop {
        let n = unsafe { libc::recv(fd, scratch.as_mut_ptr().cast(), scratch.len(), 0) };
        if n == 0 {
            return false;
        }
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        }
        if !c.feed(&scratch[..n as usize]) {
            return false;
        }
        // A short read drained the socket: edge-triggered, later bytes
        // raise a new event, so no recv just to see EAGAIN.
        if (n as usize) < scratch.len() {
            return true;
        }
    }
}

/// Sends what is owed until done or the socket is full (EPOLLOUT resumes).
fn epoll_flush(fd: RawFd, c: &mut Conn, resp: &[u8]) -> bool {
    while let Some(p) = c.pending(resp) {
        let n = unsafe { libc::send(fd, p.as_ptr().cast(), p.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock;
        }
        c.sent(n as usize, resp.len());
    }
    true
}

// ---- io_uring -----------------------------------------------------------------

#[derive(Clone, Copy)]
struct Uring {
    defer: bool,
    multishot: bool,
    fixed: bool,
}

// user_data: operation in the top byte, connection index below.
const OP_ACCEPT: u64 = 1 << 56;
const OP_RECV: u64 = 2 << 56;
const OP_SEND: u64 = 3 << 56;
const OP_CLOSE: u64 = 4 << 56;
const OP_MASK: u64 = 0xff << 56;

const ENTRIES: u32 = 4096;
const MAX_CONNS: u32 = 4096;
/// Provided buffers for multishot recv: count (a power of two) and size.
const BUFS: u16 = 1024;
const BUF_SIZE: usize = 2048;
const BGID: u16 = 0;

/// A ring of provided buffers (kernel 5.19+), page-aligned as required.
struct BufRing {
    ring: *mut types::BufRingEntry,
    mem: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let bytes = BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, kept for the process's life.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut br = BufRing {
            ring: p.cast(),
            mem: vec![0; BUFS as usize * BUF_SIZE],
            tail: 0,
        };
        // SAFETY: the mapping lives as long as the ring (process lifetime).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, BUFS, BGID, 0)?
        };
        for bid in 0..BUFS {
            br.give(bid);
        }
        Ok(br)
    }
    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        &self.mem[bid as usize * BUF_SIZE..][..len]
    }
    /// Hands buffer `bid` back to the kernel.
    fn give(&mut self, bid: u16) {
        let addr = self.mem[bid as usize * BUF_SIZE..].as_ptr() as u64;
        // SAFETY: index masked into the mapped ring; the tail is published
        // with a release store after the entry is written.
        unsafe {
            let e = &mut *self.ring.add((self.tail & (BUFS - 1)) as usize);
            e.set_addr(addr);
            e.set_len(BUF_SIZE as u32);
            e.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let t = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*t).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Submission queue entries waiting for room in the ring.
struct Sq<'a> {
    ring: &'a mut IoUring,
}

impl Sq<'_> {
    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points to outlives its operation:
        // the response is static for the run, receive buffers are owned by
        // slots that are freed only once no operation uses them.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }
}

fn uring_loop(listener: &TcpListener, resp: &[u8], o: Uring) -> io::Result<()> {
    let mut b = IoUring::builder();
    if o.defer {
        b.setup_single_issuer().setup_defer_taskrun();
    }
    let mut ring = b.setup_cqsize(ENTRIES * 4).build(ENTRIES)?;
    if o.fixed {
        ring.submitter().register_files_sparse(MAX_CONNS)?;
    }
    let mut bufs = if o.multishot {
        Some(BufRing::new(&ring)?)
    } else {
        None
    };
    // Plain recv: each connection reads into its own buffer (by index).
    let mut rbufs: Vec<Box<[u8]>> = Vec::new();
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let lfd = types::Fd(listener.as_raw_fd());
    let accept = || {
        opcode::AcceptMulti::new(lfd)
            .allocate_file_index(o.fixed)
            // Direct descriptors are not in the fd table: no CLOEXEC (EINVAL).
            .flags(if o.fixed { 0 } else { libc::SOCK_CLOEXEC })
            .build()
            .user_data(OP_ACCEPT)
    };
    let recv = |i: usize, rbufs: &mut Vec<Box<[u8]>>| {
        let e = if o.multishot {
            if o.fixed {
                opcode::RecvMulti::new(types::Fixed(i as u32), BGID).build()
            } else {
                opcode::RecvMulti::new(types::Fd(i as RawFd), BGID).build()
            }
        } else {
            if rbufs.len() <= i {
                rbufs.resize_with(i + 1, || vec![0u8; HEAD_MAX].into_boxed_slice());
            }
            let b = &mut rbufs[i];
            opcode::Recv::new(types::Fd(i as RawFd), b.as_mut_ptr(), b.len() as u32).build()
        };
        e.user_data(OP_RECV | i as u64)
    };
    let send = |i: usize, p: &[u8]| {
        let e = if o.fixed {
            opcode::Send::new(types::Fixed(i as u32), p.as_ptr(), p.len() as u32)
        } else {
            opcode::Send::new(types::Fd(i as RawFd), p.as_ptr(), p.len() as u32)
        };
        e.flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(OP_SEND | i as u64)
    };
    Sq { ring: &mut ring }.push(accept())?;
    println!("ready");
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(ENTRIES as usize);
    loop {
        // One io_uring_enter: submit what the last turn queued, wait for one.
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        cqes.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut sq = Sq { ring: &mut ring };
        for (ud, res, flags) in cqes.drain(..) {
            let i = (ud & !OP_MASK) as usize;
            match ud & OP_MASK {
                OP_ACCEPT => {
                    if !cqueue::more(flags) {
                        sq.push(accept())?;
                    }
                    if res == -libc::ECONNABORTED {
                        continue;
                    }
                    if res < 0 {
                        return Err(io::Error::from_raw_os_error(-res));
                    }
                    let i = res as usize;
                    if !o.fixed {
                        set_nodelay(res);
                    }
                    *slot(&mut conns, i) = Some(Conn {
                        receiving: true,
                        ..Conn::default()
                    });
                    sq.push(recv(i, &mut rbufs))?;
                }
                OP_RECV => {
                    let c = conns[i].as_mut().expect("recv for a live slot");
                    let mut ok = res > 0;
                    if let (Some(br), Some(bid)) = (bufs.as_mut(), cqueue::buffer_select(flags)) {
                        ok = ok && c.feed(br.buf(bid, res as usize));
                        br.give(bid);
                    } else if res > 0 {
                        ok = c.feed(&rbufs[i][..res as usize]);
                    }
                    let rearm = !o.multishot || !cqueue::more(flags);
                    c.receiving = !rearm;
                    // Out of provided buffers ends a multishot recv: arm again.
                    let nobufs = res == -libc::ENOBUFS;
                    if (ok || nobufs) && !c.closing {
                        if c.pending(resp).is_some() && !c.sending {
                            c.sending = true;
                            sq.push(send(i, c.pending(resp).unwrap()))?;
                        }
                        if rearm {
                            c.receiving = true;
                            sq.push(recv(i, &mut rbufs))?;
                        }
                    } else {
                        close_conn(&mut sq, &mut conns, i, o)?;
                    }
                }
                OP_SEND => {
                    let c = conns[i].as_mut().expect("send for a live slot");
                    c.sending = false;
                    if res < 0 || c.closing {
                        close_conn(&mut sq, &mut conns, i, o)?;
                        continue;
                    }
                    c.sent(res as usize, resp.len());
                    if let Some(p) = c.pending(resp) {
                        c.sending = true;
                        sq.push(send(i, p))?;
                    }
                }
                OP_CLOSE => {}
                _ => unreachable!("unknown user_data {ud:#x}"),
            }
        }
    }
}

/// Ends a connection once no operation uses its slot: a multishot recv
/// still armed is ended by shutting the socket down.
fn close_conn(sq: &mut Sq, conns: &mut [Option<Conn>], i: usize, o: Uring) -> io::Result<()> {
    let c = conns[i].as_mut().expect("live slot");
    if !c.closing && c.receiving {
        let shut = if o.fixed {
            opcode::Shutdown::new(types::Fixed(i as u32), libc::SHUT_RDWR).build()
        } else {
            opcode::Shutdown::new(types::Fd(i as RawFd), libc::SHUT_RDWR).build()
        };
        sq.push(shut.user_data(OP_CLOSE | i as u64))?;
    }
    c.closing = true;
    if c.sending || c.receiving {
        return Ok(());
    }
    conns[i] = None;
    if o.fixed {
        sq.push(
            opcode::Close::new(types::Fixed(i as u32))
                .build()
                .user_data(OP_CLOSE | i as u64),
        )?;
    } else {
        // SAFETY: the descriptor is this connection's and no operation uses it.
        unsafe { libc::close(i as RawFd) };
    }
    Ok(())
}
