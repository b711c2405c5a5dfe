//! Sessions, CSRF tokens, crypto and cookies, end to end with the real
//! binary and Lua scripts: a cookie session round-trips (encrypted: the
//! cookie does not show its data; signed only: it does, and still cannot
//! be changed); a cookie changed, garbled or signed by an unknown key is a
//! fresh session, never an error; key rotation (an old cookie read, then
//! written with the new key); the idle timeout and maximum age (a server
//! store's visitor without a record too); sessions
//! on the server in a shared zone (seen by both workers), Redis (a store
//! that is down: a fresh session on read, 503 on write) and SQLite;
//! regenerate and destroy (an id ended never taken up again); a planted visitor's cookie that never
//! shares the login that follows, even without `regenerate` (fixation); CSRF accepted and refused (403, logged), its
//! token good for a session without data that no store keeps (a flood of
//! them evicts no one); `Secure` behind a trusted proxy that says https;
//! argon2id hashes that verify, computed off the event loop (another
//! request is answered while one runs); cookie values that need encoding;
//! `--check` and `--directives`.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;

use std::collections::HashSet;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use lua::*;
use services::Redis;

const KEY1: &str = "first-key-0123456789abcdefghijklmnopqrstuvwxyz\n";
const KEY2: &str = "second-key-0123456789abcdefghijklmnopqrstuvwxyz\n";

/// `/set?v=` keeps `user`, a number and a table; `/get` shows them and
/// whether the session is new; `/add` counts; `/regenerate`, `/destroy`;
/// `/token`, `/post`, `/login` (CSRF; a new id and a `user`) and
/// `/signin` (CSRF and a `user`: a log-in without `regenerate`);
/// `/hash`, `/verify`, `/slowhash`, `/ping` (crypto); `/setcookie?v=` and
/// `/readcookie` (cookie encoding); `/entries?zone=` (a zone's entries).
/// Each answer starts with the number this worker drew (`me`).
const APP: &str = r#"
local id
local function me()
  id = id or shared.incr("worker-ids", 1, 0)
  return id
end

function hook_response(r)
  local p = r:path()
  r:set_header("Content-Type", "text/plain")
  if p == "/ping" then
    r:write("pong")
    return OK
  elseif p == "/hash" then
    r:write(crypto.hash_password(r:param("pw")))
    return OK
  elseif p == "/verify" then
    local ok, err = crypto.verify_password(r:param("pw"), r:param("h"))
    r:write(tostring(ok), " ", tostring(err))
    return OK
  elseif p == "/slowhash" then
    r:log("info", "hashing starts")
    local h
    for _ = 1, 40 do h = crypto.hash_password("pw") end
    r:write(tostring(crypto.verify_password("pw", h)))
    return OK
  elseif p == "/crypto" then
    r:write(crypto.hex(crypto.hmac("Jefe", "what do ya want for nothing?")), " ",
            #crypto.random(16), " ", tostring(crypto.equal("a", "a")), " ",
            tostring(crypto.equal("a", "b")), " ", crypto.base64url("\251\255"), " ",
            crypto.hex(crypto.from_base64url("-_8")))
    return OK
  elseif p == "/setcookie" then
    r:set_cookie("odd", r:param("v"), { path = "/", same_site = "Strict" })
    r:write("set")
    return OK
  elseif p == "/readcookie" then
    r:write(r:cookie("odd"))
    return OK
  elseif p == "/flag" then
    r:write(tostring(shared.get(r:param("k"))))
    return OK
  elseif p == "/go" then
    shared.set("go", true)
    r:write("go")
    return OK
  elseif p == "/entries" then
    r:write(shared.zone(r:param("zone")):stats().entries)
    return OK
  end
  local s = session.get(r)
  r:write(me(), " ")
  if p == "/set" then
    s.user = r:param("v")
    s:set("n", 42)
    s.t = { a = 1, list = { "x", "y" } }
    r:write("set")
  elseif p == "/get" then
    r:write(tostring(s.user), " ", tostring(s:get("n")), " ",
            s.t and (s.t.a .. s.t.list[2]) or "nil", " ", tostring(s:is_new()))
  elseif p == "/add" then
    s.count = (s.count or 0) + 1
    r:write(s.count)
  elseif p == "/regenerate" then
    s:regenerate()
    r:write("regenerated")
  elseif p == "/destroy" then
    s:destroy()
    r:write("destroyed")
  elseif p == "/slow" then
    -- Read, then wait for `/go` (at most 10 s), then set `v` if given.
    shared.set("reading", true)
    for _ = 1, 1000 do
      if shared.get("go") then break end
      sleep(0.01)
    end
    shared.delete("go")
    shared.delete("reading")
    if r:param("v") then s.late = r:param("v") end
    r:write("slow ", tostring(s.user), " ", tostring(s.count))
  elseif p == "/stream" then
    s.user = "streamer"
    r:flush()
    local ok, err = pcall(function() s.user = "late" end)
    r:write(tostring(ok), " ", err)
  elseif p == "/token" then
    r:write(session.csrf_token(r))
  elseif p == "/post" then
    if not session.check_csrf(r) then
      return 403
    end
    r:write("accepted ", r:form().msg)
  elseif p == "/login" then
    if not session.check_csrf(r) then
      return 403
    end
    s:regenerate()
    s.user = r:form().user
    r:write("welcome")
  elseif p == "/signin" then
    -- A log-in that forgets `regenerate`.
    if not session.check_csrf(r) then
      return 403
    end
    s.user = r:form().user
    r:write("welcome")
  end
  return OK
