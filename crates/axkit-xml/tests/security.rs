//! What an attacker's document or stylesheet may not do through the
//! engine: external entities (file and network), entity expansion (billion
//! laughs, quadratic blowup), XIncludes nested in XIncludes that multiply,
//! `document()`/xsl:include/XInclude outside the root, through a symlink or
//! over the network, oversized inputs, writing files; and that every
//! refusal or error is an `XmlError` naming the file and line.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;

use axkit_xml::{Document, Policy, Stylesheet, XmlError};
use common::TempDir;

const XSL: &str = r#"xmlns:xsl="http://www.w3.org/1999/XSL/Transform""#;

/// A root `www/` inside a scratch directory, with `outside.xml` next to it.
fn site() -> (TempDir, Policy) {
    let dir = TempDir::new("xml-security");
    dir.write("outside.xml", "<secret>outside the root</secret>\n");
    dir.write("www/inside.xml", "<ok>inside</ok>\n");
    let policy = support::policy(&dir.path().join("www"));
    (dir, policy)
}

fn www(dir: &TempDir, rel: &str) -> String {
    dir.path()
        .join("www")
        .join(rel)
        .to_str()
        .unwrap()
        .to_string()
}

fn parse(text: &str, url: &str, policy: &Policy) -> Result<Document, XmlError> {
    Document::parse(text.as_bytes(), url, policy)
}

/// Compile `body` (inside xsl:stylesheet) as www/style.xsl and apply it to
/// www/inside.xml.
fn transform(dir: &TempDir, policy: &Policy, body: &str) -> Result<Vec<u8>, XmlError> {
    let path = dir.write(
        "www/style.xsl",
        format!("<xsl:stylesheet version=\"1.0\" {XSL}>\n{body}\n</xsl:stylesheet>\n"),
    );
    let style = Stylesheet::compile(&path, policy)?;
    let doc_path = www(dir, "inside.xml");
    let bytes = std::fs::read(&doc_path).unwrap();
    let doc = Document::parse(&bytes, &doc_path, policy)?;
    let result = style.apply(&doc, &[], policy)?;
    Ok(style.output(&result)?.body)
}

fn expect_err<T>(r: Result<T, XmlError>, what: &str) -> XmlError {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e,
    }
}

#[test]
fn xxe_file_entity_is_refused() {
    let (dir, policy) = site();
    let url = www(&dir, "xxe.xml");
    let doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE r [\n<!ENTITY x SYSTEM \"file:///etc/passwd\">\n]>\n<r>&x;</r>\n";
    let e = expect_err(parse(doc, &url, &policy), "XXE file");
    assert!(e.message.contains("external entity 'x'"), "{e}");
    assert_eq!(e.file.as_deref(), Some(url.as_str()), "{e}");
    assert_eq!(e.line, 3, "{e}");
    // The same with a relative SYSTEM id, which would resolve inside the root.
    let doc = "<!DOCTYPE r [<!ENTITY x SYSTEM \"inside.xml\">]><r>&x;</r>";
    expect_err(parse(doc, &url, &policy), "XXE relative");
}

#[test]
fn xxe_network_entities_are_refused() {
    let (dir, policy) = site();
    let url = www(&dir, "xxe.xml");
    let general = "<!DOCTYPE r [<!ENTITY x SYSTEM \"http://127.0.0.1:9/x\">]><r>&x;</r>";
    let e = expect_err(parse(general, &url, &policy), "XXE http");
    assert!(e.message.contains("http://127.0.0.1:9/x"), "{e}");
    let parameter = "<!DOCTYPE r [<!ENTITY % p SYSTEM \"http://127.0.0.1:9/p.dtd\"> %p;]><r/>";
    expect_err(parse(parameter, &url, &policy), "XXE parameter entity");
    // An external DTD is not loaded at all (neither from the network nor
    // from the root): the document parses without it.
    let dtd = "<!DOCTYPE r SYSTEM \"http://127.0.0.1:9/r.dtd\"><r>ok</r>";
    parse(dtd, &url, &policy).expect("external DTD ignored");
}

#[test]
fn billion_laughs_is_refused() {
    let (dir, policy) = site();
    let mut doc =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let prev = if i == 1 {
            "lol".to_string()
        } else {
            format!("lol{}", i - 1)
        };
        doc.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    doc.push_str("]>\n<lolz>&lol9;</lolz>\n");
    let e = expect_err(
        parse(&doc, &www(&dir, "lol.xml"), &policy),
        "billion laughs",
    );
    assert!(
        e.message.contains("lol1") && e.message.contains("refused"),
        "{e}"
    );
    assert_eq!(e.line, 4, "{e}");
}

#[test]
fn quadratic_blowup_is_refused() {
    let (dir, policy) = site();
    // 50 KB of entity text used 15,000 times: 750 MB if expanded, from a
    // document of 200 KB (under the 1 MiB limit).
    let doc = format!(
        "<!DOCTYPE r [<!ENTITY a \"{}\">]><r>{}</r>",
        "x".repeat(50_000),
        "&a;".repeat(15_000)
    );
    assert!(doc.len() < policy.max_size);
    let e = expect_err(
        parse(&doc, &www(&dir, "quad.xml"), &policy),
        "quadratic blowup",
    );
    assert!(e.message.contains("size limit"), "{e}");
    // The same through attribute values.
    let attrs = format!(
        "<!DOCTYPE r [<!ENTITY a \"{}\">]><r>{}</r>",
        "x".repeat(50_000),
        "<e a=\"&a;&a;&a;\"/>".repeat(5_000)
    );
    let e = expect_err(
        parse(&attrs, &www(&dir, "quad.xml"), &policy),
        "blowup in attributes",
    );
    assert!(e.message.contains("size limit"), "{e}");
    // A few uses are fine.
    let small = format!(
        "<!DOCTYPE r [<!ENTITY a \"{}\">]><r>&a;&a;</r>",
        "x".repeat(1000)
    );
    parse(&small, &www(&dir, "small.xml"), &policy).expect("small expansion");
}

#[test]
fn document_outside_the_root_is_refused() {
    let (dir, policy) = site();
    for href in ["/etc/passwd", "../outside.xml", "file:///etc/passwd"] {
        let body = format!(
            "<xsl:template match=\"/\"><r><xsl:copy-of select=\"document('{href}')\"/></r></xsl:template>"
        );
        let e = expect_err(transform(&dir, &policy, &body), href);
        assert!(e.message.contains("refused"), "{href}: {e}");
    }
    // Inside the root it works, and a missing file is an empty node-set
    // (as in xsltproc), not a refusal.
    let body = "<xsl:template match=\"/\"><r n=\"{count(document('nothing.xml'))}\"><xsl:copy-of select=\"document('inside.xml')\"/></r></xsl:template>";
    let out = transform(&dir, &policy, body).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "<?xml version=\"1.0\"?>\n<r n=\"0\"><ok>inside</ok></r>\n"
    );
}

