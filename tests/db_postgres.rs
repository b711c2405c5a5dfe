//! PostgreSQL from Lua scripts (`postgres.get`), through the stock `axkit`
//! binary, against a real server each test starts for itself: queries,
//! bound parameters, types and NULLs, transactions, the pool and its
//! statement cache, a database that is down or too slow (503 and a log
//! line), reconnecting after a restart, and a slow query that delays only
//! its own request.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;

use std::io::Read;
use std::time::Duration;

use common::*;
use lua::*;
use services::{free_port, Postgres};

/// The test script: one path per case, `db` the database `main`.
const APP: &str = r#"
local db = postgres.get("main")

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function hook_response(r)
  local p = r:path()
  if p == "/types" then
    local row = db:query_one([[
      SELECT 1::int2 AS a, 2::int4 AS b, 9007199254740993::int8 AS c, 1.5::float8 AS d,
             true AS e, 'x y'::text AS f, '\x00ff'::bytea AS g, '{"k": [1, null]}'::jsonb AS h,
             12.340::numeric AS i, '2024-05-01 13:45:00.25+00'::timestamptz AS j,
             '2024-05-01'::date AS k, NULL::int AS l,
             'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS m, 'é'::varchar AS n]])
    for _, k in ipairs({ "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n" }) do
      r:write(k, "=", math.type(row[k]) or type(row[k]), ":", show(row[k]), "\n")
    end
    return OK
  elseif p == "/params" then
    local row = db:query_one([[
      SELECT $1::int4 + 1 AS n, $2::text AS t, $3::int8 AS s, $4::timestamptz AS ts,
             $5::bool AS b, $6::float8 AS f, $7::text IS NULL AS null_ok, $8::bytea AS raw]],
      41, "O'Brien", "42", "2024-05-01 00:00:00+00", true, 2.5, nil, "\0\1")
    r:write(row.n, " ", row.t, " ", row.s, " ", row.ts, " ", tostring(row.b), " ", row.f,
            " ", tostring(row.null_ok), " ", #row.raw)
    return OK
  elseif p == "/inject" then
    local evil = r:param("name")
    db:exec("INSERT INTO people (name) VALUES ($1)", evil)
    local rows = db:query("SELECT name FROM people WHERE name = $1", evil)
    local count = db:query_one("SELECT count(*) AS n FROM people").n
    r:write(#rows, " ", rows[1].name, " ", count)
    return OK
  elseif p == "/rows" then
    local changed = db:exec("UPDATE people SET name = name WHERE id > $1", 0)
    local rows = db:query("SELECT id, name FROM people ORDER BY id")
    local none = db:query_one("SELECT id FROM people WHERE id = -1")
    local out = {}
    for i, row in ipairs(rows) do out[i] = row.id .. ":" .. row.name end
    r:write(changed, " ", tostring(none), " ", table.concat(out, ","))
    return OK
  elseif p == "/batch" then
    db:batch("CREATE TABLE IF NOT EXISTS made (x int); INSERT INTO made VALUES (1), (2)")
    r:write(db:query_one("SELECT sum(x) AS s FROM made").s)
    return OK
  elseif p == "/bad-sql" then
    db:query("SELEKT 1")
    return OK
  elseif p == "/bad-type" then
    db:query("SELECT '1 day'::interval AS d")
    return OK
  elseif p == "/tx" then
    local how = r:param("how")
    local tx = db:begin()
    tx:exec("INSERT INTO people (name) VALUES ($1)", "tx-" .. how)
    local inside = tx:query_one("SELECT count(*) AS n FROM people WHERE name = $1", "tx-" .. how).n
    if how == "commit" then
      tx:commit()
    elseif how == "rollback" then
      tx:rollback()
    elseif how == "error" then
      error("the handler failed half-way")
    elseif how == "badarg" then
      -- A bad argument is the call's error; the transaction carries on.
      for _, call in ipairs({tx.exec, tx.query, tx.query_one}) do
        if pcall(call, tx, "SELECT $1", {}) then error("a table was bound") end
      end
      tx:commit()
    end
    -- "forget": neither; the request ends with the transaction open.
    r:write("inside=", inside)
    return OK
  elseif p == "/tx-close" then
    do
      local tx <close> = db:begin()
      tx:exec("INSERT INTO people (name) VALUES ($1)", "tx-close")
    end
    r:write(db:query_one("SELECT count(*) AS n FROM people WHERE name = 'tx-close'").n)
    return OK
  elseif p == "/count" then
    r:write(db:query_one("SELECT count(*) AS n FROM people WHERE name = $1", r:param("name")).n)
    return OK
  elseif p == "/cache" then
    local one = postgres.get("one")
    for i = 1, 5 do one:query_one("SELECT $1::int AS i", i) end
    local row = one:query_one("SELECT count(*) AS n FROM pg_prepared_statements")
    r:write(row.n, " ", one:query_one("SELECT pg_backend_pid() AS pid").pid)
    return OK
  elseif p == "/pid" then
    r:write(postgres.get("one"):query_one("SELECT pg_backend_pid() AS pid").pid)
    return OK
  elseif p == "/slow" then
    db:query("SELECT pg_sleep($1)", tonumber(r:param("s")))
    r:write("slow done")
    return OK
  elseif p == "/fast" then
    r:write("fast ", db:query_one("SELECT 1 AS one").one)
    return OK
  elseif p == "/short" then
    postgres.get("short"):query("SELECT pg_sleep(5)")
    return OK
  elseif p == "/down" then
    postgres.get("down"):query("SELECT 1")
    return OK
  elseif p == "/down-caught" then
    local ok, err = pcall(function() return postgres.get("down"):query("SELECT 1") end)
    r:write(tostring(ok), " ", tostring(err):match("^[^\n]*"))
    return OK
  elseif p == "/big" then
    -- 100 rows of 100 bytes: over `tiny`'s max_result=1k, not main's.
    local sql = "SELECT repeat('x', 100) AS pad FROM generate_series(1, 100)"
    local tiny = postgres.get("tiny")
    local ok, err = pcall(tiny.query, tiny, sql)
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"), "\n", #db:query(sql), " ",
            tiny:query_one("SELECT 7 AS seven").seven)
    return OK
  elseif p == "/plain" then
    -- Each statement of `sql` (split on `|`) through a plain call.
    local out = {}
    for sql in r:param("sql"):gmatch("[^|]+") do
      local ok, err = pcall(db.exec, db, sql)
      out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    end
    r:write(table.concat(out, "\n"))
    return OK
  elseif p == "/session-in-tx" then
    local tx = db:begin()
    tx:exec("SET search_path TO nowhere")
    local ok, err = pcall(tx.exec, tx, "COMMIT")
    tx:commit()
    db:batch("SET search_path TO elsewhere")
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"), "\n",
            db:query_one("SHOW search_path").search_path)
    return OK
  elseif p == "/locked" then
    r:write(postgres.get("wait"):query_one("SELECT count(*) AS n FROM people").n)
    return OK
  elseif p == "/tx-lost" then
    -- Each later call on a transaction whose connection was lost (the
    -- server ended it; a result over max_result= left unread) says so.
    local out = {}
    local function try(f, ...)
      local ok, err = pcall(f, ...)
      out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    end
    local tx = db:begin()
    local pid = tx:query_one("SELECT pg_backend_pid() AS pid").pid
    db:query("SELECT pg_terminate_backend($1)", pid)
    try(tx.exec, tx, "SELECT 1")
    try(tx.query, tx, "SELECT 1")
    try(tx.commit, tx)
    local tiny = postgres.get("tiny")
    local big = tiny:begin()
    try(big.query, big, "SELECT repeat('x', 100) AS pad FROM generate_series(1, 100)")
    try(big.exec, big, "SELECT 1")
    try(big.rollback, big)
    r:write(table.concat(out, "\n"))
    return OK
  elseif p == "/tx-aborted" then
    local tx = db:begin()
    tx:exec("INSERT INTO people (name) VALUES ('aborted')")
    local failed = pcall(tx.exec, tx, "SELECT 1 / 0")
    local ok, err = pcall(tx.commit, tx)
    r:write(tostring(failed), " ", tostring(ok), " ", tostring(err):match("[^\n]*"), "\n",
            db:query_one("SELECT count(*) AS n FROM people WHERE name = 'aborted'").n)
    return OK
  elseif p == "/int8" then
    local ok, err = pcall(db.query_one, db, "SELECT $1::int8 AS n", 9.25e18)
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"), "\n",
            db:query_one("SELECT $1::int8 AS n", -2.0 ^ 63).n)
    return OK
  elseif p == "/unknown" then
    postgres.get("nope")
    return OK
  end
end
"#;

fn server(pg: &Postgres) -> Axkit {
    pg.psql("CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL)");
    let down = free_port();
    let global = format!(
        "Database main {url}\nDatabase one {url} pool=1\nDatabase short {url} timeout=300ms\n\
         Database tiny {url} pool=1 max_result=1k\nDatabase wait {url} pool=1 timeout=1s\n\
         Database down postgres://postgres@127.0.0.1:{down}/postgres timeout=5s",
        url = pg.url()
    );
    start(&conf(&global, "Plugin app"), &[("app", APP)])
}

#[test]
fn types_parameters_and_nulls() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let types = srv.get("/types");
    assert_eq!(types.status, 200, "{}", types.text());
    assert_eq!(
        types.text(),
        "a=integer:1\nb=integer:2\nc=integer:9007199254740993\nd=float:1.5\ne=boolean:true\n\
         f=string:\"x y\"\ng=string:\"\\0\u{fffd}\"\nh=string:\"{\\\"k\\\": [1, null]}\"\n\
         i=string:\"12.340\"\nj=string:\"2024-05-01T13:45:00.25Z\"\nk=string:\"2024-05-01\"\n\
         l=nil:nil\nm=string:\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"\nn=string:\"é\"\n"
    );
    let params = srv.get("/params");
    assert_eq!(
        params.text(),
        "42 O'Brien 42 2024-05-01T00:00:00Z true 2.5 true 2",
        "{}",
        params.text()
    );
}

#[test]
fn bound_parameters_keep_an_injection_as_data() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let evil = "x'); DROP TABLE people; --";
    let res = srv.get(&format!("/inject?name={}", url_encode(evil)));
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), format!("1 {evil} 1"));
    assert_eq!(pg.psql("SELECT name FROM people"), evil);

    let rows = srv.get("/rows");
    assert_eq!(rows.text(), format!("1 nil 1:{evil}"));
    assert_eq!(srv.get("/batch").text(), "3");
}