end
"#;

fn global(keys: &[(&str, &str)], more: &str) -> String {
    let mut out = String::new();
    for (name, _) in keys {
        out.push_str(&format!("SessionKey {name} {{dir}}/{name}.key\n"));
    }
    out + more
}

/// One process (`--no-master`) with `keys` (name, file contents) and
/// `more` global directives.
fn server(keys: &[(&str, &str)], more: &str) -> Axkit {
    let conf = conf(&global(keys, more), "Plugin app");
    start_with(&conf, &[("app", APP)], |d| {
        for (name, contents) in keys {
            d.write(&format!("{name}.key"), contents);
        }
    })
}

/// The value of the session cookie the response sets, if it sets one.
fn set_session(res: &Response) -> Option<String> {
    res.header_all("Set-Cookie").into_iter().find_map(|h| {
        let value = h.strip_prefix("axkit_session=")?;
        Some(value.split(';').next().unwrap().to_string())
    })
}

fn set_cookie_header(res: &Response) -> String {
    res.header_all("Set-Cookie")
        .into_iter()
        .find(|h| h.starts_with("axkit_session="))
        .unwrap_or_else(|| panic!("no session cookie set: {:?}", res.header_all("Set-Cookie")))
        .to_string()
}

fn with_cookie(srv: &Axkit, path: &str, cookie: &str) -> Response {
    get(srv, path, &format!("Cookie: axkit_session={cookie}\r\n"))
}

/// The answer without the worker's number.
fn text(res: &Response) -> String {
    let t = res.text();
    t.split_once(' ')
        .map_or(t.clone(), |(_, rest)| rest.to_string())
}