#[test]
fn network_hrefs_are_refused() {
    let (dir, policy) = site();
    let body = "<xsl:template match=\"/\"><r><xsl:copy-of select=\"document('http://127.0.0.1:9/x.xml')\"/></r></xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "document(http)");
    assert!(e.message.contains("http://127.0.0.1:9/x.xml"), "{e}");
    let body = "<xsl:include href=\"http://127.0.0.1:9/x.xsl\"/><xsl:template match=\"/\"/>";
    expect_err(transform(&dir, &policy, body), "xsl:include http");
    let body = "<xsl:import href=\"ftp://127.0.0.1:9/x.xsl\"/><xsl:template match=\"/\"/>";
    expect_err(transform(&dir, &policy, body), "xsl:import ftp");
    let url = www(&dir, "xi.xml");
    let doc = "<r xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"http://127.0.0.1:9/x.xml\"/></r>";
    let mut doc = parse(doc, &url, &policy).unwrap();
    let e = expect_err(doc.xinclude(&policy), "XInclude http");
    assert!(e.message.contains("no network"), "{e}");
}

#[test]
fn includes_outside_the_root_are_refused() {
    let (dir, policy) = site();
    dir.write(
        "outside.xsl",
        format!(
            "<xsl:stylesheet version=\"1.0\" {XSL}><xsl:template match=\"/\"/></xsl:stylesheet>"
        ),
    );
    let body = "<xsl:include href=\"../outside.xsl\"/>";
    let e = expect_err(transform(&dir, &policy, body), "xsl:include ..");
    assert!(e.message.contains("refused"), "{e}");
    let url = www(&dir, "xi.xml");
    for href in ["../outside.xml", "/etc/passwd"] {
        let text = format!(
            "<r xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"{href}\" parse=\"text\"/></r>"
        );
        let mut doc = parse(&text, &url, &policy).unwrap();
        let e = expect_err(doc.xinclude(&policy), href);
        assert!(e.message.contains("refused"), "{href}: {e}");
    }
}

