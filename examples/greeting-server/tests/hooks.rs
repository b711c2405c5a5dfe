//! The hooks a Rust plugin writes are the hooks the server calls: the
//! `faults` plugin lists none, its impl carries `#[axkit::plugin]`, and
//! each hook it writes (`post_read_request`, `fixup`, `response`) runs
//! for a real request.

#[path = "../../../tests/common/mod.rs"]
mod common;

use common::{parse_response, Axkit};

#[test]
fn every_hook_written_in_the_impl_is_called() {
    let srv = Axkit::start_bin(
        env!("CARGO_BIN_EXE_greeting-server"),
        "<Server>\n  Listen 127.0.0.1:0\n  Plugin faults\n</Server>\n",
        &["--no-master"],
        |_| {},
    );
    let ask = |headers: &str| {
        let req = format!("GET /notes HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
        parse_response(&srv.raw(req.as_bytes()).0).expect("a complete response")
    };
    // fixup: written, and called.
    let r = ask("X-Fixup: 1\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-Fixup"), Some("called"));
    // response: the same request's body came from it.
    assert!(r.text().starts_with("GET /notes"), "{}", r.text());
    // post_read_request: its deliberate panic is a 500.
    assert_eq!(ask("X-Panic-Early: 1\r\n").status, 500);
}
