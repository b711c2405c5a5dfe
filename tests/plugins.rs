//! The built-in plugins, through the stock `axkit` binary: `uri_to_file`
//! and `serve_file` (content types, redirects, directory indexes, PATH_INFO,
//! `<Location>` document roots, symlinks, traversal, permissions, methods),
//! `fast_mime_map`'s `MimeType`, `logging/file` and `LogLevel`,
//! `request_log`'s Combined Log Format, name-based virtual hosts, and
//! `Plugin` scoped to a `<Location>`.
//!
//! Every server runs as one process (`--no-master`); each test starts its
//! own so that they can run in parallel.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn files_get_content_type_length_and_last_modified() {
    let srv = Axkit::start_single_with(STATIC_CONF, |d| {
        for (name, body) in [
            ("a.html", "<p>hi</p>\n"),
            ("b.css", "p { color: red }\n"),
            ("c.txt", "plain\n"),
            ("d.json", "{\"a\": 1}\n"),
            ("e.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n"),
            ("f.zzqx", "unknown\n"),
            ("noext", "none\n"),
            ("UPPER.HTML", "<p>upper</p>\n"),
        ] {
            set_mtime(&d.write(&format!("www/{name}"), body));
        }
    });
    for (path, ctype, body) in [
        ("/a.html", "text/html; charset=utf-8", "<p>hi</p>\n"),
        ("/b.css", "text/css; charset=utf-8", "p { color: red }\n"),
        ("/c.txt", "text/plain; charset=utf-8", "plain\n"),
        ("/d.json", "application/json", "{\"a\": 1}\n"),
        (
            "/e.svg",
            "image/svg+xml",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
        ),
        ("/f.zzqx", "application/octet-stream", "unknown\n"),
        ("/noext", "application/octet-stream", "none\n"),
        ("/UPPER.HTML", "text/html; charset=utf-8", "<p>upper</p>\n"),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some(ctype), "{path}");
        assert_eq!(r.text(), body, "{path}");
        assert_eq!(
            r.header("Content-Length"),
            Some(body.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(
            r.header("Last-Modified"),
            Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            "{path}"
        );
    }
    // Percent-encoded names are decoded once.
    assert_eq!(srv.get("/%61.html").text(), "<p>hi</p>\n");
}

#[test]
fn missing_files_and_methods() {
    let srv = Axkit::start_single_with(STATIC_CONF, |d| {
        d.write("www/a.txt", "abc\n");
        d.write("www/empty.txt", "");
        d.write("www/big.bin", big());
    });
    let r = srv.get("/missing.txt");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("404 Not Found"), "{}", r.text());
    assert_eq!(srv.get("/no/such/dir/x").status, 404);

    let r = request(&srv, "POST", "/a.txt", "Content-Length: 3\r\n");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    for method in ["PUT", "DELETE", "OPTIONS"] {
        let r = request(&srv, method, "/a.txt", "");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{method}");
    }

    // HEAD: the GET headers, no body.
    let (bytes, closed) =
        srv.raw(b"HEAD /a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert!(closed);
    let r = parse_head_response(&bytes).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("4"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("Last-Modified").is_some());
    assert_eq!(r.len, bytes.len(), "HEAD sent a body: {:?}", lossy(&bytes));
    // HEAD of a missing file: 404 head only.
    let (bytes, _) =
        srv.raw(b"HEAD /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = parse_head_response(&bytes).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.len, bytes.len(), "HEAD sent a body: {:?}", lossy(&bytes));

    let r = srv.get("/empty.txt");
    assert_eq!((r.status, r.header("Content-Length")), (200, Some("0")));

    // A file too large to go out with the head (sendfile): same rules.
    let r = srv.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, big());
    let (bytes, _) =
        srv.raw(b"HEAD /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let r = parse_head_response(&bytes).unwrap();
    assert_eq!(r.header("Content-Length"), Some("200000"));
    assert_eq!(r.len, bytes.len(), "HEAD sent a body");
}

fn big() -> Vec<u8> {
    (0..200_000u32).map(|i| (i % 251) as u8).collect()
}

#[test]
fn directories() {
    let conf = STATIC_CONF.replace("DirectoryIndex index.html", "DirectoryIndex a.html b.html");
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/both/a.html", "A\n");
        d.write("www/both/b.html", "B\n");
        d.write("www/second/b.html", "B2\n");
        d.write("www/none/other.txt", "x\n");
        std::fs::create_dir_all(d.path().join("www/second/a.html")).unwrap();
        d.write("www/a.html", "root A\n");
        d.write("www/sp ace/a.html", "space\n");
        d.write("www/café/a.html", "cafe\n");
    });
    // Without the slash: 301 to the slash form, query kept.
    let r = srv.get("/both");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/both/"));
    let r = srv.get("/both?x=1&y=%20");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/both/?x=1&y=%20"));
    // The Location is the normalised path, re-encoded: never the path as
    // sent, which could start with `//` (a browser reads `//both/` as the
    // host `both`: an open redirect).
    for (path, location) in [
        ("/b%6Fth", "/both/"),
        ("//both", "/both/"),
        ("///both?q", "/both/?q"),
        ("/x/..//both", "/both/"),
        ("/./both", "/both/"),
        ("/sp%20ace", "/sp%20ace/"),
        ("/caf%C3%A9", "/caf%C3%A9/"),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.header("Location"), Some(location), "{path}");
    }
    // First existing index wins; a directory named like an index is skipped.
    assert_eq!(srv.get("/both/").text(), "A\n");
    assert_eq!(srv.get("/second/").text(), "B2\n");
    let r = srv.get("/second/");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(srv.get("/").text(), "root A\n");
    // No index: 403, not a listing.
    let r = srv.get("/none/");
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("other.txt"));
}

