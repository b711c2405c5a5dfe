//! Cases for the `Forwarded` and `X-Forwarded-For` parsers.

use std::net::SocketAddr;

use crate::forwarded::{
    forwarded_for_entries, parse_forwarded, parse_node, valid_host, ForwardedElement, Node,
};

fn addr(text: &str) -> Node {
    Node::Addr(text.parse::<SocketAddr>().unwrap())
}

fn parse(value: &str) -> Result<Vec<ForwardedElement>, &'static str> {
    let mut out = Vec::new();
    parse_forwarded(value.as_bytes(), &mut out).map(|_| out)
}

#[test]
fn nodes() {
    assert_eq!(parse_node("192.0.2.43"), Some(addr("192.0.2.43:0")));
    assert_eq!(
        parse_node("192.0.2.43:47011"),
        Some(addr("192.0.2.43:47011"))
    );
    assert_eq!(
        parse_node("[2001:db8:cafe::17]"),
        Some(addr("[2001:db8:cafe::17]:0"))
    );
    assert_eq!(
        parse_node("[2001:db8:cafe::17]:4711"),
        Some(addr("[2001:db8:cafe::17]:4711"))
    );
    assert_eq!(parse_node("2001:db8::1"), Some(addr("[2001:db8::1]:0")));
    assert_eq!(parse_node(" 10.0.0.1 "), Some(addr("10.0.0.1:0")));
    assert_eq!(parse_node("unknown"), Some(Node::Hidden));
    assert_eq!(parse_node("_hidden"), Some(Node::Hidden));
    assert_eq!(parse_node("_SEVKISEK"), Some(Node::Hidden));
    assert_eq!(parse_node("192.0.2.43:_port"), Some(addr("192.0.2.43:0")));
    for bad in [
        "",
        "_",
        "example.com",
        "192.0.2.256",
        "192.0.2.43:",
        "192.0.2.43:99999",
        "[::1",
        "[::1]x",
        "[192.0.2.1]",
        "_a b",
        "1.2.3.4:+1",
    ] {
        assert_eq!(parse_node(bad), None, "{bad:?}");
    }
}

#[test]
fn forwarded_elements() {
    let got = parse(
        r#"for=192.0.2.60;proto=HTTPS;by=203.0.113.43;host="example.com:8443", For="[2001:db8:cafe::17]:4711""#,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            ForwardedElement {
                for_node: Some(addr("192.0.2.60:0")),
                proto: Some("https"),
                host: Some("example.com:8443".into()),
            },
            ForwardedElement {
                for_node: Some(addr("[2001:db8:cafe::17]:4711")),
                proto: None,
                host: None,
            },
        ]
    );
    assert_eq!(
        parse("for=unknown, for=_hidden;proto=gopher").unwrap(),
        vec![
            ForwardedElement {
                for_node: Some(Node::Hidden),
                ..Default::default()
            },
            ForwardedElement {
                for_node: Some(Node::Hidden),
                ..Default::default()
            },
        ]
    );
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse(" , ,for=10.0.0.1").unwrap().len(), 1);
    assert_eq!(
        parse(r#"for="\"quoted\\"""#),
        Err("malformed Forwarded for=")
    );
}

#[test]
fn malformed_forwarded_is_refused() {
    for bad in [
        "for",
        "for=",
        "=1.2.3.4",
        "for=1.2.3.4 for=5.6.7.8",
        "for=1.2.3.4;for=5.6.7.8",
        "for=\"1.2.3.4",
        "for=[::1]",
        "for=example.com",
        "host=\"a b\"",
        "host=\"a/b\"",
        "for=1.2.3.4;;x",
        "for=\"1.2.3.4\u{7f}\"",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn forwarded_for_lists() {
    let entries: Vec<&[u8]> = forwarded_for_entries(b" 203.0.113.9 ,10.0.0.2,\t10.0.0.3").collect();
    assert_eq!(entries, [&b"203.0.113.9"[..], b"10.0.0.2", b"10.0.0.3"]);
    let last: Vec<&[u8]> = forwarded_for_entries(b"a,b").rev().collect();
    assert_eq!(last, [&b"b"[..], b"a"]);
}

#[test]
fn hosts() {
    assert!(valid_host("example.com"));
    assert!(valid_host("example.com:8443"));
    assert!(valid_host("[2001:db8::1]:8080"));
    assert!(!valid_host(""));
    assert!(!valid_host("a b"));
    assert!(!valid_host("evil.com/path"));
    assert!(!valid_host("user@evil.com"));
    assert!(!valid_host(&"a".repeat(256)));
}
