//! The `xslt` plugin through the real binary: a `.xml` file through a
//! two-stylesheet chain (byte for byte what `xsltproc` makes of it), named
//! chains by `?style=`, `<?xml-stylesheet?>` PIs, parameters from the
//! config and the request (query, path, notes), validators, a 304 and a
//! 412, the result cache (and
//! what a document loads with `document()` invalidating it), a
//! stylesheet edited while serving, and Lua scripts before and after the
//! XSLT processor in the `xmlresponse` chain.

mod common;
#[path = "common/services.rs"]
mod services;
#[path = "common/xml.rs"]
mod xml;

use std::time::Duration;

use common::*;
use xml::*;

fn site() -> Vec<(&'static str, &'static str)> {
    site_with(&[("site/rss.xsl", TO_RSS), ("site/plain.txt", "plain\n")])
}

#[test]
fn a_file_goes_through_the_chain_as_xsltproc_would() {
    let srv = start(&conf("", CHAIN), &site());
    let r = srv.get("/a.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=UTF-8"));
    assert!(r.text().contains("<h1>On &amp; off</h1>"), "{}", r.text());
    assert!(r.text().contains("<p>Two &lt;b&gt;</p>"), "{}", r.text());
    assert!(r.header("ETag").is_some() && r.header("Last-Modified").is_some());
    // Other files are served as they are.
    assert_eq!(srv.get("/plain.txt").text(), "plain\n");
    let site = srv.dir.path().join("site");
    let Some(html) = xsltproc_chain(&site, "a.xml") else {
        return;
    };
    assert_eq!(r.body, html, "differs from xsltproc's output");
}

#[test]
fn a_named_style_is_chosen_by_the_query_string() {
    let body = format!("{CHAIN}\n    <Style rss>\n        XSLTStyle rss.xsl\n    </Style>");
    let mut srv = start(&conf("", &body), &site());
    let r = srv.get("/a.xml?style=rss");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("application/rss+xml; charset=UTF-8")
    );
    assert!(r.text().contains("<rss version=\"2.0\">"), "{}", r.text());
    // The default chain, and a style nobody defined.
    assert!(srv.get("/a.xml").text().contains("<h1>"));
    assert_eq!(srv.get("/a.xml?style=nope").status, 404);
    srv.wait_stderr("no style named \"nope\"", Duration::from_secs(5));
}

#[test]
fn xml_stylesheet_pis_are_honoured_when_asked() {
    let doc = r#"<?xml version="1.0"?>
<?xml-stylesheet type="text/css" href="look.css"?>
<?xml-stylesheet type="text/xsl" href="rss.xsl" title="feed" alternate="yes"?>
<?xml-stylesheet type="text/xsl" href="page.xsl"?>
<?xml-stylesheet type="text/xsl" href="/html.xsl"?>
<article><title>PI</title><para>p</para></article>
"#;
    let mut files = site();
    files.push(("site/pi.xml", doc));
    let srv = start(&conf("", "    XMLStylesheetPI On"), &files);
    let r = srv.get("/pi.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<h1>PI</h1>"), "{}", r.text());
    let r = srv.get("/pi.xml?style=feed");
    assert!(r.text().contains("<rss"), "{}", r.text());
    // Off: the document as it is, as XML.
    let srv = start(&conf("", "    XMLStylesheetPI Off"), &files);
    let r = srv.get("/pi.xml");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/xml; charset=utf-8")
    );
    assert!(r.text().contains("<article>"), "{}", r.text());
}