#[test]
fn directory_without_directory_index_is_forbidden() {
    let conf = STATIC_CONF.replace("    DirectoryIndex index.html\n", "");
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/dir/index.html", "I\n");
    });
    assert_eq!(srv.get("/dir/").status, 403);
    assert_eq!(srv.get("/").status, 403);
    assert_eq!(srv.get("/dir/index.html").text(), "I\n");
}

#[test]
fn path_info_after_a_static_file_is_404() {
    // The same answers with the open-file cache (on by default), whose
    // entry for `/doc.html` must not answer `/doc.html/`, and without.
    for conf in [
        STATIC_CONF.to_string(),
        STATIC_CONF.replace(
            "Plugin uri_to_file",
            "Plugin uri_to_file\n    OpenFileCache Off",
        ),
    ] {
        let srv = Axkit::start_single_with(&conf, |d| {
            d.write("www/doc.html", "doc\n");
            d.write("www/sub/page.txt", "page\n");
        });
        for _ in 0..2 {
            assert_eq!(srv.get("/doc.html").status, 200);
            assert_eq!(srv.get("/doc.html/extra").status, 404);
            assert_eq!(srv.get("/doc.html/extra/more/").status, 404);
            assert_eq!(srv.get("/sub/page.txt/x").status, 404);
            // A trailing slash after a file is path info too.
            assert_eq!(srv.get("/doc.html/").status, 404);
        }
    }
}

