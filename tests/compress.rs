//! The `compress` plugin through the stock `axkit` binary: each coding
//! decoded back to the file, `Accept-Encoding` weights, what is never
//! compressed (ranges, encoded bodies, small bodies, other types, `Compress
//! off`), `Vary` merged, weak `ETag`s that still revalidate to 304, `HEAD`,
//! a CGI stream compressed while the script still runs, an image that
//! steps around the filter (the trace shows it never called) and keeps
//! sendfile, the cache storing each coding with its own headers in either
//! plugin order, a non-ASCII type, and zstd after a filter that changed
//! the body's length.

#[path = "common/cgi.rs"]
mod cgi;
mod common;

use std::io::{Read, Write};
use std::time::Duration;

use cgi::*;
use common::*;

/// Files under `www/`, scripts under `cgi-bin/`, `compress` loaded for
/// the whole Server.
fn server(prepare: impl FnOnce(&TempDir)) -> Axkit {
    let extra = "    Plugin compress\n    \
                 <Location /pre>\n        Precompressed gzip\n    </Location>\n    \
                 <Location /off>\n        Compress off\n    </Location>\n    \
                 <Location /gz>\n        CompressPrefer gzip\n        CompressLevel gzip=9\n    </Location>\n    \
                 <Location /trace>\n        Trace On\n    </Location>\n";
    start(&conf("", extra), |d| {
        d.write("www/big.html", page(100 * 1024));
        d.write("www/small.html", page(4 * 1024));
        d.write("www/tiny.html", "<p>tiny</p>\n");
        d.write("www/logo.png", page(8 * 1024));
        d.write("www/off/big.html", page(8 * 1024));
        d.write("www/gz/big.html", page(8 * 1024));
        prepare(d)
    })
}

/// HTML-like text of `len` bytes, varied enough that codecs work for it.
fn page(len: usize) -> String {
    let mut rng = Rng(7);
    let words = [
        "axkit",
        "pipe",
        "<div class=\"x\">",
        "</div>",
        "the",
        "web",
        "\n",
        "cache",
    ];
    let mut out = String::from("<!doctype html>\n");
    while out.len() < len {
        out.push_str(words[rng.below(words.len())]);
        out.push_str(&rng.below(1000).to_string());
        out.push(' ');
    }
    out.truncate(len);
    out
}

fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(data).unwrap(),
        other => panic!("coding {other}"),
    }
    out
}

fn file(srv: &Axkit, rel: &str) -> Vec<u8> {
    std::fs::read(srv.dir.path().join("www").join(rel)).unwrap()
}

#[test]
fn each_coding_decodes_to_the_file() {
    let srv = server(|_| {});
    for coding in ["gzip", "br", "zstd"] {
        // Streamed from the file (larger than SmallFileSize): chunked.
        let r = get(&srv, "/big.html", &format!("Accept-Encoding: {coding}\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Encoding"), Some(coding));
        assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
        assert_eq!(r.header("Content-Length"), None);
        assert_eq!(r.header("Accept-Ranges"), None);
        assert!(r.header("ETag").unwrap().starts_with("W/\""), "{r:?}");
        assert!(r.body.len() < 100 * 1024 / 2, "{coding}: {}", r.body.len());
        assert_eq!(decode(coding, &r.body), file(&srv, "big.html"), "{coding}");
        // Whole from memory: compressed in one go, with its length.
        let r = get(
            &srv,
            "/small.html",
            &format!("Accept-Encoding: {coding}\r\n"),
        );
        assert_eq!(r.header("Content-Encoding"), Some(coding));
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str())
        );
        assert_eq!(
            decode(coding, &r.body),
            file(&srv, "small.html"),
            "{coding}"
        );
    }
    // The Location's preference and level.
    let r = get(&srv, "/gz/big.html", "Accept-Encoding: br, zstd, gzip\r\n");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &r.body), file(&srv, "gz/big.html"));
}

#[test]
fn accept_encoding_weights() {
    let srv = server(|_| {});
    for (accept, expect) in [
        ("gzip, deflate, br, zstd", Some("br")),
        ("gzip, zstd", Some("zstd")),
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("br;q=0, zstd;q=0, *", Some("gzip")),
        ("x-gzip", Some("gzip")),
        ("*;q=0.3, zstd;q=0.2", Some("br")),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("gzip;q=0", None),
        ("*;q=0", None),
        ("gzip;q=bogus", None),
    ] {
        let r = get(
            &srv,
            "/small.html",
            &format!("Accept-Encoding: {accept}\r\n"),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Encoding"), expect, "{accept}");
        // Whatever the answer, it depended on the field.
        assert_eq!(r.header("Vary"), Some("Accept-Encoding"), "{accept}");
        match expect {
            Some(coding) => assert_eq!(decode(coding, &r.body), file(&srv, "small.html")),
            None => assert_eq!(r.body, file(&srv, "small.html"), "{accept}"),
        }
    }
    let r = get(&srv, "/small.html", "");
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, file(&srv, "small.html"));
}

