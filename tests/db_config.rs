//! The `Database` and `DatabaseFile` directives through the stock `axkit`
//! binary, needing no database server: `--check` validates URLs, schemes
//! and options without quoting the secret URL and without connecting;
//! the directives need no `Plugin` line; a database declared twice is an
//! error naming both lines; neither the master nor an idle worker opens a
//! connection; `--directives` lists them.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::*;
use lua::*;

/// `axkit --check` on `text` (written in a scratch directory, `{dir}`
/// replaced): whether it passed, and its output.
fn check_conf(text: &str, prepare: impl FnOnce(&TempDir)) -> (bool, String) {
    let dir = TempDir::new("dbcheck");
    prepare(&dir);
    let path = dir.write("axkit.conf", config_text(&dir, text));
    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        lossy(&out.stderr) + &lossy(&out.stdout),
    )
}

fn server(global: &str) -> String {
    format!("{global}\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n")
}

#[test]
fn check_reports_bad_urls_and_options_without_quoting_them() {
    let (ok, out) = check_conf(
        "Database alpha ftp://admin:hunter2@db.example/x\n\
         Database bravo postgres://admin:hunter2@db.example/x?sslmode=require\n\
         Database charlie postgres://admin:hunter2@db.example/x pool=0\n\
         Database delta redis://admin:hunter2@db.example/3 timeout=soon\n\
         Database echo postgres://admin:hunter2@db.example/x?bogus=1\n\
         Database hunter2-name\n\
         DatabaseFile foxtrot {dir}/missing.url\n\
         <Server>\n    Listen 127.0.0.1:0\n\
         <Location /x>\nDatabase golf sqlite:x.db\n</Location>\n</Server>\n",
        |_| {},
    );
    assert!(!ok, "{out}");
    assert!(!out.contains("hunter2@"), "{out}");
    for expected in [
        "axkit.conf:1: Database (plugin databases): invalid value (not shown: the directive is secret): \
         unknown scheme \"ftp\"",
        "axkit.conf:2: Database (plugin databases): invalid value (not shown: the directive is secret): \
         sslmode=require",
        "axkit.conf:3: Database (plugin databases): invalid value (not shown: the directive is secret): \
         pool: expected a count from 1 to 1024",
        "axkit.conf:4: Database (plugin databases): invalid value (not shown: the directive is secret): \
         timeout: expected a duration",
        "axkit.conf:5: Database (plugin databases): invalid value (not shown: the directive is secret): \
         not a PostgreSQL URL the client understands: unknown option `bogus`",
        "axkit.conf:6: Database (plugin databases): expected 2 to 5 arguments, got 1",
        "/missing.url: no such file",
        "axkit.conf:11: Database (plugin databases): not allowed in <Location>",
    ] {
        assert!(out.contains(expected), "no {expected:?} in:\n{out}");
    }
}

#[test]
fn check_connects_to_nothing_and_the_directives_need_no_plugin_line() {
    // Something listens where the databases are said to be: nothing may
    // connect to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let global = format!(
        "Database pg postgres://app:pw@127.0.0.1:{port}/app pool=2 timeout=2s\n\
         Database kv redis://127.0.0.1:{port}/1\n\
         Database local sqlite:{{dir}}/never-created.db\n\
         DatabaseFile file {{dir}}/secret.url pool=1"
    );
    let write_secret = |d: &TempDir| {
        d.write(
            "secret.url",
            format!("postgres://app:pw@127.0.0.1:{port}/app\n"),
        );
    };
    let (ok, out) = check_conf(&server(&global), write_secret);
    assert!(ok, "{out}");

    // A master with two workers and a Lua plugin, serving no request.
    let app = "local db = postgres.get('pg')\nfunction hook_response(r) return 204 end\n";
    let text = format!(
        "PluginDir {{dir}}/plugins\nLogLevel LOGINFO\n{global}\n\
         <Server>\n    Listen 127.0.0.1:0\n    Plugin app\n</Server>\n"
    );
    let mut srv = Axkit::start_with(&text, &[], |d| {
        d.write("plugins/app.lua", app);
        write_secret(d);
    });
    assert_eq!(srv.get("/").status, 204);
    srv.stop();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something connected to the database"
    );
    assert!(!srv.dir.path().join("never-created.db").exists());
}

#[test]
fn a_database_declared_twice_is_an_error_naming_both_lines() {
    let text = "PluginDir {dir}/plugins\n\
                Database main sqlite:{dir}/a.db\n\
                DatabaseFile main {dir}/url\n\
                <Server>\n    Listen 127.0.0.1:0\n    Plugin app\n</Server>\n";
    let (ok, out) = check_conf(text, |d| {
        d.write(
            "plugins/app.lua",
            "function hook_response(r) return 204 end\n",
        );
        d.write("url", "sqlite:b.db\n");
    });
    assert!(!ok, "{out}");
    assert!(
        out.contains("database \"main\" is declared twice: ")
            && out.contains("axkit.conf:2 and ")
            && out.contains("axkit.conf:3"),
        "{out}"
    );
}

#[test]
fn a_handle_of_the_wrong_kind_or_name_is_a_500() {
    let global = "Database local sqlite:{dir}/a.db";
    let app = r#"
function hook_response(r)
  if r:path() == "/kind" then postgres.get("local") end
  return 204
end
"#;
    let mut srv = start(&conf(global, "Plugin app"), &[("app", app)]);
    assert_eq!(srv.get("/kind").status, 500);
    srv.wait_stderr_line(
        &["postgres database \"local\": it is a sqlite database (use sqlite.get)"],
        Duration::from_secs(10),
    );
    assert_eq!(srv.get("/").status, 204);
}

#[test]
fn directives_lists_the_database_directives() {
    let out = Command::new(BIN).arg("--directives").output().unwrap();
    let text = lossy(&out.stdout);
    let db = text
        .split("\n[")
        .find(|s| s.starts_with("databases]"))
        .unwrap_or_else(|| panic!("no [databases] in:\n{text}"));
    assert!(db.contains("  Database <string>"), "{db}");
    assert!(db.contains("  DatabaseFile <string>"), "{db}");
}
