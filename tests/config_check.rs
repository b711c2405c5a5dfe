//! `axkit --check` catching what cannot work, beyond each value on its
//! own: a DocumentRoot that is not there (with the path it resolved to), a
//! RequestLog whose directory is missing (the server refuses to start
//! too), a PluginDir that does not exist (a warning), an unknown plugin
//! with the paths looked at and the nearest script name, reported once
//! (its directives are not reported again as unknown), and relative paths
//! taken from `ServerRoot`. Exact messages, as `config_cli.rs` checks them.

mod common;

use std::process::Command;

use common::*;

/// `axkit ARGS` run from the crate root: (exit code, stdout, stderr lines).
fn axkit(args: &[&str]) -> (Option<i32>, String, Vec<String>) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run axkit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr.lines().map(str::to_string).collect(),
    )
}

/// Write `text` (`{dir}` replaced) as `t.conf` in a fresh directory.
fn conf(text: &str) -> (TempDir, String) {
    let dir = TempDir::new("check");
    let path = dir.write("t.conf", config_text(&dir, text));
    (dir, path.display().to_string())
}

#[test]
fn missing_document_root_names_the_resolved_path() {
    let (dir, f) = conf(
        "Plugin uri_to_file\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot no/such/dir\n    \
         <Location /a>\n        DocumentRoot {dir}/a.txt\n    </Location>\n    \
         <Location /b>\n        DocumentRoot {dir}\n    </Location>\n</Server>\n",
    );
    dir.write("a.txt", "not a directory");
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    let d = dir.path().display();
    assert_eq!(code, Some(1), "{err:?}");
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:4: DocumentRoot (plugin uri_to_file): {}/no/such/dir: No such file or directory (os error 2)",
                env!("CARGO_MANIFEST_DIR")
            ),
            format!("axkit: {f}:6: DocumentRoot (plugin uri_to_file): {d}/a.txt: not a directory"),
            format!("axkit: configuration {f} has 2 error(s)"),
        ]
    );
}

#[test]
fn relative_paths_are_taken_from_server_root() {
    let (dir, f) = conf(
        "ServerRoot {dir}/root\nPlugin uri_to_file\n<Server>\n    Listen 127.0.0.1:0\n    \
         DocumentRoot www\n</Server>\n",
    );
    let d = dir.path().display();
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err[0],
        format!("axkit: {f}:5: DocumentRoot (plugin uri_to_file): {d}/root/www: No such file or directory (os error 2)")
    );
    std::fs::create_dir_all(dir.path().join("root/www")).unwrap();
    let (code, out, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(0), "{err:?}");
    assert_eq!(out.trim(), format!("axkit: configuration {f} is OK"));
    // A relative ServerRoot would itself depend on the working directory.
    let (_dir, f) = conf("ServerRoot srv\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n");
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err[0],
        format!(
            "axkit: {f}:1: ServerRoot (plugin core): expected an absolute directory, got \"srv\""
        )
    );
}

/// A RequestLog in a directory that does not exist: `--check` says so
/// with the line and the resolved path, and the server refuses to start
/// (as nginx does) instead of losing every access log line.
#[test]
fn request_log_in_a_missing_directory_refuses_to_start() {
    let (dir, f) = conf(
        "ServerRoot {dir}\nPlugin request_log\nRequestLog logs/access_log\n<Server>\n    \
         Listen 127.0.0.1:0\n</Server>\n",
    );
    let d = dir.path().display();
    let why = format!(
        "plugin `request_log`: {f}:3: RequestLog {d}/logs/access_log: No such file or directory (os error 2)"
    );
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        [
            format!("axkit: {why}"),
            format!("axkit: configuration {f} has errors")
        ]
    );
    let refused = refused_at_start(std::path::Path::new(&f));
    assert!(refused.contains(&why), "{refused}");
    // With the directory there, the log is opened (created) at once.
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(0), "{err:?}");
    assert!(dir.path().join("logs/access_log").is_file());
}

/// An unknown plugin: the paths looked at, the nearest script name, and
/// nothing more about the directives it would have declared; a directive
/// with a near name is still reported (it is a typo, not a consequence).
#[test]
fn unknown_plugin_is_reported_once_with_the_paths_searched() {
    let (dir, f) = conf(
        "PluginDir {dir}/lua\nPluginDir {dir}/gone\nPlugin hello_wrold\n<Server>\n    \
         Listen 127.0.0.1:0\n    Plugin hello_wrold\n    HelloGreeting hi\n    DocumentRot x\n</Server>\n",
    );
    dir.write(
        "lua/hello_world.lua",
        "function hook_response(r) return DECLINED end\n",
    );
    let d = dir.path().display();
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:3: Plugin (plugin core): unknown plugin `hello_wrold`; did you mean `hello_world`? \
                 (looked for {d}/lua/hello_wrold.lua, {d}/lua/hello_wrold/init.lua, \
                 {d}/gone/hello_wrold.lua, {d}/gone/hello_wrold/init.lua)"
            ),
            format!("axkit: {f}:8: DocumentRot: unknown directive; did you mean `DocumentRoot`?"),
            format!("axkit: configuration {f} has 2 error(s)"),
        ]
    );
}

/// A PluginDir that does not exist is a warning (another may hold every
/// script), with the path it resolved to.
#[test]
fn missing_plugin_dir_is_a_warning() {
    let (dir, f) = conf(
        "ServerRoot {dir}\nPluginDir lua\nPluginDir typo\nPlugin hello\n<Server>\n    \
         Listen 127.0.0.1:0\n</Server>\n",
    );
    dir.write(
        "lua/hello.lua",
        "function hook_response(r) return DECLINED end\n",
    );
    let d = dir.path().display();
    let (code, out, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(0), "{err:?}");
    assert_eq!(
        err,
        [format!(
            "axkit: warning: {f}:3: PluginDir (plugin core): {d}/typo: No such file or directory (os error 2)"
        )]
    );
    assert_eq!(out.trim(), format!("axkit: configuration {f} is OK"));
}
