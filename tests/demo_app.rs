//! The demo application, the wiki of `plugins/wiki.lua` with its modules
//! and the templates of `demo/templates`, through the stock `axkit` binary
//! over HTTP: signing up, logging in and out, editing with a CSRF token
//! (403 without one), a page showing what was saved escaped, the live
//! recent changes (server-sent events) hearing of a save made on another
//! worker, saves of one page from many clients at once, and files sent
//! where text is read (400). On SQLite with sessions in the shared zone
//! (as the built-in config has them), and the same on PostgreSQL with
//! sessions in Redis, servers the test starts for itself.

mod common;
#[path = "common/services.rs"]
mod services;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use services::{Postgres, Redis};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The wiki with database `url` (and `extra` global lines), `Workers 2`.
fn start(url: &str, extra: &str) -> Axkit {
    let config = format!(
        "PluginDir {ROOT}/plugins\nTemplateDir {ROOT}/demo/templates\n\
         Database wiki {url}\nSessionKey test {{dir}}/session.key\n{extra}\n\
         Plugin logging/warn\nLogLevel LOGINFO\nWorkers 2\n\
         <Server>\n    Listen 127.0.0.1:0\n\
         \x20   <Location /wiki>\n        Plugin wiki\n    </Location>\n</Server>\n"
    );
    Axkit::start_with(&config, &[], |d| {
        d.write(
            "session.key",
            "a test key, long enough to sign with: 0123456789",
        );
    })
}

/// `fields` as an urlencoded form.
fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The CSRF token of the (first) form on a page.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf_token\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + 25..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A client that keeps the cookies it is given, as a browser does.
#[derive(Clone)]
struct Browser {
    addr: SocketAddr,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(srv: &Axkit) -> Browser {
        Browser {
            addr: srv.addr,
            cookies: BTreeMap::new(),
        }
    }

    /// One request on a connection of its own; `headers` are extra lines.
    fn send(&mut self, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{}{headers}Content-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.cookie_header(),
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.write_all(&req).unwrap();
        // Long enough for an argon2 hash in a debug build.
        let (bytes, _) = read_to_end_within(&mut s, Duration::from_secs(30));
        let r = parse_response(&bytes).unwrap_or_else(|| {
            panic!(
                "{method} {path}: no response: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        self.take_cookies(&r);
        r
    }

    fn cookie_header(&self) -> String {
        if self.cookies.is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("Cookie: {}\r\n", pairs.join("; "))
    }

    /// Keep what the response's Set-Cookie lines say.
    fn take_cookies(&mut self, r: &Response) {
        for line in r.header_all("Set-Cookie") {
            let pair = line.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let gone = value.is_empty()
                || line
                    .split(';')
                    .any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"));
            if gone {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().into(), value.into());
            }
        }
    }

    fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, "", b"")
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let headers = "Content-Type: application/x-www-form-urlencoded\r\n";
        self.send("POST", path, headers, form(fields).as_bytes())
    }

    /// POST `fields` as a multipart form, `file` among them as an upload.
    fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)], file: &str) -> Response {
        let mut body = String::new();
        for (name, value) in fields {
            let filename = if *name == file {
                "; filename=\"hostname\""
            } else {
                ""
            };
            body += &format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n{value}\r\n"
            );
        }
        body += "--XyZ--\r\n";
        let headers = "Content-Type: multipart/form-data; boundary=XyZ\r\n";
        self.send("POST", path, headers, body.as_bytes())
    }
}

const PASSWORD: &str = "correct horse battery";

