//! The `xslt` plugin's result cache through the real binary. A hit is
//! found by what the request names (its Location, the file and its stamp,
//! the style and medium chosen, the parameters taken from the request) and
//! sent as it is while everything it was made from was checked within the
//! second. These tests check that what must miss does: `?style=` A then
//! B, other query parameters or notes, an included stylesheet or the
//! document itself edited between two hits; and that hits keep `Vary`,
//! answer HEAD and give 304s. (`xml_pipeline.rs` has a file read with
//! `document()` edited between two hits.)

mod common;
#[path = "common/services.rs"]
mod services;
#[path = "common/xml.rs"]
mod xml;

use std::time::Duration;

use common::*;
use xml::*;

/// Results sent from the cache so far (`LogLevel LOGDEBUG` logs each).
fn hits(srv: &mut Axkit) -> usize {
    srv.stderr().matches("from the result cache").count()
}

/// Wait until at least `n` results were sent from the cache.
fn wait_hits(srv: &mut Axkit, n: usize) {
    let seen = wait_until(Duration::from_secs(10), || hits(srv) >= n);
    assert!(seen, "{} hits logged, {n} expected", hits(srv));
}

const DEBUG: &str = "LogLevel LOGDEBUG";

#[test]
fn styles_a_then_b_are_two_results() {
    let body = format!(
        "{CHAIN}\n    <Style rss>\n        XSLTStyle rss.xsl\n    </Style>\n\
         \x20   <Style page>\n        XSLTStyle page.xsl\n    </Style>"
    );
    let files = site_with(&[("site/rss.xsl", TO_RSS)]);
    let mut srv = start(&conf(DEBUG, &body), &files);
    for _ in 0..2 {
        let feed = srv.get("/a.xml?style=rss");
        assert_eq!(feed.status, 200, "{}", feed.text());
        assert!(feed.text().contains("<rss"), "{}", feed.text());
        assert_eq!(
            feed.header("Content-Type"),
            Some("application/rss+xml; charset=UTF-8")
        );
        let page = srv.get("/a.xml?style=page");
        assert!(page.text().contains("<page><title>"), "{}", page.text());
        let html = srv.get("/a.xml");
        assert!(
            html.text().contains("<h1>On &amp; off</h1>"),
            "{}",
            html.text()
        );
        assert_eq!(
            html.header("Content-Type"),
            Some("text/html; charset=UTF-8")
        );
        let tags = [&feed, &page, &html].map(|r| r.header("ETag").unwrap().to_string());
        assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2]);
    }
    // The second round came from the cache, each from its own result.
    wait_hits(&mut srv, 3);
}

