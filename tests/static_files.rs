//! Static files done right (issue #3), through the stock `axkit` binary and
//! raw bytes: validators, conditional requests (304/412 and their
//! precedence), ranges (206, multipart/byteranges, If-Range, 416, the
//! CVE-2011-3192 request), caching headers, precompressed siblings,
//! directory listings, typeless URIs, content sniffing, error documents
//! and the request-log format.
//!
//! Every server runs as one process (`--no-master`); each test starts its
//! own so that they can run in parallel.

mod common;

use std::time::Duration;

use common::*;

const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn get(srv: &Axkit, path: &str, headers: &str) -> Response {
    request(srv, "GET", path, headers)
}

/// 100 bytes: `0123456789` ten times, so any range is easy to check.
fn digits100() -> String {
    "0123456789".repeat(10)
}

/// A file bigger than SmallFileSize, so it goes out with sendfile.
fn big_content() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

fn files_conf(extra: &str) -> String {
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

fn files_server(extra: &str) -> Axkit {
    Axkit::start_single_with(&files_conf(extra), |d| {
        set_mtime(&d.write("www/d.txt", digits100()));
        set_mtime(&d.write("www/big.bin", big_content()));
        set_mtime(&d.write("www/empty.txt", ""));
    })
}

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

#[test]
fn conditional_get_304_and_412_with_rfc_precedence() {
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

    // If-Match: matching (strongly) → 200; not matching or weak → 412.
    assert_eq!(d_status(&format!("If-Match: {etag}\r\n")), 200);
    assert_eq!(d_status("If-Match: *\r\n"), 200);
    let r = get(&srv, "/d.txt", "If-Match: \"other\"\r\n");
    assert_eq!(r.status, 412);
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
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

/// Split a multipart/byteranges body into (headers, data) parts.
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
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
fn cache_control_and_expires_per_location() {
    let srv = Axkit::start_single_with(
        &files_conf(
            "    <Location /assets>
        CacheControl \"public, max-age=3600\"
        Expires access+1h
    </Location>
    <Location /mod>
        Expires modification+1d
    </Location>",
        ),
        |d| {
            set_mtime(&d.write("www/assets/a.css", "p{}"));
            set_mtime(&d.write("www/mod/m.txt", "m"));
            set_mtime(&d.write("www/plain.txt", "p"));
        },
    );
    let r = get(&srv, "/assets/a.css", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=3600"));
    let expires = httpdate::parse_http_date(r.header("Expires").unwrap()).unwrap();
    let date = httpdate::parse_http_date(r.header("Date").unwrap()).unwrap();
    let ahead = expires.duration_since(date).unwrap().as_secs();
    assert!((3599..=3601).contains(&ahead), "{ahead}");
    let r = get(&srv, "/mod/m.txt", "");
    assert_eq!(r.header("Expires"), Some("Mon, 07 Nov 1994 08:49:37 GMT"));
    assert_eq!(r.header("Cache-Control"), None);
    let r = get(&srv, "/plain.txt", "");
    assert_eq!(r.header("Expires"), None);
    assert_eq!(r.header("Cache-Control"), None);
}

#[test]
fn bad_expires_is_a_config_error() {
    let dir = TempDir::new("expires");
    let conf = dir.write(
        "axkit.conf",
        config_text(&dir, &files_conf("Expires tomorrow")),
    );
    let err = refused_at_start(&conf);
    assert!(err.contains("Expires"), "{err}");
}

#[test]
fn precompressed_siblings_by_accept_encoding() {
    precompressed_checks("");
}

#[test]
fn precompressed_siblings_with_the_open_file_cache_off() {
    precompressed_checks("OpenFileCache Off");
}

fn precompressed_checks(extra: &str) {
    let srv = Axkit::start_single_with(
        &files_conf(&format!("Precompressed br gzip\n{extra}")),
        |d| {
            set_mtime(&d.write("www/app.js", "plain javascript"));
            d.write("www/app.js.gz", "GZ-BYTES");
            d.write("www/app.js.br", "BR-BYTES!");
            d.write("www/only.css", "css");
            d.write("www/only.css.gz", "GZCSS");
        },
    );
    let r = get(&srv, "/app.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "BR-BYTES!");
    assert_eq!(r.header("Content-Encoding"), Some("br"));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(
        r.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let br_etag = r.header("ETag").unwrap().to_string();
    let r = get(&srv, "/app.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.text(), "GZ-BYTES");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_ne!(r.header("ETag"), Some(br_etag.as_str()));
    let r = get(&srv, "/app.js", "Accept-Encoding: br;q=0, gzip\r\n");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    let r = get(&srv, "/app.js", "");
    assert_eq!(r.text(), "plain javascript");
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = get(&srv, "/only.css", "Accept-Encoding: br\r\n");
    assert_eq!(r.text(), "css");
    // Ranges apply to the encoded bytes.
    let r = get(
        &srv,
        "/app.js",
        "Accept-Encoding: gzip\r\nRange: bytes=0-1\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "GZ");
    assert_eq!(r.header("Content-Range"), Some("bytes 0-1/8"));
    // Conditional on the encoded file's validator.
    let r = get(
        &srv,
        "/app.js",
        &format!("Accept-Encoding: br\r\nIf-None-Match: {br_etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
}

#[test]
fn precompressed_sibling_symlink_is_not_followed() {
    let srv = Axkit::start_single_with(&files_conf("Precompressed gzip"), |d| {
        d.write("secret.txt", "SECRET");
        d.write("www/a.txt", "plain");
        std::os::unix::fs::symlink(d.path().join("secret.txt"), d.path().join("www/a.txt.gz"))
            .unwrap();
    });
    let r = get(&srv, "/a.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "plain");
}

#[test]
fn a_file_that_shrinks_while_sent_closes_the_connection() {
    // Larger than what the loopback socket buffers can hold, so the
    // server is still sending when the file is cut.
    const LEN: usize = 32 << 20;
    let srv = files_server("");
    let path = srv.dir.path().join("www/huge.bin");
    std::fs::write(&path, vec![7u8; LEN]).unwrap();
    let mut s = srv.connect();
    use std::io::Write;
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Do not read yet: the server fills the socket and waits.
    std::thread::sleep(Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (all, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection closes");
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(String::from_utf8_lossy(&all[..head_end]).contains(&format!("Content-Length: {LEN}")));
    let body = &all[head_end..];
    // Nothing is sent after the cut: what arrives is what was already
    // queued (those bytes may read as zeros: truncation zeroes the page
    // cache pages the socket still references, as with any sendfile
    // server).
    assert!(body.len() < LEN, "stopped short: {}", body.len());
    // And the worker still serves.
    assert_eq!(get(&srv, "/d.txt", "").status, 200);
}

#[test]
fn directory_without_slash_redirects_with_query_kept() {
    let srv = files_server("");
    std::fs::create_dir_all(srv.dir.path().join("www/sub dir")).unwrap();
    let r = get(&srv, "/sub%20dir?a=1&b=2", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub%20dir/?a=1&b=2"));
}

#[test]
fn directory_index_first_existing_name_wins() {
    let conf = files_conf("").replace(
        "DirectoryIndex index.html",
        "DirectoryIndex index.htm default.txt index.html",
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/a/default.txt", "default");
        d.write("www/a/index.html", "html");
        d.write("www/b/index.html", "b-html");
        d.write("www/c/other.txt", "x");
    });
    assert_eq!(get(&srv, "/a/", "").text(), "default");
    assert_eq!(get(&srv, "/b/", "").text(), "b-html");
    // No index and no serve_dir: 403.
    assert_eq!(get(&srv, "/c/", "").status, 403);
}

const LISTING_CONF: &str = "\
Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_dir
    Plugin serve_file
    <Location /hidden>
        DirListHidden on
    </Location>
</Server>
";

#[test]
fn serve_dir_lists_sorted_escaped_with_sizes_and_dates() {
    let evil = "<img src=x onerror=alert(1)>";
    let srv = Axkit::start_single_with(LISTING_CONF, |d| {
        set_mtime(&d.write("www/list/b.txt", "12345"));
        set_mtime(&d.write("www/list/a.txt", "1"));
        set_mtime(&d.write(&format!("www/list/{evil}"), "x"));
        set_mtime(&d.write("www/list/q\"uote&amp.txt", "x"));
        d.write("www/list/.secret", "x");
        std::fs::create_dir_all(d.path().join("www/list/zdir")).unwrap();
        d.write("www/withindex/index.html", "index!");
        d.write("www/hidden/.dot", "x");
    });
    let r = get(&srv, "/list/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(
        html.contains("href=\"./%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\""),
        "{html}"
    );
    assert!(html.contains("q&quot;uote&amp;amp.txt"), "{html}");
    assert!(
        !html.contains(".secret"),
        "dotfiles hidden by default: {html}"
    );
    // Directories first, then names in order; sizes and dates shown.
    let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} in {html}"));
    assert!(pos("zdir/") < pos(">&lt;img") && pos(">&lt;img") < pos(">a.txt<"));
    assert!(pos(">a.txt<") < pos(">b.txt<"));
    assert!(html.contains("<td>5</td>"), "{html}");
    assert!(html.contains(LAST_MODIFIED), "{html}");
    assert!(html.contains("href=\"../\""));
    // An index file still wins; the listing only without one.
    assert_eq!(get(&srv, "/withindex/", "").text(), "index!");
    // Without the slash: the redirect, not a listing.
    assert_eq!(get(&srv, "/list", "").status, 301);
    // HEAD works, other methods do not.
    assert_eq!(request(&srv, "HEAD", "/list/", "").status, 200);
    assert_eq!(request(&srv, "DELETE", "/list/", "").status, 405);
    // DirListHidden on.
    assert!(get(&srv, "/hidden/", "").text().contains(".dot"));
    // The root has no parent link.
    assert!(!get(&srv, "/", "").text().contains("href=\"../\""));
}

/// A symlink in a listing is shown as what it would serve under the
/// root's rule: a link to a directory inside the root as a directory, a
/// link out of the root without the size or date of what it points to.
#[test]
fn serve_dir_shows_symlinks_as_the_root_serves_them() {
    let srv = Axkit::start_single_with(LISTING_CONF, |d| {
        std::fs::create_dir_all(d.path().join("www/links/sub")).unwrap();
        d.write("outside.bin", vec![b'x'; 7777]);
        let links = d.path().join("www/links");
        std::os::unix::fs::symlink("sub", links.join("to-sub")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside.bin"), links.join("to-out")).unwrap();
    });
    let html = get(&srv, "/links/", "").text();
    assert!(html.contains(">to-sub/<"), "{html}");
    assert!(html.contains(">to-out<"), "{html}");
    assert!(!html.contains("7777"), "{html}");
    assert_eq!(get(&srv, "/links/to-out", "").status, 403);
    assert_eq!(get(&srv, "/links/to-sub/", "").status, 200);
}

#[test]
fn typeless_uri_serves_the_first_existing_extension_with_its_validators() {
    typeless_checks("");
}

#[test]
fn typeless_uri_with_the_open_file_cache_off() {
    typeless_checks("OpenFileCache Off");
}

fn typeless_checks(extra: &str) {
    let srv = Axkit::start_single_with(
        &format!(
            "Workers 1
{extra}
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {{dir}}/www
    Plugin uri_to_file
    Plugin typeless_uri
    Plugin fast_mime_map
    Plugin serve_file
    <Location /docs>
        TypelessExtensions txt html
    </Location>
</Server>
"
        ),
        |d| {
            set_mtime(&d.write("www/about.html", "<p>about</p>"));
            d.write("www/about.txt", "about text");
            d.write("www/feed.xml", "<feed/>");
            d.write("www/docs/x.html", "html");
            d.write("www/docs/x.txt", "txt");
            d.write("secret.html", "SECRET");
            std::os::unix::fs::symlink(d.path().join("secret.html"), d.path().join("www/s.html"))
                .unwrap();
        },
    );
    let r = get(&srv, "/about", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<p>about</p>");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    let etag = r.header("ETag").unwrap().to_string();
    assert_eq!(
        get(&srv, "/about", &format!("If-None-Match: {etag}\r\n")).status,
        304
    );
    assert_eq!(get(&srv, "/feed", "").text(), "<feed/>");
    assert_eq!(get(&srv, "/docs/x", "").text(), "txt");
    assert_eq!(get(&srv, "/nothing", "").status, 404);
    // A symlink out of the tree is not followed.
    assert_eq!(get(&srv, "/s", "").status, 404);
    // The explicit name still works.
    assert_eq!(get(&srv, "/about.txt", "").text(), "about text");
}

#[test]
fn magic_mime_map_sniffs_files_without_a_useful_extension() {
    let png: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
    ];
    let srv = Axkit::start_single_with(
        "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin magic_mime_map
    Plugin serve_file
</Server>
",
        |d| {
            d.write("www/picture", png);
            d.write("www/archive.dat1", b"PK\x03\x04rest of a zip file");
            d.write("www/page.html", "<p>named</p>");
            d.write("www/unknown", "just text");
        },
    );
    assert_eq!(
        get(&srv, "/picture", "").header("Content-Type"),
        Some("image/png")
    );
    assert_eq!(
        get(&srv, "/archive.dat1", "").header("Content-Type"),
        Some("application/zip")
    );
    assert_eq!(
        get(&srv, "/page.html", "").header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        get(&srv, "/unknown", "").header("Content-Type"),
        Some("application/octet-stream")
    );
}

const ERRDOC_CONF: &str = "\
Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
    Plugin error_doc
    ErrorDocument 404 /errors/404.html
    ErrorDocument 403 /errors/missing.html
    <Location /api>
        ErrorDocument 404 /errors/api404.html
    </Location>
</Server>
";

#[test]
fn error_document_served_with_the_original_status() {
    let srv = Axkit::start_single_with(ERRDOC_CONF, |d| {
        d.write("www/errors/404.html", "<h1>custom not found</h1>");
        d.write("www/errors/api404.html", "{\"error\": 404}");
        std::fs::create_dir_all(d.path().join("www/noindex")).unwrap();
    });
    let r = get(&srv, "/nope.html", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>custom not found</h1>");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    // The page's validators are not the missing resource's.
    assert_eq!(r.header("ETag"), None);
    assert_eq!(r.header("Last-Modified"), None);
    // Conditional and range headers of the failed request do not turn the
    // error page into a 304 or 206.
    let r = get(
        &srv,
        "/nope.html",
        "Range: bytes=0-3\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n",
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "<h1>custom not found</h1>");
    // A Location's own ErrorDocument wins.
    let r = get(&srv, "/api/x", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "{\"error\": 404}");
    // An error document that is itself missing: the built-in page, 403.
    let r = get(&srv, "/noindex/", "");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("<h1>403 Forbidden</h1>"), "{}", r.text());
    // A status without ErrorDocument: the built-in page.
    let r = request(&srv, "POST", "/errors/404.html", "Content-Length: 0\r\n");
    assert_eq!(r.status, 405);
    assert!(r.text().contains("405"));
}

#[test]
fn bad_error_document_is_a_config_error() {
    let dir = TempDir::new("errdoc");
    let conf = dir.write(
        "axkit.conf",
        config_text(
            &dir,
            &ERRDOC_CONF.replace("/errors/404.html", "http://elsewhere/"),
        ),
    );
    let err = refused_at_start(&conf);
    assert!(
        err.contains("ErrorDocument") && err.contains("local URI"),
        "{err}"
    );
}

#[test]
fn built_in_error_pages_leak_internals_only_with_stack_trace_on() {
    // A DocumentRoot that does not exist makes uri_to_file fail with 500.
    let conf = "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/missing-root
    Plugin uri_to_file
    Plugin serve_file
    <Location /debug>
        StackTrace On
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |_| {});
    let r = get(&srv, "/x", "");
    assert_eq!(r.status, 500);
    let page = r.text();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(
        page.contains("<h1>500 Internal Server Error</h1>"),
        "{page}"
    );
    assert!(
        !page.contains("uri_to_file"),
        "no internals by default: {page}"
    );
    let page = get(&srv, "/debug/x", "").text();
    assert!(
        page.contains("plugin uri_to_file, hook uri_translation"),
        "{page}"
    );
    // A 404 never carries a trace.
    let srv404 = files_server("StackTrace On");
    let page = get(&srv404, "/nope", "").text();
    assert!(
        page.contains("<h1>404 Not Found</h1>") && !page.contains("<pre>"),
        "{page}"
    );
}

#[test]
fn request_log_format_tokens_and_default_combined() {
    let conf = "Workers 1
Plugin request_log
RequestLog {dir}/access.log
<Server>
    Listen 127.0.0.1:0
    ServerName files.example
    DocumentRoot {dir}/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
    <Location /custom>
        RequestLog {dir}/custom.log
        RequestLogFormat \"%h|%l|%u|%t|%r|%>s|%b|%B|%{Referer}i|%{ETag}o|%{X-None}i|%D|%T|%m|%U|%q|%H|%v|%p|%%\"
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("www/custom/a.txt", "hello");
        d.write("www/b.txt", "bb");
    });
    let r = get(&srv, "/custom/a.txt?x=1", "Referer: http://ref/\"q\"\r\n");
    assert_eq!(r.status, 200);
    let etag = r.header("ETag").unwrap().to_string();
    let text = wait_for_line(&srv.dir.path().join("custom.log"), |l| l.contains("a.txt"));
    let line = text.lines().find(|l| l.contains("a.txt")).unwrap();
    let f: Vec<&str> = line.split('|').collect();
    assert_eq!(f.len(), 20, "{line}");
    assert_eq!(f[0], "127.0.0.1");
    assert_eq!((f[1], f[2]), ("-", "-"));
    assert!(f[3].starts_with('[') && f[3].ends_with(" +0000]"), "{line}");
    assert_eq!(f[4], "GET /custom/a.txt?x=1 HTTP/1.1");
    assert_eq!((f[5], f[6], f[7]), ("200", "5", "5"));
    assert_eq!(f[8], "http://ref/\\\"q\\\"", "quotes escaped");
    assert_eq!(f[9], etag.replace('"', "\\\""));
    assert_eq!(f[10], "-");
    assert!(f[11].parse::<u64>().is_ok(), "{line}");
    assert_eq!(f[12], "0");
    assert_eq!(
        (f[13], f[14], f[15], f[16]),
        ("GET", "/custom/a.txt", "?x=1", "HTTP/1.1")
    );
    assert_eq!((f[17], f[19]), ("files.example", "%"));
    assert_eq!(f[18], srv.addr.port().to_string());
    // Elsewhere: the default Combined Log Format; a 304 logs `-` bytes.
    let r = get(&srv, "/b.txt", "User-Agent: tester/1.0\r\n");
    let etag = r.header("ETag").unwrap().to_string();
    get(
        &srv,
        "/b.txt",
        &format!("If-None-Match: {etag}\r\nUser-Agent: tester/1.0\r\n"),
    );
    let text = wait_for_line(&srv.dir.path().join("access.log"), |l| l.contains(" 304 "));
    let line = text.lines().find(|l| l.contains(" 304 ")).unwrap();
    assert!(
        line.starts_with("127.0.0.1 - - [")
            && line.ends_with("] \"GET /b.txt HTTP/1.1\" 304 - \"-\" \"tester/1.0\""),
        "{line}"
    );
}

#[test]
fn bad_request_log_format_is_a_config_error() {
    let dir = TempDir::new("logfmt");
    let conf = dir.write(
        "axkit.conf",
        config_text(
            &dir,
            "Plugin request_log\nRequestLogFormat \"%h %Z\"\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
        ),
    );
    let err = refused_at_start(&conf);
    assert!(
        err.contains("RequestLogFormat") && err.contains("%Z"),
        "{err}"
    );
}

#[test]
fn open_file_cache_keeps_misses_and_hits_for_its_validity() {
    let srv = Axkit::start_single_with(&files_conf("OpenFileCache 100 1s"), |d| {
        d.write("www/a.txt", "v1");
        std::fs::create_dir_all(d.path().join("www/dir")).unwrap();
        d.write("www/dir/index.html", "index");
    });
    let www = srv.dir.path().join("www");
    assert_eq!(get(&srv, "/late.txt", "").status, 404);
    assert_eq!(get(&srv, "/a.txt", "").text(), "v1");
    assert_eq!(get(&srv, "/dir/", "").text(), "index");
    // Cached: a new file and a vanished one are seen only when the entry
    // expires.
    std::fs::write(www.join("late.txt"), "late").unwrap();
    std::fs::remove_file(www.join("a.txt")).unwrap();
    assert_eq!(get(&srv, "/late.txt", "").status, 404, "cached miss");
    assert_eq!(get(&srv, "/a.txt", "").text(), "v1", "cached open file");
    // A cached directory index never hides the slash redirect.
    assert_eq!(get(&srv, "/dir", "").status, 301);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&srv, "/late.txt", "").text(), "late");
    assert_eq!(get(&srv, "/a.txt", "").status, 404);
    // Path info and escapes behave as without the cache.
    assert_eq!(get(&srv, "/dir/index.html/extra", "").status, 404);
}

/// `OpenFileCache` written wrong: `--check` names file, line and what was
/// expected; the old two-directive form is gone.
#[test]
fn open_file_cache_directive_syntax_and_errors() {
    let check = |line: &str| {
        let dir = TempDir::new("ofc");
        let conf = dir.write("axkit.conf", config_text(&dir, &files_conf(line)));
        let out = std::process::Command::new(BIN)
            .args(["--check", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err, conf.display().to_string())
    };
    for ok in [
        "OpenFileCache 10 1s",
        "OpenFileCache 5000 500ms",
        "OpenFileCache Off",
        "OpenFileCache off",
    ] {
        let (code, err, _) = check(ok);
        assert_eq!(code, Some(0), "{ok}: {err}");
    }
    // files_conf puts the extra line on line 9.
    for (bad, why) in [
        (
            "OpenFileCache 1000",
            "expected OpenFileCache SIZE TTL (like 1000 1s) or Off, got \"1000\"",
        ),
        ("OpenFileCache 0 1s", "SIZE must be a positive number"),
        ("OpenFileCache many 1s", "SIZE must be a positive number"),
        ("OpenFileCache 10 soon", "TTL: expected a duration"),
        ("OpenFileCache On", "got \"On\""),
    ] {
        let (code, err, file) = check(bad);
        assert_eq!(code, Some(1), "{bad}: {err}");
        assert!(
            err.contains(&format!("{file}:9: OpenFileCache (plugin uri_to_file): ")),
            "{bad}: {err}"
        );
        assert!(err.contains(why), "{bad}: {err}");
    }
    let (code, err, file) = check("OpenFileCache 10 1s 1s");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{file}:9: OpenFileCache")), "{err}");
    let (code, err, file) = check("OpenFileCacheValid 1s");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{file}:9: OpenFileCacheValid: unknown directive")),
        "{err}"
    );
}

/// With no `OpenFileCache` line the cache is on (1000 entries, 1 s): a
/// file changed on disk is served as it was, with matching validators,
/// until the entry expires; then the new contents and validators. With
/// `Off` the change is seen at once.
#[test]
fn open_file_cache_is_on_by_default_and_changes_show_after_its_ttl() {
    for (extra, cached) in [("", true), ("OpenFileCache Off", false)] {
        let srv = Axkit::start_single_with(&files_conf(extra), |d| {
            d.write("www/small.txt", "version one");
            d.write("www/big.bin", big_content());
        });
        let www = srv.dir.path().join("www");
        let first = get(&srv, "/small.txt", "");
        assert_eq!(first.text(), "version one");
        let etag = first.header("ETag").unwrap().to_string();
        let big_etag = get(&srv, "/big.bin", "")
            .header("ETag")
            .unwrap()
            .to_string();
        assert_eq!(get(&srv, "/gone-later.txt", "").status, 404);
        std::fs::write(www.join("small.txt"), "version two!").unwrap();
        std::fs::write(www.join("gone-later.txt"), "here now").unwrap();
        let mut bigger = big_content();
        bigger.extend_from_slice(b"more");
        std::fs::write(www.join("big.bin"), &bigger).unwrap();
        let r = get(&srv, "/small.txt", "");
        let late = get(&srv, "/gone-later.txt", "");
        let big = get(&srv, "/big.bin", "");
        if cached {
            // The snapshot and its own validators, never a mix.
            assert_eq!(r.text(), "version one", "cached contents");
            assert_eq!(r.header("ETag"), Some(etag.as_str()));
            assert_eq!(late.status, 404, "cached miss");
            // A large file is sent from the open descriptor: the file was
            // rewritten in place, so the announced (old) length is sent.
            assert_eq!(big.header("ETag"), Some(big_etag.as_str()));
            std::thread::sleep(Duration::from_millis(1100));
        }
        let r = get(&srv, "/small.txt", "");
        assert_eq!(r.text(), "version two!");
        assert_ne!(r.header("ETag"), Some(etag.as_str()));
        assert_eq!(get(&srv, "/gone-later.txt", "").text(), "here now");
        let big = get(&srv, "/big.bin", "");
        assert_eq!(big.body, bigger);
        assert_ne!(big.header("ETag"), Some(big_etag.as_str()));
    }
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

/// Precompressed siblings go through the open-file cache: one found stays
/// served after it is deleted, and one missing stays unsent after it is
/// created, until the entries expire.
#[test]
fn precompressed_siblings_found_and_missing_are_cached() {
    let srv = Axkit::start_single_with(&files_conf("Precompressed br gzip"), |d| {
        d.write("www/app.js", "plain javascript");
        d.write("www/app.js.gz", "GZ-BYTES");
        d.write("www/big.js", big_content());
    });
    let www = srv.dir.path().join("www");
    let enc = "Accept-Encoding: br, gzip\r\n";
    assert_eq!(get(&srv, "/app.js", enc).text(), "GZ-BYTES");
    assert_eq!(get(&srv, "/big.js", enc).body, big_content());
    std::fs::remove_file(www.join("app.js.gz")).unwrap();
    std::fs::write(www.join("app.js.br"), "BR-BYTES").unwrap();
    std::fs::write(www.join("big.js.gz"), "BIG-GZ").unwrap();
    let r = get(&srv, "/app.js", enc);
    assert_eq!(r.text(), "GZ-BYTES", "a cached sibling and a cached miss");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    let r = get(&srv, "/big.js", enc);
    assert_eq!(r.header("Content-Encoding"), None, "cached misses");
    assert_eq!(r.body, big_content());
    std::thread::sleep(Duration::from_millis(1100));
    let r = get(&srv, "/app.js", enc);
    assert_eq!(r.text(), "BR-BYTES");
    assert_eq!(r.header("Content-Encoding"), Some("br"));
    let r = get(&srv, "/big.js", enc);
    assert_eq!(r.text(), "BIG-GZ");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
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

/// A file named by another translating plugin (a Lua `uri_translation`
/// hook) is opened by `serve_file` itself: found, missing, a directory.
/// It is opened beneath a root like any other: the Location's
/// DocumentRoot when the file lies under it (links inside it followed,
/// links out refused unless `FollowSymlinks on`), else with no symlink
/// anywhere in its path.
#[test]
fn serve_file_opens_a_file_another_plugin_named() {
    let mapper_conf = |extra: &str| {
        format!(
            "PluginDir {{dir}}/plugins
Workers 1
<Server>
    Listen 127.0.0.1:0
    Plugin mapper
{extra}
    Plugin fast_mime_map
    Plugin serve_file
</Server>
"
        )
    };
    let prepare = |d: &TempDir| {
        let root = d.path().join("files");
        d.write(
            "plugins/mapper.lua",
            format!(
                "function hook_uri_translation(r)\n  r:set_filename(\"{}\" .. r:path())\n  return OK\nend\n",
                root.display()
            ),
        );
        set_mtime(&d.write("files/a.txt", "from lua"));
        d.write("files/big.bin", big_content());
        std::fs::create_dir_all(root.join("sub")).unwrap();
        d.write("outside/secret.txt", "SECRET");
        std::os::unix::fs::symlink("a.txt", root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), root.join("out")).unwrap();
    };
    let srv = Axkit::start_single_with(&mapper_conf(""), prepare);
    let r = get(&srv, "/a.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "from lua");
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    assert_eq!(get(&srv, "/big.bin", "").body, big_content());
    assert_eq!(get(&srv, "/nothing.txt", "").status, 404);
    assert_eq!(get(&srv, "/sub", "").status, 403);
    // No DocumentRoot: no symlink anywhere in the path.
    assert_eq!(get(&srv, "/link.txt", "").status, 403);
    assert_eq!(get(&srv, "/out/secret.txt", "").status, 403);

    // Under the Location's DocumentRoot: its rule.
    let with_root = "    Plugin uri_to_file\n    DocumentRoot {dir}/files";
    let srv = Axkit::start_single_with(&mapper_conf(with_root), prepare);
    assert_eq!(get(&srv, "/link.txt", "").text(), "from lua");
    let r = get(&srv, "/out/secret.txt", "");
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("SECRET"));
    let follow = format!("{with_root}\n    FollowSymlinks on");
    let srv = Axkit::start_single_with(&mapper_conf(&follow), prepare);
    assert_eq!(get(&srv, "/out/secret.txt", "").text(), "SECRET");
}

/// A large file kept open by the open-file cache and cut short between
/// two requests: the second response announces the length the cache knew,
/// sends the bytes that still exist and closes the connection, never
/// anything past the new end. (Should the cache entry have expired in
/// between, the new length is announced instead; the bytes are the same.)
#[test]
fn a_cached_file_that_shrank_is_never_sent_past_its_end() {
    let srv = files_server("");
    let big = big_content();
    assert_eq!(get(&srv, "/big.bin", "").body, big);
    std::fs::OpenOptions::new()
        .write(true)
        .open(srv.dir.path().join("www/big.bin"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (bytes, closed) = srv.raw(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let announced_old = head.contains("Content-Length: 200000\r\n");
    assert!(
        announced_old || head.contains("Content-Length: 1000\r\n"),
        "{head}"
    );
    assert!(closed || !announced_old, "the connection closes");
    assert!(
        bytes[head_end..] == big[..1000],
        "only the bytes that exist"
    );
    assert_eq!(
        get(&srv, "/d.txt", "").status,
        200,
        "the worker still serves"
    );
}
