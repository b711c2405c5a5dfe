//! Which plugin answers where: the everyday layout (files for the whole
//! `<Server>`, an application in a `<Location>`) works in any order. For
//! the content hooks (`xmlresponse`, `response`) a Location's own plugins
//! get the first say, innermost scope first; every other hook keeps scope
//! order (global, Server, enclosing Locations, this one). File-serving
//! plugins decline what they cannot serve, so the core's 404 comes last.
//! `axkit --check` warns about a plugin that can never be called where it
//! is loaded. A request handed over to another Location (its directory's
//! index) or rewritten into one runs that Location's `post_read_request`
//! hooks once each, and meets its `rewrite` lines.
//!
//! Each test starts the real binary with Lua plugins written to its
//! scratch directory and talks to it over TCP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A Lua plugin that answers every request with its name (and the path),
/// and stamps `X-Fixup` in `fixup` so that hook order shows.
fn app(name: &str) -> String {
    format!(
        "function hook_fixup(r)\n\
         \x20 local seen = r:response_header(\"X-Fixup\")\n\
         \x20 r:set_header(\"X-Fixup\", seen and (seen .. \",{name}\") or \"{name}\")\n\
         end\n\
         function hook_response(r)\n\
         \x20 r:write(\"{name} \", r:path())\n\
         \x20 return OK\n\
         end\n"
    )
}

/// Start one process; `files` (path, contents) go into the scratch
/// directory first, `plugins/NAME.lua` for scripts.
fn start(conf: &str, files: &[(&str, &str)]) -> Axkit {
    Axkit::start_single_with(conf, |d| {
        for (path, contents) in files {
            d.write(path, contents);
        }
    })
}

/// The stock static layout on the Server, with `location` inside it.
fn static_server(location: &str) -> String {
    format!(
        "PluginDir {{dir}}/plugins\n\
         <Server>\n\
         \x20   Listen 127.0.0.1:0\n\
         \x20   DocumentRoot {{dir}}/www\n\
         \x20   Plugin uri_to_file\n\
         \x20   Plugin fast_mime_map\n\
         \x20   Plugin serve_file\n\
         {location}\n\
         </Server>\n"
    )
}

#[test]
fn a_location_application_is_reached_under_a_server_file_server() {
    let conf = static_server(
        "    <Location /lua>\n        Plugin reader\n    </Location>\n\
         \x20   <Location /app>\n        Plugin reader\n    </Location>",
    );
    let reader = app("reader");
    let srv = start(
        &conf,
        &[
            ("plugins/reader.lua", &reader),
            ("www/index.html", "home\n"),
            ("www/app/page.txt", "a file under the Location\n"),
        ],
    );
    // Nothing on disk there: serve_file used to answer 404 first.
    for path in ["/lua", "/lua/x", "/lua/a/b?q=1"] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let want_path = path.split('?').next().unwrap();
        assert_eq!(r.text(), format!("reader {want_path}"), "{path}");
    }
    // A file that exists under the Location: the Location's application
    // still has the first say.
    assert_eq!(srv.get("/app/page.txt").text(), "reader /app/page.txt");
    // Outside the Locations the Server's files are served as before, and a
    // missing one is the core's 404.
    let home = srv.get("/index.html");
    assert_eq!((home.status, home.text().as_str()), (200, "home\n"));
    assert_eq!(srv.get("/missing.html").status, 404);
}

#[test]
fn other_hooks_keep_scope_order() {
    // Both implement fixup: the Server's runs first, then the Location's,
    // while for `response` the Location's answers.
    let conf = "PluginDir {dir}/plugins\n\
                <Server>\n\
                \x20   Listen 127.0.0.1:0\n\
                \x20   Plugin outer\n\
                \x20   <Location /app>\n\
                \x20       Plugin inner\n\
                \x20   </Location>\n\
                </Server>\n";
    let (outer, inner) = (app("outer"), app("inner"));
    let srv = start(
        conf,
        &[("plugins/outer.lua", &outer), ("plugins/inner.lua", &inner)],
    );
    let r = srv.get("/app/x");
    assert_eq!(r.text(), "inner /app/x");
    assert_eq!(r.header("X-Fixup"), Some("outer,inner"));
    let r = srv.get("/elsewhere");
    assert_eq!(r.text(), "outer /elsewhere");
    assert_eq!(r.header("X-Fixup"), Some("outer"));
}