#[test]
fn locations_and_document_roots() {
    let conf = "\
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
    <Location /icons>
        DocumentRoot {dir}/icons
    </Location>
    <Location /docs>
        MimeType txt text/x-docs
    </Location>
    <Location /app>
        DocumentRoot {dir}/A
        <Location /app/b>
            DocumentRoot {dir}/B
        </Location>
        <Location /app/c>
            MimeType txt text/x-c
        </Location>
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("icons/a.svg", "<svg/>\n");
        d.write("icons/index.html", "icon index\n");
        d.write("www/icons/a.svg", "WRONG: server root\n");
        d.write("www/iconsx/a.svg", "iconsx\n");
        d.write("www/docs/readme.txt", "docs readme\n");
        d.write("A/x.txt", "A x\n");
        d.write("A/c/z.txt", "A c z\n");
        d.write("B/y.txt", "B y\n");
        d.write("A/b/y.txt", "WRONG: A/b\n");
        d.write("www/app/x.txt", "WRONG: www/app\n");
    });
    // Alias semantics: the path after the prefix maps under the root.
    let r = srv.get("/icons/a.svg");
    assert_eq!((r.status, r.text().as_str()), (200, "<svg/>\n"));
    assert_eq!(r.header("Content-Type"), Some("image/svg+xml"));
    assert_eq!(srv.get("/icons/").text(), "icon index\n");
    let r = srv.get("/icons");
    assert_eq!((r.status, r.header("Location")), (301, Some("/icons/")));
    // Segment-aware: /iconsx is not under /icons.
    assert_eq!(srv.get("/iconsx/a.svg").text(), "iconsx\n");
    // A Location without its own root: the server's root, full path.
    let r = srv.get("/docs/readme.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "docs readme\n"));
    assert_eq!(r.header("Content-Type"), Some("text/x-docs"));
    // Nested: the innermost DocumentRoot maps what follows its own prefix;
    // a nested Location without one inherits the outer alias.
    assert_eq!(srv.get("/app/x.txt").text(), "A x\n");
    assert_eq!(srv.get("/app/b/y.txt").text(), "B y\n");
    let r = srv.get("/app/c/z.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "A c z\n"));
    assert_eq!(r.header("Content-Type"), Some("text/x-c"));
    // Outside any Location: the server root, and the default MIME table.
    assert_eq!(srv.get("/docs/readme.txt").status, 200);
    assert_eq!(srv.get("/app/nothing").status, 404);
}

#[test]
fn symlinks() {
    let prepare = |d: &TempDir| {
        d.write("www/real.txt", "real\n");
        d.write("www/sub/inner.txt", "inner\n");
        d.write("outside/secret.txt", "secret\n");
        let www = d.path().join("www");
        std::os::unix::fs::symlink("real.txt", www.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("../real.txt", www.join("sub/up.txt")).unwrap();
        std::os::unix::fs::symlink(www.join("sub"), www.join("abs-inside")).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", www.join("rel-out.txt")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), www.join("abs-out")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", www.join("dangling")).unwrap();
    };
    let srv = Axkit::start_single_with(STATIC_CONF, prepare);
    assert_eq!(srv.get("/link.txt").text(), "real\n");
    assert_eq!(srv.get("/sub/up.txt").text(), "real\n");
    for path in [
        "/rel-out.txt",
        "/abs-out/secret.txt",
        "/abs-inside/inner.txt",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(!r.text().contains("secret"));
    }
    assert_ne!(srv.get("/dangling").status, 200);

    let conf = STATIC_CONF.replace(
        "Plugin uri_to_file",
        "Plugin uri_to_file\n    FollowSymlinks On",
    );
    let srv = Axkit::start_single_with(&conf, prepare);
    assert_eq!(srv.get("/link.txt").text(), "real\n");
    assert_eq!(srv.get("/rel-out.txt").text(), "secret\n");
    assert_eq!(srv.get("/abs-out/secret.txt").text(), "secret\n");
    assert_eq!(srv.get("/abs-inside/inner.txt").text(), "inner\n");
    assert_eq!(srv.get("/dangling").status, 404);
}

/// Two Locations whose roots nest (`www` and `www/b`) map one file to the
/// same full path; a symlink from `b` up into `www` stays beneath the
/// outer root but leaves the inner one. What the open-file cache learnt
/// for the outer Location must not be handed to the inner one, in either
/// order, and the inner one's refusal must not hide the file from the
/// outer one.
#[test]
fn nested_roots_do_not_share_open_file_cache_entries() {
    let conf = "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    OpenFileCache 1000 1h
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
    <Location /inner>
        DocumentRoot {dir}/www/b
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("www/up.txt", "outer only\n");
        d.write("www/b/own.txt", "inner\n");
        std::os::unix::fs::symlink("../up.txt", d.path().join("www/b/link.txt")).unwrap();
        std::os::unix::fs::symlink("../up.txt", d.path().join("www/b/link2.txt")).unwrap();
    });
    // Outer first: served (the link stays beneath www), then refused
    // through the inner root although the cache holds it.
    assert_eq!(srv.get("/b/link.txt").text(), "outer only\n");
    let r = srv.get("/inner/link.txt");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.text().contains("outer only"));
    // Inner first: refused, and the outer root still serves it.
    assert_eq!(srv.get("/inner/link2.txt").status, 403);
    assert_eq!(srv.get("/b/link2.txt").text(), "outer only\n");
    // Files beneath both roots are served through either.
    assert_eq!(srv.get("/b/own.txt").text(), "inner\n");
    assert_eq!(srv.get("/inner/own.txt").text(), "inner\n");
}

