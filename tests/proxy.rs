//! The `proxy` plugin end to end: the real `axkit` in front of origins
//! this file runs (a small HTTP/1.1 server on a thread per connection),
//! which record every request exactly as it came off the wire (head and
//! decoded body, how it was framed) and count the connections they
//! accepted. GET and POST through, hop-by-hop headers removed and the
//! forwarding headers set (exact lists; behind a PROXY protocol header
//! too), a chunked upload, 20 MB each way
//! with the worker's memory bounded, ambiguous framing stopped before the
//! origin, 502 and 504 with their log lines, an upstream's ambiguous
//! framing refused, its interim (1xx) responses bounded, the upstream's
//! keep-alive reused, an HTTPS upstream trusted through
//! `HttpClientCAFile`, retries (never a POST), upstream groups with a server killed
//! and restored, a WebSocket tunnelled, a Lua script routing,
//! `ProxyPassReverse` rewriting the upstream's redirects, a head passed on
//! before a slow body, a head sent a byte at a time read whole, and a
//! HEAD's lengths that disagree refused.

mod common;
#[path = "common/services.rs"]
mod services;
#[path = "common/tls.rs"]
mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A request as the origin received it.
#[derive(Clone, Debug)]
struct Seen {
    /// The request line.
    line: String,
    /// Every header as sent, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The origin: answers by path (see `answer`).
struct Origin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    /// How many of the next connections to close unanswered.
    refuse: Arc<AtomicUsize>,
    /// Close every connection unanswered, open ones at their next request.
    down: Arc<AtomicBool>,
    /// WebSocket connections whose peer (the proxy) closed.
    websockets_ended: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Origin {
    fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (c, s, r, d) = (
            connections.clone(),
            seen.clone(),
            refuse.clone(),
            down.clone(),
        );
        let websockets_ended = Arc::new(AtomicUsize::new(0));
        let w = websockets_ended.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                if r.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    continue;
                }
                if d.load(Ordering::SeqCst) {
                    continue;
                }
                let (s, d, w) = (s.clone(), d.clone(), w.clone());
                std::thread::spawn(move || serve(stream, s, d, w));
            }
        });
        Origin {
            addr,
            connections,
            refuse,
            down,
            websockets_ended,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request reached the origin")
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Serve requests on one connection until the proxy closes it.
fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    down: Arc<AtomicBool>,
    websockets_ended: Arc<AtomicUsize>,
) {
    let mut out = stream.try_clone().unwrap();
    let mut input = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        let mut headers = Vec::new();
        loop {
            // Bytes, not a String: a value may be obs-text.
            let mut raw = Vec::new();
            if input.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
                return;
            }
            let h = String::from_utf8_lossy(&raw);
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut request = Seen {
            line,
            headers,
            body: Vec::new(),
        };
        let path = request.line.split(' ').nth(1).unwrap_or("").to_string();
        // /count answers before it is told about the body, which it
        // counts as it reads.
        let counting = path.ends_with("/count");
        let mut counted = 0u64;
        let mut sum = 0u64;
        let mut take = |bytes: &[u8], request: &mut Seen| {
            if counting {
                counted += bytes.len() as u64;
                sum = bytes
                    .iter()
                    .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
            } else {
                request.body.extend_from_slice(bytes);
            }
        };
        if request
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                input.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut data = vec![0; n + 2];
                input.read_exact(&mut data).unwrap();
                if n == 0 {
                    break;
                }
                take(&data[..n], &mut request);
            }
        } else if let Some(n) = request.header("content-length") {
            let mut left: usize = n.parse().unwrap();
            let mut buf = vec![0; 64 * 1024];
            while left > 0 {
                let n = input.read(&mut buf[..left.min(64 * 1024)]).unwrap();
                assert!(n > 0, "body ended early");
                take(&buf[..n], &mut request);
                left -= n;
            }
        }
        if down.load(Ordering::SeqCst) {
            return;
        }
        seen.lock().unwrap().push(request.clone());
        if request.header("upgrade") == Some("websocket") && !path.contains("/raw") {
            websocket(&request, input, out);
            websockets_ended.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if !answer(&path, &request, counted, sum, &mut out) {
            return;
        }
    }
}

/// The RFC 6455 handshake (for the RFC's own sample key only), then an
/// echo of each masked frame as an unmasked one, until the peer closes.
fn websocket(request: &Seen, mut input: BufReader<TcpStream>, mut out: TcpStream) {
    let accept = match request.header("sec-websocket-key") {
        Some("dGhlIHNhbXBsZSBub25jZQ==") => "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        _ => "unknown key",
    };
    out.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    loop {
        let mut head = [0u8; 2];
        if input.read_exact(&mut head).is_err() {
            return;
        }
        let len = (head[1] & 0x7f) as usize;
        let mut mask = [0u8; 4];
        let mut payload = vec![0u8; len];
        if input.read_exact(&mut mask).is_err() || input.read_exact(&mut payload).is_err() {
            return;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let mut frame = vec![head[0], len as u8];
        frame.extend_from_slice(&payload);
        if out.write_all(&frame).is_err() {
            return;
        }
    }
}

/// A masked text frame of `text` (under 126 bytes), as a client sends.
fn masked_frame(text: &str) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The pattern byte `i` of a generated body.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64))
}

