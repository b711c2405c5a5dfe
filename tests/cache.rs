//! The `cache` plugin end to end, with the real binary in front of a Lua
//! origin that counts its own calls in a shared zone (so the count covers
//! every worker): a miss then a hit, what is never stored (no-store,
//! private, Authorization), Vary, expiry and revalidation with a 304 from
//! the origin, stale-if-error, stale-while-revalidate (the refresh in the
//! background, one per entry), request collapsing (per worker, and across
//! workers with the shared tier), PURGE (reaching every worker's memory
//! tier; of a directory named without its slash too), HEAD from a GET
//! entry and a HEAD miss storing nothing, unsafe
//! methods invalidating (RFC 9111 §4.4), an ErrorDocument page's walk
//! neither answered from nor stored, and the exact `Cache-Status` values;
//! and what a review found: a session's cookie and a 304's cookie kept out
//! of entries, Vary values that are not UTF-8, stale-if-error over a
//! streamed error, one `<Server>`'s entries kept from another, and PURGE
//! reaching every variant.

#[path = "common/cache.rs"]
mod cache;
mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;

use std::time::Duration;

use cache::*;
use common::*;

/// Ask with `get` until the answer is no longer a fresh hit (an entry
/// fresh for a second has gone stale), at most 5 s: that answer.
fn first_not_a_hit(mut get: impl FnMut() -> Response) -> Response {
    let mut seen = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let r = get();
        let stale = status_field(&r) != "axkit; hit";
        seen = Some(r);
        stale
    }));
    seen.unwrap()
}

#[test]
fn miss_then_hit_and_head_from_the_get_entry() {
    let srv = start(1, "", "");
    let first = get(&srv, "/a?cc=max-age=60", "");
    assert_eq!((first.status, first.text().as_str()), (200, "call 1"));
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    let hit = get(&srv, "/a?cc=max-age=60", "");
    assert_eq!((hit.status, hit.text().as_str()), (200, "call 1"));
    assert_eq!(status_field(&hit), "axkit; hit");
    assert_eq!(hit.header("Cache-Control"), Some("max-age=60"));
    assert!(hit.header("Age").is_some());
    let head = request(&srv, "HEAD", "/a?cc=max-age=60", "");
    assert_eq!(head.status, 200);
    assert_eq!(status_field(&head), "axkit; hit");
    assert_eq!(head.header("Content-Length"), Some("6"));
    assert_eq!(calls(&srv, "/a"), "1");
}

#[test]
fn what_is_never_stored() {
    let srv = start(1, "", "");
    for (path, headers, field) in [
        ("/n?cc=no-store", "", "axkit; fwd=uri-miss"),
        ("/p?cc=private,max-age=60", "", "axkit; fwd=uri-miss"),
        ("/cookie?cc=max-age=60", "", "axkit; fwd=uri-miss"),
        ("/none", "", "axkit; fwd=uri-miss"),
        (
            "/auth?cc=max-age=60",
            "Authorization: Basic eDp5\r\n",
            "axkit; fwd=request",
        ),
    ] {
        for n in 1..=2 {
            let r = get(&srv, path, headers);
            assert_eq!(r.text(), format!("call {n}"), "{path}");
            assert_eq!(status_field(&r), field, "{path}");
        }
    }
    // What an authorized request fetched is not served to anyone else.
    let r = get(&srv, "/auth?cc=max-age=60", "");
    assert_eq!(r.text(), "call 3");
    assert_eq!(status_field(&r), "axkit; fwd=uri-miss; stored");
}

#[test]
fn vary_keeps_one_entry_per_language() {
    let srv = start(1, "", "");
    let ask = |lang: &str| {
        get(
            &srv,
            "/vary?cc=max-age=60",
            &format!("Accept-Language: {lang}\r\n"),
        )
    };
    let en = ask("en");
    assert_eq!(
        (en.text().as_str(), status_field(&en)),
        ("call 1 en", "axkit; fwd=uri-miss; stored")
    );
    let fr = ask("fr");
    assert_eq!(
        (fr.text().as_str(), status_field(&fr)),
        ("call 2 fr", "axkit; fwd=vary-miss; stored")
    );
    let en = ask("en");
    assert_eq!(
        (en.text().as_str(), status_field(&en)),
        ("call 1 en", "axkit; hit")
    );
    let fr = ask("fr");
    assert_eq!(
        (fr.text().as_str(), status_field(&fr)),
        ("call 2 fr", "axkit; hit")
    );
    assert_eq!(calls(&srv, "/vary"), "2");
}