#[test]
fn traversal_never_escapes_the_root() {
    let srv = Axkit::start_single_with(STATIC_CONF, |d| {
        d.write("secret.txt", "secret\n");
        d.write("www/sub/a.txt", "a\n");
    });
    for path in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub%2F..%2F..%2Fsecret.txt",
        "/..%2Fsecret.txt",
        "/..%5Csecret.txt",
        "/sub/..\\..\\secret.txt",
        "/%252e%252e/secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/sub/..;/../secret.txt",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let (bytes, _) = srv.raw(req.as_bytes());
        let status = status_of(&bytes);
        assert!(
            [400, 403, 404].contains(&status),
            "{path}: {:?}",
            lossy(&bytes)
        );
        assert!(!lossy(&bytes).contains("secret\n"), "{path}");
    }
    // An encoded slash never makes a path segment: 404 even though
    // /sub/a.txt exists.
    assert_eq!(srv.get("/sub%2Fa.txt").status, 404);
    // Dots that stay inside the root are fine.
    assert_eq!(srv.get("/sub/../sub/./a.txt").text(), "a\n");
    assert_eq!(srv.get("/sub/%2e/a.txt").text(), "a\n");
}

#[test]
fn unreadable_file_is_forbidden() {
    use std::os::unix::fs::PermissionsExt;
    // Root reads any file whatever its mode, so this sub-case can only be
    // checked as an ordinary user; the test suite often runs as root (in
    // containers), where it is skipped.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("unreadable_file_is_forbidden: running as root, skipped");
        return;
    }
    let srv = Axkit::start_single_with(STATIC_CONF, |d| {
        let p = d.write("www/locked.txt", "locked\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let dir = d.path().join("www/lockeddir");
        std::fs::create_dir_all(&dir).unwrap();
        d.write("www/lockeddir/x.txt", "x\n");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();
    });
    let r = srv.get("/locked.txt");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.text().contains("locked\n"));
    assert_eq!(srv.get("/lockeddir/x.txt").status, 403);
    std::fs::set_permissions(
        srv.dir.path().join("www/lockeddir"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn mime_type_overrides() {
    let conf = STATIC_CONF.replace(
        "Plugin fast_mime_map",
        "Plugin fast_mime_map\n    MimeType md text/markdown\n    MimeType .HTML text/x-mine\n    \
         <Location /raw>\n        MimeType md text/plain\n    </Location>",
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/a.md", "# a\n");
        d.write("www/A.MD", "# A\n");
        d.write("www/b.html", "<b/>\n");
        d.write("www/c.css", "c\n");
        d.write("www/raw/a.md", "# raw\n");
    });
    assert_eq!(
        srv.get("/a.md").header("Content-Type"),
        Some("text/markdown")
    );
    assert_eq!(
        srv.get("/A.MD").header("Content-Type"),
        Some("text/markdown")
    );
    // Overrides the built-in table (the leading dot is optional).
    assert_eq!(
        srv.get("/b.html").header("Content-Type"),
        Some("text/x-mine")
    );
    // Everything else keeps the built-in table.
    assert_eq!(
        srv.get("/c.css").header("Content-Type"),
        Some("text/css; charset=utf-8")
    );
    // The Location's own line wins over the Server's there.
    assert_eq!(
        srv.get("/raw/a.md").header("Content-Type"),
        Some("text/plain")
    );
}

#[test]
fn mime_type_without_fast_mime_map_is_octet_stream() {
    let conf = STATIC_CONF.replace("    Plugin fast_mime_map\n", "");
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/a.html", "<p/>\n");
    });
    assert_eq!(
        srv.get("/a.html").header("Content-Type"),
        Some("application/octet-stream")
    );
}

/// A server whose global chain has `logging/file`, with a symlink that
/// leads outside the root (logged at warn when refused) and a Location
/// whose DocumentRoot does not exist (logged at error).
fn start_logging(level: &str) -> Axkit {
    let conf = format!(
        "Plugin logging/file\nLogFile {{dir}}/error.log\nLogLevel {level}\n{}",
        STATIC_CONF.replace(
            "</Server>",
            "    <Location /broken>\n        DocumentRoot {dir}/missing-root\n    </Location>\n</Server>"
        )
    );
    Axkit::start_single_with(&conf, |d| {
        d.write("www/a.txt", "a\n");
        d.write("outside.txt", "out\n");
        std::os::unix::fs::symlink("../outside.txt", d.path().join("www/out.txt")).unwrap();
    })
}

