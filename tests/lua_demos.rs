//! The demo plugins in `plugins/` through the stock `axkit` binary: the
//! demo configs check (etc/lua.conf, and the built-in config `axkit` runs
//! without `-c`), hello and the JSON API. The wiki application has its own
//! tests, in demo_app.rs.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::process::Command;

use common::*;
use lua::*;

#[test]
fn the_demo_config_checks() {
    let out = Command::new(BIN)
        .args(["--check", "-c", "etc/lua.conf"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    // The demo shows the current way: no deprecated lines.
    assert!(
        !lossy(&out.stderr).contains("warning"),
        "{}",
        lossy(&out.stderr)
    );
}

/// `cargo run` works in a fresh checkout: the built-in config, which runs
/// the wiki, checks. (It makes the session key in the checkout's `var/`
/// if there is none, as the first `cargo run` does.)
#[test]
fn the_built_in_config_checks() {
    let out = Command::new(BIN)
        .arg("--check")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    assert!(
        !lossy(&out.stderr).contains("warning"),
        "{}",
        lossy(&out.stderr)
    );
}

#[test]
fn demo_hello_and_json_api() {
    let srv = Axkit::start_single_with(
        &format!(
            "PluginDir {DEMO_PLUGINS}\n<Server>\n    Listen 127.0.0.1:0\n\
             <Location /hello>\n        Plugin hello\n        Greeting Howdy\n    </Location>\n\
             <Location /api>\n        Plugin json_api\n        ApiMaxItems 2\n    </Location>\n</Server>\n"
        ),
        |_| {},
    );
    assert_eq!(srv.get("/hello?name=Ada").text(), "Howdy, Ada\n");
    assert_eq!(srv.get("/hello").text(), "Howdy, world\n");

    let r = srv.get("/api/time");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert!(r.text().starts_with("{\"time\":"), "{}", r.text());
    // An empty list is a JSON array.
    assert_eq!(srv.get("/api/items").text(), "{\"count\":0,\"items\":[]}\n");
    let r = send(&srv, "POST", "/api/items", "", br#"{"name":"apple"}"#);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Location"), Some("/api/items/1"));
    assert!(r.text().contains("\"id\":1") && r.text().contains("\"name\":\"apple\""));
    assert_eq!(
        send(&srv, "POST", "/api/items", "", br#"{"name":"pear"}"#).status,
        201
    );
    assert_eq!(
        send(&srv, "POST", "/api/items", "", br#"{"name":"fig"}"#).status,
        507
    );
    assert_eq!(
        send(&srv, "POST", "/api/items", "", b"not json").status,
        400
    );
    let r = srv.get("/api/items");
    assert!(r.text().contains("\"count\":2"), "{}", r.text());
    assert!(srv.get("/api/items/2").text().contains("\"name\":\"pear\""));
    assert_eq!(srv.get("/api/items/9").status, 404);
    let r = send(&srv, "POST", "/api/echo?k=v", "", br#"{"a":[1,2]}"#);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"a\":[1,2]"), "{}", r.text());
    assert!(r.text().contains("\"k\":\"v\""), "{}", r.text());
    let r = send(&srv, "DELETE", "/api/items", "", b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, POST"));
    assert_eq!(srv.get("/api/nothing").status, 404);
}
