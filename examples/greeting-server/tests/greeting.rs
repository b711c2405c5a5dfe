//! Runs the custom binary with the `greeting` plugin and talks to it over a
//! real socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn third_party_plugin_answers_with_its_directive() {
    let dir = std::env::temp_dir().join(format!("greeting-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("greeting.conf");
    std::fs::write(
        &conf,
        "<Server>\n  Listen 127.0.0.1:0\n  Plugin greeting\n  Greeting \"Good morning\"\n</Server>\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_greeting-server"))
        .arg("--no-master")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();

    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /?name=Ada HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

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
