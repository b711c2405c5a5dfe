//! `axkit --check` catching what cannot work, beyond each value on its
//! own: a DocumentRoot that is not there (with the path it resolved to), a
//! RequestLog whose directory is missing (the server refuses to start
//! too), a PluginDir that does not exist (a warning), an unknown plugin
//! with the paths looked at and the nearest script name, reported once
//! (its directives are not reported again as unknown), a ScriptAlias
//! target that is not there, a PidFile whose directory is missing (the
//! master refuses to start too), relative paths taken from `ServerRoot`, in
//! every directive that names one, whatever the working directory, an
//! access rule written where its plugin does not run, and durations no
//! deadline can be made of (`0` for a timeout, more than a century).
//! Exact messages, as `config_cli.rs` checks them.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

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

/// A PidFile in a missing directory: `--check` says so, with the line and
/// the path; a master refuses to start before it starts any worker (it
/// used to find out only once they served, and stop them).
#[test]
fn pid_file_in_a_missing_directory_is_refused() {
    let (dir, f) = conf(
        "ServerRoot {dir}\nWorkers 1\nPidFile run/axkit.pid\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
    );
    let d = dir.path().display();
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:3: PidFile (plugin core): {d}/run/axkit.pid: its directory {d}/run: No such file or directory (os error 2)"
            ),
            format!("axkit: configuration {f} has 1 error(s)")
        ]
    );
    let (code, out, err) = axkit(&["-c", &f]);
    assert_eq!(code, Some(1), "{err:?}");
    assert!(!out.contains("listening"), "{out}");
    assert!(
        err.iter().any(|l| l.ends_with(&format!(
            "PidFile {d}/run/axkit.pid: its directory {d}/run: No such file or directory (os error 2)"
        ))),
        "{err:?}"
    );
    std::fs::create_dir(dir.path().join("run")).unwrap();
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(0), "{err:?}");
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

/// A ScriptAlias target that is not there, or is neither a directory of
/// scripts nor one program: the line, and the path it resolved to (taken
/// from ServerRoot, or from the working directory without one).
#[test]
fn missing_script_alias_target_names_the_resolved_path() {
    let (dir, f) = conf(
        "ServerRoot {dir}\nPlugin serve_cgi\n<Server>\n    Listen 127.0.0.1:0\n    \
         ScriptAlias /cgi-bin/ cgi-bin/\n    ScriptAlias /tool/ tool.cgi/\n    \
         ScriptAlias /scripts/ scripts\n    ScriptAlias /null/ /dev/null\n</Server>\n",
    );
    std::fs::create_dir(dir.path().join("scripts")).unwrap();
    dir.write("tool.cgi", "#!/bin/sh\n");
    let d = dir.path().display();
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1), "{err:?}");
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:5: ScriptAlias (plugin serve_cgi): {d}/cgi-bin: No such file or directory (os error 2)"
            ),
            format!(
                "axkit: {f}:8: ScriptAlias (plugin serve_cgi): /dev/null: neither a directory nor a regular file"
            ),
            format!("axkit: configuration {f} has 2 error(s)"),
        ]
    );
    // Without ServerRoot, from the working directory (the crate root).
    let (_dir, f) = conf(
        "Plugin serve_cgi\n<Server>\n    Listen 127.0.0.1:0\n    ScriptAlias /cgi-bin/ no-cgi-bin/\n</Server>\n",
    );
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err[0],
        format!(
            "axkit: {f}:4: ScriptAlias (plugin serve_cgi): {}/no-cgi-bin: No such file or directory (os error 2)",
            env!("CARGO_MANIFEST_DIR")
        )
    );
}

/// `app`: a SQLite query, a session, and who Basic auth let in.
const APP: &str = r#"
local db = sqlite.get("x")

