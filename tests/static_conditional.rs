//! Static files, conditional and partial, through the stock
//! `axkit` binary and raw bytes: validators, conditional requests (304/412
//! and their precedence), ranges (206, multipart/byteranges byte for byte,
//! If-Range, 416, the CVE-2011-3192 request), for files served from memory,
//! with sendfile and through a body filter.
//!
//! Every server runs as one process (`--no-master`); each test starts its
//! own so that they can run in parallel.

mod common;
#[path = "common/static_files.rs"]
mod static_files;

use common::*;
use static_files::*;

#[test]
fn validators_and_accept_ranges_on_200_and_head() {
    let srv = files_server("");
    let r = get(&srv, "/d.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), digits100());
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    let etag = r.header("ETag").expect("an ETag").to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 4,
        "{etag}"
    );
    // Stable across requests, different for another file.
    assert_eq!(get(&srv, "/d.txt", "").header("ETag"), Some(etag.as_str()));
    assert_ne!(
        get(&srv, "/big.bin", "").header("ETag"),
        Some(etag.as_str())
    );
    // HEAD: same head, no body.
    let (bytes, _) = srv.raw(b"HEAD /d.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let h = parse_head_response(&bytes).unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.header("Content-Length"), Some("100"));
    assert_eq!(h.header("ETag"), Some(etag.as_str()));
    assert_eq!(bytes.len(), h.len, "HEAD must not carry a body");
    // A large file through sendfile: same bytes.
    let big = get(&srv, "/big.bin", "");
    assert_eq!(big.status, 200);
    assert_eq!(big.body, big_content());
}

#[test]
fn file_etag_off_sends_no_etag() {
    let srv = files_server("FileETag off");
    let r = get(&srv, "/d.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ETag"), None);
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
}

