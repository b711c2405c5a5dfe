//! What the XML pipeline refuses, and how it fails: external entities
//! (XXE), entity expansion (billion laughs, and attributes a DTD defaults
//! onto many elements), `document()`, XInclude and PIs outside
//! the DocumentRoot or through a link out of it (but `document('')`, the
//! stylesheet itself, wherever it lies), XInclude pointers that need
//! XPath (unbounded in libxml2), XIncludes nested in XIncludes that
//! multiply (refused before libxml2 copies them), XInclude loops,
//! XIncludes in a document
//! a script made of the request (left as they are), transforms that
//! run past `XSLTTimeLimit` (stopped on the event loop: 500; `0` is no
//! limit, not a deadline already past), broken documents and
//! stylesheets (500, file:line in the log, the error on the page only
//! with `StackTrace On`, the worker alive), and `--check` compiling every
//! stylesheet the config names.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;
#[path = "common/xml.rs"]
mod xml;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use lua::check_with;
use xml::*;

fn site() -> Vec<(&'static str, &'static str)> {
    site_with(&[("secret.xml", "<secret>s3cr3t</secret>")])
}

/// `path` answers 500, its content nowhere in the body, and the log has a
/// line naming `needle`; the server still answers afterwards.
fn refused(srv: &mut Axkit, path: &str, needle: &str) {
    let r = srv.get(path);
    assert_eq!(r.status, 500, "{path}: {}", r.text());
    assert!(!r.text().contains("s3cr3t"), "{path}: leaked");
    srv.wait_stderr(needle, Duration::from_secs(5));
    assert_eq!(
        srv.get("/a.xml").status,
        200,
        "the worker did not survive {path}"
    );
}

#[test]
fn external_entities_and_entity_bombs_are_refused() {
    let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE article [<!ENTITY x SYSTEM "file:///{dir}/secret.xml">]>
<article><title>&x;</title></article>
"#;
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<article><title>&lol9;</title></article>
"#;
    let mut srv = Axkit::start_single_with(&conf("", CHAIN), |d| {
        write_files(d, &site());
        d.write("site/xxe.xml", config_text(d, xxe));
        d.write("site/laughs.xml", laughs);
    });
    refused(&mut srv, "/xxe.xml", "xxe.xml:");
    refused(&mut srv, "/laughs.xml", "laughs.xml:");
}

/// `POST path` with `body`, on a new connection.
fn post(srv: &Axkit, path: &str, body: &str) -> Response {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let (bytes, ended) = srv.exchange(req.as_bytes());
    parse_response(&bytes)
        .unwrap_or_else(|| srv.no_response(&format!("POST {path}"), &bytes, &ended, started))
}

/// An ATTLIST default is copied onto every element that lacks it: a
/// large one on many small elements is bounded as entity expansion is
/// (a script's `xml.parse` allows 64 MiB), and so are the references
/// default values expand inside the DTD.
#[test]
fn attributes_a_dtd_defaults_are_bounded_like_entities() {
    let parse = r#"
function hook_response(r)
  local ok, err = pcall(xml.parse, r:body())
  r:write(ok and "parsed" or tostring(err):match("xml.parse: [^\n]*"))
  return OK
end
"#;
    let mut files = site();
    files.push(("plugins/parse.lua", parse));
    let body = "    <Location /parse>\n        Plugin parse\n    </Location>";
    let srv = start(&conf("", body), &files);
    // 60 KB copied onto 2,000 elements: 120 MB from 70 KB.
    let defaults = format!(
        "<!DOCTYPE r [<!ATTLIST e a CDATA \"{}\">]><r>{}</r>",
        "x".repeat(60_000),
        "<e/>".repeat(2_000)
    );
    let r = post(&srv, "/parse", &defaults);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains(
            "element 'e': attributes defaulted by the DTD and expanded entities exceed the size \
             limit of 67108864 bytes"
        ),
        "{}",
        r.text()
    );
    // 30 KB expanded 300 times into each of 10 default values (libxml2
    // allows 10 MB in one), on no element: 90 MB from 40 KB.
    let attlists: String = (0..10)
        .map(|i| format!("<!ATTLIST e a{i} CDATA \"{}\">", "&x;".repeat(300)))
        .collect();
    let in_dtd = format!(
        "<!DOCTYPE r [<!ENTITY x \"{}\">{attlists}]><r/>",
        "x".repeat(30_000)
    );
    let r = post(&srv, "/parse", &in_dtd);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .contains("entity 'x': expanded entities exceed the size limit"),
        "{}",
        r.text()
    );
    // A few defaults are what a DTD is for.
    let few = "<!DOCTYPE r [<!ATTLIST e a CDATA \"on\">]><r><e/><e a=\"off\"/></r>";
    assert_eq!(post(&srv, "/parse", few).text(), "parsed");
}

