//! The `headers` plugin over real sockets: `Header` lines applied to the
//! response head as it is committed (exact raw responses), Server and
//! Location lines in order, `onsuccess`/`always`/`status=` on error pages,
//! `RequestHeader` seen by a later plugin (a Lua script), each rule once
//! per client request (an ErrorDocument, a rewrite) with the final
//! Location's lines, a hand-off to an index's Location taking up its
//! `RequestHeader` lines, whichever plugin answers (a redirect, a cache hit),
//! and what `axkit --check` says about a bad line.

mod common;

use std::process::Command;

use common::*;

/// Echoes the request headers the tests change, and answers 404 (by
/// declining) for `/missing`, 500 for `/boom`.
const ECHO: &str = r#"
function hook_response(r)
  if r:path() == "/missing" then return DECLINED end
  if r:path() == "/boom" then error("boom") end
  r:set_header("Content-Type", "text/plain")
  r:set_header("Cache-Control", "private")
  local h = r:headers()
  r:write("a=", tostring(h["x-a"]), " b=", tostring(h["x-b"]), " c=", tostring(h["x-c"]),
          " proxy=", tostring(h["proxy"]), "\n")
  return OK
end
"#;

fn start(server: &str) -> Axkit {
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
         Plugin headers\n    Plugin echo\n{server}\n</Server>\n"
    );
    Axkit::start_single_with(&conf, |d| {
        d.write("plugins/echo.lua", ECHO);
    })
}

/// The raw response to `GET path` with `headers`, its `Date` value
/// replaced by `DATE`.
fn raw_get(srv: &Axkit, path: &str, headers: &str) -> String {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    let (bytes, _) = srv.raw(req.as_bytes());
    lossy_undated(&bytes)
}

const RESPONSE_RULES: &str = "    Header set X-Frame-Options DENY\n    \
    Header add Set-Cookie a=1\n    Header add Set-Cookie b=2\n    \
    Header append Cache-Control no-transform\n    \
    Header setifempty Content-Type text/html\n    \
    <Location /inner>\n        Header unset X-Frame-Options\n        \
        Header setifempty X-Kind inner\n        Header set Set-Cookie c=3\n    </Location>\n";

#[test]
fn response_headers_in_order_with_inheritance() {
    let srv = start(RESPONSE_RULES);
    assert_eq!(
        raw_get(&srv, "/", ""),
        "HTTP/1.1 200 OK\r\nServer: AxKit\r\nDate: DATE\r\nContent-Type: text/plain\r\n\
         X-Frame-Options: DENY\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         Cache-Control: private, no-transform\r\nContent-Length: 28\r\nConnection: close\r\n\r\n\
         a=nil b=nil c=nil proxy=nil\n"
    );
    // `append` replaces the field, so it moves last; the Location's lines
    // run after the Server's: unset, then one cookie for the two.
    assert_eq!(
        raw_get(&srv, "/inner/x", ""),
        "HTTP/1.1 200 OK\r\nServer: AxKit\r\nDate: DATE\r\nContent-Type: text/plain\r\n\
         Cache-Control: private, no-transform\r\nX-Kind: inner\r\nSet-Cookie: c=3\r\n\
         Content-Length: 28\r\nConnection: close\r\n\r\n\
         a=nil b=nil c=nil proxy=nil\n"
    );
}

#[test]
fn conditions_on_error_pages() {
    let srv = start(
        "    Header set X-Ok yes\n    Header always set X-Always yes\n    \
         Header set X-Gone yes status=404,410\n    Header always set X-Oops yes status=500\n",
    );
    let ok = get(&srv, "/", "");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("X-Ok"), Some("yes"));
    assert_eq!(ok.header("X-Always"), Some("yes"));
    assert_eq!(ok.header("X-Gone"), None);
    assert_eq!(ok.header("X-Oops"), None);

    let missing = get(&srv, "/missing", "");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("X-Ok"), None);
    assert_eq!(missing.header("X-Always"), Some("yes"));
    assert_eq!(missing.header("X-Gone"), Some("yes"));
    assert_eq!(missing.header("X-Oops"), None);

    let boom = get(&srv, "/boom", "");
    assert_eq!(boom.status, 500);
    assert_eq!(boom.header("X-Ok"), None);
    assert_eq!(boom.header("X-Always"), Some("yes"));
    assert_eq!(boom.header("X-Gone"), None);
    assert_eq!(boom.header("X-Oops"), Some("yes"));
}