#[test]
fn statement_errors_are_500_with_the_reason_logged() {
    let Some(pg) = Postgres::start() else { return };
    let mut srv = server(&pg);
    assert_eq!(srv.get("/bad-sql").status, 500);
    srv.wait_stderr_line(
        &["hook_response", "postgres database \"main\"", "42601"],
        Duration::from_secs(10),
    );
    assert_eq!(srv.get("/bad-type").status, 500);
    srv.wait_stderr_line(
        &["column `d` has type interval", "d::text"],
        Duration::from_secs(10),
    );
    assert_eq!(srv.get("/unknown").status, 500);
    srv.wait_stderr_line(
        &["postgres database \"nope\": no such database"],
        Duration::from_secs(10),
    );
}

#[test]
fn transactions_commit_roll_back_and_roll_back_when_left_open() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let count = |name: &str| srv.get(&format!("/count?name={name}")).text();
    for how in ["commit", "rollback", "forget", "badarg"] {
        let res = srv.get(&format!("/tx?how={how}"));
        assert_eq!(
            (res.status, res.text()),
            (200, "inside=1".to_string()),
            "{how}"
        );
    }
    assert_eq!(srv.get("/tx?how=error").status, 500);
    // A transaction left open is rolled back when its request ends; the
    // server sees it end with the connection, maybe a moment after the
    // response.
    assert!(wait_until(Duration::from_secs(10), || {
        pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'")
            == "0"
    }));
    assert_eq!(count("tx-commit"), "1");
    assert_eq!(count("tx-badarg"), "1");
    assert_eq!(count("tx-rollback"), "0");
    assert_eq!(count("tx-forget"), "0");
    assert_eq!(count("tx-error"), "0");
    assert_eq!(srv.get("/tx-close").text(), "0");
}

