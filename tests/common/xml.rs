//! Helpers for the XML pipeline tests (`xml_*.rs`): a one-Server config
//! with the scratch directory's `site/` as DocumentRoot and the `xslt`
//! plugin between `uri_to_file` and `serve_file`, the files of a small
//! site, and `xsltproc` to compare output with.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// A one-Server config: `site/` as DocumentRoot, `plugins/` as PluginDir,
/// `body` inside the `<Server>` after the plugins.
pub fn conf(global: &str, body: &str) -> String {
    format!(
        "Plugin logging/warn\nLogLevel LOGINFO\nPluginDir {{dir}}/plugins\n{global}\n\
         <Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {{dir}}/site\n\
         \x20   Plugin uri_to_file\n    Plugin fast_mime_map\n    Plugin xslt\n    Plugin serve_file\n\
         {body}\n</Server>\n"
    )
}

/// Start one process with `files` (path under the scratch directory,
/// contents) written first.
pub fn start(conf: &str, files: &[(&str, &str)]) -> Axkit {
    Axkit::start_single_with(conf, |d| write_files(d, files))
}

pub fn write_files(d: &TempDir, files: &[(&str, &str)]) {
    std::fs::create_dir_all(d.path().join("plugins")).unwrap();
    std::fs::create_dir_all(d.path().join("site")).unwrap();
    for (path, text) in files {
        d.write(path, text);
    }
}

/// The default chain of the tests: article -> page -> HTML.
pub const CHAIN: &str = "    XSLTStyle page.xsl\n    XSLTStyle html.xsl";

/// The files `CHAIN` needs and an article for it, plus `more`.
pub fn site_with(more: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![
        ("site/a.xml", ARTICLE),
        ("site/page.xsl", TO_PAGE),
        ("site/html.xsl", TO_HTML),
    ];
    files.extend_from_slice(more);
    files
}

/// An article.
pub const ARTICLE: &str = r#"<?xml version="1.0"?>
<article><title>On &amp; off</title><para>One</para><para>Two &lt;b&gt;</para></article>
"#;

/// Article -> page, with a `greeting` parameter.
pub const TO_PAGE: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:param name="greeting" select="'none'"/>
<xsl:template match="/article">
<page><title><xsl:value-of select="title"/></title><greeting><xsl:value-of select="$greeting"/></greeting><xsl:copy-of select="para"/></page>
</xsl:template>
</xsl:stylesheet>
"#;

/// Page -> HTML.
pub const TO_HTML: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="html" encoding="UTF-8"/>
<xsl:template match="/page">
<html><body><h1><xsl:value-of select="title"/></h1><em><xsl:value-of select="greeting"/></em>
<xsl:for-each select="para"><p><xsl:value-of select="."/></p></xsl:for-each></body></html>
</xsl:template>
</xsl:stylesheet>
"#;

/// Article -> RSS.
pub const TO_RSS: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="xml" media-type="application/rss+xml" encoding="UTF-8"/>
<xsl:template match="/article">
<rss version="2.0"><channel><item><title><xsl:value-of select="title"/></title></item></channel></rss>
</xsl:template>
</xsl:stylesheet>
"#;

/// A Lua plugin (`Plugin who`, as `plugins/who.lua`) that sets the note
/// `user` from the request's `X-User` header (else `nobody`), for the
/// `note.user` parameter.
pub const WHO: &str = r#"
function hook_fixup(r)
  r:note("user", r:header("X-User") or "nobody")
  return DECLINED
end
"#;

/// `xsltproc` with `args`, its stdout; `None` (the test skipped, or
/// failed under AXKIT_REQUIRE_SERVICES=1) when it is not installed.
pub fn xsltproc(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    match Command::new("xsltproc")
        .current_dir(dir)
        .args(args)
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "xsltproc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(out.stdout)
        }
        Err(_) => {
            crate::services::service_missing("xsltproc", "xsltproc");
            None
        }
    }
}

/// What `xsltproc` makes of `doc` (under `dir`) through `CHAIN`
/// (page.xsl, then html.xsl); `None` as for [`xsltproc`].
pub fn xsltproc_chain(dir: &Path, doc: &str) -> Option<Vec<u8>> {
    let page = xsltproc(dir, &["page.xsl", doc])?;
    let between = format!("{doc}.page");
    std::fs::write(dir.join(&between), page).unwrap();
    xsltproc(dir, &["html.xsl", &between])
}