#[test]
fn a_symlink_leading_out_of_the_root_is_refused() {
    let (dir, policy) = site();
    std::os::unix::fs::symlink(
        dir.path().join("outside.xml"),
        dir.path().join("www/link.xml"),
    )
    .unwrap();
    let body = "<xsl:template match=\"/\"><r><xsl:copy-of select=\"document('link.xml')\"/></r></xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "symlink");
    assert!(e.message.contains("refused"), "{e}");
    let url = www(&dir, "xi.xml");
    let text =
        "<r xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"link.xml\"/></r>";
    let mut doc = parse(text, &url, &policy).unwrap();
    expect_err(doc.xinclude(&policy), "XInclude through a symlink");
}

#[test]
fn sizes_over_the_limit_are_refused() {
    let (dir, _) = site();
    let policy = support::policy_sized(&dir.path().join("www"), 1000);
    let big = format!("<r>{}</r>", "x".repeat(2000));
    let e = expect_err(parse(&big, &www(&dir, "big.xml"), &policy), "big document");
    assert!(e.message.contains("size limit"), "{e}");
    dir.write("www/big.xml", &big);
    let body = "<xsl:template match=\"/\"><r><xsl:copy-of select=\"document('big.xml')\"/></r></xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "big document()");
    assert!(e.message.contains("size limit"), "{e}");
}

#[test]
fn stylesheets_write_no_files() {
    let (dir, policy) = site();
    let target = dir.path().join("www/written.xml");
    let path = dir.write(
        "www/writer.xsl",
        format!(
            "<xsl:stylesheet version=\"1.0\" {XSL} xmlns:exsl=\"http://exslt.org/common\" \
             extension-element-prefixes=\"exsl\"><xsl:template match=\"/\">\
             <exsl:document href=\"{}\"><x/></exsl:document><r/></xsl:template></xsl:stylesheet>",
            target.display()
        ),
    );
    let style = Stylesheet::compile(&path, &policy).unwrap();
    let doc = parse("<a/>", &www(&dir, "a.xml"), &policy).unwrap();
    let e = expect_err(style.apply(&doc, &[], &policy), "exsl:document");
    assert!(!target.exists(), "{e}");
    assert!(e.message.contains("denied"), "{e}");
}

#[test]
fn errors_carry_file_and_line() {
    let (dir, policy) = site();
    // Not well-formed, line 3.
    let url = www(&dir, "bad.xml");
    let e = expect_err(parse("<a>\n<b>\n</a>\n", &url, &policy), "mismatched tags");
    assert_eq!((e.file.as_deref(), e.line), (Some(url.as_str()), 3), "{e}");
    assert!(e.to_string().starts_with(&format!("{url}:3: ")), "{e}");
    assert!(!e.message.ends_with('\n'));
    // A bad XPath in a stylesheet: a compile error at its line.
    let body = "<xsl:template match=\"/\">\n<xsl:value-of select=\"count(\"/>\n</xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "bad XPath");
    assert_eq!(
        (e.file.as_deref(), e.line),
        (Some(www(&dir, "style.xsl").as_str()), 3),
        "{e}"
    );
    // An undefined variable fails at run time, at its line.
    let body =
        "<xsl:template match=\"/\">\n<r>\n<xsl:value-of select=\"$nope\"/>\n</r></xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "undefined variable");
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("nope"), "{e}");
    // xsl:message terminate="yes" is an error carrying the message, and
    // no partial result.
    let body = "<xsl:template match=\"/\"><r>partial<xsl:message terminate=\"yes\">stop here</xsl:message></r></xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "terminate");
    assert!(e.message.contains("stop here"), "{e}");
    // A stylesheet that is not well-formed names itself.
    let path = dir.write("www/broken.xsl", "<xsl:stylesheet version=\"1.0\"\n");
    let e = expect_err(Stylesheet::compile(&path, &policy), "broken stylesheet");
    assert_eq!(e.file.as_deref(), Some(path.to_str().unwrap()), "{e}");
    // An error in an imported stylesheet names that one.
    dir.write(
        "www/sub.xsl",
        format!("<xsl:stylesheet version=\"1.0\" {XSL}>\n\n<xsl:template match=\"a\"><xsl:value-of select=\"1 +* 2\"/></xsl:template>\n</xsl:stylesheet>\n"),
    );
    let body = "<xsl:import href=\"sub.xsl\"/><xsl:template match=\"/\"/>";
    let e = expect_err(transform(&dir, &policy, body), "import with a bad XPath");
    assert_eq!(
        (e.file.as_deref(), e.line),
        (Some(www(&dir, "sub.xsl").as_str()), 3),
        "{e}"
    );
    assert!(e.message.contains("1 +* 2"), "{e}");
    // Endless recursion is an error (libxslt's depth limit), and its
    // message leaves out the stack libxslt lists.
    let body = "<xsl:template name=\"r\"><x><xsl:call-template name=\"r\"/></x></xsl:template>\n<xsl:template match=\"/\"><xsl:call-template name=\"r\"/></xsl:template>";
    let e = expect_err(transform(&dir, &policy, body), "recursion");
    assert!(e.message.contains("infinite template recursion"), "{e}");
    assert!(!e.message.contains("#1 name r"), "{e}");
    // A missing stylesheet.
    let e = expect_err(
        Stylesheet::compile(Path::new("/nonexistent/s.xsl"), &policy),
        "missing",
    );
    assert!(e.message.contains("/nonexistent/s.xsl"), "{e}");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let (dir, policy) = site();
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let e = expect_err(
        parse(&deep, &www(&dir, "deep.xml"), &policy),
        "deep nesting",
    );
    assert!(e.message.contains("depth"), "{e}");
}