/// A result larger than the database's `max_result=` is an error naming
/// the limit (the rest of it not read: the connection is closed), not a
/// worker grown without bound; the pool goes on.
#[test]
fn a_result_over_max_result_is_refused() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let text = srv.get("/big").text();
    let (first, rest) = text.split_once('\n').unwrap();
    assert!(
        first.starts_with("false ") && first.contains("over max_result=1024 bytes"),
        "{text}"
    );
    assert_eq!(rest, "100 7");
}

/// Statements that would outlive their call on a pooled connection:
/// transaction control through plain calls and session settings are
/// refused before they are sent; a transaction that changed its session,
/// and a batch, close their connection rather than give it back.
#[test]
fn statements_that_would_change_a_pooled_connection_are_refused() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let plain = srv.get(&format!(
        "/plain?sql={}",
        url_encode("BEGIN| /* a */ -- b\n  start transaction|set search_path to x|LISTEN ch|CREATE TEMP TABLE t (a int)|SET LOCAL work_mem = '1MB'|(SELECT 1)")
    ));
    let text = plain.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7, "{text}");
    for (line, word) in lines[..2].iter().zip(["BEGIN", "START"]) {
        assert!(
            line.starts_with("false ") && line.contains(&format!("{word} through a plain call")),
            "{text}"
        );
    }
    for (line, word) in lines[2..5].iter().zip(["SET", "LISTEN", "CREATE"]) {
        assert!(
            line.starts_with("false ")
                && line.contains(&format!("{word} would change the pooled connection")),
            "{text}"
        );
    }
    assert!(lines[5].starts_with("true"), "{text}");
    assert!(lines[6].starts_with("true"), "{text}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"),
        "0"
    );

    let res = srv.get("/session-in-tx");
    assert_eq!(
        res.text(),
        "false postgres database \"main\": COMMIT inside a transaction: end it with commit() or \
         rollback()\n\"$user\", public",
        "{}",
        res.text()
    );
}

