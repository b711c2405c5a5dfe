//! A document a Rust plugin built, handed to the XML pipeline as a parsed
//! tree (`Document::Tree` holding an `axkit_xml::Document`): the
//! `articles` plugin of the custom binary makes it, the `xslt` plugin
//! after it in the `xmlresponse` chain runs the chain on it (on the
//! blocking pool: a tree counts as large), with the request's parameters,
//! `?style=`, and no result cache; a tree of another kind is left alone
//! and sent as its own serialisation, and one that cannot be serialised
//! is a 500, never a crash.

#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "../../../tests/common/services.rs"]
mod services;
#[path = "../../../tests/common/xml.rs"]
mod xml;

use std::time::Duration;

use common::{request, Axkit};
use xml::*;

fn start(body: &str) -> Axkit {
    let conf = format!(
        "Plugin logging/warn\nLogLevel LOGDEBUG\n<Server>\n    Listen 127.0.0.1:0\n\
         \x20   DocumentRoot {{dir}}/site\n    Plugin uri_to_file\n    Plugin xslt\n\
         \x20   <Location /articles>\n        Plugin articles\n    </Location>\n{body}\n</Server>\n"
    );
    Axkit::start_bin(
        env!("CARGO_BIN_EXE_greeting-server"),
        &conf,
        &["--no-master"],
        |d| {
            write_files(
                d,
                &[
                    ("site/page.xsl", TO_PAGE),
                    ("site/html.xsl", TO_HTML),
                    ("site/rss.xsl", TO_RSS),
                ],
            )
        },
    )
}

#[test]
fn a_tree_from_a_rust_plugin_goes_through_the_chain() {
    let body = "    XSLTStyle page.xsl\n    XSLTStyle html.xsl\n    XSLTParamsFromRequest On\n\
                \x20   <Style rss>\n        XSLTStyle rss.xsl\n    </Style>";
    let mut srv = start(body);
    let r = srv.get("/articles/first?title=Trees%20%26%20text&greeting=hi");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=UTF-8"));
    let page = r.text();
    assert!(page.contains("<h1>Trees &amp; text</h1>"), "{page}");
    assert!(page.contains("<em>hi</em>"), "{page}");
    assert!(page.contains("<p>first</p>"), "{page}");
    // Made anew each time: never from the result cache, no validators.
    assert_eq!(r.header("ETag"), None);
    let again = srv.get("/articles/first?title=Trees%20%26%20text&greeting=hi");
    assert_eq!(again.body, r.body);
    // A named chain, chosen by the query string.
    let r = srv.get("/articles/second?style=rss");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/rss+xml; charset=UTF-8")
    );
    assert!(
        r.text().contains("<item><title>second</title></item>"),
        "{}",
        r.text()
    );
    let log = srv.sync_stderr();
    assert!(!log.contains("from the result cache"), "{log}");

    // A tree of a kind the xslt plugin does not know: left alone, and
    // sent as its own serialisation at the end of the chain.
    let r = request(&srv, "GET", "/articles/foreign", "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(r.text(), "<foreign>left alone</foreign>");
    // One that cannot be serialised is a 500 that says why; the worker
    // carries on.
    let r = request(&srv, "GET", "/articles/unwritable", "");
    assert_eq!(r.status, 500);
    srv.wait_stderr(
        "the document left at the end of the chain cannot be serialised: \
         this tree has no text",
        Duration::from_secs(5),
    );
    assert_eq!(srv.get("/articles/after").status, 200);
}

/// Without a stylesheet the tree goes out as XML.
#[test]
fn a_tree_without_stylesheets_is_sent_as_xml() {
    let srv = start("");
    let r = srv.get("/articles/plain?title=%3Cb%3E");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(
        r.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <article><title>&lt;b&gt;</title><para>plain</para></article>\n"
    );
}
