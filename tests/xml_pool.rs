//! Large transforms run off the event loop: with one worker, a 20 MB
//! document transforming on the pool does not hold up small static
//! requests, which are all answered while it is still pending.

mod common;
#[path = "common/services.rs"]
mod services;
#[path = "common/xml.rs"]
mod xml;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use xml::*;

/// Sorts every item and writes them all out: seconds of work for libxslt
/// on 20 MB.
const HEAVY: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="xml" encoding="UTF-8"/>
<xsl:template match="/items">
<out>
<xsl:for-each select="item"><xsl:sort select="@k" order="descending"/><i><xsl:value-of select="translate(., 'abc', 'ABC')"/></i></xsl:for-each>
</out>
</xsl:template>
</xsl:stylesheet>
"#;

fn big_document() -> String {
    let mut doc = String::with_capacity(21 << 20);
    doc.push_str("<?xml version=\"1.0\"?>\n<items>\n");
    let mut n: u64 = 1;
    while doc.len() < 20 << 20 {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        doc.push_str(&format!(
            "<item k=\"{:016x}\">abcabc item {} of the big document, some text to make it longer</item>\n",
            n, n >> 40
        ));
    }
    doc.push_str("</items>\n");
    doc
}

#[test]
fn small_requests_are_answered_while_a_big_transform_runs() {
    let conf = conf("", "    XSLTStyle heavy.xsl\n    XSLTCache Off");
    let srv = Axkit::start_single_with(&conf, |d| {
        write_files(
            d,
            &[
                ("site/heavy.xsl", HEAVY),
                ("site/small.txt", &"x".repeat(1024)),
            ],
        );
        d.write("site/big.xml", big_document());
    });
    let done = Arc::new(AtomicBool::new(false));
    let mut big = srv.connect();
    big.write_all(b"GET /big.xml HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    wait_server_read(&big);
    let flag = done.clone();
    let reader = std::thread::spawn(move || {
        let (bytes, _) = read_until_close(&mut big, Duration::from_secs(300));
        flag.store(true, Ordering::SeqCst);
        bytes
    });
    for i in 0..20 {
        let r = srv.get("/small.txt");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 1024);
        assert!(
            !done.load(Ordering::SeqCst),
            "the big transform ended before small request {i}: nothing shows it ran off the loop"
        );
    }
    let bytes = reader.join().unwrap();
    let r = parse_response(&bytes).expect("a response to the big request");
    assert_eq!(
        r.status,
        200,
        "{}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
    );
    assert!(r
        .text()
        .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<out><i>"));
}