#[test]
fn nested_locations_answer_innermost_first_and_fall_back_outwards() {
    // `picky` only answers paths ending in `.picky`; what it declines goes
    // to the enclosing Location's plugin, then to the Server's.
    let picky = "function hook_response(r)\n\
                 \x20 if not r:path():match('%.picky$') then return DECLINED end\n\
                 \x20 r:write('picky ', r:path())\n\
                 \x20 return OK\n\
                 end\n";
    let conf = "PluginDir {dir}/plugins\n\
                Plugin everywhere\n\
                <Server>\n\
                \x20   Listen 127.0.0.1:0\n\
                \x20   Plugin server_app\n\
                \x20   <Location /a>\n\
                \x20       Plugin a_app\n\
                \x20       <Location /a/b>\n\
                \x20           Plugin picky\n\
                \x20       </Location>\n\
                \x20   </Location>\n\
                </Server>\n";
    let (everywhere, server_app, a_app) = (app("everywhere"), app("server_app"), app("a_app"));
    let srv = start(
        conf,
        &[
            ("plugins/everywhere.lua", &everywhere),
            ("plugins/server_app.lua", &server_app),
            ("plugins/a_app.lua", &a_app),
            ("plugins/picky.lua", picky),
        ],
    );
    assert_eq!(srv.get("/a/b/x.picky").text(), "picky /a/b/x.picky");
    assert_eq!(srv.get("/a/b/x.html").text(), "a_app /a/b/x.html");
    assert_eq!(srv.get("/a/x").text(), "a_app /a/x");
    // The Server's plugins go before the global ones.
    assert_eq!(srv.get("/x").text(), "server_app /x");
    // fixup: global, Server, /a, in scope order (picky has none).
    assert_eq!(
        srv.get("/a/b/x.picky").header("X-Fixup"),
        Some("everywhere,server_app,a_app")
    );
}

