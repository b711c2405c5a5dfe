//! The real `axkit` binary against slow, silent, abusive and broken
//! clients, in raw bytes: the header, body and keep-alive deadlines,
//! `KeepAliveTimeout 0` (no keep-alive), MaxKeepAliveRequests, 200
//! garbage inputs that must never break framing,
//! and clients that reset mid-response.
//!
//! Timing assertions are deliberately loose (the deadlines are 1 s, the
//! bounds several seconds). Each test starts its own server
//! (`--no-master`, so that a crashing worker is visible: no master restarts
//! it) and ends by checking that it still serves and logged no panic.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use protocol::*;

/// Short deadlines (1 s) and two requests per connection.
fn deadline_server() -> Axkit {
    start_with("HeaderTimeout 1s\nKeepAliveTimeout 1s\nBodyTimeout 1s\nMaxKeepAliveRequests 2")
}

/// Half a head, then silence: 408 and close after about HeaderTimeout.
#[test]
fn a_stalled_head_gets_408() {
    let mut srv = deadline_server();
    let h = "Host: localhost\r\n";
    let mut s = srv.connect();
    let started = Instant::now();
    s.write_all(format!("GET /1k.txt HTTP/1.1\r\n{h}").as_bytes())
        .unwrap();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(6));
    let took = started.elapsed();
    assert_eq!(status_of(&bytes), 408, "stalled head: {}", lossy(&bytes));
    assert!(closed, "{}", lossy(&bytes));
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.header("Connection"), Some("close"), "{}", lossy(&bytes));
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "took {took:?}"
    );

    assert_alive(&mut srv);
}

/// A client trickling its head (one byte every 150 ms) is not saved by
/// each byte: HeaderTimeout bounds the whole head.
#[test]
fn a_trickled_head_gets_408_within_header_timeout() {
    let mut srv = deadline_server();
    let h = "Host: localhost\r\n";
    let mut s = srv.connect();
    let started = Instant::now();
    let mut cut_off = false;
    for b in format!(
        "GET /1k.txt HTTP/1.1\r\n{h}X-Slow: {}\r\n\r\n",
        "s".repeat(100)
    )
    .bytes()
    {
        if s.write_all(&[b]).is_err() {
            cut_off = true;
            break;
        }
        // The client's pace is what is tested.
        std::thread::sleep(Duration::from_millis(150));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(2));
    assert_eq!(
        status_of(&bytes),
        408,
        "slowloris (cut off while writing: {cut_off}): {}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));
    assert!(started.elapsed() < Duration::from_secs(6));

    assert_alive(&mut srv);
}

/// A connection that sends nothing is closed, silently.
#[test]
fn a_silent_connection_is_closed() {
    let mut srv = deadline_server();
    let mut s = srv.connect();
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(6));
    assert!(closed, "silent connection kept open; got {}", lossy(&bytes));
    assert!(bytes.is_empty(), "answer to nothing: {}", lossy(&bytes));
    assert!(started.elapsed() < Duration::from_secs(5));

    assert_alive(&mut srv);
}

/// A new connection's HeaderTimeout runs from its accept, over the wait
/// for its first byte and the rest of its head (as nginx's
/// `client_header_timeout`): a first byte sent late does not start a new
/// one. On the first server the wait outlasts a sweep and the connection
/// parks; on the second a `disconnect` hook keeps it from parking.
#[test]
fn a_new_connections_head_is_due_header_timeout_after_it_opened() {
    let parks = start_with("HeaderTimeout 3s");
    let stays = Axkit::start_single_with(
        &format!(
            "LogLevel LOGINFO\nHeaderTimeout 3s\nPluginDir {{dir}}/plugins\nPlugin watch\n{STATIC_CONF}"
        ),
        |d| {
            d.write("www/1k.txt", one_k());
            d.write("plugins/watch.lua", "function hook_disconnect(c) return OK end\n");
        },
    );
    let mut clients: Vec<TcpStream> = [&parks, &stays].iter().map(|srv| srv.connect()).collect();
    let started = Instant::now();
    // The client's pace is what is tested: most of the timeout, silent.
    std::thread::sleep(Duration::from_millis(2500));
    for s in &mut clients {
        s.write_all(b"GET /1k.txt HTTP/1.1\r\n").unwrap();
    }
    for (s, which) in clients.iter_mut().zip(["parked", "live"]) {
        let (bytes, closed) = read_until_close(s, Duration::from_secs(8));
        let took = started.elapsed();
        assert_eq!(status_of(&bytes), 408, "{which}: {}", lossy(&bytes));
        assert!(closed, "{which}: {}", lossy(&bytes));
        // Due at 3 s (and a sweep); a new timeout from the first byte
        // would end it at 5.5 s.
        assert!(took < Duration::from_millis(4500), "{which}: took {took:?}");
    }

    for mut srv in [parks, stays] {
        assert_alive(&mut srv);
    }
}

