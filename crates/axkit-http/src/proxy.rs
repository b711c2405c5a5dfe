//! The PROXY protocol, versions 1 (text) and 2 (binary): the header a load
//! balancer (HAProxy, AWS NLB, nginx's `proxy_protocol on`) sends before
//! the client's bytes, saying whose connection it relays.
//!
//! Only a listener configured for it reads one, and then every connection
//! must start with one: a missing, truncated or malformed header is refused
//! (the connection closes), never taken for the start of an HTTP request.
//! [`parse_proxy_header`] is given the bytes read so far and says whether
//! they hold a whole header, need more, or can never be one; it is strict
//! (single spaces, decimal ports without leading zeros, addresses of the
//! announced family) and never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature, the first 12 bytes of a binary header.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest header accepted, in bytes. A version 1 header is at most 107
/// bytes by its specification; a version 2 header may announce up to 64 KiB
/// of TLVs, more than anything a proxy sends in practice (addresses, an
/// SSL summary, a few identifiers), so a larger one is refused rather than
/// buffered.
pub const MAX_PROXY_HEADER: usize = 4096;

/// The longest version 1 header, CRLF included (its specification's limit).
const MAX_V1: usize = 107;

/// `PP2_TYPE_SSL`: a TLV saying how the client connected to the proxy.
const PP2_TYPE_SSL: u8 = 0x20;
/// In `PP2_TYPE_SSL`'s client field: the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;

/// What a PROXY protocol header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A relayed TCP connection: the client's address (`source`) and the
    /// address it connected to (`destination`), and whether the client
    /// spoke TLS to the proxy (version 2's `PP2_TYPE_SSL`).
    Tcp {
        /// The client, as the proxy saw it.
        source: SocketAddr,
        /// The address the client connected to, on the proxy.
        destination: SocketAddr,
        /// The client's connection to the proxy was TLS.
        tls: bool,
    },
    /// The proxy could not say (version 1 `UNKNOWN`, version 2 with an
    /// unspecified, UDP or Unix family): use the socket's own peer.
    Unknown,
    /// Version 2 `LOCAL`: the proxy's own connection (a health check); use
    /// the socket's own peer.
    Local,
}

/// Parse a PROXY protocol header at the start of `buf`.
///
/// `Ok(Some((header, n)))`: a whole header, `n` bytes long (what follows is
/// the client's stream). `Ok(None)`: a prefix of a valid header, read more
/// (a caller bounds the bytes by [`MAX_PROXY_HEADER`] and the time it
/// waits). `Err(reason)`: these bytes can never start a valid header.
pub fn parse_proxy_header(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, &'static str> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    let n = buf.len().min(PROXY_V2_SIGNATURE.len());
    if buf[..n] != PROXY_V2_SIGNATURE[..n] {
        return Err("no PROXY protocol header");
    }
    parse_v2(buf)
}

/// `PROXY TCP4 SRC DST SPORT DPORT\r\n`, `PROXY TCP6 …`, `PROXY UNKNOWN…\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, &'static str> {
    const PREFIX: &[u8] = b"PROXY ";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err("no PROXY protocol header");
    }
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= MAX_V1 {
            return Err("PROXY v1 header longer than 107 bytes");
        }
        return Ok(None);
    };
    if window[cr] != b'\r' {
        return Err("PROXY v1 header with a bare LF");
    }
    if cr + 1 >= window.len() {
        return if buf.len() >= MAX_V1 {
            Err("PROXY v1 header longer than 107 bytes")
        } else {
            Ok(None)
        };
    }
    if window[cr + 1] != b'\n' {
        return Err("PROXY v1 header with a bare CR");
    }
    let line = &window[PREFIX.len()..cr];
    let end = cr + 2;
    if line.starts_with(b"UNKNOWN") && (line.len() == 7 || line[7] == b' ') {
        // The rest of an UNKNOWN line is to be ignored.
        return Ok(Some((ProxyHeader::Unknown, end)));
    }
    let line = std::str::from_utf8(line).map_err(|_| "PROXY v1 header is not ASCII")?;
    let mut parts = line.split(' ');
    let (Some(proto), Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("PROXY v1 header without five fields");
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>()
                .map_err(|_| "PROXY v1 TCP4 with a bad address")?
                .into(),
            dst.parse::<Ipv4Addr>()
                .map_err(|_| "PROXY v1 TCP4 with a bad address")?
                .into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>()
                .map_err(|_| "PROXY v1 TCP6 with a bad address")?
                .into(),
            dst.parse::<Ipv6Addr>()
                .map_err(|_| "PROXY v1 TCP6 with a bad address")?
                .into(),
        ),
        _ => return Err("PROXY v1 header with an unknown protocol"),
    };
    let (Some(sport), Some(dport)) = (port(sport), port(dport)) else {
        return Err("PROXY v1 header with a bad port");
    };
    Ok(Some((
        ProxyHeader::Tcp {
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
            tls: false,
        },
        end,
    )))
}