/// A document a script makes of the request is not XIncluded: an
/// include would read what the Location's access rules protect.
#[test]
fn a_document_made_of_the_request_is_not_xincluded() {
    let echo = r#"
function hook_xmlresponse(r)
  r:set_document(r:body())
  return OK
end
"#;
    let copy = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
</xsl:stylesheet>
"#;
    let mut files = site();
    files.push(("plugins/echo.lua", echo));
    files.push(("site/copy.xsl", copy));
    files.push(("site/private/secret.txt", "s3cr3t"));
    let body = "    Plugin access\n    <Location /private>\n        Deny from all\n    </Location>\n\
                \x20   <Location /echo>\n        Plugin echo\n        XSLTStyle copy.xsl\n    </Location>";
    let srv = start(&conf("", body), &files);
    assert_eq!(srv.get("/private/secret.txt").status, 403);
    let include = r#"<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="../private/secret.txt" parse="text"/></r>"#;
    let r = post(&srv, "/echo/x", include);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("s3cr3t"), "included: {}", r.text());
    assert!(
        r.text()
            .contains("<xi:include href=\"../private/secret.txt\" parse=\"text\"/>"),
        "{}",
        r.text()
    );
}

/// A transform that would run for ages is stopped at `XSLTTimeLimit`,
/// though it runs on the event loop (a small document): recursion
/// through named templates, through template rules that evaluate no
/// XPath at all, and one XPath expression that runs cubic.
#[test]
fn transforms_past_the_time_limit_are_stopped() {
    let sheet = |body: &str| {
        format!(
            r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
{body}
</xsl:stylesheet>
"#
        )
    };
    // 2^60 calls.
    let calls = sheet(
        r#"<xsl:param name="n" select="60"/>
<xsl:template match="/"><xsl:call-template name="f"><xsl:with-param name="n" select="$n"/></xsl:call-template></xsl:template>
<xsl:template name="f"><xsl:param name="n"/><xsl:if test="$n &gt; 0">
<xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
<xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
</xsl:if></xsl:template>"#,
    );
    // 2^60 visits of 60 nested elements.
    let rules = sheet(
        r#"<xsl:template match="a"><xsl:apply-templates/><xsl:apply-templates/></xsl:template>"#,
    );
    let xpath = sheet(
        r#"<xsl:template match="/"><xsl:value-of select="count(//*[count(//*[count(//*) &gt; 0]) &gt; 0])"/></xsl:template>"#,
    );
    let nested = format!("{}{}", "<a>".repeat(60), "</a>".repeat(60));
    let wide = format!("<r>{}</r>", "<i/>".repeat(3000));
    let body = "    XSLTTimeLimit 1s\n\
                \x20   <Location /calls>\n        XSLTStyle calls.xsl\n    </Location>\n\
                \x20   <Location /rules>\n        XSLTStyle rules.xsl\n    </Location>\n\
                \x20   <Location /xpath>\n        XSLTStyle xpath.xsl\n    </Location>";
    let mut srv = Axkit::start_single_with(&conf("", body), |d| {
        write_files(d, &site());
        d.write("site/calls.xsl", &calls);
        d.write("site/rules.xsl", &rules);
        d.write("site/xpath.xsl", &xpath);
        d.write("site/calls/a.xml", ARTICLE);
        d.write("site/rules/a.xml", &nested);
        d.write("site/xpath/a.xml", &wide);
    });
    for path in ["/calls/a.xml", "/rules/a.xml", "/xpath/a.xml"] {
        let started = Instant::now();
        let r = srv.get(path);
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path}: stopped after {:?}",
            started.elapsed()
        );
        let line = srv.wait_stderr(
            &format!("{path}: the transform ran past its deadline"),
            Duration::from_secs(5),
        );
        assert!(line.contains("(XSLTTimeLimit 1s)"), "{line}");
        assert_eq!(srv.get("/a.xml").status, 200, "after {path}");
    }
}

/// `XSLTTimeLimit 0` is no limit (as PHP's `max_execution_time 0`):
/// every transform is served, where a deadline already past would make
/// each a 500.
#[test]
fn a_zero_time_limit_is_no_limit() {
    let body = format!("    XSLTTimeLimit 0\n{CHAIN}");
    let mut srv = start(&conf("", &body), &site());
    let r = srv.get("/a.xml");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), srv.stderr());
    assert!(r.text().contains("<h1>On &amp; off</h1>"), "{}", r.text());
}