/// Sign up, log in and out, edit with and without a CSRF token, and what
/// the pages show; ends with `ada` logged in.
fn sign_up_edit_and_log_out(srv: &Axkit) -> Browser {
    let mut ada = Browser::new(srv);
    // A visitor reads the front page, made with the tables on first use.
    let r = ada.get("/wiki/");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("/wiki/FrontPage"));
    let r = ada.get("/wiki/FrontPage");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("Welcome to the"), "{}", r.text());
    assert!(r.text().contains("Log in"));
    // Editing needs a login.
    let r = ada.get("/wiki/SandBox?edit");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/wiki/?login&next=SandBox"));

    // Sign up: the form's token is needed, and a password of 8 bytes.
    let token = csrf(&ada.get("/wiki/?signup").text());
    let visitor = ada.cookies.get("axkit_session").cloned();
    assert!(visitor.is_some(), "no session cookie for the form's token");
    let signup = |b: &mut Browser, token: Option<&str>, password: &str| {
        let mut fields = vec![("name", "ada"), ("password", password), ("next", "SandBox")];
        if let Some(token) = token {
            fields.push(("csrf_token", token));
        }
        b.post("/wiki/?signup", &fields)
    };
    assert_eq!(signup(&mut ada, None, PASSWORD).status, 403);
    assert_eq!(signup(&mut ada, Some("forged"), PASSWORD).status, 403);
    assert_eq!(signup(&mut ada, Some(&token), "short").status, 400);
    let r = signup(&mut ada, Some(&token), PASSWORD);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("Location"), Some("/wiki/SandBox"));
    // Logged in under a new id, not the one the visitor was given.
    assert_ne!(ada.cookies.get("axkit_session"), visitor.as_ref());

    // Logged in: the edit form, and its token.
    let r = ada.get("/wiki/SandBox?edit");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("ada"), "{}", r.text());
    let token = csrf(&r.text());
    let text = "Hello <script>alert(1)</script> & FrontPage\r\n\r\ntwo";
    // A save without the token, or with another, is refused.
    assert_eq!(ada.post("/wiki/SandBox", &[("text", text)]).status, 403);
    assert_eq!(
        ada.post("/wiki/SandBox", &[("csrf_token", "x"), ("text", text)])
            .status,
        403
    );
    assert_eq!(ada.get("/wiki/SandBox").status, 404);
    let r = ada.post("/wiki/SandBox", &[("csrf_token", &token), ("text", text)]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/wiki/SandBox"));
    // The page shows the text escaped, CamelCase linked.
    let page = ada.get("/wiki/SandBox").text();
    assert!(
        page.contains("<p>Hello &lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; <a href=\"&#x2f;wiki/FrontPage\">FrontPage</a></p>\n<p>two</p>"),
        "{page}"
    );
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("Revision 1, saved"), "{page}");
    let old = ada.get("/wiki/SandBox?rev=1").text();
    assert!(old.contains("Revision 1 of SandBox"), "{old}");
    for rev in ["2", "x", "99999999999999999999"] {
        assert_eq!(ada.get(&format!("/wiki/SandBox?rev={rev}")).status, 404);
    }
    let edit = ada.get("/wiki/SandBox?edit").text();
    assert!(edit.contains("&lt;script&gt;alert(1)"), "{edit}");
    let index = ada.get("/wiki/?index").text();
    assert!(index.contains(">SandBox</a>") && index.contains(">FrontPage</a>"));
    // Page names are words of at most 100: no way to anything else.
    let longest = "A".repeat(100);
    let r = ada.post(
        &format!("/wiki/{longest}"),
        &[("csrf_token", &token), ("text", "long")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(ada.get(&format!("/wiki/{longest}")).status, 200);
    for bad in ["A".repeat(101), "..%2Fetc".into(), "a.b".into()] {
        assert_eq!(ada.get(&format!("/wiki/{bad}")).status, 404, "{bad}");
    }

    // The name is taken for anyone else.
    let mut bob = Browser::new(srv);
    let bob_token = csrf(&bob.get("/wiki/?signup").text());
    assert_eq!(signup(&mut bob, Some(&bob_token), PASSWORD).status, 409);
    let bob_token = csrf(&bob.get("/wiki/?login").text());
    let r = bob.post(
        "/wiki/?login",
        &[
            ("csrf_token", &bob_token),
            ("name", "ada"),
            ("password", "wrong password"),
        ],
    );
    assert_eq!(r.status, 403);
    assert!(r.text().contains("Wrong name or password"), "{}", r.text());

    // Log out: a POST with the token.
    let token = csrf(&ada.get("/wiki/SandBox").text());
    assert_eq!(ada.post("/wiki/?logout", &[]).status, 403);
    assert_eq!(ada.get("/wiki/?logout").status, 405);
    let before = ada.clone();
    let r = ada.post("/wiki/?logout", &[("csrf_token", &token)]);
    assert_eq!(r.status, 303);
    // The session is over on the server: its cookie, kept, logs no one in.
    assert_eq!(before.clone().get("/wiki/SandBox?edit").status, 303);
    assert_eq!(ada.get("/wiki/SandBox?edit").status, 303);
    assert_eq!(
        ada.post(
            "/wiki/SandBox",
            &[("csrf_token", &token), ("text", "after")]
        )
        .status,
        403
    );

    // Log in again.
    let token = csrf(&ada.get("/wiki/?login").text());
    let r = ada.post(
        "/wiki/?login",
        &[
            ("csrf_token", &token),
            ("name", "ada"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("Location"), Some("/wiki/"));
    assert_eq!(ada.get("/wiki/SandBox?edit").status, 200);
    ada
}

/// A file where the wiki reads a text field (the log-in form's `next`,
/// `name` or `password`, the edit form's `text`) is a 400, never a
/// script error (500).
fn file_fields_are_refused(ada: &Browser) {
    let mut ada = ada.clone();
    let token = csrf(&ada.get("/wiki/?login").text());
    let login = [
        ("csrf_token", token.as_str()),
        ("name", "ada"),
        ("password", PASSWORD),
        ("next", "SandBox"),
    ];
    for file in ["next", "name", "password"] {
        let r = ada.post_multipart("/wiki/?login", &login, file);
        assert_eq!(r.status, 400, "{file}: {}", r.text());
    }
    let token = csrf(&ada.get("/wiki/SandBox?edit").text());
    let edit = [("csrf_token", token.as_str()), ("text", "uploaded")];
    let r = ada.post_multipart("/wiki/SandBox", &edit, "text");
    assert_eq!(r.status, 400, "{}", r.text());
    // The same forms as text are taken.
    let r = ada.post_multipart("/wiki/SandBox", &edit, "");
    assert_eq!(r.status, 303, "{}", r.text());
}

/// Read `s` until `needle` has come (within 10 s); everything read.
fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {needle:?} within 10 s: {}",
            String::from_utf8_lossy(seen)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// A connection served by a worker other than `not`.
fn connection_to_other_worker(srv: &Axkit, not: i32) -> TcpStream {
    for _ in 0..200 {
        let c = srv.connect();
        let mut worker = None;
        assert!(wait_until(Duration::from_secs(10), || {
            worker = srv.worker_serving(&c);
            worker.is_some()
        }));
        if worker != Some(not) {
            return c;
        }
    }
    panic!("every connection went to worker {not}");
}

/// The recent changes stream, served by one worker, hears of a save made
/// on the other.
fn live_changes_from_another_worker(srv: &Axkit, ada: &Browser) {
    let mut stream = srv.connect();
    write!(
        stream,
        "GET /wiki/?events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    // The stream has started (its head, and the retry field that comes
    // first) once it has subscribed.
    read_until(&mut stream, &mut seen, "retry: 3000");
    let head = String::from_utf8_lossy(&seen).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/event-stream"), "{head}");
    let streaming = srv.worker_serving(&stream).unwrap();

    let mut saver = connection_to_other_worker(srv, streaming);
    let token = csrf(&ada.clone().get("/wiki/LiveDemo?edit").text());
    let body = form(&[("csrf_token", &token), ("text", "said live")]);
    write!(
        saver,
        "POST /wiki/LiveDemo HTTP/1.1\r\nHost: x\r\n{}Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        ada.cookie_header(),
        body.len()
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut saver, Duration::from_secs(10));
    assert_eq!(
        status_of(&bytes),
        303,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_ne!(srv.worker_serving(&stream), None);

    read_until(&mut stream, &mut seen, "\"page\":\"LiveDemo\"");
    let text = String::from_utf8_lossy(&seen).into_owned();
    let event = &text[text.find("event: change").expect(&text)..];
    assert!(event.contains("\nid: "), "{event}");
    assert!(
        event.contains("\"author\":\"ada\"") && event.contains("\"rev\":1"),
        "{event}"
    );
}

/// Saves of one page from 8 clients at once on both workers: every one
/// succeeds, and the revisions are numbered 1 to 40 without a gap.
fn concurrent_saves(ada: &Browser) {
    const CLIENTS: usize = 8;
    const SAVES: usize = 5;
    let token = csrf(&ada.clone().get("/wiki/Busy?edit").text());
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let (mut b, token) = (ada.clone(), token.clone());
            scope.spawn(move || {
                for i in 0..SAVES {
                    let text = format!("client {c} save {i}");
                    let r = b.post("/wiki/Busy", &[("csrf_token", &token), ("text", &text)]);
                    assert_eq!(r.status, 303, "{}", r.text());
                }
            });
        }
    });
    let history = ada.clone().get("/wiki/Busy?history").text();
    for rev in 1..=CLIENTS * SAVES {
        assert!(
            history.contains(&format!(">Revision {rev}</a>")),
            "{rev}: {history}"
        );
    }
    assert!(!history.contains(&format!(">Revision {}</a>", CLIENTS * SAVES + 1)));
}

#[test]
fn the_wiki_on_sqlite() {
    let srv = start("sqlite:{dir}/wiki.db", "SessionStore shared");
    let ada = sign_up_edit_and_log_out(&srv);
    file_fields_are_refused(&ada);
    live_changes_from_another_worker(&srv, &ada);
    concurrent_saves(&ada);
    // The password is kept as an argon2id hash, never as written.
    let mut db = Vec::new();
    for file in ["wiki.db", "wiki.db-wal"] {
        db.extend(std::fs::read(srv.dir.path().join(file)).unwrap_or_default());
    }
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("$argon2id$"));
    assert!(!db.contains(PASSWORD));
}

/// One Redis command (a few bulk strings); its reply as text.
fn redis_command(url: &str, args: &[&str]) -> String {
    let addr = url.trim_start_matches("redis://").trim_end_matches("/0");
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req += &format!("${}\r\n{a}\r\n", a.len());
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, "\r\n");
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn the_wiki_on_postgresql_with_sessions_in_redis() {
    let Some(pg) = Postgres::start() else { return };
    let Some(redis) = Redis::start() else { return };
    let srv = start(
        &pg.url(),
        &format!(
            "Database sessions {}\nSessionStore redis:sessions",
            redis.url()
        ),
    );
    let ada = sign_up_edit_and_log_out(&srv);
    live_changes_from_another_worker(&srv, &ada);
    concurrent_saves(&ada);
    let hash = pg.psql("SELECT password FROM wiki_users WHERE name = 'ada'");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM wiki_changes WHERE page = 'Busy'"),
        "40"
    );
    // The sessions are in Redis: ada's, and only hers (the forms bob was
    // shown, with their tokens, kept nothing there).
    let reply = redis_command(&redis.url(), &["DBSIZE"]);
    let keys: u64 = reply.trim().trim_start_matches(':').parse().unwrap();
    assert_eq!(keys, 1, "{reply}");
}
