//! SQLite from Lua scripts (`sqlite.get`), through the stock `axkit`
//! binary, on a file in the test's scratch directory (nothing to
//! install): WAL mode, queries, bound parameters, types and NULLs,
//! transactions, a database that cannot be opened (503), a slow statement
//! that delays only its own request, and a `DatabaseFile` URL (which a
//! worker restarted after a crash takes from the master's snapshot).

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::Read;
use std::time::Duration;

use common::*;
use lua::*;

const APP: &str = r#"
local db = sqlite.get("main")

function hook_response(r)
  local p = r:path()
  if p == "/setup" then
    db:batch([[CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, pic BLOB);
               CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES people(id));
               CREATE TABLE marks (what TEXT)]])
    r:write(db:query_one("PRAGMA journal_mode").journal_mode)
    return OK
  elseif p == "/insert" then
    local changed, id = db:exec("INSERT INTO people (name, score, pic) VALUES (?1, ?2, ?3)",
                                r:param("name"), 1.5, "\0\1\2")
    r:write(changed, " ", id)
    return OK
  elseif p == "/people" then
    local out = {}
    for _, row in ipairs(db:query("SELECT id, name, score, pic, NULL AS missing FROM people ORDER BY id")) do
      out[#out + 1] = string.format("%s|%s|%s|%s|%d|%s", math.type(row.id), row.name,
                                    math.type(row.score), tostring(row.score), #row.pic, tostring(row.missing))
    end
    r:write(table.concat(out, "\n"))
    return OK
  elseif p == "/find" then
    local row = db:query_one("SELECT name FROM people WHERE name = ?", r:param("name"))
    r:write(row and row.name or "none")
    return OK
  elseif p == "/tx" then
    local how = r:param("how")
    local tx = db:begin()
    tx:exec("INSERT INTO people (name) VALUES (?)", "tx-" .. how)
    local inside = tx:query_one("SELECT count(*) AS n FROM people WHERE name = ?", "tx-" .. how).n
    if how == "commit" then tx:commit()
    elseif how == "rollback" then tx:rollback()
    elseif how == "error" then error("failed half-way")
    elseif how == "badarg" then
      -- A bad argument is the call's error; the transaction carries on.
      for _, call in ipairs({tx.exec, tx.query, tx.query_one}) do
        if pcall(call, tx, "SELECT ?", {}) then error("a table was bound") end
      end
      tx:commit()
    end
    r:write("inside=", inside)
    return OK
  elseif p == "/count" then
    r:write(db:query_one("SELECT count(*) AS n FROM people WHERE name = ?", r:param("name")).n)
    return OK
  elseif p == "/fk" then
    db:exec("INSERT INTO child (parent) VALUES (?)", 999)
    return OK
  elseif p == "/slow" then
    db:exec("INSERT INTO marks VALUES ('slow started')")
    -- A statement that takes a while on the blocking pool.
    local row = db:query_one([[WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?)
                               SELECT count(*) AS n FROM c]], tonumber(r:param("n")))
    r:write("slow ", row.n)
    return OK
  elseif p == "/big" then
    -- 1,000 rows of 100 bytes: over `small`'s max_result=8k, not main's.
    local sql = [[WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000)
                  SELECT x, printf('%0100d', x) AS pad FROM c]]
    local ok, err = pcall(sqlite.get("small").query, sqlite.get("small"), sql)
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"), "\n", #db:query(sql), " ",
            sqlite.get("small"):query_one("SELECT 7 AS seven").seven)
    return OK
  elseif p == "/leave-open" then
    -- A transaction begun through plain calls: refused, and undone.
    local ok, err = pcall(db.exec, db, "BEGIN")
    local ok2, err2 = pcall(db.batch, db, "BEGIN; INSERT INTO people (name) VALUES ('in-batch')")
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"), "\n", tostring(ok2), " ",
            tostring(err2):match("[^\n]*"))
    return OK
  elseif p == "/cycles" then
    -- Transactions begun and ended in turn (committed, rolled back, closed
    -- by `<close>`) in one request that lasts: four rounds, each followed
    -- by a wait for "go" while the test reads the worker's memory.
    local go = shared.subscribe("go")
    for round = 1, 4 do
      for i = 1, tonumber(r:param("n")) do
        local tx <close> = db:begin()
        if i % 3 == 0 then tx:commit() elseif i % 3 == 1 then tx:rollback() end
      end
      shared.set("round", round)
      if round < 4 then go:next(60) end
    end
    r:write("done")
    return OK
  elseif p == "/round" then
    r:write(shared.get("round") or 0)
    return OK
  elseif p == "/go" then
    shared.broadcast("go", "1")
    return OK
  elseif p == "/fast" then
    r:write("fast ", db:query_one("SELECT 1 AS one").one)
    return OK
  elseif p == "/marks" then
    r:write(db:query_one("SELECT count(*) AS n FROM marks").n)
    return OK
  elseif p == "/secret" then
    r:write(sqlite.get("secret"):query_one("SELECT 7 AS seven").seven)
    return OK
  elseif p == "/broken" then
    sqlite.get("broken"):query("SELECT 1")
    return OK
  end