/// If-None-Match and If-Modified-Since, and which of them wins.
#[test]
fn if_none_match_and_if_modified_since_give_304() {
    let srv = files_server("CacheControl \"public, max-age=60\"");
    let etag = get(&srv, "/d.txt", "").header("ETag").unwrap().to_string();
    // The status of a GET of /d.txt with extra header lines.
    let d_status = |headers: &str| get(&srv, "/d.txt", headers).status;

    // If-None-Match matching (also weakly, also in a list) → 304 with the
    // validators and caching headers, no body.
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_string(),
    ] {
        let (bytes, _) = srv.raw(
            format!(
                "GET /d.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {inm}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = parse_response(&bytes).unwrap();
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        assert_eq!(r.header("Cache-Control"), Some("public, max-age=60"));
        assert!(r.header("Date").is_some());
        assert_eq!(r.header("Content-Length"), None);
        assert_eq!(bytes.len(), r.len, "a 304 has no body");
    }
    // Not matching → 200.
    assert_eq!(d_status("If-None-Match: \"other\"\r\n"), 200);
    // HEAD too.
    assert_eq!(
        request(
            &srv,
            "HEAD",
            "/d.txt",
            &format!("If-None-Match: {etag}\r\n")
        )
        .status,
        304
    );

    // If-Modified-Since: same or later date → 304; earlier → 200;
    // garbage → ignored (200).
    assert_eq!(
        d_status(&format!("If-Modified-Since: {LAST_MODIFIED}\r\n")),
        304
    );
    assert_eq!(
        d_status("If-Modified-Since: Mon, 07 Nov 1994 08:49:37 GMT\r\n"),
        304
    );
    assert_eq!(
        d_status("If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n"),
        200
    );
    // The obsolete formats are accepted too.
    assert_eq!(
        d_status("If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n"),
        304
    );
    // A date later than the request is not one the client had from us
    // (RFC 9110 §13.1.3): ignored, as nginx and Apache do, so the file
    // goes out whole instead of a 304 for every change to come.
    let r = get(
        &srv,
        "/d.txt",
        "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), digits100());
    for garbage in ["yesterday", "Sun, 06 Nov 1994 08:49:37", "0", ""] {
        assert_eq!(
            d_status(&format!("If-Modified-Since: {garbage}\r\n")),
            200,
            "{garbage:?}"
        );
    }
    // If-None-Match takes precedence over If-Modified-Since: a tag that
    // does not match means 200 even with a matching date.
    assert_eq!(
        d_status(&format!(
            "If-None-Match: \"other\"\r\nIf-Modified-Since: {LAST_MODIFIED}\r\n"
        )),
        200
    );
}

/// If-Match and If-Unmodified-Since, with RFC 9110's precedence among the
/// preconditions (§13.2.2).
#[test]
fn if_match_and_if_unmodified_since_give_412() {
    let srv = files_server("");
    let etag = get(&srv, "/d.txt", "").header("ETag").unwrap().to_string();
    let d_status = |headers: &str| get(&srv, "/d.txt", headers).status;

    // If-Match: matching (strongly) → 200; not matching or weak → 412.
    assert_eq!(d_status(&format!("If-Match: {etag}\r\n")), 200);
    assert_eq!(d_status("If-Match: *\r\n"), 200);
    let r = get(&srv, "/d.txt", "If-Match: \"other\"\r\n");
    assert_eq!(r.status, 412);
    // Its page is not the file: no validators of the file's go with it
    // (as nginx and Apache answer an error).
    assert_eq!((r.header("ETag"), r.header("Last-Modified")), (None, None));
    assert_eq!(d_status(&format!("If-Match: W/{etag}\r\n")), 412);
    // If-Unmodified-Since: earlier → 412, same → 200, garbage → ignored.
    assert_eq!(
        d_status("If-Unmodified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n"),
        412
    );
    assert_eq!(
        d_status(&format!("If-Unmodified-Since: {LAST_MODIFIED}\r\n")),
        200
    );
    assert_eq!(d_status("If-Unmodified-Since: soon\r\n"), 200);
    // If-Match wins over If-Unmodified-Since (which is then not looked at).
    assert_eq!(
        d_status(&format!(
            "If-Match: {etag}\r\nIf-Unmodified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n"
        )),
        200
    );
    // 412 comes before 304: If-Match failing with a matching If-None-Match.
    assert_eq!(
        d_status(&format!("If-Match: \"other\"\r\nIf-None-Match: {etag}\r\n")),
        412
    );
}

/// The fields are found whatever the case of their names, a list split
/// over several lines is read whole, and look-alike names of the same
/// lengths are not taken for them.
#[test]
fn conditional_field_names_in_any_case_and_split_lists() {
    let srv = files_server("");
    let etag = get(&srv, "/d.txt", "").header("ETag").unwrap().to_string();
    let d_status = |headers: &str| get(&srv, "/d.txt", headers).status;
    assert_eq!(d_status(&format!("if-none-match: {etag}\r\n")), 304);
    assert_eq!(d_status(&format!("IF-NONE-MATCH: {etag}\r\n")), 304);
    assert_eq!(d_status("iF-mAtCh: \"other\"\r\n"), 412);
    assert_eq!(
        d_status("if-unmodified-since: Sat, 05 Nov 1994 08:49:37 GMT\r\n"),
        412
    );
    assert_eq!(
        d_status(&format!("IF-MODIFIED-SINCE: {LAST_MODIFIED}\r\n")),
        304
    );
    // One tag per line: the second line matches.
    assert_eq!(
        d_status(&format!(
            "If-None-Match: \"nope\"\r\nX-Other: 1\r\nIf-None-Match: {etag}\r\n"
        )),
        304
    );
    // Names of the same lengths that are none of them.
    assert_eq!(
        d_status(&format!(
            "If-Natch: \"other\"\r\nIf-Mone-Match: {etag}\r\nrangE: bytes=0-1\r\n"
        )),
        206
    );
    let r = get(
        &srv,
        "/d.txt",
        "RANGE: bytes=0-1\r\nif-range: \"stale\"\r\n",
    );
    assert_eq!(r.status, 200);
    let r = get(
        &srv,
        "/d.txt",
        &format!("range: bytes=2-3\r\nIF-RANGE: {etag}\r\n"),
    );
    assert_eq!((r.status, r.text()), (206, "23".to_string()));
}

#[test]
fn if_range_with_current_and_stale_validators() {
    let srv = files_server("");
    let etag = get(&srv, "/d.txt", "").header("ETag").unwrap().to_string();
    let d = digits100();
    // Current ETag or date: the range.
    for ir in [etag.clone(), LAST_MODIFIED.to_string()] {
        let r = get(
            &srv,
            "/d.txt",
            &format!("Range: bytes=0-1\r\nIf-Range: {ir}\r\n"),
        );
        assert_eq!(r.status, 206, "If-Range: {ir}");
        assert_eq!(r.text(), "01");
    }
    // Stale ETag, weak ETag, other date, garbage: the whole file.
    for ir in [
        "\"stale\"".to_string(),
        format!("W/{etag}"),
        "Mon, 07 Nov 1994 08:49:37 GMT".to_string(),
        "garbage".to_string(),
    ] {
        let r = get(
            &srv,
            "/d.txt",
            &format!("Range: bytes=0-1\r\nIf-Range: {ir}\r\n"),
        );
        assert_eq!(r.status, 200, "If-Range: {ir}");
        assert_eq!(r.text(), d);
    }
}

#[test]
fn single_ranges_206_and_416() {
    let srv = files_server("");
    let d = digits100();
    for (range, body, content_range) in [
        ("bytes=0-9", &d[0..10], "bytes 0-9/100"),
        ("bytes=95-", &d[95..], "bytes 95-99/100"),
        ("bytes=-3", &d[97..], "bytes 97-99/100"),
        ("bytes=90-1000", &d[90..], "bytes 90-99/100"),
        ("bytes=5-5", &d[5..6], "bytes 5-5/100"),
    ] {
        let r = get(&srv, "/d.txt", &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(r.text(), body, "{range}");
        assert_eq!(r.header("Content-Range"), Some(content_range), "{range}");
        assert_eq!(
            r.header("Content-Length"),
            Some(body.len().to_string().as_str())
        );
        assert!(r.header("ETag").is_some());
    }
    // A range of a large (sendfile) file.
    let big = big_content();
    let r = get(&srv, "/big.bin", "Range: bytes=100000-150000\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("Content-Range"),
        Some("bytes 100000-150000/200000")
    );
    assert_eq!(r.body, &big[100_000..150_001]);

    // Unsatisfiable → 416 with `bytes */LEN`.
    for range in ["bytes=100-", "bytes=500-600", "bytes=-0"] {
        let r = get(&srv, "/d.txt", &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 416, "{range}");
        assert_eq!(r.header("Content-Range"), Some("bytes */100"), "{range}");
    }
    assert_eq!(
        get(&srv, "/empty.txt", "Range: bytes=0-\r\n").header("Content-Range"),
        Some("bytes */0")
    );
    // Bad syntax or another unit: ignored, 200 with the whole file.
    for range in [
        "bytes=9-1",
        "bytes=x-y",
        "pages=1-2",
        "bytes=+1-2",
        "bytes 0-1",
    ] {
        let r = get(&srv, "/d.txt", &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.text(), d);
    }
    // HEAD ignores Range (defined for GET only).
    let h = request(&srv, "HEAD", "/d.txt", "Range: bytes=0-9\r\n");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("Content-Length"), Some("100"));
}

#[test]
fn several_ranges_multipart_byteranges() {
    let srv = files_server("");
    let d = digits100();
    let big = big_content();
    for (path, content, ctype) in [
        ("/d.txt", d.as_bytes().to_vec(), "text/plain; charset=utf-8"),
        ("/big.bin", big.clone(), "application/octet-stream"),
    ] {
        let len = content.len();
        let r = get(&srv, path, "Range: bytes=0-4, 50-59,-5\r\n");
        assert_eq!(r.status, 206, "{path}");
        assert_eq!(r.header("Content-Range"), None);
        let ct = r.header("Content-Type").unwrap();
        let boundary = ct
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{ct}"));
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str())
        );
        let parts = multipart_parts(&r.body, boundary);
        let want = [(0, 5), (50, 60), (len - 5, len)];
        assert_eq!(parts.len(), 3, "{path}");
        for ((head, data), (s, e)) in parts.iter().zip(want) {
            assert!(head.contains(&format!("Content-Type: {ctype}")), "{head}");
            assert!(
                head.contains(&format!("Content-Range: bytes {}-{}/{len}", s, e - 1)),
                "{head}"
            );
            assert_eq!(data, &content[s..e]);
        }
    }
}

