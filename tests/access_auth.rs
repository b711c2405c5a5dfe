//! The `access` and `auth_basic` plugins over real sockets: every
//! combination of Allow and Deny (the client address as `TrustedProxy`
//! resolves it, so that one test host can be many clients), Basic
//! authentication with bcrypt, SHA-crypt and Argon2 hashes (and one made by
//! `htpasswd -B` when apache2-utils is installed), `Require` in each form,
//! the exact statuses and challenge, failures rate-limited per client, the
//! password checks one client may have in flight bounded, and
//! what `--check` says about a bad user file.

mod common;

use std::time::Duration;

use common::*;

/// Answers with who the request was authenticated as.
const HELLO: &str = r#"
function hook_response(r)
  r:write("user=" .. tostring(r:user()) .. "\n")
  return OK
end
"#;

const HTPASSWD: &str = "# staff\n\
ada:$2b$04$LHGutq5Cfg.TnP.3SjDabexndGgjKcWdYKFXaaUmMTeUvxMEF31HG\n\
\n\
grace:$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$LXEZKBxUxnKY6x8Kgm8X7+qqz53cbRNyfNHKWgTJaSM\n\
linus:$6$saltsalt$e/5XKibXPLqVcfjpD.ouauaJrAOL5V0uo80Lt7n7EbRdRiCx3HbQ90yjOHr.G0T.mx79PEMRy8nmtr0qSYhQp1\n";

const ADA: &str = "Authorization: Basic YWRhOm9wZW4gc2VzYW1l\r\n"; // ada:open sesame
const GRACE: &str = "Authorization: Basic Z3JhY2U6Z3JhY2UgaG9wcGVy\r\n"; // grace:grace hopper
const LINUS: &str = "Authorization: Basic bGludXM6b3BlbiBzZXNhbWU=\r\n"; // linus:open sesame
const ADA_WRONG: &str = "Authorization: Basic YWRhOndyb25n\r\n"; // ada:wrong
const MALLORY: &str = "Authorization: Basic bWFsbG9yeTpvcGVuIHNlc2FtZQ==\r\n"; // unknown user
const ZED: &str = "Authorization: Basic emVkOnplZCBwYXNz\r\n"; // zed:zed pass, htpasswd -B

fn start(global: &str, server: &str, prepare: impl FnOnce(&TempDir)) -> Axkit {
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\nPlugin logging/warn\nLogLevel LOGINFO\n{global}\n\
         <Server>\n    Listen 127.0.0.1:0\n    TrustedProxy 127.0.0.1\n    Plugin access\n    \
         Plugin auth_basic\n    Plugin hello\n{server}\n</Server>\n"
    );
    Axkit::start_single_with(&conf, |d| {
        d.write("plugins/hello.lua", HELLO);
        d.write("htpasswd", HTPASSWD);
        d.write("groups", "admins: grace\nstaff: ada linus\n");
        prepare(d);
    })
}

/// The status of GET `path` from client `from` (through the trusted
/// proxy at 127.0.0.1; None: the socket's own address).
fn status(srv: &Axkit, path: &str, from: Option<&str>, headers: &str) -> u16 {
    let xff = from
        .map(|a| format!("X-Forwarded-For: {a}\r\n"))
        .unwrap_or_default();
    get(srv, path, &format!("{xff}{headers}")).status
}

const ACCESS: &str = "\
    <Location /allow>\n        Allow from 10.0.0.0/8 2001:db8::/32\n        \
        <Location /allow/narrow>\n            Allow from 10.1.0.0/16\n        </Location>\n    </Location>\n    \
    <Location /deny>\n        Deny from 10.6.6.0/24\n    </Location>\n    \
    <Location /both>\n        Allow from 10.0.0.0/8\n        Deny from 10.6.6.0/24\n    </Location>\n    \
    <Location /closed>\n        Allow from all\n        Deny from all\n    </Location>\n    \
    <Location /everyone>\n        Allow from all\n    </Location>\n";

