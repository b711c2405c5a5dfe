//! Server-sent events and long polls, end to end with the real binary and
//! a Lua script over real sockets: a stream on one worker gets what a
//! request on the other broadcast; events are framed to the exact byte
//! (multi-line data, fields, refused line breaks); `Last-Event-ID` reaches
//! the script; a subscription keeps what comes between subscribing and
//! waiting; a long poll wakes with a message or times out with 204;
//! streams end at once on SIGHUP and SIGTERM rather than holding the
//! drain up, and the oldest ends for a new client when they fill a
//! worker; a client that leaves frees its waiter.
//!
//! Event framing and the subscription queue are unit-tested in
//! `crates/axkit-sse` and `crates/axkit-shared`.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// `/events` streams (a `hello` event naming the worker and the
/// `Last-Event-ID`, then every message on channel `ch`; with `?hold`, it
/// waits for a message on `go` between subscribing and starting the
/// stream); `/frames` sends fixed events and returns; `/poll?t=` is a
/// long poll on `ch`, `/wait` one made by hand (`shared.wait`) and marked
/// reclaimable; `/send?m=[&c=]` broadcasts (answering the sender's
/// worker); `/state` answers this worker's waiters and the streams ended;
/// `/keep` keeps a subscription in a global, `/kept` waits on it.
const LIVE: &str = r#"
function hook_response(r)
  local p = r:path()
  if p == "/events" then
    local sub = shared.subscribe("ch")
    if r:param("hold") then shared.wait("go", 20) end
    local s = r:sse{ heartbeat = false }
    s:send{ event = "hello", data = "worker " .. r:worker() .. "\nlast " .. tostring(s:last_event_id()) }
    for m in sub do
      if not s:send{ data = m } then break end
    end
    shared.incr("ended", 1, 0)
    r:log("info", "stream ended: " .. (s:closed() or "by the script"))
  elseif p == "/frames" then
    local s = r:sse{ heartbeat = false, retry = 2.5 }
    s:send{ event = "multi", id = "7", data = "a\nb\r\nc\rd\n" }
    s:send(42)
    s:comment("two\nlines")
    for _, bad in ipairs{ { event = "x\ny" }, { id = "1\r2" } } do
      local ok, err = pcall(s.send, s, bad)
      s:send{ event = "refused", data = tostring(ok) .. " " .. tostring(err):match("an event %a+ cannot contain [%a ,]+") }
    end
  elseif p == "/poll" then
    local m, why = r:long_poll("ch", tonumber(r:param("t")))
    r:set_header("X-Why", why or "message")
  elseif p == "/wait" then
    r:set_reclaimable()
    local m, why = shared.wait("ch", 300)
    r:set_header("X-Why", why or "message")
    r:write(m or "")
  elseif p == "/send" then
    shared.broadcast(r:param("c") or "ch", r:param("m"))
    r:write((r:worker()))
  elseif p == "/state" then
    r:write(shared.waiting(), " ", shared.get("ended") or 0)
  elseif p == "/keep" then
    kept = shared.subscribe("kept")
  elseif p == "/kept" then
    local m, why = kept:next(0)
    r:write(tostring(m), " ", why)
  else
    return 404
  end
  return OK
end
"#;

const LIMIT: Duration = Duration::from_secs(20);

fn start(workers: usize, global: &str) -> Axkit {
    let conf = lua::conf(
        &format!("Workers {workers}\nLuaTimeLimit 60s\n{global}"),
        "    Plugin live",
    );
    Axkit::start_with(&conf, &[], |d| {
        d.write("plugins/live.lua", LIVE);
    })
}

fn start_single() -> Axkit {
    lua::start(&lua::conf("", "    Plugin live"), &[("live", LIVE)])
}