/// Every base64url part of a cookie value, decoded.
fn decoded_parts(cookie: &str) -> Vec<u8> {
    cookie
        .split('.')
        .filter_map(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .flatten()
        .collect()
}

#[test]
fn cookie_sessions_round_trip_encrypted_with_secure_attributes() {
    let srv = server(&[("k1", KEY1)], "");
    // A new session that nothing is set in costs no cookie.
    let res = srv.get("/get");
    assert_eq!(text(&res), "nil nil nil true");
    assert_eq!(set_session(&res), None);

    let res = srv.get("/set?v=ada-the-secret");
    assert_eq!(res.status, 200);
    let header = set_cookie_header(&res);
    for attribute in ["; Path=/", "; SameSite=Lax", "; HttpOnly"] {
        assert!(header.contains(attribute), "{header}");
    }
    // Not over TLS, so not Secure (Secure=auto), and a browser-session
    // cookie (no Max-Age).
    assert!(
        !header.contains("Secure") && !header.contains("Max-Age"),
        "{header}"
    );
    let cookie = set_session(&res).unwrap();
    assert!(cookie.starts_with("e.k1."), "{cookie}");
    let plain = decoded_parts(&cookie);
    assert!(
        !plain.windows(14).any(|w| w == b"ada-the-secret"),
        "the encrypted cookie shows its data"
    );

    let res = with_cookie(&srv, "/get", &cookie);
    assert_eq!(text(&res), "ada-the-secret 42 1y false");
    // Read, not changed: not written again.
    assert_eq!(set_session(&res), None);
    // Counted across requests, following the cookie.
    let mut cookie = set_session(&srv.get("/add")).unwrap();
    for n in 2..=3 {
        let res = with_cookie(&srv, "/add", &cookie);
        assert_eq!(text(&res), n.to_string());
        cookie = set_session(&res).unwrap();
    }
}

#[test]
fn secure_auto_follows_the_scheme_a_trusted_proxy_says() {
    let srv = server(&[("k1", KEY1)], "TrustedProxy 127.0.0.1");
    // TLS ends at the front proxy: its X-Forwarded-Proto says https.
    let res = get(&srv, "/set?v=ada", "X-Forwarded-Proto: https\r\n");
    let header = set_cookie_header(&res);
    assert!(header.contains("; Secure"), "{header}");
    let res = get(&srv, "/set?v=ada", "X-Forwarded-Proto: http\r\n");
    let header = set_cookie_header(&res);
    assert!(!header.contains("Secure"), "{header}");
    // Only a trusted proxy's word counts.
    let srv = server(&[("k1", KEY1)], "TrustedProxy 192.0.2.1");
    let res = get(&srv, "/set?v=ada", "X-Forwarded-Proto: https\r\n");
    let header = set_cookie_header(&res);
    assert!(!header.contains("Secure"), "{header}");
}

#[test]
fn a_streamed_response_carries_the_session_and_refuses_later_changes() {
    let srv = server(&[("k1", KEY1)], "");
    let res = srv.get("/stream");
    assert!(
        text(&res).starts_with("false ")
            && text(&res).contains("session: the response head has gone out"),
        "{}",
        res.text()
    );
    let cookie = set_session(&res).expect("the Set-Cookie went with the head");
    assert_eq!(
        text(&with_cookie(&srv, "/get", &cookie)),
        "streamer nil nil false"
    );
}

#[test]
fn signed_cookies_show_their_data_and_still_cannot_be_changed() {
    let srv = server(
        &[("k1", KEY1)],
        "SessionEncrypt Off\nSessionCookie sid Persistent=on",
    );
    let res = srv.get("/set?v=ada-the-secret");
    let header = res
        .header_all("Set-Cookie")
        .into_iter()
        .find(|h| h.starts_with("sid="))
        .unwrap()
        .to_string();
    // Persistent: Max-Age is the session's life left (SessionTimeout 1h).
    assert!(header.contains("; Max-Age=3600"), "{header}");
    let cookie = header["sid=".len()..header.find(';').unwrap()].to_string();
    assert!(cookie.starts_with("s.k1."), "{cookie}");
    let plain = decoded_parts(&cookie);
    assert!(plain.windows(14).any(|w| w == b"ada-the-secret"));
    let get = |cookie: &str| get(&srv, "/get", &format!("Cookie: sid={cookie}\r\n"));
    assert_eq!(text(&get(&cookie)), "ada-the-secret 42 1y false");

    // The data changed by the client (same length, re-encoded): refused.
    let parts: Vec<&str> = cookie.split('.').collect();
    let mut record = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let at = record.windows(3).position(|w| w == b"ada").unwrap();
    record[at..at + 3].copy_from_slice(b"eve");
    let forged = format!("s.k1.{}.{}", URL_SAFE_NO_PAD.encode(&record), parts[3]);
    let res = get(&forged);
    assert_eq!((res.status, text(&res)), (200, "nil nil nil true".into()));
}

#[test]
fn forged_garbled_and_unknown_cookies_are_fresh_sessions() {
    let mut srv = server(&[("k1", KEY1)], "");
    let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
    let mut bad: Vec<String> = vec![
        String::new(),
        "garbage".into(),
        "e.k1.".into(),
        "e.k1".into(),
        "e.nokey.AAAA".into(),
        "s.k1.AAAA.AAAA".into(),
        "i.k1.AAAA.AAAA".into(),
        "%00%ff\\\"".into(),
        cookie[..cookie.len() - 5].to_string(),
        format!("{cookie}AAAA"),
        format!("{cookie}.x"),
        cookie.replacen("e.k1.", "e.k2.", 1),
    ];
    // Every position changed in turn (a sample, to stay fast).
    for at in (5..cookie.len()).step_by(7) {
        let mut bytes = cookie.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        bad.push(String::from_utf8(bytes).unwrap());
    }
    for value in &bad {
        let res = with_cookie(&srv, "/get", value);
        assert_eq!(
            (res.status, text(&res)),
            (200, "nil nil nil true".to_string()),
            "cookie {value:?}"
        );
    }
    assert_eq!(text(&with_cookie(&srv, "/get", &cookie)), "ada 42 1y false");
    let log = srv.sync_stderr();
    assert!(!log.contains("error"), "{log}");
}

#[test]
fn rotated_keys_read_old_cookies_and_write_new_ones() {
    let old = {
        let srv = server(&[("k1", KEY1)], "");
        set_session(&srv.get("/set?v=ada")).unwrap()
    };
    // The new key first, the old one kept: the old cookie is read, and
    // written again with the new key.
    let srv = server(&[("k2", KEY2), ("k1", KEY1)], "");
    let res = with_cookie(&srv, "/get", &old);
    assert_eq!(text(&res), "ada 42 1y false");
    let new = set_session(&res).expect("re-signed with the new key");
    assert!(new.starts_with("e.k2."), "{new}");
    assert_eq!(text(&with_cookie(&srv, "/get", &new)), "ada 42 1y false");
    drop(srv);
    // The old key gone: its cookies are fresh sessions, the new ones read.
    let srv = server(&[("k2", KEY2)], "");
    assert_eq!(text(&with_cookie(&srv, "/get", &old)), "nil nil nil true");
    assert_eq!(text(&with_cookie(&srv, "/get", &new)), "ada 42 1y false");
    // Same name, other secret: nothing verifies.
    let srv = server(&[("k2", KEY1)], "");
    assert_eq!(text(&with_cookie(&srv, "/get", &new)), "nil nil nil true");
}

#[test]
fn sessions_expire_idle_and_by_age() {
    // Idle: the client keeps sending the cookie it got (whose last-use
    // time is inside it), so nothing pushes the timeout back.
    let srv = server(&[("k1", KEY1)], "SessionTimeout 1s\nSessionMaxAge 0");
    let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
    assert_eq!(text(&with_cookie(&srv, "/get", &cookie)), "ada 42 1y false");
    assert!(
        wait_until(Duration::from_secs(10), || text(&with_cookie(
            &srv, "/get", &cookie
        )) == "nil nil nil true"),
        "an idle session did not expire"
    );

    // Age: a session followed through every Set-Cookie (so never idle)
    // still ends SessionMaxAge after it began.
    let srv = server(&[("k1", KEY1)], "SessionTimeout 0\nSessionMaxAge 1s");
    let mut cookie = set_session(&srv.get("/add")).unwrap();
    let mut seen = 1;
    let ended = wait_until(Duration::from_secs(10), || {
        let res = with_cookie(&srv, "/add", &cookie);
        let n: u32 = text(&res).parse().unwrap();
        if let Some(c) = set_session(&res) {
            cookie = c;
        }
        let restarted = n <= seen;
        seen = n;
        restarted
    });
    assert!(ended && seen == 1, "the session outlived SessionMaxAge");

    // A visitor's session without data on a server store (an `n` cookie:
    // no record, so when it began is in the cookie) ends as well, and its
    // CSRF token with it.
    let srv = server(
        &[("k1", KEY1)],
        "SharedZone sessions 1M\nSessionStore shared:sessions\nSessionTimeout 0\nSessionMaxAge 1s",
    );
    let res = srv.get("/token");
    let visitor = set_session(&res).unwrap();
    let token = text(&res);
    assert_eq!(
        text(&with_cookie(&srv, "/get", &visitor)),
        "nil nil nil false"
    );
    assert!(
        wait_until(Duration::from_secs(10), || text(&with_cookie(
            &srv, "/get", &visitor
        )) == "nil nil nil true"),
        "a session without data outlived SessionMaxAge"
    );
    assert_eq!(
        post(&srv, &visitor, "", &format!("csrf_token={token}")).status,
        403
    );
}

/// `/slow` with `cookie` on a thread, once it has read the session.
fn slow_request(srv: &Axkit, query: &str, cookie: &str) -> std::thread::JoinHandle<Response> {
    let (addr, path, cookie) = (srv.addr, format!("/slow{query}"), cookie.to_string());
    let slow = std::thread::spawn(move || {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nCookie: axkit_session={cookie}\r\nConnection: close\r\n\r\n"
        );
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut s, request.as_bytes()).unwrap();
        read_one_response(&mut s).unwrap().expect("a response")
    });
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .get("/flag?k=reading")
            .text()
            == "true"),
        "/slow never read its session"
    );
    slow
}

