//! The `rewrite` plugin over real sockets: `Redirect` and `RedirectMatch`
//! (exact raw responses, query kept), `Rewrite` internal (the method,
//! body and headers kept, the Location picked again, CGI's REQUEST_URI the
//! original) and external, each flag, captures (one value each in a
//! query), `RewriteCond`, rounds (rules shared with the Location left run
//! once, the redirects of the Location entered) and the loop limit, a
//! path that climbs above the root, a newline in the path (matched as one
//! line), `OPTIONS *` (no rule applies), and what `--check` refuses (a bad
//! regex, an unknown `${name}`, a `Redirect` that could change the host,
//! a capture in a URL's host part, a `RewriteMaxLoops` out of range).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Says what request reached it and in which Location.
const ECHO: &str = r#"
function hook_response(r)
  r:set_header("Content-Type", "text/plain")
  local body = ""
  if r:method() == "POST" then body = " body=" .. r:body() end
  r:write(r:method(), " ", r:uri(), " in ", r:location(), body, "\n")
  return OK
end
"#;

fn start(server: &str) -> Axkit {
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\nPlugin logging/warn\n<Server>\n    \
         Listen 127.0.0.1:0\n    ScriptAlias /cgi-bin/ {{dir}}/cgi-bin/\n    \
         Plugin rewrite\n    Plugin serve_cgi\n    Plugin echo\n{server}\n</Server>\n"
    );
    Axkit::start_single_with(&conf, |d| {
        d.write("plugins/echo.lua", ECHO);
        let script = d.write(
            "cgi-bin/env",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n%s %s %s\\n' \
             \"$REQUEST_URI\" \"$SCRIPT_NAME\" \"$PATH_INFO\"\n",
        );
        std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
    })
}

/// The raw response to `GET target` with `headers`, `Date` masked.
fn raw_get(srv: &Axkit, target: &str, headers: &str) -> String {
    raw_request(srv, "GET", target, headers)
}

/// The raw response to `method target` with `headers`, `Date` masked.
fn raw_request(srv: &Axkit, method: &str, target: &str, headers: &str) -> String {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    );
    let (bytes, _) = srv.raw(req.as_bytes());
    lossy_undated(&bytes)
}