#[test]
fn expiry_then_revalidation_with_304() {
    let srv = start(1, "", "");
    let first = get(&srv, "/etag?cc=max-age=1", "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    // A client's own validator is answered from the entry.
    let cond = get(&srv, "/etag?cc=max-age=1", "If-None-Match: \"v1\"\r\n");
    assert_eq!((cond.status, status_field(&cond)), (304, "axkit; hit"));
    // Once stale, the origin is asked with the entry's ETag; its 304
    // refreshes the entry and the client gets the stored body.
    let r = first_not_a_hit(|| get(&srv, "/etag?cc=max-age=1", ""));
    assert_eq!((r.status, r.text().as_str()), (200, "call 1"));
    assert_eq!(status_field(&r), "axkit; fwd=stale; fwd-status=304");
    assert_eq!(r.header("ETag"), Some("\"v1\""));
    assert_eq!(calls(&srv, "/etag"), "2");
    let again = get(&srv, "/etag?cc=max-age=1", "");
    assert_eq!(
        (again.text().as_str(), status_field(&again)),
        ("call 1", "axkit; hit")
    );
}

#[test]
fn stale_if_error_serves_the_stale_entry() {
    let srv = start(1, "", "");
    let path = "/flaky?cc=max-age=1,stale-if-error=60";
    assert_eq!(get(&srv, path, "").text(), "call 1");
    assert_eq!(get(&srv, "/flaky2?cc=max-age=0", "").text(), "call 1");
    assert_eq!(get(&srv, "/break", "").status, 200);
    let r = first_not_a_hit(|| get(&srv, path, ""));
    assert_eq!((r.status, r.text().as_str()), (200, "call 1"));
    assert_eq!(status_field(&r), "axkit; fwd=stale; fwd-status=503");
    // Without stale-if-error (and without validators, nothing to keep a
    // stale entry for), the error goes through.
    let r = get(&srv, "/flaky2?cc=max-age=0", "");
    assert_eq!((r.status, status_field(&r)), (503, "axkit; fwd=uri-miss"));
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    for (workers, global, server) in [
        (1, "", ""),
        (2, "SharedZone cache 8M", "    CacheStore shared"),
    ] {
        let srv = start(
            workers,
            global,
            &format!("{server}\n    Plugin request_log\n    RequestLog {{dir}}/access.log"),
        );
        let path = "/gated";
        // Every request for it the test makes, to compare with the log.
        let asked = std::cell::Cell::new(0);
        // As curl asks: the Host with the server's port, which the
        // background refresh must keep, or it refreshes another entry.
        let get = |srv: &Axkit, path: &str, headers: &str| {
            if path == "/gated" {
                asked.set(asked.get() + 1);
            }
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
                srv.addr
            );
            parse_response(&srv.exchange(req.as_bytes()).0).expect("a response")
        };
        let first = get(&srv, path, "");
        assert_eq!(first.text(), "call 1");
        assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
        // Once stale, the client gets the stale entry at once, while a
        // background request asks the origin (which holds its answer
        // until /open).
        let r = first_not_a_hit(|| get(&srv, path, ""));
        assert_eq!((r.status, r.text().as_str()), (200, "call 1"));
        assert_eq!(
            status_field(&r),
            "axkit; hit; detail=stale-while-revalidate"
        );
        assert!(wait_until(Duration::from_secs(5), || calls(&srv, path) == "2"));
        // While the refresh is out, clients keep getting the stale entry
        // and start no other refresh.
        for _ in 0..5 {
            let r = get(&srv, path, "");
            assert_eq!(
                (r.text().as_str(), status_field(&r)),
                ("call 1", "axkit; hit; detail=stale-while-revalidate")
            );
        }
        assert_eq!(get(&srv, "/open", "").status, 200);
        assert!(wait_until(Duration::from_secs(5), || {
            get(&srv, path, "").text() == "call 2"
        }));
        let r = get(&srv, path, "");
        assert_eq!(
            (r.text().as_str(), status_field(&r)),
            ("call 2", "axkit; hit")
        );
        assert_eq!(calls(&srv, path), "2", "{workers} workers");
        // The refresh is no client's request: the access log has only
        // theirs.
        let logged = || {
            std::fs::read_to_string(srv.dir.path().join("access.log"))
                .unwrap_or_default()
                .matches("\"GET /gated ")
                .count()
        };
        assert!(wait_until(Duration::from_secs(5), || logged() >= asked.get()));
        assert_eq!(logged(), asked.get());
    }
}

