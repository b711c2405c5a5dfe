//! What a CGI script is given, through the stock `axkit` binary with real
//! POSIX sh, Perl and Python scripts and git's own `git-http-backend`: every
//! meta-variable (and what must not be passed: httpoxy, `_` headers,
//! credentials, the server's own environment; REMOTE_USER/AUTH_TYPE from a
//! Lua authentication plugin; the REDIRECT_* variables of ErrorDocument
//! scripts and local redirects), request bodies (Content-Length and
//! chunked, large ones, scripts that never read them), the descriptors it
//! inherits, and `git clone`, `git fetch` and `git push` over HTTP.
//!
//! Every server runs as one process (`--no-master`), so the axkit process
//! is the worker whose children and descriptors the tests inspect.

#[path = "common/cgi.rs"]
mod cgi;
mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use cgi::*;
use common::*;

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
        let r = exchange(&srv, req.as_bytes());
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

/// `serve_file` may not answer before `serve_cgi` anywhere, in the order
/// `response` tries them (innermost scope first), or scripts would be
/// served as their source: after it in one scope, or in a Location inside
/// the Server that runs CGI, is refused at start. In an outer scope (a
/// global `serve_file`) it comes after, and is fine.
#[test]
fn serve_file_before_serve_cgi_is_refused_at_start() {
    let dir = TempDir::new("cgi-order");
    for (n, server) in [
        " Plugin uri_to_file\n Plugin serve_file\n Plugin serve_cgi\n",
        " Plugin serve_cgi\n Plugin uri_to_file\n <Location /app>\n  Plugin serve_file\n </Location>\n",
    ]
    .iter()
    .enumerate()
    {
        let conf = dir.write(
            &format!("refused{n}.conf"),
            format!("<Server>\n Listen 127.0.0.1:0\n{server}</Server>\n"),
        );
        // `--check` builds the plugins too, and exits either way.
        let out = Command::new(BIN)
            .args(["--check", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("must come before `Plugin serve_file`"),
            "{server}: {err}"
        );
    }
    let srv = Axkit::start_single(
        "Plugin serve_file\n<Server>\n Listen 127.0.0.1:0\n Plugin serve_cgi\n Plugin uri_to_file\n</Server>\n",
    );
    assert_eq!(srv.get("/none.cgi").status, 404);
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
