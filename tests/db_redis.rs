//! Redis from Lua scripts (`redis.get`), through the stock `axkit` binary,
//! against a real server each test starts for itself: commands with bound
//! arguments, replies as Lua values, pipelines, publish/subscribe (a
//! subscriber suspended while another request publishes; unsubscribed
//! when its request ends), a server that is down (503 and a log line) and
//! reconnecting after a restart.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;

use std::time::Duration;

use common::*;
use lua::*;
use services::{free_port, Redis};

const APP: &str = r#"
local r = redis.get("main")

local function show(v)
  if type(v) == "table" then
    local out = {}
    for i, x in ipairs(v) do out[i] = show(x) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  return type(v) .. ":" .. tostring(v)
end

function hook_response(req)
  local p = req:path()
  if p == "/cmd" then
    local evil = req:param("v")
    local set = r:cmd("SET", "k", evil)
    local got = r:cmd("GET", "k")
    local n = r:cmd("INCRBY", "n", 5)
    local missing = r:cmd("GET", "missing")
    r:cmd("RPUSH", "list", "a", "b", 3)
    local list = r:cmd("LRANGE", "list", 0, -1)
    local mget = r:cmd("MGET", "k", "missing")
    req:write(show(set), " ", tostring(got == evil), " ", show(n), " ", show(missing), " ",
              show(list), " ", #mget, show(mget[2]), " ", show(r:cmd("DBSIZE")))
    return OK
  elseif p == "/pipeline" then
    local replies = r:pipeline():cmd("SET", "p", "1"):cmd("INCR", "p"):cmd("GET", "p"):exec()
    local atomic = r:pipeline{ atomic = true }
    atomic:cmd("INCR", "p")
    atomic:cmd("INCR", "p")
    local done = atomic:exec()
    req:write(show(replies), " ", show(done))
    return OK
  elseif p == "/error" then
    r:cmd("SET", "s", "text")
    r:cmd("INCR", "s")
    return OK
  elseif p == "/subscribe" then
    local sub = r:subscribe("news")
    req:note("subscribed", "yes")
    local msg, channel = sub:next(10)
    local none = sub:next(0.05)
    req:write(tostring(msg), " on ", tostring(channel), " then ", tostring(none))
    return OK
  elseif p == "/psubscribe" then
    local sub = r:psubscribe("ne*")
    local msg, channel, pattern = sub:next(10)
    sub:close()
    local ok = pcall(function() return sub:next(1) end)
    req:write(msg, " ", channel, " ", pattern, " ", tostring(ok))
    return OK
  elseif p == "/publish" then
    req:write(r:cmd("PUBLISH", req:param("ch"), req:param("msg")))
    return OK
  elseif p == "/numsub" then
    local reply = r:cmd("PUBSUB", "NUMSUB", "news")
    req:write(reply[2])
    return OK
  elseif p == "/state" then
    -- Commands that would change the pooled connection: refused.
    local out = {}
    for _, c in ipairs({ "MULTI", "select", "CLIENT", "WATCH" }) do
      local ok, err = pcall(r.cmd, r, c, c == "CLIENT" and "REPLY" or "1", "OFF")
      out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    end
    local ok, err = pcall(function() return r:pipeline():cmd("GET", "k"):cmd("MULTI"):exec() end)
    out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    r:cmd("SET", "after", "fine")
    out[#out + 1] = r:cmd("GET", "after")
    req:write(table.concat(out, "\n"))
    return OK
  elseif p == "/ping" then
    req:write(r:cmd("PING"))
    return OK
  elseif p == "/slow-sub" then
    -- Three messages published for each one read: the unread ones pile
    -- up, while fewer than max_result= bytes come between two reads.
    local tiny = redis.get("tiny")
    local sub = tiny:subscribe("flood")
    local got, failure = 0, nil
    for _ = 1, 10 do
      for _ = 1, 3 do r:cmd("PUBLISH", "flood", string.rep("x", 100)) end
      local ok, err = pcall(sub.next, sub, 5)
      if not ok then failure = err break end
      got = got + 1
    end
    while not failure do
      local ok, msg = pcall(sub.next, sub, 2)
      if not ok then failure = msg elseif not msg then break else got = got + 1 end
    end
    local after = pcall(sub.next, sub, 0.05)
    req:write(got, " ", tostring(failure):match("[^\n]*"), "\n", tostring(after))
    return OK
  elseif p == "/flood" then
    -- A subscriber on a database with no byte limit that reads nothing
    -- until told to on another channel.
    local sub = redis.get("unbounded"):subscribe("flood")
    local go = r:subscribe("go")
    go:next(60)
    local ok, err = pcall(sub.next, sub, 5)
    req:write(tostring(ok), " ", tostring(err):match("[^\n]*"))
    return OK
  elseif p == "/bad-timeout" then
    local sub = r:subscribe("news")
    local out = {}
    for _, t in ipairs({ -1, 0 / 0, math.huge }) do
      local ok, err = pcall(sub.next, sub, t)
      out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    end
    -- The subscription carries on: nothing comes within 50 ms.
    local ok, msg = pcall(sub.next, sub, 0.05)
    out[#out + 1] = tostring(ok) .. " " .. tostring(msg)
    req:write(table.concat(out, "\n"))
    return OK
  elseif p == "/big" then
    -- 2,000 bytes: over `tiny`'s max_result=1k, not main's; then a reply,
    -- a pipeline and a message on a subscription over it.
    local tiny = redis.get("tiny")
    r:cmd("SET", "big", string.rep("x", 2000))
    local out = {}
    local function try(f)
      local ok, err = pcall(f)
      out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    end
    try(function() return tiny:cmd("GET", "big") end)
    try(function() return tiny:pipeline():cmd("GET", "big"):cmd("PING"):exec() end)
    out[#out + 1] = #r:cmd("GET", "big") .. " " .. tiny:cmd("PING")
    local sub = tiny:subscribe("wide")
    req:note("subscribed", "yes")
    try(function() return sub:next(10) end)
    req:write(table.concat(out, "\n"))
    return OK
  end
end
"#;

fn server(redis: &Redis) -> Axkit {
    let global = format!(
        "Database main {url}\nDatabase tiny {url} pool=1 max_result=1k\n\
         Database unbounded {url} max_result=0",
        url = redis.url()
    );
    start(&conf(&global, "Plugin app"), &[("app", APP)])
}

#[test]
fn commands_with_bound_arguments_and_their_replies() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    // Spaces, CRLF and a command of its own stay one argument.
    let res = srv.get("/cmd?v=a%20b%0D%0AFLUSHALL%0D%0A");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.text(),
        "string:OK true number:5 nil:nil [string:a,string:b,string:3] 2boolean:false number:3"
    );
    let res = srv.get("/pipeline");
    assert_eq!(
        res.text(),
        "[string:OK,number:2,string:2] [number:3,number:4]"
    );
}

/// Commands that change the state of the connection they run on (which
/// goes back to the pool) are refused before they are sent, and the
/// connection goes on answering plainly.
#[test]
fn commands_that_change_the_connection_are_refused() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    let res = srv.get("/state");
    let text = res.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (line, name) in lines
        .iter()
        .zip(["MULTI", "SELECT", "CLIENT", "WATCH", "MULTI"])
    {
        assert!(
            line.starts_with("false ")
                && line.contains(&format!("{name} would change the pooled connection")),
            "{text}"
        );
    }
    assert_eq!(lines[5], "fine");
}

#[test]
fn an_error_reply_is_a_500_naming_the_database() {
    let Some(redis) = Redis::start() else { return };
    let mut srv = server(&redis);
    assert_eq!(srv.get("/error").status, 500);
    srv.wait_stderr_line(
        &["hook_response", "redis database \"main\"", "not an integer"],
        Duration::from_secs(10),
    );
}

#[test]
fn a_subscriber_waits_for_a_publisher_and_unsubscribes_when_its_request_ends() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    let waiting = begin(&srv, "/subscribe");
    // The subscriber is suspended, not the worker: other requests see it
    // subscribed.
    assert!(wait_until(Duration::from_secs(10), || srv
        .get("/numsub")
        .text()
        == "1"));
    assert_eq!(srv.get("/publish?ch=news&msg=hello").text(), "1");
    let res = finish(waiting);
    assert_eq!(res.text(), "hello on news then nil");
    assert!(
        wait_until(Duration::from_secs(10), || srv.get("/numsub").text() == "0"),
        "still subscribed after the request ended"
    );

    let waiting = begin(&srv, "/psubscribe");
    assert!(wait_until(Duration::from_secs(10), || srv
        .get("/publish?ch=news&msg=hi")
        .text()
        == "1"));
    assert_eq!(finish(waiting).text(), "hi news ne* false");
}