#[test]
fn document_and_pis_stay_beneath_the_document_root() {
    let reader = |what: &str| {
        format!(
            r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">got <xsl:value-of select="document('{what}')"/></xsl:template>
</xsl:stylesheet>
"#
        )
    };
    let up = reader("../secret.xml");
    let abs = reader("{dir}/secret.xml");
    let link = reader("link.xml");
    let inside = reader("a.xml");
    let body = "    <Location /up>\n        XSLTStyle r-up.xsl\n    </Location>\n\
                \x20   <Location /abs>\n        XSLTStyle r-abs.xsl\n    </Location>\n\
                \x20   <Location /link>\n        XSLTStyle r-link.xsl\n    </Location>\n\
                \x20   <Location /in>\n        XSLTStyle r-in.xsl\n    </Location>\n\
                \x20   <Location /pi>\n        XMLStylesheetPI On\n    </Location>";
    let xinclude = r#"<?xml version="1.0"?>
<article xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="../../../secret.xml"/></article>
"#;
    let pi = r#"<?xml version="1.0"?>
<?xml-stylesheet type="text/xsl" href="../../../outside.xsl"?>
<article><title>t</title></article>
"#;
    let mut srv = Axkit::start_single_with(&conf("", body), |d| {
        write_files(d, &site());
        d.write("site/r-up.xsl", &up);
        d.write("site/r-abs.xsl", config_text(d, &abs));
        d.write("site/r-link.xsl", &link);
        d.write("site/r-in.xsl", &inside);
        for dir in ["up", "abs", "link", "in", "pi/x"] {
            d.write(&format!("site/{dir}/a.xml"), ARTICLE);
        }
        d.write("site/pi/x/pi.xml", pi);
        d.write("site/xi/x/xi.xml", xinclude);
        d.write("outside.xsl", TO_PAGE);
        std::os::unix::fs::symlink(d.path().join("secret.xml"), d.path().join("site/link.xml"))
            .unwrap();
    });
    let r = srv.get("/in/a.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("got On & off"), "{}", r.text());
    refused(&mut srv, "/up/a.xml", "secret.xml");
    refused(&mut srv, "/abs/a.xml", "secret.xml is outside");
    refused(&mut srv, "/link/a.xml", "link.xml leads out of");
    refused(&mut srv, "/xi/x/xi.xml", "secret.xml is outside");
    refused(
        &mut srv,
        "/pi/x/pi.xml",
        "outside.xsl\"?> names a stylesheet outside",
    );
}

/// `document('')` is the stylesheet itself (in a module, that module),
/// read as its compilation read it, though it lies outside the
/// DocumentRoot; any other file beside it stays out of reach.
#[test]
fn document_of_the_stylesheet_itself_reads_it_wherever_it_lies() {
    let own = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:m="urn:menu">
<xsl:include href="inc/module.xsl"/>
<xsl:output method="text"/>
<m:item>alpha</m:item>
<xsl:template match="/">own <xsl:value-of select="document('')/*/m:item"/>, <xsl:call-template name="module"/></xsl:template>
</xsl:stylesheet>
"#;
    let module = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:m="urn:menu">
<m:item>beta</m:item>
<xsl:template name="module">module <xsl:value-of select="document('')/*/m:item"/></xsl:template>
</xsl:stylesheet>
"#;
    let peek = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/">got <xsl:value-of select="document('../secret.xml')"/></xsl:template>
</xsl:stylesheet>
"#;
    let body = "    <Location /own>\n        XSLTStyle {dir}/styles/own.xsl\n    </Location>\n\
                \x20   <Location /peek>\n        XSLTStyle {dir}/styles/peek.xsl\n    </Location>";
    let mut srv = Axkit::start_single_with(&conf("", body), |d| {
        write_files(d, &site());
        d.write("styles/own.xsl", own);
        d.write("styles/inc/module.xsl", module);
        d.write("styles/peek.xsl", peek);
        d.write("site/own/a.xml", ARTICLE);
        d.write("site/peek/a.xml", ARTICLE);
    });
    let r = srv.get("/own/a.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "own alpha, module beta");
    refused(&mut srv, "/peek/a.xml", "secret.xml is outside");
}

/// libxml2 resolves an XInclude's XPointer with XPath in a context of
/// its own, with no bound on its work: a pointer that needs XPath is
/// refused before it runs (in the document, as `xi:xpointer`, in an
/// `href` fragment, in a document an include loads), and an ID or
/// `element()` still works.
#[test]
fn xinclude_pointers_that_need_xpath_are_refused_before_they_run() {
    // Cubic in 3,000 elements: hours of XPath.
    let cubic = "xpointer(//i[count(//i[count(//i) &gt; 0]) &gt; 0])";
    let wide = "<i/>".repeat(3000);
    let xi = r#"xmlns:xi="http://www.w3.org/2001/XInclude""#;
    let local = format!(r#"<r {xi}><xi:include xpointer="{cubic}"/>{wide}</r>"#);
    // libxml2 reads `xi:xpointer` as `xpointer`.
    let prefixed = format!(r#"<r {xi}><xi:include xi:xpointer="{cubic}"/>{wide}</r>"#);
    let fragment = format!(r#"<r {xi}><xi:include href="wide.xml#{cubic}"/></r>"#);
    let nested = format!(r#"<r {xi}><xi:include href="nested.xml"/></r>"#);
    let inner = format!(r#"<n {xi}><xi:include xpointer="{cubic}"/>{wide}</n>"#);
    let by_id = format!(
        r#"<r {xi}><xi:include href="parts.xml" xpointer="two"/><xi:include href="parts.xml" xpointer="element(/1/1)"/></r>"#
    );
    let parts = r#"<parts><p>One</p><p xml:id="two">Two</p></parts>"#;
    let mut srv = Axkit::start_single_with(&conf("", ""), |d| {
        write_files(d, &site());
        d.write("site/xp/local.xml", &local);
        d.write("site/xp/prefixed.xml", &prefixed);
        d.write("site/xp/fragment.xml", &fragment);
        d.write("site/xp/wide.xml", format!("<w>{wide}</w>"));
        d.write("site/xp/nested.xml", &inner);
        d.write("site/xp/outer.xml", &nested);
        d.write("site/xp/by-id.xml", &by_id);
        d.write("site/xp/parts.xml", parts);
    });
    for path in [
        "/xp/local.xml",
        "/xp/prefixed.xml",
        "/xp/fragment.xml",
        "/xp/outer.xml",
    ] {
        let started = Instant::now();
        refused(
            &mut srv,
            path,
            "refused: only an ID or element() is followed",
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: answered after {:?}",
            started.elapsed()
        );
    }
    let r = srv.get("/xp/by-id.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    let (two, one) = (r.text().find(">Two</p>"), r.text().find(">One</p>"));
    assert!(two.zip(one).is_some_and(|(t, o)| t < o), "{}", r.text());
}

/// libxml2 copies what an XInclude names already expanded, and cannot be
/// stopped half-way: a page that includes a file 10 times, which includes
/// the next 10 times, 9 deep, is 10^8 copies from small files, gigabytes
/// in the worker before `XSLTTimeLimit` could act. It is refused before
/// a copy is made (500, the log naming the file and the limit) with the
/// worker's memory flat, and a page of 200 includes still works.
#[test]
fn xincludes_that_multiply_are_refused_before_they_expand() {
    let xi = r#"xmlns:xi="http://www.w3.org/2001/XInclude""#;
    let mut srv = Axkit::start_single_with(&conf("", ""), |d| {
        write_files(d, &site());
        for level in 1..=9 {
            let body = if level == 9 {
                "<leaf>some text</leaf>".to_string()
            } else {
                format!(r#"<xi:include href="n{}.xml"/>"#, level + 1).repeat(10)
            };
            d.write(
                &format!("site/xi/n{level}.xml"),
                format!("<n {xi}>{body}</n>"),
            );
        }
        d.write(
            "site/xi/top.xml",
            format!(r#"<r {xi}><xi:include href="n1.xml"/></r>"#),
        );
        d.write("site/xi/part.xml", "<part>para</part>");
        d.write(
            "site/xi/many.xml",
            format!(
                "<r {xi}>{}</r>",
                r#"<xi:include href="part.xml"/>"#.repeat(200)
            ),
        );
    });
    let pid = srv.pid();
    let before = status_kib(pid, "VmRSS");
    let limit = before + 128 * 1024;
    let mut s = srv.connect();
    s.write_all(b"GET /xi/top.xml HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    s.set_nonblocking(true).unwrap();
    let mut rss = before;
    let answered = wait_until(Duration::from_secs(10), || {
        rss = rss.max(status_kib(pid, "VmRSS"));
        rss > limit || s.peek(&mut [0u8]).is_ok()
    });
    assert!(rss <= limit, "the worker grew from {before} to {rss} KiB");
    assert!(answered, "no answer within 10 s");
    s.set_nonblocking(false).unwrap();
    let (bytes, _) = read_to_end_within(&mut s, Duration::from_secs(10));
    let r = parse_response(&bytes).expect("a response");
    assert_eq!(r.status, 500, "{}", r.text());
    srv.wait_stderr_line(
        &[
            "/xi/top.xml:1: XInclude of '",
            "/xi/n1.xml': XIncludes expand past the size limit of 268435456 bytes",
        ],
        Duration::from_secs(5),
    );
    assert!(status_kib(pid, "VmHWM") <= limit, "the worker's peak grew");

    let r = srv.get("/xi/many.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().matches("<part>para</part>").count(), 200);
}

/// An XInclude loop (a file that includes the page including it) is a
/// fatal error of XInclude's, refused before libxml2 copies anything: it
/// was served, and the expansion measure, counting the way back as
/// nothing, kept that count for the file's every other use, which
/// libxml2 expands in full (so a chain of them multiplied unmeasured).
#[test]
fn xinclude_loops_are_refused() {
    let xi = r#"xmlns:xi="http://www.w3.org/2001/XInclude""#;
    let mut srv = Axkit::start_single_with(&conf("", ""), |d| {
        write_files(d, &site());
        d.write(
            "site/xi/a.xml",
            format!(r#"<a {xi}><xi:include href="b.xml"/></a>"#),
        );
        d.write(
            "site/xi/b.xml",
            format!(r#"<b {xi}><xi:include href="a.xml"/></b>"#),
        );
        d.write(
            "site/xi/loop.xml",
            format!(r#"<r {xi}><xi:include href="a.xml"/><xi:include href="b.xml"/></r>"#),
        );
    });
    refused(&mut srv, "/xi/loop.xml", "/xi/a.xml' includes itself");
}

#[test]
fn broken_documents_are_500_with_file_and_line_and_a_page_under_stack_trace() {
    let broken = "<?xml version=\"1.0\"?>\n<article>\n<title>x</titel>\n</article>\n";
    let mut files = site();
    files.push(("site/broken.xml", broken));
    let mut srv = start(&conf("", CHAIN), &files);
    let r = srv.get("/broken.xml");
    assert_eq!(r.status, 500);
    assert!(
        !r.text().contains("titel"),
        "the error is shown without StackTrace"
    );
    let log = srv.wait_stderr("broken.xml:3", Duration::from_secs(5));
    assert!(log.contains("plugin xslt"), "{log}");
    assert_eq!(srv.get("/a.xml").status, 200);

    let mut srv = start(&conf("StackTrace On", CHAIN), &files);
    let r = srv.get("/broken.xml");
    assert_eq!(r.status, 500);
    let page = r.text();
    assert!(page.contains("broken.xml:3"), "{page}");
    assert!(page.contains("titel"), "{page}");
    assert!(!page.contains("</titel>"), "not escaped: {page}");
    srv.wait_stderr("broken.xml:3", Duration::from_secs(5));

    // A stylesheet broken after the start: 500 with its file and line.
    srv.dir.write("site/html.xsl", "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\n<xsl:template match=\"/\">\n<xsl:value-of select=\"(\"/>\n</xsl:template>\n</xsl:stylesheet>\n");
    let failed = wait_until(Duration::from_secs(10), || srv.get("/a.xml").status == 500);
    assert!(failed, "the broken stylesheet was never used");
    srv.wait_stderr("html.xsl:3", Duration::from_secs(5));
}

#[test]
fn check_compiles_every_stylesheet_the_config_names() {
    let bad = "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\n\n<xsl:template match=\"/\"><xsl:value-of select=\"(\"/></xsl:template>\n</xsl:stylesheet>\n";
    let run = |body: &str| {
        check_with(&conf("", body), &[], |d| {
            write_files(d, &site());
            d.write("site/bad.xsl", bad);
        })
    };
    let (ok, text) = run(CHAIN);
    assert!(ok, "{text}");
    let (ok, text) = run("    <Style broken>\n        XSLTStyle bad.xsl\n    </Style>");
    assert!(!ok, "{text}");
    assert!(text.contains("bad.xsl:3"), "{text}");
    let (ok, text) = run("    XSLTStyle missing.xsl");
    assert!(!ok, "{text}");
    assert!(text.contains("missing.xsl"), "{text}");
    // A stylesheet named by an absolute path outside the DocumentRoot
    // reads its includes beneath its own directory, never above it.
    let climbing = "<xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\n<xsl:include href=\"../secret.xsl\"/>\n</xsl:stylesheet>\n";
    let (ok, text) = check_with(
        &conf("", "    XSLTStyle {dir}/styles/climb.xsl"),
        &[],
        |d| {
            write_files(d, &site());
            d.write("styles/climb.xsl", climbing);
            d.write("secret.xsl", TO_PAGE);
        },
    );
    assert!(!ok, "{text}");
    assert!(text.contains("secret.xsl is outside"), "{text}");
}