/// The bytes a path's query gives in hex.
fn query_bytes(path: &str) -> Vec<u8> {
    let hex = path.split_once('?').map_or("", |(_, q)| q).as_bytes();
    hex.chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answer one request; false to close the connection.
fn answer(path: &str, request: &Seen, counted: u64, sum: u64, out: &mut TcpStream) -> bool {
    let p = path.split('?').next().unwrap();
    let written = if p.ends_with("/big") {
        // 20 MB in 64 KiB chunks, made as it goes.
        let total: u64 = 20 << 20;
        let mut w = out.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let mut i = 0;
        while w.is_ok() && i < total {
            let n = (64 * 1024).min(total - i);
            let chunk: Vec<u8> = (i..i + n).map(pattern).collect();
            w = out
                .write_all(format!("{n:x}\r\n").as_bytes())
                .and_then(|_| out.write_all(&chunk))
                .and_then(|_| out.write_all(b"\r\n"));
            i += n;
        }
        w.and_then(|_| out.write_all(b"0\r\n\r\n"))
    } else if p.ends_with("/count") {
        let body = format!("{counted} {sum}");
        out.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    } else if p.ends_with("/slow") {
        std::thread::sleep(Duration::from_secs(5));
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
    } else if p.ends_with("/bad") {
        out.write_all(b"not http at all\r\n\r\n")
    } else if p.ends_with("/value") {
        // An `X-Value` field whose bytes the query gives in hex.
        let mut head = b"HTTP/1.1 200 OK\r\nX-Value: ".to_vec();
        head.extend(query_bytes(path));
        head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        out.write_all(&head)
    } else if p.ends_with("/raw") {
        // The whole response, as the query gives it in hex.
        out.write_all(&query_bytes(path))
    } else if p.ends_with("/drip") {
        // As `/raw`, a byte per segment.
        let bytes = query_bytes(path);
        out.set_nodelay(true)
            .and_then(|_| bytes.iter().try_for_each(|b| out.write_all(&[*b])))
    } else if p.ends_with("/huge-head") {
        // A head of 65 KiB, written at once.
        let field = format!("X-Big: {}\r\n", "b".repeat(1000));
        let head = format!(
            "HTTP/1.1 200 OK\r\n{}Content-Length: 2\r\n\r\nok",
            field.repeat(65)
        );
        out.write_all(head.as_bytes())
    } else if p.ends_with("/continue") {
        // As many `100 Continue` as the query says, then the response.
        let n: usize = path.split_once('?').unwrap().1.parse().unwrap();
        let mut all = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(n);
        all.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        out.write_all(&all)
    } else if p.ends_with("/redirect") {
        // The URL the request asked for, in each header that may carry one.
        let to = request.header("X-Location").unwrap_or("");
        out.write_all(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Location: {to}\r\nURI: {to}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
    } else {
        // The body echoed, with hop-by-hop headers of the origin's own
        // that must not reach the client.
        let mut head = String::from(
            "HTTP/1.1 201 Created\r\nX-Origin: yes\r\nConnection: X-Hop\r\nX-Hop: secret\r\n\
             Keep-Alive: timeout=5\r\nServer: origin\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Via: 1.0 other\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n",
        );
        head.push_str(&format!(
            "X-Method: {}\r\n",
            request.line.split(' ').next().unwrap()
        ));
        head.push_str(&format!("Content-Length: {}\r\n\r\n", request.body.len()));
        let mut all = head.into_bytes();
        if !request.line.starts_with("HEAD ") {
            all.extend_from_slice(&request.body);
        }
        out.write_all(&all)
    };
    written.is_ok() && !p.ends_with("/bad")
}

/// A proxy in front of `origin`: `<Location /app>` passes to `/base/`,
/// and the Server passes `/api` to `/v1`.
fn proxy(origin: &Origin, extra: &str) -> Axkit {
    Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\n{extra}\n<Server>\n    Listen 127.0.0.1:0\n    \
         Plugin proxy\n    ProxyPass /api {api}\n    <Location /app>\n        ProxyPass {app}\n    \
         </Location>\n</Server>\n",
        api = origin.url("/v1"),
        app = origin.url("/base/"),
    ))
}

/// `request` on a new connection; the parsed response.
fn send(srv: &Axkit, request: &[u8]) -> Response {
    let (bytes, _) = srv.exchange(request);
    parse_response(&bytes).unwrap_or_else(|| panic!("no response: {:?}", lossy(&bytes)))
}

fn sorted(headers: &[(String, String)]) -> Vec<String> {
    let mut v: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    v.sort();
    v
}