/// Empty statements before one (`;BEGIN`: the server skips them) and a
/// `SELECT … INTO TEMP` are refused as the statements they are; a call
/// that leaves its connection in a state the client does not know (`COPY
/// … FROM STDIN` waits for data) closes it, and the next call is served.
#[test]
fn refused_statements_are_told_past_empty_ones_and_a_broken_connection_is_closed() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let plain = srv.get(&format!(
        "/plain?sql={}",
        url_encode(
            ";BEGIN| ; ;START TRANSACTION|;SET search_path TO evil|SELECT 42 AS secret INTO TEMP tt|\
             COPY people FROM STDIN|SELECT 1"
        )
    ));
    let text = plain.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    for (line, what) in lines[..4].iter().zip([
        "BEGIN through a plain call",
        "START through a plain call",
        "SET would change the pooled connection",
        "SELECT would change the pooled connection",
    ]) {
        assert!(line.starts_with("false ") && line.contains(what), "{text}");
    }
    assert!(
        lines[4].starts_with("false ") && lines[4].contains("unexpected message"),
        "{text}"
    );
    assert_eq!(lines[5], "true 1", "{text}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"),
        "0"
    );
}

#[test]
fn the_pool_reuses_its_connections_and_their_prepared_statements() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    // `one` has pool=1: every call is on the same connection, whose
    // statements were prepared once each.
    let first = srv.get("/cache").text();
    let (prepared, pid) = first.split_once(' ').unwrap();
    assert_eq!(prepared, "2", "{first}");
    for _ in 0..5 {
        assert_eq!(srv.get("/pid").text(), pid);
    }
    assert_eq!(srv.get("/cache").text(), format!("3 {pid}"));
    let sessions = pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND pid <> pg_backend_pid()",
    );
    assert_eq!(sessions, "1", "only `one`'s connection was opened");
}

#[test]
fn a_database_that_is_down_answers_503_with_a_log_line() {
    // Needs no server: `down` is a port nobody listens on.
    let conf_text = conf(
        &format!(
            "Database down postgres://postgres:hunter2@127.0.0.1:{}/postgres",
            free_port()
        ),
        "Plugin app",
    );
    let app = r#"
function hook_response(r)
  if r:path() == "/caught" then
    local ok, err = pcall(function() return postgres.get("down"):query("SELECT 1") end)
    r:write(tostring(ok), " ", tostring(err):match("^[^\n]*"))
    return OK
  end
  postgres.get("down"):query("SELECT 1")
  return OK
end
"#;
    let mut srv = start(&conf_text, &[("app", app)]);
    let res = srv.get("/");
    assert_eq!(res.status, 503);
    let line = srv.wait_stderr_line(
        &[
            "GET / HTTP/1.1: ",
            "app.lua: hook_response",
            "postgres database \"down\": unavailable",
        ],
        Duration::from_secs(10),
    );
    assert!(!line.contains("hunter2"), "{line}");
    let caught = srv.get("/caught");
    assert_eq!(caught.status, 200);
    assert!(
        caught
            .text()
            .starts_with("false postgres database \"down\": unavailable:"),
        "{}",
        caught.text()
    );
    // The worker is fine: the same again.
    assert_eq!(srv.get("/").status, 503);
    assert!(!srv.sync_stderr().contains("hunter2"));
}

