//! `FollowSymlinks off` against a race: a directory inside DocumentRoot
//! swapped with a symlink to a directory outside it (renameat2
//! RENAME_EXCHANGE in a loop) while clients ask for what the file plugins
//! open next to the main file: precompressed siblings (`serve_file`),
//! typeless names (`typeless_uri`), a directory listing (`serve_dir`), an
//! error document's precompressed sibling (`error_doc`), and a CGI script
//! (`serve_cgi`, which starts it in a handle on its directory).
//! No response may carry anything from outside the root, with the
//! open-file cache on (a short TTL, so that entries are looked up again
//! many times during the run) and off.
//!
//! The server runs as one process (`--no-master`); the swapping goes on for
//! a bounded time (`RUN`), long enough that the code before the fix leaked
//! in every run.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// How long the swapping and the requests go on.
const RUN: Duration = Duration::from_millis(2500);

/// Client connections, each asking for every kind in turn.
const CLIENTS: usize = 6;

/// What every response is checked for: it appears only in the files
/// outside the root (contents and a file name).
const SECRET: &str = "SECRET";

/// The requests, each reaching a different plugin's open.
const KINDS: [(&str, &str); 5] = [
    (
        "precompressed",
        "GET /d/f.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    ),
    ("typeless", "GET /d/page HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("listing", "GET /d/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    (
        "error document",
        "GET /nothing HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    ),
    ("cgi", "GET /d/run.cgi HTTP/1.1\r\nHost: x\r\n\r\n"),
];

/// What one kind of request got: responses, those with the safe contents,
/// those with the secret (and the first of them, for the message).
#[derive(Default)]
struct Seen {
    responses: u64,
    safe: u64,
    leaked: u64,
    example: Option<String>,
}

fn conf(cache: &str) -> String {
    format!(
        "Workers 1
LogLevel error
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {{dir}}/www
    OpenFileCache {cache}
    Precompressed gzip
    ErrorDocument 404 /d/err.html
    CGI_Match \\.cgi$
    Plugin error_doc
    Plugin serve_cgi
    Plugin uri_to_file
    Plugin typeless_uri
    Plugin fast_mime_map
    Plugin serve_dir
    Plugin serve_file
</Server>
"
    )
}

/// Inside the root `d/` (safe contents) and the symlink `link` to the
/// outside directory (secret contents, one secret name), which the
/// swapper exchanges with `d`.
fn prepare(d: &TempDir) {
    d.write("www/d/f.txt", "safe plain");
    d.write("www/d/f.txt.gz", "safe gzip");
    d.write("www/d/page.html", "safe page");
    d.write("www/d/err.html", "safe error");
    d.write("www/d/err.html.gz", "safe error gzip");
    d.write("outside/f.txt", "SECRET plain");
    d.write("outside/f.txt.gz", "SECRET gzip");
    d.write("outside/page.html", "SECRET page");
    d.write("outside/err.html.gz", "SECRET error gzip");
    d.write("outside/SECRET-name.txt", "x");
    for (dir, says) in [("www/d", "safe cgi"), ("outside", "SECRET cgi")] {
        let script = d.write(
            &format!("{dir}/run.cgi"),
            format!("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n{says}'\n"),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink(d.path().join("outside"), d.path().join("www/link")).unwrap();
}

/// Exchange `a` and `b` (one a directory, the other a symlink) until
/// `stop`; returns how many swaps were made.
fn swap_until(a: &Path, b: &Path, stop: &AtomicBool) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes()).unwrap();
    let b = std::ffi::CString::new(b.as_os_str().as_bytes()).unwrap();
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: renameat2 with two valid C strings.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
        swaps += 1;
    }
    swaps
}

/// One response from a keep-alive connection: status, body, and whether
/// the server will close the connection after it.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status = status.ok_or_else(|| std::io::Error::other(format!("bad status {line:?}")))?;
    let (mut len, mut close, mut chunked) = (0, false, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        if name.eq_ignore_ascii_case("content-length") {
            len = value.trim().parse().map_err(std::io::Error::other)?;
        }
        if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
            close = true;
        }
        // A CGI script's output may be streamed.
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    if !chunked {
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok((status, body, close));
    }
    let mut body = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim_end(), 16).map_err(std::io::Error::other)?;
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok((status, body, close));
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// Requests of every kind in turn until `until`; what each kind got.
fn client(srv_addr: std::net::SocketAddr, until: Instant) -> [Seen; 5] {
    let mut seen: [Seen; 5] = Default::default();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i = 0;
    while Instant::now() < until {
        let (w, r) = conn.get_or_insert_with(|| {
            let s = TcpStream::connect(srv_addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (s.try_clone().unwrap(), BufReader::new(s))
        });
        let kind = i % KINDS.len();
        i += 1;
        w.write_all(KINDS[kind].1.as_bytes()).unwrap();
        let (status, body, close) = read_response(r).expect("a response");
        let body = String::from_utf8_lossy(&body);
        let seen = &mut seen[kind];
        seen.responses += 1;
        if body.contains(SECRET) {
            seen.leaked += 1;
            let start: String = body.chars().take(300).collect();
            seen.example
                .get_or_insert_with(|| format!("{status} {start}"));
        } else if body.contains("safe") || body.contains("page.html") {
            seen.safe += 1;
        }
        if close {
            conn = None;
        }
    }
    seen
}

/// Run the race against a server with `OpenFileCache cache` and assert
/// that no response of any kind leaked.
fn race(cache: &str) {
    let srv = Axkit::start_single_with(&conf(cache), prepare);
    // Before the race: each kind serves the safe files.
    let safe = srv.raw(
        b"GET /d/f.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_response(&safe.0).unwrap().text(), "safe gzip");
    assert_eq!(srv.get("/d/page").text(), "safe page");
    assert!(srv.get("/d/").text().contains("page.html"));
    let error = srv.raw(
        b"GET /nothing HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse_response(&error.0).unwrap().text(), "safe error gzip");
    assert_eq!(srv.get("/d/run.cgi").text(), "safe cgi");

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (a, b) = (
            srv.dir.path().join("www/d"),
            srv.dir.path().join("www/link"),
        );
        let stop = stop.clone();
        std::thread::spawn(move || swap_until(&a, &b, &stop))
    };
    let until = Instant::now() + RUN;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let addr = srv.addr;
            std::thread::spawn(move || client(addr, until))
        })
        .collect();
    let mut totals: [Seen; 5] = Default::default();
    for c in clients {
        for (total, seen) in totals.iter_mut().zip(c.join().unwrap()) {
            total.responses += seen.responses;
            total.safe += seen.safe;
            total.leaked += seen.leaked;
            total.example = total.example.take().or(seen.example);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let report: Vec<String> = KINDS
        .iter()
        .zip(&totals)
        .map(|((name, _), s)| {
            format!(
                "{name}: {} of {} leaked, {} safe (e.g. {:?})",
                s.leaked, s.responses, s.safe, s.example
            )
        })
        .collect();
    eprintln!(
        "OpenFileCache {cache}: {swaps} swaps; {}",
        report.join("; ")
    );
    // The race was run: every kind was also served from inside the root.
    for (name, s) in KINDS.iter().map(|k| k.0).zip(&totals) {
        assert!(s.safe > 0, "{name}: never served");
    }
    assert!(
        totals.iter().all(|s| s.leaked == 0),
        "{}",
        report.join("\n")
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_leaks_nothing_with_the_cache() {
    race("1000 10ms");
}

#[test]
fn a_directory_swapped_for_a_symlink_leaks_nothing_without_the_cache() {
    race("Off");
}