#[test]
fn get_passes_through_with_hop_by_hop_headers_removed_and_forwarding_headers_set() {
    let origin = Origin::start();
    let srv = proxy(&origin, "");
    let r = send(
        &srv,
        b"GET /app/a/b%20c?q=1&r=%2F HTTP/1.1\r\nHost: front.test:8080\r\nConnection: close, X-Drop\r\n\
          X-Drop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n\
          X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n\
          User-Agent: test/1\r\nX-Keep: yes\r\nX-Latin: caf\xe9\r\n\r\n",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let seen = origin.last();
    assert_eq!(seen.line, "GET /base/a/b%20c?q=1&r=%2F HTTP/1.1");
    assert_eq!(
        sorted(&seen.headers),
        sorted(&[
            ("Host".into(), origin.addr.to_string()),
            ("User-Agent".into(), "test/1".into()),
            ("X-Keep".into(), "yes".into()),
            // obs-text passed on as it came (shown here decoded lossily).
            ("X-Latin".into(), "caf\u{fffd}".into()),
            ("X-Forwarded-For".into(), "127.0.0.1".into()),
            ("X-Forwarded-Proto".into(), "http".into()),
            ("X-Forwarded-Host".into(), "front.test:8080".into()),
            (
                "Forwarded".into(),
                "for=127.0.0.1;host=\"front.test:8080\";proto=http".into()
            ),
            ("Via".into(), "1.1 axkit".into()),
        ]),
    );
    // Back: hop-by-hop headers and the origin's Date and Server gone, Via
    // appended, repeated headers kept.
    assert_eq!(r.header("X-Origin"), Some("yes"));
    assert_eq!(r.header("X-Hop"), None);
    assert_eq!(r.header("Keep-Alive"), None);
    assert_eq!(r.header_all("Server"), vec!["AxKit"]);
    assert_eq!(r.header_all("Date").len(), 1);
    assert_ne!(r.header("Date"), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
    assert_eq!(r.header("Via"), Some("1.0 other, 1.1 axkit"));
    assert_eq!(r.header_all("Set-Cookie"), vec!["a=1", "b=2"]);
    assert_eq!(r.header("Content-Length"), Some("0"));

    // The Server's own prefix, by whole segments; HEAD keeps the length.
    let r = send(
        &srv,
        b"HEAD /api/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 201);
    assert_eq!(origin.last().line, "HEAD /v1/x HTTP/1.1");
    let r = send(
        &srv,
        b"GET /apix HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(origin.last().line, "HEAD /v1/x HTTP/1.1");
    // What reaches the origin is the normalised path: no way out of /base.
    let r = send(
        &srv,
        b"GET /app/x/%2e%2e/y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 201);
    assert_eq!(origin.last().line, "GET /base/y HTTP/1.1");
}

#[test]
fn trusted_forwarding_headers_are_appended_to_and_the_host_preserved() {
    let origin = Origin::start();
    let srv = proxy(&origin, "TrustedProxy 127.0.0.1\nProxyPreserveHost On");
    let r = send(
        &srv,
        b"GET /app/ HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\
          X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=7.7.7.7\r\n\
          Via: 1.0 edge\r\n\r\n",
    );
    assert_eq!(r.status, 201);
    let seen = origin.last();
    assert_eq!(seen.line, "GET /base/ HTTP/1.1");
    assert_eq!(seen.header("Host"), Some("front.test"));
    assert_eq!(seen.header("X-Forwarded-For"), Some("6.6.6.6, 127.0.0.1"));
    assert_eq!(seen.header("X-Forwarded-Proto"), Some("https"));
    // The trusted family is X-Forwarded-For: Forwarded is replaced.
    assert_eq!(
        seen.header("Forwarded"),
        Some("for=127.0.0.1;host=front.test;proto=http")
    );
    assert_eq!(seen.header("Via"), Some("1.0 edge, 1.1 axkit"));
}

/// On a `proxy-protocol` listener, this hop's `Forwarded` element names
/// the PROXY header's client and the scheme it says that client used.
#[test]
fn forwarded_says_the_scheme_a_proxy_protocol_header_gives() {
    let origin = Origin::start();
    let srv = Axkit::start_single(&format!(
        "<Server>\n    Listen 127.0.0.1:0 proxy-protocol\n    Plugin proxy\n    \
         ProxyPass /app {app}\n</Server>\n",
        app = origin.url("/base/"),
    ));
    // v2, TCP4 from 192.0.2.9:5555, with PP2_TYPE_SSL: the client used TLS.
    let mut request = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x14".to_vec();
    request.extend_from_slice(&[192, 0, 2, 9, 127, 0, 0, 1, 0x15, 0xb3, 0x01, 0xbb]);
    request.extend_from_slice(&[0x20, 0, 5, 0x01, 0, 0, 0, 0]);
    request
        .extend_from_slice(b"GET /app/ HTTP/1.1\r\nHost: front.test\r\nConnection: close\r\n\r\n");
    assert_eq!(send(&srv, &request).status, 201);
    let seen = origin.last();
    assert_eq!(seen.header("X-Forwarded-Proto"), Some("https"));
    assert_eq!(
        seen.header("Forwarded"),
        Some("for=192.0.2.9;host=front.test;proto=https")
    );
}

#[test]
fn bodies_are_forwarded_framed_as_they_came() {
    let origin = Origin::start();
    let srv = proxy(&origin, "");
    let r = send(
        &srv,
        b"POST /app/echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!((r.status, r.text().as_str()), (201, "hello"));
    let seen = origin.last();
    assert_eq!(seen.header("Content-Length"), Some("5"));
    assert_eq!(seen.header("Transfer-Encoding"), None);
    assert_eq!(r.header("X-Method"), Some("POST"));

    let r = send(
        &srv,
        b"PUT /app/echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (201, "abcdefg"));
    let seen = origin.last();
    assert_eq!(seen.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(seen.header("Content-Length"), None);
}

#[test]
fn twenty_megabytes_stream_each_way() {
    let origin = Origin::start();
    let srv = proxy(&origin, "MaxRequestBody 100M");
    let peak_before = peak_rss_kib(srv.pid());
    // Down: chunked from the origin, chunked to the client.
    let r = send(
        &srv,
        b"GET /app/big HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 20 << 20);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));
    // Up: 20 MB with a Content-Length, written as fast as the proxy takes it.
    let total: usize = 20 << 20;
    let body: Vec<u8> = (0..total as u64).map(pattern).collect();
    let mut s = srv.connect();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(
        format!("POST /app/count HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: {total}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let (bytes, _) = read_to_end_within(&mut s, Duration::from_secs(60));
    let r = parse_response(&bytes).expect("a response");
    assert_eq!(r.text(), format!("{total} {}", checksum(&body)));
    assert_eq!(
        origin.last().header("Content-Length"),
        Some(total.to_string().as_str())
    );
    // Neither body was held whole: the worker's peak memory grew by far
    // less than one of them.
    let grown = peak_rss_kib(srv.pid()) - peak_before;
    assert!(grown < 8 * 1024, "peak RSS grew by {grown} KiB");
}

/// A process's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: i32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn upstream_failures_are_502_and_504_and_logged() {
    let origin = Origin::start();
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut srv = Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\n<Server>\n    Listen 127.0.0.1:0\n    Plugin proxy\n    \
         ProxyPass /down http://{closed}/\n    ProxyPass /up {up}\n    ProxyReadTimeout 300ms\n</Server>\n",
        up = origin.url("/"),
    ));
    let r = srv.get("/down/x");
    assert_eq!(r.status, 502);
    srv.wait_stderr_line(
        &["proxy: GET /down/x HTTP/1.1: upstream", "connect", "(502)"],
        Duration::from_secs(10),
    );
    let r = srv.get("/up/bad");
    assert_eq!(r.status, 502);
    srv.wait_stderr_line(
        &["GET /up/bad", "malformed response head", "(502)"],
        Duration::from_secs(10),
    );
    let r = srv.get("/up/slow");
    assert_eq!(r.status, 504);
    srv.wait_stderr_line(
        &["GET /up/slow", "timed out", "(504)"],
        Duration::from_secs(10),
    );
}

/// The upstream's values are passed on without a second check of their
/// bytes (`HeaderValue::parsed`): a value its parser takes must be one the
/// core would send, and one with a control byte, or folded, a 502.
#[test]
fn upstream_values_with_control_bytes_are_refused_and_the_rest_passed_on() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "");
    for bad in [
        &b"a\0b"[..],
        b"a\x01b",
        b"a\x7fb",
        b"a\rb",
        b"a\r\n b",
        b"a\r\n\tb",
        b"a\x1bb",
    ] {
        let path = format!("/app/value?{}", hex(bad));
        let r = srv.get(&path);
        assert_eq!(r.status, 502, "{bad:?}");
        assert_eq!(r.header("X-Value"), None, "{bad:?}");
        srv.wait_stderr_line(
            &[&format!("GET {path} "), "malformed response head", "(502)"],
            Duration::from_secs(10),
        );
    }
    // HTAB, obs-text (not UTF-8: passed on lossily) and the rest of
    // the printable bytes go through.
    let printable: Vec<u8> = (b' '..=b'~').collect();
    for (good, sent) in [
        (&b"a\tb"[..], "a\tb".to_string()),
        (b"caf\xe9", "caf\u{fffd}".to_string()),
        (b"caf\xc3\xa9", "caf\u{e9}".to_string()),
        (&printable, String::from_utf8(printable.clone()).unwrap()),
    ] {
        let r = srv.get(&format!("/app/value?{}", hex(good)));
        assert_eq!(r.status, 200, "{good:?}");
        assert_eq!(r.header("X-Value"), Some(sent.trim()), "{good:?}");
    }
}

/// An upstream response whose framing could be read two ways is a 502,
/// never read by its `Content-Length` (RFC 9112 §6.3; nginx does the
/// same), and the connection it came on is not used again; one with both
/// `chunked` and a length is read as chunked and its connection closed
/// after it. A head over 64 KiB is a 502 however it arrives.
#[test]
fn ambiguous_upstream_framing_is_refused_and_its_connection_dropped() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "");
    let mut client = srv.connect();
    let mut get = |path: &str| {
        client
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        read_one_response(&mut client).unwrap().expect("a response")
    };
    let plain = format!(
        "/app/raw?{}",
        hex(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    );
    // One upstream connection, kept for the next request.
    assert_eq!(get(&plain).text(), "ok");
    assert_eq!(get(&plain).text(), "ok");
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    // After each case, a plain request needs a new upstream connection.
    let mut connections = 1;
    let mut plain_on_a_new_connection = |get: &mut dyn FnMut(&str) -> Response, case: &str| {
        assert_eq!(get(&plain).text(), "ok", "{case:?}");
        connections += 1;
        assert_eq!(
            origin.connections.load(Ordering::SeqCst),
            connections,
            "{case:?}"
        );
    };
    for (fields, logged) in [
        (
            "Transfer-Encoding: \r\nContent-Length: 2",
            "unsupported transfer coding",
        ),
        (
            "Transfer-Encoding: ,\r\nContent-Length: 2",
            "unsupported transfer coding",
        ),
        (
            "Transfer-Encoding: gzip\r\nContent-Length: 2",
            "unsupported transfer coding",
        ),
        ("Transfer-Encoding: gzip", "unsupported transfer coding"),
        (
            "Transfer-Encoding: chunked, chunked",
            "unsupported transfer coding",
        ),
        (
            "Transfer-Encoding: chunked\u{a0}",
            "unsupported transfer coding",
        ),
        (
            "Content-Length: 2\r\nContent-Length: 3",
            "invalid Content-Length",
        ),
        ("Content-Length: 2, 3", "invalid Content-Length"),
        ("Content-Length: +2", "invalid Content-Length"),
    ] {
        let response = format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\nok");
        let path = format!("/app/raw?{}", hex(response.as_bytes()));
        assert_eq!(get(&path).status, 502, "{fields:?}");
        srv.wait_stderr_line(
            &[&format!("GET {path} "), logged, "(502)"],
            Duration::from_secs(10),
        );
        plain_on_a_new_connection(&mut get, fields);
    }
    // Both framings, chunked first or last: the chunks are the body.
    for fields in [
        "Transfer-Encoding: chunked\r\nContent-Length: 9",
        "Content-Length: 9\r\nTransfer-Encoding: chunked",
    ] {
        let response = format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\n2\r\nok\r\n0\r\n\r\n");
        let r = get(&format!("/app/raw?{}", hex(response.as_bytes())));
        assert_eq!((r.status, r.text()), (200, "ok".to_string()), "{fields:?}");
        plain_on_a_new_connection(&mut get, fields);
    }
    assert_eq!(get("/app/huge-head").status, 502);
    srv.wait_stderr_line(
        &["GET /app/huge-head ", "response head over 64 KiB", "(502)"],
        Duration::from_secs(10),
    );
}

/// A response to HEAD whose `Content-Length`s disagree is a 502, logged,
/// as it is after a GET: no body is read after it, but its length is
/// passed on (the last one given, it was).
#[test]
fn a_head_response_with_lengths_that_disagree_is_a_502() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "");
    for (fields, status) in [
        ("Content-Length: 5\r\nContent-Length: 7", 502),
        ("Content-Length: 5, 7", 502),
        ("Content-Length: 5\r\nContent-Length: 5", 200),
    ] {
        let response = format!("HTTP/1.1 200 OK\r\n{fields}\r\n\r\n");
        let path = format!("/app/raw?{}", hex(response.as_bytes()));
        let (bytes, _) = srv.exchange(
            format!("HEAD {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let r = parse_head_response(&bytes)
            .unwrap_or_else(|| panic!("{fields:?}: no response: {:?}", lossy(&bytes)));
        assert_eq!(r.status, status, "{fields:?}");
        if status == 502 {
            srv.wait_stderr_line(
                &[&format!("HEAD {path} "), "invalid Content-Length", "(502)"],
                Duration::from_secs(10),
            );
        } else {
            assert_eq!(r.header("Content-Length"), Some("5"), "{fields:?}");
        }
    }
}

/// A head sent a byte per segment, after an interim response sent so,
/// comes through whole: the proxy parses it only when the bytes that came
/// may end it (a head's last byte; lines ending in LF too), and once a
/// head is parsed the next is looked for afresh. A malformed head sent so
/// that never ends (the origin then waits) is a 502 as a malformed head,
/// when the read times out: the parser has its say on what came.
#[test]
fn a_head_sent_a_byte_at_a_time_comes_through_whole() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "ProxyReadTimeout 300ms");
    let value: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let response = format!(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Drip: {value}\r\nX-Lf: a\n\
         Content-Length: 2\n\r\nok"
    );
    let r = srv.get(&format!("/app/drip?{}", hex(response.as_bytes())));
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    assert_eq!(r.header("X-Drip"), Some(value.as_str()));
    assert_eq!(r.header("X-Lf"), Some("a"));

    let path = format!("/app/drip?{}", hex(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n"));
    assert_eq!(srv.get(&path).status, 502);
    srv.wait_stderr_line(
        &[&format!("GET {path} "), "malformed response head", "(502)"],
        Duration::from_secs(10),
    );
}

/// The upstream's head reaches the client as soon as the proxy has read
/// it when no body came with it, as nginx sends it: an origin that sends
/// its head and then thinks (an event stream before its first event) used
/// to leave the client without one until the first piece of body. The
/// origin here releases its body only once the client holds the head.
/// A chunked body that then fails (a chunk size that overflows) closes
/// the connection after the head, without the last chunk, so that it
/// never looks complete; one that fails in the read that brought the
/// head is a 502, logged.
#[test]
fn the_head_goes_out_before_a_slow_body() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    // No upstream connection kept: each exchange is accepted here.
    let mut srv = Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\nProxyKeepAlive 0\n<Server>\n    \
         Listen 127.0.0.1:0\n    Plugin proxy\n    ProxyPass /app http://{}/\n</Server>\n",
        upstream.local_addr().unwrap()
    ));
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Origin: yes\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let overflow = "ffffffffffffffffffff\r\n";
    let exchange = |path: &str| {
        let mut client = srv.connect();
        client
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .unwrap();
        let (mut origin, _) = upstream.accept().unwrap();
        read_head(&mut origin);
        (client, origin)
    };
    for (path, body, rest) in [
        (
            "/app/events",
            "d\r\ndata: first\n\n\r\n0\r\n\r\n",
            "d\r\ndata: first\n\n\r\n0\r\n\r\n",
        ),
        ("/app/cut", overflow, ""),
    ] {
        let (mut client, mut origin) = exchange(path);
        origin.write_all(head.as_bytes()).unwrap();
        // Within the client's read timeout, with no body sent yet.
        let got = lossy(&read_head(&mut client));
        assert!(got.starts_with("HTTP/1.1 200 "), "{path}: {got}");
        assert!(
            got.contains("Content-Type: text/event-stream\r\n"),
            "{path}: {got}"
        );
        origin.write_all(body.as_bytes()).unwrap();
        let (bytes, ended) = read_to_end_within(&mut client, Duration::from_secs(10));
        assert_eq!(lossy(&bytes), rest, "{path}");
        assert!(matches!(ended, Ended::Closed), "{path}: {ended:?}");
    }
    // The head and the bad chunk size in one write: nothing has gone.
    let (mut client, mut origin) = exchange("/app/at-once");
    origin
        .write_all(format!("{head}{overflow}").as_bytes())
        .unwrap();
    let (bytes, _) = read_to_end_within(&mut client, Duration::from_secs(10));
    let r = parse_response(&bytes).unwrap_or_else(|| panic!("no response: {:?}", lossy(&bytes)));
    assert_eq!(r.status, 502);
    // The upstream's headers described the response that failed.
    assert_eq!(r.header("X-Origin"), None);
    srv.wait_stderr_line(
        &["GET /app/cut ", "malformed chunked body", "(502)"],
        Duration::from_secs(10),
    );
    srv.wait_stderr_line(
        &["GET /app/at-once ", "malformed chunked body", "(502)"],
        Duration::from_secs(10),
    );
}

/// Interim (1xx) responses are read past up to 64 KiB of them, as a head
/// is bounded: 1,000 `100 Continue` before the response go through, 40,000
/// (a megabyte) are a 502. They used to be read for as long as the
/// upstream sent them, each read within `ProxyReadTimeout`: an upstream
/// sending them without end held the request, and kept the worker parsing
/// (3.2 s of CPU in 8 s), past every timeout.
#[test]
fn interim_responses_are_bounded() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "");
    let r = srv.get("/app/continue?1000");
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
    let r = srv.get("/app/continue?40000");
    assert_eq!(r.status, 502);
    srv.wait_stderr_line(
        &[
            "GET /app/continue?40000 ",
            "interim (1xx) responses over 64 KiB",
            "(502)",
        ],
        Duration::from_secs(10),
    );
}