/// An idle keep-alive connection is closed after about KeepAliveTimeout.
#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let mut srv = deadline_server();
    let mut s = srv.connect();
    let mut pending = Vec::new();
    s.write_all(keep_alive_get("/1k.txt").as_bytes()).unwrap();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("Connection"),
        None,
        "first of two allowed requests: {r:?}"
    );
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(6));
    assert!(closed, "idle keep-alive connection kept open");
    assert!(bytes.is_empty(), "{}", lossy(&bytes));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "took {took:?}"
    );

    assert_alive(&mut srv);
}

/// `KeepAliveTimeout 0` is no keep-alive, as in nginx and Apache: the
/// response says close, and the connection closes after it, rather than
/// promising keep-alive and closing under the client's next request.
#[test]
fn a_zero_keep_alive_timeout_is_no_keep_alive() {
    let mut srv = start_with("KeepAliveTimeout 0");
    let (bytes, closed) = exchange(&srv, keep_alive_get("/1k.txt").as_bytes());
    let all = parse_all(&bytes);
    let answers: Vec<_> = all
        .iter()
        .map(|r| (r.status, r.header("Connection")))
        .collect();
    assert_eq!(answers, [(200, Some("close"))], "{}", lossy(&bytes));
    assert!(closed, "{}", lossy(&bytes));

    assert_alive(&mut srv);
}

/// MaxKeepAliveRequests 2: the second response says close, and closes,
/// whether the requests come pipelined or one at a time.
#[test]
fn max_keep_alive_requests_closes_after_the_last() {
    let mut srv = deadline_server();
    let mut s = srv.connect();
    s.write_all(format!("{}{}", keep_alive_get("/1k.txt"), keep_alive_get("/1k.txt")).as_bytes())
        .unwrap();
    let (bytes, closed) = read_until_close(&mut s, LIMIT);
    let all = parse_all(&bytes);
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200],
        "{}",
        lossy(&bytes)
    );
    assert_eq!(all[0].header("Connection"), None, "{}", lossy(&bytes));
    assert_eq!(
        all[1].header("Connection"),
        Some("close"),
        "{}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));
    // ... also when the requests come one at a time.
    let mut s = srv.connect();
    let mut pending = Vec::new();
    s.write_all(keep_alive_get("/1k.txt").as_bytes()).unwrap();
    assert_eq!(read_one(&mut s, false, &mut pending).status, 200);
    s.write_all(keep_alive_get("/1k.txt").as_bytes()).unwrap();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
    let (bytes, closed) = read_until_close(&mut s, LIMIT);
    assert!(closed && bytes.is_empty(), "{}", lossy(&bytes));

    assert_alive(&mut srv);
}

/// A body that stops arriving: nobody reads it, so the response goes out
/// at once; the drain then gives up after BodyTimeout and closes.
#[test]
fn a_stalled_unread_body_is_given_up() {
    let mut srv = deadline_server();
    let h = "Host: localhost\r\n";
    let mut s = srv.connect();
    s.write_all(format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 10\r\n\r\nabc").as_bytes())
        .unwrap();
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(6));
    assert_eq!(status_of(&bytes), 405, "{}", lossy(&bytes));
    assert!(
        closed,
        "stalled body: connection kept open: {}",
        lossy(&bytes)
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    assert_alive(&mut srv);
}

/// A body that keeps trickling in, a byte within each BodyTimeout: the
/// drain has a bound in all (three BodyTimeouts here), or the connection
/// would stay busy, out of the idle table's reach, for as long as the
/// client cares to send.
#[test]
fn a_trickled_unread_body_is_given_up() {
    let mut srv = deadline_server();
    let h = "Host: localhost\r\n";
    let mut s = srv.connect();
    s.write_all(
        format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 100000\r\n\r\nabc").as_bytes(),
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(300));
            if writer.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(15));
    assert_eq!(status_of(&bytes), 405, "{}", lossy(&bytes));
    assert!(closed, "trickled body: connection kept open");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(s);
    trickle.join().unwrap();
    assert_alive(&mut srv);
}

