//! The headers a front proxy uses to say whose request it forwards:
//! `Forwarded` (RFC 7239) and the older `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`. Parsing only: which proxies
//! are trusted, and so how far to believe these headers, is the server's
//! decision (a client can send any of them).
//!
//! Every function here takes untrusted bytes, never panics, and refuses
//! what is malformed rather than guessing.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// One hop's node identifier (`for=` of `Forwarded`, an entry of
/// `X-Forwarded-For`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// An address; the port is 0 when none was given.
    Addr(SocketAddr),
    /// `unknown` or an obfuscated identifier (`_hidden`): the proxy does
    /// not say who its client was.
    Hidden,
}

/// One element of a `Forwarded` header: what one proxy said about the
/// request it received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardedElement {
    /// `for=`: who sent the request to that proxy.
    pub for_node: Option<Node>,
    /// `proto=`: `http` or `https` (lowercased; any other scheme is left out).
    pub proto: Option<&'static str>,
    /// `host=`: the Host the request had there (`name[:port]`).
    pub host: Option<String>,
}

/// Parse one `Forwarded` field value, appending its elements to `out`
/// (several fields are one list, in order). Pair names are
/// case-insensitive; values are tokens or quoted strings; optional white
/// space is allowed around `,` and `;`. A malformed value is an error, and
/// then nothing of it should be believed.
pub fn parse_forwarded(value: &[u8], out: &mut Vec<ForwardedElement>) -> Result<(), &'static str> {
    let mut rest = value;
    let mut element = ForwardedElement::default();
    let mut empty = true;
    loop {
        rest = trim_start(rest);
        if rest.is_empty() {
            break;
        }
        if rest[0] == b',' || rest[0] == b';' {
            if rest[0] == b',' {
                if !empty {
                    out.push(std::mem::take(&mut element));
                }
                empty = true;
            }
            rest = &rest[1..];
            continue;
        }
        let name_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 || rest.get(name_len) != Some(&b'=') {
            return Err("malformed Forwarded pair");
        }
        let name = &rest[..name_len];
        rest = &rest[name_len + 1..];
        let (text, after) = value_of(rest)?;
        rest = after;
        empty = false;
        if name.eq_ignore_ascii_case(b"for") {
            if element.for_node.is_some() {
                return Err("Forwarded element with two for= pairs");
            }
            element.for_node = Some(parse_node(&text).ok_or("malformed Forwarded for=")?);
        } else if name.eq_ignore_ascii_case(b"proto") {
            element.proto = scheme(&text);
        } else if name.eq_ignore_ascii_case(b"host") {
            if !valid_host(&text) {
                return Err("malformed Forwarded host=");
            }
            element.host = Some(text);
        }
        // `by=` and extensions are not used.
        rest = trim_start(rest);
        if !rest.is_empty() && rest[0] != b',' && rest[0] != b';' {
            return Err("malformed Forwarded element");
        }
    }
    if !empty {
        out.push(element);
    }
    Ok(())
}

/// A token or a quoted string at the start of `rest`, and what follows.
fn value_of(rest: &[u8]) -> Result<(String, &[u8]), &'static str> {
    if rest.first() == Some(&b'"') {
        let mut text = Vec::new();
        let mut i = 1;
        while i < rest.len() {
            match rest[i] {
                b'"' => {
                    let text = String::from_utf8(text).map_err(|_| "malformed Forwarded value")?;
                    return Ok((text, &rest[i + 1..]));
                }
                b'\\' if i + 1 < rest.len() => {
                    text.push(rest[i + 1]);
                    i += 2;
                }
                b if b == b'\t' || (b' '..0x7f).contains(&b) => {
                    text.push(b);
                    i += 1;
                }
                _ => return Err("malformed Forwarded value"),
            }
        }
        return Err("unterminated quoted string in Forwarded");
    }
    let len = rest.iter().take_while(|&&b| is_tchar(b)).count();
    if len == 0 {
        return Err("empty Forwarded value");
    }
    // Tokens are ASCII.
    let text = String::from_utf8_lossy(&rest[..len]).into_owned();
    Ok((text, &rest[len..]))
}

/// A node identifier: `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`,
/// `[2001:db8::1]:8080`, a bare IPv6 address (as some proxies write
/// `X-Forwarded-For`), `unknown` or `_obfuscated`. A port that is itself
/// obfuscated (`_p`) counts as none. None for anything else.
pub fn parse_node(text: &str) -> Option<Node> {
    let text = text.trim_matches([' ', '\t']);
    if text.eq_ignore_ascii_case("unknown") || obfuscated(text) {
        return Some(Node::Hidden);
    }
    if let Some(inner) = text.strip_prefix('[') {
        let (ip, after) = inner.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 0,
            _ => node_port(after.strip_prefix(':')?)?,
        };
        return Some(Node::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Node::Addr(SocketAddr::new(ip, 0)));
    }
    let (ip, port) = text.split_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some(Node::Addr(SocketAddr::new(
        IpAddr::V4(ip),
        node_port(port)?,
    )))
}

/// `_` followed by letters, digits, `.`, `_` or `-` (RFC 7239 §6.3).
fn obfuscated(text: &str) -> bool {
    text.len() > 1
        && text.starts_with('_')
        && text[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A port of a node: decimal, or obfuscated (then 0: unknown).
fn node_port(text: &str) -> Option<u16> {
    if obfuscated(text) {
        return Some(0);
    }
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `http` or `https`, whatever the case; None for anything else.
pub fn scheme(text: &str) -> Option<&'static str> {
    let text = text.trim_matches([' ', '\t']);
    if text.eq_ignore_ascii_case("https") {
        Some("https")
    } else if text.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// Whether `text` can be a Host header value (`name`, `name:port`,
/// `[v6]:port`): not empty, at most 255 bytes, of the characters a URI's
/// authority may hold without userinfo.
pub fn valid_host(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b'%'
                        | b':'
                        | b'['
                        | b']'
                )
        })
}

/// The entries of an `X-Forwarded-For` value (`client, proxy1, proxy2`),
/// left to right, as text with white space trimmed; each is read with
/// [`parse_node`].
pub fn forwarded_for_entries(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|e| trim_start(trim_end(e)))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `host` without its `:port` (`example.com:8080` → `example.com`,
/// `[::1]:8080` → `[::1]`); a trailing part that is not all digits is no
/// port.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