#[test]
fn upstream_connections_are_kept_alive() {
    let origin = Origin::start();
    let srv = proxy(&origin, "");
    let mut s = srv.connect();
    for i in 0..5 {
        s.write_all(format!("GET /app/n{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_one_response(&mut s).unwrap().expect("a response");
        assert_eq!(r.status, 201);
    }
    // From other client connections too.
    for _ in 0..3 {
        assert_eq!(srv.get("/app/x").status, 201);
    }
    assert_eq!(origin.count(), 8);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn idempotent_requests_are_retried_and_a_post_never() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "ProxyNextUpstreamTries 3");
    // The origin closes the connection without answering.
    origin.refuse.store(1, Ordering::SeqCst);
    let r = send(
        &srv,
        b"POST /app/p HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
    );
    assert_eq!(r.status, 502);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    assert_eq!(origin.count(), 0);
    origin.refuse.store(2, Ordering::SeqCst);
    let r = srv.get("/app/g");
    assert_eq!(r.status, 201);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 4);
    assert_eq!(origin.last().line, "GET /base/g HTTP/1.1");
    srv.wait_stderr_line(
        &[
            "proxy: GET /app/g HTTP/1.1: upstream",
            "trying again (2 of 3 failed)",
        ],
        Duration::from_secs(10),
    );
    // When every try fails: 502, after exactly that many.
    let origin = Origin::start();
    let srv = proxy(&origin, "ProxyNextUpstreamTries 2");
    origin.refuse.store(5, Ordering::SeqCst);
    assert_eq!(srv.get("/app/g").status, 502);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
}