/// A reply (or a published message) larger than the database's
/// `max_result=` is an error naming the limit, not a worker grown without
/// bound (the crate would read it whole); the pool goes on.
#[test]
fn a_reply_over_max_result_is_refused() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    let waiting = begin(&srv, "/big");
    assert!(wait_until(Duration::from_secs(10), || srv
        .get(&format!("/publish?ch=wide&msg={}", "y".repeat(1500)))
        .text()
        == "1"));
    let text = finish(waiting).text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for i in [0, 1, 3] {
        assert!(
            lines[i].starts_with("false ") && lines[i].contains("over max_result=1024 bytes"),
            "{text}"
        );
    }
    assert_eq!(lines[2], "2000 PONG", "{text}");
}

/// A subscriber slower than its publishers: the messages read and not yet
/// delivered are bounded by `max_result=` (the crate reads every message
/// as it comes), past which the subscription ends, saying why.
#[test]
fn a_subscriber_too_slow_for_its_publishers_is_ended() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    let res = srv.get("/slow-sub");
    let text = res.text();
    let (first, after) = text.split_once('\n').unwrap();
    let (got, failure) = first.split_once(' ').unwrap();
    assert!(got.parse::<u32>().unwrap() < 30, "{text}");
    assert_eq!(
        failure,
        "redis database \"tiny\": the subscription's unread messages are over max_result=1024 \
         bytes: the subscriber is too slow (or a message too big), and the subscription is over",
        "{text}"
    );
    assert_eq!(after, "false", "{text}");
}