#[test]
fn collapsing_per_worker() {
    let srv = start(2, "", "");
    stampede(srv.addr, "/slow?cc=max-age=60", 50);
    let n: u32 = calls(&srv, "/slow").parse().unwrap();
    assert!((1..=2).contains(&n), "{n} origin calls for 2 workers");
}

#[test]
fn collapsing_across_workers_with_the_shared_tier() {
    let srv = start(2, "SharedZone cache 8M", "    CacheStore shared");
    stampede(srv.addr, "/slow?cc=max-age=60", 50);
    assert_eq!(calls(&srv, "/slow"), "1");
    let hit = get(&srv, "/slow?cc=max-age=60", "");
    assert_eq!(
        (hit.text().as_str(), status_field(&hit)),
        ("call 1", "axkit; hit")
    );
}

#[test]
fn purge_allowed_and_denied() {
    let srv = start(1, "", "    CachePurgeFrom 127.0.0.0/8");
    assert_eq!(get(&srv, "/a?cc=max-age=60", "").text(), "call 1");
    assert_eq!(request(&srv, "PURGE", "/a?cc=max-age=60", "").status, 200);
    assert_eq!(request(&srv, "PURGE", "/a?cc=max-age=60", "").status, 404);
    let r = get(&srv, "/a?cc=max-age=60", "");
    assert_eq!(
        (r.text().as_str(), status_field(&r)),
        ("call 2", "axkit; fwd=uri-miss; stored")
    );

    let denied = start(1, "", "    CachePurgeFrom 10.0.0.0/8");
    assert_eq!(get(&denied, "/a?cc=max-age=60", "").text(), "call 1");
    assert_eq!(
        request(&denied, "PURGE", "/a?cc=max-age=60", "").status,
        403
    );
    assert_eq!(
        status_field(&get(&denied, "/a?cc=max-age=60", "")),
        "axkit; hit"
    );
}

#[test]
fn a_head_miss_stores_nothing() {
    let srv = start(1, "", "");
    let head = request(&srv, "HEAD", "/h?cc=max-age=60", "");
    assert_eq!(
        (head.status, status_field(&head)),
        (200, "axkit; fwd=uri-miss")
    );
    let r = get(&srv, "/h?cc=max-age=60", "");
    assert_eq!(
        (r.text().as_str(), status_field(&r)),
        ("call 2", "axkit; fwd=uri-miss; stored")
    );
}

/// `GET path` on a kept-alive connection.
fn ask(conn: &mut std::net::TcpStream, path: &str) -> Response {
    use std::io::Write;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    read_one_response(conn).unwrap().expect("a response")
}

#[test]
fn purge_reaches_every_workers_memory_tier() {
    let srv = start(2, "", "    CachePurgeFrom 127.0.0.0/8");
    // A kept-alive connection to each worker.
    let mut conns: Vec<(i32, std::net::TcpStream)> = Vec::new();
    for _ in 0..200 {
        if conns.len() == 2 {
            break;
        }
        let c = srv.connect();
        let mut pid = None;
        assert!(wait_until(Duration::from_secs(5), || {
            pid = srv.worker_serving(&c);
            pid.is_some()
        }));
        if !conns.iter().any(|(p, _)| Some(*p) == pid) {
            conns.push((pid.unwrap(), c));
        }
    }
    assert_eq!(conns.len(), 2, "no connection reached the second worker");
    let path = "/pw?cc=max-age=60";
    for (_, c) in &mut conns {
        ask(c, path);
        assert_eq!(status_field(&ask(c, path)), "axkit; hit");
    }
    let purge = request(&srv, "PURGE", path, "");
    assert!(matches!(purge.status, 200 | 404), "{}", purge.status);
    // Each worker's entry goes (the broadcast reaches the other worker
    // a moment later): its next answer is a miss.
    for (pid, c) in &mut conns {
        assert!(
            wait_until(Duration::from_secs(5), || status_field(&ask(c, path))
                != "axkit; hit"),
            "worker {pid} kept its entry"
        );
    }
}