/// Requests that overlap: one that read a session before another ended it
/// (destroy, regenerate) never brings it back when it saves, and one that
/// only read it never undoes another's change when it pushes the idle
/// timeout back. `SessionTimeout 4s` (the push-back is due after 0.5 s).
fn server_store_overlaps(srv: &Axkit) {
    for end in ["/destroy", "/regenerate"] {
        let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
        let slow = slow_request(srv, "?v=late", &cookie);
        let ended = with_cookie(srv, end, &cookie);
        assert_eq!(ended.status, 200);
        assert_eq!(srv.get("/go").text(), "go");
        let slow = slow.join().unwrap();
        assert_eq!(
            (slow.status, text(&slow)),
            (200, "slow ada nil".into()),
            "{end}"
        );
        // Nothing written, and the browser's cookie left as `end` set it.
        assert_eq!(set_session(&slow), None, "{end}");
        assert_eq!(
            text(&with_cookie(srv, "/get", &cookie)),
            "nil nil nil true",
            "{end}: the old id came back"
        );
        if end == "/regenerate" {
            let renewed = set_session(&ended).unwrap();
            assert_eq!(text(&with_cookie(srv, "/get", &renewed)), "ada 42 1y false");
        }
    }

    let cookie = set_session(&srv.get("/add")).unwrap();
    let due = std::time::Instant::now() + Duration::from_millis(600);
    assert!(wait_until(
        Duration::from_secs(2),
        || std::time::Instant::now() >= due
    ));
    let slow = slow_request(srv, "", &cookie);
    assert_eq!(text(&with_cookie(srv, "/add", &cookie)), "2");
    srv.get("/go");
    let slow = slow.join().unwrap();
    assert_eq!((slow.status, text(&slow)), (200, "slow nil 1".into()));
    assert_eq!(
        text(&with_cookie(srv, "/add", &cookie)),
        "3",
        "the read-only request undid the change made meanwhile"
    );
}

