//! Fuzz target: session cookies as a client sends them back, through
//! axkit-session's `read_cookie`, and CSRF tokens through `csrf_valid`.
//! A genuine cookie value is made under a fixed key, then changed by the
//! fuzzer (or replaced by the input); it must never panic, and must be
//! accepted exactly when it is the genuine value unchanged, the reader
//! still has the key that wrote it and keeps its sessions where the writer
//! does (in the cookie, or on the server): a forged, garbled or
//! re-spelled value (another encoding of the same bytes) is refused. An
//! accepted cookie session has the data written, and the writer's CSRF
//! token. A token is valid exactly when it decodes to the session's.
//!
//! Input layout: byte 0 picks the writer (bits 0-1: an encrypted cookie,
//! a signed one, one naming a session on the server), the reader (bits
//! 2-3: the writer's key, a newer key and the writer's, a newer key only,
//! or the writer's key but the other kind of store) and, bit 4, whether
//! the rest is the whole cookie value; else the rest is edits of three
//! bytes: what (replace, insert, delete from, cut at), where (counted
//! back from the end), which byte.
//! The same rest, as text, is the CSRF token checked.

#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use axkit_session::crypto::from_base64url;
use axkit_session::fuzzing::{cookie_value, read_cookie, session};
use axkit_session::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [pick, rest @ ..] = data else {
        return;
    };
    let server = || Store::Shared("default".into());
    let (store, encrypt) = match pick & 3 {
        0 | 3 => (Store::Cookie, true),
        1 => (Store::Cookie, false),
        _ => (server(), true),
    };
    let server_side = store.is_server_side();
    let mut writer = session(store, encrypt, &["a"]);
    writer.set("user", "ada");
    writer.set("n", i64::from(*pick));
    let genuine = cookie_value(&writer).expect("a small session fits a cookie");

    let value = if pick & 16 != 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let mut bytes = genuine.clone().into_bytes();
        for edit in rest.chunks_exact(3) {
            let at = bytes.len().saturating_sub(usize::from(edit[1]));
            match edit[0] & 3 {
                0 if at < bytes.len() => bytes[at] = edit[2],
                1 => bytes.insert(at, edit[2]),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    };

    let (keys, same_side): (&[&str], bool) = match (pick >> 2) & 3 {
        0 => (&["a"], true),
        1 => (&["b", "a"], true),
        2 => (&["b"], true),
        _ => (&["a"], false),
    };
    let reader_store = if server_side == same_side {
        server()
    } else {
        Store::Cookie
    };
    let mut reader = session(reader_store, encrypt, keys);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = read_cookie(&mut reader, &value, now);
    let accepted = id.is_some() || !reader.is_new();
    let expected = value == genuine && keys.contains(&"a") && same_side;
    assert_eq!(accepted, expected, "{value:?} for {genuine:?}");
    if accepted && !server_side {
        assert_eq!(reader.get("user").and_then(|v| v.as_str()), Some("ada"));
        assert_eq!(
            reader.get("n").and_then(|v| v.as_int()),
            Some(i64::from(*pick))
        );
        assert!(reader.csrf_valid(&writer.csrf_token()));
    }

    let token = writer.csrf_token();
    assert!(writer.csrf_valid(&token));
    let sent = String::from_utf8_lossy(rest);
    let valid = from_base64url(sent.trim()).is_some_and(|b| Some(b) == from_base64url(&token));
    assert_eq!(writer.csrf_valid(&sent), valid, "{sent:?}");
});
