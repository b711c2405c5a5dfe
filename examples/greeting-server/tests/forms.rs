//! The request conveniences of the plugin API, through the `forms` plugin
//! of the custom binary: decoded query parameters, cookies, urlencoded and
//! multipart forms, uploads saved only when asked for (and removed when
//! the request ends), the multipart limits, and one form shared by the
//! plugins of a request (a check in `access_control`, then the handler);
//! and a template rendered and URLs fetched from Rust.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{parse_response, wait_until, Axkit, Response};

fn start() -> Axkit {
    Axkit::start_bin(
        env!("CARGO_BIN_EXE_greeting-server"),
        "Plugin logging/warn\nLogLevel info\nTemplateDir {dir}/templates\n\
         <Server>\n  Listen 127.0.0.1:0\n  Plugin forms\n</Server>\n",
        &["--no-master"],
        |d| {
            d.write(
                "templates/page.html",
                "<h1>{{ title }}</h1>{% for k, v in rows %}<p>{{ k }}={{ v }}</p>{% endfor %}",
            );
        },
    )
}

fn send(srv: &Axkit, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    parse_response(&srv.raw(&req).0).expect("a complete response")
}

const MULTIPART: &str = "Content-Type: multipart/form-data; boundary=XyZ\r\n";

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        if let Some(f) = filename {
            body.extend_from_slice(
                format!("; filename=\"{f}\"\r\nContent-Type: image/png").as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

#[test]
fn query_parameters_and_cookies_are_decoded() {
    let srv = start();
    let r = srv.get("/query?a=1+2&b=%41%26&c&&a=3&which=a");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "a=1 2\nb=A&\nc=\na=3\nwhich=a\nparam: Some(\"1 2\")\n"
    );
    let r = srv.get("/query?which=missing");
    assert!(r.text().ends_with("param: None\n"), "{}", r.text());

    let r = send(
        &srv,
        "GET",
        "/cookie?sid",
        "Cookie: a=1; sid=\"xyz\"\r\n",
        b"",
    );
    assert_eq!(r.text(), "Some(\"xyz\")\n");
    let r = send(
        &srv,
        "GET",
        "/cookie?sid",
        "Cookie: a=1\r\nCookie: sid=2\r\n",
        b"",
    );
    assert_eq!(r.text(), "Some(\"2\")\n", "every Cookie header counts");
    let r = send(&srv, "GET", "/cookie?sid", "Cookie: xsid=1\r\n", b"");
    assert_eq!(r.text(), "None\n");
}

#[test]
fn forms_urlencoded_and_multipart_with_uploads_saved_when_asked() {
    let mut srv = start();
    let urlencoded = "Content-Type: application/x-www-form-urlencoded\r\n";
    let r = send(&srv, "POST", "/form", urlencoded, b"a=1&t=x+%26+y&a=2");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "t=x & y\na=2\n", "the last of a name counts");

    let body = multipart(&[
        ("title", None, b"Hello"),
        ("avatar", Some("me.png"), b"\x89PNG\x00\x01"),
        ("other", Some("o.png"), b"other"),
    ]);
    // Not asked for: nothing saved.
    let r = send(&srv, "POST", "/form", MULTIPART, &body);
    assert_eq!(
        r.text(),
        "title=Hello\navatar: me.png 6 image/png -\nother: o.png 5 image/png -\n"
    );
    // Asked for one: that one saved, in a private directory, and removed
    // once the request is over.
    let r = send(&srv, "POST", "/form?save=avatar", MULTIPART, &body);
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "title=Hello");
    assert!(lines[2].ends_with(" -"), "{}", lines[2]);
    let path = PathBuf::from(lines[1].rsplit(' ').next().unwrap());
    assert!(
        lines[1].starts_with("avatar: me.png 6 image/png /"),
        "{}",
        lines[1]
    );
    let dir = path.parent().unwrap().to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{dir:?}");
    }
    assert!(
        wait_until(Duration::from_secs(5), || !path.exists()),
        "{path:?} left behind after its request"
    );
    let r = send(&srv, "POST", "/form?save=*", MULTIPART, &body);
    assert_eq!(r.text().matches(" /").count(), 2, "{}", r.text());

    // Malformed or too many parts: the client's error, logged at info.
    let r = send(&srv, "POST", "/form", MULTIPART, b"--XyZ\r\nno head end");
    assert_eq!(r.status, 400);
    srv.wait_stderr(
        "malformed multipart body: part head",
        Duration::from_secs(5),
    );
    let many =
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".repeat(1001) + "--XyZ--";
    let r = send(&srv, "POST", "/form", MULTIPART, many.as_bytes());
    assert_eq!(r.status, 413);

    srv.stop();
    assert!(
        std::fs::symlink_metadata(&dir).is_err(),
        "{dir:?} left behind at exit"
    );
}

#[test]
fn plugins_of_one_request_share_its_form() {
    let srv = start();
    let body = b"token=s3cret&name=Ada";
    let urlencoded = "Content-Type: application/x-www-form-urlencoded\r\n";
    let r = send(
        &srv,
        "POST",
        "/form",
        &format!("{urlencoded}X-Form-Token: s3cret\r\n"),
        body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "token=s3cret\nname=Ada\n");
    let r = send(
        &srv,
        "POST",
        "/form",
        &format!("{urlencoded}X-Form-Token: other\r\n"),
        body,
    );
    assert_eq!(r.status, 403);
}

#[test]
fn rust_renders_templates_and_fetches_with_keep_alive() {
    let srv = start();
    let r = srv.get("/render?title=%3CHi%3E&a=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.text(),
        "<h1>&lt;Hi&gt;</h1><p>title=&lt;Hi&gt;</p><p>a=1</p>"
    );
    // The server fetches from itself: three requests, one connection.
    let url = format!("http://{}/query?x=1", srv.addr);
    let r = srv.get(&format!("/fetch?times=3&url={url}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "x=1\nparam: None\nx=1\nparam: None\nx=1\nparam: None\nconnections: 1\n"
    );
}