/// `[date] [level] axkit[pid]: message`
fn assert_log_line_shape(line: &str, level: &str) {
    let rest = line.strip_prefix('[').unwrap_or_else(|| panic!("{line}"));
    let (date, rest) = rest.split_once("] ").unwrap();
    assert!(date.ends_with(" GMT") && date.len() == 29, "{line}");
    let rest = rest
        .strip_prefix(&format!("[{level}] axkit["))
        .unwrap_or_else(|| panic!("{line}"));
    let (pid, _) = rest.split_once("]: ").unwrap();
    assert!(pid.parse::<u32>().is_ok(), "{line}");
}

#[test]
fn logging_file_writes_at_log_level() {
    let mut srv = start_logging("LOGINFO");
    let log = srv.dir.path().join("error.log");
    assert_eq!(srv.get("/out.txt").status, 403);
    assert_eq!(srv.get("/broken/x").status, 500);
    let (bytes, _) = srv.raw(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(status_of(&bytes), 400);
    let text = wait_for_line(&log, |l| l.contains("bad request"));
    let text = wait_for_line(&log, |l| l.contains("leads outside DocumentRoot")).max(text);
    let text = wait_for_line(&log, |l| l.contains("missing-root")).max(text);
    let line = |needle: &str| text.lines().find(|l| l.contains(needle)).unwrap();
    assert_log_line_shape(line("bad request"), "info");
    assert_log_line_shape(line("leads outside DocumentRoot"), "warn");
    assert_log_line_shape(line("missing-root"), "error");
    // The file sink replaces stderr: nothing about these went there, up
    // to the end of the server's stderr.
    let stderr = srv.stop();
    for line in ["bad request", "leads outside", "missing-root"] {
        assert!(!stderr.contains(line), "{stderr}");
    }
}

#[test]
fn log_level_error_hides_info_and_warn() {
    let srv = start_logging("LOGERROR");
    let log = srv.dir.path().join("error.log");
    assert_eq!(srv.get("/out.txt").status, 403);
    let (bytes, _) = srv.raw(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(status_of(&bytes), 400);
    assert_eq!(srv.get("/broken/x").status, 500);
    let text = wait_for_line(&log, |l| l.contains("missing-root"));
    assert!(text.contains("[error]"), "{text}");
    assert!(!text.contains("bad request"), "{text}");
    assert!(!text.contains("leads outside"), "{text}");
    assert!(
        !text.contains("[info]") && !text.contains("[warn]"),
        "{text}"
    );
}

/// Checks one Combined Log Format line field by field:
/// `HOST - USER [DD/Mon/YYYY:HH:MM:SS +0000] "REQUEST" STATUS BYTES "REFERER" "UA"`.
/// Returns the quoted fields (still escaped) and status/bytes.
fn parse_clf(line: &str) -> (String, u16, String, String, String) {
    let bad = || -> ! { panic!("not a Combined Log Format line: {line:?}") };
    let (host, rest) = line.split_once(' ').unwrap_or_else(|| bad());
    assert_eq!(host, "127.0.0.1", "{line}");
    let rest = rest.strip_prefix("- - [").unwrap_or_else(|| bad());
    let (time, rest) = rest.split_once("] ").unwrap_or_else(|| bad());
    let t = time.as_bytes();
    assert_eq!(t.len(), 26, "{line}");
    let digits = |r: std::ops::Range<usize>| t[r].iter().all(u8::is_ascii_digit);
    assert!(
        digits(0..2)
            && t[2] == b'/'
            && ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
                .contains(&&time[3..6])
            && t[6] == b'/'
            && digits(7..11)
            && t[11] == b':'
            && digits(12..14)
            && t[14] == b':'
            && digits(15..17)
            && t[17] == b':'
            && digits(18..20)
            && &time[20..] == " +0000",
        "time {time:?} in {line}"
    );
    // Quoted fields: backslash escapes inside, so scan by hand.
    fn quoted(s: &str) -> Option<(String, &str)> {
        let s = s.strip_prefix('"')?;
        let mut i = 0;
        let b = s.as_bytes();
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some((s[..i].to_string(), &s[i + 1..])),
                _ => i += 1,
            }
        }
        None
    }
    let (request, rest) = quoted(rest).unwrap_or_else(|| bad());
    let rest = rest.strip_prefix(' ').unwrap_or_else(|| bad());
    let mut parts = rest.splitn(3, ' ');
    let status: u16 = parts.next().unwrap().parse().unwrap_or_else(|_| bad());
    let bytes = parts.next().unwrap_or_else(|| bad());
    assert!(
        bytes == "-" || (bytes.parse::<u64>().is_ok_and(|n| n > 0)),
        "{line}"
    );
    let rest = parts.next().unwrap_or_else(|| bad());
    let (referer, rest) = quoted(rest).unwrap_or_else(|| bad());
    let (agent, rest) =
        quoted(rest.strip_prefix(' ').unwrap_or_else(|| bad())).unwrap_or_else(|| bad());
    assert_eq!(rest, "", "{line}");
    let _ = request.len();
    (request, status, bytes.to_string(), referer, agent)
}