#[test]
fn unsafe_methods_invalidate_the_uri_and_its_location() {
    let srv = start(1, "", "");
    let path = "/inv?cc=max-age=60";
    assert_eq!(get(&srv, path, "").text(), "call 1");
    assert_eq!(status_field(&get(&srv, path, "")), "axkit; hit");
    for (n, method) in [(2, "POST"), (4, "PUT"), (6, "DELETE"), (8, "PATCH")] {
        let r = request(&srv, method, path, "");
        assert_eq!((r.status, r.text()), (200, format!("call {n}")), "{method}");
        let after = get(&srv, path, "");
        assert_eq!(
            (after.text(), status_field(&after)),
            (format!("call {}", n + 1), "axkit; fwd=uri-miss; stored"),
            "{method}"
        );
    }
    // Location on the same host goes too; on another host it stays.
    let target = "/target?cc=max-age=60";
    let other = "/target2?cc=max-age=60";
    get(&srv, target, "");
    get(&srv, other, "");
    request(&srv, "POST", "/form?loc=/target%3Fcc%3Dmax-age%3D60", "");
    request(
        &srv,
        "POST",
        "/form?loc=http://elsewhere.example/target2%3Fcc%3Dmax-age%3D60",
        "",
    );
    assert_eq!(
        status_field(&get(&srv, target, "")),
        "axkit; fwd=uri-miss; stored"
    );
    assert_eq!(status_field(&get(&srv, other, "")), "axkit; hit");
}

/// An ErrorDocument page in front of the cache: its walk is the page's,
/// not the URL's. It used to be answered from the page's own entry (a
/// 200), with the page's `ETag` and `Last-Modified` on the 404 and a 304
/// to `If-None-Match: *` for a URL that does not exist; and a 404 made
/// storable was stored as the page's own URL's entry.
#[test]
fn an_error_page_is_neither_answered_from_nor_stored_as_its_own_entry() {
    let conf = "\
Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    Plugin cache
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin headers
    Plugin serve_file
    Plugin error_doc
    Cache On
    CachePurgeFrom 127.0.0.1
    CacheControl \"public, max-age=300\"
    Header always set Cache-Control \"public, max-age=300\" status=404
    ErrorDocument 404 /errors/404.html
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("www/errors/404.html", "<h1>not here</h1>");
    });
    let page = "/errors/404.html";
    let first = get(&srv, page, "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    let etag = first.header("ETag").expect("the page's ETag").to_string();
    for conditional in [
        String::new(),
        "If-None-Match: *\r\n".to_string(),
        format!("If-None-Match: {etag}\r\n"),
        "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n".to_string(),
        "If-Match: \"other\"\r\n".to_string(),
    ] {
        let r = get(&srv, "/nope", &conditional);
        assert_eq!(r.status, 404, "{conditional}");
        assert_eq!(r.text(), "<h1>not here</h1>", "{conditional}");
        assert_eq!(r.header("ETag"), None, "{conditional}");
        assert_eq!(r.header("Last-Modified"), None, "{conditional}");
    }
    // Without the page's entry, the 404 (storable here) is not stored as it.
    assert_eq!(request(&srv, "PURGE", page, "").status, 200);
    assert_eq!(get(&srv, "/nope", "").status, 404);
    let again = get(&srv, page, "");
    assert_eq!(
        (again.status, again.text().as_str()),
        (200, "<h1>not here</h1>")
    );
}

