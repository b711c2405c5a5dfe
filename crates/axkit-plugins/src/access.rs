//! `access`: allow or refuse requests by the client's address (hook
//! `access_control`), as Apache's `Require ip` / `Require not ip`. The
//! address is the request's client as the core resolves it
//! ([`Context::client`]): behind a `TrustedProxy`, the client the proxy
//! forwarded for, never a header from anyone else.
//!
//! Directives (Server or Location; a Location's lines add to those of the
//! Server and the Locations around it):
//! - `Allow from RANGE…|all`: the client must be in one of these ranges
//!   (`ADDR`, `ADDR/BITS`, IPv4 or IPv6).
//! - `Deny from RANGE…|all`: the client must be in none of them.
//!
//! The rule, one for every combination: **a request is refused if its
//! client matches any `Deny` line, or fails to match some `Allow` line;
//! otherwise it goes on.** Each line is one condition; the ranges on one
//! line are alternatives. That is Apache 2.4's `<RequireAll>` of one
//! `Require ip` per Allow line and one `Require not ip` per Deny line.
//! So:
//!
//! - no line: everyone;
//! - `Allow from 10.0.0.0/8 192.0.2.1`: those only;
//! - `Deny from 10.6.6.0/24`: everyone else;
//! - `Allow from 10.0.0.0/8` and `Deny from 10.6.6.0/24`: 10/8 except
//!   10.6.6/24 (Deny wins);
//! - two Allow lines (one in the Server, one in a Location): both must
//!   match, so a Location narrows its Server, never widens it;
//! - `Deny from all`: no one (an Allow cannot reopen it); `Allow from all`
//!   is a condition everyone meets.
//!
//! An IPv4 client is always compared in its IPv4 form: a range written
//! IPv4-mapped (`::ffff:10.0.0.0/104`) is the IPv4 range it maps
//! (`10.0.0.0/8`), and an IPv6 range (`::/0` too) never matches an IPv4
//! client.
//!
//! A refused request is answered 403 and the reason logged at info.
//!
//! ```text
//! Plugin access
//! <Server>
//!     <Location /admin>
//!         Allow from 10.0.0.0/8 2001:db8::/32
//!         Deny  from 10.6.6.0/24
//!     </Location>
//! </Server>
//! ```

use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;

use axkit::config::{Args, Cidr, Directive, List, Scopes};
use axkit::plugin::{Context, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec};

/// One `Allow` or `Deny` line: its ranges, or every address.
#[derive(Clone, Debug, PartialEq)]
enum Ranges {
    All,
    Some(Vec<Cidr>),
}

impl Ranges {
    fn contains(&self, ip: IpAddr) -> bool {
        match self {
            Ranges::All => true,
            Ranges::Some(nets) => nets.iter().any(|n| n.contains(ip)),
        }
    }

    /// `from all` or `from RANGE…`.
    fn parse(args: &[&str]) -> Result<Ranges, String> {
        let [from, ranges @ ..] = args else {
            return Err("expected `from` then address ranges or `all`".into());
        };
        if !from.eq_ignore_ascii_case("from") || ranges.is_empty() {
            return Err("expected `from` then address ranges or `all`".into());
        }
        if ranges.iter().any(|r| r.eq_ignore_ascii_case("all")) {
            if ranges.len() > 1 {
                return Err("`all` stands alone".into());
            }
            return Ok(Ranges::All);
        }
        ranges
            .iter()
            .map(|r| Cidr::parse(r))
            .collect::<Result<_, _>>()
            .map(Ranges::Some)
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ranges::All => write!(f, "from all"),
            Ranges::Some(nets) => {
                write!(f, "from")?;
                for n in nets {
                    write!(f, " {n}")?;
                }
                Ok(())
            }
        }
    }
}

static ALLOW: List<Ranges> = List::parsed("Allow", Ranges::parse)
    .args(Args::Many)
    .guard()
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("Allow from RANGE…|all: the client must be in one of these ranges (every Allow line must match)");

static DENY: List<Ranges> = List::parsed("Deny", Ranges::parse)
    .args(Args::Many)
    .guard()
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc(
        "Deny from RANGE…|all: refuse (403) a client in any of these ranges; Deny wins over Allow",
    );

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "access",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![ALLOW.declare(), DENY.declare()]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(Access))
}