#[test]
fn request_log_combined_format() {
    let conf = format!("Plugin request_log\nRequestLog {{dir}}/access.log\n{STATIC_CONF}");
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/a.txt", "hello\n");
        d.write("www/empty.txt", "");
    });
    let log = srv.dir.path().join("access.log");
    srv.get("/a.txt?q=1");
    let text = wait_for_line(&log, |l| l.contains("/a.txt?q=1"));
    let line = text.lines().find(|l| l.contains("/a.txt?q=1")).unwrap();
    let (req, status, bytes, referer, agent) = parse_clf(line);
    assert_eq!(req, "GET /a.txt?q=1 HTTP/1.1");
    assert_eq!((status, bytes.as_str()), (200, "6"));
    assert_eq!((referer.as_str(), agent.as_str()), ("-", "-"));

    get(
        &srv,
        "/missing",
        "Referer: http://example.com/from?x=\"y\"\r\nUser-Agent: Mozilla/5.0 \"quoted\" back\\slash\r\n",
    );
    let text = wait_for_line(&log, |l| l.contains("/missing"));
    let line = text.lines().find(|l| l.contains("/missing")).unwrap();
    let (req, status, bytes, referer, agent) = parse_clf(line);
    assert_eq!(req, "GET /missing HTTP/1.1");
    assert_eq!(status, 404);
    assert_ne!(bytes, "-", "the error page has a body");
    assert_eq!(referer, "http://example.com/from?x=\\\"y\\\"");
    assert_eq!(agent, "Mozilla/5.0 \\\"quoted\\\" back\\\\slash");

    // No body: `-`, for an empty file and for HEAD.
    srv.get("/empty.txt");
    request(&srv, "HEAD", "/a.txt", "User-Agent: head-client\r\n");
    let text = wait_for_line(&log, |l| l.contains("head-client"));
    let line = text.lines().find(|l| l.contains("/empty.txt")).unwrap();
    assert_eq!(parse_clf(line).2, "-");
    let line = text.lines().find(|l| l.contains("head-client")).unwrap();
    let (req, status, bytes, _, _) = parse_clf(line);
    assert_eq!(
        (req.as_str(), status, bytes.as_str()),
        ("HEAD /a.txt HTTP/1.1", 200, "-")
    );

    // Requests refused before any plugin ran are logged too, as nginx
    // does: a framing error (two Host fields) and a malformed path.
    let (bytes, _) = srv.raw(b"GET /dup HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert!(bytes.starts_with(b"HTTP/1.1 400 "), "{bytes:?}");
    let (bytes, _) = srv.raw(b"GET /bad%zz HTTP/1.0\r\n\r\n");
    assert!(bytes.starts_with(b"HTTP/1.1 400 "), "{bytes:?}");
    let text = wait_for_line(&log, |l| l.contains("/bad%zz"));
    let line = text.lines().find(|l| l.contains("/dup")).unwrap();
    let (req, status, bytes, _, _) = parse_clf(line);
    assert_eq!((req.as_str(), status), ("GET /dup HTTP/1.1", 400));
    assert_ne!(bytes, "-", "the error page has a body");
    let line = text.lines().find(|l| l.contains("/bad%zz")).unwrap();
    let (req, status, _, _, _) = parse_clf(line);
    assert_eq!((req.as_str(), status), ("GET /bad%zz HTTP/1.0", 400));

    // A control byte in a header cannot forge a line: it is escaped
    // (here a tab, which HTTP allows in field values).
    get(&srv, "/a.txt", "User-Agent: tab\there\r\n");
    let text = wait_for_line(&log, |l| l.contains("tab\\x09here"));
    assert!(!text.contains("tab\there"), "{text}");
    for line in text.lines() {
        parse_clf(line);
    }
}