fn text(srv: &Axkit, path: &str) -> String {
    let r = get(srv, path, "");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

/// An open event stream: the head, then the body as it comes, dechunked.
struct Stream {
    s: TcpStream,
    raw: Vec<u8>,
    head: String,
    body: Vec<u8>,
}

impl Stream {
    /// Send the request and read the head.
    fn open(srv: &Axkit, path: &str, headers: &str) -> Stream {
        let mut stream = Stream::request(srv, path, headers);
        stream.read_head();
        stream
    }

    fn request(srv: &Axkit, path: &str, headers: &str) -> Stream {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
        Stream {
            s,
            raw: Vec::new(),
            head: String::new(),
            body: Vec::new(),
        }
    }

    fn read_head(&mut self) {
        while !self.raw.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(self.fill(), "no head: {}", lossy(&self.raw));
        }
        let end = self.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        self.head = lossy(&self.raw[..end]);
        self.raw.drain(..end);
    }

    /// Read once more (false at EOF, failing after `LIMIT`).
    fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16384];
        self.s.set_read_timeout(Some(LIMIT)).unwrap();
        let n = self.s.read(&mut buf).expect("the stream went quiet");
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Move the whole chunks read so far into `body`; whether the last
    /// chunk came.
    fn dechunk(&mut self) -> bool {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return false;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap(), 16)
                .unwrap_or_else(|_| panic!("not chunked: {}", lossy(&self.raw)));
            if self.raw.len() < eol + 2 + size + 2 {
                return false;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
            if size == 0 {
                return true;
            }
        }
    }

    /// Read until the body has `needle`; the body up to and including it
    /// is consumed and returned.
    fn until(&mut self, needle: &str) -> String {
        loop {
            self.dechunk();
            if let Some(at) = self
                .body
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
            {
                let got = self.body.drain(..at + needle.len()).collect::<Vec<_>>();
                return lossy(&got);
            }
            assert!(
                self.fill(),
                "ended before {needle:?}: {}",
                lossy(&self.body)
            );
        }
    }

    /// The next event (up to its blank line), past comments (the one
    /// that opens a stream without `retry`, heartbeats).
    fn event(&mut self) -> String {
        loop {
            let frame = self.until("\n\n");
            if !frame.starts_with(':') {
                return frame;
            }
        }
    }

    /// Read to the end of the response, within `limit`; whether it ended
    /// with its last chunk (a clean end, not a cut connection).
    fn ends_within(&mut self, limit: Duration) -> bool {
        let (rest, ended) = read_to_end_within(&mut self.s, limit);
        assert!(
            !matches!(ended, common::Ended::TimedOut),
            "the stream did not end within {limit:?}"
        );
        self.raw.extend_from_slice(&rest);
        self.dechunk()
    }
}

#[test]
fn an_event_broadcast_on_one_worker_reaches_streams_on_both() {
    let srv = start(2, "");
    // The kernel picks the worker of each connection: open streams until
    // both workers have some.
    let mut streams = Vec::new();
    let mut workers = std::collections::HashSet::new();
    while workers.len() < 2 {
        assert!(streams.len() < 200, "every stream went to one worker");
        let mut s = Stream::open(&srv, "/events", "");
        let hello = s.event();
        let worker = hello
            .split("worker ")
            .nth(1)
            .unwrap()
            .split('\n')
            .next()
            .unwrap()
            .to_string();
        workers.insert(worker);
        streams.push(s);
    }
    // One request on one worker, so the other worker's streams get it from
    // another process.
    let sender = text(&srv, "/send?m=across");
    assert!(workers.contains(&sender));
    for s in &mut streams {
        assert_eq!(s.event(), "data: across\n\n");
    }
}