#[test]
fn parameters_come_from_the_config_and_the_request() {
    let show = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:param name="site"/><xsl:param name="who"/><xsl:param name="request.path"/><xsl:param name="note.user"/>
<xsl:template match="/">site=<xsl:value-of select="$site"/> who=<xsl:value-of select="$who"/> path=<xsl:value-of select="$request.path"/> user=<xsl:value-of select="$note.user"/></xsl:template>
</xsl:stylesheet>
"#;
    let mut files = site();
    files.push(("site/show.xsl", show));
    // A note an earlier plugin set is `note.NAME`.
    files.push(("plugins/who.lua", WHO));
    let body = "    Plugin who\n    XSLTStyle show.xsl\n    XSLTParam site \"my site\"\n\
                \x20   XSLTParamsFromRequest On";
    let srv = start(&conf("", body), &files);
    let r = srv.get("/a.xml?who=Ada%20L&site=evil");
    assert_eq!(r.status, 200, "{}", r.text());
    // The config's parameter wins over the request's; values are strings,
    // never XPath.
    assert_eq!(r.text(), "site=my site who=Ada L path=/a.xml user=nobody");
    let r = srv.get("/a.xml?who=1+1");
    assert_eq!(r.text(), "site=my site who=1 1 path=/a.xml user=nobody");
    let r = request(&srv, "GET", "/a.xml?who=x", "X-User: ada'\"\r\n");
    assert_eq!(r.text(), "site=my site who=x path=/a.xml user=ada'\"");
}

/// A server whose `who` plugin leaves the `user` note (from `X-User`) and
/// whose pipeline runs `show` with the request's parameters.
fn start_with_notes(show: &str) -> Axkit {
    let mut files = site();
    files.push(("site/show.xsl", show));
    files.push(("plugins/who.lua", WHO));
    let body = "    Plugin who\n    XSLTStyle show.xsl\n    XSLTParamsFromRequest On";
    start(&conf("", body), &files)
}

