//! Helpers for the static-file tests (`static_*.rs`): a one-process
//! file server with `Workers 1`, its standard files, and a reader for
//! multipart/byteranges bodies.
#![allow(dead_code)]

use crate::common::*;

pub const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// 100 bytes: `0123456789` ten times, so any range is easy to check.
pub fn digits100() -> String {
    "0123456789".repeat(10)
}

/// A file bigger than SmallFileSize, so it goes out with sendfile.
pub fn big_content() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

pub fn files_conf(extra: &str) -> String {
    format!(
        "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {{dir}}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
{extra}
</Server>
"
    )
}

pub fn files_server(extra: &str) -> Axkit {
    Axkit::start_single_with(&files_conf(extra), |d| {
        set_mtime(&d.write("www/d.txt", digits100()));
        set_mtime(&d.write("www/big.bin", big_content()));
        set_mtime(&d.write("www/empty.txt", ""));
    })
}

/// Split a multipart/byteranges body into (headers, data) parts.
pub fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("\r\n--{boundary}");
    let text = body.to_vec();
    let mut parts = Vec::new();
    let mut pos = 0;
    let find = |from: usize| {
        text[from..]
            .windows(delim.len())
            .position(|w| w == delim.as_bytes())
            .map(|p| p + from)
    };
    let mut at = find(pos).expect("first delimiter");
    assert_eq!(at, 0, "body starts with the delimiter");
    loop {
        pos = at + delim.len();
        if text[pos..].starts_with(b"--\r\n") {
            assert_eq!(pos + 4, text.len(), "nothing after the close delimiter");
            return parts;
        }
        assert!(text[pos..].starts_with(b"\r\n"));
        pos += 2;
        let head_end = text[pos..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + pos;
        let head = String::from_utf8(text[pos..head_end].to_vec()).unwrap();
        let data_start = head_end + 4;
        at = find(data_start).expect("next delimiter");
        parts.push((head, text[data_start..at].to_vec()));
    }
}
