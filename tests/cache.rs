//! The `cache` plugin end to end, with the real binary in front of a Lua
//! origin that counts its own calls in a shared zone (so the count covers
//! every worker): a miss then a hit, what is never stored (no-store,
//! private, Authorization), Vary, expiry and revalidation with a 304 from
//! the origin, stale-if-error, request collapsing (per worker, and across
//! workers with the shared tier), PURGE, HEAD from a GET entry, and the
//! exact `Cache-Status` values.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::time::Duration;

use common::*;

/// The origin: `/calls?p=PATH` says how often PATH was served; every other
/// path counts itself and answers `call N`, with `Cache-Control` from
/// `?cc=`, and: `/vary…` varies by Accept-Language; `/etag…` has an ETag
/// and answers 304 to it; `/flaky…` answers 503 once `/break` was called;
/// `/slow…` takes half a second; `/auth…` and `/cookie…` as named.
const ORIGIN: &str = r#"
function hook_response(r)
  local p = r:path()
  if p == "/calls" then
    r:write(tostring(shared.get("calls:" .. r:param("p")) or 0))
    return OK
  end
  if p == "/break" then
    shared.set("broken", true)
    return OK
  end
  if p:sub(1, 6) == "/flaky" and shared.get("broken") then
    return 503
  end
  local n = shared.incr("calls:" .. p, 1, 0)
  r:set_header("Content-Type", "text/plain")
  if r:param("cc") then r:set_header("Cache-Control", r:param("cc")) end
  if p:sub(1, 7) == "/cookie" then r:set_header("Set-Cookie", "a=b") end
  if p:sub(1, 5) == "/slow" then sleep(0.5) end
  if p:sub(1, 5) == "/etag" then
    r:set_header("ETag", '"v1"')
    if r:header("If-None-Match") == '"v1"' then
      r:status(304)
      return OK
    end
  end
  if p:sub(1, 5) == "/vary" then
    r:set_header("Vary", "Accept-Language")
    r:write("call ", n, " ", r:header("Accept-Language") or "-")
    return OK
  end
  r:write("call ", n)
  return OK
end
"#;

fn start(workers: usize, global: &str, server: &str) -> Axkit {
    let conf = lua::conf(
        &format!("Workers {workers}\n{global}"),
        &format!("    Plugin cache\n    Cache On\n{server}\n    Plugin origin"),
    );
    Axkit::start_with(&conf, &[], |d| {
        d.write("plugins/origin.lua", ORIGIN);
    })
}

fn calls(srv: &Axkit, path: &str) -> String {
    get(srv, &format!("/calls?p={path}"), "").text()
}

fn status_field(r: &Response) -> &str {
    r.header("Cache-Status").unwrap_or("(none)")
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
    let mut seen = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let r = get(&srv, "/etag?cc=max-age=1", "");
        let stale = status_field(&r) != "axkit; hit";
        seen = Some(r);
        stale
    }));
    let r = seen.unwrap();
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
    let mut seen = None;
    assert!(wait_until(Duration::from_secs(5), || {
        let r = get(&srv, path, "");
        let stale = status_field(&r) != "axkit; hit";
        seen = Some(r);
        stale
    }));
    let r = seen.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "call 1"));
    assert_eq!(status_field(&r), "axkit; fwd=stale; fwd-status=503");
    // Without stale-if-error (and without validators, nothing to keep a
    // stale entry for), the error goes through.
    let r = get(&srv, "/flaky2?cc=max-age=0", "");
    assert_eq!((r.status, status_field(&r)), (503, "axkit; fwd=uri-miss"));
}

/// 50 concurrent requests for one key; every one answered with the body
/// of the single fill it waited for.
fn stampede(srv: &Axkit, path: &str) {
    let addr = srv.addr;
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let path = path.to_string();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                use std::io::Write;
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let (bytes, _) = read_until_close(&mut s, Duration::from_secs(20));
                parse_response(&bytes).expect("a response")
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("call "), "{}", r.text());
    }
}

#[test]
fn collapsing_per_worker() {
    let srv = start(2, "", "");
    stampede(&srv, "/slow?cc=max-age=60");
    let n: u32 = calls(&srv, "/slow").parse().unwrap();
    assert!((1..=2).contains(&n), "{n} origin calls for 2 workers");
}

#[test]
fn collapsing_across_workers_with_the_shared_tier() {
    let srv = start(2, "SharedZone cache 8M", "    CacheStore shared");
    stampede(&srv, "/slow?cc=max-age=60");
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