/// Set, read, regenerate (the old id gone from the store), destroy (the
/// cookie removed, the id gone) against a server-side store.
fn server_store_lifecycle(srv: &Axkit) {
    let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
    assert!(cookie.starts_with("i.k1."), "{cookie}");
    // Only a signed id: no data in the cookie.
    assert!(!decoded_parts(&cookie).windows(3).any(|w| w == b"ada"));
    assert_eq!(text(&with_cookie(srv, "/get", &cookie)), "ada 42 1y false");

    let res = with_cookie(srv, "/regenerate", &cookie);
    let renewed = set_session(&res).unwrap();
    assert_ne!(renewed, cookie);
    assert_eq!(text(&with_cookie(srv, "/get", &renewed)), "ada 42 1y false");
    assert_eq!(text(&with_cookie(srv, "/get", &cookie)), "nil nil nil true");
    let reused = set_session(&with_cookie(srv, "/set?v=eve", &cookie)).unwrap();
    assert_ne!(reused, cookie, "an id regenerated away was taken up again");

    let res = with_cookie(srv, "/destroy", &renewed);
    let header = set_cookie_header(&res);
    assert!(
        header.starts_with("axkit_session=;") && header.contains("Max-Age=0"),
        "{header}"
    );
    assert_eq!(
        text(&with_cookie(srv, "/get", &renewed)),
        "nil nil nil true"
    );
    // Logged out: whoever kept the cookie gets a new id, not the old one
    // for the session that follows (fixation).
    let res = with_cookie(srv, "/set?v=eve", &renewed);
    let reused = set_session(&res).unwrap();
    assert_ne!(reused, renewed, "a destroyed id was taken up again");
    assert_eq!(text(&with_cookie(srv, "/get", &reused)), "eve 42 1y false");
}

/// Log `user` in with the form at `path` (`/login` or `/signin`), the
/// session `cookie` and its CSRF `token`: the cookie the response sets.
fn log_in(srv: &Axkit, path: &str, cookie: &str, user: &str, token: &str) -> String {
    let res = send(
        srv,
        "POST",
        path,
        &format!(
            "Cookie: axkit_session={cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n"
        ),
        format!("user={user}&csrf_token={token}").as_bytes(),
    );
    assert_eq!((res.status, text(&res)), (200, "welcome".into()), "{path}");
    set_session(&res).expect("the logged-in session's cookie")
}