function hook_response(r)
  local p = r:path()
  if p == "/db" then
    db:exec("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    db:exec("INSERT INTO t VALUES (?)", 7)
    r:write("sum=", db:query_one("SELECT sum(n) AS n FROM t").n)
  elseif p == "/session" then
    session.get(r).seen = true
    r:write("session")
  elseif p == "/private/" then
    r:write("user=", tostring(r:user()))
  else
    return DECLINED
  end
  return OK
end
"#;

/// Every directive that names a file or directory, written relative with
/// a `ServerRoot`: a server started from another working directory runs
/// the CGI script, signs a session with the key, queries the SQLite file,
/// checks passwords from the htpasswd file and opens its console socket,
/// all beneath ServerRoot, and leaves nothing in its working directory.
/// Its workers replay what the master read: the same paths.
#[test]
fn relative_paths_of_every_directive_are_taken_from_server_root() {
    const CONF: &str = "ServerRoot {dir}\nWorkers 2\nPluginDir plugins\nSessionKey k1 keys/k1.key\n\
        Database x sqlite:data/x.db\nPlugin console\nConsoleListen unix:console.sock\n<Server>\n    Listen 127.0.0.1:0\n    Plugin serve_cgi\n    \
        Plugin auth_basic\n    Plugin app\n    ScriptAlias /cgi-bin/ cgi-bin/\n    \
        <Location /private/>\n        AuthUserFile htpasswd\n        Require valid-user\n    \
        </Location>\n</Server>\n";
    let dir = TempDir::new("root");
    dir.write("plugins/app.lua", APP);
    dir.write(
        "keys/k1.key",
        "a-session-key-0123456789abcdefghijklmnopqrstuvwxyz\n",
    );
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let cgi = dir.write(
        "cgi-bin/hello.cgi",
        "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\ncgi ran\\n'\n",
    );
    std::fs::set_permissions(cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    // ada:open sesame (bcrypt, cost 4).
    dir.write(
        "htpasswd",
        "ada:$2b$04$LHGutq5Cfg.TnP.3SjDabexndGgjKcWdYKFXaaUmMTeUvxMEF31HG\n",
    );
    let conf = dir.write("axkit.conf", config_text(&dir, CONF));
    let elsewhere = TempDir::new("cwd");

    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut command = Command::new(BIN);
    command.arg("-c").arg(&conf).current_dir(elsewhere.path());
    let srv = Axkit::launch(command, dir, conf);
    let res = get(&srv, "/cgi-bin/hello.cgi", "");
    assert_eq!((res.status, res.text()), (200, "cgi ran\n".to_string()));
    let res = get(&srv, "/session", "");
    assert_eq!(res.status, 200);
    let cookie = res.header_all("Set-Cookie");
    assert!(
        cookie.iter().any(|c| c.starts_with("axkit_session=")),
        "{cookie:?}"
    );
    let res = get(&srv, "/db", "");
    assert_eq!((res.status, res.text()), (200, "sum=7".to_string()));
    assert!(srv.dir.path().join("data/x.db").is_file());
    assert_eq!(get(&srv, "/private/", "").status, 401);
    let res = get(
        &srv,
        "/private/",
        "Authorization: Basic YWRhOm9wZW4gc2VzYW1l\r\n",
    );
    assert_eq!((res.status, res.text()), (200, "user=ada".to_string()));
    let sock = srv.dir.path().join("console.sock");
    assert!(wait_until(Duration::from_secs(20), || sock.exists()));
    let mut console = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    console
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    console.write_all(b"quit\n").unwrap();
    let mut answer = String::new();
    console.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "OK bye\n");
    let left: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// An access rule (`Deny`, `Allow`, `Require`) written in a scope whose
/// chain lacks its plugin would guard nothing there while the config reads
/// as guarded: `Deny from all` at Server level with `Plugin access` only in
/// `<Location /x>` left `/y` open. Refused, naming the line; the same rule
/// inside the Location that loads the plugin is fine.
#[test]
fn an_access_rule_where_its_plugin_does_not_run_is_refused() {
    let (_dir, f) = conf(
        "<Server>\n    Listen 127.0.0.1:0\n    Deny from all\n    Require valid-user\n    \
         <Location /x>\n        Plugin access\n        Plugin auth_basic\n        Allow from 127.0.0.1\n    \
         </Location>\n    <Location /z>\n        Deny from 10.0.0.0/8\n    </Location>\n</Server>\n",
    );
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1), "{err:?}");
    let why = |plugin: &str, scope: &str| {
        format!(
            "plugin `{plugin}` does not run {scope}, so this line would guard nothing there: add \
             `Plugin {plugin}` to this scope (or one around it), or move the line into the \
             <Location> that loads it"
        )
    };
    let outside = "in this <Server> (outside the <Location>s that load it)";
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:3: Deny (plugin access): {}",
                why("access", outside)
            ),
            format!(
                "axkit: {f}:4: Require (plugin auth_basic): {}",
                why("auth_basic", outside)
            ),
            format!(
                "axkit: {f}:11: Deny (plugin access): {}",
                why("access", "in <Location /z>")
            ),
            format!("axkit: configuration {f} has 3 error(s)"),
        ]
    );

    let (_dir, f) = conf(
        "<Server>\n    Listen 127.0.0.1:0\n    Plugin access\n    Deny from all\n    \
         <Location /x>\n        Allow from 127.0.0.1\n    </Location>\n</Server>\n",
    );
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(0), "{err:?}");
}

