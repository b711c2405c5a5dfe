//! Error pages and the request log of a static-file server, through the
//! stock `axkit` binary: ErrorDocument (served with the original status;
//! bad ones refused by `--check`), the built-in error pages (internals
//! only under `StackTrace On`), and `RequestLogFormat` tokens.
//!
//! Every server runs as one process (`--no-master`); each test starts its
//! own so that they can run in parallel.

mod common;
#[path = "common/static_files.rs"]
mod static_files;

use common::*;
use static_files::*;

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
    // Nor into a 304 or a 412 by a tag (RFC 9110 §13.2.1: only a 2xx
    // answers a precondition).
    for conditional in ["If-None-Match: *\r\n", "If-Match: \"other\"\r\n"] {
        let r = get(&srv, "/nope.html", conditional);
        assert_eq!(r.status, 404, "{conditional}");
        assert_eq!(r.header("ETag"), None, "{conditional}");
    }
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

/// An ErrorDocument page keeps the fields of the error that still hold
/// for it (Apache's `err_headers_out`): a 401 still asks for credentials
/// (else a browser never shows its login), a 405 says what is allowed, a
/// 416 the size; a page whose own walk redirects (a directory named
/// without its slash) falls back to the built-in page with the original
/// status and without that redirect's `Location`.
#[test]
fn error_document_keeps_the_fields_of_the_error() {
    let conf = "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
    Plugin error_doc
    Plugin auth_basic
    AuthUserFile {dir}/htpasswd
    ErrorDocument 401 /errors/e.html
    ErrorDocument 405 /errors/e.html
    ErrorDocument 416 /errors/e.html
    ErrorDocument 404 /errors/dir
    <Location /adm>
        Require valid-user
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write(
            "htpasswd",
            "ada:$2b$04$LHGutq5Cfg.TnP.3SjDabexndGgjKcWdYKFXaaUmMTeUvxMEF31HG\n",
        );
        d.write("www/errors/e.html", "custom");
        d.write("www/errors/dir/x.txt", "x");
        d.write("www/adm/x.html", "adm");
        d.write("www/d.txt", digits100());
    });
    let r = get(&srv, "/adm/x.html", "");
    assert_eq!((r.status, r.text().as_str()), (401, "custom"));
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Basic realm="Restricted", charset="UTF-8""#)
    );
    let r = request(&srv, "DELETE", "/d.txt", "");
    assert_eq!((r.status, r.text().as_str()), (405, "custom"));
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    let r = get(&srv, "/d.txt", "Range: bytes=500-\r\n");
    assert_eq!((r.status, r.text().as_str()), (416, "custom"));
    assert_eq!(r.header("Content-Range"), Some("bytes */100"));
    // Only those: the file's validators are not the page's.
    assert_eq!(r.header("ETag"), None);
    let r = get(&srv, "/nope", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Location"), None);
    assert!(r.text().contains("404"), "{}", r.text());
}