/// With `max_result=0` (no limit on a message's size), the messages a
/// subscriber has not read are still bounded, by their number: a
/// publisher faster than the subscriber ends the subscription (its
/// connection closed at once), and the subscriber is told why. They used
/// to pile up in the worker without bound.
#[test]
fn a_subscriber_without_a_byte_limit_still_holds_a_bounded_queue() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    let waiting = begin(&srv, "/flood");
    let numsub = || redis.cli(&[b"PUBSUB", b"NUMSUB", b"flood", b"go"], b"");
    assert!(
        wait_until(Duration::from_secs(10), || numsub() == b"flood\n1\ngo\n1\n"),
        "not subscribed"
    );
    // 65,536 unread messages at most: a few more, sent at once.
    let publish = b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nflood\r\n$4\r\nbyte\r\n".repeat(65_600);
    let out = redis.cli(&[b"--pipe"], &publish);
    assert!(
        lossy(&out).contains("errors: 0, replies: 65600"),
        "{}",
        lossy(&out)
    );
    assert!(
        wait_until(Duration::from_secs(30), || numsub() == b"flood\n0\ngo\n1\n"),
        "the subscriber is still subscribed: {}",
        lossy(&numsub())
    );
    redis.cli(&[b"PUBLISH", b"go", b"now"], b"");
    assert_eq!(
        finish(waiting).text(),
        "false redis database \"unbounded\": the subscription's unread messages are over \
         65536: the subscriber is too slow, and the subscription is over"
    );
}

/// A bad timeout is the call's error; the subscription goes on.
#[test]
fn a_bad_timeout_leaves_the_subscription_as_it_was() {
    let Some(redis) = Redis::start() else { return };
    let srv = server(&redis);
    let text = srv.get("/bad-timeout").text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for line in &lines[..3] {
        assert!(
            line.starts_with("false ") && line.contains("sub:next: bad timeout"),
            "{text}"
        );
    }
    assert_eq!(lines[3], "true nil", "{text}");
}

#[test]
fn a_server_that_is_down_answers_503_and_it_reconnects_after_a_restart() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let global = format!(
        "Database main {}\nDatabase down redis://:hunter2@127.0.0.1:{}/0",
        redis.url(),
        free_port()
    );
    let app = r#"
function hook_response(r)
  local db = redis.get(r:path() == "/down" and "down" or "main")
  r:write(db:cmd("PING"))
  return OK
end
"#;
    let mut srv = start(&conf(&global, "Plugin app"), &[("app", app)]);
    assert_eq!(srv.get("/down").status, 503);
    let line = srv.wait_stderr_line(
        &[
            "app.lua: hook_response",
            "redis database \"down\": unavailable",
        ],
        Duration::from_secs(10),
    );
    assert!(!line.contains("hunter2"), "{line}");

    assert_eq!(srv.get("/main").text(), "PONG");
    redis.restart();
    let mut last = 0;
    let back = wait_until(Duration::from_secs(10), || {
        last = srv.get("/main").status;
        last == 200
    });
    assert!(back, "still {last} after the restart");
    assert_eq!(srv.get("/main").text(), "PONG");
}
