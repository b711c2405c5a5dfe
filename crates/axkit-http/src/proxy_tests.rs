//! Raw-byte cases for the PROXY protocol parser, each with its exact
//! outcome: whole headers of every kind, prefixes that need more bytes, and
//! what must be refused.

use std::net::SocketAddr;

use crate::proxy::{parse_proxy_header, ProxyHeader, MAX_PROXY_HEADER, PROXY_V2_SIGNATURE};

fn tcp(source: &str, destination: &str, tls: bool) -> ProxyHeader {
    ProxyHeader::Tcp {
        source: source.parse::<SocketAddr>().unwrap(),
        destination: destination.parse::<SocketAddr>().unwrap(),
        tls,
    }
}

/// A version 2 header: command, family/transport, address block, TLVs.
fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    let len = (addresses.len() + tlvs.len()) as u16;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(addresses);
    out.extend_from_slice(tlvs);
    out
}

fn v4_block() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
    b.extend_from_slice(&40000u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

#[test]
fn v1_tcp4() {
    let raw = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\r\nGET / HTTP/1.1\r\n";
    assert_eq!(
        parse_proxy_header(raw),
        Ok(Some((tcp("192.0.2.7:40000", "10.0.0.1:80", false), 40)))
    );
}

#[test]
fn v1_tcp6() {
    let raw = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8080\r\n";
    assert_eq!(
        parse_proxy_header(raw),
        Ok(Some((
            tcp("[2001:db8::7]:40000", "[2001:db8::1]:8080", false),
            raw.len()
        )))
    );
}

#[test]
fn v1_unknown_ignores_the_rest_of_its_line() {
    assert_eq!(
        parse_proxy_header(b"PROXY UNKNOWN\r\nGET"),
        Ok(Some((ProxyHeader::Unknown, 15)))
    );
    let raw = b"PROXY UNKNOWN ffff::1 whatever 1 2\r\n";
    assert_eq!(
        parse_proxy_header(raw),
        Ok(Some((ProxyHeader::Unknown, raw.len())))
    );
}

#[test]
fn v1_prefixes_need_more() {
    let raw = b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\r\n";
    for n in 0..raw.len() {
        assert_eq!(parse_proxy_header(&raw[..n]), Ok(None), "{n} bytes");
    }
}

#[test]
fn v1_malformed_is_refused() {
    let bad: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n\r\n",
        b"PROXY\r\n",
        b"PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n",
        b"proxy TCP4 192.0.2.7 10.0.0.1 40000 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80\rX",
        b"PROXY TCP4  192.0.2.7 10.0.0.1 40000 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80 9\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 40000 80\r\n",
        b"PROXY TCP6 192.0.2.7 2001:db8::1 40000 80\r\n",
        b"PROXY TCP4 192.0.2.256 10.0.0.1 40000 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 040000 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 +4000 80\r\n",
        b"PROXY UDP4 192.0.2.7 10.0.0.1 40000 80\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 80 \r\n",
        b"PROXY TCP4 \xff.0.2.7 10.0.0.1 40000 80\r\n",
    ];
    for raw in bad {
        assert!(
            parse_proxy_header(raw).is_err(),
            "{:?} was accepted",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn v1_longer_than_107_bytes_is_refused() {
    let mut raw = b"PROXY UNKNOWN ".to_vec();
    raw.resize(200, b'x');
    assert_eq!(
        parse_proxy_header(&raw),
        Err("PROXY v1 header longer than 107 bytes")
    );
    // 105 bytes then CRLF: 107 in all, the longest allowed.
    let mut ok = b"PROXY UNKNOWN ".to_vec();
    ok.resize(105, b'x');
    ok.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_proxy_header(&ok),
        Ok(Some((ProxyHeader::Unknown, 107)))
    );
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(106, b'x');
    long.extend_from_slice(b"\r\n");
    assert!(parse_proxy_header(&long).is_err());
}

#[test]
fn v2_tcp4_and_tcp6() {
    let raw = v2(1, 0x11, &v4_block(), &[]);
    assert_eq!(
        parse_proxy_header(&raw),
        Ok(Some((tcp("192.0.2.7:40000", "10.0.0.1:443", false), 28)))
    );
    let mut block = Vec::new();
    block.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    block.extend_from_slice(&40000u16.to_be_bytes());
    block.extend_from_slice(&80u16.to_be_bytes());
    let mut raw = v2(1, 0x21, &block, &[]);
    raw.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        parse_proxy_header(&raw),
        Ok(Some((
            tcp("[2001:db8::7]:40000", "[2001:db8::1]:80", false),
            52
        )))
    );
}

#[test]
fn v2_tlvs_are_skipped_and_ssl_is_read() {
    // An ALPN TLV, a NOOP, then PP2_TYPE_SSL with the client-SSL bit and a
    // version sub-TLV.
    let mut tlvs = vec![0x01, 0, 2, b'h', b'2', 0x04, 0, 0];
    tlvs.extend_from_slice(&[0x20, 0, 12, 0x01, 0, 0, 0, 0, 0x21, 0, 4]);
    tlvs.extend_from_slice(b"TLS1");
    let raw = v2(1, 0x11, &v4_block(), &tlvs);
    assert_eq!(
        parse_proxy_header(&raw),
        Ok(Some((
            tcp("192.0.2.7:40000", "10.0.0.1:443", true),
            raw.len()
        )))
    );
    // A truncated TLV: its length says more than there is.
    let raw = v2(1, 0x11, &v4_block(), &[0x01, 0, 9, b'h']);
    assert_eq!(
        parse_proxy_header(&raw),
        Err("PROXY v2 header with a truncated TLV")
    );
    let raw = v2(1, 0x11, &v4_block(), &[0x01, 0]);
    assert!(parse_proxy_header(&raw).is_err());
}

#[test]
fn v2_local_unspec_unix_and_udp() {
    // LOCAL: the addresses, if any, are ignored.
    let raw = v2(0, 0x11, &v4_block(), &[]);
    assert_eq!(parse_proxy_header(&raw), Ok(Some((ProxyHeader::Local, 28))));
    let raw = v2(0, 0x00, &[], &[]);
    assert_eq!(parse_proxy_header(&raw), Ok(Some((ProxyHeader::Local, 16))));
    let raw = v2(1, 0x00, &[], &[]);
    assert_eq!(
        parse_proxy_header(&raw),
        Ok(Some((ProxyHeader::Unknown, 16)))
    );
    let raw = v2(1, 0x12, &v4_block(), &[]);
    assert_eq!(
        parse_proxy_header(&raw),
        Ok(Some((ProxyHeader::Unknown, 28)))
    );
    let raw = v2(1, 0x31, &[0; 216], &[]);
    assert_eq!(
        parse_proxy_header(&raw),
        Ok(Some((ProxyHeader::Unknown, 232)))
    );
}

#[test]
fn v2_prefixes_need_more() {
    let raw = v2(1, 0x11, &v4_block(), &[0x04, 0, 1, 0]);
    for n in 0..raw.len() {
        assert_eq!(parse_proxy_header(&raw[..n]), Ok(None), "{n} bytes");
    }
}

#[test]
fn v2_malformed_is_refused() {
    let mut bad_version = v2(1, 0x11, &v4_block(), &[]);
    bad_version[12] = 0x11;
    assert!(parse_proxy_header(&bad_version).is_err());
    assert!(parse_proxy_header(&bad_version[..13]).is_err());
    let mut bad_command = v2(1, 0x11, &v4_block(), &[]);
    bad_command[12] = 0x22;
    assert!(parse_proxy_header(&bad_command).is_err());
    let bad_family = v2(1, 0x41, &v4_block(), &[]);
    assert!(parse_proxy_header(&bad_family).is_err());
    let bad_transport = v2(1, 0x13, &v4_block(), &[]);
    assert!(parse_proxy_header(&bad_transport).is_err());
    // Shorter than its family's addresses.
    let short = v2(1, 0x21, &v4_block(), &[]);
    assert_eq!(
        parse_proxy_header(&short),
        Err("PROXY v2 header too short for its addresses")
    );
    // A signature that goes wrong part way.
    assert!(parse_proxy_header(b"\r\n\r\n\0\r\nQUIX").is_err());
    assert!(parse_proxy_header(b"\r\nGET").is_err());
}

#[test]
fn v2_oversize_is_refused_before_it_is_read() {
    let mut raw = PROXY_V2_SIGNATURE.to_vec();
    raw.extend_from_slice(&[0x21, 0x11]);
    let len = (MAX_PROXY_HEADER - 16 + 1) as u16;
    raw.extend_from_slice(&len.to_be_bytes());
    assert_eq!(
        parse_proxy_header(&raw),
        Err("PROXY v2 header longer than the limit")
    );
    // The largest allowed, padded with a NOOP TLV.
    let pad = MAX_PROXY_HEADER - 16 - 12 - 3;
    let mut tlvs = vec![0x04];
    tlvs.extend_from_slice(&(pad as u16).to_be_bytes());
    tlvs.resize(3 + pad, 0);
    let raw = v2(1, 0x11, &v4_block(), &tlvs);
    assert_eq!(raw.len(), MAX_PROXY_HEADER);
    assert!(matches!(
        parse_proxy_header(&raw),
        Ok(Some((_, MAX_PROXY_HEADER)))
    ));
}

#[test]
fn garbage_never_panics() {
    // Every prefix of every case above, and bytes around the signature.
    let mut seed = 0x1234_5678u32;
    for _ in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let len = (seed % 64) as usize;
        let mut raw = PROXY_V2_SIGNATURE[..(seed as usize >> 8) % 13].to_vec();
        let mut s = seed;
        while raw.len() < len {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            raw.push((s >> 16) as u8);
        }
        let _ = parse_proxy_header(&raw);
    }
}