/// A session without data is kept by its cookie alone, on a server store
/// too (an `n` cookie: no record): its token verifies on the POST that
/// follows (a log-in form's first use), it is not new when its cookie
/// comes back, the cookie is not sent again, and logging in gives a new id
/// that the old token does not match.
fn server_store_tokens(srv: &Axkit) {
    let res = srv.get("/token");
    let visitor = set_session(&res).expect("a cookie for the token");
    assert!(visitor.starts_with("n.k1."), "{visitor}");
    let token = text(&res);
    assert_eq!(
        text(&with_cookie(srv, "/get", &visitor)),
        "nil nil nil false",
        "a session that handed out a token is new when its cookie comes back"
    );
    let res = with_cookie(srv, "/token", &visitor);
    assert_eq!(text(&res), token);
    assert_eq!(set_session(&res), None);
    let res = post(srv, &visitor, "", &format!("msg=hi&csrf_token={token}"));
    assert_eq!((res.status, text(&res)), (200, "accepted hi".into()));
    let user = log_in(srv, "/login", &visitor, "ada", &token);
    assert_ne!(user, visitor, "the id a visitor was given logs in");
    assert!(user.starts_with("i.k1."), "{user}");
    assert_eq!(text(&with_cookie(srv, "/get", &user)), "ada nil nil false");
    // The visitor's cookie still names an empty session (it never had a
    // record), not the user's.
    assert_eq!(
        text(&with_cookie(srv, "/get", &visitor)),
        "nil nil nil false"
    );
    assert_eq!(
        post(srv, &user, "", &format!("csrf_token={token}")).status,
        403
    );
}

/// Session fixation against an app that logs in without `regenerate`:
/// an attacker takes a visitor's cookie (with the CSRF token of its log-in
/// form) and plants it in the victim's browser; the victim logs in with it.
/// The session's first data gets a new id, so the planted cookie still
/// names an empty session, not the victim's, and the attacker's token does
/// not pass for the victim's (which a cookie store's copy would otherwise
/// give away: the same id, so the same token).
fn planted_visitor_cookies_do_not_log_in(srv: &Axkit) {
    let res = srv.get("/token");
    let planted = set_session(&res).expect("a cookie for the token");
    let token = text(&res);
    let victim = log_in(srv, "/signin", &planted, "victim", &token);
    assert_eq!(
        text(&with_cookie(srv, "/get", &victim)),
        "victim nil nil false"
    );
    assert_eq!(
        text(&with_cookie(srv, "/get", &planted)),
        "nil nil nil false",
        "the planted cookie carries the victim's login"
    );
    assert_eq!(
        post(srv, &victim, "", &format!("msg=forged&csrf_token={token}")).status,
        403,
        "the planted session's token passes for the victim's"
    );
}

#[test]
fn cookie_sessions_resist_fixation() {
    for more in ["", "SessionEncrypt Off"] {
        let srv = server(&[("k1", KEY1)], more);
        planted_visitor_cookies_do_not_log_in(&srv);
    }
}

/// Anonymous visitors who are handed a CSRF token take no room in the
/// store: a flood of them in a small zone leaves its one record, and the
/// user logged in stays so (each once pinned a record for an hour, and
/// the zone evicted the oldest: the users').
#[test]
fn empty_sessions_are_not_stored() {
    let srv = server(
        &[("k1", KEY1)],
        "SharedZone sessions 64K\nSessionStore shared:sessions",
    );
    let entries = || text(&srv.get("/entries?zone=sessions"));
    server_store_tokens(&srv);
    assert_eq!(entries(), "1");
    let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
    for _ in 0..1500 {
        let res = srv.get("/token");
        assert_eq!(res.status, 200);
        assert!(set_session(&res).is_some());
    }
    assert_eq!(entries(), "2");
    assert_eq!(text(&with_cookie(&srv, "/get", &cookie)), "ada 42 1y false");
}

#[test]
fn shared_zone_sessions_are_seen_by_every_worker() {
    let conf = conf(
        &global(
            &[("k1", "")],
            "SharedZone sessions 1M\nSessionStore shared:sessions\nSessionTimeout 4s",
        ),
        "Plugin app",
    );
    let srv = Axkit::start_with(&conf, &[], |d| {
        d.write("k1.key", KEY1);
        d.write("plugins/app.lua", APP);
    });
    let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
    let mut workers = HashSet::new();
    for _ in 0..200 {
        let res = with_cookie(&srv, "/get", &cookie);
        assert_eq!(text(&res), "ada 42 1y false");
        workers.insert(res.text().split(' ').next().unwrap().to_string());
        if workers.len() == 2 {
            break;
        }
    }
    assert_eq!(workers.len(), 2, "one worker served every request");
    server_store_lifecycle(&srv);
    server_store_tokens(&srv);
    planted_visitor_cookies_do_not_log_in(&srv);
    server_store_overlaps(&srv);
}

