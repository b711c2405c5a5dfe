//! Fuzz target: arbitrary text through the config language's first stage,
//! `axkit::config::parse_syntax` (quoting, `\` continuation, comments,
//! `<Block>` nesting). Checks that it never panics; that a tree it returns
//! is nested no deeper than the parser's limit of 32 blocks (later stages
//! walk it recursively), and every node and error names a line the text
//! has; that CRLF line endings and a leading UTF-8 BOM give the same result
//! as the text without them.
//!
//! Input layout: the whole input, taken as UTF-8 (lossily), is the config.

#![no_main]

use axkit::config::{parse_syntax, Node};
use libfuzzer_sys::fuzz_target;

/// The parser's documented limit on block nesting.
const MAX_DEPTH: usize = 32;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX);
    let result = parse_syntax(&text, "fuzz.conf");
    match &result {
        Ok(nodes) => check(nodes, 1, lines),
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.line <= lines, "{e:?} in {lines} lines");
            }
        }
    }
    if !text.contains('\r') {
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse_syntax(&crlf, "fuzz.conf"), result, "CRLF");
    }
    if !text.starts_with('\u{feff}') {
        let bom = format!("\u{feff}{text}");
        assert_eq!(parse_syntax(&bom, "fuzz.conf"), result, "BOM");
    }
});

fn check(nodes: &[Node], depth: usize, lines: u32) {
    for node in nodes {
        assert!((1..=lines).contains(&node.line()), "line {}", node.line());
        if let Node::Block { children, .. } = node {
            assert!(depth <= MAX_DEPTH, "nested {depth} deep");
            check(children, depth + 1, lines);
        }
    }
}