impl Origin {
    /// How many requests for `path` reached this origin.
    fn served(&self, line: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.line.starts_with(line))
            .count()
    }

    /// Close every connection unanswered, or serve again (a server
    /// stopped and restarted, as the proxy sees it).
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

fn group_proxy(a: &Origin, b: &Origin, lines: &str) -> Axkit {
    Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\n<Upstream pool>\n    Server {a}\n    Server {b}\n{lines}\n\
         </Upstream>\n<Server>\n    Listen 127.0.0.1:0\n    Plugin proxy\n    \
         ProxyPass /g upstream://pool/base\n</Server>\n",
        a = a.addr,
        b = b.addr,
    ))
}

#[test]
fn a_group_balances_and_health_checks_take_a_killed_server_out_and_back() {
    let (a, b) = (Origin::start(), Origin::start());
    let mut srv = group_proxy(&a, &b, "    HealthCheck /health 200ms");
    for _ in 0..4 {
        assert_eq!(srv.get("/g/x").status, 201);
    }
    assert_eq!((a.served("GET /base/x"), b.served("GET /base/x")), (2, 2));
    assert!(a.served("GET /health") > 0);
    a.set_down(true);
    srv.wait_stderr_line(
        &[
            "proxy: upstream pool:",
            &a.addr.to_string(),
            "is down: health check",
        ],
        Duration::from_secs(10),
    );
    for _ in 0..6 {
        assert_eq!(srv.get("/g/x").status, 201);
    }
    assert_eq!((a.served("GET /base/x"), b.served("GET /base/x")), (2, 8));
    a.set_down(false);
    srv.wait_stderr_line(
        &["proxy: upstream pool:", &a.addr.to_string(), "is up again"],
        Duration::from_secs(10),
    );
    for _ in 0..4 {
        assert_eq!(srv.get("/g/x").status, 201);
    }
    assert_eq!((a.served("GET /base/x"), b.served("GET /base/x")), (4, 10));
}

#[test]
fn a_failed_server_is_marked_down_and_the_next_one_tried() {
    let (a, b) = (Origin::start(), Origin::start());
    a.set_down(true);
    let mut srv = Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\nProxyNextUpstreamTries 2\n<Upstream pool>\n    \
         Server {a} weight=3\n    Server {b}\n    FailTimeout 1m\n</Upstream>\n<Server>\n    \
         Listen 127.0.0.1:0\n    Plugin proxy\n    ProxyPass /g upstream://pool/base\n</Server>\n",
        a = a.addr,
        b = b.addr,
    ));
    // The heavier server goes first, fails, and the request goes on to b.
    assert_eq!(srv.get("/g/x").status, 201);
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    srv.wait_stderr_line(
        &[
            "GET /g/x",
            "upstream pool:",
            &a.addr.to_string(),
            "marked down",
        ],
        Duration::from_secs(10),
    );
    // Then it is left alone for the FailTimeout.
    for _ in 0..5 {
        assert_eq!(srv.get("/g/x").status, 201);
    }
    assert_eq!(a.connections.load(Ordering::SeqCst), 1);
    assert_eq!(b.served("GET /base/x"), 6);
}

/// `MaxFails 0` is nginx's `max_fails=0`: failures never mark a server
/// down, so the failing one keeps its turns (each request then goes on to
/// the other). It used to be refused at load.
#[test]
fn max_fails_0_never_marks_a_server_down() {
    let (a, b) = (Origin::start(), Origin::start());
    a.set_down(true);
    let srv = Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\nProxyNextUpstreamTries 2\n<Upstream pool>\n    \
         Server {a} weight=3\n    Server {b}\n    MaxFails 0\n</Upstream>\n<Server>\n    \
         Listen 127.0.0.1:0\n    Plugin proxy\n    ProxyPass /g upstream://pool/base\n</Server>\n",
        a = a.addr,
        b = b.addr,
    ));
    for _ in 0..8 {
        assert_eq!(srv.get("/g/x").status, 201);
    }
    // Marked down, it would have been tried once (see above).
    assert!(a.connections.load(Ordering::SeqCst) > 1);
    assert_eq!(b.served("GET /base/x"), 8);
}