struct Access;

/// Why `ip` may not pass `allow` and `deny`, if it may not.
fn refusal(ip: IpAddr, allow: &[Ranges], deny: &[Ranges]) -> Option<String> {
    if let Some(rule) = deny.iter().find(|r| r.contains(ip)) {
        return Some(format!("matches `Deny {rule}`"));
    }
    allow
        .iter()
        .find(|r| !r.contains(ip))
        .map(|rule| format!("does not match `Allow {rule}`"))
}

#[axkit::plugin]
impl Plugin for Access {
    fn access_control<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let config = ctx.config();
        let (allow, deny) = (config.list(&ALLOW), config.list(&DENY));
        if allow.is_empty() && deny.is_empty() {
            return Outcome::Declined.into();
        }
        let ip = ctx.client().addr.ip();
        let Some(why) = refusal(ip, allow, deny) else {
            return Outcome::Declined.into();
        };
        let msg = format!(
            "access: {ip} {}: refused: the client {why}",
            ctx.request.request_line()
        );
        ctx.log(Level::Info, &msg);
        Outcome::Status(403).into()
    }
}

#[cfg(test)]
mod tests {
    use super::{refusal, Ranges};

    fn line(words: &str) -> Ranges {
        let args: Vec<&str> = words.split(' ').collect();
        Ranges::parse(&args).unwrap()
    }

    fn passes(ip: &str, allow: &[&str], deny: &[&str]) -> bool {
        let allow: Vec<Ranges> = allow.iter().map(|l| line(l)).collect();
        let deny: Vec<Ranges> = deny.iter().map(|l| line(l)).collect();
        refusal(ip.parse().unwrap(), &allow, &deny).is_none()
    }

    #[test]
    fn every_combination() {
        let inside = "10.1.2.3";
        let outside = "192.0.2.1";
        let denied = "10.6.6.6";
        // No lines: everyone.
        assert!(passes(outside, &[], &[]));
        // Allow only: those only.
        assert!(passes(inside, &["from 10.0.0.0/8 192.0.2.9"], &[]));
        assert!(!passes(outside, &["from 10.0.0.0/8 192.0.2.9"], &[]));
        // Deny only: everyone else.
        assert!(!passes(denied, &[], &["from 10.6.6.0/24"]));
        assert!(passes(inside, &[], &["from 10.6.6.0/24"]));
        // Both: Deny wins.
        let (a, d) = (["from 10.0.0.0/8"], ["from 10.6.6.0/24"]);
        assert!(passes(inside, &a, &d));
        assert!(!passes(denied, &a, &d));
        assert!(!passes(outside, &a, &d));
        // Two Allow lines: both must match.
        let a2 = ["from 10.0.0.0/8", "from 10.1.0.0/16"];
        assert!(passes(inside, &a2, &[]));
        assert!(!passes("10.2.0.1", &a2, &[]));
        // all.
        assert!(passes(outside, &["from all"], &[]));
        assert!(!passes(inside, &["from all"], &["from all"]));
        assert!(!passes(inside, &["from 10.0.0.0/8"], &["from all"]));
        assert!(!passes(outside, &["from 10.0.0.0/8", "from all"], &[]));
        // IPv4 clients on an IPv6 socket, and IPv6 ranges.
        assert!(passes("::ffff:10.1.2.3", &["from 10.0.0.0/8"], &[]));
        assert!(passes(
            "2001:db8::5",
            &["from 2001:db8::/32"],
            &["from 10.0.0.0/8"]
        ));
        assert!(!passes("2001:db9::5", &["from 2001:db8::/32"], &[]));
    }

    #[test]
    fn lines_are_checked_when_the_config_loads() {
        for bad in [
            &[][..],
            &["10.0.0.0/8"],
            &["from"],
            &["to", "all"],
            &["from", "all", "10.0.0.1"],
            &["from", "10.0.0.1/8"],
            &["from", "example.com"],
        ] {
            assert!(Ranges::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(line("FROM All"), Ranges::All);
        assert_eq!(
            line("from 10.0.0.0/8 ::1").to_string(),
            "from 10.0.0.0/8 ::1/128"
        );
    }
}