#[test]
fn query_parameters_and_notes_are_part_of_what_a_result_is_found_by() {
    let show = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:param name="who"/><xsl:param name="note.user"/><xsl:param name="request.method"/>
<xsl:template match="/">who=<xsl:value-of select="$who"/> user=<xsl:value-of select="$note.user"/> method=<xsl:value-of select="$request.method"/></xsl:template>
</xsl:stylesheet>
"#;
    let mut files = site_with(&[]);
    files.push(("site/show.xsl", show));
    files.push(("plugins/who.lua", WHO));
    let body = "    Plugin who\n    XSLTStyle show.xsl\n    XSLTParamsFromRequest On";
    let mut srv = start(&conf(DEBUG, body), &files);
    for _ in 0..2 {
        for name in ["ada", "bob"] {
            let r = srv.get(&format!("/a.xml?who={name}"));
            assert_eq!(r.text(), format!("who={name} user=nobody method=GET"));
        }
        for user in ["x", "y"] {
            let r = request(&srv, "GET", "/a.xml", &format!("X-User: {user}\r\n"));
            assert_eq!(r.text(), format!("who= user={user} method=GET"));
        }
    }
    wait_hits(&mut srv, 4);
    // HEAD is another request.method: made once, then a hit, no body.
    let head = request(&srv, "HEAD", "/a.xml?who=ada", "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let length = "who=ada user=nobody method=HEAD".len().to_string();
    assert_eq!(head.header("Content-Length"), Some(length.as_str()));
    let again = request(&srv, "HEAD", "/a.xml?who=ada", "");
    assert_eq!(again.header("ETag"), head.header("ETag"));
    wait_hits(&mut srv, 5);
}

/// Including stylesheet → page.xsl's HTML, through an `xsl:include`.
const INCLUDING: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:include href="inc/html.xsl"/>
</xsl:stylesheet>
"#;

#[test]
fn an_included_stylesheet_edited_between_two_hits_is_a_miss() {
    let files = site_with(&[("site/main.xsl", INCLUDING), ("site/inc/html.xsl", TO_HTML)]);
    let body = "    XSLTStyle page.xsl\n    XSLTStyle main.xsl";
    let mut srv = start(&conf(DEBUG, body), &files);
    let first = srv.get("/a.xml");
    assert!(
        first.text().contains("<h1>On &amp; off</h1>"),
        "{}",
        first.text()
    );
    let etag = first.header("ETag").unwrap().to_string();
    assert_eq!(srv.get("/a.xml").body, first.body);
    wait_hits(&mut srv, 1);
    // A different size, so that the change shows whatever the clock.
    srv.dir.write(
        "site/inc/html.xsl",
        TO_HTML
            .replace("<h1>", "<h2 class=\"x\">")
            .replace("</h1>", "</h2>"),
    );
    let changed = wait_until(Duration::from_secs(10), || {
        srv.get("/a.xml")
            .text()
            .contains("<h2 class=\"x\">On &amp; off</h2>")
    });
    assert!(
        changed,
        "a hit outlived the included stylesheet it was made with"
    );
    let r = request(&srv, "GET", "/a.xml", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 200, "the old validator still matched");
    assert_ne!(r.header("ETag"), Some(etag.as_str()));
    // The new result is cached in its turn.
    let before = hits(&mut srv);
    assert!(srv.get("/a.xml").text().contains("<h2 class=\"x\">"));
    wait_hits(&mut srv, before + 1);
}

#[test]
fn the_document_edited_between_two_hits_is_a_miss() {
    let mut srv = start(&conf(DEBUG, CHAIN), &site_with(&[]));
    let first = srv.get("/a.xml");
    assert!(
        first.text().contains("<h1>On &amp; off</h1>"),
        "{}",
        first.text()
    );
    assert_eq!(srv.get("/a.xml").body, first.body);
    wait_hits(&mut srv, 1);
    srv.dir.write(
        "site/a.xml",
        ARTICLE.replace("On &amp; off", "Edited at last"),
    );
    let changed = wait_until(Duration::from_secs(10), || {
        srv.get("/a.xml").text().contains("<h1>Edited at last</h1>")
    });
    assert!(changed, "a hit outlived the document it was made from");
    let etag = first.header("ETag").unwrap();
    let r = request(&srv, "GET", "/a.xml", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Edited at last"), "{}", r.text());
}

/// What a result loaded is its own, not its file's: another style of the
/// same file loads other files (`document()`), and an edit to one of those
/// is a miss for that style. And a file a result tried to load and could
/// not (an XInclude that fell back) counts: its appearing is a miss.
#[test]
fn what_each_result_loaded_and_what_it_could_not_are_its_own() {
    let page = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">menu=<xsl:value-of select="document('menu.xml')/m"/></xsl:template>
</xsl:stylesheet>
"#;
    let rss = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">feed=<xsl:value-of select="document('feed.xml')/f"/></xsl:template>
</xsl:stylesheet>
"#;
    let copy = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">b=<xsl:value-of select="/b"/></xsl:template>
</xsl:stylesheet>
"#;
    let body =
        "    XSLTStyle page.xsl\n    <Style rss>\n        XSLTStyle rss.xsl\n    </Style>\n    \
                <Style copy>\n        XSLTStyle copy.xsl\n    </Style>";
    let files = [
        ("site/a.xml", "<doc/>"),
        ("site/menu.xml", "<m>menu1</m>"),
        ("site/feed.xml", "<f>feed1</f>"),
        ("site/page.xsl", page),
        ("site/rss.xsl", rss),
        ("site/copy.xsl", copy),
        (
            "site/b.xml",
            r#"<b xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="extra.txt" parse="text"><xi:fallback>fallback</xi:fallback></xi:include></b>"#,
        ),
    ];
    let srv = start(&conf(DEBUG, body), &files);
    assert_eq!(srv.get("/a.xml").text(), "menu=menu1");
    assert_eq!(srv.get("/a.xml?style=rss").text(), "feed=feed1");
    srv.dir.write("site/feed.xml", "<f>feed2</f>");
    let changed = wait_until(Duration::from_secs(10), || {
        srv.get("/a.xml?style=rss").text() == "feed=feed2"
    });
    assert!(changed, "a style's result outlived a file only it loaded");

    assert_eq!(srv.get("/b.xml?style=copy").text(), "b=fallback");
    srv.dir.write("site/extra.txt", "included");
    let changed = wait_until(Duration::from_secs(10), || {
        srv.get("/b.xml?style=copy").text() == "b=included"
    });
    assert!(
        changed,
        "a result outlived a file it could not load, now there"
    );
}

/// A hit chosen by the User-Agent says `Vary: User-Agent`, on a 200 and on
/// a 304, and each agent keeps its own result.
#[test]
fn hits_keep_vary_and_give_304s() {
    let body = format!(
        "{CHAIN}\n    StyleChooser useragent\n    StyleUserAgent reader rss\n\
         \x20   <Style rss>\n        XSLTStyle rss.xsl\n    </Style>"
    );
    let mut srv = start(&conf(DEBUG, &body), &site_with(&[("site/rss.xsl", TO_RSS)]));
    let agent = |a: &str| format!("User-Agent: {a}\r\n");
    let mut tags = Vec::new();
    for a in ["reader", "Mozilla/5.0", "reader", "Mozilla/5.0"] {
        let r = request(&srv, "GET", "/a.xml", &agent(a));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("Vary"), Some("User-Agent"));
        assert_eq!(
            r.text().contains("<rss"),
            a == "reader",
            "{a}: {}",
            r.text()
        );
        tags.push(r.header("ETag").unwrap().to_string());
    }
    assert_eq!(tags[0], tags[2]);
    assert_eq!(tags[1], tags[3]);
    assert_ne!(tags[0], tags[1]);
    wait_hits(&mut srv, 2);
    let headers = format!("{}If-None-Match: {}\r\n", agent("reader"), tags[0]);
    let r = request(&srv, "GET", "/a.xml", &headers);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Vary"), Some("User-Agent"));
    assert_eq!(r.header("ETag"), Some(tags[0].as_str()));
    // The other agent's validator is not this agent's.
    let headers = format!("{}If-None-Match: {}\r\n", agent("reader"), tags[1]);
    assert_eq!(request(&srv, "GET", "/a.xml", &headers).status, 200);
}