/// `PURGE /d` for a directory `d` of the files a Location serves: the
/// slash redirect comes after the access phases, so the cache's PURGE
/// (answered in `fixup`, after them too) is reached. It used to be
/// answered 301 by the translation, before any access phase.
#[test]
fn purge_of_a_directory_without_its_slash_purges() {
    let conf = |purge_from: &str| {
        format!(
            "\
Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {{dir}}/www
    Plugin cache
    Plugin access
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin headers
    Plugin serve_dir
    Plugin serve_file
    Cache On
    CachePurgeFrom {purge_from}
    Header set Cache-Control \"public, max-age=300\"
    <Location /locked>
        Deny from all
    </Location>
</Server>
"
        )
    };
    let dirs = |d: &TempDir| {
        d.write("www/d/a.txt", "a");
        d.write("www/locked/a.txt", "a");
    };
    let srv = Axkit::start_single_with(&conf("127.0.0.1"), dirs);
    let redirect = get(&srv, "/d", "");
    assert_eq!(
        (redirect.status, redirect.header("Location")),
        (301, Some("/d/"))
    );
    assert_eq!(status_field(&redirect), "axkit; fwd=uri-miss; stored");
    assert_eq!(get(&srv, "/d/", "").status, 200);
    assert_eq!(request(&srv, "PURGE", "/d", "").status, 200);
    assert_eq!(request(&srv, "PURGE", "/d", "").status, 404);
    // Exactly that key: the listing's entry stays.
    assert_eq!(status_field(&get(&srv, "/d/", "")), "axkit; hit");
    assert_eq!(
        status_field(&get(&srv, "/d", "")),
        "axkit; fwd=uri-miss; stored"
    );
    // The Location's rules hold for a PURGE (and a GET) all the same.
    assert_eq!(request(&srv, "PURGE", "/locked", "").status, 403);
    assert_eq!(get(&srv, "/locked", "").status, 403);

    let elsewhere = Axkit::start_single_with(&conf("10.0.0.0/8"), dirs);
    assert_eq!(get(&elsewhere, "/d", "").status, 301);
    assert_eq!(request(&elsewhere, "PURGE", "/d", "").status, 403);
    assert_eq!(status_field(&get(&elsewhere, "/d", "")), "axkit; hit");
}

/// A session's cookie is added by work on the head registered after the
/// cache's decision to store: the page used to be stored with it, and
/// every later client got a hit carrying the first one's session.
#[test]
fn a_cookie_added_as_the_head_goes_out_is_not_stored() {
    const PAGE: &str = r#"
function hook_response(r)
  local s = session.get(r)
  s.visits = (s.visits or 0) + 1
  r:set_header("Content-Type", "text/plain")
  r:set_header("Cache-Control", "max-age=60")
  r:write("visits ", s.visits)
  return OK
end
"#;
    let conf = lua::conf(
        "SessionKey k1 {dir}/k1.key",
        "    Plugin cache\n    Cache On\n    Plugin sess",
    );
    let srv = lua::start_with(&conf, &[("sess", PAGE)], |d| {
        d.write("k1.key", "first-key-0123456789abcdefghijklmnopqrstuvwxyz\n");
    });
    let mut cookies = Vec::new();
    for _ in 0..2 {
        let r = get(&srv, "/s", "");
        assert_eq!(
            (r.status, r.text().as_str(), status_field(&r)),
            (200, "visits 1", "axkit; fwd=uri-miss")
        );
        let cookie = r.header("Set-Cookie").expect("the client's own session");
        assert!(cookie.starts_with("axkit_session="), "{cookie}");
        cookies.push(cookie.to_string());
    }
    assert_ne!(cookies[0], cookies[1]);
}

/// A 304 from the origin that sets a cookie refreshes the entry without
/// it: the cookie goes to the client the 304 answered, and no further.
#[test]
fn a_cookie_on_a_304_goes_to_its_client_only() {
    let srv = start(1, "", "");
    let path = "/etag?cc=max-age=1&sc=sid%3DSECRET";
    let first = get(&srv, path, "");
    assert_eq!(status_field(&first), "axkit; fwd=uri-miss; stored");
    let r = first_not_a_hit(|| get(&srv, path, ""));
    assert_eq!(
        (r.status, status_field(&r), r.header("Set-Cookie")),
        (200, "axkit; fwd=stale; fwd-status=304", Some("sid=SECRET"))
    );
    let hit = get(&srv, path, "");
    assert_eq!(
        (
            hit.text().as_str(),
            status_field(&hit),
            hit.header("Set-Cookie")
        ),
        ("call 1", "axkit; hit", None)
    );
}

/// An `Accept-Encoding` with a byte that is not UTF-8 was keyed as an
/// absent one: its gzip variant was then the answer to a client that
/// accepts no coding at all.
#[test]
fn a_vary_value_that_is_not_utf8_is_a_variant_of_its_own() {
    let srv = start(1, "Plugin compress", "");
    let path = "/ae?cc=max-age=60&pad=400";
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip, ").into_bytes();
    req.extend_from_slice(b"\xff\r\nConnection: close\r\n\r\n");
    let gzip = parse_response(&srv.exchange(&req).0).expect("a response");
    assert_eq!(
        (
            gzip.status,
            gzip.header("Content-Encoding"),
            status_field(&gzip)
        ),
        (200, Some("gzip"), "axkit; fwd=uri-miss; stored")
    );
    let plain = get(&srv, path, "");
    assert_eq!(
        (plain.header("Content-Encoding"), status_field(&plain)),
        (None, "axkit; fwd=vary-miss; stored")
    );
    assert!(plain.text().starts_with("call 2"), "{}", plain.text());
}

