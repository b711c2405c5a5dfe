//! Behind a front proxy: `TrustedProxy` with `X-Forwarded-*` and
//! `Forwarded`, and the PROXY protocol on a `proxy-protocol` listener. The
//! client address, scheme, host and port must be the same in the access
//! log, the error log, CGI and Lua; forwarding headers from a peer that is
//! not trusted must never reach any of them; a PROXY header that is
//! missing, malformed, truncated, late or too long closes the connection,
//! with a log line whose bytes are escaped, as does a connection from a
//! peer `ProxyProtocolFrom` does not list.

#[path = "common/cgi.rs"]
mod cgi;
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Says what the script sees of the client; `/boom` fails, so that the
/// core logs a 500 with the client's address.
const WHOAMI: &str = r#"
function hook_response(r)
  if r:path() == "/boom" then error("boom") end
  local ip, port = r:peer()
  r:write(string.format("peer=%s port=%s scheme=%s host=%s authority=%s\n",
    ip, tostring(port), r:scheme(), tostring(r:host()), tostring(r:authority())))
  return OK
end
"#;

/// One process: Lua `whoami` for `/`, CGI `env.pl` under `/cgi-bin/`, an
/// access log `%h %{c}a`, errors to stderr at info. `listen` is the
/// Listen line's arguments, `server` more lines inside `<Server>`.
fn start(listen: &str, server: &str) -> Axkit {
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\nPlugin logging/warn\nLogLevel LOGINFO\n\
         Plugin request_log\nRequestLog {{dir}}/access.log\nRequestLogFormat \"%h %{{c}}a %r\"\n\
         <Server>\n    Listen {listen}\n    Plugin serve_cgi\n    Plugin whoami\n    \
         CGI_Match \\.pl$\n    ScriptAlias /cgi-bin/ {{dir}}/cgi-bin/\n{server}\n</Server>\n"
    );
    Axkit::start_single_with(&conf, |d| {
        d.write("plugins/whoami.lua", WHOAMI);
        cgi::script(
            d,
            "cgi-bin/env.pl",
            &format!("{}{}", cgi::perl(), cgi::ENV_PL),
        );
    })
}

fn env_of(srv: &Axkit, headers: &str) -> std::collections::BTreeMap<String, String> {
    let r = get(srv, "/cgi-bin/env.pl", headers);
    assert_eq!(r.status, 200, "{}", r.text());
    cgi::env_map(&r.text())
}

const SPOOF: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\
                     X-Forwarded-Host: evil.test:444\r\nX-Forwarded-Port: 444\r\n\
                     Forwarded: for=6.6.6.6;proto=https;host=evil.test\r\n";

#[test]
fn spoofed_forwarding_headers_from_an_untrusted_peer_reach_nothing() {
    for server in [
        "",
        "    TrustedProxy 10.0.0.0/8 ::1",
        "    TrustedProxy 10.0.0.0/8\n    TrustedProxyHeader Forwarded",
    ] {
        let mut srv = start("127.0.0.1:0", server);
        let env = env_of(&srv, SPOOF);
        assert_eq!(
            env.get("REMOTE_ADDR").map(String::as_str),
            Some("127.0.0.1")
        );
        assert_eq!(env.get("REQUEST_SCHEME").map(String::as_str), Some("http"));
        assert_eq!(env.get("HTTPS"), None);
        assert_eq!(
            env.get("SERVER_NAME").map(String::as_str),
            Some("localhost")
        );
        assert_eq!(env.get("SERVER_PORT"), Some(&srv.addr.port().to_string()));
        let r = get(&srv, "/", SPOOF);
        assert!(
            r.text().starts_with("peer=127.0.0.1 port=")
                && r.text()
                    .contains(" scheme=http host=localhost authority=localhost\n"),
            "{}",
            r.text()
        );
        let r = get(&srv, "/boom", SPOOF);
        assert_eq!(r.status, 500);
        srv.wait_stderr_line(
            &["]: 127.0.0.1:", " GET /boom HTTP/1.1: plugin whoami"],
            Duration::from_secs(10),
        );
        let log = wait_for_line(&srv.dir.path().join("access.log"), |l| l.contains("/boom"));
        for line in log.lines() {
            assert!(line.starts_with("127.0.0.1 127.0.0.1 "), "{line}");
        }
        let stderr = srv.stop();
        assert!(
            !stderr.contains("6.6.6.6") && !log.contains("6.6.6.6"),
            "{stderr}\n{log}"
        );
        assert!(!stderr.contains("evil"), "{stderr}");
    }
}