#[test]
fn request_headers_reach_later_plugins() {
    let srv = start(
        "    RequestHeader set X-A server\n    RequestHeader unset Proxy\n    \
         RequestHeader append X-B more\n    RequestHeader setifempty X-C default\n    \
         <Location /inner>\n        RequestHeader set X-A inner\n        \
             RequestHeader add X-C second\n    </Location>\n",
    );
    let r = get(
        &srv,
        "/",
        "X-A: client\r\nProxy: evil\r\nX-B: one\r\nX-B: two\r\n",
    );
    assert_eq!(r.text(), "a=server b=one, two, more c=default proxy=nil\n");
    let r = get(&srv, "/", "X-C: mine\r\n");
    assert_eq!(r.text(), "a=server b=more c=mine proxy=nil\n");
    let r = get(&srv, "/inner/", "");
    assert_eq!(r.text(), "a=inner b=more c=default, second proxy=nil\n");
}

/// A Server with `plugins` listed before `echo` and `lines` in it.
fn start_with_plugins(plugins: &[&str], lines: &str) -> Axkit {
    let plugins: String = plugins
        .iter()
        .map(|p| format!("    Plugin {p}\n"))
        .collect();
    let conf = format!(
        "Workers 1\nPluginDir {{dir}}/plugins\n<Server>\n    Listen 127.0.0.1:0\n\
         {plugins}    Plugin echo\n{lines}</Server>\n"
    );
    Axkit::start_single_with(&conf, |d| {
        d.write("plugins/echo.lua", ECHO);
    })
}

#[test]
fn rules_apply_once_with_the_final_locations_lines() {
    let srv = start_with_plugins(
        &["rewrite", "error_doc", "headers"],
        "    Header always add X-Added one\n    Header always append X-App two\n    \
         RequestHeader add X-C second\n    ErrorDocument 404 /oops/page\n    \
         Rewrite ^/r/(.*)$ /app/$1\n    \
         <Location /oops>\n        Header always set X-Where oops\n    </Location>\n    \
         <Location /app>\n        Header always set X-Where app\n    </Location>\n",
    );
    // The ErrorDocument is an internal redirect: one more walk, the same
    // client request, so each rule once; the error page's Location's
    // lines apply, and its request headers are those the first walk left.
    let r = get(&srv, "/missing", "");
    assert_eq!(r.status, 404);
    assert_eq!(r.header_all("X-Added"), ["one"]);
    assert_eq!(r.header_all("X-App"), ["two"]);
    assert_eq!(r.header_all("X-Where"), ["oops"]);
    assert_eq!(r.text(), "a=nil b=nil c=second proxy=nil\n");
    // A rewrite into another Location: that Location's lines.
    let r = get(&srv, "/r/x", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header_all("X-Added"), ["one"]);
    assert_eq!(r.header_all("X-Where"), ["app"]);
}

/// A request handed over to the Location of its directory's index gets
/// that Location's `RequestHeader` lines, as Apache's in the index
/// directory's context apply to its subrequest; the Server's, applied for
/// the URL the client sent, are not applied again (`add` would add twice).
#[test]
fn a_request_handed_over_gets_the_request_lines_of_its_new_location() {
    let conf = "Workers 1\nPluginDir {dir}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
         DocumentRoot {dir}/www\n    Plugin headers\n    Plugin uri_to_file\n    \
         DirectoryIndex index.html\n    RequestHeader add X-C server\n    \
         <Location /app/index.html>\n        Plugin echo\n        \
         RequestHeader set X-A index\n        RequestHeader add X-C index\n    \
         </Location>\n</Server>\n";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("plugins/echo.lua", ECHO);
        d.write("www/app/index.html", "index");
    });
    let r = get(&srv, "/app/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "a=index b=nil c=server, index proxy=nil\n");
    // Asked for by its own URL, the index has each line once as well.
    let r = get(&srv, "/app/index.html", "");
    assert_eq!(r.text(), "a=index b=nil c=server, index proxy=nil\n");
}

