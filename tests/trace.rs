//! Seeing what the server does with a request: `Trace On` (a line per
//! plugin called at each hook, with its outcome and time, after the Server
//! and Location chosen), `X-AxKit-Trace: 1` honoured only from `TraceFrom`,
//! the same lines at level debug under `LogLevel LOGDEBUG`, and the reason
//! for a 403, 404 or 405 in the error log at level info (and not under the
//! default `LogLevel`).

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(10);

/// The trace lines (from `trace PEER: ` on) of stderr that are about
/// `peer`, with every time replaced by `N`: times vary, the rest must not.
fn trace_lines(stderr: &str, peer: &str) -> Vec<String> {
    let tag = format!("trace {peer}: ");
    stderr
        .lines()
        .filter_map(|l| l.split_once(&tag).map(|(_, rest)| rest))
        .map(|rest| {
            let mut out = String::new();
            let mut digits = String::new();
            for c in rest.chars() {
                if c.is_ascii_digit() {
                    digits.push(c);
                    continue;
                }
                if !digits.is_empty() {
                    out.push_str(if c == 'µ' { "N" } else { &digits });
                    digits.clear();
                }
                out.push(c);
            }
            out.push_str(&digits);
            out
        })
        .collect()
}

/// `GET path` (with extra header lines) on a connection of its own, and
/// the client's address: what the trace lines name.
fn get_from(srv: &Axkit, path: &str, headers: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = srv.connect();
    let me = s.local_addr().unwrap().to_string();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let (bytes, _) = read_to_end_within(&mut s, LIMIT);
    (status_of(&bytes), me)
}

const SITE: &str =
    "Plugin logging/warn\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {dir}/www\n    \
                    Plugin uri_to_file\n    Plugin fast_mime_map\n    Plugin serve_file\n    \
                    <Location /t>\n        Trace On\n    </Location>\n</Server>\n";

fn site(dir: &TempDir) {
    dir.write("www/a.txt", "a\n");
    dir.write("www/t/a.txt", "traced\n");
}

#[test]
fn trace_on_logs_every_plugin_call_of_its_location() {
    let mut srv = Axkit::start_single_with(SITE, site);
    let conf = srv.conf.display().to_string();
    // Outside the Location: nothing. It is logged before the traced
    // request below (one worker, lines written in order).
    let (status, plain) = get_from(&srv, "/a.txt", "");
    assert_eq!(status, 200);
    let (status, traced) = get_from(&srv, "/t/a.txt", "");
    assert_eq!(status, 200);
    let (status, missing) = get_from(&srv, "/t/nope", "");
    assert_eq!(status, 404);
    srv.wait_stderr_line(&[&format!("trace {missing}: sent 404")], LIMIT);
    let all = srv.stderr();
    assert_eq!(trace_lines(&all, &plain), Vec::<String>::new(), "{all}");
    assert_eq!(
        trace_lines(&all, &traced),
        [
            format!("GET /t/a.txt HTTP/1.1: <Server> {conf}:2, <Location /t> {conf}:8"),
            "uri_translation uri_to_file: OK (Nµs)".to_string(),
            "mime_map fast_mime_map: OK (Nµs)".to_string(),
            "response serve_file: OK (Nµs)".to_string(),
            "sent 200 (7 body bytes) Nµs after the request began".to_string(),
        ],
        "{all}"
    );
    assert_eq!(
        trace_lines(&all, &missing),
        [
            format!("GET /t/nope HTTP/1.1: <Server> {conf}:2, <Location /t> {conf}:8"),
            "uri_translation uri_to_file: OK (Nµs)".to_string(),
            "mime_map fast_mime_map: DECLINED (Nµs)".to_string(),
            "response serve_file: DECLINED (Nµs)".to_string(),
            "sent 404 (108 body bytes) Nµs after the request began".to_string(),
        ],
        "{all}"
    );
    // Written at notice, whatever LogLevel (here the default, warn) says.
    assert!(
        all.lines()
            .any(|l| l.contains("[notice]") && l.contains(&format!("trace {traced}: sent 200"))),
        "{all}"
    );
}

#[test]
fn log_level_debug_traces_every_request_at_debug() {
    let text = SITE.replace(
        "Plugin logging/warn\n",
        "Plugin logging/warn\nLogLevel LOGDEBUG\n",
    );
    let mut srv = Axkit::start_single_with(&text, site);
    let (status, plain) = get_from(&srv, "/a.txt", "");
    assert_eq!(status, 200);
    let line = srv.wait_stderr_line(&[&format!("trace {plain}: sent 200")], LIMIT);
    assert!(line.contains("[debug]"), "{line}");
    let all = srv.stderr();
    assert_eq!(
        trace_lines(&all, &plain)[1..4],
        [
            "uri_translation uri_to_file: OK (Nµs)",
            "mime_map fast_mime_map: OK (Nµs)",
            "response serve_file: OK (Nµs)",
        ],
        "{all}"
    );
    // A Location with Trace On still writes at notice.
    let (_, traced) = get_from(&srv, "/t/a.txt", "");
    let line = srv.wait_stderr_line(&[&format!("trace {traced}: sent 200")], LIMIT);
    assert!(line.contains("[notice]"), "{line}");
}

