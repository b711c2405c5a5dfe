//! What becomes of a CGI script's output, through the stock `axkit` binary:
//! headers, Status, local and client redirects, `nph-` scripts, streamed
//! and HEAD responses, keep-alive across CGI responses, malformed or
//! ambiguous output heads (502 with a log line naming the script), a head
//! whose end is cut between two reads, a body
//! longer or shorter than its Content-Length, stderr logged and escaped,
//! and large output to a slow client in flat memory.
//!
//! Every server runs as one process (`--no-master`), so the axkit process
//! is the worker whose children and descriptors the tests inspect.

#[path = "common/cgi.rs"]
mod cgi;
mod common;

use std::io::{Read, Write};
use std::time::Duration;

use cgi::*;
use common::*;

#[test]
fn headers_and_status_from_the_script() {
    let srv = start(&conf("", ""), |d| {
        sh(
            d,
            "headers",
            r"printf 'Status: 201 Made\r\nContent-Type: text/x-a\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Multi:  spaced  \r\n\r\nmade'",
        );
        sh(d, "lf-only", "printf 'Content-Type: text/plain\\n\\nlf'");
        sh(
            d,
            "gone",
            "printf 'Status: 410\\nContent-Type: text/plain\\n\\n'",
        );
        sh(
            d,
            "big",
            "printf 'Content-Type: application/octet-stream\\n\\n'; head -c 5000000 /dev/zero",
        );
        sh(
            d,
            "sized",
            "printf 'Content-Type: text/plain\\nContent-Length: 5\\n\\nhello'",
        );
    });
    let r = get(&srv, "/cgi-bin/headers", "");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Content-Type"), Some("text/x-a"));
    assert_eq!(r.header("X-Multi"), Some("spaced"));
    let cookies = r.header_all("set-cookie");
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(r.text(), "made");
    assert_eq!(get(&srv, "/cgi-bin/lf-only", "").text(), "lf");
    assert_eq!(get(&srv, "/cgi-bin/gone", "").status, 410);
    let r = get(&srv, "/cgi-bin/big", "");
    assert_eq!(r.body.len(), 5_000_000);
    assert!(r.body.iter().all(|&b| b == 0));
    let r = get(&srv, "/cgi-bin/sized", "");
    assert_eq!(
        (r.header("Content-Length"), r.text().as_str()),
        (Some("5"), "hello")
    );
    // HEAD runs the script and sends no body.
    let (bytes, _) =
        srv.raw(b"HEAD /cgi-bin/sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = parse_head_response(&bytes).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        bytes.ends_with(b"\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );

    // Keep-alive across CGI responses: two requests on one connection.
    let mut s = srv.connect();
    s.write_all(
        b"GET /cgi-bin/lf-only HTTP/1.1\r\nHost: x\r\n\r\nGET /cgi-bin/sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].text().as_str(), all[1].text().as_str()),
        ("lf", "hello")
    );
}

/// A sh script body that prints `first` (its head and the start of its
/// body), waits (at most 20 s) for the file `gate` beside the docroot,
/// then prints `rest`: its output is streamed, the test deciding when it
/// goes on.
fn gated(first: &str, gate: &str, rest: &str) -> String {
    format!(
        "printf '{first}'\n\
         i=0; while [ ! -e \"$DOCUMENT_ROOT/../{gate}\" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n\
         printf '{rest}'"
    )
}

/// Read from `s` into `got` until it holds `needle`.
fn read_until(s: &mut std::net::TcpStream, got: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !lossy(got).contains(needle) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before {needle:?}: {}", lossy(got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// Output still coming after the head (the script goes on only once the
/// client has had the first part) is streamed, chunked.
#[test]
fn output_after_the_head_is_streamed_chunked() {
    let srv = start(&conf("", ""), |d| {
        sh(
            d,
            "later",
            &gated("Content-Type: text/plain\\n\\nearly ", "go-on", "late"),
        );
    });
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/later HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "early ");
    std::fs::write(srv.dir.path().join("go-on"), "").unwrap();
    let (rest, closed) = read_until_close(&mut s, Duration::from_secs(30));
    got.extend_from_slice(&rest);
    assert!(closed);
    let r = parse_response(&got).unwrap_or_else(|| panic!("{}", lossy(&got)));
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.text(), "early late");
}