#[test]
fn x_forwarded_headers_of_a_trusted_proxy_give_the_client_everywhere() {
    let mut srv = start("127.0.0.1:0", "    TrustedProxy 10.0.0.0/8 127.0.0.1");
    // The client lied first; the two proxies (10.1.2.3, then 127.0.0.1)
    // appended what they saw.
    let headers = "X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nX-Forwarded-For: 10.1.2.3\r\n\
                   X-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com:8443\r\n";
    let env = env_of(&srv, headers);
    let var = |name: &str| env.get(name).map(String::as_str);
    assert_eq!(var("REMOTE_ADDR"), Some("198.51.100.7"));
    assert_eq!(var("REMOTE_PORT"), None);
    assert_eq!(var("REQUEST_SCHEME"), Some("https"));
    assert_eq!(var("HTTPS"), Some("on"));
    assert_eq!(var("SERVER_NAME"), Some("www.example.com"));
    assert_eq!(var("SERVER_PORT"), Some("8443"));
    let r = get(&srv, "/", headers);
    assert_eq!(
        r.text(),
        "peer=198.51.100.7 port=nil scheme=https host=www.example.com authority=www.example.com:8443\n"
    );
    assert_eq!(get(&srv, "/boom", headers).status, 500);
    srv.wait_stderr_line(
        &["]: 198.51.100.7 GET /boom HTTP/1.1: plugin whoami"],
        Duration::from_secs(10),
    );
    let log = wait_for_line(&srv.dir.path().join("access.log"), |l| l.contains("/boom"));
    for line in log.lines() {
        assert!(line.starts_with("198.51.100.7 127.0.0.1 "), "{line}");
    }
}

#[test]
fn forwarded_header_of_a_trusted_proxy_gives_the_client() {
    let srv = start(
        "127.0.0.1:0",
        "    TrustedProxy 127.0.0.1\n    TrustedProxyHeader Forwarded",
    );
    let headers = "Forwarded: for=\"[2001:db8::7]:4711\";proto=https;host=example.com\r\n\
                   X-Forwarded-For: 6.6.6.6\r\n";
    let env = env_of(&srv, headers);
    let var = |name: &str| env.get(name).map(String::as_str);
    assert_eq!(var("REMOTE_ADDR"), Some("2001:db8::7"));
    assert_eq!(var("REMOTE_PORT"), Some("4711"));
    assert_eq!(var("HTTPS"), Some("on"));
    assert_eq!(var("SERVER_PORT"), Some("443"));
    let r = get(&srv, "/", headers);
    assert_eq!(
        r.text(),
        "peer=2001:db8::7 port=4711 scheme=https host=example.com authority=example.com\n"
    );
    // An obfuscated client: the proxy is as far as anyone knows.
    let r = get(&srv, "/", "Forwarded: for=_hidden;proto=https\r\n");
    assert!(r.text().starts_with("peer=127.0.0.1 "), "{}", r.text());
}

/// A connection that sends `bytes` and reads until the server closes.
fn send(srv: &Axkit, bytes: &[u8]) -> (Vec<u8>, Ended) {
    srv.exchange(bytes)
}

