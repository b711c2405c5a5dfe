//! The URLs the client takes: `http://` and `https://` with a host (a
//! name, an IPv4 address or a bracketed IPv6 one), an optional port and a
//! path with an optional query; a fragment is dropped. Nothing else
//! (userinfo, other schemes, whitespace or control characters) is
//! accepted, so that what reaches the wire is what was meant.
//!
//! A URL's origin (scheme, host, port) is an [`Origin`], parsed once and
//! shared: a caller that sends many requests to one server (a proxy) keeps
//! it and gives only each request's target, and the pool files its
//! connections under it.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

use crate::{Error, ErrorKind};

/// Where requests go: scheme, host and port, checked once
/// ([`Origin::parse`]) and cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Origin(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    tls: bool,
    /// Lower-cased, without brackets for IPv6.
    host: String,
    port: u16,
    /// `host[:port]` as a `Host` header carries it.
    authority: String,
    /// The hash of (tls, host, port), made once: the pool looks an origin
    /// up twice per request.
    hash: u64,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.tls, &self.0.host, self.0.port) == (other.0.tls, &other.0.host, other.0.port)
    }
}

impl Eq for Origin {}

impl Hash for Origin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

/// The keys origins are hashed with, random per process (URLs may come
/// from requests, through scripts).
fn hash_keys() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

/// A hasher for keys that are an [`Origin`]: its hash made once, passed
/// through.
#[derive(Default)]
pub(crate) struct OriginHasher(u64);

impl Hasher for OriginHasher {
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached by an `Origin`; any other key still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(5) ^ u64::from(b);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Origin {
    /// `scheme://host[:port]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.0.authority)
    }
}

impl Origin {
    /// Parse `http://host[:port]` or `https://host[:port]`, with no path
    /// but an optional `/`.
    pub fn parse(text: &str) -> Result<Origin, Error> {
        let url = Url::parse(text)?;
        if url.target != "/" || text.contains('#') {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("URL {text:?}: an origin has no path, query or fragment"),
            ));
        }
        Ok(url.origin)
    }

    fn new(tls: bool, host: &str, port: u16) -> Origin {
        let host = host.to_ascii_lowercase();
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let authority = if port == if tls { 443 } else { 80 } {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let hash = hash_keys().hash_one((tls, &host, port));
        Origin(Arc::new(Parts {
            tls,
            host,
            port,
            authority,
            hash,
        }))
    }

    /// Whether it is `https://`.
    pub fn tls(&self) -> bool {
        self.0.tls
    }

    /// The host, lower-cased, without brackets for IPv6.
    pub fn host(&self) -> &str {
        &self.0.host
    }

    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// `host[:port]` as a `Host` header carries it (the port left out when
    /// it is the scheme's default).
    pub fn authority(&self) -> &str {
        &self.0.authority
    }

    fn scheme(&self) -> &'static str {
        if self.0.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// A parsed URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) origin: Origin,
    /// `/path?query`: the request-target.
    pub(crate) target: String,
}

impl Url {
    /// Parse an absolute `http://` or `https://` URL.
    pub(crate) fn parse(text: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error::new(ErrorKind::InvalidRequest, format!("URL {text:?}: {why}"));
        if text.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("control characters or spaces"));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some(parts) => parts,
            // `mailto:`, `javascript:`, …
            None if has_scheme(text) => return Err(bad("only http:// and https://")),
            None => return Err(bad("not absolute")),
        };
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(bad("only http:// and https://")),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad(
                "credentials in URLs are not supported (send an Authorization header)",
            ));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
                if host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(bad("not an IPv6 address"));
                }
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let v6 = authority.starts_with('[');
        if host.is_empty()
            || !v6
                && !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(bad("not a host name"));
        }
        let port = match port {
            None | Some("") => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| bad("port out of range"))?
            }
            Some(_) => return Err(bad("bad port")),
        };
        Ok(Url {
            origin: Origin::new(tls, host, port),
            target: target_of(target),
        })
    }

    /// `target` (`/path?query`, checked by the caller) at `origin`.
    pub(crate) fn at(origin: &Origin, target: String) -> Result<Url, Error> {
        if !target.starts_with('/')
            || target
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
        {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("request target {target:?}: not /path?query without spaces, controls or #"),
            ));
        }
        Ok(Url {
            origin: origin.clone(),
            target,
        })
    }

    /// Resolve `location` (a `Location` header: absolute, `//host/…`,
    /// `/path`, a relative path, `?query` or empty) against this URL, as
    /// RFC 3986 §5.2 does; its fragment is dropped (a request never sends
    /// one).
    pub(crate) fn join(&self, location: &str) -> Result<Url, Error> {
        let location = location.split_once('#').map_or(location, |(r, _)| r);
        // Absolute when it starts with a scheme and a colon (§3.1, §4.3; a
        // relative path's first segment holds no colon): `Url::parse`
        // takes it, or refuses it when the scheme is not HTTP's.
        if has_scheme(location) {
            return Url::parse(location);
        }
        let scheme = self.origin.scheme();
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        let (base_path, _) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let (path, query) = match location.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (location, None),
        };
        let target = if path.is_empty() {
            // §5.2.2: the base's path, and its query unless one is given.
            match query {
                Some(q) => format!("{base_path}?{q}"),
                None => self.target.clone(),
            }
        } else {
            let path = if path.starts_with('/') {
                remove_dot_segments(path)
            } else {
                let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
                remove_dot_segments(&format!("{dir}{path}"))
            };
            match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            }
        };
        Url::parse(&format!("{scheme}://{}{target}", self.origin.authority()))
    }

    /// Whether `other` is on the same origin (scheme, host and port).
    pub(crate) fn same_origin(&self, other: &Url) -> bool {
        self.origin == other.origin
    }
}