/// A head whose empty line is cut between two reads (its CR in one, its
/// LF in the next) ends there: each read's search goes on from just before
/// the bytes it brought, not from them. The script writes the second part
/// once it has been seen waiting, the first part read by then.
#[test]
fn a_head_that_ends_across_two_reads_ends_there() {
    let srv = start(&conf("", ""), |d| {
        let first = "Content-Type: text/plain\\r\\nX-A: 1\\r\\n\\r";
        sh(d, "split", &gated(first, "go-on", "\\nok"));
    });
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/split HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Waiting: its `sleep` is running.
    let waiting = wait_until(Duration::from_secs(20), || {
        let script = all_children(srv.child.id() as i32);
        script.iter().any(|&p| !children_of(p).is_empty())
    });
    assert!(waiting, "the script never waited");
    std::fs::write(srv.dir.path().join("go-on"), "").unwrap();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(30));
    assert!(closed);
    let r = parse_response(&got).unwrap_or_else(|| panic!("{}", lossy(&got)));
    assert_eq!((r.status, r.header("X-A")), (200, Some("1")));
    assert_eq!(r.text(), "ok");
}

#[test]
fn local_and_client_redirects() {
    let srv = start(&conf("", ""), |d| {
        d.write("www/target.txt", "the target\n");
        sh(
            d,
            "local",
            "printf 'Location: /target.txt\\n\\nthis body is dropped'",
        );
        sh(
            d,
            "remote",
            "printf 'Location: http://example.com/x?y=1\\n\\n'",
        );
        sh(
            d,
            "moved",
            "printf 'Status: 301 Moved\\nLocation: http://example.com/\\n\\n'",
        );
        sh(d, "loop", "printf 'Location: /cgi-bin/loop\\n\\n'");
    });
    let r = get(&srv, "/cgi-bin/local", "");
    assert_eq!((r.status, r.text().as_str()), (200, "the target\n"));
    // From a POST too: the redirect is a GET (serve_file takes no POST)
    // and the request body is dropped.
    let r = post(&srv, "/cgi-bin/local", "text/plain", b"some body");
    assert_eq!((r.status, r.text().as_str()), (200, "the target\n"));
    let r = get(&srv, "/cgi-bin/remote", "");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://example.com/x?y=1"));
    let r = get(&srv, "/cgi-bin/moved", "");
    assert_eq!(
        (r.status, r.header("Location")),
        (301, Some("http://example.com/"))
    );
    assert_eq!(get(&srv, "/cgi-bin/loop", "").status, 500);
}

