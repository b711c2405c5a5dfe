//! Lua processors on a DOM through the real binary: a document built with
//! `xml.new`/`append` handed to `xslt` as a tree (byte for byte what
//! `xsltproc` makes of the same document), processors after `xslt` that
//! add and remove elements with `r:dom()` and hand the tree on to each
//! other (the last one's tree sent as XML), hostile request text escaped, malformed XML from `xml.parse`
//! (500, the error in the log, the worker alive), handles used after
//! their node was removed or their document handed on (a Lua error, not
//! a crash), an external entity refused, a tree grown past its
//! bound, and one nested past the parser's depth (a Lua error, where
//! libxslt's recursion through it overflowed the worker's stack).

mod common;
#[path = "common/services.rs"]
mod services;
#[path = "common/xml.rs"]
mod xml;

use std::time::Duration;

use xml::*;

/// Builds an article from the query; under /raw hands it on as text (a
/// Location where `xslt` takes no document), else as the DOM itself.
const BUILDER: &str = r#"
function hook_xmlresponse(r)
  local doc = xml.new("article")
  local root = doc:root()
  root:append("title", r:param("q") or "none")
  local p = root:append("para", "One")
  p:set_attr("class", r:param("q") or "")
  root:append("para"):set_text("Two")
  if r:path():find("^/raw") then
    r:set_document(doc:to_string())
  else
    r:set_document(doc)
  end
  return OK
end
"#;

#[test]
fn a_document_built_in_lua_goes_through_xslt_as_xsltproc_would() {
    let mut files = site_with(&[]);
    files.push(("plugins/builder.lua", BUILDER));
    let body = format!(
        "{CHAIN}\n    <Location /built>\n        Plugin builder\n    </Location>\n\
         \x20   <Location /raw>\n        XMLMatch root nothing\n        Plugin builder\n    </Location>"
    );
    let srv = start(&conf("", &body), &files);
    let q = "a%3Cb%3E%26amp%3B%5D%5D%3E%22";
    let raw = srv.get(&format!("/raw?q={q}"));
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(
        raw.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<article><title>a&lt;b&gt;&amp;amp;]]&gt;\"</title>\
         <para class=\"a&lt;b&gt;&amp;amp;]]&gt;&quot;\">One</para><para>Two</para></article>\n",
        "hostile text not escaped"
    );
    let r = srv.get(&format!("/built?q={q}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("<h1>a&lt;b&gt;&amp;amp;]]&gt;\"</h1>"),
        "{}",
        r.text()
    );
    let site = srv.dir.path().join("site");
    std::fs::write(site.join("built.xml"), &raw.body).unwrap();
    let Some(html) = xsltproc_chain(&site, "built.xml") else {
        return;
    };
    assert_eq!(r.body, html, "differs from xsltproc's output");
}

#[test]
fn processors_after_xslt_edit_and_hand_on_the_tree() {
    let add = r#"
function hook_xmlresponse(r)
  local dom = r:dom()
  if not dom then return DECLINED end
  dom:root():append("footer", "added")
  r:set_document(dom)
  return OK
end
"#;
    // Reads the tree the script before left, without handing it on: it
    // goes on as it is.
    let peek = r#"
function hook_xmlresponse(r)
  local dom = r:dom()
  assert(rawequal(dom, r:dom()), "r:dom() gave two objects for one tree")
  r:set_header("X-Root", dom:root():name() .. " " .. #dom:root():children())
  return OK
end
"#;
    let del = r#"
function hook_xmlresponse(r)
  local dom = r:dom()
  for _, g in ipairs(dom:find("/page/greeting")) do g:remove() end
  r:set_document(dom:to_string())
  return OK
end
"#;
    let mut files = site_with(&[]);
    files.push(("plugins/add.lua", add));
    files.push(("plugins/peek.lua", peek));
    files.push(("plugins/del.lua", del));
    let body = "    XSLTStyle page.xsl\n    Plugin add\n    Plugin peek\n    Plugin del";
    let srv = start(&conf("", body), &files);
    let r = srv.get("/a.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<page><title>On &amp; off</title>\
         <para>One</para><para>Two &lt;b&gt;</para><footer>added</footer></page>\n"
    );
    assert_eq!(r.header("X-Root"), Some("page 5"));
}

/// A DOM the last processor hands on is serialised by the core.
#[test]
fn a_tree_left_at_the_end_of_the_chain_is_sent_as_xml() {
    let add = r#"
function hook_xmlresponse(r)
  local dom = r:dom()
  dom:root():append("footer", "last")
  r:set_document(dom)
  return OK
end
"#;
    let mut files = site_with(&[]);
    files.push(("plugins/add.lua", add));
    let srv = start(&conf("", "    XSLTStyle page.xsl\n    Plugin add"), &files);
    let r = srv.get("/a.xml");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<page><title>"),
        "{text}"
    );
    assert!(text.ends_with("<footer>last</footer></page>\n"), "{text}");
}