/// A query parameter never stands in for a parameter the server sets
/// (a note, `request.*`), whether or not it was set on this request.
#[test]
fn query_parameters_cannot_take_the_names_the_server_sets() {
    let show = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:param name="request.path"/><xsl:param name="note.user"/><xsl:param name="note.role" select="'none'"/>
<xsl:template match="/">path=<xsl:value-of select="$request.path"/> user=<xsl:value-of select="$note.user"/> role=<xsl:value-of select="$note.role"/></xsl:template>
</xsl:stylesheet>
"#;
    let srv = start_with_notes(show);
    let r = get(
        &srv,
        "/a.xml?note.user=admin&note.role=root&request.path=/admin",
        "X-User: bob\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "path=/a.xml user=bob role=none");
}

/// A result made with notes among its parameters depends on who asks,
/// which no file's time tells: it has no `Last-Modified`, so a copy made
/// for one user is not kept, by `If-Modified-Since`, for another; its tag
/// (of which the notes are part) still answers 304 to the same user.
#[test]
fn a_result_made_with_notes_goes_out_with_its_tag_alone() {
    let show = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:param name="note.user"/>
<xsl:template match="/">user=<xsl:value-of select="$note.user"/></xsl:template>
</xsl:stylesheet>
"#;
    let srv = start_with_notes(show);
    let alice = get(&srv, "/a.xml", "X-User: alice\r\n");
    assert_eq!(alice.text(), "user=alice");
    assert_eq!(alice.header("Last-Modified"), None);
    let etag = alice.header("ETag").unwrap().to_string();
    let since = "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n";
    let bob = get(&srv, "/a.xml", &format!("X-User: bob\r\n{since}"));
    assert_eq!((bob.status, bob.text().as_str()), (200, "user=bob"));
    let again = get(
        &srv,
        "/a.xml",
        &format!("X-User: alice\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304);
    let bob = get(
        &srv,
        "/a.xml",
        &format!("X-User: bob\r\nIf-None-Match: {etag}\r\n"),
    );
    assert_eq!(bob.status, 200);
}

#[test]
fn validators_give_304_and_results_are_cached() {
    // The stylesheet reads a side file with document(): the result
    // depends on it too.
    let side = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">side=<xsl:value-of select="document('side.xml')/side"/></xsl:template>
</xsl:stylesheet>
"#;
    let mut files = site();
    files.push(("site/side.xsl", side));
    files.push(("site/side.xml", "<side>one</side>"));
    let mut srv = start(&conf("LogLevel LOGDEBUG", "    XSLTStyle side.xsl"), &files);
    let r = srv.get("/a.xml");
    assert_eq!(r.text(), "side=one");
    let etag = r.header("ETag").unwrap().to_string();
    let modified = r.header("Last-Modified").unwrap().to_string();
    assert_eq!(srv.get("/a.xml").text(), "side=one");
    srv.wait_stderr("a.xml from the result cache", Duration::from_secs(5));
    let r = request(&srv, "GET", "/a.xml", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("ETag"), Some(etag.as_str()));
    let r = request(
        &srv,
        "GET",
        "/a.xml",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(r.status, 304);
    // A precondition the current validator fails: 412.
    let r = request(&srv, "GET", "/a.xml", "If-Match: \"other\"\r\n");
    assert_eq!(r.status, 412);
    let r = request(&srv, "GET", "/a.xml", &format!("If-Match: {etag}\r\n"));
    assert_eq!(r.status, 200);
    // A change to the file it loaded is a new result, with a new ETag.
    srv.dir.write("site/side.xml", "<side>two two</side>");
    let changed = wait_until(Duration::from_secs(10), || {
        srv.get("/a.xml").text() == "side=two two"
    });
    assert!(changed, "the cached result outlived what it loaded");
    let r = request(&srv, "GET", "/a.xml", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 200);
}

#[test]
fn an_edited_stylesheet_is_recompiled() {
    let srv = start(&conf("", CHAIN), &site());
    let first = srv.get("/a.xml");
    assert!(first.text().contains("<h1>"));
    let etag = first.header("ETag").unwrap().to_string();
    // A different size, so that the change shows whatever the clock.
    srv.dir.write(
        "site/html.xsl",
        TO_HTML.replace("<h1>", "<h2>").replace("</h1>", "</h2>"),
    );
    let changed = wait_until(Duration::from_secs(10), || {
        srv.get("/a.xml").text().contains("<h2>On &amp; off</h2>")
    });
    assert!(changed, "the edited stylesheet was never used");
    let r = request(&srv, "GET", "/a.xml", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 200, "the old validator still matched");
}

#[test]
fn lua_scripts_produce_and_process_documents() {
    let producer = r#"
function hook_xmlresponse(r)
  if r:path() ~= "/made" then return DECLINED end
  r:set_document("<article><title>" .. r:path() .. "</title><para>from Lua</para></article>")
  return OK
end
"#;
    let post = r#"
function hook_xmlresponse(r)
  local doc = r:document()
  if not doc then return DECLINED end
  r:set_document((doc:gsub("<body>", "<body><nav>menu</nav>")))
  return OK
end
"#;
    let mut files = site();
    files.push(("plugins/producer.lua", producer));
    files.push(("plugins/post.lua", post));
    let body = format!(
        "{CHAIN}\n    <Location /made>\n        Plugin producer\n    </Location>\n    Plugin post"
    );
    let srv = start(&conf("", &body), &files);
    // A Lua document goes through the chain, and the Lua processor after
    // it gets the output.
    let r = srv.get("/made");
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains("<body><nav>menu</nav>"), "{page}");
    assert!(page.contains("<h1>/made</h1>"), "{page}");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=UTF-8"));
    // A file's output too.
    assert!(srv.get("/a.xml").text().contains("<nav>menu</nav>"));
}

/// The demo's XML site (`demo/xml/`, as the built-in config and
/// etc/axkit.conf serve it): the front page XIncludes the articles, and
/// the same source is a feed by the `rss` chain.
#[test]
fn the_demo_site_renders_pages_and_a_feed() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/demo");
    let body = format!(
        "    DocumentRoot {demo}\n    <Location /xml>\n\
         \x20       XSLTStyle xml/style/article.xsl\n        XSLTStyle xml/style/page.xsl\n\
         \x20       <Style rss>\n            XSLTStyle xml/style/rss.xsl\n        </Style>\n    </Location>"
    );
    let srv = start(&conf("", &body), &[]);
    let r = srv.get("/xml/index.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=UTF-8"));
    let page = r.text();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(
        page.contains("<a href=\"articles/caching.xml\">Caching</a>"),
        "{page}"
    );
    let r = srv.get("/xml/articles/pipeline.xml");
    assert!(
        r.text().contains("<h1>Documents in, pipeline out</h1>"),
        "{}",
        r.text()
    );
    let r = srv.get("/xml/index.xml?style=rss");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/rss+xml; charset=UTF-8")
    );
    assert_eq!(r.text().matches("<item>").count(), 3, "{}", r.text());
}