#[test]
fn redis_sessions_and_a_store_that_is_down() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let more = format!(
        "Database kv {} timeout=2s\nSessionStore redis:kv\nSessionTimeout 4s",
        redis.url()
    );
    let mut srv = server(&[("k1", KEY1)], &more);
    server_store_lifecycle(&srv);
    server_store_tokens(&srv);
    planted_visitor_cookies_do_not_log_in(&srv);
    server_store_overlaps(&srv);

    let cookie = set_session(&srv.get("/set?v=ada")).unwrap();
    redis.stop();
    // Reading: a fresh session, and a log line.
    let res = with_cookie(&srv, "/get", &cookie);
    assert_eq!((res.status, text(&res)), (200, "nil nil nil true".into()));
    srv.wait_stderr_line(
        &[
            "GET /get",
            "redis database \"kv\"",
            "goes on with a new session",
        ],
        Duration::from_secs(10),
    );
    // Writing: 503 and a log line.
    let res = srv.get("/set?v=eve");
    assert_eq!(res.status, 503, "{}", res.text());
    srv.wait_stderr_line(
        &["GET /set", "redis database \"kv\""],
        Duration::from_secs(10),
    );
}

#[test]
fn sqlite_sessions() {
    let srv = server(
        &[("k1", KEY1)],
        "Database local sqlite:{dir}/sessions.db\nSessionStore sqlite:local\nSessionTimeout 4s",
    );
    server_store_lifecycle(&srv);
    server_store_tokens(&srv);
    planted_visitor_cookies_do_not_log_in(&srv);
    server_store_overlaps(&srv);
}

/// POST a form to `/post` with the session cookie and `headers`.
fn post(srv: &Axkit, cookie: &str, headers: &str, body: &str) -> Response {
    send(
        srv,
        "POST",
        "/post",
        &format!(
            "Cookie: axkit_session={cookie}\r\n{headers}\
             Content-Type: application/x-www-form-urlencoded\r\n"
        ),
        body.as_bytes(),
    )
}

#[test]
fn csrf_tokens_are_checked_against_the_session() {
    let mut srv = server(&[("k1", KEY1)], "");
    // A token keeps a new session, so that the form can come back.
    let res = srv.get("/token");
    let cookie = set_session(&res).expect("a session kept for its token");
    let token = text(&res);
    let res = post(&srv, &cookie, "", &format!("msg=hi&csrf_token={token}"));
    assert_eq!((res.status, text(&res)), (200, "accepted hi".into()));
    let res = post(
        &srv,
        &cookie,
        &format!("X-CSRF-Token: {token}\r\n"),
        "msg=hey",
    );
    assert_eq!((res.status, text(&res)), (200, "accepted hey".into()));
    // The same token each time in a session.
    assert_eq!(text(&with_cookie(&srv, "/token", &cookie)), token);

    assert_eq!(post(&srv, &cookie, "", "msg=hi").status, 403);
    srv.wait_stderr_line(
        &["POST /post", "403: no CSRF token"],
        Duration::from_secs(10),
    );
    let wrong = format!("{}A", &token[..token.len() - 1]);
    let wrong = if wrong == token {
        format!("{}B", &token[..token.len() - 1])
    } else {
        wrong
    };
    assert_eq!(
        post(&srv, &cookie, "", &format!("csrf_token={wrong}")).status,
        403
    );
    srv.wait_stderr_line(
        &["POST /post", "403: the CSRF token is not the session's"],
        Duration::from_secs(10),
    );
    // Another session's token, and a token without its session.
    let other = set_session(&srv.get("/token")).unwrap();
    assert_eq!(
        post(&srv, &other, "", &format!("csrf_token={token}")).status,
        403
    );
    let res = send(
        &srv,
        "POST",
        "/post",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        format!("csrf_token={token}").as_bytes(),
    );
    assert_eq!(res.status, 403);
    // A new id (login): the old token no longer matches.
    let renewed = set_session(&with_cookie(&srv, "/regenerate", &cookie)).unwrap();
    assert_eq!(
        post(&srv, &renewed, "", &format!("csrf_token={token}")).status,
        403
    );
}

