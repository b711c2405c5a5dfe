//! Transforms on many threads at once, as the blocking pool runs them:
//! one compiled stylesheet shared by 8 threads, each with its own policy
//! (its own files for `document()`) and its own failures, must see only
//! its own loads and its own errors.

use std::io;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use axkit_xml::{Document, Policy, Stylesheet};

const THREADS: usize = 8;
const ROUNDS: usize = 300;

const STYLE: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="id"/>
  <xsl:param name="fail"/>
  <xsl:template match="/">
    <xsl:if test="$fail = 'message'"><xsl:message terminate="yes">thread <xsl:value-of select="$id"/> stops</xsl:message></xsl:if>
    <xsl:if test="$fail = 'xpath'"><xsl:value-of select="$undeclared"/></xsl:if>
    <r id="{$id}" from="{document('data.xml', /)/who}"><xsl:value-of select="/doc"/></r>
  </xsl:template>
</xsl:stylesheet>
"#;

/// Thread `n`'s files, in memory: its own `data.xml` next to its
/// documents (`document()` resolves it against the source, `/t/n/`), and
/// the stylesheet.
fn policy_of(n: usize) -> Policy {
    Policy {
        load: Arc::new(move |path: &Path| {
            if path == Path::new("/style/style.xsl") {
                return Ok(STYLE.as_bytes().to_vec());
            }
            if path == Path::new(&format!("/t/{n}/data.xml")) {
                return Ok(format!("<who>policy {n}</who>").into_bytes());
            }
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "not this thread's file",
            ))
        }),
        max_size: 1 << 20,
    }
}

#[test]
fn threads_get_their_own_policies_and_errors() {
    axkit_xml::init().unwrap();
    let style =
        Arc::new(Stylesheet::compile(Path::new("/style/style.xsl"), &policy_of(0)).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|n| {
            let style = style.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                let policy = policy_of(n);
                let id = n.to_string();
                barrier.wait();
                for round in 0..ROUNDS {
                    let url = format!("/t/{n}/doc.xml");
                    let doc = Document::parse(
                        format!("<doc>{n}-{round}</doc>").as_bytes(),
                        &url,
                        &policy,
                    )
                    .unwrap();
                    let result = style.apply(&doc, &[("id", &id)], &policy).unwrap();
                    let body = String::from_utf8(style.output(&result).unwrap().body).unwrap();
                    let want = format!("<r id=\"{n}\" from=\"policy {n}\">{n}-{round}</r>");
                    assert!(body.contains(&want), "thread {n}: {body}");

                    match round % 3 {
                        0 => {
                            let e = style
                                .apply(&doc, &[("id", &id), ("fail", "message")], &policy)
                                .err()
                                .expect("terminate is an error");
                            assert_eq!(e.message, format!("thread {n} stops"), "thread {n}");
                        }
                        1 => {
                            let bad = format!("/t/{n}/bad-{round}.xml");
                            let e = Document::parse(b"<a>\n\n<b></a>", &bad, &policy)
                                .err()
                                .unwrap();
                            assert_eq!(
                                (e.file.as_deref(), e.line),
                                (Some(bad.as_str()), 3),
                                "thread {n}: {e}"
                            );
                        }
                        _ => {
                            let e = style
                                .apply(&doc, &[("id", &id), ("fail", "xpath")], &policy)
                                .err()
                                .expect("undeclared variable");
                            assert!(e.message.contains("undeclared"), "thread {n}: {e}");
                            assert!(
                                !e.message.contains("stops"),
                                "thread {n} got another's error: {e}"
                            );
                            assert_eq!(
                                e.file.as_deref(),
                                Some("/style/style.xsl"),
                                "thread {n}: {e}"
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a thread failed");
    }
}
