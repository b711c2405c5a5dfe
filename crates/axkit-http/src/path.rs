//! Normalising a request path once, so that the server's `<Location>`
//! matching and every plugin see the same canonical path and cannot be
//! fooled by encodings (`/%61dmin`, `/a/../admin`, `//admin`). Here, with
//! the rest of the wire, because it decides what untrusted bytes mean:
//! it is unit-tested and fuzzed with the parser.

use std::borrow::Cow;
use std::fmt::Display;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// What [`encode_path`] escapes: controls, what a request-target cannot
/// hold unescaped, and `%` itself.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A path [`normalize_path`] decoded, percent-encoded again for a
/// request-target, a `Location` or an upstream URL: `%` too, so that what
/// it decodes to is the path given (an encoded `/`, kept as `%2F` by the
/// decoding, stays one). Pieces of text, to write or collect without an
/// extra copy.
pub fn encode_path(path: &str) -> impl Iterator<Item = &str> + Display {
    utf8_percent_encode(path, PATH)
}

/// Percent-decode `raw` (a path as sent, without the query) once, resolve
/// `.` and `..`, collapse empty segments. `None` for anything that cannot
/// name a resource safely: a bad `%` escape, an encoded NUL, bytes that are
/// not UTF-8 after decoding (this also rejects overlong UTF-8 forms), or
/// `..` above the root, or a control character written as it is (the
/// request parser refuses those in a target; a path made by a plugin is
/// held to the same rule). An encoded `/` is kept as `%2F` so it can never
/// split a segment; plugins that map to files refuse it.
pub fn normalize_path(raw: &str) -> Option<Cow<'_, str>> {
    if raw == "*" {
        return Some(Cow::Borrowed(raw));
    }
    if !raw.starts_with('/') {
        return None;
    }
    if is_canonical(raw) {
        // The usual case: nothing to decode or resolve, nothing to copy.
        return Some(Cow::Borrowed(raw));
    }
    decode_and_resolve(raw).map(Cow::Owned)
}

fn decode_and_resolve(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            let v = hi << 4 | lo;
            match v {
                0 => return None,
                b'/' => decoded.extend_from_slice(b"%2F"),
                _ => decoded.push(v),
            }
            i += 3;
        } else if b < 0x20 || b == 0x7f {
            return None;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/') {
        trailing_slash = false;
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop()?;
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Some(out)
}

/// True when `raw` (starting with `/`) is already what `normalize_path`
/// would make of it: no `%` escapes, no empty, `.` or `..` segments (a
/// single trailing `/` is fine), and nothing but printable ASCII, which
/// the request parser has already enforced for the request target.
fn is_canonical(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut seg_start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'%' => return false,
            b'/' if i > 0 => {
                let seg = &b[seg_start + 1..i];
                if seg.is_empty() || seg == b"." || seg == b".." {
                    return false;
                }
                seg_start = i;
            }
            c if !(0x21..0x7f).contains(&c) => return false,
            _ => {}
        }
    }
    let last = &b[seg_start + 1..];
    last != b"." && last != b".."
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_path as n;

    /// What `encode_path` writes decodes back to the path it was given,
    /// an encoded slash included.
    #[test]
    fn encoded_paths_normalize_to_themselves() {
        for path in ["/a b/c?d#e", "/100%/x", "/%2F/q", "/é/{x}|^\\`"] {
            let encoded: String = super::encode_path(path).collect();
            assert_eq!(n(&encoded).as_deref(), Some(path), "{encoded}");
        }
    }

    #[test]
    fn normalises() {
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(n("/a/b/").as_deref(), Some("/a/b/"));
        assert_eq!(n("//a//b").as_deref(), Some("/a/b"));
        assert_eq!(n("/a/./b/../c").as_deref(), Some("/a/c"));
        assert_eq!(n("/a/..").as_deref(), Some("/"));
        assert_eq!(n("/%61dmin").as_deref(), Some("/admin"));
        assert_eq!(n("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(n("/a%2Fb").as_deref(), Some("/a%2Fb"));
        assert_eq!(n("/a/%2e%2e/b").as_deref(), Some("/b"));
        assert_eq!(n("*").as_deref(), Some("*"));
    }

    #[test]
    fn fast_path_agrees_with_the_full_one() {
        // Every string of up to 6 characters over an alphabet that covers
        // each rule: whenever the fast path accepts, the full path must
        // give back the input unchanged.
        let alphabet = [b'/', b'a', b'.', b'%', b'2', b'F', b' ', 0xc3];
        let mut checked = 0;
        for len in 1..=6u32 {
            for mut code in 0..alphabet.len().pow(len) {
                let mut s = vec![b'/'];
                for _ in 0..len {
                    s.push(alphabet[code % alphabet.len()]);
                    code /= alphabet.len();
                }
                let Ok(s) = String::from_utf8(s) else {
                    continue;
                };
                if super::is_canonical(&s) {
                    assert_eq!(super::decode_and_resolve(&s).as_deref(), Some(&*s), "{s:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 100);
    }

    #[test]
    fn rejects() {
        assert_eq!(n("/.."), None);
        assert_eq!(n("/a/../.."), None);
        assert_eq!(n("/%2e%2e/etc"), None);
        assert_eq!(n("/%00"), None);
        assert_eq!(n("/a\0b"), None);
        assert_eq!(n("/a\tb"), None);
        assert_eq!(n("/a\x7fb"), None);
        assert_eq!(n("/a%09b").as_deref(), Some("/a\tb"));
        assert_eq!(n("/%zz"), None);
        assert_eq!(n("/%4"), None);
        assert_eq!(n("/%c0%af"), None, "overlong UTF-8 for '/'");
        assert_eq!(n("/%ff"), None);
        assert_eq!(n("a"), None);
    }
}