/// A request rewritten out of a Location and handed back into it (the
/// index of the directory it was rewritten to lies there) meets each of
/// that Location's lines once in all: whichever of `headers` and
/// `rewrite` is listed first, so whether `headers` took up the lines of
/// the Location the request was rewritten from or of the one it was
/// rewritten to.
#[test]
fn a_request_back_in_a_location_it_left_gets_each_line_once() {
    for plugins in ["headers\n    Plugin rewrite", "rewrite\n    Plugin headers"] {
        let conf = format!(
            "Workers 1\nPluginDir {{dir}}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
             DocumentRoot {{dir}}/www\n    Plugin {plugins}\n    Plugin uri_to_file\n    \
             DirectoryIndex index.html\n    RequestHeader add X-C server\n    \
             <Location /app/index.html>\n        Plugin echo\n        \
             RequestHeader add X-C index\n        Rewrite ^/app/index\\.html/.+$ /app/\n    \
             </Location>\n</Server>\n"
        );
        let srv = Axkit::start_single_with(&conf, |d| {
            d.write("plugins/echo.lua", ECHO);
            d.write("www/app/index.html", "index");
        });
        let r = get(&srv, "/app/index.html/x", "");
        assert_eq!(r.status, 200, "{plugins}");
        assert_eq!(
            r.text(),
            "a=nil b=nil c=server, index proxy=nil\n",
            "{plugins}"
        );
    }
}

/// A security line (`RequestHeader unset`, stripping a client-sent
/// identity field before an app sees it) in the Location a request is
/// rewritten into applies whichever of `headers` and `rewrite` is listed
/// first.
#[test]
fn an_unset_in_the_location_rewritten_to_always_applies() {
    for plugins in [["headers", "rewrite"], ["rewrite", "headers"]] {
        let srv = start_with_plugins(
            &plugins,
            "    Rewrite ^/public/(.*)$ /app/$1\n    RequestHeader add X-C server\n    \
             <Location /app>\n        RequestHeader unset Proxy\n        \
             RequestHeader add X-C app\n    </Location>\n",
        );
        // Each line once: the Server's in the Location rewritten from,
        // the rest of the Location rewritten to's after.
        let r = get(&srv, "/public/x", "Proxy: evil\r\n");
        let once = "a=nil b=nil c=server, app proxy=nil\n";
        assert_eq!(r.text(), once, "{plugins:?}");
        let r = get(&srv, "/app/x", "Proxy: evil\r\n");
        assert_eq!(r.text(), once, "{plugins:?}");
    }
}