/// `X-AxKit-Trace: 1` traces a request from a client in `TraceFrom`
/// (behind a trusted proxy, the client it names); from anyone else the
/// header is ignored, and a forwarded address from an untrusted peer
/// counts for nothing.
#[test]
fn trace_header_is_honoured_only_from_trace_from() {
    let text = SITE.replace("        Trace On\n", "").replace(
        "    Plugin uri_to_file\n",
        "    TraceFrom 10.0.0.0/8 127.0.0.1\n    Plugin uri_to_file\n",
    );
    let mut srv = Axkit::start_single_with(&text, site);
    let (_, plain) = get_from(&srv, "/a.txt", "");
    let (_, zero) = get_from(&srv, "/a.txt", "X-AxKit-Trace: 0\r\n");
    let (status, asked) = get_from(&srv, "/a.txt", "X-AxKit-Trace: 1\r\n");
    assert_eq!(status, 200);
    srv.wait_stderr_line(&[&format!("trace {asked}: sent 200")], LIMIT);
    let all = srv.stderr();
    assert_eq!(trace_lines(&all, &asked).len(), 5, "{all}");
    assert!(trace_lines(&all, &plain).is_empty(), "{all}");
    assert!(trace_lines(&all, &zero).is_empty(), "{all}");

    // 127.0.0.1 is not in TraceFrom here; a forwarded 10.x address counts
    // only from a trusted proxy.
    let text = SITE.replace("        Trace On\n", "").replace(
        "    Plugin uri_to_file\n",
        "    TraceFrom 10.0.0.0/8\n    Plugin uri_to_file\n",
    );
    let mut srv = Axkit::start_single_with(&text, site);
    let spoofed = "X-AxKit-Trace: 1\r\nX-Forwarded-For: 10.0.0.1\r\n";
    let (_, refused) = get_from(&srv, "/a.txt", spoofed);
    let all = srv.stop();
    assert!(trace_lines(&all, &refused).is_empty(), "{all}");
    let text = text.replace("    TraceFrom", "    TrustedProxy 127.0.0.1\n    TraceFrom");
    let mut srv = Axkit::start_single_with(&text, site);
    let (_, proxied) = get_from(&srv, "/a.txt", spoofed);
    // The lines name the client the trusted proxy forwarded for.
    srv.wait_stderr_line(&["trace 10.0.0.1: sent 200"], LIMIT);
    let all = srv.stop();
    assert!(trace_lines(&all, &proxied).is_empty(), "{all}");
}

/// The reasons for 403, 404 and 405 at level info: what was looked for
/// and why it failed.
#[test]
fn refusals_say_why_at_info() {
    let config = format!(
        "Plugin logging/warn\nLogLevel LOGINFO\n{}<Server>\n    Listen 127.0.0.1:0\n    \
         TrustedProxy 127.0.0.1\n    DocumentRoot {{dir}}/www\n    Plugin uri_to_file\n    Plugin serve_file\n</Server>\n",
        // Root reads any file: the workers run as nobody for the 403.
        if is_root() { "User nobody\n" } else { "" }
    );
    let mut srv = Axkit::start_single_with(&config, |dir| {
        dir.write("www/a.txt", "a\n");
        dir.write("www/dir/b.txt", "b\n");
        let secret = dir.write("www/secret.txt", "s\n");
        set_mode(&secret, 0o000);
    });
    let www = srv.dir.path().join("www").display().to_string();
    let (status, me) = get_from(&srv, "/nope%0a.txt", "");
    assert_eq!(status, 404);
    let line = srv.wait_stderr_line(&[&me, "404"], LIMIT);
    assert!(
        line.ends_with(&format!(
            "[info] axkit[{}]: {me} GET /nope%0a.txt HTTP/1.1: 404: \"{www}/nope\\n.txt\" does not exist",
            srv.pid()
        )),
        "{line}"
    );
    let (status, me) = get_from(&srv, "/secret.txt", "");
    assert_eq!(status, 403);
    let line = srv.wait_stderr_line(&[&me, "403"], LIMIT);
    assert!(
        line.ends_with(&format!(
            "{me} GET /secret.txt HTTP/1.1: 403: open(\"{www}/secret.txt\") failed: Permission denied (os error 13)"
        )),
        "{line}"
    );
    let (status, me) = get_from(&srv, "/dir/", "");
    assert_eq!(status, 403);
    let line = srv.wait_stderr_line(&[&me, "403"], LIMIT);
    assert!(
        line.ends_with(&format!(
            "{me} GET /dir/ HTTP/1.1: 403: directory index of \"{www}/dir\" is forbidden (no DirectoryIndex file in it)"
        )),
        "{line}"
    );
    // Behind a trusted proxy the line names the client it forwarded for.
    let (status, _) = get_from(&srv, "/gone.txt", "X-Forwarded-For: 192.0.2.7\r\n");
    assert_eq!(status, 404);
    let line = srv.wait_stderr_line(&["/gone.txt", "404"], LIMIT);
    assert!(
        line.contains("]: 192.0.2.7 GET /gone.txt HTTP/1.1: 404: "),
        "{line}"
    );
    let r = request(&srv, "DELETE", "/a.txt", "");
    assert_eq!(r.status, 405);
    let line = srv.wait_stderr_line(&["DELETE /a.txt", "405"], LIMIT);
    assert!(
        line.ends_with(&format!(
            "DELETE /a.txt HTTP/1.1: 405: method \"DELETE\" not allowed for \"{www}/a.txt\"; allowed: GET, HEAD"
        )),
        "{line}"
    );
}

/// Under the default LogLevel (warn) a 404 leaves no line.
#[test]
fn refusals_are_not_logged_by_default() {
    let mut srv = Axkit::start_single_with(&SITE.replace("        Trace On\n", ""), site);
    assert_eq!(get(&srv, "/nope", "").status, 404);
    let all = srv.stop();
    assert!(!all.contains("404"), "{all}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