const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 header for a TCP4 client, with TLVs.
fn v2_tcp4(source: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.extend_from_slice(&[0x21, 0x11]);
    out.extend_from_slice(&((12 + tlvs.len()) as u16).to_be_bytes());
    out.extend_from_slice(&source);
    out.extend_from_slice(&[127, 0, 0, 1]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&443u16.to_be_bytes());
    out.extend_from_slice(tlvs);
    out
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

fn body_of(bytes: &[u8]) -> String {
    let r = parse_response(bytes).unwrap_or_else(|| panic!("no response: {:?}", lossy(bytes)));
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn proxy_protocol_gives_the_connections_client() {
    let srv = start("127.0.0.1:0 proxy-protocol", "");
    let mut v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n".to_vec();
    v1.extend_from_slice(GET);
    assert_eq!(
        body_of(&send(&srv, &v1).0),
        "peer=198.51.100.7 port=40000 scheme=http host=localhost authority=localhost\n"
    );
    let mut v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 80\r\n".to_vec();
    v1.extend_from_slice(GET);
    assert!(body_of(&send(&srv, &v1).0).starts_with("peer=2001:db8::7 port=40000 "));
    // UNKNOWN and LOCAL: the socket's peer.
    let mut unknown = b"PROXY UNKNOWN\r\n".to_vec();
    unknown.extend_from_slice(GET);
    assert!(body_of(&send(&srv, &unknown).0).starts_with("peer=127.0.0.1 "));
    let mut local = V2_SIG.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    local.extend_from_slice(GET);
    assert!(body_of(&send(&srv, &local).0).starts_with("peer=127.0.0.1 "));
    // v2 with an ALPN TLV (skipped) and PP2_TYPE_SSL: the client used TLS.
    let tlvs = [0x01, 0, 2, b'h', b'2', 0x20, 0, 5, 0x01, 0, 0, 0, 0];
    let mut v2 = v2_tcp4([192, 0, 2, 9], 5555, &tlvs);
    v2.extend_from_slice(GET);
    assert_eq!(
        body_of(&send(&srv, &v2).0),
        "peer=192.0.2.9 port=5555 scheme=https host=localhost authority=localhost\n"
    );
    // One header per connection: keep-alive requests after it keep its client.
    let mut s = srv.connect();
    s.write_all(&v2_tcp4([192, 0, 2, 10], 6000, &[])).unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let text = lossy(&buf[..n]);
        assert!(text.contains("peer=192.0.2.10 port=6000 "), "{text}");
    }
    let log = wait_for_line(&srv.dir.path().join("access.log"), |l| {
        l.starts_with("192.0.2.10 ")
    });
    assert!(
        log.contains("198.51.100.7 127.0.0.1 GET / HTTP/1.1"),
        "{log}"
    );
}

#[test]
fn bad_proxy_protocol_headers_close_the_connection_and_are_logged_escaped() {
    let mut srv = start("127.0.0.1:0 proxy-protocol", "    HeaderTimeout 1s");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Missing: an HTTP request where the header should be.
        (
            GET.to_vec(),
            "no PROXY protocol header; first bytes: \"GET / HTTP/1.1\\x0d\\x0aHost",
        ),
        // Garbage with a terminal escape: escaped in the log.
        (
            b"PROXY TCP4 \x1b[31m 1 2 3\r\n".to_vec(),
            "PROXY v1 TCP4 with a bad address; first bytes: \"PROXY TCP4 \\x1b[31m",
        ),
        (
            b"PROXY TCP4 198.51.100.7 127.0.0.1 40000\r\n".to_vec(),
            "PROXY v1 header without five fields",
        ),
        (
            [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat(),
            "PROXY v1 header longer than 107 bytes",
        ),
        // v2: a truncated TLV, an oversize length, a bad version.
        (
            v2_tcp4([192, 0, 2, 9], 1, &[0x01, 0, 9, b'h']),
            "PROXY v2 header with a truncated TLV",
        ),
        (
            [V2_SIG, &[0x21, 0x11, 0xff, 0xff]].concat(),
            "PROXY v2 header longer than the limit",
        ),
        (
            [V2_SIG, &[0x31, 0x11, 0, 0]].concat(),
            "PROXY v2 header with a bad version",
        ),
    ];
    for (bytes, expect) in &cases {
        let mut raw = bytes.clone();
        raw.extend_from_slice(GET);
        let (got, ended) = send(&srv, &raw);
        assert!(got.is_empty(), "{expect}: answered {:?}", lossy(&got));
        assert!(!matches!(ended, Ended::TimedOut), "{expect}: not closed");
        srv.wait_stderr_line(
            &["127.0.0.1:", "refused: ", expect],
            Duration::from_secs(10),
        );
    }
    // Truncated: the client closes mid-header.
    let mut s = srv.connect();
    s.write_all(b"PROXY TCP4 198.51").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (got, ended) = read_to_end_within(&mut s, Duration::from_secs(10));
    assert!(got.is_empty() && !matches!(ended, Ended::TimedOut));
    srv.wait_stderr_line(
        &[
            "connection closed before its PROXY protocol header ended",
            "\"PROXY TCP4 198.51\"",
        ],
        Duration::from_secs(10),
    );
    // Late: half a header, then nothing; closed after HeaderTimeout.
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.write_all(&V2_SIG[..8]).unwrap();
    let (got, ended) = read_to_end_within(&mut s, Duration::from_secs(10));
    assert!(got.is_empty() && !matches!(ended, Ended::TimedOut));
    srv.wait_stderr_line(
        &["no PROXY protocol header within HeaderTimeout"],
        Duration::from_secs(10),
    );
    // Nothing of the refused bytes reached the terminal unescaped.
    let stderr = srv.stop();
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

#[test]
fn proxy_protocol_from_other_peers_is_refused() {
    let mut v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n".to_vec();
    v1.extend_from_slice(GET);
    // Only 10.0.0.0/8 may: this test's 127.0.0.1 is closed on before its
    // header is read.
    let mut srv = start(
        "127.0.0.1:0 proxy-protocol",
        "    ProxyProtocolFrom 10.0.0.0/8 192.0.2.1",
    );
    let (got, ended) = send(&srv, &v1);
    assert!(got.is_empty(), "answered {:?}", lossy(&got));
    assert!(!matches!(ended, Ended::TimedOut), "not closed");
    srv.wait_stderr_line(
        &["127.0.0.1:", "refused: not in ProxyProtocolFrom"],
        Duration::from_secs(10),
    );
    // Listed, it is served with the header's client.
    let srv = start(
        "127.0.0.1:0 proxy-protocol",
        "    ProxyProtocolFrom 10.0.0.0/8\n    ProxyProtocolFrom 127.0.0.1",
    );
    assert!(body_of(&send(&srv, &v1).0).starts_with("peer=198.51.100.7 port=40000 "));
}

#[test]
fn proxy_protocol_and_trusted_proxy_headers_combine() {
    // The PROXY source is a proxy too (a load balancer in front of nginx,
    // say): its X-Forwarded-For is believed; the socket's peer alone would
    // not make it so.
    let srv = start("127.0.0.1:0 proxy-protocol", "    TrustedProxy 10.0.0.0/8");
    let mut raw = b"PROXY TCP4 10.0.0.5 127.0.0.1 40000 80\r\n".to_vec();
    raw.extend_from_slice(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n");
    assert!(body_of(&send(&srv, &raw).0).starts_with("peer=198.51.100.7 port=nil "));
    let mut raw = b"PROXY TCP4 203.0.113.1 127.0.0.1 40000 80\r\n".to_vec();
    raw.extend_from_slice(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n");
    assert!(body_of(&send(&srv, &raw).0).starts_with("peer=203.0.113.1 port=40000 "));
}

#[test]
fn check_reports_bad_proxy_settings_with_file_and_line() {
    let dir = TempDir::new("proxycheck");
    let conf = dir.write(
        "a.conf",
        "TrustedProxy 10.0.0.1/8 nonsense\nTrustedProxyHeader X-Real-IP\n\
         <Server>\n    Listen 127.0.0.1:20980 proxy-protocol\n</Server>\n\
         <Server>\n    Listen 127.0.0.1:20980\n    ServerName b\n</Server>\n",
    );
    let out = std::process::Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let conf = conf.display();
    for expect in [
        format!("{conf}:1: TrustedProxy (plugin core): \"10.0.0.1/8\" has bits set past its prefix; the network is 10.0.0.0/8"),
        format!("{conf}:2: TrustedProxyHeader (plugin core):"),
        format!("{conf}:6: Listen (plugin core): 127.0.0.1:20980 is `proxy-protocol` for one <Server> and not for the other, at {conf}:3"),
    ] {
        assert!(text.contains(&expect), "missing {expect:?} in:\n{text}");
    }
}
