//! `Cidr`: an address range written `ADDR/BITS` (or a bare address), the
//! value type of the directives that trust or refuse clients by address
//! (`TrustedProxy`, the `access` plugin's `Allow` and `Deny`).

use std::fmt;
use std::net::IpAddr;

use super::directive::Args;
use super::key::{ArgType, FromConfig};
use super::value::Value;

/// An IPv4 or IPv6 network: `192.0.2.0/24`, `2001:db8::/32`, or one
/// address (`10.0.0.1`, a /32 or /128). An IPv4 range also matches the
/// same addresses IPv4-mapped in IPv6 (`::ffff:10.0.0.1`), as a socket
/// bound to `[::]` reports IPv4 clients; a range written IPv4-mapped
/// (`::ffff:10.0.0.0/104`) is that IPv4 range. An IPv6 range never
/// matches an IPv4 client: `::/0` is every IPv6 address, not every
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// `ADDR/BITS` or `ADDR`. Host bits must be zero (`10.0.0.1/8` is
    /// refused with the network it probably means): a range that says
    /// more than it means is a mistake waiting to be read the wrong way.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("expected an address or ADDR/BITS, got {text:?}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.len() <= 3 && b.bytes().all(|c| c.is_ascii_digit()) => {
                match b.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(format!("prefix length over {max} in {text:?}")),
                }
            }
            Some(_) => return Err(format!("expected ADDR/BITS, got {text:?}")),
        };
        let cidr = Cidr { net, bits };
        if cidr.masked(net) != net {
            return Err(format!(
                "{text:?} has bits set past its prefix; the network is {}",
                Cidr {
                    net: cidr.masked(net),
                    bits
                }
            ));
        }
        // An IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it
        // maps: `contains` sees every client address in its IPv4 form, so
        // kept as IPv6 it would match nothing (a `Deny` failing open).
        if let (IpAddr::V6(v6), 96..) = (net, bits) {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Ok(Cidr {
                    net: IpAddr::V4(v4),
                    bits: bits - 96,
                });
            }
        }
        Ok(cidr)
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.net
    }

    /// `ip` with the bits past the prefix cleared (same family as `ip`).
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

impl FromConfig for Cidr {
    const VALUE: ArgType = ArgType::String;
    const ARGS: Args = Args::One;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        match args {
            [v] => Cidr::parse(v.as_str().unwrap_or_default()),
            _ => Err("expected one address range".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses() {
        let v4 = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(v4.contains(ip("10.1.255.3")));
        assert!(!v4.contains(ip("10.2.0.1")));
        assert!(v4.contains(ip("::ffff:10.1.0.9")));
        assert!(!v4.contains(ip("2001:db8::1")));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert_eq!(v6.to_string(), "2001:db8::/32");
        // Written IPv4-mapped: the IPv4 range, which is how clients are seen.
        for (text, same) in [
            ("::ffff:127.0.0.1", "127.0.0.1/32"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:0.0.0.0/96", "0.0.0.0/0"),
        ] {
            let mapped = Cidr::parse(text).unwrap();
            assert_eq!(mapped, Cidr::parse(same).unwrap(), "{text}");
        }
        assert!(Cidr::parse("::ffff:127.0.0.1")
            .unwrap()
            .contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Cidr::parse("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has bits set past its prefix; the network is 10.0.0.0/8"
        );
    }
}