/// RFC 3986 §5.2.4 on a path starting with `/`: `.` segments go, a `..`
/// takes the segment before it with it (never above the root), and a path
/// that ended in either ends in `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => {
                if segment == ".." {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// A URL's path and query as a request-target.
fn target_of(rest: &str) -> String {
    match rest {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    }
}

/// Whether `text` starts with a scheme and a colon (RFC 3986 §3.1).
fn has_scheme(text: &str) -> bool {
    text.split_once(':').is_some_and(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_should_and_refuses_the_rest() {
        let u = Url::parse("HTTPS://Example.com/a/b?x=1#frag").unwrap();
        assert_eq!(
            (
                u.origin.tls(),
                u.origin.host(),
                u.origin.port(),
                u.target.as_str()
            ),
            (true, "example.com", 443, "/a/b?x=1")
        );
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.origin.port(), u.target.as_str(), u.origin.authority()),
            (8080, "/", "127.0.0.1:8080")
        );
        let u = Url::parse("http://[::1]:9000?q").unwrap();
        assert_eq!(
            (u.origin.host(), u.target.as_str(), u.origin.authority()),
            ("::1", "/?q", "[::1]:9000")
        );
        for bad in [
            "ftp://x/",
            "/relative",
            "http://user:pw@host/",
            "http://host:99999/",
            "http://host:8x/",
            "http://ho st/",
            "http://host/a\r\nInjected: 1",
            "http:///path",
            "http://[::1/",
            "http://[nothost]/",
            "http://::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_and_targets() {
        let o = Origin::parse("http://B.test:8080").unwrap();
        assert_eq!((o.host(), o.authority()), ("b.test", "b.test:8080"));
        assert_eq!(o.to_string(), "http://b.test:8080");
        assert_eq!(o, Origin::parse("HTTP://b.test:8080/").unwrap());
        assert_eq!(Origin::parse("https://[::1]").unwrap().authority(), "[::1]");
        for bad in ["http://b/x", "http://b?q", "http://b#f", "ftp://b"] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Url::at(&o, "/a?b".into()).unwrap().target, "/a?b");
        for bad in ["a", "/a b", "/a#b", "/a\r\nX: 1", ""] {
            assert!(Url::at(&o, bad.into()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locations_resolve_against_the_url() {
        let base = Url::parse("http://a.test:81/x/y?q=1").unwrap();
        let join = |l: &str| {
            let u = base.join(l).unwrap();
            format!(
                "{}://{}{}",
                u.origin.scheme(),
                u.origin.authority(),
                u.target
            )
        };
        assert_eq!(join("/z"), "http://a.test:81/z");
        assert_eq!(join("z?w"), "http://a.test:81/x/z?w");
        // RFC 3986 §5.4's cases that a Location can be, against this base.
        assert_eq!(join("?p=2"), "http://a.test:81/x/y?p=2");
        assert_eq!(join(""), "http://a.test:81/x/y?q=1");
        assert_eq!(join("#f"), "http://a.test:81/x/y?q=1");
        assert_eq!(join("."), "http://a.test:81/x/");
        assert_eq!(join("./z/."), "http://a.test:81/x/z/");
        assert_eq!(join("../z"), "http://a.test:81/z");
        assert_eq!(join("../../../z"), "http://a.test:81/z");
        assert_eq!(join("/a/b/../c/./d"), "http://a.test:81/a/c/d");
        assert_eq!(join("/a/b/.."), "http://a.test:81/a/");
        assert_eq!(join("z/#f"), "http://a.test:81/x/z/");
        assert_eq!(join("//b.test/p"), "http://b.test/p");
        assert_eq!(join("https://c.test/"), "https://c.test/");
        assert!(!base.same_origin(&base.join("//b.test/").unwrap()));
        assert!(base.same_origin(&base.join("/other").unwrap()));
    }

    /// Seen writing the `client_url` fuzz target: a path whose query held
    /// a URL was taken for an absolute URL, and refused; and in its review:
    /// a Location with a scheme but no `//` was taken for a path.
    #[test]
    fn a_url_in_a_query_is_not_the_location() {
        let base = Url::parse("http://a.test:81/x/y").unwrap();
        for (location, target) in [
            ("/login?next=http://b.test/", "/login?next=http://b.test/"),
            ("z?u=https://b.test", "/x/z?u=https://b.test"),
            ("a/b://c", "/x/a/b://c"),
        ] {
            let u = base.join(location).unwrap();
            assert!(base.same_origin(&u), "{location}");
            assert_eq!(u.target, target);
        }
        assert!(!base.same_origin(&base.join("HTTP://b.test/").unwrap()));
        assert!(base.join("ftp://b.test/").is_err());
        // Any scheme makes it absolute, not a path on this origin.
        for other in ["mailto:u@b.test", "javascript:alert(1)", "a:b", "urn:x"] {
            assert!(base.join(other).is_err(), "{other}");
        }
    }
}