end
"#;

fn server() -> Axkit {
    let global =
        "Database main sqlite:{dir}/app.db\nDatabase broken sqlite:{dir}/no/such/dir/x.db\n\
         Database small sqlite:{dir}/app.db max_result=8k\n\
                  DatabaseFile secret {dir}/secret.url";
    Axkit::start_single_with(&conf(global, "Plugin app"), |d| {
        d.write("plugins/app.lua", APP);
        d.write(
            "secret.url",
            format!("sqlite:{}/other.db\n", d.path().display()),
        );
    })
}

#[test]
fn queries_parameters_types_and_nulls_in_wal_mode() {
    let mut srv = server();
    assert_eq!(srv.get("/setup").text(), "wal");
    assert!(srv.dir.path().join("app.db-wal").exists());
    let evil = "x'); DROP TABLE people; --";
    let insert = srv.get(&format!(
        "/insert?name={}",
        evil.replace(' ', "%20").replace(';', "%3B")
    ));
    assert_eq!((insert.status, insert.text()), (200, "1 1".to_string()));
    assert_eq!(srv.get("/insert?name=b").text(), "1 2");
    let people = srv.get("/people");
    assert_eq!(people.status, 200, "{}", srv.sync_stderr());
    assert_eq!(
        people.text(),
        format!("integer|{evil}|float|1.5|3|nil\ninteger|b|float|1.5|3|nil")
    );
    assert_eq!(srv.get("/find?name=b").text(), "b");
    assert_eq!(srv.get("/find?name=zz").text(), "none");
    assert_eq!(srv.get("/secret").text(), "7");
}

#[test]
fn transactions_and_constraints() {
    let mut srv = server();
    srv.get("/setup");
    for how in ["commit", "rollback", "forget", "badarg"] {
        assert_eq!(
            srv.get(&format!("/tx?how={how}")).text(),
            "inside=1",
            "{how}"
        );
    }
    assert_eq!(srv.get("/tx?how=error").status, 500);
    let count = |name: &str| srv.get(&format!("/count?name=tx-{name}")).text();
    // The rollback of a transaction left open happens on a blocking thread
    // as its request ends.
    assert!(wait_until(Duration::from_secs(10), || count("forget")
        == "0"
        && count("error") == "0"));
    assert_eq!(count("commit"), "1");
    assert_eq!(count("badarg"), "1");
    assert_eq!(count("rollback"), "0");
    // Foreign keys are enforced: a 500 naming the database.
    assert_eq!(srv.get("/fk").status, 500);
    srv.wait_stderr_line(
        &["sqlite database \"main\"", "FOREIGN KEY constraint failed"],
        Duration::from_secs(10),
    );
}

/// A `BEGIN` through a plain call is refused and rolled back, so the
/// connection goes back to the pool committing each statement as it
/// should: another process sees the next insert and can write.
#[test]
fn a_transaction_begun_by_a_plain_call_is_refused_and_rolled_back() {
    let srv = server();
    srv.get("/setup");
    let refused = srv.get("/leave-open").text();
    let lines: Vec<&str> = refused.lines().collect();
    assert_eq!(lines.len(), 2, "{refused}");
    for line in lines {
        assert!(
            line.starts_with("false ") && line.contains("make transactions with begin()"),
            "{refused}"
        );
    }
    assert_eq!(srv.get("/insert?name=after").text(), "1 1");
    // Another process: the row is committed, and the database not locked.
    let db = srv.dir.path().join("app.db");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], timeout=0.5)\n\
             n = c.execute(\"SELECT count(*) FROM people WHERE name IN ('after', 'in-batch')\").fetchone()[0]\n\
             c.execute(\"INSERT INTO marks VALUES ('outside')\"); c.commit()\n\
             print(n)",
        )
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A result larger than the database's `max_result=` is an error naming
/// the limit, not a worker grown without bound; the pool goes on.
#[test]
fn a_result_over_max_result_is_refused() {
    let srv = server();
    let text = srv.get("/big").text();
    let (first, rest) = text.split_once('\n').unwrap();
    assert!(
        first.starts_with("false ") && first.contains("over max_result=8192 bytes"),
        "{text}"
    );
    assert_eq!(rest, "1000 7");
}