#[test]
fn upstream_groups_are_checked_when_the_config_loads() {
    let dir = TempDir::new("proxy-check");
    for (text, error) in [
        (
            "<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n ProxyPass /g upstream://nope/\n</Server>\n",
            "ProxyPass: no <Upstream nope> in the config",
        ),
        (
            "<Upstream u>\n Server 127.0.0.1:1 weight=x\n</Upstream>\n<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n</Server>\n",
            "Upstream u: Server: expected weight=N (1 to 1000), got \"weight=x\"",
        ),
        (
            "<Upstream u>\n Balance hash body\n Server 127.0.0.1:1\n</Upstream>\n<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n</Server>\n",
            "Balance hash: expected client, uri, header:NAME or cookie:NAME",
        ),
        (
            "<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n ProxyPassReverse api http://b/\n</Server>\n",
            "ProxyPassReverse (plugin proxy): the prefix must start with /, got \"api\"",
        ),
        (
            "<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n ProxyPassReverse /g upstream://nope/\n</Server>\n",
            "ProxyPassReverse: no <Upstream nope> in the config",
        ),
        (
            "<Upstream u>\n Server ftp://127.0.0.1:1\n</Upstream>\n<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n</Server>\n",
            "Server: expected HOST:PORT or https://HOST:PORT, got \"ftp://127.0.0.1:1\"",
        ),
        (
            "ProxyTrustedCA /nonexistent/ca.pem\n<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n</Server>\n",
            "ProxyTrustedCA (plugin proxy): /nonexistent/ca.pem: no such file",
        ),
    ] {
        let conf = dir.write("axkit.conf", text);
        let out = std::process::Command::new(BIN)
            .args(["--check", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        let stderr = lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(stderr.contains(error), "{text}: {stderr}");
    }
}

#[test]
fn a_lua_script_picks_the_upstream_per_request() {
    let (a, b) = (Origin::start(), Origin::start());
    let mut srv = Axkit::start_single_with(
        &format!(
            "PluginDir {{dir}}/plugins\nPlugin logging/warn\nLogLevel LOGINFO\n\
             <Upstream a>\n    Server {a}\n</Upstream>\n<Upstream b>\n    Server {b}\n</Upstream>\n\
             <Server>\n    Listen 127.0.0.1:0\n    Plugin route\n    Plugin proxy\n    \
             ProxyPass /r upstream://a/base\n</Server>\n",
            a = a.addr,
            b = b.addr,
        ),
        |dir| {
            dir.write(
                "plugins/route.lua",
                "function hook_post_read_request(r)\n  local to = r:header(\"X-Route\")\n  \
                 if to then r:note(\"upstream\", to) end\nend\n",
            );
        },
    );
    assert_eq!(get(&srv, "/r/x", "").status, 201);
    assert_eq!(a.last().line, "GET /base/x HTTP/1.1");
    assert_eq!(get(&srv, "/r/x", "X-Route: b\r\n").status, 201);
    assert_eq!(b.last().line, "GET /x HTTP/1.1");
    let url = format!("X-Route: {}\r\n", b.url("/other/"));
    assert_eq!(get(&srv, "/r/y?z", &url).status, 201);
    assert_eq!(b.last().line, "GET /other/y?z HTTP/1.1");
    assert_eq!((a.count(), b.count()), (1, 2));
    assert_eq!(get(&srv, "/r/x", "X-Route: nope\r\n").status, 502);
    srv.wait_stderr_line(
        &["upstream://nope/x", "no such upstream group"],
        Duration::from_secs(10),
    );
    assert_eq!(get(&srv, "/r/x", "X-Route: ftp://h/\r\n").status, 502);
    srv.wait_stderr_line(
        &[
            "\"ftp://h/\" (note upstream)",
            "not an http:// or https:// URL nor a group name",
        ],
        Duration::from_secs(10),
    );
}

/// A WebSocket handshake through the proxy (the RFC's sample key).
const WS_HANDSHAKE: &[u8] =
    b"GET /app/ws HTTP/1.1\r\nHost: front\r\nConnection: keep-alive, Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A response head, read byte by byte so that nothing after it is taken.
fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    head
}

#[test]
fn a_websocket_is_tunnelled_both_ways() {
    let origin = Origin::start();
    let srv = proxy(&origin, "");
    let mut s = srv.connect();
    // The first frame rides with the handshake: it must wait in the proxy
    // until the tunnel is up, and not be lost.
    let mut hello = WS_HANDSHAKE.to_vec();
    hello.extend_from_slice(&masked_frame("first"));
    s.write_all(&hello).unwrap();
    let head = read_head(&mut s);
    let r = parse_head_response(&head).unwrap();
    assert_eq!(r.status, 101, "{}", lossy(&head));
    assert_eq!(r.header("Upgrade"), Some("websocket"));
    assert_eq!(r.header("Connection"), Some("Upgrade"));
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let seen = origin.last();
    assert_eq!(seen.line, "GET /base/ws HTTP/1.1");
    assert_eq!(seen.header("Upgrade"), Some("websocket"));
    assert_eq!(seen.header("Connection"), Some("Upgrade"));
    assert_eq!(
        seen.header("Sec-WebSocket-Key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    let mut echo = [0u8; 7];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x05first");
    for text in ["second", "a longer third message"] {
        s.write_all(&masked_frame(text)).unwrap();
        let mut echo = vec![0u8; 2 + text.len()];
        s.read_exact(&mut echo).unwrap();
        assert_eq!(&echo[2..], text.as_bytes());
    }
    // The client leaves: the proxy closes the origin's side too.
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || {
        origin.websockets_ended.load(Ordering::SeqCst) == 1
    }));
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn ambiguous_framing_never_reaches_the_origin() {
    let origin = Origin::start();
    let srv = proxy(&origin, "");
    for (request, expected) in [
        (&b"POST /app/e HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..], 400),
        (&b"POST /app/e HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..], 400),
        (&b"POST /app/e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"[..], 501),
        (&b"POST /app/e HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"[..], 400),
    ] {
        let (bytes, _) = srv.exchange(request);
        assert_eq!(status_of(&bytes), expected, "{:?}: {}", lossy(request), lossy(&bytes));
    }
    // A body whose chunked framing breaks halfway: the origin never gets
    // a request it could take for complete.
    let (bytes, _) = srv.exchange(
        b"POST /app/e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
    );
    assert_eq!(status_of(&bytes), 400, "{}", lossy(&bytes));
    assert_eq!(origin.count(), 0);
    // Chunk extensions and trailers are the client's framing, not passed
    // on: the origin (whose parser takes neither) gets plain chunks.
    let r = send(
        &srv,
        b"POST /app/e HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (201, "abc"));
    assert_eq!(origin.last().header("Transfer-Encoding"), Some("chunked"));
}

#[test]
fn an_https_upstream_is_trusted_through_http_client_ca_file() {
    let dir = TempDir::new("proxy-tls");
    let Some(server) = tls::tls_server(dir.path()) else {
        return;
    };
    let conf = |global: &str| {
        format!(
            "Plugin logging/warn\nLogLevel LOGINFO\n{global}\n<Server>\n    Listen 127.0.0.1:0\n    \
             Plugin proxy\n    ProxyPass /s https://localhost:{}/\n</Server>\n",
            server.port
        )
    };
    let ca = dir.path().join("ca.pem");
    let trusting = Axkit::start_single(&conf(&format!("HttpClientCAFile {}", ca.display())));
    let r = trusting.get("/s/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("s_server"), "{}", r.text());
    let mut plain = Axkit::start_single(&conf(""));
    assert_eq!(plain.get("/s/").status, 502);
    plain.wait_stderr_line(
        &["GET /s/", "UnknownIssuer", "(502)"],
        Duration::from_secs(10),
    );
}

/// `Server https://HOST:PORT` in an `<Upstream>`: TLS to that server,
/// trusted through `ProxyTrustedCA` (the proxy's alone), refused without
/// it, and taken unchecked only under an explicit `ProxyVerify Off`.
#[test]
fn an_https_server_of_a_group_is_trusted_through_proxy_trusted_ca() {
    let dir = TempDir::new("proxy-tls-group");
    let Some(server) = tls::tls_server(dir.path()) else {
        return;
    };
    let conf = |global: &str| {
        format!(
            "Plugin logging/warn\nLogLevel LOGINFO\n{global}\n<Upstream tls>\n    \
             Server https://localhost:{}\n    HealthCheck / 1s\n</Upstream>\n<Server>\n    \
             Listen 127.0.0.1:0\n    Plugin proxy\n    ProxyPass /s upstream://tls/\n</Server>\n",
            server.port
        )
    };
    let ca = dir.path().join("ca.pem");
    let mut trusting = Axkit::start_single(&conf(&format!("ProxyTrustedCA {}", ca.display())));
    let r = trusting.get("/s/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("s_server"), "{}", r.text());
    // The health check goes over TLS too: it fails without the CA, and
    // passes with it (by the time the untrusting proxy's first check
    // failed, the trusting one, started before, has made its own).
    let mut untrusting = Axkit::start_single(&conf(""));
    assert_eq!(untrusting.get("/s/").status, 502);
    untrusting.wait_stderr_line(
        &["GET /s/", "UnknownIssuer", "(502)"],
        Duration::from_secs(10),
    );
    untrusting.wait_stderr_line(
        &[
            "upstream tls: localhost:",
            "is down: health check",
            "UnknownIssuer",
        ],
        Duration::from_secs(10),
    );
    assert!(
        !trusting.sync_stderr().contains("is down"),
        "{}",
        trusting.stderr()
    );
    let unchecked = Axkit::start_single(&conf("ProxyVerify Off"));
    let r = unchecked.get("/s/");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn an_idle_tunnel_is_closed_after_the_read_timeout() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "ProxyReadTimeout 1s");
    let mut s = srv.connect();
    s.write_all(WS_HANDSHAKE).unwrap();
    assert_eq!(status_of(&read_head(&mut s)), 101);
    // Traffic keeps it open past the limit (pauses of a third of it, the
    // whole longer than it)…
    for text in ["a", "b", "c", "d", "e"] {
        std::thread::sleep(Duration::from_millis(300));
        s.write_all(&masked_frame(text)).unwrap();
        let mut echo = [0u8; 3];
        s.read_exact(&mut echo).unwrap();
    }
    // …silence closes both sides.
    let (rest, ended) = read_to_end_within(&mut s, Duration::from_secs(10));
    assert!(
        rest.is_empty() && matches!(ended, Ended::Closed),
        "{ended:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        origin.websockets_ended.load(Ordering::SeqCst) == 1
    }));
    srv.wait_stderr_line(
        &["GET /app/ws", "tunnel idle for 1s, closed"],
        Duration::from_secs(10),
    );
}

#[test]
fn proxy_pass_reverse_rewrites_the_upstreams_urls_to_the_clients_prefix() {
    let origin = Origin::start();
    let srv = Axkit::start_single(&format!(
        "Plugin logging/warn\n<Upstream g>\n    Server {addr}\n</Upstream>\n<Server>\n    \
         Listen 127.0.0.1:0\n    Plugin proxy\n    ProxyPass /api {api}\n    ProxyPassReverse /api {api}\n    \
         <Location /app>\n        ProxyPass {app}\n        ProxyPassReverse {app}\n    </Location>\n    \
         <Location /grp>\n        ProxyPass upstream://g/base/\n        ProxyPassReverse upstream://g/base/\n    \
         </Location>\n    <Location /plain>\n        ProxyPass {app}\n    </Location>\n</Server>\n",
        addr = origin.addr,
        api = origin.url("/v1"),
        app = origin.url("/base/"),
    ));
    let redirect = |path: &str, to: &str| {
        let r = get(&srv, path, &format!("X-Location: {to}\r\n"));
        assert_eq!(r.status, 302, "{path} {to}");
        let all: Vec<String> = ["Location", "Content-Location", "URI"]
            .iter()
            .map(|h| r.header(h).unwrap_or("").to_string())
            .collect();
        assert!(all.iter().all(|v| *v == all[0]), "{path} {to}: {all:?}");
        all[0].clone()
    };
    for (path, to, expected) in [
        // The Location's prefix, by its one-word form.
        (
            "/app/redirect",
            origin.url("/base/login?next=/x"),
            "/app/login?next=/x".to_string(),
        ),
        ("/app/redirect", origin.url("/base/"), "/app/".to_string()),
        // The upstream's host compares without case.
        (
            "/app/redirect",
            origin.url("/base/a").replace("http://", "HTTP://"),
            "/app/a".to_string(),
        ),
        // The two-word form, by whole segments.
        (
            "/api/redirect",
            origin.url("/v1/users/7"),
            "/api/users/7".to_string(),
        ),
        ("/api/redirect", origin.url("/v1"), "/api".to_string()),
        ("/api/redirect", origin.url("/v10/x"), origin.url("/v10/x")),
        // Elsewhere on the upstream, a path alone, another host: as sent.
        (
            "/app/redirect",
            origin.url("/other/"),
            origin.url("/other/"),
        ),
        (
            "/app/redirect",
            "/base/x".to_string(),
            "/base/x".to_string(),
        ),
        (
            "/app/redirect",
            "http://elsewhere/base/x".to_string(),
            "http://elsewhere/base/x".to_string(),
        ),
        // A group: each of its servers.
        (
            "/grp/redirect",
            origin.url("/base/in/group"),
            "/grp/in/group".to_string(),
        ),
        // Without ProxyPassReverse nothing changes.
        (
            "/plain/redirect",
            origin.url("/base/x"),
            origin.url("/base/x"),
        ),
    ] {
        assert_eq!(redirect(path, &to), expected, "{path} {to}");
    }
}

/// A 101 from the upstream that does not switch to a protocol the client
/// offered (no `Upgrade` at all, or another one) is a 502: never a bare
/// 101 on a connection that then goes on as HTTP, where a front proxy
/// would have switched to a tunnel and the next request would pass
/// unseen.
#[test]
fn a_101_without_the_offered_upgrade_is_a_502() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "");
    for (switch, why) in [
        ("Connection: Upgrade\r\n", "no Upgrade"),
        (
            "Connection: Upgrade\r\nUpgrade: h2c\r\n",
            "another protocol",
        ),
    ] {
        let answer = format!("HTTP/1.1 101 Switching Protocols\r\n{switch}\r\n");
        let request = format!(
            "GET /app/raw?{} HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\n\r\nGET /app/next HTTP/1.1\r\nHost: front\r\n\
             Connection: close\r\n\r\n",
            hex(answer.as_bytes())
        );
        let (bytes, _) = srv.exchange(request.as_bytes());
        let text = lossy(&bytes);
        assert!(text.starts_with("HTTP/1.1 502 "), "{why}: {text}");
        assert!(!text.contains(" 101 "), "{why}: {text}");
        srv.wait_stderr_line(
            &["101 without an Upgrade the client asked for (502)"],
            Duration::from_secs(10),
        );
    }
}

/// Only `websocket` is tunnelled unless `ProxyUpgrade` lists more: an
/// `h2c` upgrade (with its `HTTP2-Settings`) goes upstream as a plain
/// HTTP/1.1 request, so that an h2c-capable backend never opens a tunnel
/// whose later streams would pass every Location's rules unseen; `h2c`
/// cannot be listed at all.
#[test]
fn only_the_listed_upgrades_are_tunnelled_and_h2c_never() {
    let origin = Origin::start();
    let srv = Axkit::start_single(&format!(
        "Plugin logging/warn\n<Server>\n    Listen 127.0.0.1:0\n    Plugin proxy\n    \
         <Location /app>\n        ProxyPass {app}\n    </Location>\n    \
         <Location /other>\n        ProxyPass {app}\n        ProxyUpgrade websocket foo\n    \
         </Location>\n</Server>\n",
        app = origin.url("/base/"),
    ));
    let r = send(
        &srv,
        b"GET /app/x HTTP/1.1\r\nHost: front\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(r.status, 201);
    let seen = origin.last();
    assert_eq!(seen.line, "GET /base/x HTTP/1.1");
    for name in ["Upgrade", "HTTP2-Settings"] {
        assert_eq!(seen.header(name), None, "{name}");
    }
    assert_ne!(seen.header("Connection"), Some("Upgrade"));
    // Nor an HTTP2-Settings that the Connection header did not name.
    send(
        &srv,
        b"GET /app/y HTTP/1.1\r\nHost: front\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(origin.last().header("HTTP2-Settings"), None);

    // Another protocol: plain HTTP by default, tunnelled where listed.
    let switch =
        hex(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n");
    let ask = |path: &str| {
        let mut s = srv.connect();
        s.write_all(
            format!(
                "GET {path}/raw?{switch} HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\n\
                 Upgrade: h2c, foo\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let head = read_head(&mut s);
        (status_of(&head), origin.last())
    };
    let (status, seen) = ask("/other");
    assert_eq!(status, 101);
    assert_eq!(seen.header("Upgrade"), Some("foo"));
    // Not listed here: the upstream's 101 is not what was asked for.
    let (status, seen) = ask("/app");
    assert_eq!(status, 502);
    assert_eq!(seen.header("Upgrade"), None);

    let dir = TempDir::new("proxy-upgrade");
    let conf = dir.write(
        "axkit.conf",
        "<Server>\n Listen 127.0.0.1:0\n Plugin proxy\n ProxyUpgrade websocket h2c\n</Server>\n",
    );
    let out = std::process::Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        lossy(&out.stderr).contains("ProxyUpgrade (plugin proxy): h2c is not tunnelled"),
        "{}",
        lossy(&out.stderr)
    );
}

/// An upstream `Location` whose host holds a non-ASCII character where
/// the `ProxyPassReverse` URL's authority ends is compared as bytes: it is
/// not that URL, and goes to the client as sent (it made the worker panic
/// slicing inside the character: a 500).
#[test]
fn proxy_pass_reverse_leaves_a_non_ascii_location_alone() {
    let origin = Origin::start();
    let base = origin.url("/base/");
    let srv = Axkit::start_single(&format!(
        "Plugin logging/warn\n<Server>\n    Listen 127.0.0.1:0\n    Plugin proxy\n    \
         <Location /app>\n        ProxyPass {base}\n        ProxyPassReverse {base}\n    \
         </Location>\n</Server>\n"
    ));
    // The port's last digit becomes a two-byte character, so the
    // authority's end falls inside it.
    let authority = format!("http://{}", origin.addr);
    let to = format!("{}\u{e9}/base/x", &authority[..authority.len() - 1]);
    let r = get(&srv, "/app/redirect", &format!("X-Location: {to}\r\n"));
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some(to.as_str()));
}

/// A client that sends a request and leaves while the upstream has not
/// answered: the proxy notices (as nginx does) and drops the upstream's
/// connection at once, rather than holding both descriptors (and a
/// backend worker) until `ProxyReadTimeout`.
#[test]
fn a_client_that_leaves_frees_the_upstream_at_once() {
    let origin = Origin::start();
    let mut srv = proxy(&origin, "ProxyReadTimeout 30s");
    let pid = srv.child.id();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    // What the worker holds once it has served (its pools, an idle
    // upstream connection).
    let warm = b"GET /app/x HTTP/1.1\r\nHost: front\r\nConnection: close\r\n\r\n";
    assert_eq!(send(&srv, warm).status, 201);
    let before = fds();
    for _ in 0..5 {
        let mut s = srv.connect();
        s.write_all(b"GET /app/slow HTTP/1.1\r\nHost: front\r\n\r\n")
            .unwrap();
        // The request has reached the origin before the client leaves.
        let n = origin.count();
        assert!(wait_until(Duration::from_secs(5), || origin.count() > n));
        drop(s);
        // Well before the origin's 5 s answer, let alone the timeout.
        srv.wait_stderr_line(
            &[
                "GET /app/slow",
                "the client went away before the answer (499)",
            ],
            Duration::from_secs(3),
        );
    }
    let links = || {
        let mut l: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|p| p.display().to_string())
            .collect();
        l.sort();
        l
    };
    let ok = wait_until(Duration::from_secs(3), || fds() <= before);
    assert!(ok, "{before} before, now {:?}", links());
}