#[test]
fn a_call_past_its_timeout_answers_503_and_the_statement_is_cancelled() {
    let Some(pg) = Postgres::start() else { return };
    let mut srv = server(&pg);
    assert_eq!(srv.get("/short").status, 503);
    srv.wait_stderr_line(
        &["postgres database \"short\": timed out", "timeout="],
        Duration::from_secs(10),
    );
    assert!(
        wait_until(Duration::from_secs(4), || pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%'"
        ) == "0"),
        "the statement was not cancelled"
    );
}

/// A statement that waits for a lock while it is prepared (the server
/// takes the table's locks to parse it): each call past its timeout
/// cancels it, rather than leave a backend waiting behind every 503 (a
/// pool of 1 with ever more connections).
#[test]
fn a_call_that_times_out_while_prepared_is_cancelled() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let lock = pg.session("BEGIN; LOCK TABLE people IN ACCESS EXCLUSIVE MODE;");
    assert!(wait_until(Duration::from_secs(10), || pg.psql(
        "SELECT count(*) FROM pg_locks WHERE relation = 'people'::regclass \
         AND mode = 'AccessExclusiveLock' AND granted"
    ) == "1"));
    for _ in 0..3 {
        assert_eq!(srv.get("/locked").status, 503);
    }
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = pg.psql(waiting);
            last == "0"
        }),
        "{last} backends still wait for the lock"
    );
    drop(lock);
    let res = srv.get("/locked");
    assert_eq!((res.status, res.text()), (200, "0".to_string()));
}

/// Calls on a transaction whose connection was lost fail, saying so (no
/// panic on a connection that is not there); rolling it back succeeds
/// (the server did).
#[test]
fn a_transaction_whose_connection_was_lost_says_it_is_over() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let res = srv.get("/tx-lost");
    let text = res.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((res.status, lines.len()), (200, 6), "{text}");
    assert!(
        lines[0].starts_with("false postgres database \"main\": unavailable: "),
        "{text}"
    );
    assert!(lines[3].contains("over max_result=1024 bytes"), "{text}");
    let over = "unavailable: the transaction is over: its connection was lost";
    for (i, db) in [(1, "main"), (2, "main"), (4, "tiny")] {
        assert_eq!(
            lines[i],
            format!("false postgres database \"{db}\": {over}"),
            "{text}"
        );
    }
    assert_eq!(lines[5], "true nil", "{text}");
}

/// COMMIT after a statement of the transaction failed rolls back, and
/// says so.
#[test]
fn a_commit_that_rolled_back_fails() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let res = srv.get("/tx-aborted");
    assert_eq!(
        (res.status, res.text()),
        (
            200,
            "false false postgres database \"main\": the transaction was rolled back: an \
             earlier statement failed\n0"
                .to_string()
        )
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"),
        "0"
    );
}

/// A float bound to an int8 past i64's range is refused, not saturated;
/// -2^63 is in it.
#[test]
fn a_float_out_of_int8_range_is_refused() {
    let Some(pg) = Postgres::start() else { return };
    let srv = server(&pg);
    let res = srv.get("/int8");
    assert_eq!(
        (res.status, res.text()),
        (
            200,
            "false postgres database \"main\": error serializing parameter 0: \
             9250000000000000000 is not an integer, which int8 takes\n-9223372036854775808"
                .to_string()
        )
    );
}

#[test]
fn it_reconnects_after_the_server_restarts() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let srv = server(&pg);
    assert_eq!(srv.get("/fast").text(), "fast 1");
    pg.restart();
    // The pool noticed its connections close, and opens new ones.
    let mut last = 0;
    let back = wait_until(Duration::from_secs(10), || {
        last = srv.get("/fast").status;
        last == 200
    });
    assert!(back, "still {last} after the restart");
    assert_eq!(srv.get("/fast").text(), "fast 1");
}

#[test]
fn a_slow_query_delays_only_its_own_request() {
    let Some(pg) = Postgres::start() else { return };
    // One process: one worker, one event loop.
    let srv = server(&pg);
    let mut slow = begin(&srv, "/slow?s=2");
    // The slow statement is running before the fast request starts.
    assert!(wait_until(Duration::from_secs(10), || {
        pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'"
    ) == "1"
    }));
    let fast = srv.get("/fast");
    assert_eq!((fast.status, fast.text()), (200, "fast 1".to_string()));
    // The fast one is done while the slow one is still waiting.
    slow.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let pending =
        matches!(slow.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(pending, "the slow request answered before the fast one");
    slow.set_nonblocking(false).unwrap();
    let slow = finish(slow);
    assert_eq!((slow.status, slow.text()), (200, "slow done".to_string()));
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
