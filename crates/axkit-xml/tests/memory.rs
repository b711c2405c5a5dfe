//! Memory stays flat over many parse + transform + output rounds (every
//! xmlDoc, stylesheet, transform context and serialised buffer freed):
//! RSS from /proc/self/statm after a warm-up and after the loop, and the
//! CPU a round took (printed, not asserted).
//! `AXKIT_XML_ROUNDS` sets the number of rounds (default 5,000; the figure
//! in docs/benchmarks.md is from 100,000, in release).

use std::path::Path;
use std::sync::Arc;

use axkit_xml::{Document, Policy, Stylesheet};

const STYLE: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:str="http://exslt.org/strings" exclude-result-prefixes="str">
  <xsl:output method="html" encoding="ISO-8859-1"/>
  <xsl:param name="title"/>
  <xsl:key name="k" match="item" use="@k"/>
  <xsl:template match="/"><html><head><title><xsl:value-of select="$title"/></title></head><body>
    <xsl:for-each select="//item"><xsl:sort select="@k"/><p class="{@k}"><xsl:value-of select="str:padding(3, '*')"/><xsl:value-of select="count(key('k', @k))"/><xsl:copy-of select="document('extra.xml')/e"/></p></xsl:for-each>
  </body></html></xsl:template>
</xsl:stylesheet>
"#;

fn rss_kib() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// This process's user + system CPU time (/proc/self/stat, in clock ticks
/// of 10 ms).
fn cpu_us() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which ends at the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000
}

#[test]
fn memory_is_flat_over_many_transforms() {
    let rounds: usize = std::env::var("AXKIT_XML_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let policy = Policy {
        load: Arc::new(|path: &Path| match path.to_str() {
            Some("/m/style.xsl") => Ok(STYLE.as_bytes().to_vec()),
            Some("/m/extra.xml") => Ok(b"<e>extra \xc3\xa9</e>".to_vec()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }),
        max_size: 1 << 20,
    };
    let mut source = String::from("<!DOCTYPE d [<!ENTITY e \"ent\">]><d>");
    for i in 0..50 {
        source.push_str(&format!("<item k=\"k{}\">&e; {i}</item>", i % 7));
    }
    source.push_str("</d>");
    let compile = || Stylesheet::compile(Path::new("/m/style.xsl"), &policy).unwrap();
    let mut style = compile();
    let mut round = |n: usize| {
        // Compiled stylesheets are cached by the pipeline; one in a
        // hundred rounds compiles anew, so that freeing them is measured
        // too.
        if n % 100 == 99 {
            style = compile();
        }
        let doc = Document::parse(source.as_bytes(), "/m/doc.xml", &policy).unwrap();
        let title = n.to_string();
        let result = style.apply(&doc, &[("title", &title)], &policy).unwrap();
        let out = style.output(&result).unwrap();
        assert!(out.body.len() > 1000);
        // A failing call frees what it made too.
        assert!(Document::parse(b"<a><b></a>", "/m/bad.xml", &policy).is_err());
    };
    for n in 0..rounds / 10 {
        round(n);
    }
    let before = rss_kib();
    let cpu_before = cpu_us();
    for n in 0..rounds {
        round(n);
    }
    let cpu = cpu_us() - cpu_before;
    let after = rss_kib();
    println!(
        "{rounds} rounds: RSS {before} KiB before, {after} KiB after; {} µs CPU a round",
        cpu / rounds as u64
    );
    // A leak of even 100 bytes a round would show as megabytes here.
    assert!(
        after < before + 2048,
        "RSS grew from {before} KiB to {after} KiB over {rounds} rounds"
    );
}
