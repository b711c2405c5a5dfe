//! The engine's output against the real `xsltproc --nonet`, byte for byte,
//! on every case under `tests/corpus/NN-name/`: `doc.xml` transformed by
//! `style.xsl`, with `--stringparam NAME VALUE` for each line `NAME VALUE`
//! of `params`, and `--xinclude` when the case has a file `xinclude`.
//! Without xsltproc (Debian `xsltproc`) the test is skipped, unless
//! `AXKIT_REQUIRE_SERVICES=1`.

#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "../../../tests/common/services.rs"]
mod services;
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use axkit_xml::{Document, Output, Stylesheet};

fn params_of(dir: &Path) -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string(dir.join("params")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn xsltproc(dir: &Path, params: &[(String, String)], xinclude: bool) -> Vec<u8> {
    let mut cmd = Command::new("xsltproc");
    cmd.current_dir(dir).arg("--nonet");
    if xinclude {
        cmd.arg("--xinclude");
    }
    for (k, v) in params {
        cmd.args(["--stringparam", k, v]);
    }
    let out = cmd
        .args(["style.xsl", "doc.xml"])
        .output()
        .expect("xsltproc runs");
    assert!(
        out.status.success(),
        "xsltproc failed on {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn engine(dir: &Path, params: &[(String, String)], xinclude: bool) -> Output {
    let policy = support::policy(dir);
    let style = Stylesheet::compile(&dir.join("style.xsl"), &policy).expect("compiles");
    let doc_path = dir.join("doc.xml");
    let bytes = fs::read(&doc_path).unwrap();
    let mut doc = Document::parse(&bytes, doc_path.to_str().unwrap(), &policy).expect("parses");
    if xinclude {
        doc.xinclude(&policy).expect("xinclude");
    }
    let params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let result = style.apply(&doc, &params, &policy).expect("transforms");
    style.output(&result).expect("serialises")
}

#[test]
fn corpus_is_byte_identical_to_xsltproc() {
    if Command::new("xsltproc").arg("--version").output().is_err() {
        services::service_missing("xsltproc", "xsltproc");
        return;
    }
    let root = support::tests_dir().join("corpus");
    let mut cases: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "only {} corpus cases", cases.len());
    let mut failures = Vec::new();
    for dir in &cases {
        let params = params_of(dir);
        let xinclude = dir.join("xinclude").exists();
        let expected = xsltproc(dir, &params, xinclude);
        let got = engine(dir, &params, xinclude);
        if got.body != expected {
            failures.push(format!(
                "{}:\n--- xsltproc\n{}\n--- engine\n{}",
                dir.file_name().unwrap().to_string_lossy(),
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&got.body)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn output_reports_media_type_and_encoding() {
    let root = support::tests_dir().join("corpus");
    let cases = [
        ("01-identity", "text/xml", "UTF-8"),
        ("10-html-output", "text/html", "UTF-8"),
        ("11-text-output", "text/plain", "UTF-8"),
        ("12-encoding-latin1", "text/xml", "ISO-8859-1"),
        ("13-encoding-utf16", "text/xml", "UTF-16"),
        ("29-html-auto", "text/html", "UTF-8"),
    ];
    for (case, media, encoding) in cases {
        let dir = root.join(case);
        let out = engine(&dir, &params_of(&dir), false);
        assert_eq!(
            (out.media_type.as_str(), out.encoding.as_str()),
            (media, encoding),
            "{case}"
        );
    }
    let policy = support::policy(&root);
    let style = Stylesheet::compile(&root.join("11-text-output/style.xsl"), &policy).unwrap();
    assert_eq!(style.media_type().as_deref(), Some("text/plain"));
    assert_eq!(style.method().as_deref(), Some("text"));
    let auto = Stylesheet::compile(&root.join("29-html-auto/style.xsl"), &policy).unwrap();
    assert_eq!(auto.media_type(), None);
}