/// An ErrorDocument's page, a walk of its own for the same client
/// request, gets the `RequestHeader` lines of its Location that did not
/// apply to the request before: an `unset` there strips a client-sent
/// field from what the page's app sees, an `add` applied before adds no
/// second field. When a plugin listed before `headers` refused the request
/// before it was called, every line applies to the page.
#[test]
fn an_error_documents_page_gets_the_lines_it_has_not_had() {
    let orders = [
        ["headers", "rewrite", "error_doc"],
        ["rewrite", "error_doc", "headers"],
    ];
    // The page in the Location, or rewritten into it.
    for (plugins, page) in orders
        .iter()
        .flat_map(|p| [(p, "/app/page"), (p, "/p/page")])
    {
        let srv = start_with_plugins(
            plugins,
            &format!(
                "    RequestHeader add X-C server\n    ErrorDocument 404 {page}\n    \
                 Rewrite ^/p/(.*)$ /app/$1\n    <Location /app>\n        \
                 RequestHeader unset Proxy\n        RequestHeader add X-C app\n    \
                 </Location>\n"
            ),
        );
        let r = get(&srv, "/missing", "Proxy: evil\r\n");
        assert_eq!(r.status, 404, "{plugins:?} {page}");
        let once = "a=nil b=nil c=server, app proxy=nil\n";
        assert_eq!(r.text(), once, "{plugins:?} {page}");
    }
    let conf = "Workers 1\nPluginDir {dir}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
         Plugin deny\n    Plugin error_doc\n    Plugin headers\n    Plugin echo\n    \
         RequestHeader unset Proxy\n    RequestHeader add X-C server\n    \
         ErrorDocument 403 /page\n</Server>\n";
    let srv = Axkit::start_single_with(conf, |d| {
        d.write("plugins/echo.lua", ECHO);
        d.write(
            "plugins/deny.lua",
            "function hook_post_read_request(r)\n  \
             if r:path() == \"/deny\" then return 403 end\n  return DECLINED\nend\n",
        );
    });
    let r = get(&srv, "/deny", "Proxy: evil\r\n");
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "a=nil b=nil c=server proxy=nil\n");
}

#[test]
fn rules_apply_whichever_plugin_answers_first() {
    // `rewrite` listed first, as docs/rewrite.md says: its redirect
    // answers in `post_read_request`, before `headers` is reached there.
    let srv = start_with_plugins(
        &["rewrite", "headers"],
        "    Header always set Strict-Transport-Security max-age=60\n    \
         Header add X-Added one\n    Redirect 301 /old https://new.example\n",
    );
    let r = get(&srv, "/old/x", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("https://new.example/x"));
    assert_eq!(r.header_all("Strict-Transport-Security"), ["max-age=60"]);
    assert_eq!(r.header_all("X-Added"), ["one"]);
}

#[test]
fn a_cache_listed_first_sees_the_rules_and_its_hits_carry_them_once() {
    let srv = start_with_plugins(
        &["cache", "headers"],
        "    Cache On\n    Header set Cache-Control \"public, max-age=60\"\n    \
         Header add X-Added one\n",
    );
    let first = get(&srv, "/", "");
    assert_eq!(
        first.header("Cache-Status"),
        Some("axkit; fwd=uri-miss; stored")
    );
    let hit = get(&srv, "/", "");
    assert_eq!(hit.header("Cache-Status"), Some("axkit; hit"));
    assert_eq!(hit.header_all("Cache-Control"), ["public, max-age=60"]);
    assert_eq!(hit.header_all("X-Added"), ["one"]);
}

/// `axkit --check` on a config with `lines` in its Server: (success, stderr).
fn check(lines: &str) -> (bool, String) {
    let dir = TempDir::new("headers-check");
    let conf = dir.write(
        "t.conf",
        format!("<Server>\n    Listen 127.0.0.1:0\n    Plugin headers\n{lines}</Server>\n"),
    );
    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    (out.status.success(), lossy(&out.stderr))
}

#[test]
fn bad_lines_are_refused_at_check() {
    let (ok, err) = check("    Header set \"X A\" 1\n    Header set X-B \"a\u{1}b\"\n    \
         RequestHeader set Content-Length 5\n    Header frob X-C 1\n    Header set X-D 1 status=99\n");
    assert!(!ok, "{err}");
    for want in [
        "t.conf:4: Header (plugin headers): invalid header name \"X A\"",
        "t.conf:5: Header (plugin headers): the value for X-B holds a control character",
        "t.conf:6: RequestHeader (plugin headers): Content-Length cannot be changed",
        "t.conf:7: Header (plugin headers): unknown action \"frob\"",
        "t.conf:8: Header (plugin headers): status=: \"99\" is not an HTTP status",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let (ok, err) =
        check("    Header always set X-A \"a b\" status=404\n    RequestHeader unset Proxy\n");
    assert!(ok, "{err}");
}