#[test]
fn bad_xml_and_stale_handles_are_lua_errors() {
    let bad = r#"
function hook_xmlresponse(r)
  if r:path() == "/bad" then
    xml.parse("<a>\n<b></a>")
  end
  -- Handles whose node was removed, or whose document was handed on.
  local doc = xml.new("a")
  local b = doc:root():append("b")
  b:remove()
  local _, removed = pcall(b.name, b)
  local root = doc:root()
  r:set_document(doc)
  local _, gone = pcall(root.append, root, "c")
  local _, again = pcall(r.set_document, r, doc)
  -- A tree may not grow without bound (libxml2's memory, not Lua's).
  local big = xml.new("big")
  local chunk = string.rep("x", 1 << 20)
  local _, grown = pcall(function()
    for _ = 1, 100 do big:root():append("p", chunk) end
  end)
  -- Parsed as the pipeline parses: no external entities.
  local _, xxe = pcall(xml.parse,
    '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>')
  local out = xml.new("errors")
  out:root():append("removed", tostring(removed))
  out:root():append("gone", tostring(gone))
  out:root():append("again", tostring(again))
  out:root():append("grown", tostring(grown))
  out:root():append("xxe", tostring(xxe))
  r:set_document(out:to_string())
  return OK
end
"#;
    let mut files = site_with(&[]);
    files.push(("plugins/bad.lua", bad));
    let body =
        "    <Location /lua>\n        XMLMatch root nothing\n        Plugin bad\n    </Location>\n\
                \x20   <Location /bad>\n        Plugin bad\n    </Location>";
    let mut srv = start(&conf("", body), &files);
    let r = srv.get("/bad");
    assert_eq!(r.status, 500, "{}", r.text());
    let line = srv.wait_stderr("xml.parse", Duration::from_secs(5));
    assert!(line.contains("xml.parse:2:"), "no line number: {line}");
    let r = srv.get("/lua");
    assert_eq!(
        r.status,
        200,
        "the worker did not survive: {}",
        srv.stderr()
    );
    let text = r.text();
    assert!(
        text.contains("node:name: the node was removed from its document"),
        "{text}"
    );
    assert!(
        text.contains("node:append: the document was handed on"),
        "{text}"
    );
    assert!(
        text.contains("r:set_document: that DOM was already handed on"),
        "{text}"
    );
    assert!(
        text.contains("node:append: more than 64 MiB added to one document"),
        "{text}"
    );
    assert!(
        text.contains("xml.parse: xml.parse:1: external entity 'x'"),
        "{text}"
    );
    assert!(!text.contains("root:"), "{text}");
}

/// The demo's page built in Lua (`plugins/xml_hello.lua`, as the built-in
/// config serves it) goes through `demo/xml`'s chain like its articles
/// (`xslt` here is the Server's, after the Location's script).
#[test]
fn the_demo_page_built_in_lua_renders_with_the_site_chain() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/demo");
    let body = format!(
        "    DocumentRoot {demo}\n    <Location /xml/hello>\n        Plugin xml_hello\n\
         \x20       XSLTStyle xml/style/article.xsl\n\
         \x20       XSLTStyle xml/style/page.xsl\n    </Location>"
    );
    let plugin = include_str!("../plugins/xml_hello.lua");
    let srv = start(&conf("", &body), &[("plugins/xml_hello.lua", plugin)]);
    let r = srv.get("/xml/hello?name=%3Cscript%3E");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=UTF-8"));
    let page = r.text();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("Hello, &lt;script&gt;</h1>"), "{page}");
    assert!(page.contains("<code>/xml/hello</code>"), "{page}");
}

/// A tree nested deeper than a parsed one may be is refused as it is
/// built: libxslt's built-in templates recurse through it uncounted,
/// and 20,000 levels overflowed the transform thread's stack (the
/// worker died of SIGABRT).
#[test]
fn a_tree_is_built_no_deeper_than_a_parsed_one() {
    let deep = r#"
function hook_xmlresponse(r)
  local doc = xml.new("a")
  local n = doc:root()
  local depth = 1
  local _, err = pcall(function()
    for _ = 1, 20000 do
      n = n:append("a")
      depth = depth + 1
    end
  end)
  local why = tostring(err):match("node:append: [^\n]*") or "no error"
  r:set_header("X-Depth", depth .. " " .. why)
  r:set_document(doc)
  return OK
end
"#;
    let ident = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="text"/>
<xsl:template match="/"><xsl:apply-templates/></xsl:template>
</xsl:stylesheet>
"#;
    let mut files = site_with(&[("site/ident.xsl", ident)]);
    files.push(("plugins/deep.lua", deep));
    let body =
        "    <Location /deep>\n        Plugin deep\n        XSLTStyle ident.xsl\n    </Location>";
    let srv = start(&conf("", body), &files);
    let r = srv.get("/deep");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("X-Depth"),
        Some("256 node:append: elements nested deeper than 256")
    );
}
