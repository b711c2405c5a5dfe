//! `serve_cgi` through the stock `axkit` binary, with real programs: POSIX
//! sh, Perl and Python scripts written into a scratch directory, and git's
//! own `git-http-backend` serving `git clone`, `git fetch` and `git push`.
//!
//! Covered: CGI_Match and ScriptAlias, every meta-variable (and what must
//! not be passed: httpoxy, `_` headers, credentials, the server's own
//! environment; REMOTE_USER/AUTH_TYPE from a Lua authentication plugin),
//! request bodies (Content-Length and chunked, large ones,
//! scripts that never read them), responses (headers, Status, redirects,
//! `nph-`, large output to a slow client in flat memory), malformed or
//! ambiguous output (502 with a log line), ErrorDocument scripts and their
//! REDIRECT_* variables, stderr logging, timeouts and client disconnects
//! ending the whole process group, background children ended with their
//! script (CGIKillGroup), the concurrency cap and its queue,
//! descriptors a script inherits, and 1,000 mixed requests leaving no
//! process, zombie or descriptor behind.
//!
//! Every server runs as one process (`--no-master`), so the axkit process
//! is the worker whose children and descriptors the tests inspect.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A server with `serve_cgi` before `uri_to_file`/`serve_file`, docroot
/// `{dir}/www`, scripts under `{dir}/cgi-bin`; `extra` goes inside
/// `<Server>`, `global` before it.
fn conf(global: &str, extra: &str) -> String {
    format!(
        "Workers 1\n{global}\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {{dir}}/www\n    \
         DirectoryIndex index.html\n    Plugin serve_cgi\n    Plugin uri_to_file\n    \
         Plugin fast_mime_map\n    Plugin serve_file\n    CGI_Match \\.(cgi|pl|py)$\n    \
         ScriptAlias /cgi-bin/ {{dir}}/cgi-bin/\n{extra}\n</Server>\n"
    )
}

fn start(conf: &str, prepare: impl FnOnce(&TempDir)) -> Axkit {
    Axkit::start_single_with(conf, |d| {
        std::fs::create_dir_all(d.path().join("www")).unwrap();
        std::fs::create_dir_all(d.path().join("cgi-bin")).unwrap();
        prepare(d)
    })
}

/// Write an executable script.
fn script(d: &TempDir, rel: &str, text: &str) {
    let p = d.write(rel, text);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `#!` lines for the real interpreters on this machine.
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    format!("#!{}\n", String::from_utf8_lossy(&out.stdout).trim())
}

fn perl() -> String {
    let out = Command::new("perl")
        .args(["-e", "print $^X"])
        .output()
        .expect("perl");
    format!("#!{}\n", String::from_utf8_lossy(&out.stdout).trim())
}

/// Send raw bytes, read the whole (Connection: close) response.
fn exchange(srv: &Axkit, raw: &[u8]) -> (Response, Vec<u8>) {
    let (bytes, _) = srv.raw(raw);
    let r = parse_response(&bytes)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&bytes)));
    (r, bytes)
}

fn get(srv: &Axkit, path: &str, headers: &str) -> Response {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    exchange(srv, req.as_bytes()).0
}

fn post(srv: &Axkit, path: &str, ctype: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {ctype}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    exchange(srv, &req).0
}

/// A chunked POST, in pieces of `piece` bytes.
fn post_chunked(srv: &Axkit, path: &str, body: &[u8], piece: usize) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for part in body.chunks(piece) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = srv.connect();
    // Write from a thread: the server may answer before reading it all.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(30));
    writer.join().unwrap();
    parse_response(&bytes).expect("a response")
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every process whose process group is `pgid` (zombies included).
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may contain spaces.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        if fields[2].parse::<i32>() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Wait until `pred` holds, up to `limit`.
fn eventually(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pred()
}

/// The pid a script logged to stderr as `pid=N`.
fn logged_pid(srv: &mut Axkit, tag: &str) -> i32 {
    let needle = format!("{tag} pid=");
    let log = srv.wait_stderr(&needle, Duration::from_secs(10));
    let at = log.find(&needle).unwrap() + needle.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Children of every thread of `pid` (scripts are spawned from a helper
/// thread), zombies included.
fn all_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid = task.file_name().to_string_lossy().parse().unwrap();
        out.extend(children_of_task(pid, tid));
    }
    out
}

