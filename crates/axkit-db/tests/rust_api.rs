//! The Rust API against real servers (PostgreSQL, Redis) and an SQLite
//! file, the way a worker runs it: a config loaded with the `DbSource`,
//! handles from `Databases::of`, calls on a current-thread runtime. Typed
//! rows, bound parameters, transactions, and the error kinds that decide
//! between a 503 and a 500.

#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "../../../tests/common/services.rs"]
mod services;

use std::time::Duration;

use axkit::config::{load, Config, Source};
use axkit::plugin::Catalog;
use axkit_db::redis::cmd;
use axkit_db::{Databases, DbSource, ErrorKind, SqlValue};

fn config(global: &str) -> Config {
    let text = format!("{global}\n<Server>\nListen 127.0.0.1:0\n</Server>\n");
    let source = Source::Text {
        name: "t.conf".into(),
        text,
    };
    load(&source, &Catalog::new(vec![Box::new(DbSource)])).unwrap()
}

/// Run `f` as a worker's event loop would.
fn run<F: std::future::Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
}

#[test]
fn postgres_typed_rows_transactions_and_errors() {
    let Some(pg) = services::Postgres::start() else {
        return;
    };
    pg.psql("CREATE TABLE posts (id serial PRIMARY KEY, title text NOT NULL UNIQUE)");
    pg.psql("CREATE TABLE shapes (a int, b int); INSERT INTO shapes VALUES (1, 2)");
    let config = config(&format!(
        "Database main {url} pool=2\nDatabase one {url} pool=1\nDatabase slow {url} timeout=200ms\n\
         Database down postgres://postgres@127.0.0.1:{}/x",
        services::free_port(),
        url = pg.url()
    ));
    let dbs = Databases::of(&config).unwrap();
    let db = dbs.postgres("main").unwrap();
    run(async {
        let n = db
            .execute(
                "INSERT INTO posts (title) VALUES ($1), ($2)",
                &[&"a", &"b'; --"],
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        let rows = db
            .query(
                "SELECT id, title FROM posts WHERE id > $1 ORDER BY id",
                &[&0i32],
            )
            .await
            .unwrap();
        let titles: Vec<&str> = rows.iter().map(|r| r.get("title")).collect();
        assert_eq!(titles, ["a", "b'; --"]);
        let one = db
            .query_one("SELECT count(*) FROM posts", &[])
            .await
            .unwrap();
        assert_eq!(one.get::<_, i64>(0), 2);
        assert!(db
            .query_opt("SELECT id FROM posts WHERE id = -1", &[])
            .await
            .unwrap()
            .is_none());

        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO posts (title) VALUES ($1)", &[&"kept"])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO posts (title) VALUES ($1)", &[&"undone"])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO posts (title) VALUES ($1)", &[&"dropped"])
            .await
            .unwrap();
        drop(tx);

        // A statement the database refuses: the application's bug, a 500.
        let dup = db
            .execute("INSERT INTO posts (title) VALUES ($1)", &[&"a"])
            .await
            .unwrap_err();
        assert_eq!(
            (dup.kind(), dup.code(), dup.status()),
            (ErrorKind::Query, Some("23505"), 500)
        );
        assert!(
            dup.to_string()
                .starts_with("postgres database \"main\": ERROR 23505"),
            "{dup}"
        );

        // Down or too slow: the server's trouble of the moment, a 503.
        let down = dbs
            .postgres("down")
            .unwrap()
            .query("SELECT 1", &[])
            .await
            .unwrap_err();
        assert_eq!((down.kind(), down.status()), (ErrorKind::Unavailable, 503));
        let slow = dbs.postgres("slow").unwrap();
        let late = slow.query("SELECT pg_sleep(5)", &[]).await.unwrap_err();
        assert_eq!((late.kind(), late.status()), (ErrorKind::Timeout, 503));
        // The pool opens a new connection for the next call.
        assert_eq!(
            slow.query_one("SELECT 1", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            1
        );

        // A kept statement whose table changed shape fails once, and is
        // prepared again.
        let one = dbs.postgres("one").unwrap();
        let shape = "SELECT * FROM shapes";
        assert_eq!(one.query_one(shape, &[]).await.unwrap().len(), 2);
        pg.psql("ALTER TABLE shapes ADD COLUMN c int");
        let changed = one.query_one(shape, &[]).await.unwrap_err();
        assert_eq!(changed.code(), Some("0A000"), "{changed}");
        assert_eq!(one.query_one(shape, &[]).await.unwrap().len(), 3);
    });
    assert!(common::wait_until(Duration::from_secs(10), || {
        pg.psql("SELECT string_agg(title, ',' ORDER BY id) FROM posts") == "a,b'; --,kept"
    }));
}

#[test]
fn redis_commands_pipelines_and_subscriptions() {
    let Some(redis) = services::Redis::start() else {
        return;
    };
    let config = config(&format!("Database kv {}", redis.url()));
    let kv = Databases::of(&config).unwrap().redis("kv").unwrap();
    run(async {
        kv.cmd(cmd("SET").arg("k").arg("v")).await.unwrap();
        let v: String = kv.query(cmd("GET").arg("k")).await.unwrap();
        assert_eq!(v, "v");
        let mut pipe = axkit_db::redis::pipe();
        pipe.cmd("INCR").arg("n").cmd("INCR").arg("n");
        let replies = kv.pipeline(&pipe).await.unwrap();
        assert_eq!(
            replies,
            [
                axkit_db::redis::Value::Int(1),
                axkit_db::redis::Value::Int(2)
            ]
        );
        let wrong = kv.cmd(cmd("INCR").arg("k")).await.unwrap_err();
        assert_eq!((wrong.kind(), wrong.status()), (ErrorKind::Query, 500));

        let mut sub = kv.subscribe(&["news"]).await.unwrap();
        let n: i64 = kv
            .query(cmd("PUBLISH").arg("news").arg("hi"))
            .await
            .unwrap();
        assert_eq!(n, 1);
        let msg = sub.next().await.unwrap();
        assert_eq!(
            (msg.get_channel_name(), msg.get_payload_bytes()),
            ("news", &b"hi"[..])
        );
    });
}

#[test]
fn sqlite_rows_calls_and_transactions() {
    let dir = common::TempDir::new("sqlite-api");
    let config = config(&format!(
        "Database local sqlite:{}/a.db",
        dir.path().display()
    ));
    let db = Databases::of(&config).unwrap().sqlite("local").unwrap();
    run(async {
        db.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
            .await
            .unwrap();
        let done = db
            .execute(
                "INSERT INTO t (name) VALUES (?1)",
                vec![SqlValue::Text("a".into())],
            )
            .await
            .unwrap();
        assert_eq!((done.changes, done.last_insert_rowid), (1, 1));
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO t (name) VALUES ('b')", vec![])
            .await
            .unwrap();
        drop(tx);
        let rows = db.query("SELECT id, name FROM t", vec![]).await.unwrap();
        assert_eq!(rows.columns(), ["id", "name"]);
        assert_eq!(
            rows.iter().collect::<Vec<_>>(),
            [[SqlValue::Integer(1), SqlValue::Text("a".into())]]
        );
        let names: Vec<String> = db
            .call(|conn| {
                let mut st = conn.prepare_cached("SELECT name FROM t")?;
                let names = st.query_map([], |row| row.get(0))?;
                names.collect()
            })
            .await
            .unwrap();
        assert_eq!(names, ["a"]);
        let bad = db.query("SELEKT", vec![]).await.unwrap_err();
        assert_eq!((bad.kind(), bad.status()), (ErrorKind::Query, 500));
    });
}