fn redirect_head(status: &str, location: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nServer: AxKit\r\nDate: DATE\r\nLocation: {location}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[test]
fn redirect_by_prefix_and_by_regex() {
    let srv = start(
        "    Redirect /old https://new.example/base\n    \
         Redirect permanent /moved/ /here/\n    \
         Redirect 308 /api http://api.example\n    \
         RedirectMatch 307 ^/img/(?P<n>[^/]+)\\.gif$ /png/${n}.png\n",
    );
    assert_eq!(
        raw_get(&srv, "/old/a%20b/c?x=1&y=2", ""),
        redirect_head("302 Found", "https://new.example/base/a%20b/c?x=1&y=2")
    );
    assert_eq!(
        raw_get(&srv, "/old", ""),
        redirect_head("302 Found", "https://new.example/base")
    );
    // A prefix ends at a segment boundary.
    assert_eq!(get(&srv, "/oldish", "").text(), "GET /oldish in /\n");
    assert_eq!(
        raw_get(&srv, "/moved/x?q", ""),
        redirect_head("301 Moved Permanently", "/here/x?q")
    );
    assert_eq!(
        raw_get(&srv, "/api/v1", ""),
        redirect_head("308 Permanent Redirect", "http://api.example/v1")
    );
    assert_eq!(
        raw_get(&srv, "/img/cat.gif", ""),
        redirect_head("307 Temporary Redirect", "/png/cat.png")
    );
}

#[test]
fn internal_rewrite_keeps_method_body_and_picks_the_location() {
    let srv = start(
        "    Rewrite ^/user/(?P<id>[0-9]+)/(.*)$ /app/profile/$2?id=${id} qsappend\n    \
         Rewrite ^/legacy/(.*)$ /cgi-bin/env/$1\n    \
         <Location /app>\n    </Location>\n",
    );
    assert_eq!(
        get(&srv, "/user/42/edit?tab=2", "").text(),
        "GET /app/profile/edit?id=42&tab=2 in /app\n"
    );
    let r = request_body(&srv, "POST", "/user/7/save", "k=v");
    assert_eq!(r, "POST /app/profile/save?id=7 in /app body=k=v\n");
    // CGI: REQUEST_URI is what the client sent, the script and its path
    // info come from the rewritten path (as Apache).
    assert_eq!(
        get(&srv, "/legacy/a/b?z=1", "").text(),
        "/legacy/a/b?z=1 /cgi-bin/env /a/b\n"
    );
}

/// `method path` with `body`, the response body as text.
fn request_body(srv: &Axkit, method: &str, path: &str, body: &str) -> String {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (bytes, _) = srv.raw(req.as_bytes());
    parse_response(&bytes).unwrap().text()
}

#[test]
fn flags() {
    let srv = start(
        "    Rewrite ^/a/(.*)$ /b/$1\n    Rewrite ^/b/(.*)$ /c/$1\n    \
         Rewrite ^/l/(.*)$ /m/$1 last\n    Rewrite ^/m/(.*)$ /n/$1\n    \
         Rewrite ^/CASE/(.*)$ /case-ok/$1 nocase\n    \
         Rewrite ^/q/(.*)$ /r/$1?fixed=1\n    \
         Rewrite ^/ext/(.*)$ https://other.example/$1\n    \
         Rewrite ^/moved/(.*)$ /new/$1 [R=301,QSA]\n",
    );
    // Without `last`, the next rule sees what the one before left.
    assert_eq!(get(&srv, "/a/x", "").text(), "GET /c/x in /\n");
    // `last` ends the rules.
    assert_eq!(get(&srv, "/l/x", "").text(), "GET /m/x in /\n");
    assert_eq!(get(&srv, "/case/x", "").text(), "GET /case-ok/x in /\n");
    // A `?` in the replacement replaces the query.
    assert_eq!(
        get(&srv, "/q/x?old=1", "").text(),
        "GET /r/x?fixed=1 in /\n"
    );
    assert_eq!(
        raw_get(&srv, "/ext/a%20b?k=1", ""),
        redirect_head("302 Found", "https://other.example/a%20b?k=1")
    );
    assert_eq!(
        raw_get(&srv, "/moved/x?k=1", ""),
        redirect_head("301 Moved Permanently", "/new/x?k=1")
    );
    // A capture cannot make a Location naming another host.
    assert_eq!(
        raw_get(&srv, "/moved//evil.example/", ""),
        redirect_head("301 Moved Permanently", "/new/evil.example/")
    );
}

#[test]
fn conditions_apply_to_the_next_rule() {
    let srv = start(
        "    RewriteCond host ^admin\\. nocase\n    RewriteCond method ^GET$\n    \
         Rewrite ^/(.*)$ /admin/$1 end\n    \
         RewriteCond header:X-Beta ^on$ not\n    Rewrite ^/beta/(.*)$ /stable/$1\n    \
         <Location /blk>\n        RewriteCond method ^POST$\n        \
             Rewrite ^/blk/post$ /blk/posted\n    </Location>\n    \
         Rewrite ^/plain$ /plain-ok\n    Rewrite ^/blk/get$ /blk/got\n",
    );
    let admin = |method: &str| {
        let req = format!(
            "{method} /x HTTP/1.1\r\nHost: ADMIN.example\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        parse_response(&srv.raw(req.as_bytes()).0).unwrap().text()
    };
    assert_eq!(admin("GET"), "GET /admin/x in /\n");
    assert_eq!(admin("POST"), "POST /x in / body=\n");
    assert_eq!(get(&srv, "/beta/x", "").text(), "GET /stable/x in /\n");
    assert_eq!(
        get(&srv, "/beta/x", "X-Beta: on\r\n").text(),
        "GET /beta/x in /\n"
    );
    // The conditions belong to the rules under them only, in their block:
    // the Location's POST condition is not the Server rule's after it.
    assert_eq!(
        get(&srv, "/plain", "X-Beta: on\r\n").text(),
        "GET /plain-ok in /\n"
    );
    assert_eq!(get(&srv, "/blk/get", "").text(), "GET /blk/got in /blk\n");
    assert_eq!(get(&srv, "/blk/post", "").text(), "GET /blk/post in /blk\n");
    assert_eq!(
        request_body(&srv, "POST", "/blk/post", ""),
        "POST /blk/posted in /blk body=\n"
    );
}

#[test]
fn loop_limit_and_escapes() {
    let mut srv = start(
        "    RewriteMaxLoops 3\n    Rewrite ^/up/(.*)$ /../$1\n    \
         <Location /ping>\n        Rewrite ^/ping/(.*)$ /pong/$1\n    </Location>\n    \
         <Location /pong>\n        Rewrite ^/pong/(.*)$ /ping/$1\n    </Location>\n    \
         <Location /one>\n        Rewrite ^/one/(.*)$ /two/$1\n    </Location>\n",
    );
    // Into another Location, whose rules run in turn.
    assert_eq!(get(&srv, "/one/x", "").text(), "GET /two/x in /\n");
    let r = get(&srv, "/ping/x", "");
    assert_eq!(r.status, 500);
    srv.wait_stderr(
        "more than 3 rounds of rules (RewriteMaxLoops)",
        Duration::from_secs(10),
    );
    assert_eq!(get(&srv, "/up/etc/passwd", "").status, 400);
}

#[test]
fn rules_shared_with_the_location_left_run_once() {
    let srv = start(
        "    Rewrite ^/(.*)$ /cgi-bin/env/$1 last\n    <Location /cgi-bin>\n    </Location>\n    \
         <Location /app>\n        Rewrite ^/app/(.*)$ /app/index/$1\n        \
             <Location /app/index>\n        </Location>\n    </Location>\n",
    );
    // The Server's rule took the request into /cgi-bin: the next round
    // runs that Location's own rules, not the Server's again (nginx runs
    // a server's rewrites once; `last` is [L]).
    assert_eq!(
        get(&srv, "/hello", "").text(),
        "/hello /cgi-bin/env /hello\n"
    );
}

#[test]
fn enclosing_location_rules_run_once() {
    let srv = start(
        "    <Location /app>\n        Rewrite ^/app/(.*)$ /app/index/$1\n        \
             <Location /app/index>\n        </Location>\n    </Location>\n",
    );
    assert_eq!(
        get(&srv, "/app/x", "").text(),
        "GET /app/index/x in /app/index\n"
    );
}

#[test]
fn a_capture_in_the_query_is_one_value() {
    let srv = start(
        "    Rewrite ^/q/(.*)$ /r?name=$1\n    \
         RedirectMatch ^/s/(.*)$ https://search.example/?q=$1&x=1\n    \
         Redirect /find https://find.example/?path=\n",
    );
    assert_eq!(
        get(&srv, "/q/bob%26admin=1", "").text(),
        "GET /r?name=bob%26admin%3D1 in /\n"
    );
    assert_eq!(
        get(&srv, "/q/a+b;c%23d%20e", "").text(),
        "GET /r?name=a%2Bb%3Bc%23d%20e in /\n"
    );
    assert_eq!(
        raw_get(&srv, "/s/a&b=c", ""),
        redirect_head("302 Found", "https://search.example/?q=a%26b%3Dc&x=1")
    );
    assert_eq!(
        raw_get(&srv, "/find/a&b?k=1", ""),
        redirect_head("302 Found", "https://find.example/?path=%2Fa%26b&k=1")
    );
}

#[test]
fn bad_rules_are_refused_at_check() {
    let dir = TempDir::new("rewrite-check");
    let conf = dir.write(
        "t.conf",
        "<Server>\n    Listen 127.0.0.1:0\n    Plugin rewrite\n    Rewrite ^/(a /b\n    \
         Rewrite ^/a /b frob\n    RewriteCond cookie x\n    Redirect 200 /a /b\n    \
         Rewrite ^/a relative\n    Redirect /old/ https://new.example\n    \
         Rewrite ^/(?P<id>[0-9]+)$ /u/${idd}\n    RedirectMatch ^/(?P<n>.*)$ /v/${m}\n    \
         Redirect /fine/ https://new.example/\n    Rewrite ^/(?P<id>[0-9]+)$ /u/${id}$$\n\
         </Server>\n",
    );
    let err = check_fails(&conf);
    for want in [
        "t.conf:4: Rewrite (plugin rewrite): bad regex \"^/(a\"",
        "t.conf:5: Rewrite (plugin rewrite): unknown flag \"frob\"",
        "t.conf:6: RewriteCond (plugin rewrite): unknown subject \"cookie\"",
        "t.conf:7: Redirect (plugin rewrite): \"200\" is not a redirect status",
        "t.conf:8: Rewrite (plugin rewrite): \"relative\": the replacement is a path",
        "t.conf:9: Redirect (plugin rewrite): \"https://new.example\" has no path, and \
         \"/old/\" ends in /",
        "t.conf:10: Rewrite (plugin rewrite): \"/u/${idd}\": ${idd} names no group of \
         \"^/(?P<id>[0-9]+)$\"",
        "t.conf:11: RedirectMatch (plugin rewrite): \"/v/${m}\": ${m} names no group",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    for fine in ["t.conf:12", "t.conf:13"] {
        assert!(!err.contains(fine), "{fine} refused: {err}");
    }

    // A condition whose block ends before any rule: refused, not given to
    // the rule after the block.
    let conf = dir.write(
        "u.conf",
        "<Server>\n    Listen 127.0.0.1:0\n    Plugin rewrite\n    <Location /a>\n        \
         RewriteCond method ^POST$\n    </Location>\n    Rewrite ^/a/(.*)$ /b/$1\n</Server>\n",
    );
    let err = check_fails(&conf);
    assert!(
        err.contains("u.conf:5: RewriteCond with no Rewrite line after it in its block"),
        "{err}"
    );
}

#[test]
fn captures_into_the_host_part_are_refused() {
    // `https://new.example$1`, Apache's idiom, sends `/go@evil.com` to
    // `https://new.example@evil.com`: refused at load, by --check and at
    // start; the host written with a / after it is fine.
    let dir = TempDir::new("rewrite-host");
    let conf = dir.write(
        "t.conf",
        "<Server>\n    Listen 127.0.0.1:0\n    Plugin rewrite\n    \
         RedirectMatch ^/go(.*)$ https://new.example$1\n    \
         Rewrite ^/r(.*)$ https://new.example${0}\n    \
         RedirectMatch 301 ^/to/(.*)$ https://$1\n    \
         Rewrite ^/p(.*)$ http://h:$1/ redirect\n    \
         RedirectMatch ^/ok(.*)$ https://new.example/$1\n    \
         Rewrite ^/q(.*)$ https://new.example?to=$1\n</Server>\n",
    );
    let err = check_fails(&conf);
    for want in [
        "t.conf:4: RedirectMatch (plugin rewrite): \"https://new.example$1\" takes a capture \
         into the host part",
        "t.conf:5: Rewrite (plugin rewrite): \"https://new.example${0}\" takes a capture",
        "t.conf:6: RedirectMatch (plugin rewrite): \"https://$1\" takes a capture",
        "t.conf:7: Rewrite (plugin rewrite): \"http://h:$1/\" takes a capture",
        "write the host yourself with a / after it",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    for fine in ["t.conf:8", "t.conf:9"] {
        assert!(!err.contains(fine), "{fine} refused: {err}");
    }
    assert!(refused_at_start(&conf).contains("t.conf:4: RedirectMatch"));

    let srv = start("    RedirectMatch ^/go(.*)$ https://new.example/$1\n");
    assert_eq!(
        raw_get(&srv, "/go@evil.com", ""),
        redirect_head("302 Found", "https://new.example/@evil.com")
    );
}

/// `axkit --check` of `conf`, which must fail: what it said.
fn check_fails(conf: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(conf)
        .output()
        .unwrap();
    let err = lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    err
}

#[test]
fn a_newline_in_the_path_does_not_sidestep_a_rule() {
    // The path is matched decoded: `%0a` puts a newline in it. Matched as
    // one line, `.` takes the newline and `$` is the end of the path.
    let srv = start(
        "    Rewrite ^/private/(.*)$ /denied\n    \
         RedirectMatch ^/old/(.*)$ /new/$1\n    \
         RewriteCond path ^/cond/.+$\n    Rewrite ^/cond/ /cond-ok\n    \
         Rewrite ^/exact$ /exact-ok\n",
    );
    assert_eq!(
        get(&srv, "/private/%0afoo", "").text(),
        "GET /denied in /\n"
    );
    assert_eq!(
        raw_get(&srv, "/old/%0ax", ""),
        redirect_head("302 Found", "/new/%0Ax")
    );
    assert_eq!(get(&srv, "/cond/%0ax", "").text(), "GET /cond-ok in /\n");
    assert_eq!(get(&srv, "/exact", "").text(), "GET /exact-ok in /\n");
    assert_eq!(get(&srv, "/exact%0a", "").text(), "GET /exact%0a in /\n");
}

#[test]
fn a_rewrite_into_a_location_meets_its_redirects() {
    let srv = start(
        "    Rewrite ^/go/(.*)$ /loc/$1\n    \
         Redirect /loc/old https://server.example/old\n    \
         <Location /loc>\n        Redirect 301 /loc/r https://x.example/r\n        \
             RedirectMatch ^/loc/m/(.*)$ /m/$1\n    </Location>\n",
    );
    assert_eq!(
        raw_get(&srv, "/go/r/x?q=1", ""),
        redirect_head("301 Moved Permanently", "https://x.example/r/x?q=1")
    );
    assert_eq!(
        raw_get(&srv, "/go/m/y", ""),
        redirect_head("302 Found", "/m/y")
    );
    assert_eq!(
        get(&srv, "/go/other", "").text(),
        "GET /loc/other in /loc\n"
    );
    // The Server's lines ran on the path the client sent, once, as its
    // Rewrite lines do.
    assert_eq!(
        get(&srv, "/go/old/z", "").text(),
        "GET /loc/old/z in /loc\n"
    );
}

#[test]
fn options_asterisk_is_not_a_path_to_rewrite() {
    let ok = "HTTP/1.1 200 OK\r\nServer: AxKit\r\nDate: DATE\r\nContent-Type: text/plain\r\n\
              Content-Length: 15\r\nConnection: close\r\n\r\nOPTIONS * in /\n";
    let srv = start("    Rewrite .* /all\n");
    assert_eq!(get(&srv, "/x", "").text(), "GET /all in /\n");
    assert_eq!(raw_request(&srv, "OPTIONS", "*", ""), ok);
    // A site moved with a rule that takes every path.
    let srv = start("    RedirectMatch 301 .* https://new.example/\n");
    assert_eq!(
        raw_get(&srv, "/x", ""),
        redirect_head("301 Moved Permanently", "https://new.example/")
    );
    assert_eq!(raw_request(&srv, "OPTIONS", "*", ""), ok);
}

#[test]
fn rewrite_max_loops_out_of_range_is_refused() {
    let dir = TempDir::new("rewrite-loops");
    let conf = dir.write(
        "t.conf",
        "<Server>\n    Listen 127.0.0.1:0\n    Plugin rewrite\n    RewriteMaxLoops 0\n    \
         <Location /a>\n        RewriteMaxLoops 101\n    </Location>\n    \
         <Location /b>\n        RewriteMaxLoops 100\n    </Location>\n    \
         <Location /c>\n        RewriteMaxLoops 1\n    </Location>\n</Server>\n",
    );
    let err = check_fails(&conf);
    for want in [
        "t.conf:4: RewriteMaxLoops (plugin rewrite): expected a number of rounds from 1 to 100, \
         got \"0\"",
        "t.conf:6: RewriteMaxLoops (plugin rewrite): expected a number of rounds from 1 to 100, \
         got \"101\"",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    for fine in ["t.conf:9", "t.conf:12"] {
        assert!(!err.contains(fine), "{fine} refused: {err}");
    }
    assert!(refused_at_start(&conf).contains("t.conf:4: RewriteMaxLoops"));
}