/// A decimal port, 0 to 65535, without a sign or leading zeros.
fn port(text: &str) -> Option<u16> {
    let ok = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if ok {
        text.parse().ok()
    } else {
        None
    }
}

/// The binary header: signature, version and command, family and
/// transport, a big-endian length, the addresses, then TLVs.
fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, &'static str> {
    if buf.len() < 16 {
        // The signature matched as far as it went; the fixed part is not
        // complete yet.
        if buf.len() > 12 && buf[12] >> 4 != 2 {
            return Err("PROXY v2 header with a bad version");
        }
        return Ok(None);
    }
    let version = buf[12] >> 4;
    let command = buf[12] & 0x0f;
    if version != 2 {
        return Err("PROXY v2 header with a bad version");
    }
    if command > 1 {
        return Err("PROXY v2 header with an unknown command");
    }
    let family = buf[13] >> 4;
    let transport = buf[13] & 0x0f;
    if family > 3 || transport > 2 {
        return Err("PROXY v2 header with an unknown family or transport");
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if total > MAX_PROXY_HEADER {
        return Err("PROXY v2 header longer than the limit");
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    // The address block each family needs (a Unix one is two 108-byte paths).
    let need = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if body.len() < need {
        return Err("PROXY v2 header too short for its addresses");
    }
    let tls = tlvs_say_tls(&body[need..])?;
    if command == 0 {
        return Ok(Some((ProxyHeader::Local, total)));
    }
    let header = match (family, transport) {
        (1, 1) => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            ProxyHeader::Tcp {
                source: SocketAddr::new(ip(0).into(), port(8)),
                destination: SocketAddr::new(ip(4).into(), port(10)),
                tls,
            }
        }
        (2, 1) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            ProxyHeader::Tcp {
                source: SocketAddr::new(ip(0).into(), port(32)),
                destination: SocketAddr::new(ip(16).into(), port(34)),
                tls,
            }
        }
        // Unspecified, UDP, or a Unix socket: nothing an HTTP client address
        // can be made of.
        _ => ProxyHeader::Unknown,
    };
    Ok(Some((header, total)))
}

/// Walk the TLVs (type, 16-bit length, value), which must fill `tlvs`
/// exactly; whether a `PP2_TYPE_SSL` says the client used TLS. Every
/// other type is skipped.
fn tlvs_say_tls(mut tlvs: &[u8]) -> Result<bool, &'static str> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let [kind, hi, lo, rest @ ..] = tlvs else {
            return Err("PROXY v2 header with a truncated TLV");
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if rest.len() < len {
            return Err("PROXY v2 header with a truncated TLV");
        }
        let (value, after) = rest.split_at(len);
        if *kind == PP2_TYPE_SSL {
            // client (1 byte), verify (4 bytes), then sub-TLVs.
            let Some(client) = value.first() else {
                return Err("PROXY v2 header with a short SSL TLV");
            };
            tls = client & PP2_CLIENT_SSL != 0;
        }
        tlvs = after;
    }
    Ok(tls)
}
