//! The engine's API as the pipeline uses it: what a document says about
//! itself (root, xml-stylesheet PIs), serialising a tree, string
//! parameters of any text, and a chain of two stylesheets, the first's
//! result the second's source.

#[path = "../../../tests/common/mod.rs"]
mod common;
mod support;

use axkit_xml::{Document, Stylesheet};
use common::TempDir;

const XSL: &str = r#"xmlns:xsl="http://www.w3.org/1999/XSL/Transform""#;

#[test]
fn a_document_says_its_root_and_stylesheet_pis() {
    let dir = TempDir::new("xml-api");
    let policy = support::policy(dir.path());
    let text = r#"<?xml version="1.0"?>
<?xml-stylesheet href="a.xsl" type="text/xsl"?>
<?xml-stylesheet href="print.xsl" type="text/xsl" media="print" title="Print" alternate="yes"?>
<?other-pi x="y"?>
<!-- comment -->
<a:page xmlns:a="urn:a"><?xml-stylesheet href="inside.xsl"?></a:page>
"#;
    let doc = Document::parse(text.as_bytes(), "/x/page.xml", &policy).unwrap();
    assert_eq!(doc.root(), Some(("urn:a".to_string(), "page".to_string())));
    let pis = doc.stylesheet_pis();
    assert_eq!(pis.len(), 2, "{pis:?}");
    assert_eq!(pis[0].href, "a.xsl");
    assert_eq!(pis[0].kind.as_deref(), Some("text/xsl"));
    assert!(!pis[0].alternate);
    assert_eq!(pis[1].media.as_deref(), Some("print"));
    assert_eq!(pis[1].title.as_deref(), Some("Print"));
    assert!(pis[1].alternate);
    let plain = Document::parse(b"<r>\xc3\xa9</r>", "/x/r.xml", &policy).unwrap();
    assert_eq!(plain.root(), Some((String::new(), "r".to_string())));
    assert!(plain.stylesheet_pis().is_empty());
    assert_eq!(
        plain.to_xml(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<r>é</r>\n".as_bytes()
    );
}

#[test]
fn parameters_are_strings_whatever_they_hold() {
    let dir = TempDir::new("xml-api");
    let policy = support::policy(dir.path());
    let path = dir.write(
        "p.xsl",
        format!(
            "<xsl:stylesheet version=\"1.0\" {XSL}><xsl:output method=\"text\"/><xsl:param name=\"p\"/>\
             <xsl:template match=\"/\">[<xsl:value-of select=\"$p\"/>]</xsl:template></xsl:stylesheet>"
        ),
    );
    let style = Stylesheet::compile(&path, &policy).unwrap();
    let doc = Document::parse(b"<a/>", "/x/a.xml", &policy).unwrap();
    for value in ["it's \"both\"", "count(//*)", "", "<&>", "ü ☃"] {
        let result = style.apply(&doc, &[("p", value)], &policy).unwrap();
        assert_eq!(
            style.output(&result).unwrap().body,
            format!("[{value}]").as_bytes()
        );
    }
    assert!(style.apply(&doc, &[("p", "nul\0inside")], &policy).is_err());
}

#[test]
fn a_chain_feeds_one_result_to_the_next_stylesheet() {
    let dir = TempDir::new("xml-api");
    let policy = support::policy(dir.path());
    let first = dir.write(
        "first.xsl",
        format!(
            "<xsl:stylesheet version=\"1.0\" {XSL}><xsl:template match=\"/\">\
             <list><xsl:for-each select=\"//n\"><xsl:sort data-type=\"number\"/><item><xsl:value-of select=\".\"/></item></xsl:for-each></list>\
             </xsl:template></xsl:stylesheet>"
        ),
    );
    let second = dir.write(
        "second.xsl",
        format!(
            "<xsl:stylesheet version=\"1.0\" {XSL}><xsl:output method=\"html\" encoding=\"ISO-8859-1\"/>\
             <xsl:template match=\"/\"><html><body><ol><xsl:for-each select=\"list/item\"><li><xsl:value-of select=\".\"/>é</li></xsl:for-each></ol></body></html></xsl:template>\
             </xsl:stylesheet>"
        ),
    );
    let (first, second) = (
        Stylesheet::compile(&first, &policy).unwrap(),
        Stylesheet::compile(&second, &policy).unwrap(),
    );
    let doc = Document::parse(b"<r><n>3</n><n>1</n><n>2</n></r>", "/x/r.xml", &policy).unwrap();
    let middle = first.apply(&doc, &[], &policy).unwrap();
    assert_eq!(middle.root(), Some((String::new(), "list".to_string())));
    let out = second
        .output(&second.apply(&middle, &[], &policy).unwrap())
        .unwrap();
    assert_eq!(out.media_type, "text/html");
    assert_eq!(out.encoding, "ISO-8859-1");
    let body = out.body;
    assert!(
        body.windows(11).any(|w| w == b"<li>1\xe9</li>"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}