#[test]
fn crypto_helpers_and_password_hashes() {
    let srv = server(&[("k1", KEY1)], "");
    assert_eq!(
        srv.get("/crypto").text(),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 16 true false -_8 fbff"
    );
    let hash = srv.get("/hash?pw=correct%20horse").text();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_ne!(srv.get("/hash?pw=correct%20horse").text(), hash, "no salt");
    let enc = |s: &str| {
        s.replace('$', "%24")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let verify = |pw: &str, h: &str| srv.get(&format!("/verify?pw={pw}&h={}", enc(h))).text();
    assert_eq!(verify("correct%20horse", &hash), "true nil");
    assert_eq!(verify("correct%20horsE", &hash), "false nil");
    assert!(verify("x", "not-a-hash").starts_with("nil not a password hash"));
}

#[test]
fn a_password_hash_does_not_hold_up_the_worker() {
    let mut srv = server(&[("k1", KEY1)], "");
    let mut hashing = begin(&srv, "/slowhash");
    srv.wait_stderr("hashing starts", Duration::from_secs(10));
    // While the hashes run, the same (only) worker answers another
    // request, before the hashing one.
    assert_eq!(srv.get("/ping").text(), "pong");
    hashing.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending =
        matches!(hashing.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(pending, "the hashing request was answered before the ping");
    hashing.set_nonblocking(false).unwrap();
    let res = finish(hashing);
    assert_eq!((res.status, res.text()), (200, "true".to_string()));
}

#[test]
fn cookie_values_are_encoded_not_refused() {
    let srv = server(&[("k1", KEY1)], "");
    for (sent, value) in [
        ("a%3Bb%2C%20c%22d%5Ce", "a;b, c\"d\\e"),
        ("100%25%20%2541", "100% %41"),
        ("gr%C3%BC%C3%9Fe%20%F0%9F%8D%AA", "grüße 🍪"),
        ("plain", "plain"),
    ] {
        let res = srv.get(&format!("/setcookie?v={sent}"));
        assert_eq!(res.status, 200, "{value}");
        let header = res.header("Set-Cookie").unwrap().to_string();
        let encoded = header["odd=".len()..header.find(';').unwrap()].to_string();
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b)),
            "{header}"
        );
        assert!(header.ends_with("; Path=/; SameSite=Strict"), "{header}");
        let back = get(
            &srv,
            "/readcookie",
            &format!("Cookie: x=1; odd={encoded}\r\n"),
        );
        assert_eq!(back.text(), value);
    }
}

#[test]
fn the_config_is_checked() {
    let checked = |global: &str, key: &str| {
        check_with(&conf(global, "Plugin app"), &[("app", APP)], |d| {
            d.write("k1.key", key);
        })
    };
    let key = "SessionKey k1 {dir}/k1.key";
    assert!(checked(key, KEY1).0);
    let (ok, err) = checked(key, "too short\n");
    assert!(!ok && err.contains("at least 32 bytes"), "{err}");
    let (ok, err) = checked("SessionKey k1 {dir}/missing.key", KEY1);
    assert!(!ok && err.contains("missing.key"), "{err}");
    let (ok, err) = checked(&format!("{key}\nSessionStore redis:cache"), KEY1);
    assert!(
        !ok && err.contains("SessionStore") && err.contains("cache"),
        "{err}"
    );
    let (ok, err) = checked(
        &format!("{key}\nDatabase cache sqlite:x.db\nSessionStore redis:cache"),
        KEY1,
    );
    assert!(!ok && err.contains("sqlite database"), "{err}");
    let (ok, err) = checked(&format!("{key}\nSessionStore shared:nozone"), KEY1);
    assert!(!ok && err.contains("nozone"), "{err}");
    let (ok, err) = checked(&format!("{key}\nSessionCookie sid SameSite=None"), KEY1);
    assert!(!ok && err.contains("Secure=on"), "{err}");
    // The key file's contents are never quoted.
    assert!(!err.contains("first-key"), "{err}");

    let out = Command::new(BIN).arg("--directives").output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    for name in [
        "SessionKey",
        "SessionStore",
        "SessionCookie",
        "SessionTimeout",
        "SessionMaxAge",
        "SessionEncrypt",
    ] {
        assert!(listed.contains(name), "{name} not in --directives");
    }
}

#[test]
fn without_a_key_a_session_is_a_clear_error() {
    let mut srv = server(&[], "");
    assert_eq!(srv.get("/get").status, 500);
    srv.wait_stderr_line(&["no SessionKey"], Duration::from_secs(10));
    // The other calls work without one.
    assert_eq!(srv.get("/ping").text(), "pong");
}