#[test]
fn allow_and_deny_every_combination() {
    let mut srv = start("", ACCESS, |_| {});
    let cases: &[(&str, &str, u16)] = &[
        ("/", "192.0.2.1", 200),
        ("/allow/", "10.1.2.3", 200),
        ("/allow/", "2001:db8::7", 200),
        ("/allow/", "192.0.2.1", 403),
        ("/allow/narrow/", "10.1.2.3", 200),
        ("/allow/narrow/", "10.2.0.1", 403),
        ("/allow/narrow/", "192.0.2.1", 403),
        ("/deny/", "10.6.6.6", 403),
        ("/deny/", "10.1.2.3", 200),
        ("/deny/", "192.0.2.1", 200),
        ("/both/", "10.1.2.3", 200),
        ("/both/", "10.6.6.6", 403),
        ("/both/", "192.0.2.1", 403),
        ("/closed/", "10.1.2.3", 403),
        ("/everyone/", "192.0.2.1", 200),
    ];
    for (path, from, want) in cases {
        assert_eq!(
            status(&srv, path, Some(from), ""),
            *want,
            "{path} from {from}"
        );
    }
    // The proxy itself (no X-Forwarded-For) is no one on the list.
    assert_eq!(status(&srv, "/allow/", None, ""), 403);
    srv.wait_stderr_line(
        &["access: 192.0.2.1 GET /allow/ HTTP/1.1: refused: the client does not match `Allow from 10.0.0.0/8 2001:db8::/32`"],
        Duration::from_secs(10),
    );
    srv.wait_stderr_line(
        &["access: 10.6.6.6 GET /both/ HTTP/1.1: refused: the client matches `Deny from 10.6.6.0/24`"],
        Duration::from_secs(10),
    );
}

#[test]
fn a_spoofed_address_grants_nothing() {
    // No TrustedProxy: X-Forwarded-For from 127.0.0.1 is a client's claim.
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
         Plugin access\n    Plugin hello\n{ACCESS}\n</Server>\n"
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("plugins/hello.lua", HELLO);
    });
    assert_eq!(status(&srv, "/allow/", Some("10.1.2.3"), ""), 403);
    assert_eq!(status(&srv, "/deny/", Some("10.6.6.6"), ""), 200);
}

const AUTH: &str = "\
    AuthUserFile {dir}/htpasswd\n    AuthGroupFile {dir}/groups\n    \
    <Location /private>\n        AuthName \"Staff \\\"only\\\"\"\n        Require valid-user\n    </Location>\n    \
    <Location /admins>\n        Require group admins\n    </Location>\n    \
    <Location /named>\n        Require user linus zed\n    </Location>\n    \
    <Location /guarded>\n        Allow from 10.0.0.0/8\n        Require valid-user\n    </Location>\n";