/// Two name-based virtual hosts on one listening socket.
const VHOSTS: &str = "\
Plugin request_log
Plugin uri_to_file
Plugin serve_file
<Server>
    Listen 127.0.0.1:0
    ServerName a.test
    DocumentRoot {dir}/a
    RequestLog {dir}/a.log
</Server>
<Server>
    Listen 127.0.0.1:0
    ServerName b.test
    ServerAlias *.b.test
    DocumentRoot {dir}/b
    RequestLog {dir}/b.log
</Server>
";

#[test]
fn name_based_virtual_hosts() {
    let srv = Axkit::start_single_with(VHOSTS, |d| {
        d.write("a/who.txt", "A\n");
        d.write("b/who.txt", "B\n");
    });
    let who = |host: &str| {
        let req = format!("GET /who.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        parse_response(&srv.raw(req.as_bytes()).0).unwrap().text()
    };
    assert_eq!(who("a.test"), "A\n");
    assert_eq!(who("b.test"), "B\n");
    assert_eq!(who("B.Test"), "B\n");
    assert_eq!(who("b.test:8080"), "B\n");
    assert_eq!(who("b.test."), "B\n");
    assert_eq!(who("www.b.test"), "B\n");
    assert_eq!(who("x.y.b.test"), "B\n");
    // Unknown names, and names that only look alike, go to the first server.
    assert_eq!(who("unknown.test"), "A\n");
    assert_eq!(who("xb.test"), "A\n");
    assert_eq!(who("b.test.evil"), "A\n");
    assert_eq!(who("127.0.0.1"), "A\n");
    // HTTP/1.0 without Host: the first server.
    let (bytes, _) = srv.raw(b"GET /who.txt HTTP/1.0\r\n\r\n");
    assert_eq!(parse_response(&bytes).unwrap().text(), "A\n");
    // Each server logs to its own RequestLog.
    let a_log = srv.dir.path().join("a.log");
    let b_log = srv.dir.path().join("b.log");
    let _ = get(&srv, "/who.txt?mark=1", "");
    let req = b"GET /who.txt?mark=2 HTTP/1.1\r\nHost: www.b.test\r\nConnection: close\r\n\r\n";
    srv.raw(req);
    let a = wait_for_line(&a_log, |l| l.contains("mark=1"));
    let b = wait_for_line(&b_log, |l| l.contains("mark=2"));
    assert!(!a.contains("mark=2"), "{a}");
    assert!(!b.contains("mark=1"), "{b}");
}

#[test]
fn location_scoped_plugin() {
    let conf = "\
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    Plugin uri_to_file
    <Location /files>
        Plugin serve_file
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("www/files/a.txt", "a\n");
        d.write("www/b.txt", "b\n");
    });
    let r = srv.get("/files/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "a\n"));
    // No mime_map plugin anywhere: octet-stream.
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    // Outside the Location nobody produces a response.
    assert_eq!(srv.get("/b.txt").status, 404);
    assert_eq!(srv.get("/filesx/a.txt").status, 404);
}

/// `logging/warn` writes log lines to stderr, in the log format, at and
/// above LogLevel, and declines them so that the next sink (here
/// logging/file) gets them too. With a sink in the chain the core's own
/// stderr fallback is silent, so the stderr line can only come from
/// logging/warn.
#[test]
fn logging_warn_writes_to_stderr() {
    let conf = format!(
        "Plugin logging/warn\nPlugin logging/file\nLogFile {{dir}}/error.log\nLogLevel LOGINFO\n{STATIC_CONF}"
    );
    let mut srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/index.html", "hi\n");
    });
    let (bytes, _) = srv.raw(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(status_of(&bytes), 400);
    let all = srv.wait_stderr("bad request", Duration::from_secs(10));
    let line = all.lines().find(|l| l.contains("bad request")).unwrap();
    assert!(line.contains("] [info] axkit["), "{line}");
    let file = wait_for_line(&srv.dir.path().join("error.log"), |l| {
        l.contains("bad request")
    });
    assert!(file.contains("[info]"), "{file}");
}

