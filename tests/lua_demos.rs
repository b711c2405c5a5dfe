//! The demo plugins in `plugins/` through the stock `axkit` binary: their
//! config checks, hello and the JSON API, the wiki (view, edit, save), the
//! wiki under 200 concurrent saves of one page, and over-long page names.
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

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

#[test]
fn demo_wiki_view_edit_save() {
    let srv = Axkit::start_single_with(
        &format!(
            "PluginDir {DEMO_PLUGINS}\nLuaFileRoot {{dir}}/pages\n<Server>\n    Listen 127.0.0.1:0\n\
             <Location /wiki>\n        Plugin wiki\n        WikiDir {{dir}}/pages\n    </Location>\n</Server>\n"
        ),
        |d| {
            d.write("pages/FrontPage.txt", "Start at SandBox.\n");
        },
    );
    let r = srv.get("/wiki/");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("/wiki/FrontPage"));
    let r = srv.get("/wiki/FrontPage");
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .contains("<p>Start at <a href=\"/wiki/SandBox\">SandBox</a>.</p>"),
        "{}",
        r.text()
    );
    // A missing page invites editing.
    let r = srv.get("/wiki/SandBox");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("/wiki/SandBox?edit"));
    let r = srv.get("/wiki/SandBox?edit");
    assert!(r
        .text()
        .contains("<form method=\"post\" action=\"/wiki/SandBox\">"));
    // Save through the form: text is stored as written, shown escaped.
    let r = send(
        &srv,
        "POST",
        "/wiki/SandBox",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"text=Hello+%3Cscript%3Ealert(1)%3C%2Fscript%3E+%26+FrontPage%0D%0A%0D%0Atwo",
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/wiki/SandBox"));
    let saved = std::fs::read_to_string(srv.dir.path().join("pages/SandBox.txt")).unwrap();
    assert_eq!(saved, "Hello <script>alert(1)</script> & FrontPage\n\ntwo");
    let page = srv.get("/wiki/SandBox").text();
    assert!(
        page.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt; &amp; "),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/wiki/FrontPage\">FrontPage</a></p>\n<p>two</p>"),
        "{page}"
    );
    assert!(!page.contains("<script>"));
    let edit = srv.get("/wiki/SandBox?edit").text();
    assert!(edit.contains("&lt;script&gt;alert(1)"), "{edit}");
    let index = srv.get("/wiki/?index").text();
    assert!(index.contains("/wiki/FrontPage") && index.contains("/wiki/SandBox"));
    // Page names are words: no way out of the page directory.
    assert_eq!(srv.get("/wiki/..%2F..%2Fetc%2Fpasswd").status, 404);
    assert_eq!(srv.get("/wiki/a.b").status, 404);
    assert_eq!(send(&srv, "PUT", "/wiki/SandBox", "", b"").status, 405);
}

/// 200 saves of one wiki page at once (20 clients, 10 saves each, every
/// body different): none fails, a reader never sees a torn page, the page
/// ends as exactly one of the bodies and no temporary file is left.
#[test]
fn demo_wiki_survives_concurrent_saves_of_one_page() {
    const CLIENTS: usize = 20;
    const SAVES: usize = 10;
    let srv = Axkit::start_single_with(
        "PluginDir {dir}/plugins\nLuaFileRoot {dir}/pages\n<Server>\n    Listen 127.0.0.1:0\n\
         <Location /wiki>\n        Plugin wiki\n        WikiDir {dir}/pages\n    </Location>\n</Server>\n",
        |d| {
            d.write(
                "plugins/wiki.lua",
                std::fs::read(format!("{DEMO_PLUGINS}/wiki.lua")).unwrap(),
            );
            d.write("pages/SandBox.txt", "initial");
        },
    );
    let body = |c: usize, i: usize| format!("client {c} save {i} ").repeat(400);
    let mut bodies: std::collections::HashSet<String> = (0..CLIENTS)
        .flat_map(|c| (0..SAVES).map(move |i| body(c, i)))
        .collect();
    bodies.insert("initial".into());
    let bodies = std::sync::Arc::new(bodies);
    let page = srv.dir.path().join("pages/SandBox.txt");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (page, done, bodies) = (page.clone(), done.clone(), bodies.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&page).unwrap();
                assert!(
                    bodies.contains(&text),
                    "torn page: {:?}…",
                    &text[..text.len().min(80)]
                );
                reads += 1;
            }
            reads
        })
    };
    let addr = srv.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..SAVES {
                    let form = format!("text={}", body(c, i).replace(' ', "+"));
                    let req = format!(
                        "POST /wiki/SandBox HTTP/1.1\r\nHost: x\r\n\
                         Content-Type: application/x-www-form-urlencoded\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
                        form.len()
                    );
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(req.as_bytes()).unwrap();
                    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(30));
                    statuses.push(status_of(&bytes));
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let failed = statuses.iter().filter(|&&s| s != 303).count();
    assert_eq!(failed, 0, "statuses: {statuses:?}");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text != "initial" && bodies.contains(&text));
    let names: Vec<String> = std::fs::read_dir(page.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["SandBox.txt"]);
}

/// A page name longer than a file name can be is no page: 404 for every
/// method, where a save used to fail with a 500.
#[test]
fn demo_wiki_refuses_over_long_page_names() {
    let srv = Axkit::start_single_with(
        &format!(
            "PluginDir {DEMO_PLUGINS}\nLuaFileRoot {{dir}}/pages\n<Server>\n    Listen 127.0.0.1:0\n\
             <Location /wiki>\n        Plugin wiki\n        WikiDir {{dir}}/pages\n    </Location>\n</Server>\n"
        ),
        |d| {
            d.write("pages/FrontPage.txt", "front");
        },
    );
    let save = |name: &str| {
        send(
            &srv,
            "POST",
            &format!("/wiki/{name}"),
            "Content-Type: application/x-www-form-urlencoded\r\n",
            b"text=hello",
        )
        .status
    };
    let longest = "A".repeat(100);
    assert_eq!(save(&longest), 303);
    assert_eq!(srv.get(&format!("/wiki/{longest}")).status, 200);
    for name in ["A".repeat(101), "B".repeat(300)] {
        assert_eq!(save(&name), 404, "{}", name.len());
        assert_eq!(srv.get(&format!("/wiki/{name}")).status, 404);
        assert_eq!(srv.get(&format!("/wiki/{name}?edit")).status, 404);
    }
}