fn children_of_task(pid: i32, tid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn vm_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

const ENV_PL: &str = r#"
print "Content-Type: text/plain\n\n";
print "$_=$ENV{$_}\n" for sort keys %ENV;
"#;

fn env_map(body: &str) -> std::collections::BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn meta_variables_are_complete_and_nothing_else_is_passed() {
    let srv = start(
        &conf(
            "",
            "    SetEnv FOO \"bar baz\"\n    PassEnv CARGO_PKG_NAME AXKIT_NOT_SET\n    \
             <Location /cgi-bin/auth>\n        CGIPassAuth on\n    </Location>",
        ),
        |d| {
            script(d, "cgi-bin/env.pl", &format!("{}{ENV_PL}", perl()));
            script(d, "cgi-bin/auth/env.pl", &format!("{}{ENV_PL}", perl()));
        },
    );
    let port = srv.addr.port();
    let headers = "X-Foo: 1\r\nX-Foo: 2\r\nCookie: a=1\r\nCookie: b=2\r\nProxy: http://evil/\r\n\
                   X_Foo: collide\r\nAuthorization: Basic dTpw\r\n\
                   Proxy-Authorization: Basic dTpw\r\n";
    let r = get(&srv, "/cgi-bin/env.pl/a%20b/c?x=1&y=%41", headers);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    let env = env_map(&r.text());
    let dir = srv.dir.path().to_str().unwrap().to_string();
    let expect = [
        ("GATEWAY_INTERFACE", "CGI/1.1".to_string()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("SERVER_NAME", "localhost".into()),
        ("SERVER_ADDR", "127.0.0.1".into()),
        ("SERVER_PORT", port.to_string()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REQUEST_METHOD", "GET".into()),
        ("REQUEST_URI", "/cgi-bin/env.pl/a%20b/c?x=1&y=%41".into()),
        ("QUERY_STRING", "x=1&y=%41".into()),
        ("REQUEST_SCHEME", "http".into()),
        ("REDIRECT_STATUS", "200".into()),
        ("SCRIPT_NAME", "/cgi-bin/env.pl".into()),
        ("SCRIPT_FILENAME", format!("{dir}/cgi-bin/env.pl")),
        ("DOCUMENT_ROOT", format!("{dir}/www")),
        ("PATH_INFO", "/a b/c".into()),
        ("PATH_TRANSLATED", format!("{dir}/www/a b/c")),
        ("HTTP_HOST", "localhost".into()),
        ("HTTP_CONNECTION", "close".into()),
        ("HTTP_X_FOO", "1, 2".into()),
        ("HTTP_COOKIE", "a=1; b=2".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
        ("FOO", "bar baz".into()),
        ("CARGO_PKG_NAME", "axkit-cli".into()),
    ];
    for (k, v) in &expect {
        assert_eq!(env.get(*k), Some(v), "{k} in {env:#?}");
    }
    assert!(env["SERVER_SOFTWARE"].starts_with("AxKit/"));
    assert!(env["REMOTE_PORT"].parse::<u16>().is_ok());
    // Exactly these: no HTTP_PROXY, no HTTP_X_FOO from `X_Foo`, no
    // credentials, no CONTENT_* without a body, nothing inherited.
    let mut keys: Vec<&str> = env.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = expect.iter().map(|(k, _)| *k).collect();
    want.extend(["SERVER_SOFTWARE", "REMOTE_PORT"]);
    keys.sort();
    want.sort();
    assert_eq!(keys, want);

    // No path info: no PATH_INFO / PATH_TRANSLATED; a body: CONTENT_*.
    let r = post(
        &srv,
        "/cgi-bin/env.pl",
        "application/x-www-form-urlencoded",
        b"a=1",
    );
    let env = env_map(&r.text());
    assert_eq!(env.get("CONTENT_LENGTH").map(String::as_str), Some("3"));
    assert_eq!(
        env.get("CONTENT_TYPE").map(String::as_str),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(env.get("REQUEST_METHOD").map(String::as_str), Some("POST"));
    assert!(!env.contains_key("PATH_INFO") && !env.contains_key("PATH_TRANSLATED"));
    assert_eq!(env.get("QUERY_STRING").map(String::as_str), Some(""));

    // CGIPassAuth on: credentials are passed.
    let r = get(&srv, "/cgi-bin/auth/env.pl", headers);
    let env = env_map(&r.text());
    assert_eq!(
        env.get("HTTP_AUTHORIZATION").map(String::as_str),
        Some("Basic dTpw")
    );
    assert_eq!(
        env.get("HTTP_PROXY_AUTHORIZATION").map(String::as_str),
        Some("Basic dTpw")
    );
    assert!(!env.contains_key("HTTP_PROXY"));
}

#[test]
fn error_documents_and_local_redirects_tell_the_script_where_they_came_from() {
    let srv = start(
        &conf(
            "",
            "    Plugin error_doc\n    ErrorDocument 404 /cgi-bin/env.pl\n    \
             ErrorDocument 405 /cgi-bin/env.pl",
        ),
        |d| {
            script(d, "cgi-bin/env.pl", &format!("{}{ENV_PL}", perl()));
            script(
                d,
                "cgi-bin/jump",
                "#!/bin/sh\nprintf 'Location: /cgi-bin/env.pl?from=jump\\n\\n'\n",
            );
            d.write("www/file.txt", "a file\n");
        },
    );
    let var = |env: &std::collections::BTreeMap<String, String>, k: &str| env.get(k).cloned();

    // As Apache: the original status, path (decoded, no query) and query.
    let r = get(&srv, "/no%20such?x=1", "");
    assert_eq!(r.status, 404, "{}", r.text());
    let env = env_map(&r.text());
    assert_eq!(
        var(&env, "REDIRECT_STATUS").as_deref(),
        Some("404"),
        "{env:#?}"
    );
    assert_eq!(var(&env, "REDIRECT_URL").as_deref(), Some("/no such"));
    assert_eq!(var(&env, "REDIRECT_QUERY_STRING").as_deref(), Some("x=1"));
    assert_eq!(var(&env, "REQUEST_METHOD").as_deref(), Some("GET"));
    assert_eq!(var(&env, "SCRIPT_NAME").as_deref(), Some("/cgi-bin/env.pl"));
    // REQUEST_URI is the request as the client sent it (Apache takes it
    // from the request line): a front controller served as the 404 page
    // routes on it.
    assert_eq!(var(&env, "REQUEST_URI").as_deref(), Some("/no%20such?x=1"));

    // Whatever the method was, the error page runs as a GET; no query, no
    // REDIRECT_QUERY_STRING.
    let r = request(&srv, "DELETE", "/file.txt", "");
    assert_eq!(r.status, 405, "{}", r.text());
    let env = env_map(&r.text());
    assert_eq!(
        var(&env, "REQUEST_METHOD").as_deref(),
        Some("GET"),
        "{env:#?}"
    );
    assert_eq!(var(&env, "REDIRECT_STATUS").as_deref(), Some("405"));
    assert_eq!(var(&env, "REDIRECT_URL").as_deref(), Some("/file.txt"));
    assert_eq!(var(&env, "REDIRECT_QUERY_STRING"), None);

    // A script's local redirect: the status it had (200).
    let r = get(&srv, "/cgi-bin/jump", "");
    assert_eq!(r.status, 200);
    let env = env_map(&r.text());
    assert_eq!(
        var(&env, "REDIRECT_STATUS").as_deref(),
        Some("200"),
        "{env:#?}"
    );
    assert_eq!(var(&env, "REDIRECT_URL").as_deref(), Some("/cgi-bin/jump"));
    assert_eq!(var(&env, "QUERY_STRING").as_deref(), Some("from=jump"));
    assert_eq!(var(&env, "REQUEST_URI").as_deref(), Some("/cgi-bin/jump"));

    // Not redirected: REDIRECT_STATUS=200 (PHP's force-cgi-redirect wants
    // it), and nothing else of the kind.
    let env = env_map(&get(&srv, "/cgi-bin/env.pl?y=2", "").text());
    assert_eq!(var(&env, "REDIRECT_STATUS").as_deref(), Some("200"));
    assert_eq!(var(&env, "REDIRECT_URL"), None);
    assert_eq!(var(&env, "REDIRECT_QUERY_STRING"), None);
}

#[test]
fn remote_user_and_auth_type_come_from_the_authentication_hook() {
    // A real authentication plugin: a Lua script (docs/lua.md).
    let srv = start(
        &conf(
            "PluginDir {dir}/plugins",
            "    <Location /cgi-bin/private>\n        Plugin fakeauth\n    </Location>",
        ),
        |d| {
            d.write(
                "plugins/fakeauth.lua",
                "function hook_authentication(r)\n  r:set_user(\"ada\", \"Basic\")\n  return OK\nend\n",
            );
            let who = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n[%s] [%s]' \"${REMOTE_USER-unset}\" \"${AUTH_TYPE-unset}\"\n";
            script(d, "cgi-bin/private/who", who);
            script(d, "cgi-bin/who", who);
        },
    );
    assert_eq!(
        get(&srv, "/cgi-bin/private/who", "").text(),
        "[ada] [Basic]"
    );
    assert_eq!(get(&srv, "/cgi-bin/who", "").text(), "[unset] [unset]");
}

#[test]
fn forms_uploads_and_chunked_bodies_in_sh_perl_and_python() {
    let py = python();
    // MaxRequestBody defaults to 1M; uploads here are 3 MB.
    let srv = start(&conf("", "    MaxRequestBody 16M"), |d| {
        script(
            d,
            "www/form.cgi",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"q=$QUERY_STRING\"\n",
        );
        script(
            d,
            "www/post.pl",
            &format!(
                "{}{}",
                perl(),
                r#"
read(STDIN, my $body, $ENV{CONTENT_LENGTH});
my %f = map { split /=/, $_, 2 } split /&/, $body;
print "Content-Type: text/plain\n\n";
print "$_=$f{$_}\n" for sort keys %f;
"#
            ),
        );
        // Reads stdin to EOF: works with and without CONTENT_LENGTH.
        script(
            d,
            "www/upload.py",
            &format!(
                "{py}{}",
                r#"import hashlib, os, sys
data = sys.stdin.buffer.read()
sys.stdout.write("Content-Type: text/plain\r\n\r\n")
sys.stdout.write("len=%d sha=%s cl=%s\n" % (len(data), hashlib.sha256(data).hexdigest(), os.environ.get("CONTENT_LENGTH", "-")))
"#
            ),
        );
        // Never reads its (large) request body.
        script(
            d,
            "www/deaf.cgi",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nignored\\n'\n",
        );
    });
    let r = get(&srv, "/form.cgi?name=Ada&x=%20", "");
    assert_eq!((r.status, r.text().as_str()), (200, "q=name=Ada&x=%20\n"));

    let r = post(
        &srv,
        "/post.pl",
        "application/x-www-form-urlencoded",
        b"b=2&a=1",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "a=1\nb=2\n"));

    let data = noise(3 << 20, 7);
    let sha = {
        let mut child = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    };
    let r = post(&srv, "/upload.py", "application/octet-stream", &data);
    assert_eq!(
        r.text(),
        format!("len={} sha={sha} cl={}\n", data.len(), data.len())
    );
    // Chunked: de-chunked and streamed, no CONTENT_LENGTH, EOF ends it.
    let r = post_chunked(&srv, "/upload.py", &data, 100_000);
    assert_eq!(r.text(), format!("len={} sha={sha} cl=-\n", data.len()));
    // A script that never reads a 3 MB body answers, and nothing wedges.
    let r = post(&srv, "/deaf.cgi", "application/octet-stream", &data);
    assert_eq!((r.status, r.text().as_str()), (200, "ignored\n"));
    let r = post_chunked(&srv, "/deaf.cgi", &data, 65536);
    assert_eq!((r.status, r.text().as_str()), (200, "ignored\n"));
    assert_eq!(get(&srv, "/deaf.cgi", "").status, 200);
}

#[test]
fn headers_status_redirects_and_nph() {
    let srv = start(&conf("", ""), |d| {
        d.write("www/target.txt", "the target\n");
        let sh = |d: &TempDir, name: &str, body: &str| {
            script(
                d,
                &format!("cgi-bin/{name}"),
                &format!("#!/bin/sh\n{body}\n"),
            )
        };
        sh(
            d,
            "headers",
            r"printf 'Status: 201 Made\r\nContent-Type: text/x-a\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Multi:  spaced  \r\n\r\nmade'",
        );
        sh(
            d,
            "local",
            "printf 'Location: /target.txt\\n\\nthis body is dropped'",
        );
        sh(
            d,
            "remote",
            "printf 'Location: http://example.com/x?y=1\\n\\n'",
        );
        sh(
            d,
            "moved",
            "printf 'Status: 301 Moved\\nLocation: http://example.com/\\n\\n'",
        );
        sh(d, "loop", "printf 'Location: /cgi-bin/loop\\n\\n'");
        sh(
            d,
            "later",
            "printf 'Content-Type: text/plain\\n\\nearly '; sleep 0.2; printf late",
        );
        sh(d, "lf-only", "printf 'Content-Type: text/plain\\n\\nlf'");
        sh(
            d,
            "gone",
            "printf 'Status: 410\\nContent-Type: text/plain\\n\\n'",
        );
        sh(
            d,
            "big",
            "printf 'Content-Type: application/octet-stream\\n\\n'; head -c 5000000 /dev/zero",
        );
        sh(
            d,
            "sized",
            "printf 'Content-Type: text/plain\\nContent-Length: 5\\n\\nhello'",
        );
        sh(
            d,
            "nph-raw",
            r"printf 'HTTP/1.1 299 Custom\r\nX-Raw: 1\r\n\r\nraw body'",
        );
    });
    let r = get(&srv, "/cgi-bin/headers", "");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Content-Type"), Some("text/x-a"));
    assert_eq!(r.header("X-Multi"), Some("spaced"));
    let cookies = r.header_all("set-cookie");
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(r.text(), "made");
    // Output still coming after the head: streamed, chunked.
    let r = get(&srv, "/cgi-bin/later", "");
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.text(), "early late");

    let r = get(&srv, "/cgi-bin/local", "");
    assert_eq!((r.status, r.text().as_str()), (200, "the target\n"));
    // From a POST too: the redirect is a GET (serve_file takes no POST)
    // and the request body is dropped.
    let r = post(&srv, "/cgi-bin/local", "text/plain", b"some body");
    assert_eq!((r.status, r.text().as_str()), (200, "the target\n"));
    let r = get(&srv, "/cgi-bin/remote", "");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("http://example.com/x?y=1"));
    let r = get(&srv, "/cgi-bin/moved", "");
    assert_eq!(
        (r.status, r.header("Location")),
        (301, Some("http://example.com/"))
    );
    assert_eq!(get(&srv, "/cgi-bin/loop", "").status, 500);
    assert_eq!(get(&srv, "/cgi-bin/lf-only", "").text(), "lf");
    assert_eq!(get(&srv, "/cgi-bin/gone", "").status, 410);
    let r = get(&srv, "/cgi-bin/big", "");
    assert_eq!(r.body.len(), 5_000_000);
    assert!(r.body.iter().all(|&b| b == 0));
    let r = get(&srv, "/cgi-bin/sized", "");
    assert_eq!(
        (r.header("Content-Length"), r.text().as_str()),
        (Some("5"), "hello")
    );
    // HEAD runs the script and sends no body.
    let (bytes, _) =
        srv.raw(b"HEAD /cgi-bin/sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = parse_head_response(&bytes).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        bytes.ends_with(b"\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );

    // nph-: byte for byte, then the connection closes (even if kept alive).
    let (bytes, closed) = srv.raw(b"GET /cgi-bin/nph-raw HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(bytes, b"HTTP/1.1 299 Custom\r\nX-Raw: 1\r\n\r\nraw body");
    assert!(closed);

    // Keep-alive across CGI responses: two requests on one connection.
    let mut s = srv.connect();
    s.write_all(
        b"GET /cgi-bin/lf-only HTTP/1.1\r\nHost: x\r\n\r\nGET /cgi-bin/sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].text().as_str(), all[1].text().as_str()),
        ("lf", "hello")
    );
}

#[test]
fn malformed_output_is_502_logged_with_the_script() {
    let mut srv = start(&conf("", ""), |d| {
        let cases = [
            ("noheader", "printf 'X-Only: 1\\n\\nbody'"),
            ("badline", "printf 'Content-Type: text/plain\\nthis is not a header\\n\\n'"),
            ("cr", "printf 'Content-Type: text/plain\\nX-A: a\\rb\\n\\n'"),
            ("nul", "printf 'Content-Type: text/plain\\nX-\\000A: 1\\n\\n'"),
            ("badstatus", "printf 'Status: 99x\\n\\n'"),
            ("badlength", "printf 'Content-Type: a/b\\nContent-Length: +5\\n\\nhello'"),
            ("relative", "printf 'Location: elsewhere\\n\\n'"),
            ("huge", "i=0; while [ $i -lt 3000 ]; do echo \"X-Pad-$i: 0123456789012345678901234567890\"; i=$((i+1)); done; echo"),
            ("silent", "exit 3"),
            ("partial", "printf 'Content-Type: text/plain\\n'; exit 0"),
            ("crash", "kill -SEGV $$"),
            ("stderr", "echo 'something broke here' >&2; printf 'Content-Type: text/plain\\n\\nok'"),
            ("forger", "printf 'mine\\r[emerg] FORGED \\033[2J \\377\\n' >&2; printf 'Content-Type: text/plain\\n\\nok'"),
        ];
        for (name, body) in cases {
            script(
                d,
                &format!("cgi-bin/{name}"),
                &format!("#!/bin/sh\n{body}\n"),
            );
        }
        d.write("cgi-bin/notexec", "#!/bin/sh\necho secret source\n");
        d.write("www/notexec.cgi", "#!/bin/sh\necho secret source\n");
        std::fs::create_dir_all(d.path().join("cgi-bin/sub")).unwrap();
    });
    for (name, why) in [
        ("noheader", "no Content-Type, Location or Status"),
        ("badline", "not a header line"),
        ("cr", "invalid header value"),
        ("nul", "invalid header name"),
        ("badstatus", "invalid Status"),
        ("badlength", "invalid Content-Length"),
        ("relative", "neither a local path nor an absolute URL"),
        ("huge", "header block larger than"),
        ("silent", "exited with status 3 without any output"),
        ("partial", "before the end of its header block"),
        ("crash", "killed by signal 11"),
    ] {
        let r = get(&srv, &format!("/cgi-bin/{name}"), "");
        assert_eq!(r.status, 502, "{name}: {}", r.text());
        let line = format!("{}/cgi-bin/{name}: ", srv.dir.path().display());
        let log = srv.wait_stderr(&line, Duration::from_secs(5));
        let ours = log
            .lines()
            .filter(|l| l.contains(&line))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(ours.contains(why), "{name}: expected {why:?} in\n{ours}");
    }
    let r = get(&srv, "/cgi-bin/stderr", "");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    srv.wait_stderr(
        "/cgi-bin/stderr: stderr: something broke here",
        Duration::from_secs(5),
    );
    // A script's stderr is escaped like everything else in the log: a
    // carriage return, a terminal escape and a byte that is not UTF-8
    // cannot hide or rewrite what the line says.
    assert_eq!(get(&srv, "/cgi-bin/forger", "").status, 200);
    let log = srv.wait_stderr("FORGED", Duration::from_secs(5));
    let line = log.lines().find(|l| l.contains("FORGED")).unwrap();
    assert!(
        line.ends_with("/cgi-bin/forger: stderr: mine\\x0d[emerg] FORGED \\x1b[2J \\xff"),
        "{line:?}"
    );

    // Would-be CGIs are never served as files, executable or not.
    for path in ["/cgi-bin/notexec", "/notexec.cgi"] {
        let r = get(&srv, path, "");
        assert_eq!(r.status, 403, "{path}");
        assert!(!r.text().contains("secret"));
    }
    srv.wait_stderr(
        "notexec.cgi: not an executable file",
        Duration::from_secs(5),
    );
    assert_eq!(get(&srv, "/cgi-bin/", "").status, 403);
    assert_eq!(get(&srv, "/cgi-bin/sub/", "").status, 403);
    assert_eq!(get(&srv, "/cgi-bin/missing", "").status, 404);
    // The worker is fine.
    assert_eq!(get(&srv, "/cgi-bin/stderr", "").status, 200);
}

#[test]
fn head_announces_the_length_the_script_declared() {
    // A script that honours HEAD sends its Content-Length and no body: the
    // response says what a GET would get, not 0.
    let srv = start(&conf("", ""), |d| {
        script(
            d,
            "cgi-bin/sized",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 5\\n\\n'\n\
             [ \"$REQUEST_METHOD\" = HEAD ] || printf hello\n",
        );
    });
    let r = request(&srv, "HEAD", "/cgi-bin/sized", "");
    assert_eq!((r.status, r.header("Content-Length")), (200, Some("5")));
    let r = get(&srv, "/cgi-bin/sized", "");
    assert_eq!(
        (r.header("Content-Length"), r.text().as_str()),
        (Some("5"), "hello")
    );
    // Kept alive: nothing of a body follows the HEAD response.
    let mut s = srv.connect();
    s.write_all(
        b"HEAD /cgi-bin/sized HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /cgi-bin/sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let text = lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
}

#[test]
fn ambiguous_framing_in_the_output_head_is_502() {
    // Heads a client or a proxy could read two ways: every one is refused,
    // with a log line that says why, and the connection stays in step.
    let mut srv = start(&conf("", ""), |d| {
        let cases = [
            ("two-lengths", "Content-Type: text/plain\\nContent-Length: 5\\nContent-Length: 10\\n\\nhello"),
            ("same-length-twice", "Content-Type: text/plain\\nContent-Length: 5\\ncontent-length: 5\\n\\nhello"),
            ("chunked", "Content-Type: text/plain\\nTransfer-Encoding: chunked\\n\\n5\\r\\nhello\\r\\n0\\r\\n\\r\\n"),
            ("chunked-and-length", "Content-Type: text/plain\\nContent-Length: 5\\nTransfer-Encoding: chunked\\n\\nhello"),
            ("two-statuses", "Status: 200 OK\\nStatus: 404 Not Found\\nContent-Type: text/plain\\n\\nx"),
            ("two-locations", "Location: /a.txt\\nLocation: http://example.com/\\n\\n"),
        ];
        for (name, head) in cases {
            script(
                d,
                &format!("cgi-bin/{name}"),
                &format!("#!/bin/sh\nprintf '{head}'\n"),
            );
        }
        script(
            d,
            "cgi-bin/ok",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\nContent-Length: 2\\n\\nok'\n",
        );
    });
    for (name, why) in [
        ("two-lengths", "duplicate Content-Length"),
        ("same-length-twice", "duplicate Content-Length"),
        ("chunked", "Transfer-Encoding"),
        ("chunked-and-length", "Transfer-Encoding"),
        ("two-statuses", "duplicate Status"),
        ("two-locations", "duplicate Location"),
    ] {
        // Kept alive, with a second request behind it: that one must be
        // answered as itself.
        let mut s = srv.connect();
        let req = format!(
            "GET /cgi-bin/{name} HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /cgi-bin/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
        let all = parse_all(&bytes);
        assert_eq!(all.len(), 2, "{name}: {}", lossy(&bytes));
        assert_eq!(all[0].status, 502, "{name}: {}", lossy(&bytes));
        assert!(!all[0].text().contains("hello"), "{name}");
        assert_eq!(
            (all[1].status, all[1].text().as_str()),
            (200, "ok"),
            "{name}"
        );
        let line = format!("{}/cgi-bin/{name}: ", srv.dir.path().display());
        let log = srv.wait_stderr(&line, Duration::from_secs(5));
        let ours: Vec<&str> = log.lines().filter(|l| l.contains(&line)).collect();
        assert!(
            ours.iter().any(|l| l.contains(why)),
            "{name}: expected {why:?} in\n{}",
            ours.join("\n")
        );
    }
}

#[test]
fn serve_file_before_serve_cgi_is_refused_at_start() {
    let dir = TempDir::new("cgi-order");
    let conf = dir.write(
        "axkit.conf",
        "<Server>\n Listen 127.0.0.1:0\n Plugin uri_to_file\n Plugin serve_file\n Plugin serve_cgi\n</Server>\n",
    );
    let err = refused_at_start(&conf);
    assert!(
        err.contains("must come before `Plugin serve_file`"),
        "{err}"
    );
}

#[test]
fn scripts_inherit_only_their_stdio() {
    let srv = start(&conf("", ""), |d| {
        script(
            d,
            "cgi-bin/fds.py",
            &format!(
                "{}{}",
                python(),
                r#"import os
print("Content-Type: text/plain\n")
for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
    try:
        print(fd, os.readlink("/proc/self/fd/%d" % fd))
    except OSError:
        pass
"#
            ),
        );
    });
    for (method, body) in [("GET", ""), ("POST", "x=1")] {
        let length = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Length: {}\r\n", body.len())
        };
        let req = format!(
            "{method} /cgi-bin/fds.py HTTP/1.1\r\nHost: x\r\n{length}Connection: close\r\n\r\n{body}"
        );
        let (r, _) = exchange(&srv, req.as_bytes());
        let text = r.text();
        let fds: Vec<(u32, &str)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(fd, target)| (fd.parse().unwrap(), target))
            .collect();
        let numbers: Vec<u32> = fds.iter().map(|(fd, _)| *fd).collect();
        assert!(numbers.starts_with(&[0, 1, 2]), "{text}");
        let stdin = if body.is_empty() {
            "/dev/null"
        } else {
            "pipe:"
        };
        assert!(fds[0].1.starts_with(stdin), "{method}: {text}");
        assert!(
            fds[1].1.starts_with("pipe:") && fds[2].1.starts_with("pipe:"),
            "{text}"
        );
        // Beyond stdio: only what Python itself opened (the listing).
        for (fd, target) in &fds[3..] {
            assert!(
                !target.starts_with("socket:")
                    && !target.starts_with("pipe:")
                    && !target.starts_with("anon_inode:"),
                "leaked descriptor {fd} -> {target}\n{text}"
            );
        }
        assert!(fds.len() <= 5, "{text}");
    }
}

#[test]
fn timeouts_and_disconnects_end_the_whole_process_group() {
    let mut srv = start(
        &conf(
            "",
            "    CGITimeout 500ms\n    CGIKillGrace 300ms\n    \
             <Location /cgi-bin/capped>\n        CGITimeout 10s\n        CGIMaxTime 1s\n    </Location>",
        ),
        |d| {
            // A background child in the group, and a TERM-proof leader.
            script(d, "cgi-bin/stuck", "#!/bin/sh\necho \"stuck pid=$$\" >&2\nsleep 30 &\ntrap '' TERM\nsleep 30\n");
            script(
                d,
                "cgi-bin/capped/drip",
                "#!/bin/sh\necho \"drip pid=$$\" >&2\nprintf 'Content-Type: text/plain\\n\\n'\nwhile :; do echo tick; sleep 0.1; done\n",
            );
            script(d, "cgi-bin/capped/wait", "#!/bin/sh\necho \"wait pid=$$\" >&2\nsleep 30\n");
        },
    );
    // No progress for CGITimeout: 504, then the group dies (SIGKILL after
    // the grace period, since the leader ignores SIGTERM).
    let started = Instant::now();
    let r = get(&srv, "/cgi-bin/stuck", "");
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = logged_pid(&mut srv, "stuck");
    srv.wait_stderr("/cgi-bin/stuck: no progress for", Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(5), || group_members(pid).is_empty()),
        "left behind: {:?}",
        group_members(pid)
    );

    // CGIMaxTime while streaming: the response is cut (no last chunk).
    let (bytes, closed) = srv.raw(b"GET /cgi-bin/capped/drip HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("tick") && !text.ends_with("0\r\n\r\n"),
        "{text}"
    );
    let pid = logged_pid(&mut srv, "drip");
    srv.wait_stderr("CGIMaxTime reached", Duration::from_secs(5));
    assert!(eventually(Duration::from_secs(5), || group_members(pid).is_empty()));

    // A client that goes away ends its script.
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/capped/wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let pid = logged_pid(&mut srv, "wait");
    assert!(!group_members(pid).is_empty());
    assert!(
        all_children(srv.pid()).contains(&pid),
        "a child of the worker"
    );
    drop(s);
    assert!(
        eventually(Duration::from_secs(3), || group_members(pid).is_empty()),
        "script outlived its client"
    );
}

/// Kills a process the test left behind, whatever the test's outcome.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2); the pid is a process this test caused to exist.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

fn alive(pid: i32) -> bool {
    process_state(pid).starts_with("running")
}

/// A background child that closed its stdio (nothing ties it to the
/// request any more): it goes with its script unless CGIKillGroup is Off.
#[test]
fn background_children_end_with_their_script_unless_kill_group_is_off() {
    let mut srv = start(
        &conf(
            "",
            "    <Location /cgi-bin/keep>\n        CGIKillGroup Off\n    </Location>",
        ),
        |d| {
            let text = |tag: &str| {
                format!(
                    "#!/bin/sh\necho \"{tag} pid=$$\" >&2\n\
                     sleep 300 </dev/null >/dev/null 2>&1 &\n\
                     echo $! > \"$DOCUMENT_ROOT/../{tag}.pid\"\n\
                     printf 'Content-Type: text/plain\\n\\nanswered'\n"
                )
            };
            script(d, "cgi-bin/keep/bg", &text("keep"));
            script(d, "cgi-bin/bg", &text("kill"));
        },
    );
    let bg_pid = |srv: &Axkit, tag: &str| -> i32 {
        let file = srv.dir.path().join(format!("{tag}.pid"));
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };

    // Off: the child outlives the request, and its script's end.
    let r = get(&srv, "/cgi-bin/keep/bg", "");
    assert_eq!((r.status, r.text().as_str()), (200, "answered"));
    let kept = KillOnDrop(bg_pid(&srv, "keep"));
    let leader = logged_pid(&mut srv, "keep");
    assert!(
        eventually(Duration::from_secs(10), || !all_children(srv.pid())
            .contains(&leader)),
        "the script was not reaped"
    );

    // The default (On): gone soon after the response.
    let r = get(&srv, "/cgi-bin/bg", "");
    assert_eq!((r.status, r.text().as_str()), (200, "answered"));
    let killed = KillOnDrop(bg_pid(&srv, "kill"));
    assert!(
        eventually(Duration::from_secs(10), || !alive(killed.0)),
        "background child {} outlived its script: {}",
        killed.0,
        process_state(killed.0)
    );
    // By now the Off child would have been signalled long ago.
    assert!(alive(kept.0), "{}", process_state(kept.0));
}

/// A background child that ignores SIGTERM: SIGKILL after CGIKillGrace,
/// which delays neither the response nor the next request on the
/// connection, and until then it holds its script's CGIMaxProcesses slot.
#[test]
fn a_stubborn_background_child_is_killed_after_the_grace_and_holds_its_slot() {
    let mut srv = start(
        &conf("CGIMaxProcesses 1\nLogLevel LOGINFO", "    CGIKillGrace 3s"),
        |d| {
            script(
                d,
                "cgi-bin/stubborn",
                "#!/bin/sh\n(trap '' TERM; exec sleep 300) </dev/null >/dev/null 2>&1 &\n\
                 echo $! > \"$DOCUMENT_ROOT/../bg.pid\"\n\
                 printf 'Content-Type: text/plain\\n\\nanswered'\n",
            );
            script(
                d,
                "cgi-bin/ok",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n",
            );
            d.write("www/file.txt", "a file\n");
        },
    );
    let mut s = srv.connect();
    s.write_all(
        b"GET /cgi-bin/stubborn HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /file.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 2, "{}", lossy(&bytes));
    assert_eq!(all[0].text(), "answered");
    assert_eq!(all[1].text(), "a file\n");
    let pid: i32 = std::fs::read_to_string(srv.dir.path().join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bg = KillOnDrop(pid);
    assert!(alive(bg.0), "SIGTERM is ignored: {}", process_state(bg.0));
    // The only slot is the stubborn group's until it is killed.
    assert_eq!(get(&srv, "/cgi-bin/ok", "").text(), "ok");
    assert!(
        eventually(Duration::from_secs(1), || !alive(bg.0)),
        "answered while the group still held the slot: {}",
        process_state(bg.0)
    );
    srv.wait_stderr(
        "/cgi-bin/stubborn: its process group was still there CGIKillGrace after SIGTERM",
        Duration::from_secs(5),
    );
}

#[test]
fn large_output_to_a_slow_client_keeps_memory_flat() {
    let mut srv = start(&conf("", ""), |d| {
        script(
            d,
            "cgi-bin/gig",
            "#!/bin/sh\necho \"gig pid=$$\" >&2\nprintf 'Content-Type: application/octet-stream\\n\\n'\nexec head -c 1073741824 /dev/zero\n",
        );
    });
    let pid = srv.pid();
    // Warm up the worker's allocator with a first request.
    let _ = get(&srv, "/cgi-bin/missing", "");
    let before = vm_rss_kib(pid);
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/gig HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < 4 << 20 {
        got += s.read(&mut buf).unwrap();
    }
    // Now a slow client: stop reading while the script keeps writing.
    std::thread::sleep(Duration::from_millis(1500));
    let during = vm_rss_kib(pid);
    assert!(
        during < before + 16 * 1024,
        "server grew from {before} KiB to {during} KiB"
    );
    let script_pid = logged_pid(&mut srv, "gig");
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || group_members(script_pid)
            .is_empty()),
        "script outlived its client"
    );
}

#[test]
fn max_processes_queue_then_503() {
    let srv = start(
        &conf("CGIMaxProcesses 1\nCGIMaxQueue 1\nCGIQueueTimeout 1s", ""),
        |d| {
            script(
                d,
                "cgi-bin/slow",
                "#!/bin/sh\n: >\"$DOCUMENT_ROOT/../started\"\nsleep 3\nprintf 'Content-Type: text/plain\\n\\nslow'\n",
            );
            script(
                d,
                "cgi-bin/fast",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nfast'\n",
            );
        },
    );
    let addr = srv.addr;
    let fetch = move |path: &'static str| {
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let started = Instant::now();
            let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
            (status_of(&bytes), started.elapsed())
        })
    };
    let a = fetch("/cgi-bin/slow");
    // A holds the only slot once its script runs; then B queues.
    let started = srv.dir.path().join("started");
    assert!(eventually(Duration::from_secs(10), || started.exists()));
    let b = fetch("/cgi-bin/fast");
    std::thread::sleep(Duration::from_millis(300));
    // The queue is full: C is refused without waiting in it.
    let (c, c_time) = fetch("/cgi-bin/fast").join().unwrap();
    assert_eq!(c, 503, "queue full");
    assert!(c_time < Duration::from_millis(900), "{c_time:?}");
    // B waited CGIQueueTimeout for the slot, in vain.
    let (b, b_time) = b.join().unwrap();
    assert_eq!(b, 503, "waited longer than CGIQueueTimeout");
    assert!(b_time >= Duration::from_millis(950), "{b_time:?}");
    assert_eq!(a.join().unwrap().0, 200);
    assert_eq!(get(&srv, "/cgi-bin/fast", "").status, 200);
}

