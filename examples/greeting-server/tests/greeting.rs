//! Runs the custom binary with the `greeting` plugin and talks to it over a
//! real socket.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::Axkit;

#[test]
fn third_party_plugin_answers_with_its_directive() {
    let srv = Axkit::start_bin(
        env!("CARGO_BIN_EXE_greeting-server"),
        "<Server>\n  Listen 127.0.0.1:0\n  Plugin greeting\n  Greeting \"Good morning\"\n</Server>\n",
        &["--no-master"],
        |_| {},
    );
    // Read to the end: the server closes after the response.
    let (bytes, closed) =
        srv.raw(b"GET /?name=Ada HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(closed);
    let response = String::from_utf8(bytes).unwrap();
    drop(srv);

    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("Transfer-Encoding: chunked\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("Good morning, \r\n5\r\nAda!\n\r\n0\r\n\r\n"),
        "{response}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_greeting-server"))
        .arg("--directives")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[greeting]") && text.contains("Greeting <string>"),
        "{text}"
    );
}