/// Nothing a client sends can forge or hide an error log line: a decoded
/// path with a newline, a fake date and level, a terminal escape and a
/// bidirectional override (here reaching the warn-level "leads outside
/// DocumentRoot" line through a symlink out of the root) stays on its own
/// line, its control characters escaped, in the file and on stderr alike.
#[test]
fn error_log_lines_cannot_be_forged_from_a_url() {
    let conf = format!(
        "Plugin logging/warn\nPlugin logging/file\nLogFile {{dir}}/error.log\nLogLevel LOGINFO\n{STATIC_CONF}"
    );
    let mut srv = Axkit::start_single_with(&conf, |d| {
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::fs::create_dir_all(d.path().join("www")).unwrap();
        std::os::unix::fs::symlink("../outside", d.path().join("www/outlink")).unwrap();
    });
    let forged = "/outlink/x%0a[Wed,%2002%20Dec%202026%2010:00:00%20GMT]%20[emerg]%20axkit[1]:%20FORGED%0d%1b[2J%e2%80%ae";
    assert_eq!(srv.get(forged).status, 403);
    let log = srv.dir.path().join("error.log");
    let text = wait_for_line(&log, |l| l.contains("FORGED"));
    let stderr = srv.wait_stderr("FORGED", Duration::from_secs(10));
    for (sink, all) in [("file", text.as_str()), ("stderr", stderr.as_str())] {
        let lines: Vec<&str> = all.lines().filter(|l| l.contains("FORGED")).collect();
        assert_eq!(lines.len(), 1, "{sink}: {all}");
        let line = lines[0];
        assert_log_line_shape(line, "warn");
        assert!(
            line.contains("x\\x0a[Wed, 02 Dec 2026 10:00:00 GMT] [emerg] axkit[1]: FORGED\\x0d\\x1b[2J\\u{202e}"),
            "{sink}: {line}"
        );
        assert!(!all.contains(['\r', '\x1b', '\u{202e}']), "{sink}: {all:?}");
    }
}

/// The access log shows each request as the client sent it: an error page
/// served by an internal redirect (ErrorDocument) does not replace the
/// request line, a refused request line is logged whole, and a header that
/// is not UTF-8 is escaped byte by byte rather than dropped.
#[test]
fn request_log_records_the_request_as_sent() {
    let conf = format!(
        "Plugin request_log\nRequestLog {{dir}}/access.log\n{}",
        STATIC_CONF.replace(
            "    Plugin serve_file\n",
            "    Plugin serve_file\n    Plugin error_doc\n    \
             ErrorDocument 404 /errors/404.html\n    ErrorDocument 405 /errors/405.html\n",
        )
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/errors/404.html", "not here\n");
        d.write("www/errors/405.html", "not like that\n");
        d.write("www/ed/file.txt", "file\n");
    });
    let log = srv.dir.path().join("access.log");
    let r = srv.get("/etc/passwd-probe?id=1'%20OR%201=1");
    assert_eq!((r.status, r.text().as_str()), (404, "not here\n"));
    let r = request(&srv, "DELETE", "/ed/file.txt", "");
    assert_eq!((r.status, r.text().as_str()), (405, "not like that\n"));
    let (bytes, _) = srv.raw(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(status_of(&bytes), 400);
    let (bytes, _) = srv.raw(
        b"GET /ed/file.txt HTTP/1.1\r\nHost: a\r\nReferer: http://x/\xff\xfe\"q\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&bytes), 200);
    let text = wait_for_line(&log, |l| l.contains("http://x/"));
    let text = wait_for_line(&log, |l| l.contains("GET /a b")).max(text);
    let line = |needle: &str| {
        let found = text.lines().find(|l| l.contains(needle));
        found.unwrap_or_else(|| panic!("no {needle:?} in:\n{text}"))
    };
    let (req, status, _, _, _) = parse_clf(line("passwd-probe"));
    assert_eq!(
        (req.as_str(), status),
        ("GET /etc/passwd-probe?id=1'%20OR%201=1 HTTP/1.1", 404)
    );
    let (req, status, _, _, _) = parse_clf(line("DELETE"));
    assert_eq!(
        (req.as_str(), status),
        ("DELETE /ed/file.txt HTTP/1.1", 405)
    );
    let (req, status, _, _, _) = parse_clf(line("GET /a b"));
    assert_eq!((req.as_str(), status), ("GET /a b HTTP/1.1", 400));
    let (_, _, _, referer, _) = parse_clf(line("http://x/"));
    assert_eq!(referer, "http://x/\\xff\\xfe\\\"q");
    assert!(!text.contains("/errors/"), "{text}");
}