#[test]
fn a_thousand_mixed_requests_leave_nothing_behind() {
    let mut srv = start(
        &conf(
            "",
            "    <Location /cgi-bin/slow>\n        CGITimeout 300ms\n        CGIKillGrace 100ms\n    </Location>",
        ),
        |d| {
            script(d, "cgi-bin/ok", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n");
            script(d, "cgi-bin/crash", "#!/bin/sh\nkill -SEGV $$\n");
            script(d, "cgi-bin/slow/sleep", "#!/bin/sh\nsleep 10 & sleep 10\n");
        },
    );
    let pid = srv.pid();
    assert_eq!(get(&srv, "/cgi-bin/ok", "").status, 200);
    let fds_before = fd_count(pid);
    let addr = srv.addr;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut counts = [0u32; 4];
                for i in 0..250 {
                    let kind = match (i * 4 + t) % 20 {
                        0 => 1, // crash: 502
                        1 => 2, // timeout: 504
                        2 => 3, // client disconnects
                        _ => 0,
                    };
                    let path = [
                        "/cgi-bin/ok",
                        "/cgi-bin/crash",
                        "/cgi-bin/slow/sleep",
                        "/cgi-bin/slow/sleep",
                    ][kind];
                    let mut s = TcpStream::connect(addr).unwrap();
                    let req =
                        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    s.write_all(req.as_bytes()).unwrap();
                    if kind == 3 {
                        std::thread::sleep(Duration::from_millis(20));
                        drop(s);
                        counts[3] += 1;
                        continue;
                    }
                    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
                    let want = [200, 502, 504][kind];
                    assert_eq!(status_of(&bytes), want, "{path}");
                    counts[kind] += 1;
                }
                counts
            })
        })
        .collect();
    let mut total = [0u32; 4];
    for t in threads {
        for (sum, n) in total.iter_mut().zip(t.join().unwrap()) {
            *sum += n;
        }
    }
    assert_eq!(total.iter().sum::<u32>(), 1000);
    assert!(total.iter().all(|&n| n >= 45), "{total:?}");
    // Every script, and everything the scripts started, is gone and reaped.
    let gone = eventually(Duration::from_secs(5), || all_children(pid).is_empty());
    assert!(gone, "children left: {:?}", all_children(pid));
    let fds_after = fd_count(pid);
    assert!(
        fds_after <= fds_before + 2,
        "descriptors grew from {fds_before} to {fds_after}"
    );
    let log = srv.stderr();
    assert!(!log.contains("panic"), "{log}");
}