/// nph-: byte for byte, then the connection closes (even if kept alive).
#[test]
fn nph_output_goes_out_as_it_is_then_the_connection_closes() {
    let srv = start(&conf("", ""), |d| {
        sh(
            d,
            "nph-raw",
            r"printf 'HTTP/1.1 299 Custom\r\nX-Raw: 1\r\n\r\nraw body'",
        );
    });
    let (bytes, closed) = srv.raw(b"GET /cgi-bin/nph-raw HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(bytes, b"HTTP/1.1 299 Custom\r\nX-Raw: 1\r\n\r\nraw body");
    assert!(closed);
}

#[test]
fn malformed_output_is_502_logged_with_the_script() {
    let mut srv = start(&conf("", ""), |d| {
        let cases = [
            ("noheader", "printf 'X-Only: 1\\n\\nbody'"),
            ("badline", "printf 'Content-Type: text/plain\\nthis is not a header\\n\\n'"),
            ("cr", "printf 'Content-Type: text/plain\\nX-A: a\\rb\\n\\n'"),
            ("nul", "printf 'Content-Type: text/plain\\nX-\\000A: 1\\n\\n'"),
            ("badstatus", "printf 'Status: 99x\\n\\n'"),
            ("shortstatus", "printf 'Status: 20\\nContent-Type: text/plain\\n\\n'"),
            ("badlength", "printf 'Content-Type: a/b\\nContent-Length: +5\\n\\nhello'"),
            ("relative", "printf 'Location: elsewhere\\n\\n'"),
            ("huge", "i=0; while [ $i -lt 3000 ]; do echo \"X-Pad-$i: 0123456789012345678901234567890\"; i=$((i+1)); done; echo"),
            ("silent", "exit 3"),
            ("partial", "printf 'Content-Type: text/plain\\n'; exit 0"),
            ("crash", "kill -SEGV $$"),
            ("stderr", "echo 'something broke here' >&2; printf 'Content-Type: text/plain\\n\\nok'"),
            ("forger", "printf 'mine\\r[emerg] FORGED \\033[2J \\377\\n' >&2; printf 'Content-Type: text/plain\\n\\nok'"),
        ];
        for (name, body) in cases {
            script(
                d,
                &format!("cgi-bin/{name}"),
                &format!("#!/bin/sh\n{body}\n"),
            );
        }
        d.write("cgi-bin/notexec", "#!/bin/sh\necho secret source\n");
        d.write("www/notexec.cgi", "#!/bin/sh\necho secret source\n");
        std::fs::create_dir_all(d.path().join("cgi-bin/sub")).unwrap();
    });
    for (name, why) in [
        ("noheader", "no Content-Type, Location or Status"),
        ("badline", "not a header line"),
        ("cr", "invalid header value"),
        ("nul", "invalid header name"),
        ("badstatus", "invalid Status"),
        ("shortstatus", "invalid Status"),
        ("badlength", "invalid Content-Length"),
        ("relative", "neither a local path nor an absolute URL"),
        ("huge", "header block larger than"),
        ("silent", "exited with status 3 without any output"),
        ("partial", "before the end of its header block"),
        ("crash", "killed by signal 11"),
    ] {
        let r = get(&srv, &format!("/cgi-bin/{name}"), "");
        assert_eq!(r.status, 502, "{name}: {}", r.text());
        let line = format!("{}/cgi-bin/{name}: ", srv.dir.path().display());
        let log = srv.wait_stderr(&line, Duration::from_secs(5));
        let ours = log
            .lines()
            .filter(|l| l.contains(&line))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(ours.contains(why), "{name}: expected {why:?} in\n{ours}");
    }
    let r = get(&srv, "/cgi-bin/stderr", "");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    srv.wait_stderr(
        "/cgi-bin/stderr: stderr: something broke here",
        Duration::from_secs(5),
    );
    // A script's stderr is escaped like everything else in the log: a
    // carriage return, a terminal escape and a byte that is not UTF-8
    // cannot hide or rewrite what the line says.
    assert_eq!(get(&srv, "/cgi-bin/forger", "").status, 200);
    let log = srv.wait_stderr("FORGED", Duration::from_secs(5));
    let line = log.lines().find(|l| l.contains("FORGED")).unwrap();
    assert!(
        line.ends_with("/cgi-bin/forger: stderr: mine\\x0d[emerg] FORGED \\x1b[2J \\xff"),
        "{line:?}"
    );

    // Would-be CGIs are never served as files, executable or not.
    for path in ["/cgi-bin/notexec", "/notexec.cgi"] {
        let r = get(&srv, path, "");
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text().contains("secret"));
    }
    srv.wait_stderr(
        "notexec.cgi: not an executable file",
        Duration::from_secs(5),
    );
    assert_eq!(get(&srv, "/cgi-bin/", "").status, 403);
    assert_eq!(get(&srv, "/cgi-bin/sub/", "").status, 403);
    assert_eq!(get(&srv, "/cgi-bin/missing", "").status, 404);
    // The worker is fine.
    assert_eq!(get(&srv, "/cgi-bin/stderr", "").status, 200);
}