#[test]
fn cve_2011_3192_overlapping_or_too_many_ranges_get_a_plain_200() {
    let srv = files_server("MaxRanges 10");
    // The Apache Killer request: many overlapping ranges.
    let mut killer = String::from("bytes=0-");
    for i in 0..1300 {
        killer.push_str(&format!(",5-{i}"));
    }
    let r = get(&srv, "/big.bin", &format!("Range: {killer}\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 200_000);
    // Overlapping (few) → 200.
    let r = get(&srv, "/d.txt", "Range: bytes=0-10,5-15\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), digits100());
    // More than MaxRanges non-overlapping → 200.
    let many: Vec<String> = (0..11).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
    let r = get(
        &srv,
        "/d.txt",
        &format!("Range: bytes={}\r\n", many.join(",")),
    );
    assert_eq!(r.status, 200);
    // Exactly MaxRanges → 206.
    let r = get(
        &srv,
        "/d.txt",
        &format!("Range: bytes={}\r\n", many[..10].join(",")),
    );
    assert_eq!(r.status, 206);
}

/// The exact bytes of a multipart/byteranges body, for a small file (from
/// memory) and for a large one (each part with sendfile, parts larger
/// than one sendfile call included).
#[test]
fn multipart_byteranges_bytes_exactly() {
    let large: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let srv = Axkit::start_single_with(&files_conf(""), |d| {
        set_mtime(&d.write("www/d.txt", digits100()));
        set_mtime(&d.write("www/large.bin", &large));
    });
    let d = digits100().into_bytes();
    for (path, content, ctype, range, want) in [
        (
            "/d.txt",
            &d,
            "text/plain; charset=utf-8",
            "bytes=0-0,10-19,-3",
            vec![(0, 1), (10, 20), (97, 100)],
        ),
        (
            "/large.bin",
            &large,
            "application/octet-stream",
            "bytes=2000000-,5-1500004,0-1",
            vec![(2_000_000, 3_000_000), (5, 1_500_005), (0, 2)],
        ),
    ] {
        let (bytes, _) = srv.raw(
            format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nRange: {range}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let r = parse_response(&bytes).unwrap();
        assert_eq!(r.status, 206, "{path}");
        let boundary = r
            .header("Content-Type")
            .unwrap()
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap()
            .to_string();
        let len = content.len();
        let mut expected = Vec::new();
        for (s, e) in want {
            expected.extend_from_slice(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {s}-{}/{len}\r\n\r\n",
                    e - 1
                )
                .as_bytes(),
            );
            expected.extend_from_slice(&content[s..e]);
        }
        expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(
            r.header("Content-Length"),
            Some(expected.len().to_string().as_str())
        );
        assert!(r.body == expected, "{path}: multipart body differs");
        assert_eq!(bytes.len(), r.len, "{path}: nothing after the body");
    }
}

/// A 1 KiB file (under SmallFileSize: read when opened, then served from
/// the cache's memory): exact bytes, the same validators on 200, HEAD, 304
/// and 206, and pipelined requests answered in order on one connection.
#[test]
fn one_kib_file_from_memory() {
    let kib: Vec<u8> = (0..1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let srv = Axkit::start_single_with(&files_conf(""), |d| {
        set_mtime(&d.write("www/1k.txt", &kib));
    });
    let r = get(&srv, "/1k.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("1024"));
    assert_eq!(r.body, kib);
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    let etag = r.header("ETag").unwrap().to_string();
    let req = format!(
        "GET /1k.txt HTTP/1.1\r\nHost: x\r\n\r\n\
         HEAD /1k.txt HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /1k.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n\
         GET /1k.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-\r\nConnection: close\r\n\r\n"
    );
    let (bytes, closed) = srv.raw(req.as_bytes());
    assert!(closed);
    let full = parse_response(&bytes).unwrap();
    assert_eq!((full.status, full.body.as_slice()), (200, kib.as_slice()));
    let rest = &bytes[full.len..];
    let head = parse_head_response(rest).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("1024"));
    let rest = &rest[head.len..];
    let not_modified = parse_response(rest).unwrap();
    assert_eq!(not_modified.status, 304);
    let rest = &rest[not_modified.len..];
    let part = parse_response(rest).unwrap();
    assert_eq!(part.status, 206);
    assert_eq!(part.header("Content-Range"), Some("bytes 1000-1023/1024"));
    assert_eq!(part.body, &kib[1000..]);
    assert_eq!(rest.len(), part.len, "nothing after the last response");
    for r in [&full, &head, &not_modified, &part] {
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    }
}

/// With a body filter (a Lua `write_body_data` hook) file bytes go through
/// memory, read on the blocking pool: the whole file and several ranges
/// still arrive exactly, filtered.
#[test]
fn filtered_file_bodies_whole_and_multipart() {
    let text: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let upper = text.to_ascii_uppercase();
    let conf = format!("PluginDir {{dir}}/plugins\n{}", files_conf("Plugin upper"));
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write(
            "plugins/upper.lua",
            "function hook_write_body_data(r, data, last) return OK, data:upper() end\n",
        );
        d.write("www/t.txt", &text);
    });
    let r = get(&srv, "/t.txt", "");
    assert_eq!(r.status, 200);
    assert!(r.body == upper, "filtered whole file");
    let r = get(&srv, "/t.txt", "Range: bytes=0-9,70000-\r\n");
    assert_eq!(r.status, 206);
    let boundary = r
        .header("Content-Type")
        .unwrap()
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap()
        .to_string();
    let parts = multipart_parts(&r.body, &boundary.to_ascii_uppercase());
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].1, &upper[..10]);
    assert_eq!(parts[1].1, &upper[70000..]);
}