/// Run git with a clean, local configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn git_http_backend_clone_fetch_and_push() {
    let exec_path = {
        let out = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let backend = format!("{exec_path}/git-http-backend");
    assert!(Path::new(&backend).exists(), "{backend}");
    let srv = start(
        &conf(
            "",
            &format!(
                "    MaxRequestBody 64M\n    ScriptAlias /git/ {backend}/\n    \
                 SetEnv GIT_PROJECT_ROOT {{dir}}/repos\n    SetEnv GIT_HTTP_EXPORT_ALL 1"
            ),
        ),
        |d| {
            // A repository with a few MB of incompressible history.
            let src = d.path().join("src");
            std::fs::create_dir_all(&src).unwrap();
            git(&src, &["init", "-q"]);
            for i in 0..4u64 {
                std::fs::write(src.join(format!("blob{i}")), noise(1 << 20, i + 1)).unwrap();
                git(&src, &["add", "."]);
                git(&src, &["commit", "-q", "-m", &format!("commit {i}")]);
            }
            std::fs::create_dir_all(d.path().join("repos")).unwrap();
            git(
                d.path(),
                &["clone", "-q", "--bare", "src", "repos/project.git"],
            );
            git(
                &d.path().join("repos/project.git"),
                &["config", "http.receivepack", "true"],
            );
        },
    );
    let url = format!("http://{}/git/project.git", srv.addr);
    let work = TempDir::new("git-work");
    git(work.path(), &["clone", "-q", &url, "a"]);
    let a = work.path().join("a");
    assert_eq!(git(&a, &["rev-list", "--count", "HEAD"]).trim(), "4");
    assert_eq!(std::fs::read(a.join("blob2")).unwrap(), noise(1 << 20, 3));
    git(work.path(), &["clone", "-q", &url, "b"]);

    // Push 3 MB (more than http.postBuffer: git sends it chunked).
    std::fs::write(a.join("pushed"), noise(3 << 20, 99)).unwrap();
    git(&a, &["add", "pushed"]);
    git(&a, &["commit", "-q", "-m", "pushed over http"]);
    git(&a, &["push", "-q", "origin", "HEAD:main"]);
    let head = git(&a, &["rev-parse", "HEAD"]);

    let b = work.path().join("b");
    git(&b, &["fetch", "-q", "origin"]);
    assert_eq!(git(&b, &["rev-parse", "origin/main"]), head);
    git(&b, &["merge", "-q", "--ff-only", "origin/main"]);
    assert_eq!(std::fs::read(b.join("pushed")).unwrap(), noise(3 << 20, 99));
}