/// 200 garbage inputs, four connections at a time. Most are half-closed
/// after sending, so "waiting for more" ends in EOF at once; every tenth
/// is left open to go through the header/body timeouts.
#[test]
fn garbage_never_breaks_framing() {
    let mut srv = start_with("HeaderTimeout 1s\nKeepAliveTimeout 1s\nBodyTimeout 1s");
    let inputs: Vec<Vec<u8>> = {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        (0..200).map(|i| garbage(&mut rng, i)).collect()
    };
    let addr = srv.addr;
    // What the server did, for the log: "400+close", "close", ...
    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let inputs = &inputs;
                let outcomes = &outcomes;
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for (i, input) in inputs.iter().enumerate().skip(t).step_by(4) {
                        let mut s = TcpStream::connect(addr).unwrap();
                        let started = Instant::now();
                        let _ = s.write_all(input);
                        if i % 10 != 0 {
                            let _ = s.shutdown(Shutdown::Write);
                        }
                        let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(6));
                        let took = started.elapsed();
                        let all = parse_all(&bytes);
                        // Every response is a complete one; errors are 4xx/5xx.
                        // A mutation can leave a valid request (200/404/405),
                        // which is fine as long as the framing was respected.
                        let bad_status = all
                            .iter()
                            .any(|r| !matches!(r.status, 200 | 404 | 405 | 400..=599));
                        let ok = closed && !bad_status && (bytes.is_empty() || !all.is_empty());
                        let tag: Vec<String> = all.iter().map(|r| r.status.to_string()).collect();
                        let tag = format!(
                            "{}{}",
                            tag.join(","),
                            if closed { "+close" } else { "+open" }
                        );
                        *outcomes.lock().unwrap().entry(tag).or_default() += 1;
                        if !ok || took > Duration::from_secs(5) {
                            failures.push(format!(
                                "input {i} {:?}: closed={closed} after {took:?}; response:\n{}",
                                lossy(input),
                                lossy(&bytes)
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!("garbage outcomes: {:?}", outcomes.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} of 200 garbage inputs misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );

    assert_alive(&mut srv);
}

/// Clients that reset mid-response (a large sendfile body), or right after
/// sending, before any response, do not take the worker down.
#[test]
fn clients_that_reset_do_not_take_the_worker_down() {
    let mut srv = start_main();
    for _ in 0..3 {
        let mut s = srv.connect();
        s.write_all(keep_alive_get("/big.bin").as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0 && buf.starts_with(b"HTTP/1.1 200"),
            "{}",
            lossy(&buf[..n])
        );
        reset(s);
    }
    // And one that resets right after sending, before any response.
    for _ in 0..3 {
        let mut s = srv.connect();
        s.write_all(keep_alive_get("/big.bin").as_bytes()).unwrap();
        reset(s);
    }
    // Every one of those connections is closed on the server's side
    // before the worker is checked: it holds its listening socket only.
    assert!(
        wait_until(Duration::from_secs(10), || tcp_sockets(srv.pid()).len()
            == 1),
        "connections left open: {:?}",
        tcp_sockets(srv.pid())
    );

    assert_alive(&mut srv);
}

/// Close with SO_LINGER 0, so the server sees a reset instead of a FIN.
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized value.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
    drop(s);
}

/// Input number `i`: pure random bytes, random bytes from an HTTP-ish
/// alphabet, or a valid request with a few bytes mutated.
fn garbage(rng: &mut Rng, i: usize) -> Vec<u8> {
    const VALID: &[u8] = b"POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    const ALPHABET: &[u8] =
        b"GETPOSTHEAD /%:\r\n\t HTTP/1.01chunkedContent-LengthHost0123456789abcdef;,\x00\x7f\xff";
    let len = 1 + rng.below(300);
    match i % 3 {
        0 => (0..len).map(|_| rng.next() as u8).collect(),
        1 => (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect(),
        _ => {
            let mut v = VALID.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(v.len());
                match rng.below(3) {
                    0 => v[at] = rng.next() as u8,
                    1 => {
                        v.remove(at);
                    }
                    _ => v.insert(at, rng.next() as u8),
                }
            }
            v
        }
    }
}

/// The TCP sockets process `pid` holds (its listeners and connections,
/// as `socket:[INODE]`): its sockets that are not Unix ones.
fn tcp_sockets(pid: i32) -> Vec<String> {
    let unix = std::fs::read_to_string("/proc/net/unix").unwrap();
    // Columns: Num RefCount Protocol Flags Type St Inode Path.
    let unix: HashSet<String> = unix
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6))
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    socket_fds(pid)
        .into_iter()
        .filter(|s| !unix.contains(s))
        .collect()
}
