//! The URLs the client takes: `http://` and `https://` with a host (a
//! name, an IPv4 address or a bracketed IPv6 one), an optional port and a
//! path with an optional query; a fragment is dropped. Nothing else
//! (userinfo, other schemes, whitespace or control characters) is
//! accepted, so that what reaches the wire is what was meant.

use crate::{Error, ErrorKind};

/// A parsed URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) tls: bool,
    /// Without brackets for IPv6.
    pub(crate) host: String,
    pub(crate) port: u16,
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
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("not absolute"))?;
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
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(Url {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// Resolve `location` (a `Location` header: absolute, `//host/…`,
    /// `/path` or a relative path) against this URL.
    pub(crate) fn join(&self, location: &str) -> Result<Url, Error> {
        if location.contains("://") {
            return Url::parse(location);
        }
        let scheme = if self.tls { "https" } else { "http" };
        if let Some(rest) = location.strip_prefix("//") {
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        let target = if location.starts_with('/') {
            location.to_string()
        } else {
            let path = self.target.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Url::parse(&format!("{scheme}://{}{target}", self.authority()))
    }

    /// `host[:port]` as a `Host` header carries it (the port left out when
    /// it is the scheme's default).
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Whether `other` is on the same origin (scheme, host and port).
    pub(crate) fn same_origin(&self, other: &Url) -> bool {
        (self.tls, &self.host, self.port) == (other.tls, &other.host, other.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_should_and_refuses_the_rest() {
        let u = Url::parse("HTTPS://Example.com/a/b?x=1#frag").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.target.as_str()),
            (true, "example.com", 443, "/a/b?x=1")
        );
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.port, u.target.as_str(), u.authority().as_str()),
            (8080, "/", "127.0.0.1:8080")
        );
        let u = Url::parse("http://[::1]:9000?q").unwrap();
        assert_eq!(
            (u.host.as_str(), u.target.as_str(), u.authority().as_str()),
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
    fn locations_resolve_against_the_url() {
        let base = Url::parse("http://a.test:81/x/y?q=1").unwrap();
        let join = |l: &str| {
            let u = base.join(l).unwrap();
            format!(
                "{}://{}{}",
                if u.tls { "https" } else { "http" },
                u.authority(),
                u.target
            )
        };
        assert_eq!(join("/z"), "http://a.test:81/z");
        assert_eq!(join("z?w"), "http://a.test:81/x/z?w");
        assert_eq!(join("//b.test/p"), "http://b.test/p");
        assert_eq!(join("https://c.test/"), "https://c.test/");
        assert!(!base.same_origin(&base.join("//b.test/").unwrap()));
        assert!(base.same_origin(&base.join("/other").unwrap()));
    }
}