#[test]
fn a_database_that_cannot_be_opened_answers_503() {
    let mut srv = server();
    assert_eq!(srv.get("/broken").status, 503);
    srv.wait_stderr_line(
        &[
            "app.lua: hook_response",
            "sqlite database \"broken\": unavailable",
        ],
        Duration::from_secs(10),
    );
    assert_eq!(srv.get("/fast").text(), "fast 1");
}

#[test]
fn a_slow_statement_delays_only_its_own_request() {
    let srv = server();
    srv.get("/setup");
    // Far more than the fast request needs, on SQLite's blocking pool.
    let mut slow = begin(&srv, "/slow?n=5000000");
    // Asked through the same worker: it answers while the statement runs.
    assert!(wait_until(Duration::from_secs(10), || srv
        .get("/marks")
        .text()
        == "1"));
    let fast = srv.get("/fast");
    assert_eq!((fast.status, fast.text()), (200, "fast 1".to_string()));
    slow.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let pending =
        matches!(slow.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(pending, "the slow request answered before the fast one");
    slow.set_nonblocking(false).unwrap();
    assert_eq!(finish(slow).text(), "slow 5000000");
}

#[test]
fn a_restarted_worker_uses_the_url_file_the_master_read() {
    let app = "function hook_response(r)\n  \
               r:write(sqlite.get('secret'):query_one('PRAGMA database_list').file)\n  \
               return OK\nend\n";
    let text = "PluginDir {dir}/plugins\nWorkers 1\nDatabaseFile secret {dir}/secret.url\n\
                <Server>\n    Listen 127.0.0.1:0\n    Plugin app\n</Server>\n";
    let mut srv = Axkit::start_with(text, &[], |d| {
        d.write("plugins/app.lua", app);
        d.write(
            "secret.url",
            format!("sqlite:{}/a.db\n", d.path().display()),
        );
    });
    let first = srv.get("/").text();
    assert!(first.ends_with("/a.db"), "{first}");
    // Edited since the master loaded it: a worker restarted after a
    // crash still uses what the master read (a reload would take it).
    let other = format!("sqlite:{}/b.db\n", srv.dir.path().display());
    srv.dir.write("secret.url", other);
    let victim = srv.workers()[0];
    signal(victim, 9);
    let mut now = Vec::new();
    assert!(wait_until(Duration::from_secs(20), || {
        now = srv.workers();
        now.len() == 1 && !now.contains(&victim)
    }));
    let after = srv.get("/").text();
    assert!(after.ends_with("/a.db"), "{after}");
    assert!(!srv.dir.path().join("b.db").exists());
    srv.stop();
}

/// A request that lasts (a stream, a long poll) and begins and ends
/// transactions in turn keeps none of them once ended: the worker's memory
/// and its connections to the database stay flat over 80,000 of them, once
/// warm (a first round starts the blocking threads). Each used to stay
/// listed until the end of the request, some 150 bytes a transaction
/// (12 MB over these; under 1 MB now).
#[test]
fn transactions_ended_in_one_long_request_are_not_kept_until_it_ends() {
    let srv = server();
    let pid = srv.pid();
    let connections = || {
        fd_targets(pid)
            .iter()
            .filter(|t| t.ends_with("/app.db"))
            .count()
    };
    let cycles = begin(&srv, "/cycles?n=40000");
    let after_round = |n: u32| {
        assert!(
            wait_until(Duration::from_secs(120), || srv.get("/round").text()
                == n.to_string()),
            "round {n} did not end"
        );
        (status_kib(pid, "RssAnon"), connections())
    };
    after_round(1);
    srv.get("/go");
    let (warm, open) = after_round(2);
    assert!(open <= 4, "{open} connections");
    srv.get("/go");
    after_round(3);
    srv.get("/go");
    let (last, still_open) = after_round(4);
    assert_eq!(finish(cycles).text(), "done");
    // How many the pool keeps open between rounds depends on timing;
    // never more than it ever needed.
    assert!(still_open <= 4, "{still_open} connections");
    assert!(
        last < warm + 4096,
        "the worker grew from {warm} kB to {last} kB over 80,000 transactions"
    );
}