#[test]
fn events_are_framed_exactly() {
    let srv = start_single();
    let mut s = Stream::open(&srv, "/frames", "Connection: close\r\n");
    assert!(s.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", s.head);
    for h in [
        "Content-Type: text/event-stream\r\n",
        "Cache-Control: no-cache\r\n",
        "X-Accel-Buffering: no\r\n",
        "Transfer-Encoding: chunked\r\n",
    ] {
        assert!(s.head.contains(h), "{h:?} in {}", s.head);
    }
    assert!(
        s.ends_within(LIMIT),
        "ended with its last chunk: {}",
        lossy(&s.body)
    );
    assert_eq!(
        lossy(&s.body),
        "retry: 2500\n\n\
         event: multi\nid: 7\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n\
         data: 42\n\n\
         : two\n: lines\n\n\
         event: refused\ndata: false an event name cannot contain CR or LF\n\n\
         event: refused\ndata: false an event id cannot contain CR, LF or NUL\n\n"
    );
}

#[test]
fn last_event_id_reaches_the_script_and_a_subscription_keeps_what_came_before_the_wait() {
    let srv = start_single();
    let mut s = Stream::request(&srv, "/events?hold=1", "Last-Event-ID: 41\r\n");
    // Subscribed, and held between subscribing and waiting: a broadcast
    // now must still reach the stream.
    assert!(wait_until(LIMIT, || text(&srv, "/state") == "2 0"));
    text(&srv, "/send?m=early");
    text(&srv, "/send?c=go&m=now");
    s.read_head();
    assert_eq!(s.event(), "event: hello\ndata: worker 0\ndata: last 41\n\n");
    assert_eq!(s.event(), "data: early\n\n");
    text(&srv, "/send?m=later");
    assert_eq!(s.event(), "data: later\n\n");
}

/// A subscription ends with the request that made it, also one that
/// never waited (the request's state is then reused by the next one).
#[test]
fn a_subscription_kept_past_its_request_is_closed() {
    let srv = start_single();
    for _ in 0..2 {
        text(&srv, "/keep");
        assert_eq!(text(&srv, "/kept"), "nil closed");
    }
}

#[test]
fn a_long_poll_wakes_with_a_message_or_times_out() {
    let srv = start_single();
    let timed_out = get(&srv, "/poll?t=0.2", "");
    assert_eq!(timed_out.status, 204);
    assert_eq!(timed_out.header("X-Why"), Some("timeout"));
    assert_eq!(timed_out.header("Cache-Control"), Some("no-cache"));
    assert!(timed_out.body.is_empty());

    let mut poll = TcpStream::connect(srv.addr).unwrap();
    poll.write_all(b"GET /poll?t=60 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(wait_until(LIMIT, || text(&srv, "/state") == "1 0"));
    let sent = Instant::now();
    text(&srv, "/send?m=news");
    let (bytes, _) = read_to_end_within(&mut poll, LIMIT);
    let r = parse_response(&bytes).unwrap_or_else(|| panic!("{}", lossy(&bytes)));
    assert!(sent.elapsed() < LIMIT);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Why"), Some("message"));
    assert_eq!(r.text(), "news");
}

#[test]
fn streams_end_at_once_on_sighup_and_sigterm() {
    // A drain that waited for the streams would take ShutdownTimeout.
    let mut srv = start(2, "ShutdownTimeout 300s");
    let mut streams: Vec<_> = (0..4)
        .map(|_| {
            let mut s = Stream::open(&srv, "/events", "");
            s.event();
            s
        })
        .collect();
    srv.signal(libc::SIGHUP);
    for s in &mut streams {
        assert!(s.ends_within(LIMIT), "ended with its last chunk");
    }
    srv.wait_stderr("stream ended: stopping", LIMIT);
    srv.wait_stderr("configuration reloaded", LIMIT);

    let mut s = Stream::open(&srv, "/events", "");
    s.event();
    srv.signal(libc::SIGTERM);
    assert!(s.ends_within(LIMIT), "ended with its last chunk");
    assert!(srv.wait_exit(LIMIT).is_some(), "the server exited");
}

/// Streams never time out (and with heartbeats never look idle), so a
/// worker full of them and long polls would serve no new client for as
/// long as they last. Both are reclaimable: when no idle connection can
/// make room, the oldest is ended as its client expects one to end
/// (a long poll answers 204, as on its timeout; a stream ends with its
/// last chunk) and its connection closes, and the new client is served.
#[test]
fn a_worker_full_of_streams_ends_the_oldest_for_a_new_client() {
    let mut srv = start(
        1,
        "MaxConnections 4\nKeepAliveTimeout 60s\nHeaderTimeout 60s\nLogLevel LOGINFO",
    );
    let mut poll = TcpStream::connect(srv.addr).unwrap();
    poll.write_all(b"GET /poll?t=300 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(wait_until(LIMIT, || text(&srv, "/state") == "1 0"));
    let mut streams: Vec<_> = (0..3)
        .map(|_| {
            let mut s = Stream::open(&srv, "/events", "");
            s.event();
            s
        })
        .collect();
    // Full: the long poll, the oldest, answers as on its timeout, with
    // `Connection: close`, and closes; the new client is served.
    assert_eq!(get(&srv, "/state", "").status, 200);
    let (bytes, ended) = read_to_end_within(&mut poll, LIMIT);
    let r = parse_response(&bytes).unwrap_or_else(|| panic!("{}", lossy(&bytes)));
    assert_eq!(
        (r.status, r.header("X-Why"), r.header("Connection")),
        (204, Some("stopping"), Some("close"))
    );
    assert!(matches!(ended, common::Ended::Closed), "{ended:?}");
    // Full of streams again: the oldest ends with its last chunk, then
    // the connection closes; the new client is served.
    streams.push(Stream::open(&srv, "/events", ""));
    streams[3].event();
    assert_eq!(get(&srv, "/state", "").status, 200);
    let oldest = &mut streams[0];
    let (rest, ended) = read_to_end_within(&mut oldest.s, LIMIT);
    oldest.raw.extend_from_slice(&rest);
    assert!(oldest.dechunk(), "no last chunk: {}", lossy(&oldest.raw));
    assert!(matches!(ended, common::Ended::Closed), "{ended:?}");
    srv.wait_stderr("stream ended: stopping", LIMIT);
    // The others go on.
    text(&srv, "/send?m=still");
    for s in &mut streams[1..] {
        assert_eq!(s.event(), "data: still\n\n");
    }
    srv.wait_stderr(
        "MaxConnections (4) reached: closed 0 idle connection(s) and ended 1 reclaimable response(s)",
        LIMIT,
    );
}

/// A long poll a script makes by hand is reclaimable once it says so
/// (`r:set_reclaimable`): its wait ends with `stopping`, and what it
/// answers closes the connection.
#[test]
fn a_hand_made_long_poll_marked_reclaimable_makes_room() {
    let srv = start(
        1,
        "MaxConnections 2\nKeepAliveTimeout 60s\nHeaderTimeout 60s",
    );
    let mut waiting = TcpStream::connect(srv.addr).unwrap();
    waiting
        .write_all(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(wait_until(LIMIT, || text(&srv, "/state") == "1 0"));
    let mut stream = Stream::open(&srv, "/events", "");
    stream.event();
    assert_eq!(get(&srv, "/state", "").status, 200);
    let (bytes, ended) = read_to_end_within(&mut waiting, LIMIT);
    let r = parse_response(&bytes).unwrap_or_else(|| panic!("{}", lossy(&bytes)));
    assert_eq!(
        (r.status, r.header("X-Why"), r.header("Connection")),
        (200, Some("stopping"), Some("close"))
    );
    assert!(matches!(ended, common::Ended::Closed), "{ended:?}");
}

#[test]
fn a_client_that_leaves_frees_its_waiter() {
    let mut srv = start_single();
    let mut s = Stream::open(&srv, "/events", "");
    s.event();
    assert_eq!(text(&srv, "/state"), "1 0");
    // No heartbeat: the leaving is seen by the wait itself.
    drop(s);
    assert!(wait_until(LIMIT, || text(&srv, "/state") == "0 1"));
    srv.wait_stderr("stream ended: closed", LIMIT);
}

/// A subscription that keeps up but whose worker falls behind (its event
/// loop busy in the script that broadcasts 3,000 messages of 16,000 bytes
/// through a 64K ring) counts every message it did not get in
/// `sub:dropped()`, which scripts rely on to detect a gap; the hand-off to
/// the busy event loop holds a ring's worth, not all 48 MB; and the log
/// says so once, with the count, not once per catch-up.
#[test]
fn every_message_a_subscription_misses_is_counted_in_dropped() {
    let script = r#"
function hook_response(r)
  local sub = shared.subscribe("gap", 65536)
  local m = string.rep("x", 16000)
  for n = 1, 3000 do shared.broadcast("gap", m) end
  local got = 0
  while sub:next(1) do got = got + 1 end
  r:write(got, " ", sub:dropped())
  return OK
end
"#;
    let mut srv = lua::start(
        &lua::conf("BroadcastBuffer 64K\nLuaTimeLimit 60s", "    Plugin gap"),
        &[("gap", script)],
    );
    let before = status_kib(srv.pid(), "VmHWM");
    let t = text(&srv, "/");
    let (got, dropped) = t.split_once(' ').unwrap();
    let (got, dropped): (u64, u64) = (got.parse().unwrap(), dropped.parse().unwrap());
    assert_eq!(got + dropped, 3000, "{t}");
    assert!(dropped > 0, "{t}");
    let grown = status_kib(srv.pid(), "VmHWM") - before;
    assert!(grown < 16 * 1024, "the hand-off took {grown} KiB");
    let log = srv.sync_stderr();
    assert_eq!(
        log.matches("broadcast: this worker fell behind and missed ")
            .count(),
        1,
        "{log}"
    );
}
