//! Who a request came from and how the client addressed it, behind front
//! proxies too: [`Client`], which [`Context::client`](super::Context::client)
//! resolves once per request, on first use.
//!
//! Without `TrustedProxy` the client is the connection's: the socket's peer,
//! or what a PROXY protocol header said on a `proxy-protocol` listener. With
//! it, and only when that address is one of the trusted proxies, the
//! forwarding headers the config names (`TrustedProxyHeader`) are read from
//! the right, hop by hop, for as long as each hop is a trusted proxy too
//! (nginx's `real_ip_recursive on`): the first address that is not trusted
//! is the client. From any other peer those headers are ignored, so a client
//! cannot claim to be someone else.

use std::net::{IpAddr, SocketAddr};

use axkit_http::{Node, ProxyHeader};

use super::context::{ConnInfo, Request};
use crate::config::Cidr;

/// The client of a request, as the client itself saw the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address. Its port is 0 when a proxy gave the address
    /// without one.
    pub addr: SocketAddr,
    /// Whether the client spoke HTTPS (to the first proxy, behind one).
    pub https: bool,
    /// `host[:port]` as the client asked for it, when a trusted proxy said
    /// (`X-Forwarded-Host`, `Forwarded: host=`); None otherwise: the
    /// request's own Host then says it.
    pub host: Option<String>,
    /// The port the client connected to: the local port, or behind a
    /// trusted proxy the one it gave, else the default of the scheme it
    /// gave.
    pub port: u16,
    /// Whether a proxy's word (a PROXY header, or a trusted proxy's
    /// headers) made any of this differ from the socket's own.
    pub proxied: bool,
}

impl Client {
    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The address for a log line: `ip:port`, or the bare address when
    /// the port is unknown (0).
    pub fn addr_text(&self) -> String {
        match self.addr.port() {
            0 => self.addr.ip().to_string(),
            _ => self.addr.to_string(),
        }
    }
}

/// A `<Server>`'s `TrustedProxy` ranges and which headers they set.
#[derive(Debug)]
pub(crate) struct Trust {
    pub proxies: Vec<Cidr>,
    /// `Forwarded` (RFC 7239) rather than `X-Forwarded-*`.
    pub forwarded: bool,
}

impl Trust {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|net| net.contains(ip))
    }
}

/// What a trusted proxy said, before it is applied.
#[derive(Default)]
struct Said {
    addr: Option<SocketAddr>,
    proto: Option<&'static str>,
    host: Option<String>,
    port: Option<u16>,
}

/// The client of `request` on `conn`, believing the forwarding headers
/// only as far as `trust` allows.
pub(crate) fn resolve(conn: &ConnInfo, request: &Request, trust: Option<&Trust>) -> Client {
    let mut client = match conn.proxied {
        Some(ProxyHeader::Tcp {
            source,
            destination,
            tls,
        }) => Client {
            addr: source,
            https: tls,
            host: None,
            port: destination.port(),
            proxied: true,
        },
        _ => Client {
            addr: conn.peer,
            https: conn.tls,
            host: None,
            port: conn.local.port(),
            proxied: false,
        },
    };
    let Some(trust) = trust else {
        return client;
    };
    if !trust.trusts(client.addr.ip()) {
        return client;
    }
    let said = if trust.forwarded {
        from_forwarded(request, trust)
    } else {
        from_x_forwarded(request, trust)
    };
    if let Some(addr) = said.addr {
        client.addr = addr;
        client.proxied = true;
    }
    if said.proto.is_some() || said.host.is_some() || said.port.is_some() {
        client.proxied = true;
        if let Some(proto) = said.proto {
            client.https = proto == "https";
        }
        let default = if client.https { 443 } else { 80 };
        let host_port = said.host.as_deref().and_then(port_of);
        client.port = said.port.or(host_port).unwrap_or(default);
        client.host = said.host.map(|host| match (host_port, said.port) {
            (None, Some(port)) if port != default => format!("{host}:{port}"),
            _ => host,
        });
    }
    client
}

/// `Forwarded`, every field in order as one list, read from the right:
/// each element was written by a trusted proxy (the peer, or the hop
/// before it), and its `for=` names who connected to that proxy.
///
/// Elements are cut at every comma and parsed one by one, from the
/// right, as the `X-Forwarded-For` walk reads its entries: what a proxy
/// appends is the text after the last comma whatever came before it, so
/// a client's malformed text on the left (an unterminated quote that
/// would swallow the proxy's element, a bad pair) can only end the walk
/// where it stands, never void the proxy's own `for=`. An element that
/// cannot be parsed, or whose `for=` is `unknown`, obfuscated or missing,
/// ends the walk: the client is the last hop known (nginx's realip and
/// Apache's mod_remoteip stop at an unparsable entry the same way).
fn from_forwarded(request: &Request, trust: &Trust) -> Said {
    let mut said = Said::default();
    let fields = request
        .headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("forwarded"))
        .map(|(_, value)| value)
        .collect::<Vec<_>>();
    let mut element = Vec::with_capacity(1);
    'walk: for value in fields.into_iter().rev() {
        for text in axkit_http::forwarded_for_entries(value).rev() {
            element.clear();
            if axkit_http::parse_forwarded(text, &mut element).is_err() {
                break 'walk;
            }
            // An empty list element (`a, , b`) says nothing.
            let Some(element) = element.pop() else {
                continue;
            };
            // Written by a trusted proxy: how its client reached it.
            if element.proto.is_some() {
                said.proto = element.proto;
            }
            if element.host.is_some() {
                said.host = element.host;
            }
            match element.for_node {
                Some(Node::Addr(addr)) => {
                    said.addr = Some(addr);
                    if !trust.trusts(addr.ip()) {
                        break 'walk;
                    }
                }
                // `unknown`, obfuscated or missing: nothing further is known.
                Some(Node::Hidden) | None => break 'walk,
            }
        }
    }
    said
}

/// `X-Forwarded-For` (every field in order as one list) read from the
/// right; `X-Forwarded-Proto`, `-Host` and `-Port` as the nearest proxy
/// set them (the last value of each, when a list).
fn from_x_forwarded(request: &Request, trust: &Trust) -> Said {
    let mut said = Said::default();
    let fields = |wanted: &'static str| {
        request
            .headers()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value)
    };
    'walk: for value in fields("x-forwarded-for")
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        for entry in axkit_http::forwarded_for_entries(value).rev() {
            let node = std::str::from_utf8(entry)
                .ok()
                .and_then(axkit_http::parse_node);
            match node {
                Some(Node::Addr(addr)) => {
                    said.addr = Some(addr);
                    if !trust.trusts(addr.ip()) {
                        break 'walk;
                    }
                }
                // An entry that is not an address ends the walk: the
                // client is the last hop known.
                _ => break 'walk,
            }
        }
    }
    let last = |wanted| {
        let value = fields(wanted).last()?;
        let entry = axkit_http::forwarded_for_entries(value).next_back()?;
        std::str::from_utf8(entry).ok()
    };
    said.proto = last("x-forwarded-proto").and_then(axkit_http::scheme);
    said.host = last("x-forwarded-host")
        .filter(|h| axkit_http::valid_host(h))
        .map(str::to_string);
    said.port = last("x-forwarded-port").and_then(|p| p.parse().ok());
    said
}

/// The port of `host:port` or `[v6]:port`.
fn port_of(host: &str) -> Option<u16> {
    let stripped = axkit_http::strip_port(host);
    host.get(stripped.len() + 1..)?.parse().ok()
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