#[test]
fn basic_authentication_statuses() {
    let htpasswd_b = std::process::Command::new("htpasswd")
        .args(["-nbB", "-C", "4", "zed", "zed pass"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    if htpasswd_b.is_none() {
        println!("htpasswd (apache2-utils) is not installed: its bcrypt line is left out");
    }
    let mut srv = start("", AUTH, |d| {
        if let Some(out) = &htpasswd_b {
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            d.write("htpasswd", format!("{HTPASSWD}{line}\n"));
        }
    });
    // No credentials: the challenge, exactly.
    let r = get(&srv, "/private/", "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some(r#"Basic realm="Staff \"only\"", charset="UTF-8""#)
    );
    // Every kind of hash, and what is not a valid login.
    for (who, want, body) in [
        (ADA, 200, "user=ada\n"),
        (GRACE, 200, "user=grace\n"),
        (LINUS, 200, "user=linus\n"),
        (ADA_WRONG, 401, ""),
        (MALLORY, 401, ""),
        ("Authorization: Bearer abc\r\n", 401, ""),
        ("Authorization: Basic !!!\r\n", 401, ""),
        ("Authorization: Basic YWRh\r\n", 401, ""),
    ] {
        let r = get(&srv, "/private/", who);
        assert_eq!(r.status, want, "{who}");
        if want == 200 {
            assert_eq!(r.text(), body);
        } else {
            assert!(r.header("WWW-Authenticate").is_some());
        }
    }
    if htpasswd_b.is_some() {
        assert_eq!(get(&srv, "/private/", ZED).text(), "user=zed\n");
        assert_eq!(status(&srv, "/named/", None, ZED), 200);
    }
    // Require group and user.
    assert_eq!(status(&srv, "/admins/", None, GRACE), 200);
    assert_eq!(status(&srv, "/admins/", None, ADA), 401);
    assert_eq!(status(&srv, "/named/", None, LINUS), 200);
    assert_eq!(status(&srv, "/named/", None, ADA), 401);
    // No Require: no authentication.
    assert_eq!(get(&srv, "/", "").text(), "user=nil\n");
    // With access: the address first (403 whatever the password), then
    // the password.
    assert_eq!(status(&srv, "/guarded/", Some("192.0.2.1"), ADA), 403);
    assert_eq!(status(&srv, "/guarded/", Some("10.1.2.3"), ""), 401);
    assert_eq!(status(&srv, "/guarded/", Some("10.1.2.3"), ADA), 200);
    srv.wait_stderr_line(
        &["auth_basic: 127.0.0.1 GET /private/ HTTP/1.1: user \"ada\": wrong password"],
        Duration::from_secs(10),
    );
    srv.wait_stderr_line(&["user \"mallory\": unknown user"], Duration::from_secs(10));
    srv.wait_stderr_line(
        &["user \"ada\" is not allowed by Require"],
        Duration::from_secs(10),
    );
    // Neither credentials nor passwords reach the log.
    let stderr = srv.stop();
    for secret in ["YWRh", "open sesame", "Basic "] {
        assert!(!stderr.contains(secret), "{secret} logged:\n{stderr}");
    }
}

#[test]
fn failures_are_rate_limited_per_client() {
    let mut srv = start("", &format!("{AUTH}    AuthFailureLimit 3 1h\n"), |_| {});
    let from = Some("10.9.9.9");
    for _ in 0..3 {
        assert_eq!(status(&srv, "/private/", from, ADA_WRONG), 401);
    }
    // Used up: even the right password is not checked now.
    let r = get(
        &srv,
        "/private/",
        &format!("X-Forwarded-For: 10.9.9.9\r\n{ADA}"),
    );
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&wait), "{wait}");
    // Another client is not held back.
    assert_eq!(status(&srv, "/private/", Some("10.8.8.8"), ADA), 200);
    // Malformed credentials count too.
    for _ in 0..3 {
        assert_eq!(
            status(
                &srv,
                "/private/",
                Some("10.7.7.7"),
                "Authorization: Basic !!!\r\n"
            ),
            401
        );
    }
    assert_eq!(status(&srv, "/private/", Some("10.7.7.7"), ADA), 429);
    srv.wait_stderr_line(
        &["auth_basic: 10.9.9.9 GET /private/ HTTP/1.1: too many failed attempts, 429 for"],
        Duration::from_secs(10),
    );
}

#[test]
fn check_reports_bad_auth_files_with_file_and_line() {
    let dir = TempDir::new("authcheck");
    dir.write("htpasswd", "ada:$2b$04$LHGutq5Cfg.TnP.3SjDabexndGgjKcWdYKFXaaUmMTeUvxMEF31HG\nold:$apr1$abc$0123456789abcdefghijkl\n");
    let conf = dir.write(
        "a.conf",
        config_text(
            &dir,
            "Plugin auth_basic\n<Server>\n    Listen 127.0.0.1:20981\n    AuthUserFile {dir}/htpasswd\n    Require valid-user\n</Server>\n",
        ),
    );
    let out = std::process::Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    let expect = format!(
        "{}:4: AuthUserFile (plugin auth_basic): {}/htpasswd:2: user \"old\": MD5-crypt ($apr1$, $1$) is refused",
        conf.display(),
        dir.path().display()
    );
    assert!(text.contains(&expect), "missing {expect:?} in:\n{text}");
    assert!(
        !text.contains("0123456789abcdefghijkl"),
        "the hash was quoted:\n{text}"
    );
    // Require without a user file: the plugin refuses to start.
    let conf = dir.write(
        "b.conf",
        "Plugin auth_basic\n<Server>\n    Listen 127.0.0.1:20981\n    Require valid-user\n</Server>\n",
    );
    let out = std::process::Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("Require needs an AuthUserFile"),
        "{text}"
    );
}