/// stale-if-error over an error its producer streams (a proxied 5xx, a
/// script that flushed): the stale head used to go out with the error's
/// body.
#[test]
fn stale_if_error_replaces_a_streamed_error_body() {
    let srv = start(1, "", "");
    let path = "/flaky?cc=max-age=1,stale-if-error=60&stream=300000";
    assert_eq!(get(&srv, path, "").text(), "call 1");
    assert_eq!(get(&srv, "/break", "").status, 200);
    let r = first_not_a_hit(|| get(&srv, path, ""));
    assert_eq!(
        (r.status, status_field(&r)),
        (200, "axkit; fwd=stale; fwd-status=503")
    );
    let body = r.text();
    assert!(body == "call 1", "{} bytes of the error's body", body.len());
}

/// Two `<Server>`s share the worker's tier: a request to the first with
/// the second's name in its Host used to fill the entry the second then
/// answered its own clients from.
#[test]
fn one_server_does_not_answer_from_anothers_entries() {
    const OTHER: &str = r#"
function hook_response(r)
  r:set_header("Cache-Control", "max-age=60")
  r:write("server b")
  return OK
end
"#;
    let b = std::net::SocketAddr::from(([127, 0, 0, 1], services::free_port()));
    let conf = format!(
        "PluginDir {{dir}}/plugins\nPlugin logging/warn\nWorkers 1\n\
         <Server>\n    Listen 127.0.0.1:0\n    Plugin cache\n    Cache On\n    Plugin origin\n</Server>\n\
         <Server>\n    Listen {b}\n    ServerName www.example.com\n    Plugin cache\n    Cache On\n    \
         Plugin other\n</Server>\n"
    );
    let srv = Axkit::start_with(&conf, &[], |d| {
        d.write("plugins/origin.lua", ORIGIN);
        d.write("plugins/other.lua", OTHER);
    });
    let ask = |addr| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(
            &mut s,
            b"GET /z?cc=max-age=60 HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        parse_response(&read_until_close(&mut s, Duration::from_secs(10)).0).expect("a response")
    };
    let a = ask(srv.addr);
    assert_eq!(
        (a.text().as_str(), status_field(&a)),
        ("call 1", "axkit; fwd=uri-miss; stored")
    );
    let r = ask(b);
    assert_eq!(
        (r.text().as_str(), status_field(&r)),
        ("server b", "axkit; fwd=uri-miss; stored")
    );
    assert_eq!(status_field(&ask(srv.addr)), "axkit; hit");
}

/// PURGE and an unsafe method remove every variant of the URL: only the
/// list of varied headers used to go, and the next fill wrote it back,
/// making the other variants' old entries reachable again.
#[test]
fn purge_and_invalidation_reach_every_variant() {
    let srv = start(1, "", "    CachePurgeFrom 127.0.0.0/8");
    let path = "/vary?cc=max-age=60";
    let ask = |lang: &str| {
        let r = get(&srv, path, &format!("Accept-Language: {lang}\r\n"));
        (r.text(), status_field(&r).to_string())
    };
    let fresh = |n: u32, lang: &str, why: &str| {
        (
            format!("call {n} {lang}"),
            format!("axkit; fwd={why}; stored"),
        )
    };
    assert_eq!(ask("en"), fresh(1, "en", "uri-miss"));
    assert_eq!(ask("fr"), fresh(2, "fr", "vary-miss"));
    assert_eq!(request(&srv, "PURGE", path, "").status, 200);
    assert_eq!(ask("en"), fresh(3, "en", "uri-miss"));
    assert_eq!(ask("fr"), fresh(4, "fr", "vary-miss"));
    assert_eq!(request(&srv, "POST", path, "").status, 200);
    assert_eq!(ask("fr"), fresh(6, "fr", "uri-miss"));
    assert_eq!(ask("en"), fresh(7, "en", "vary-miss"));
    assert_eq!(
        ask("en"),
        ("call 7 en".to_string(), "axkit; hit".to_string())
    );
}