#[test]
fn what_is_never_compressed() {
    let srv = server(|d| {
        // A precompressed sibling is sent as it is, not compressed again.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        gz.write_all(page(8 * 1024).as_bytes()).unwrap();
        d.write("www/pre/page.html", page(8 * 1024));
        d.write("www/pre/page.html.gz", gz.finish().unwrap());
        sh(d, "encoded", "printf 'Content-Type: text/html\\nContent-Encoding: x-custom\\n\\n'; head -c 2000 /dev/zero");
        sh(
            d,
            "events",
            "printf 'Content-Type: text/event-stream\\n\\n'; head -c 2000 /dev/zero",
        );
        sh(d, "keep", "printf 'Content-Type: text/html\\nCache-Control: no-transform\\n\\n'; head -c 2000 /dev/zero");
        // The field's second line counts as much as its first.
        sh(d, "keep-second", "printf 'Content-Type: text/html\\nCache-Control: public\\nCache-Control: no-transform\\n\\n'; head -c 2000 /dev/zero");
        sh(d, "encoded-second", "printf 'Content-Type: text/html\\nContent-Encoding: identity\\nContent-Encoding: x-custom\\n\\n'; head -c 2000 /dev/zero");
    });
    let ae = "Accept-Encoding: gzip, br, zstd\r\n";
    // A range: 206 of the identity bytes.
    let r = get(&srv, "/big.html", &format!("{ae}Range: bytes=10-19\r\n"));
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.body, file(&srv, "big.html")[10..20]);
    // Several ranges: multipart, still identity.
    let r = get(&srv, "/big.html", &format!("{ae}Range: bytes=0-1,5-6\r\n"));
    assert_eq!(r.status, 206);
    assert_eq!(r.header("Content-Encoding"), None);
    // Known to be shorter than CompressMinLength: as it is, no Vary.
    let r = get(&srv, "/tiny.html", ae);
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), None);
    assert_eq!(r.text(), "<p>tiny</p>\n");
    // A type not in CompressTypes.
    let r = get(&srv, "/logo.png", ae);
    assert_eq!(r.header("Content-Type"), Some("image/png"));
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), None);
    assert_eq!(r.body, file(&srv, "logo.png"));
    // Compress off.
    let r = get(&srv, "/off/big.html", ae);
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.body, file(&srv, "off/big.html"));
    // The precompressed file, byte for byte.
    let r = get(&srv, "/pre/page.html", ae);
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, file(&srv, "pre/page.html.gz"));
    // Encoded by the script, an event stream, no-transform.
    let r = get(&srv, "/cgi-bin/encoded", ae);
    assert_eq!(r.header("Content-Encoding"), Some("x-custom"));
    assert_eq!(r.body, vec![0u8; 2000]);
    let r = get(&srv, "/cgi-bin/encoded-second", ae);
    assert_eq!(r.header_all("Content-Encoding"), ["identity", "x-custom"]);
    assert_eq!(r.body, vec![0u8; 2000]);
    for script in ["events", "keep", "keep-second"] {
        let r = get(&srv, &format!("/cgi-bin/{script}"), ae);
        assert_eq!(r.header("Content-Encoding"), None, "{script}");
        assert_eq!(r.body, vec![0u8; 2000], "{script}");
    }
}