/// Says which root element it got.
const SHOW_ROOT: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">root=<xsl:value-of select="local-name(*)"/></xsl:template>
</xsl:stylesheet>
"#;

/// `XMLMatch root`/`namespace`: only documents with that root element go
/// through the pipeline; another file is served as it is.
#[test]
fn xml_match_takes_documents_by_root_element_or_namespace() {
    let feed = "<?xml version=\"1.0\"?>\n<rss version=\"2.0\"/>\n";
    let ns = "<?xml version=\"1.0\"?>\n<a:article xmlns:a=\"urn:x-articles\"><a:title>N</a:title></a:article>\n";
    let mut files = site();
    files.push(("site/feed.xml", feed));
    files.push(("site/ns/n.xml", ns));
    files.push(("site/show.xsl", SHOW_ROOT));
    let body = "    XMLMatch root article\n    <Location /ns>\n        XMLMatch namespace urn:x-articles\n\
                \x20       XSLTStyle show.xsl\n    </Location>";
    let srv = start(&conf("", body), &files);
    // No chain here: the document goes out as XML.
    let r = srv.get("/a.xml");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/xml; charset=utf-8")
    );
    assert!(
        r.text().contains("<article><title>On &amp; off</title>"),
        "{}",
        r.text()
    );
    let r = srv.get("/feed.xml");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), feed, "not served as it is");
    // A Location's XMLMatch lines add to the Server's (as XSLTStyle lines
    // do): article or the namespace.
    assert_eq!(srv.get("/ns/n.xml").text(), "root=article");
}

/// Page -> plain text, for text browsers.
const TO_TEXT: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text" encoding="UTF-8"/>
<xsl:template match="/page">TEXT <xsl:value-of select="title"/></xsl:template>
</xsl:stylesheet>
"#;

/// Page -> a card for small screens.
const TO_CARD: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="xml" encoding="UTF-8"/>
<xsl:template match="/page"><card><xsl:value-of select="title"/></card></xsl:template>
</xsl:stylesheet>
"#;

/// A GET of `path` with `User-Agent: agent`.
fn as_agent(srv: &Axkit, path: &str, agent: &str) -> Response {
    request(srv, "GET", path, &format!("User-Agent: {agent}\r\n"))
}