#[test]
fn head_announces_the_length_the_script_declared() {
    // A script that honours HEAD sends its Content-Length and no body: the
    // response says what a GET would get, not 0.
    let srv = start(&conf("", ""), |d| {
        script(
            d,
            "cgi-bin/sized",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 5\\n\\n'\n\
             [ \"$REQUEST_METHOD\" = HEAD ] || printf hello\n",
        );
    });
    let r = request(&srv, "HEAD", "/cgi-bin/sized", "");
    assert_eq!((r.status, r.header("Content-Length")), (200, Some("5")));
    let r = get(&srv, "/cgi-bin/sized", "");
    assert_eq!(
        (r.header("Content-Length"), r.text().as_str()),
        (Some("5"), "hello")
    );
    // Kept alive: nothing of a body follows the HEAD response.
    let mut s = srv.connect();
    s.write_all(
        b"HEAD /cgi-bin/sized HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /cgi-bin/sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let text = lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
}

#[test]
fn ambiguous_framing_in_the_output_head_is_502() {
    // Heads a client or a proxy could read two ways: every one is refused,
    // with a log line that says why, and the connection stays in step.
    let mut srv = start(&conf("", ""), |d| {
        let cases = [
            ("two-lengths", "Content-Type: text/plain\\nContent-Length: 5\\nContent-Length: 10\\n\\nhello"),
            ("same-length-twice", "Content-Type: text/plain\\nContent-Length: 5\\ncontent-length: 5\\n\\nhello"),
            ("chunked", "Content-Type: text/plain\\nTransfer-Encoding: chunked\\n\\n5\\r\\nhello\\r\\n0\\r\\n\\r\\n"),
            ("chunked-and-length", "Content-Type: text/plain\\nContent-Length: 5\\nTransfer-Encoding: chunked\\n\\nhello"),
            ("two-statuses", "Status: 200 OK\\nStatus: 404 Not Found\\nContent-Type: text/plain\\n\\nx"),
            ("two-locations", "Location: /a.txt\\nLocation: http://example.com/\\n\\n"),
        ];
        for (name, head) in cases {
            script(
                d,
                &format!("cgi-bin/{name}"),
                &format!("#!/bin/sh\nprintf '{head}'\n"),
            );
        }
        script(
            d,
            "cgi-bin/ok",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 2\\n\\nok'\n",
        );
    });
    for (name, why) in [
        ("two-lengths", "duplicate Content-Length"),
        ("same-length-twice", "duplicate Content-Length"),
        ("chunked", "Transfer-Encoding"),
        ("chunked-and-length", "Transfer-Encoding"),
        ("two-statuses", "duplicate Status"),
        ("two-locations", "duplicate Location"),
    ] {
        // Kept alive, with a second request behind it: that one must be
        // answered as itself.
        let mut s = srv.connect();
        let req = format!(
            "GET /cgi-bin/{name} HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /cgi-bin/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
        let all = parse_all(&bytes);
        assert_eq!(all.len(), 2, "{name}: {}", lossy(&bytes));
        assert_eq!(all[0].status, 502, "{name}: {}", lossy(&bytes));
        assert!(!all[0].text().contains("hello"), "{name}");
        assert_eq!(
            (all[1].status, all[1].text().as_str()),
            (200, "ok"),
            "{name}"
        );
        let line = format!("{}/cgi-bin/{name}: ", srv.dir.path().display());
        let log = srv.wait_stderr(&line, Duration::from_secs(5));
        let ours: Vec<&str> = log.lines().filter(|l| l.contains(&line)).collect();
        assert!(
            ours.iter().any(|l| l.contains(why)),
            "{name}: expected {why:?} in\n{}",
            ours.join("\n")
        );
    }
}

#[test]
fn large_output_to_a_slow_client_keeps_memory_flat() {
    let mut srv = start(&conf("", ""), |d| {
        script(
            d,
            "cgi-bin/gig",
            "#!/bin/sh\necho \"gig pid=$$\" >&2\nprintf 'Content-Type: application/octet-stream\\n\\n'\nexec head -c 1073741824 /dev/zero\n",
        );
    });
    let pid = srv.pid();
    // Warm up the worker's allocator with a first request.
    let _ = get(&srv, "/cgi-bin/missing", "");
    let before = status_kib(pid, "VmRSS");
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/gig HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < 4 << 20 {
        got += s.read(&mut buf).unwrap();
    }
    let script_pid = logged_pid(&mut srv, "gig");
    // Now a slow client: it stops reading for 1.5 s (the stall is what is
    // tested, not a wait). The script could write hundreds of MiB in that
    // time; held back, it cannot get far past what was read.
    std::thread::sleep(Duration::from_millis(1500));
    let during = status_kib(pid, "VmRSS");
    assert!(
        during < before + 16 * 1024,
        "server grew from {before} KiB to {during} KiB"
    );
    let written = bytes_written(script_pid);
    assert!(
        written < 64 << 20,
        "the script wrote {written} bytes to a client that read {got}"
    );
    drop(s);
    assert!(
        wait_until(Duration::from_secs(5), || group_members(script_pid)
            .is_empty()),
        "script outlived its client"
    );
}

/// A body longer than the Content-Length the script printed is cut there
/// (nginx does the same with an upstream's), whether the script had
/// finished by the time its head was read or was still writing: the
/// client gets exactly the length announced and nothing after it, so the
/// next response on the connection is read as itself; the script is named
/// in one error line per request.
#[test]
fn a_body_longer_than_its_content_length_is_cut_and_logged() {
    let mut srv = start(&conf("", ""), |d| {
        sh(
            d,
            "over",
            "printf 'Content-Type: text/plain\\nContent-Length: 5\\n\\nABCDEFGHIJ'",
        );
        sh(
            d,
            "over-later",
            &gated(
                "Content-Type: text/plain\\nContent-Length: 5\\n\\nABC",
                "go-on",
                "DEFGHIJ",
            ),
        );
        sh(
            d,
            "ok",
            "printf 'Content-Type: text/plain\\nContent-Length: 2\\n\\nok'",
        );
    });
    for name in ["over", "over-later"] {
        let mut s = srv.connect();
        let req = format!(
            "GET /cgi-bin/{name} HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /cgi-bin/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        if name == "over-later" {
            read_until(&mut s, &mut got, "ABC");
            std::fs::write(srv.dir.path().join("go-on"), "").unwrap();
        }
        let (rest, closed) = read_until_close(&mut s, Duration::from_secs(30));
        got.extend_from_slice(&rest);
        assert!(closed, "{name}: {}", lossy(&got));
        let all = parse_all(&got);
        assert_eq!(all.len(), 2, "{name}: {}", lossy(&got));
        assert_eq!(
            (
                all[0].status,
                all[0].header("Content-Length"),
                all[0].text().as_str()
            ),
            (200, Some("5"), "ABCDE"),
            "{name}"
        );
        assert_eq!(
            (all[1].status, all[1].text().as_str()),
            (200, "ok"),
            "{name}"
        );
        assert_eq!(
            all[0].len + all[1].len,
            got.len(),
            "{name}: {}",
            lossy(&got)
        );
    }
    let log = srv.stop();
    for name in ["over", "over-later"] {
        let line = format!(
            "{}/cgi-bin/{name}: sent more than the 5 bytes its Content-Length announced",
            srv.dir.path().display()
        );
        assert_eq!(log.matches(&line).count(), 1, "{name}: {log}");
    }
}

/// A body that ends short of the Content-Length the script printed goes
/// out as far as it came, then the connection closes at once (the only
/// way to tell the client that the response is truncated; it must not
/// wait for the rest until a timeout, nor read a next response into it);
/// with no body at all the answer is a 502. Either way the script is
/// named in one error line per request.
#[test]
fn a_body_shorter_than_its_content_length_closes_and_is_logged() {
    let mut srv = start(&conf("", "    CGITimeout 5m"), |d| {
        sh(
            d,
            "short",
            "printf 'Content-Type: text/plain\\nContent-Length: 10\\n\\nABCDE'",
        );
        sh(
            d,
            "short-later",
            &gated(
                "Content-Type: text/plain\\nContent-Length: 10\\n\\nABC",
                "go-on",
                "DE",
            ),
        );
        sh(
            d,
            "empty",
            "printf 'Content-Type: text/plain\\nContent-Length: 10\\n\\n'",
        );
        sh(
            d,
            "ok",
            "printf 'Content-Type: text/plain\\nContent-Length: 2\\n\\nok'",
        );
    });
    let two = |name: &str| {
        format!(
            "GET /cgi-bin/{name} HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /cgi-bin/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    };
    for name in ["short", "short-later"] {
        let mut s = srv.connect();
        s.write_all(two(name).as_bytes()).unwrap();
        let mut got = Vec::new();
        if name == "short-later" {
            read_until(&mut s, &mut got, "ABC");
            std::fs::write(srv.dir.path().join("go-on"), "").unwrap();
        }
        let (rest, closed) = read_until_close(&mut s, Duration::from_secs(30));
        got.extend_from_slice(&rest);
        assert!(closed, "{name}: still open: {}", lossy(&got));
        let text = lossy(&got);
        assert_eq!(status_of(&got), 200, "{name}: {text}");
        assert!(
            text.contains("\r\nContent-Length: 10\r\n"),
            "{name}: {text}"
        );
        assert!(text.ends_with("\r\n\r\nABCDE"), "{name}: {text}");
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{name}: {text}");
    }
    // Nothing of the body came: the head has not gone, a 502 can answer,
    // and the connection carries on.
    let mut s = srv.connect();
    s.write_all(two("empty").as_bytes()).unwrap();
    let (got, closed) = read_until_close(&mut s, Duration::from_secs(30));
    assert!(closed, "{}", lossy(&got));
    let all = parse_all(&got);
    assert_eq!(all.len(), 2, "{}", lossy(&got));
    assert_eq!(all[0].status, 502);
    assert_eq!((all[1].status, all[1].text().as_str()), (200, "ok"));

    let log = srv.stop();
    for (name, sent) in [("short", 5), ("short-later", 5), ("empty", 0)] {
        let line = format!(
            "{}/cgi-bin/{name}: its output ended after {sent} of the 10 bytes its Content-Length \
             announced",
            srv.dir.path().display()
        );
        assert_eq!(log.matches(&line).count(), 1, "{name}: {log}");
    }
}

/// A script that sent the head of the answer it meant to give (a cookie,
/// an encoding, validators, caching) and then failed before any of its
/// body: the 502 that answers instead keeps none of those fields, which
/// describe a response that never came (the cookie of a failed request;
/// a `Content-Encoding` that would garble the error page; validators and
/// caching a cache would keep the page under), and keeps `Retry-After`,
/// which still holds for it.
#[test]
fn a_502_after_the_scripts_head_drops_its_fields() {
    let srv = start(&conf("", ""), |d| {
        sh(
            d,
            "failed",
            "printf 'Content-Type: text/plain\\nContent-Length: 10\\nSet-Cookie: sid=1\\n\
             ETag: \"v1\"\\nLast-Modified: Sun, 06 Dec 2026 00:00:00 GMT\\n\
             Content-Encoding: gzip\\nCache-Control: max-age=3600\\nX-App: 1\\n\
             Retry-After: 7\\n\\n'",
        );
    });
    let r = get(&srv, "/cgi-bin/failed", "");
    assert_eq!(r.status, 502);
    for name in [
        "Set-Cookie",
        "ETag",
        "Last-Modified",
        "Content-Encoding",
        "Cache-Control",
        "X-App",
    ] {
        assert_eq!(r.header(name), None, "{name} kept: {:?}", r.headers);
    }
    assert_eq!(r.header("Retry-After"), Some("7"));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("<h1>502 "), "{}", r.text());
}