/// A 205 has no content (RFC 9110 §15.3.6), whatever `CompressMinLength`
/// says: its empty body was compressed into 20 bytes of gzip under
/// `CompressMinLength 0`, a 205 with content (a hook's 205 answer is
/// such an empty body with its `Content-Type`). The next request on the
/// connection is answered as it should be.
#[test]
fn a_205_stays_without_content() {
    let srv = start(
        &conf("", "    Plugin compress\n    CompressMinLength 0"),
        |d| {
            sh(
                d,
                "reset",
                "printf 'Status: 205 Reset Content\\nContent-Type: text/html\\n\\n'",
            );
            d.write("www/tiny.html", "<p>tiny</p>\n");
        },
    );
    let (bytes, _) = srv.raw(
        b"GET /cgi-bin/reset HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n\
          GET /tiny.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let text = String::from_utf8_lossy(&bytes);
    let (reset, next) = text.split_once("\r\n\r\n").expect("a head");
    assert!(reset.starts_with("HTTP/1.1 205 "), "{text}");
    assert!(reset.contains("\r\nContent-Length: 0"), "{text}");
    assert!(!reset.contains("Content-Encoding"), "{text}");
    assert!(next.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(next.ends_with("\r\n\r\n<p>tiny</p>\n"), "{text}");
}

#[test]
fn vary_is_merged() {
    let srv = server(|d| {
        sh(
            d,
            "cookie",
            "printf 'Content-Type: text/plain\\nVary: Cookie\\n\\n'; head -c 2000 /dev/zero",
        );
        sh(d, "already", "printf 'Content-Type: text/plain\\nVary: accept-encoding\\n\\n'; head -c 2000 /dev/zero");
    });
    let r = get(&srv, "/cgi-bin/cookie", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(r.header_all("Vary"), ["Cookie, Accept-Encoding"]);
    assert_eq!(decode("gzip", &r.body), vec![0u8; 2000]);
    let r = get(&srv, "/cgi-bin/already", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.header_all("Vary"), ["accept-encoding"]);
}

/// The weak tag of a compressed answer revalidates: 304, with that tag
/// back. The identity answer keeps the file's strong tag.
#[test]
fn weak_etag_still_revalidates() {
    let srv = server(|_| {});
    let plain = get(&srv, "/big.html", "");
    let strong = plain.header("ETag").unwrap().to_string();
    assert!(strong.starts_with('"'), "{strong}");
    let r = get(&srv, "/big.html", "Accept-Encoding: gzip\r\n");
    let weak = r.header("ETag").unwrap().to_string();
    assert_eq!(weak, format!("W/{strong}"));
    let r = get(
        &srv,
        "/big.html",
        &format!("Accept-Encoding: gzip\r\nIf-None-Match: {weak}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(weak.as_str()));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    // The identity copy's strong tag: the 304 still has the Vary its 200
    // had (RFC 9110 §15.4.5).
    let r = get(&srv, "/big.html", &format!("If-None-Match: {strong}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(strong.as_str()));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    // A type never compressed has no Vary on its 304, as on its 200.
    let png = get(&srv, "/logo.png", "")
        .header("ETag")
        .unwrap()
        .to_string();
    let r = get(&srv, "/logo.png", &format!("If-None-Match: {png}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Vary"), None);
}

/// With the cache, in either order (compress global and so ahead of the
/// cache, as docs/compress.md shows it, or listed after it), each client
/// gets the variant its `Accept-Encoding` selects, stored and served with
/// the headers that describe its bytes: a br fill first, then identity,
/// gzip and br again, and every one a hit the second time round.
#[test]
fn the_cache_keeps_each_coding_with_its_headers() {
    let cache = "    Plugin cache\n    Cache On\n    CacheControl \"public, max-age=300\"\n";
    for (global, extra) in [
        ("Plugin compress".to_string(), cache.to_string()),
        (String::new(), format!("{cache}    Plugin compress\n")),
    ] {
        let srv = start(&conf(&global, &extra), |d| {
            d.write("www/big.html", page(100 * 1024));
        });
        let original = file(&srv, "big.html");
        let mut strong = None;
        for round in 0..2 {
            for coding in ["br", "identity", "gzip"] {
                let ae = match coding {
                    "identity" => String::new(),
                    c => format!("Accept-Encoding: {c}\r\n"),
                };
                let r = get(&srv, "/big.html", &ae);
                let what = format!("{global:?} round {round} {coding}: {:?}", r.headers);
                assert_eq!(r.status, 200, "{what}");
                assert_eq!(r.header("Vary"), Some("Accept-Encoding"), "{what}");
                if let Some(len) = r.header("Content-Length") {
                    assert_eq!(len, r.body.len().to_string(), "{what}");
                }
                let tag = r.header("ETag").unwrap().to_string();
                if coding == "identity" {
                    assert_eq!(
                        r.header_all("Content-Encoding"),
                        Vec::<&str>::new(),
                        "{what}"
                    );
                    assert!(r.body == original, "{what}: the body differs");
                    assert!(tag.starts_with('"'), "{what}");
                    strong = Some(tag);
                } else {
                    assert_eq!(r.header_all("Content-Encoding"), [coding], "{what}");
                    assert!(
                        decode(coding, &r.body) == original,
                        "{what}: the body differs"
                    );
                    assert!(tag.starts_with("W/\""), "{what}");
                    if let Some(strong) = &strong {
                        assert_eq!(tag, format!("W/{strong}"), "{what}");
                    }
                }
                let status = r.header("Cache-Status").unwrap_or("");
                if round == 1 {
                    assert_eq!(status, "axkit; hit", "{what}");
                } else if coding == "br" {
                    assert_eq!(status, "axkit; fwd=uri-miss; stored", "{what}");
                }
            }
        }
    }
}

/// A stored coding that the origin revalidates keeps its weak tag: the
/// origin's 304 carries the file's strong one (it knows nothing of the
/// coding), which must not become the gzip bytes' strong validator, the
/// identity bytes' own (an `If-Range` would then splice the two).
#[test]
fn a_revalidated_coding_keeps_its_weak_tag() {
    let cache = "    Plugin cache\n    Cache On\n    CacheControl \"public, max-age=1\"\n";
    for (global, extra) in [
        ("Plugin compress".to_string(), cache.to_string()),
        (String::new(), format!("{cache}    Plugin compress\n")),
    ] {
        let srv = start(&conf(&global, &extra), |d| {
            d.write("www/big.html", page(100 * 1024));
        });
        let ae = "Accept-Encoding: gzip\r\n";
        let weak = get(&srv, "/big.html", ae)
            .header("ETag")
            .unwrap()
            .to_string();
        assert!(weak.starts_with("W/\""), "{global:?}: {weak}");
        let mut last = None;
        let revalidated = wait_until(Duration::from_secs(10), || {
            let r = get(&srv, "/big.html", ae);
            let done = r
                .header("Cache-Status")
                .unwrap_or("")
                .contains("fwd-status=304");
            last = Some(r);
            done
        });
        let last = last.unwrap();
        assert!(
            revalidated,
            "{global:?}: never revalidated: {:?}",
            last.headers
        );
        for r in [last, get(&srv, "/big.html", ae)] {
            let what = format!("{global:?}: {:?}", r.headers);
            assert_eq!(r.header("Content-Encoding"), Some("gzip"), "{what}");
            assert_eq!(r.header("ETag"), Some(weak.as_str()), "{what}");
        }
        let identity = get(&srv, "/big.html", "");
        assert_eq!(identity.header("ETag"), Some(&weak[2..]), "{global:?}");
    }
}

/// HEAD has the headers GET would: a body seen whole is compressed for
/// its length; a streamed one only gets the headers.
#[test]
fn head_answers_as_get_would() {
    let srv = server(|_| {});
    let ae = "Accept-Encoding: gzip\r\n";
    let got = get(&srv, "/small.html", ae);
    let head = request(&srv, "HEAD", "/small.html", ae);
    assert_eq!(head.header("Content-Encoding"), Some("gzip"));
    assert_eq!(head.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(head.header("Content-Length"), got.header("Content-Length"));
    assert_eq!(head.header("ETag"), got.header("ETag"));
    let (bytes, _) = srv.raw(
        format!("HEAD /big.html HTTP/1.1\r\nHost: x\r\n{ae}Connection: close\r\n\r\n").as_bytes(),
    );
    let head = parse_head_response(&bytes).unwrap();
    assert_eq!(head.header("Content-Encoding"), Some("gzip"));
    assert_eq!(head.header("Content-Length"), None);
    // Nothing after the head.
    assert_eq!(bytes.len(), head.len, "{}", lossy(&bytes));
}

/// The complete chunks' payloads of a chunked body read so far.
fn chunk_payloads(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(eol) = body[pos..].windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[pos..pos + eol]).unwrap(), 16).unwrap();
        let start = pos + eol + 2;
        if size == 0 || body.len() < start + size + 2 {
            break;
        }
        out.extend_from_slice(&body[start..start + size]);
        pos = start + size + 2;
    }
    out
}

/// A CGI's output is compressed while the script runs: what it wrote
/// first decodes at the client before it writes the rest.
#[test]
fn a_stream_is_compressed_while_it_runs() {
    let srv = server(|d| {
        sh(
            d,
            "later",
            "printf 'Content-Type: text/plain\\n\\nearly '\n\
             i=0; while [ ! -e \"$DOCUMENT_ROOT/../go-on\" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n\
             printf late",
        );
    });
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/later HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut fed = 0;
    while !lossy(decoder.get_ref()).contains("early ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let payload = chunk_payloads(&got[end + 4..]);
            decoder.write_all(&payload[fed..]).unwrap();
            decoder.flush().unwrap();
            fed = payload.len();
        }
    }
    assert!(!lossy(decoder.get_ref()).contains("late"));
    std::fs::write(srv.dir.path().join("go-on"), "").unwrap();
    let (rest, closed) = read_until_close(&mut s, Duration::from_secs(30));
    got.extend_from_slice(&rest);
    assert!(closed);
    let r = parse_response(&got).unwrap_or_else(|| panic!("{}", lossy(&got)));
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(decode("gzip", &r.body), b"early late");
}

#[test]
fn bad_directives_are_refused_at_load() {
    let dir = TempDir::new("compress-check");
    let conf = dir.write(
        "axkit.conf",
        "Plugin compress\nCompressLevel gzip=10\nCompressPrefer deflate\nCompressTypes html\n\
         <Server>\n    Listen 127.0.0.1:0\n</Server>\n",
    );
    let out = refused_at_start(&conf);
    assert!(
        out.contains("CompressLevel (plugin compress): expected CODING=LEVEL"),
        "{out}"
    );
    assert!(
        out.contains("CompressPrefer (plugin compress): unknown coding \"deflate\""),
        "{out}"
    );
    assert!(
        out.contains("CompressTypes (plugin compress): expected a media type"),
        "{out}"
    );
}

/// A response the filter will not touch takes it out of its way before
/// the body starts (`Context::skip_body_filter`): a 2 MiB image under
/// `Compress on` is sent with its length, not chunked through memory, and
/// the trace of its request has no `write_body_data` call; a text file
/// beside it still goes through the filter.
#[test]
fn an_image_steps_around_the_filter_and_keeps_sendfile() {
    let photo: Vec<u8> = (0..2u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut srv = server(|d| {
        d.write("www/trace/photo.jpg", &photo);
        d.write("www/trace/big.html", page(100 * 1024));
    });
    let fetch = |path: &str| {
        let mut s = srv.connect();
        let peer = s.local_addr().unwrap().to_string();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let (bytes, _) = read_to_end_within(&mut s, Duration::from_secs(10));
        (parse_response(&bytes).expect("a response"), peer)
    };
    let (r, photo_peer) = fetch("/trace/photo.jpg");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Transfer-Encoding"), None, "{:?}", r.headers);
    assert_eq!(r.header("Content-Length"), Some("2097152"));
    assert!(r.body == photo, "the image differs");
    let (r, html_peer) = fetch("/trace/big.html");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &r.body), file(&srv, "trace/big.html"));
    let limit = Duration::from_secs(10);
    srv.wait_stderr_line(
        &[
            &format!("trace {html_peer}: "),
            "write_body_data compress: OK",
        ],
        limit,
    );
    srv.wait_stderr_line(&[&format!("trace {photo_peer}: "), "sent 200"], limit);
    let photo_lines: Vec<String> = srv
        .stderr()
        .lines()
        .filter(|l| l.contains(&format!("trace {photo_peer}: ")))
        .map(str::to_string)
        .collect();
    assert!(
        photo_lines
            .iter()
            .any(|l| l.contains("response serve_file: OK")),
        "{photo_lines:#?}"
    );
    assert!(
        !photo_lines.iter().any(|l| l.contains("write_body_data")),
        "the filter saw the image: {photo_lines:#?}"
    );
}

/// A `type/*` entry against a producer's type with a multibyte character
/// where the prefix ends: the response is served, not a panic's 500.
#[test]
fn a_non_ascii_type_is_served() {
    let extra = "    Plugin compress\n    CompressTypes text/*\n";
    let srv = start(&conf("", extra), |d| {
        sh(
            d,
            "accented",
            "printf 'Content-Type: text\\303\\251abc\\n\\n'; head -c 2000 /dev/zero",
        );
    });
    let r = get(&srv, "/cgi-bin/accented", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("text\u{e9}abc"));
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.body, vec![0u8; 2000]);
}

/// A filter ahead of compress that lengthens the body makes the CGI's
/// `Content-Length` wrong: zstd must not be promised that length, or the
/// stream breaks off.
#[test]
fn zstd_is_not_promised_a_length_another_filter_changed() {
    let global = "PluginDir {dir}/plugins\nPlugin grow\nPlugin compress";
    let srv = start(&conf(global, ""), |d| {
        d.write(
            "plugins/grow.lua",
            "function hook_write_body_data(r, data, last)\n  \
             if last then return OK, data .. \"<!-- footer -->\" end\n  \
             return OK, data\nend\n",
        );
        sh(
            d,
            "sized",
            "printf 'Content-Type: text/html\\nContent-Length: 3000\\n\\n'; head -c 3000 /dev/zero | tr '\\0' a",
        );
    });
    let r = get(&srv, "/cgi-bin/sized", "Accept-Encoding: zstd\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Encoding"), Some("zstd"));
    let mut expect = vec![b'a'; 3000];
    expect.extend_from_slice(b"<!-- footer -->");
    assert_eq!(decode("zstd", &r.body), expect);
}