/// `StyleChooser useragent` + `StyleUserAgent REGEX NAME`: the first regex
/// that matches the User-Agent names the `<Style>`; `?style=` comes first
/// when `querystring` is listed first; the response says it varies by
/// User-Agent, and each agent's result is cached apart.
#[test]
fn a_named_style_is_chosen_by_the_user_agent() {
    let body = format!(
        "{CHAIN}\n    StyleChooser querystring useragent\n\
         \x20   StyleUserAgent \"(?i)feed ?reader\" rss\n    StyleUserAgent ^Ghost nowhere\n\
         \x20   <Style rss>\n        XSLTStyle rss.xsl\n    </Style>"
    );
    let mut srv = start(&conf("", &body), &site());
    let feed = as_agent(&srv, "/a.xml", "Feed Reader/2.0");
    assert_eq!(feed.status, 200, "{}", feed.text());
    assert!(
        feed.text().contains("<rss version=\"2.0\">"),
        "{}",
        feed.text()
    );
    assert_eq!(feed.header("Vary"), Some("User-Agent"));
    // Another agent gets the default chain, from the cache too.
    for _ in 0..2 {
        let page = as_agent(&srv, "/a.xml", "Mozilla/5.0");
        assert!(
            page.text().contains("<h1>On &amp; off</h1>"),
            "{}",
            page.text()
        );
        assert_ne!(page.header("ETag"), feed.header("ETag"));
    }
    let again = as_agent(&srv, "/a.xml", "feedreader");
    assert!(again.text().contains("<rss"), "{}", again.text());
    assert_eq!(again.header("ETag"), feed.header("ETag"));
    // The query string is asked first.
    let asked = as_agent(&srv, "/a.xml?style=rss", "Mozilla/5.0");
    assert!(asked.text().contains("<rss"), "{}", asked.text());
    // A style the regex names that exists nowhere: 404, as for ?style=.
    assert_eq!(as_agent(&srv, "/a.xml", "Ghost/1").status, 404);
    srv.wait_stderr("no style named \"nowhere\"", Duration::from_secs(5));

    // Without the chooser, StyleUserAgent lines are not looked at, and
    // nothing varies by User-Agent.
    let body = format!(
        "{CHAIN}\n    StyleUserAgent reader rss\n    <Style rss>\n        XSLTStyle rss.xsl\n    </Style>"
    );
    let srv = start(&conf("", &body), &site());
    let r = as_agent(&srv, "/a.xml", "reader");
    assert!(r.text().contains("<h1>"), "{}", r.text());
    assert_eq!(r.header("Vary"), None);
}

/// `StyleChooser media` + `XSLTStyle FILE MEDIA`: text browsers get the
/// `tty` stylesheets, phones the `handheld` ones, everyone else `screen`;
/// stylesheets without a medium are in every chain, and an
/// `<?xml-stylesheet media=…?>` PI is chosen the same way.
#[test]
fn the_media_chooser_picks_stylesheets_by_medium() {
    let body = "    StyleChooser media\n    XSLTStyle page.xsl\n    XSLTStyle html.xsl screen\n\
                \x20   XSLTStyle text.xsl tty\n    XSLTStyle card.xsl \"handheld, print\"\n\
                \x20   <Location /pi>\n        XMLStylesheetPI On\n    </Location>";
    let pi = r#"<?xml version="1.0"?>
<?xml-stylesheet type="text/xsl" href="/page.xsl"?>
<?xml-stylesheet type="text/xsl" href="/html.xsl" media="screen"?>
<?xml-stylesheet type="text/xsl" href="/text.xsl" media="tty"?>
<article><title>PI</title><para>p</para></article>
"#;
    let mut files = site();
    files.push(("site/text.xsl", TO_TEXT));
    files.push(("site/card.xsl", TO_CARD));
    files.push(("site/pi/a.xml", pi));
    let srv = start(&conf("", body), &files);
    let r = as_agent(&srv, "/a.xml", "Lynx/2.9.0dev.10 libwww-FM/2.14");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "TEXT On & off");
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(r.header("Vary"), Some("User-Agent"));
    let r = as_agent(&srv, "/a.xml", "Mozilla/5.0 (iPhone) Mobile/15E148");
    assert!(
        r.text().contains("<card>On &amp; off</card>"),
        "{}",
        r.text()
    );
    let r = as_agent(&srv, "/a.xml", "Mozilla/5.0 (X11; Linux x86_64)");
    assert!(r.text().contains("<h1>On &amp; off</h1>"), "{}", r.text());
    // Twice more, from the result cache: each medium keeps its own.
    for _ in 0..2 {
        assert_eq!(
            as_agent(&srv, "/a.xml", "w3m/0.5.3").text(),
            "TEXT On & off"
        );
        assert!(as_agent(&srv, "/a.xml", "Mozilla/5.0")
            .text()
            .contains("<h1>"));
    }
    // PIs by their media attribute.
    assert_eq!(as_agent(&srv, "/pi/a.xml", "ELinks/0.13").text(), "TEXT PI");
    assert!(as_agent(&srv, "/pi/a.xml", "Mozilla/5.0")
        .text()
        .contains("<h1>PI</h1>"));

    // Without the media chooser every request is `screen`.
    let body = "    XSLTStyle page.xsl\n    XSLTStyle html.xsl screen\n    XSLTStyle text.xsl tty";
    let srv = start(&conf("", body), &files);
    let r = as_agent(&srv, "/a.xml", "Lynx/2.9");
    assert!(r.text().contains("<h1>On &amp; off</h1>"), "{}", r.text());
    assert_eq!(r.header("Vary"), None);
}