#[test]
fn a_reload_rereads_the_user_file() {
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
         Plugin access\n    Plugin auth_basic\n    Plugin hello\n{AUTH}\n</Server>\n"
    );
    let srv = Axkit::start_with(&conf, &[], |d| {
        d.write("plugins/hello.lua", HELLO);
        d.write("htpasswd", HTPASSWD);
        d.write("groups", "admins: grace\n");
    });
    assert_eq!(status(&srv, "/private/", None, ADA), 200);
    // Ada is removed; the running workers keep what the master read until
    // the reload.
    srv.dir
        .write("htpasswd", HTPASSWD.replace("ada:", "# ada:"));
    assert_eq!(status(&srv, "/private/", None, ADA), 200);
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || status(
            &srv,
            "/private/",
            None,
            ADA
        ) == 401),
        "the reloaded workers still know ada"
    );
    assert_eq!(status(&srv, "/private/", None, GRACE), 200);
}

/// `<Location>` rules hold for the URI that names the file served: a
/// directory's index and the file a typeless name finds are served under
/// their own URI's Location (as nginx's index module redirects), so its
/// `Deny` and `Require` apply however the file is asked for, the open-file
/// cache remembering it or not; a file of the request's own Location is
/// served as before.
#[test]
fn location_rules_hold_for_the_index_and_typeless_file_served() {
    let conf = "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin typeless_uri
    Plugin fast_mime_map
    Plugin serve_file
    Plugin access
    Plugin auth_basic
    AuthUserFile {dir}/htpasswd
    <Location /closed/index.html>
        Deny from all
    </Location>
    <Location /private.html>
        Deny from all
    </Location>
    <Location /staff/index.html>
        Require valid-user
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("htpasswd", HTPASSWD);
        d.write("www/closed/index.html", "closed");
        d.write("www/private.html", "private");
        d.write("www/staff/index.html", "staff");
        d.write("www/open/index.html", "open");
        d.write("www/page.html", "page");
    });
    for round in 0..2 {
        for path in [
            "/closed/index.html",
            "/closed/",
            "/closed/?x=1",
            "/closed/index",
            "/private.html",
            "/private",
            "/private?x=1",
        ] {
            assert_eq!(get(&srv, path, "").status, 403, "{path}, round {round}");
        }
        for path in ["/staff/", "/staff/index", "/staff/index.html"] {
            let r = get(&srv, path, "");
            assert_eq!(r.status, 401, "{path}");
            assert!(r.header("WWW-Authenticate").is_some(), "{path}");
            assert_eq!(get(&srv, path, ADA).text(), "staff", "{path}");
        }
        assert_eq!(get(&srv, "/open/", "").text(), "open");
        assert_eq!(get(&srv, "/page", "").text(), "page");
    }
}

/// ...and the rules of the Location the URL asked for still hold too, as
/// nginx's index module redirects only after the access phase: a
/// directory whose `<Location>` denies it is denied even though its index
/// lies in a Location that does not, and so is a typeless name whose file
/// lies in another Location.
#[test]
fn the_rules_of_the_url_asked_for_hold_when_the_file_is_in_another_location() {
    let conf = "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin typeless_uri
    Plugin fast_mime_map
    Plugin serve_file
    Plugin access
    <Location /admin/>
        Deny from all
    </Location>
    <Location /admin/index.html>
        Allow from all
    </Location>
    <Location /secret>
        Deny from all
    </Location>
    <Location /secret.html>
        Allow from all
    </Location>
</Server>
";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("www/admin/index.html", "admin");
        d.write("www/secret.html", "secret");
    });
    for round in 0..2 {
        for path in ["/admin/", "/admin/?x=1", "/secret", "/secret?x=1"] {
            assert_eq!(get(&srv, path, "").status, 403, "{path}, round {round}");
        }
        // Asked for by their own names, their own Locations decide.
        assert_eq!(get(&srv, "/admin/index.html", "").text(), "admin");
        assert_eq!(get(&srv, "/secret.html", "").text(), "secret");
    }
}

