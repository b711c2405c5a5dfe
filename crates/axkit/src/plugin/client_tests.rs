//! How a request's client is resolved: the socket's peer, a PROXY header's
//! source, and the forwarding headers of trusted proxies only, read from
//! the right.

use std::net::SocketAddr;
use std::time::SystemTime;

use axkit_http::ProxyHeader;
use bytes::BytesMut;

use super::{resolve, Client, Trust};
use crate::config::Cidr;
use crate::plugin::{ConnInfo, Request};

fn conn(peer: &str) -> ConnInfo {
    ConnInfo {
        id: 1,
        peer: peer.parse().unwrap(),
        local: "10.0.0.1:8080".parse().unwrap(),
        tls: false,
        proxied: None,
        background: false,
        listener: 0,
    }
}

fn request(headers: &str) -> Request {
    let raw = format!("GET / HTTP/1.1\r\nHost: origin.test:8080\r\n{headers}\r\n");
    let head =
        axkit_http::parse_request_head(&mut BytesMut::from(raw.as_bytes()), &Default::default())
            .unwrap()
            .unwrap();
    Request::new(head, SystemTime::now()).unwrap()
}

fn trust(nets: &[&str], forwarded: bool) -> Trust {
    Trust {
        proxies: nets.iter().map(|n| Cidr::parse(n).unwrap()).collect(),
        forwarded,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client(addr_: &str, https: bool, host: Option<&str>, port: u16, proxied: bool) -> Client {
    Client {
        addr: addr(addr_),
        https,
        host: host.map(str::to_string),
        port,
        proxied,
    }
}

const SPOOF: &str = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=6.6.6.6;proto=https\r\n";

#[test]
fn without_trusted_proxies_the_headers_are_ignored() {
    let req = request(SPOOF);
    let plain = client("203.0.113.9:5555", false, None, 8080, false);
    assert_eq!(resolve(&conn("203.0.113.9:5555"), &req, None), plain);
    // Configured, but the peer is not one of them.
    let t = trust(&["127.0.0.1", "10.0.0.0/8"], false);
    assert_eq!(resolve(&conn("203.0.113.9:5555"), &req, Some(&t)), plain);
    let t = trust(&["127.0.0.1"], true);
    assert_eq!(resolve(&conn("203.0.113.9:5555"), &req, Some(&t)), plain);
}

#[test]
fn x_forwarded_for_is_walked_from_the_right_over_trusted_hops() {
    let t = trust(&["127.0.0.1", "10.0.0.0/8"], false);
    // The client prepended a lie; the two proxies appended what they saw.
    let req = request("X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nX-Forwarded-For: 10.1.2.3\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got, client("198.51.100.7:0", false, None, 8080, true));
    // Every hop trusted: the leftmost is the client.
    let req = request("X-Forwarded-For: 10.9.9.9, 10.1.2.3\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got.addr, addr("10.9.9.9:0"));
    // An entry that is not an address stops the walk at the last known hop.
    let req = request("X-Forwarded-For: 198.51.100.7, garbage, 10.1.2.3\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got.addr, addr("10.1.2.3:0"));
    // IPv6, bracketed with a port.
    let req = request("X-Forwarded-For: [2001:db8::7]:4711\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got.addr, addr("[2001:db8::7]:4711"));
    // A Forwarded header is not what these proxies set: ignored.
    let req = request("Forwarded: for=6.6.6.6\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got, client("127.0.0.1:40000", false, None, 8080, false));
}

#[test]
fn x_forwarded_proto_host_and_port() {
    let t = trust(&["127.0.0.1"], false);
    let req = request(
        "X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: HTTPS\r\nX-Forwarded-Host: www.example.com\r\n",
    );
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(
        got,
        client("198.51.100.7:0", true, Some("www.example.com"), 443, true)
    );
    assert_eq!(got.scheme(), "https");
    let req = request("X-Forwarded-Host: www.example.com\r\nX-Forwarded-Port: 8443\r\nX-Forwarded-Proto: https\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(
        got,
        client(
            "127.0.0.1:40000",
            true,
            Some("www.example.com:8443"),
            8443,
            true
        )
    );
    let req = request("X-Forwarded-Host: www.example.com:81\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!((got.port, got.https), (81, false));
    // A list: the nearest proxy's value, the last; a bad host is ignored.
    let req = request("X-Forwarded-Proto: http, https\r\nX-Forwarded-Host: a b\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!((got.https, got.host, got.port), (true, None, 443));
}

#[test]
fn forwarded_elements_are_walked_from_the_right() {
    let t = trust(&["127.0.0.1", "10.0.0.0/8"], true);
    let req = request(
        "Forwarded: for=6.6.6.6;proto=http\r\nForwarded: for=\"[2001:db8::7]:4711\";proto=https;host=example.com, for=10.0.0.2\r\n",
    );
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(
        got,
        client("[2001:db8::7]:4711", true, Some("example.com"), 443, true)
    );
    // Obfuscated or unknown: the walk stops at the proxy that said so.
    let req = request("Forwarded: for=198.51.100.7, for=_hidden, for=10.0.0.2\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got.addr, addr("10.0.0.2:0"));
    let req = request("Forwarded: for=unknown;proto=https\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!((got.addr, got.https), (addr("127.0.0.1:40000"), true));
    // Malformed where the proxy wrote it: nothing is believed.
    let req = request("Forwarded: for=198.51.100.7;;for=\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got, client("127.0.0.1:40000", false, None, 8080, false));
    // Malformed to the left of what the proxies appended (what a client
    // sent): the walk ends there, and the proxies' elements stand.
    for sent in [
        "Forwarded: for=\"x, for=192.0.2.1\r\n",
        "Forwarded: for=@, for=192.0.2.1\r\n",
        "Forwarded: garbage\r\nForwarded: for=192.0.2.1\r\n",
        "Forwarded: for=\"x, for=192.0.2.1;proto=https, for=10.0.0.2\r\n",
        "Forwarded: for=192.0.2.1, ,for=10.0.0.2\r\n",
    ] {
        let got = resolve(&conn("127.0.0.1:40000"), &request(sent), Some(&t));
        assert_eq!(got.addr, addr("192.0.2.1:0"), "{sent}");
    }
    // Past a trusted hop, the last hop known, as for X-Forwarded-For.
    let req = request("Forwarded: for=\"x, for=10.0.0.2\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got.addr, addr("10.0.0.2:0"));
    // X-Forwarded-For is not what these proxies set: ignored.
    let req = request("X-Forwarded-For: 6.6.6.6\r\n");
    let got = resolve(&conn("127.0.0.1:40000"), &req, Some(&t));
    assert_eq!(got.addr, addr("127.0.0.1:40000"));
}

#[test]
fn a_proxy_protocol_source_is_the_connections_client() {
    let mut c = conn("127.0.0.1:40000");
    c.proxied = Some(ProxyHeader::Tcp {
        source: addr("198.51.100.7:5555"),
        destination: addr("192.0.2.1:443"),
        tls: true,
    });
    let req = request(SPOOF);
    let got = resolve(&c, &req, None);
    assert_eq!(got, client("198.51.100.7:5555", true, None, 443, true));
    // Its source is not a trusted proxy: the headers stay ignored even
    // though the socket's peer is one.
    let t = trust(&["127.0.0.1"], false);
    assert_eq!(resolve(&c, &req, Some(&t)), got);
    // LOCAL or UNKNOWN: the socket's peer.
    c.proxied = Some(ProxyHeader::Local);
    assert_eq!(resolve(&c, &req, None).addr, addr("127.0.0.1:40000"));
}