/// `XMLMatch .EXT…`: the files with those extensions are the XML ones,
/// and `.xml` only when listed.
#[test]
fn xml_match_takes_files_by_extension() {
    let files = [
        ("site/show.xsl", SHOW_ROOT),
        ("site/a.rdf", ARTICLE),
        ("site/b.xhtml", "<html/>"),
        ("site/c.xml", ARTICLE),
    ];
    let srv = start(
        &conf("", "    XMLMatch .rdf .xhtml\n    XSLTStyle show.xsl"),
        &files,
    );
    assert_eq!(srv.get("/a.rdf").text(), "root=article");
    assert_eq!(srv.get("/b.xhtml").text(), "root=html");
    let r = srv.get("/c.xml");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), ARTICLE, "not served as it is");
}

/// The `cache` plugin keeps the pipeline's pages like any response that
/// may be cached (`Header set Cache-Control`, the `headers` plugin listed
/// before `cache`), one per User-Agent when the style depends on it
/// (`Vary: User-Agent`).
#[test]
fn the_cache_plugin_keeps_pages_apart_by_user_agent() {
    let body = format!(
        "{CHAIN}\n    XSLTCache Off\n    StyleChooser useragent\n    StyleUserAgent reader rss\n\
         \x20   <Style rss>\n        XSLTStyle rss.xsl\n    </Style>\n\
         \x20   Plugin headers\n    Header set Cache-Control \"max-age=60\"\n    Plugin cache\n    Cache On"
    );
    let srv = start(&conf("", &body), &site());
    let first = as_agent(&srv, "/a.xml", "Mozilla/5.0");
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(
        first.text().contains("<h1>On &amp; off</h1>"),
        "{}",
        first.text()
    );
    assert_eq!(first.header("Vary"), Some("User-Agent"));
    assert_eq!(first.header("Age"), None);
    let hit = as_agent(&srv, "/a.xml", "Mozilla/5.0");
    assert_eq!(hit.body, first.body);
    assert!(hit.header("Age").is_some(), "not from the cache");
    // Another agent's page is not that one: made, then kept apart.
    for _ in 0..2 {
        let feed = as_agent(&srv, "/a.xml", "reader");
        assert!(feed.text().contains("<rss"), "{}", feed.text());
    }
    assert!(as_agent(&srv, "/a.xml", "reader").header("Age").is_some());
}

/// A stylesheet the config names by an absolute path outside the
/// DocumentRoot is used (the config is trusted), and what it includes is
/// read beneath its own directory (one that climbs out of it is refused:
/// `xml_errors.rs`).
#[test]
fn an_absolute_stylesheet_path_outside_the_root_is_used() {
    const INCLUDING: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:include href="common.xsl"/>
</xsl:stylesheet>
"#;
    let body = "    XSLTStyle {dir}/styles/main.xsl\n    XSLTStyle html.xsl";
    let mut files = site_with(&[
        ("styles/main.xsl", INCLUDING),
        ("styles/common.xsl", TO_PAGE),
    ]);
    files.retain(|(p, _)| *p != "site/page.xsl");
    let srv = start(&conf("", body), &files);
    let r = srv.get("/a.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<h1>On &amp; off</h1>"), "{}", r.text());
}