/// A cached page goes through the Location's `Allow`/`Deny` and `Require`
/// again for every client: one permitted client filling the entry (the
/// origin's answer says `public, max-age`, even to an authenticated
/// request) must not open it to a denied address or an anonymous client.
#[test]
fn a_cached_page_is_served_only_past_the_access_rules() {
    const CACHED: &str = r#"
function hook_response(r)
  r:set_header("Cache-Control", "public, max-age=300")
  r:write("secret for " .. tostring(r:user()) .. "\n")
  return OK
end
"#;
    let srv = start(
        "Plugin cache",
        "    Cache On\n    AuthUserFile {dir}/htpasswd\n    \
         <Location /internal>\n        Allow from 10.0.0.0/8\n    </Location>\n    \
         <Location /priv>\n        Require valid-user\n    </Location>\n",
        |d| {
            d.write("plugins/hello.lua", CACHED);
        },
    );
    let from = |a: &str| format!("X-Forwarded-For: {a}\r\n");
    assert_eq!(get(&srv, "/internal/x", &from("192.0.2.1")).status, 403);
    let filled = get(&srv, "/internal/x", &from("10.1.2.3"));
    assert_eq!(filled.status, 200);
    assert_eq!(
        filled.header("Cache-Status"),
        Some("axkit; fwd=uri-miss; stored")
    );
    let denied = get(&srv, "/internal/x", &from("192.0.2.1"));
    assert_eq!((denied.status, denied.header("Cache-Status")), (403, None));
    // The entry is still there for those the rules let in.
    let hit = get(&srv, "/internal/x", &from("10.9.9.9"));
    assert_eq!(
        (hit.status, hit.header("Cache-Status")),
        (200, Some("axkit; hit"))
    );

    assert_eq!(get(&srv, "/priv/x", "").status, 401);
    let ada = get(&srv, "/priv/x", ADA);
    assert_eq!(ada.text(), "secret for ada\n");
    assert_eq!(
        ada.header("Cache-Status"),
        Some("axkit; fwd=request; stored")
    );
    let anonymous = get(&srv, "/priv/x", "");
    assert_eq!(anonymous.status, 401);
    assert_ne!(anonymous.text(), "secret for ada\n");
    assert_eq!(get(&srv, "/priv/x", ADA_WRONG).status, 401);
}

/// Behind a proxy that appends to `Forwarded` (nginx's
/// `"$http_forwarded, for=$remote_addr"`), whatever the client wrote
/// comes first: a malformed element of its own must not void the
/// proxy's `for=` and make the client the proxy itself.
#[test]
fn a_malformed_forwarded_element_does_not_make_the_client_the_proxy() {
    let srv = start(
        "",
        "    TrustedProxyHeader Forwarded\n    \
         <Location /lan>\n        Allow from 127.0.0.0/8\n    </Location>\n    \
         <Location /blk>\n        Deny from 192.0.2.0/24\n    </Location>\n",
        |_| {},
    );
    for sent in [
        "Forwarded: for=192.0.2.1\r\n",
        "Forwarded: for=\"x, for=192.0.2.1\r\n",
        "Forwarded: garbage\r\nForwarded: for=192.0.2.1\r\n",
        "Forwarded: for=@, for=192.0.2.1\r\n",
        "Forwarded: for=\"[::1]\";by=\"x, for=192.0.2.1\r\n",
    ] {
        assert_eq!(get(&srv, "/lan/", sent).status, 403, "{sent}");
        assert_eq!(get(&srv, "/blk/", sent).status, 403, "{sent}");
    }
    // The proxy's own word still counts.
    assert_eq!(
        get(&srv, "/lan/", "Forwarded: for=127.0.0.9\r\n").status,
        200
    );
    assert_eq!(
        get(&srv, "/blk/", "Forwarded: for=198.51.100.1\r\n").status,
        200
    );
}

/// Argon2 with 64 MiB and three passes: what a memory-hard hash costs
/// (the hash itself is a well-formed fake; only its cost matters).
const HEAVY: &str = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHRzYWx0c2FsdA$ERERERERERERERERERERERERERERERERERERERERERE";

