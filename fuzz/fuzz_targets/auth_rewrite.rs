//! Fuzz target: what a client sends to two of axkit-plugins' plugins.
//! An `Authorization` value through `auth_basic`'s credentials parser:
//! it never panics, answers None exactly when the scheme is not `Basic`,
//! and gives only a non-empty user without `:`, whose `user:password`,
//! encoded again, reads back the same. A request path through
//! `rewrite`'s target expansion (fixed templates, as a config has them):
//! it never panics, each capture goes in percent-encoded (no space, `?`,
//! `#`, control or non-ASCII byte that the template did not write, and it
//! decodes back to the capture), and the local target made of it, if it
//! is one, starts with `/` but not `//` (it cannot name another host) and
//! is its own normal form.
//!
//! Input layout: byte 0 picks the parser (bit 0: Basic credentials, else
//! rewrite) and the rewrite template (bits 1-2); the rest is the
//! `Authorization` value, or the path (UTF-8, a `/` put in front).

#![no_main]

use axkit_plugins::fuzzing::{basic_credentials, rewrite_expand, rewrite_local_target};
use axkit_session::crypto::base64url;
use libfuzzer_sys::fuzz_target;

/// Templates of a rule matching
/// [`REWRITE_PATTERN`](axkit_plugins::fuzzing::REWRITE_PATTERN): the name is the
/// first segment of the path, `$2` the rest.
const TEMPLATES: [&str; 4] = [
    "/u/${name}/$2",
    "/$2?u=$1",
    "/a/$0/$$/$9/$",
    "/${name}${none}",
];

fuzz_target!(|data: &[u8]| {
    let [pick, rest @ ..] = data else {
        return;
    };
    if pick & 1 != 0 {
        credentials(rest);
    } else if let Ok(path) = std::str::from_utf8(rest) {
        rewrite(TEMPLATES[usize::from(pick >> 1) & 3], &format!("/{path}"));
    }
});

fn credentials(value: &[u8]) {
    let got = basic_credentials(value);
    let basic = std::str::from_utf8(value).is_ok_and(|v| {
        let v = v.trim();
        let scheme = v.split_once(' ').map_or(v, |(scheme, _)| scheme);
        scheme.eq_ignore_ascii_case("basic")
    });
    assert_eq!(got.is_some(), basic, "{value:?}");
    if let Some(Ok((user, password))) = got {
        assert!(!user.is_empty() && !user.contains(':'), "{user:?}");
        // Standard base64 (with `+`, `/` and padding) from the URL-safe
        // alphabet.
        let mut token: String = base64url(format!("{user}:{password}").as_bytes())
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        while token.len() % 4 != 0 {
            token.push('=');
        }
        let again = format!("Basic {token}");
        assert_eq!(
            basic_credentials(again.as_bytes()),
            Some(Ok((user, password))),
            "{again:?}"
        );
    }
}

fn rewrite(template: &str, path: &str) {
    let Some(target) = rewrite_expand(template, path) else {
        return;
    };
    let literal = |b: u8| template.as_bytes().contains(&b);
    for b in target.bytes() {
        let escaped = b.is_ascii_control() || b >= 0x80 || b" ?#\"<>\\^`{|}".contains(&b);
        assert!(!escaped || literal(b), "{path:?} -> {target:?}");
    }
    let mut percent = target.match_indices('%').map(|(i, _)| i);
    assert!(
        percent.all(|i| target
            .as_bytes()
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))),
        "{path:?} -> {target:?}"
    );
    if template == TEMPLATES[0] {
        // The name is a segment of the path, and of the target.
        let name = &path[1..path[1..].find('/').map_or(path.len(), |i| i + 1)];
        let sent = target["/u/".len()..].split('/').next().unwrap();
        assert_eq!(decode(sent), name.as_bytes(), "{path:?} -> {target:?}");
    }
    if let Some(local) = rewrite_local_target(&target) {
        assert!(
            local.starts_with('/') && !local.starts_with("//"),
            "{target:?} -> {local:?}"
        );
        assert_eq!(
            rewrite_local_target(&local).as_deref(),
            Some(local.as_str())
        );
    }
}

/// Percent-decoded bytes of `s`, which has only valid escapes.
fn decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex: String = bytes.by_ref().take(2).map(char::from).collect();
            out.push(u8::from_str_radix(&hex, 16).unwrap());
        } else {
            out.push(b);
        }
    }
    out
}