#[test]
fn serve_file_declines_what_it_cannot_serve() {
    // `fallback` comes after serve_file in the same scope: it gets what
    // serve_file cannot serve, and nothing that serve_file answers.
    let conf = "PluginDir {dir}/plugins\n\
                <Server>\n\
                \x20   Listen 127.0.0.1:0\n\
                \x20   DocumentRoot {dir}/www\n\
                \x20   Plugin uri_to_file\n\
                \x20   Plugin serve_file\n\
                \x20   Plugin fallback\n\
                </Server>\n";
    let fallback = app("fallback");
    let srv = start(
        conf,
        &[
            ("plugins/fallback.lua", &fallback),
            ("www/file.txt", "file\n"),
            ("www/dir/inner.txt", "inner\n"),
        ],
    );
    // A missing file, and a file with path info after it.
    assert_eq!(srv.get("/missing").text(), "fallback /missing");
    assert_eq!(srv.get("/file.txt/more").text(), "fallback /file.txt/more");
    // What exists is serve_file's answer: the file, 405 for a method it
    // does not serve, 403 for a directory without an index.
    assert_eq!(srv.get("/file.txt").text(), "file\n");
    let post = request(&srv, "POST", "/file.txt", "Content-Length: 0\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    assert_eq!(srv.get("/dir/").status, 403);
}

/// `axkit --check -c FILE` after `files` are written: (exit ok, stderr).
fn check(conf: &str, files: &[(&str, &str)]) -> (bool, String) {
    let dir = TempDir::new("scopecheck");
    for (path, contents) in files {
        dir.write(path, contents);
    }
    let conf = dir.write("axkit.conf", config_text(&dir, conf));
    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_warns_about_a_plugin_that_is_never_called() {
    // Connection hooks run in the Server's own chain (no request has said
    // which Location it is for), and only for the first <Server> on an
    // address: `counter` in a Location, or in the second Server on the
    // same port, is never called.
    let counter = "function hook_connect(c) return OK end\n";
    let conf = "PluginDir {dir}/plugins\n\
                <Server>\n\
                \x20   Listen 127.0.0.1:24631\n\
                \x20   ServerName first.example\n\
                \x20   <Location /app>\n\
                \x20       Plugin counter\n\
                \x20   </Location>\n\
                </Server>\n\
                <Server>\n\
                \x20   Listen 127.0.0.1:24631\n\
                \x20   ServerName second.example\n\
                \x20   Plugin counter\n\
                </Server>\n";
    let (ok, stderr) = check(conf, &[("plugins/counter.lua", counter)]);
    assert!(ok, "a warning is not an error:\n{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(
        warnings[0].contains("plugin `counter`")
            && warnings[0].contains("<Location /app>")
            && warnings[0].contains("connect"),
        "{stderr}"
    );
    assert!(
        warnings[1].contains("plugin `counter`") && warnings[1].contains("127.0.0.1:24631"),
        "{stderr}"
    );

    // In the first Server, or with a request hook too, it is called: no
    // warning.
    let used = "function hook_connect(c) return OK end\n\
                function hook_fixup(r) end\n";
    let conf = "PluginDir {dir}/plugins\n\
                <Server>\n\
                \x20   Listen 127.0.0.1:24631\n\
                \x20   Plugin counter\n\
                \x20   <Location /app>\n\
                \x20       Plugin used\n\
                \x20   </Location>\n\
                </Server>\n";
    let (ok, stderr) = check(
        conf,
        &[("plugins/counter.lua", counter), ("plugins/used.lua", used)],
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// A directory's index in a `<Location>` of its own gets the request
/// itself: the method, the query and the body reach that Location's
/// application, under the index's URI (the client's stays the original,
/// as `REQUEST_URI`), and the index's Location, once reached, serves it
/// without going round again.
#[test]
fn an_index_in_another_location_gets_the_same_request() {
    const ECHO: &str = "function hook_response(r)\n\
        \x20 r:write(r:method(), \" \", r:path(), \" \", tostring(r:query()), \" \",\n\
        \x20   r:body(), \" \", r:filename():match(\"[^/]*$\"), \" \", r:location())\n\
        \x20 return OK\n\
        end\n";
    let conf = static_server(
        "    DirectoryIndex index.html\n\
         \x20   <Location /app/index.html>\n\
         \x20       Plugin echo\n\
         \x20   </Location>",
    );
    let srv = start(
        &conf,
        &[("plugins/echo.lua", ECHO), ("www/app/index.html", "index")],
    );
    let (bytes, _) = srv.raw(
        b"POST /app/?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
          Connection: close\r\n\r\nhello",
    );
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.status, 200, "{}", lossy(&bytes));
    assert_eq!(
        r.text(),
        "POST /app/index.html a=1 hello index.html /app/index.html"
    );
    assert_eq!(
        get(&srv, "/app/index.html", "").text(),
        "GET /app/index.html nil  index.html /app/index.html"
    );
}

/// A Lua plugin whose `post_read_request` appends `mark` to the note
/// `prr`, so that which of them ran, and how often, shows.
fn post_read(mark: &str) -> String {
    format!(
        "function hook_post_read_request(r)\n\
         \x20 r:note(\"prr\", (r:note(\"prr\") or \"\") .. \"{mark}\")\n\
         end\n"
    )
}

/// An application that shows what reached it: the path, the body it
/// reads, and the notes `bytes` (a `body_data` counter's) and `prr`.
const SHOW: &str = "function hook_response(r)\n\
    \x20 r:write(r:path(), \" body=\", r:body(), \" bytes=\", tostring(r:note(\"bytes\")),\n\
    \x20   \" prr=\", tostring(r:note(\"prr\")))\n\
    \x20 return OK\n\
    end\n";

/// A `body_data` hook that counts the body's bytes in the note `bytes`.
const COUNTER: &str = "function hook_body_data(r, chunk)\n\
    \x20 r:note(\"bytes\", tostring(tonumber(r:note(\"bytes\") or \"0\") + #chunk))\n\
    \x20 return OK\n\
    end\n";

/// GET each of `paths`: each answered 200 with `shown` (what SHOW says).
fn shows(srv: &Axkit, paths: &[&str], shown: &str) {
    for path in paths {
        let r = get(srv, path, "");
        assert_eq!((r.status, r.text().as_str()), (200, shown), "{path}");
    }
}

/// POST `path` with the body `hello`; the raw response, parsed.
fn post_hello(srv: &Axkit, path: &str) -> Response {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    let (bytes, _) = srv.raw(request.as_bytes());
    parse_response(&bytes).unwrap_or_else(|| panic!("no response: {}", lossy(&bytes)))
}

/// The Location a request is handed over to (its directory's index lives
/// there) runs its `post_read_request` hooks for it, as a request for
/// that URI would, once each: a plugin of the Server, or of both
/// Locations, has already run for the request and does not run again.
#[test]
fn a_request_handed_over_runs_the_new_locations_post_read_request_hooks_once() {
    let conf = static_server(
        "    Plugin shared\n\
         \x20   DirectoryIndex index.html\n\
         \x20   <Location /app/>\n\
         \x20       Plugin both\n\
         \x20   </Location>\n\
         \x20   <Location /app/index.html>\n\
         \x20       Plugin both\n\
         \x20       Plugin own\n\
         \x20       Plugin show\n\
         \x20   </Location>",
    );
    let srv = start(
        &conf,
        &[
            ("plugins/shared.lua", &post_read("s")),
            ("plugins/both.lua", &post_read("b")),
            ("plugins/own.lua", &post_read("i")),
            ("plugins/show.lua", SHOW),
            ("www/app/index.html", "index"),
        ],
    );
    shows(
        &srv,
        &["/app/", "/app/index.html"],
        "/app/index.html body= bytes=nil prr=sbi",
    );
}

/// A body that the `body_data` hooks of the Location asked for have read
/// is not there for the handler of the Location the request would be
/// handed to: the hand-off is refused (500, logged) rather than the body
/// lost. When that Location runs the same hooks (a request for its URI
/// would not have left the body to its handler either) the hand-off goes
/// on, and they do not see the body twice.
#[test]
fn a_body_read_by_body_data_hooks_is_never_lost_in_a_hand_off() {
    let files = [
        ("plugins/counter.lua", COUNTER),
        ("plugins/show.lua", SHOW),
        ("www/app/index.html", "index"),
        ("www/both/index.html", "index"),
    ];
    let conf = static_server(
        "    DirectoryIndex index.html\n\
         \x20   <Location /app/>\n\
         \x20       Plugin counter\n\
         \x20   </Location>\n\
         \x20   <Location /app/index.html>\n\
         \x20       Plugin show\n\
         \x20   </Location>\n\
         \x20   <Location /both/>\n\
         \x20       Plugin counter\n\
         \x20   </Location>\n\
         \x20   <Location /both/index.html>\n\
         \x20       Plugin counter\n\
         \x20       Plugin show\n\
         \x20   </Location>",
    );
    let mut srv = start(&conf, &files);
    // Asked for directly, the index's application reads the body.
    let r = post_hello(&srv, "/app/index.html");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/app/index.html body=hello bytes=nil prr=nil")
    );
    let r = post_hello(&srv, "/app/");
    assert_eq!(r.status, 500, "{}", r.text());
    srv.wait_stderr_line(
        &[
            "POST /app/ HTTP/1.1",
            "body_data",
            "<Location /app/index.html>",
        ],
        Duration::from_secs(10),
    );
    let r = post_hello(&srv, "/both/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "/both/index.html body= bytes=5 prr=nil")
    );
}

/// A request handed over to the Location its directory's index lies in
/// meets that Location's `Rewrite` and `Redirect` lines, with `rewrite`
/// loaded for the whole Server (Apache applies the rules of the index's
/// directory to its subrequest, nginx a location's rewrites after an
/// internal redirect into it); the Server's lines, which ran for the URL
/// the client sent, do not run again (the Server rule here would take
/// `/app/index.html` to `server.html`).
#[test]
fn a_request_handed_over_meets_the_rewrite_lines_of_its_new_location() {
    let conf = static_server(
        "    Plugin rewrite\n\
         \x20   DirectoryIndex index.html\n\
         \x20   Rewrite ^/(.*)/index\\.html$ /$1/server.html\n\
         \x20   <Location /app/index.html>\n\
         \x20       Rewrite ^/app/index\\.html$ /app/other.html\n\
         \x20   </Location>\n\
         \x20   <Location /moved/index.html>\n\
         \x20       Redirect 301 /moved/index.html https://new.example/\n\
         \x20   </Location>",
    );
    let srv = start(
        &conf,
        &[
            ("www/app/index.html", "index"),
            ("www/app/other.html", "other"),
            ("www/app/server.html", "server"),
            ("www/moved/index.html", "moved"),
        ],
    );
    let r = get(&srv, "/app/", "");
    assert_eq!((r.status, r.text().as_str()), (200, "other"));
    let r = get(&srv, "/moved/", "");
    assert_eq!(
        (r.status, r.header("Location")),
        (301, Some("https://new.example/"))
    );
}

/// A rewrite into another Location runs that Location's own
/// `post_read_request` hooks, once each, as a request for the new path
/// would: those of the Server have run and do not run again, nor do they
/// when the rewritten request is then handed over to its index.
#[test]
fn a_rewrite_into_another_location_runs_its_post_read_request_hooks_once() {
    let conf = static_server(
        "    Plugin shared\n\
         \x20   Plugin rewrite\n\
         \x20   DirectoryIndex index.html\n\
         \x20   Rewrite ^/go/(.*)$ /loc/$1\n\
         \x20   <Location /loc/>\n\
         \x20       Plugin own\n\
         \x20       Plugin show\n\
         \x20   </Location>\n\
         \x20   <Location /loc/index.html>\n\
         \x20       Plugin own\n\
         \x20       Plugin index\n\
         \x20       Plugin show\n\
         \x20   </Location>",
    );
    let srv = start(
        &conf,
        &[
            ("plugins/shared.lua", &post_read("s")),
            ("plugins/own.lua", &post_read("o")),
            ("plugins/index.lua", &post_read("i")),
            ("plugins/show.lua", SHOW),
            ("www/loc/index.html", "index"),
        ],
    );
    shows(
        &srv,
        &["/go/page", "/loc/page"],
        "/loc/page body= bytes=nil prr=so",
    );
    shows(&srv, &["/go/"], "/loc/index.html body= bytes=nil prr=soi");
}