/// Guesses from many addresses at once (behind a CDN, or a whole IPv6
/// range) against a memory-hard hash: at most as many checks run at once
/// as there are cores, so the worker's memory never holds more than that
/// many hashes; a bounded number wait, and the rest get 503 at once.
#[test]
fn a_flood_of_password_checks_is_bounded() {
    let srv = start(
        "",
        "    <Location /heavy>\n        AuthUserFile {dir}/heavy\n        \
         Require valid-user\n    </Location>\n",
        |d| {
            d.write("heavy", format!("ada:{HEAVY}\n"));
        },
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // More than run and may wait (16 a core) together.
    let n = cores * 17 + 16;
    let before = status_kib(srv.child.id() as i32, "VmRSS");
    let mut conns = Vec::new();
    for i in 0..n {
        let mut s = srv.connect();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let req = format!(
            "GET /heavy/ HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.{}.{}.1\r\n{ADA_WRONG}\
             Connection: close\r\n\r\n",
            i / 256,
            i % 256
        );
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        conns.push(s);
    }
    let (mut refused, mut checked) = (0, 0);
    for mut s in conns {
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(60));
        let r = parse_response(&bytes).expect("a response");
        match r.status {
            401 => checked += 1,
            503 => {
                assert_eq!(r.header("Retry-After"), Some("1"));
                refused += 1;
            }
            other => panic!("status {other}"),
        }
    }
    // 64 MiB per check running: at most `cores` of them at a time (and
    // some slack for the allocator and the rest of the worker).
    let peak = status_kib(srv.child.id() as i32, "VmHWM");
    let bound = before + (cores as u64 + 2) * 64 * 1024;
    assert!(peak < bound, "peak {peak} KiB, bound {bound} KiB");
    assert!(
        refused > 0 && checked >= cores,
        "{refused} refused, {checked} checked"
    );
}

/// A connection to `srv` from the local address `from` (any of
/// 127.0.0.0/8 reaches the server on 127.0.0.1): another client.
fn connect_from(srv: &Axkit, from: [u8; 4]) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = (from, 0).into();
    s.bind(&local.into()).unwrap();
    s.connect(&srv.addr.into()).unwrap();
    let s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// One client sending many guesses at once keeps at most 6 checks in
/// flight; the rest get 429 at once, and the queue is left to the others:
/// a login from another address gets in. It used to fill the queue, and
/// everyone else got 503 until it drained.
#[test]
fn one_client_cannot_fill_the_password_queue() {
    let srv = start(
        "",
        "    <Location /heavy>\n        AuthUserFile {dir}/heavy\n        \
         AuthFailureLimit 100000 1h\n        Require valid-user\n    </Location>\n",
        |d| {
            // An unknown user is checked against the slowest hash.
            let ada = HTPASSWD.lines().nth(1).unwrap(); // bcrypt cost 4
            d.write("heavy", format!("{ada}\nadmin:{HEAVY}\n"));
        },
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // More than run and may wait (16 a core) together.
    let n = cores * 17 + 16;
    let request =
        |who: &str| format!("GET /heavy/ HTTP/1.1\r\nHost: a\r\n{who}Connection: close\r\n\r\n");
    let answer = |mut s: std::net::TcpStream| {
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(60));
        parse_response(&bytes).expect("a response")
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..n {
            let mut s = connect_from(&srv, [127, 0, 0, 2]);
            std::io::Write::write_all(&mut s, request(MALLORY).as_bytes()).unwrap();
            let tx = tx.clone();
            scope.spawn(move || tx.send(answer(s)));
        }
        drop(tx);
        // The first guess refused: the flood has taken what it may.
        let mut flood: Vec<Response> = Vec::new();
        while flood.last().is_none_or(|r| r.status == 401) {
            flood.push(rx.recv().expect("a refusal"));
        }
        let mut s = connect_from(&srv, [127, 0, 0, 3]);
        std::io::Write::write_all(&mut s, request(ADA).as_bytes()).unwrap();
        let login = answer(s);
        assert_eq!(login.status, 200, "a login from another address");
        flood.extend(rx);
        let checked = flood.iter().filter(|r| r.status == 401).count();
        assert_eq!(checked, 6, "guesses checked");
        for r in flood.iter().filter(|r| r.status != 401) {
            assert_eq!(r.status, 429);
            assert_eq!(r.header("Retry-After"), Some("1"));
        }
    });
}