/// A timeout of `0` would fail every request (or close every console
/// session) at once, and a duration past a century would overflow the
/// deadline made of it (a panic when the server stops, for
/// `ShutdownTimeout`): both are refused, naming the directive and the
/// range. A time limit's `0` is no limit, and `KeepAliveTimeout 0` turns
/// keep-alive off: those load.
#[test]
fn durations_without_a_deadline_are_refused() {
    let (_dir, f) = conf(
        "Plugin proxy\nPlugin serve_cgi\nPlugin console\nPlugin cache\nPlugin xslt\n\
         ShutdownTimeout 18446744073709551615\nConsoleTimeout 0\nCacheBackendTimeout 0ms\n\
         <Server>\n    Listen 127.0.0.1:0\n    HeaderTimeout 0\n    KeepAliveTimeout 0\n    \
         BodyTimeout 0s\n    SendTimeout 36501d\n    ProxyTimeout 0\n    ProxyReadTimeout 0\n    \
         CGITimeout 0\n    CGIMaxTime 0\n    XSLTTimeLimit 0\n    CacheLockTimeout 0\n</Server>\n",
    );
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    let zero = "0 would expire at once: expected a duration from 1ms to 36500d";
    let huge = |d: &str| format!("duration \"{d}\" is too large (at most 36500d)");
    assert_eq!(code, Some(1), "{err:?}");
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:6: ShutdownTimeout (plugin core): {}",
                huge("18446744073709551615")
            ),
            format!("axkit: {f}:7: ConsoleTimeout (plugin console): {zero}"),
            format!("axkit: {f}:8: CacheBackendTimeout (plugin cache): {zero}"),
            format!("axkit: {f}:11: HeaderTimeout (plugin core): {zero}"),
            format!("axkit: {f}:13: BodyTimeout (plugin core): {zero}"),
            format!(
                "axkit: {f}:14: SendTimeout (plugin core): {}",
                huge("36501d")
            ),
            format!("axkit: {f}:15: ProxyTimeout (plugin proxy): {zero}"),
            format!("axkit: {f}:16: ProxyReadTimeout (plugin proxy): {zero}"),
            format!("axkit: {f}:17: CGITimeout (plugin serve_cgi): {zero}"),
            format!("axkit: configuration {f} has 9 error(s)"),
        ]
    );
}

/// A `0` that would silently turn a protection off, or keep what can never
/// be used, is refused with what to write instead: `AuthFailureLimit`'s
/// PERIOD (each failure forgotten at once: no limit) as its COUNT,
/// `OpenFileCache`'s TTL (no entry ever fresh: `Off` is no caching),
/// `FailTimeout 0` (a server marked down back at once; a group's lines are
/// read when the proxy starts, after the directives). `MaxFails 0` means
/// what it means to nginx (never mark a server down), and loads.
#[test]
fn zeros_that_would_disable_a_limit_are_refused() {
    let (_dir, f) = conf(
        "Plugin auth_basic\nPlugin uri_to_file\n<Server>\n    Listen 127.0.0.1:0\n    \
         AuthFailureLimit 10 0\n    OpenFileCache 100 0\n    <Location /a>\n        \
         AuthFailureLimit 0 1m\n    </Location>\n</Server>\n",
    );
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1), "{err:?}");
    assert_eq!(
        err,
        [
            format!(
                "axkit: {f}:5: AuthFailureLimit (plugin auth_basic): a PERIOD of 0 would forget \
                 each failure at once, which is no limit: expected a duration above 0"
            ),
            format!(
                "axkit: {f}:6: OpenFileCache (plugin uri_to_file): a TTL of 0 would never serve \
                 an entry: expected a TTL above 0 (for no caching: OpenFileCache Off)"
            ),
            format!(
                "axkit: {f}:8: AuthFailureLimit (plugin auth_basic): expected a count of at \
                 least 1, got \"0\""
            ),
            format!("axkit: configuration {f} has 3 error(s)"),
        ]
    );
    let upstream = |lines: &str| {
        conf(&format!(
            "Plugin proxy\n<Upstream u>\n    Server 127.0.0.1:1\n{lines}</Upstream>\n\
             <Server>\n    Listen 127.0.0.1:0\n</Server>\n"
        ))
    };
    let (_dir, f) = upstream("    MaxFails 0\n    FailTimeout 0\n");
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(1), "{err:?}");
    assert_eq!(
        err,
        [
            format!(
                "axkit: plugin `proxy`: {f}:5: Upstream u: FailTimeout: 0 would bring a server \
                 marked down back at once: expected a duration above 0 (MaxFails 0 never marks \
                 one down)"
            ),
            format!("axkit: configuration {f} has errors"),
        ]
    );
    let (_dir, f) = upstream("    MaxFails 0\n");
    let (code, _, err) = axkit(&["--check", "-c", &f]);
    assert_eq!(code, Some(0), "{err:?}");
}