#[test]
fn a_flood_of_errors_stays_bounded() {
    let (dir, policy) = site();
    // 20,000 non-fatal namespace errors, then a fatal one.
    let doc = format!("<r>{}", "<p:x/>".repeat(20_000));
    let e = expect_err(parse(&doc, &www(&dir, "flood.xml"), &policy), "flood");
    assert!(
        e.message.len() <= 2100,
        "{} bytes of message",
        e.message.len()
    );
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn a_failing_call_leaves_the_next_one_clean() {
    let (dir, policy) = site();
    let url = www(&dir, "bad.xml");
    expect_err(parse("<a>", &url, &policy), "unclosed");
    let doc = parse("<a/>", &url, &policy).unwrap();
    assert_eq!(doc.root(), Some((String::new(), "a".to_string())));
    let e = expect_err(parse("<x>\n</y>", &url, &policy), "mismatch");
    assert!(
        !e.message.contains("Premature end"),
        "errors of an earlier call leaked: {e}"
    );
}

/// libxml2 copies what an include names already expanded: a file that
/// includes the next 10 times, 6 deep, is 10^5 copies from 6 small files
/// (so is an element by its ID that includes the next file's by its ID 10
/// times, a text file under nested includes, includes whose `href` is
/// written `xi:href` and whose base must be escaped, as libxml2 reads
/// them). Each is refused before a
/// copy is made, naming the file and the limit. Elements of the document
/// itself that include each other are counted expanded too: libxml2 2.9
/// copies them unexpanded, later versions expand them. A page of 200
/// includes still expands.
#[test]
fn xincludes_that_multiply_are_refused_before_they_expand() {
    let (dir, policy) = site();
    let xi = r#"xmlns:xi="http://www.w3.org/2001/XInclude""#;
    let ten = |include: &str| include.repeat(10);
    // Files NAME1..NAME6, each but the last 10 `include`s of the next
    // (`{}` its number) inside `<x xml:id="x">`.
    let chain = |name: &str, include: &str| {
        for level in 1..=6 {
            let body = match level {
                6 => "<leaf>some text</leaf>".to_string(),
                _ => ten(&include.replace("{}", &(level + 1).to_string())),
            };
            dir.write(
                &format!("www/{name}{level}.xml"),
                format!(r#"<p {xi}><x xml:id="x">{body}</x><junk/></p>"#),
            );
        }
    };
    chain("n", r#"<xi:include href="n{}.xml"/>"#);
    // libxml2 reads `xi:href` as `href`.
    chain("q", r#"<xi:include xi:href="q{}.xml"/>"#);
    chain("p", r#"<xi:include href="p{}.xml" xpointer="x"/>"#);
    // A base that is no URI until escaped, as libxml2 escapes it.
    chain("sub dir/s", r#"<xi:include href="s{}.xml"/>"#);
    let mut local = format!(r#"<r {xi}><e xml:id="e0">some text</e>"#);
    for level in 1..=5 {
        let includes = ten(&format!(r#"<xi:include xpointer="e{}"/>"#, level - 1));
        local.push_str(&format!(r#"<e xml:id="e{level}">{includes}</e>"#));
    }
    local.push_str(r#"<xi:include xpointer="e5"/></r>"#);
    dir.write("www/local.xml", &local);
    dir.write("www/big.txt", "x".repeat(4096));
    dir.write(
        "www/t2.xml",
        format!(
            "<t {xi}>{}</t>",
            ten(r#"<xi:include href="big.txt" parse="text"/>"#)
        ),
    );
    dir.write(
        "www/t1.xml",
        format!("<t {xi}>{}</t>", ten(r#"<xi:include href="t2.xml"/>"#)),
    );
    for (name, text) in [
        (
            "nested.xml",
            format!(r#"<r {xi}><xi:include href="n1.xml"/></r>"#),
        ),
        (
            "pointers.xml",
            format!(r#"<r {xi}><xi:include href="p1.xml" xpointer="x"/></r>"#),
        ),
        (
            "prefixed.xml",
            format!(r#"<r {xi}><xi:include xi:href="q1.xml"/></r>"#),
        ),
        (
            "sub dir/top.xml",
            format!(r#"<r {xi}><xi:include href="s1.xml"/></r>"#),
        ),
        ("local.xml", local.clone()),
        (
            "text.xml",
            format!("<r {xi}>{}</r>", ten(r#"<xi:include href="t1.xml"/>"#)),
        ),
    ] {
        let url = www(&dir, name);
        let mut doc = parse(&text, &url, &policy).unwrap();
        let started = std::time::Instant::now();
        let e = expect_err(doc.xinclude(&policy), name);
        assert!(
            e.message
                .contains("XIncludes expand past the size limit of 1048576 bytes"),
            "{name}: {e}"
        );
        // libxml2 names a document by its URL (escaped).
        assert_eq!(e.file, Some(url.replace(' ', "%20")), "{name}: {e}");
        assert!(
            started.elapsed().as_secs() < 5,
            "{name}: {:?}",
            started.elapsed()
        );
    }

    // 200 includes of one file, and 200 of an element by its ID.
    dir.write(
        "www/part.xml",
        r#"<part><p xml:id="p">para</p><q>other</q></part>"#,
    );
    let many = format!(
        "<r {xi}>{}{}</r>",
        r#"<xi:include href="part.xml"/>"#.repeat(200),
        r#"<xi:include href="part.xml" xpointer="p"/>"#.repeat(200)
    );
    let mut doc = parse(&many, &www(&dir, "many.xml"), &policy).unwrap();
    doc.xinclude(&policy).unwrap();
    let out = String::from_utf8(doc.to_xml()).unwrap();
    assert_eq!(out.matches("<q>other</q>").count(), 200, "{out}");
    assert_eq!(out.matches(">para</p>").count(), 400, "{out}");
}

/// An XInclude loop is a fatal error (XInclude 1.0 §4.2.7), refused
/// before a copy is made. The measure once counted the loop's way back as
/// nothing and stored what it measured so: a file that includes the page
/// including it (`b` in `a`, which includes `b`) counted small at every
/// later use, which libxml2 expands in full (`b`, then `a` and its 200
/// KB) — 1,000 of them behind a chain of 10 × 10 × 10 were 200 MB past a
/// 1 MiB limit. So is nesting deeper than libxml2 follows.
#[test]
fn xinclude_loops_and_nesting_past_its_depth_are_refused() {
    let (dir, policy) = site();
    let xi = r#"xmlns:xi="http://www.w3.org/2001/XInclude""#;
    let include = |href: &str| format!(r#"<xi:include href="{href}"/>"#);
    dir.write("www/leaf.xml", format!("<l>{}</l>", "y".repeat(20_000)));
    dir.write(
        "www/c.xml",
        format!("<c {xi}>{}</c>", include("leaf.xml").repeat(10)),
    );
    dir.write(
        "www/a.xml",
        format!("<a {xi}>{}{}</a>", include("b.xml"), include("c.xml")),
    );
    dir.write("www/b.xml", format!("<b {xi}>{}</b>", include("a.xml")));
    dir.write(
        "www/d2.xml",
        format!("<d {xi}>{}</d>", include("b.xml").repeat(10)),
    );
    dir.write(
        "www/d1.xml",
        format!("<d {xi}>{}</d>", include("d2.xml").repeat(10)),
    );
    for level in 1..=45 {
        dir.write(
            &format!("www/deep{level}.xml"),
            format!("<d {xi}>{}</d>", include(&format!("deep{}.xml", level + 1))),
        );
    }
    dir.write("www/deep46.xml", "<leaf/>");
    for (name, text, why) in [
        (
            "loop.xml",
            format!(
                "<r {xi}>{}{}</r>",
                include("a.xml"),
                include("d1.xml").repeat(10)
            ),
            "/www/a.xml': '",
        ),
        (
            "deep.xml",
            format!("<r {xi}>{}</r>", include("deep1.xml")),
            "nest more than 40 deep",
        ),
    ] {
        let url = www(&dir, name);
        let mut doc = parse(&text, &url, &policy).unwrap();
        let e = expect_err(doc.xinclude(&policy), name);
        assert!(e.message.contains(why), "{name}: {e}");
        assert_eq!(e.file.as_deref(), Some(url.as_str()), "{name}: {e}");
    }
}