/// An IPv6 client's failures count for its whole /64, and a good password
/// (another account of the guesser's own) does not clear the failures
/// counted before it.
#[test]
fn failures_count_per_64_and_a_login_does_not_clear_them() {
    let srv = start("", &format!("{AUTH}    AuthFailureLimit 3 1h\n"), |_| {});
    for i in 1..=3 {
        let from = format!("2001:db8:0:7::{i}");
        assert_eq!(status(&srv, "/private/", Some(&from), ADA_WRONG), 401);
    }
    assert_eq!(
        status(&srv, "/private/", Some("2001:db8:0:7:ffff::1"), ADA),
        429
    );
    assert_eq!(status(&srv, "/private/", Some("2001:db8:0:8::1"), ADA), 200);

    // Guess at ada, log in as grace, guess again: the guesses add up.
    let from = Some("10.5.5.5");
    assert_eq!(status(&srv, "/private/", from, ADA_WRONG), 401);
    assert_eq!(status(&srv, "/private/", from, GRACE), 200);
    assert_eq!(status(&srv, "/private/", from, ADA_WRONG), 401);
    assert_eq!(status(&srv, "/private/", from, GRACE), 200);
    assert_eq!(status(&srv, "/private/", from, ADA_WRONG), 401);
    assert_eq!(status(&srv, "/private/", from, GRACE), 429);
    // Good passwords alone never add up.
    for _ in 0..5 {
        assert_eq!(status(&srv, "/private/", Some("10.5.5.6"), GRACE), 200);
    }
}

/// An unknown name is checked against the file's slowest hash, not the
/// first line's: it takes as long as the costly user does.
#[test]
fn an_unknown_user_takes_as_long_as_the_slowest_hash() {
    let srv = start(
        "",
        "    <Location /mixed>\n        AuthUserFile {dir}/mixed\n        \
         Require valid-user\n    </Location>\n",
        |d| {
            let first = HTPASSWD.lines().nth(1).unwrap(); // ada, bcrypt cost 4
            d.write("mixed", format!("{first}\nadmin:{HEAVY}\n"));
        },
    );
    let timed = |who: &str| {
        let started = std::time::Instant::now();
        assert_eq!(status(&srv, "/mixed/", None, who), 401);
        started.elapsed()
    };
    // admin:guess
    let admin = "Authorization: Basic YWRtaW46Z3Vlc3M=\r\n";
    // Alternately, the least of three each: the other tests share the CPU.
    let (mut costly, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        costly = costly.min(timed(admin));
        unknown = unknown.min(timed(MALLORY));
    }
    assert!(
        unknown * 2 > costly,
        "unknown user {unknown:?}, costly user {costly:?}"
    );
}

/// A range written IPv4-mapped (`::ffff:a.b.c.d`) means those IPv4
/// clients, which is how every client address is compared: it used to
/// pass `--check` and match nobody, so a `Deny` failed open.
#[test]
fn ipv4_mapped_ranges_match_ipv4_clients() {
    let srv = start(
        "",
        "    <Location /deny>\n        Deny from ::ffff:127.0.0.1\n    </Location>\n    \
         <Location /deny-all>\n        Deny from ::ffff:0.0.0.0/96\n    </Location>\n    \
         <Location /allow>\n        Allow from ::ffff:10.0.0.0/104\n    </Location>\n",
        |_| {},
    );
    assert_eq!(status(&srv, "/deny/", None, ""), 403);
    assert_eq!(status(&srv, "/deny/", Some("::ffff:127.0.0.1"), ""), 403);
    assert_eq!(status(&srv, "/deny/", Some("192.0.2.1"), ""), 200);
    assert_eq!(status(&srv, "/deny-all/", Some("192.0.2.1"), ""), 403);
    assert_eq!(status(&srv, "/deny-all/", Some("2001:db8::1"), ""), 200);
    assert_eq!(status(&srv, "/allow/", Some("10.1.2.3"), ""), 200);
    assert_eq!(status(&srv, "/allow/", Some("192.0.2.1"), ""), 403);
}
