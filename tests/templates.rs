//! Templates (`TemplateDir`, `template.render`, `r:render`), end to end
//! with the real binary: Lua tables as template data, autoescaping by
//! extension, extends and includes within the directory only, syntax
//! errors reported by `--check` and at start with the template's
//! file:line, render errors with file:line, the master's snapshot (a
//! restarted worker renders what the master loaded; SIGHUP picks up
//! edits) and `LuaReload On` (edits picked up on the next render).
//! Includes escape at least as their page, JSON is HTML-safe, a
//! symbolic link out of the `TemplateDir` is a config error, and
//! `TemplateFuel` bounds a runaway render.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/process.rs"]
mod process;

use std::time::Duration;

use common::*;
use lua::{check, check_with, conf};

const BASE: &str = "<title>{{ title }}</title>\n{% block body %}{% endblock %}\n";
const PAGE: &str = r#"{% extends "layouts/base.html" %}{% block body %}
{%- for row in rows %}<tr><td>{{ loop.index }}</td><td>{{ row.name }}</td><td>{{ row.score }}</td>
{%- if row.tags %}<td>{{ row.tags|join(",") }}</td>{% endif %}</tr>
{% endfor %}{{ missing }}{% if flag is not defined %}undefined{% endif %} {{ ratio }} {{ ok }}{% endblock %}"#;

const SCRIPT: &str = r#"
function hook_response(r)
  local data = {
    title = "<Guests & co>",
    rows = { { name = "Ada", score = 3, tags = { "a", "<b>" } }, { name = "<script>", score = 1.5 } },
    ratio = 0.25, ok = true, flag = nil,
  }
  local path = r:path()
  if path == "/page" then
    r:render("page.html", data)
  elseif path == "/string" then
    r:write(template.render("note.txt", { title = "<raw & text>" }))
  elseif path == "/typed" then
    r:set_header("Content-Type", "text/x-custom")
    r:render("note.txt", { title = "t" })
  elseif path == "/missing" then
    r:render("nope.html", {})
  elseif path == "/escape" then
    r:render("evil.html", {})
  elseif path == "/broken" then
    r:render("broken.html", { items = 5 })
  end
  return OK
end
"#;

fn templates(dir: &TempDir) {
    dir.write("templates/layouts/base.html", BASE);
    dir.write("templates/page.html", PAGE);
    dir.write("templates/note.txt", "note: {{ title }}");
    dir.write("templates/evil.html", "{% include \"../plugins/t.lua\" %}");
    dir.write(
        "templates/broken.html",
        "one\ntwo\n{% for i in items %}{{ i }}{% endfor %}\n",
    );
    dir.write("templates/.page.html.swp", "\u{0}{% not a template");
}

fn start_templates(global: &str) -> Axkit {
    Axkit::start_single_with(
        &conf(
            &format!("TemplateDir {{dir}}/templates\n{global}"),
            "    Plugin t",
        ),
        |d| {
            d.write("plugins/t.lua", SCRIPT);
            templates(d);
        },
    )
}

#[test]
fn lua_tables_render_with_autoescaping() {
    let mut srv = start_templates("");
    let r = srv.get("/page");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.text(),
        "<title>&lt;Guests &amp; co&gt;</title>\n\
         <tr><td>1</td><td>Ada</td><td>3</td><td>a,&lt;b&gt;</td></tr>\n\
         <tr><td>2</td><td>&lt;script&gt;</td><td>1.5</td></tr>\n\
         undefined 0.25 True"
    );
    // `.txt`: no escaping; and `template.render` returns the text.
    let r = srv.get("/string");
    assert_eq!(r.text(), "note: <raw & text>");
    let r = srv.get("/typed");
    assert_eq!(r.header("Content-Type"), Some("text/x-custom"));
    assert_eq!(r.text(), "note: t");

    // A template that does not exist, one that reaches outside the
    // directory, and one that fails while rendering: 500, and the log
    // names the template and line.
    assert_eq!(srv.get("/missing").status, 500);
    srv.wait_stderr("r:render: template not found", Duration::from_secs(5));
    assert_eq!(srv.get("/escape").status, 500);
    let line = srv.wait_stderr_line(
        &["templates/evil.html:1:", "template not found"],
        Duration::from_secs(5),
    );
    assert!(line.contains("../plugins/t.lua"), "{line}");
    assert_eq!(srv.get("/broken").status, 500);
    srv.wait_stderr_line(
        &["templates/broken.html:3:", "number is not iterable"],
        Duration::from_secs(5),
    );
}

#[test]
fn syntax_errors_name_the_template_file_and_line() {
    let dir = TempDir::new("tmplcheck");
    dir.write("templates/ok.html", "{{ x }}");
    dir.write("templates/sub/bad.html", "one\n{% if %}\n");
    let text = "TemplateDir {dir}/templates\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n";
    let path = dir.write("axkit.conf", config_text(&dir, text));
    let out = std::process::Command::new(BIN)
        .arg("--check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("templates/sub/bad.html:2: TemplateDir (plugin template): syntax error"),
        "{err}"
    );
    assert!(refused_at_start(&path).contains("templates/sub/bad.html:2:"));

    // A TemplateDir that does not exist is reported where it is written.
    let (ok, out) = check(&conf("TemplateDir /nonexistent/templates", ""), &[]);
    assert!(!ok);
    assert!(
        out.contains(
            "axkit.conf:4: TemplateDir (plugin template): cannot read /nonexistent/templates"
        ),
        "{out}"
    );
}

#[test]
fn restarted_workers_render_what_the_master_loaded_and_sighup_rereads() {
    let script = "function hook_response(r) r:render('t.html', { v = 1 }) return OK end";
    let config = conf("Workers 2\nTemplateDir {dir}/templates", "    Plugin t");
    let mut srv = Axkit::start_with(&config, &[], |d| {
        d.write("plugins/t.lua", script);
        d.write("templates/t.html", "one {{ v }}");
    });
    assert_eq!(srv.get("/").text(), "one 1");
    let path = srv.dir.path().join("templates/t.html");
    std::fs::write(&path, "two {{ v }}").unwrap();
    process::replace_every_worker(&mut srv, 2);
    for _ in 0..4 {
        assert_eq!(srv.get("/").text(), "one 1");
    }
    // A broken edit: the reload is refused, the old templates serve on.
    std::fs::write(&path, "{% if %}").unwrap();
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("templates/t.html:1:", Duration::from_secs(20));
    assert_eq!(srv.get("/").text(), "one 1");
    std::fs::write(&path, "two {{ v }}").unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || srv.get("/").text() == "two 1"),
        "{}",
        srv.stderr()
    );
}

#[test]
fn lua_reload_picks_up_edited_templates() {
    let script = "function hook_response(r) r:render('t.html', { v = 1 }) return OK end";
    let mut srv = Axkit::start_single_with(
        &conf("LuaReload On\nTemplateDir {dir}/templates", "    Plugin t"),
        |d| {
            d.write("plugins/t.lua", script);
            d.write("templates/t.html", "zero {{ v }}");
        },
    );
    let path = srv.dir.path().join("templates/t.html");
    // Each edit a few seconds apart, even on a coarse-grained clock.
    let edit = |text: &str, later: u64| {
        std::fs::write(&path, text).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(later))
            .unwrap();
    };
    assert_eq!(srv.get("/").text(), "zero 1");
    edit("one {{ v }}", 5);
    assert_eq!(srv.get("/").text(), "one 1");
    // A new template is found too.
    srv.dir.write("templates/u.html", "new");
    edit("{% include 'u.html' %} {{ v }}", 10);
    assert_eq!(srv.get("/").text(), "new 1");
    // A broken edit keeps the previous templates and says why.
    edit("{% if %}", 15);
    assert_eq!(srv.get("/").text(), "new 1");
    srv.wait_stderr_line(
        &["keeping the previous templates", "templates/t.html:1:"],
        Duration::from_secs(5),
    );
}

#[test]
fn includes_escape_at_least_as_their_page() {
    // The template named by the path, with a value that would be markup.
    let script = r#"
function hook_response(r)
  r:render(r:path():sub(2), { user = "<b>'x'</b>" })
  return OK
end
"#;
    let srv = Axkit::start_single_with(&conf("TemplateDir {dir}/templates", "    Plugin t"), |d| {
        d.write("plugins/t.lua", script);
        d.write(
            "templates/page.html",
            "<p>{{ user }}</p>{% include \"partial.txt\" %}\
                 <script>var d = {% include \"data.json\" %};</script>\
                 {% autoescape false %}{{ user }}{% endautoescape %}",
        );
        d.write("templates/partial.txt", "partial: {{ user }}");
        d.write("templates/data.json", "{\"u\": {{ user }}}");
        d.write(
            "templates/mail.txt",
            "{{ user }} {% include \"data.json\" %}",
        );
    });
    let json = r#"{"u": "\u003cb\u003e\u0027x\u0027\u003c/b\u003e"}"#;
    let r = srv.get("/page.html");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "<p>&lt;b&gt;&#x27;x&#x27;&lt;&#x2f;b&gt;</p>\
             partial: &lt;b&gt;&#x27;x&#x27;&lt;&#x2f;b&gt;\
             <script>var d = {json};</script><b>'x'</b>"
        )
    );
    let r = srv.get("/data.json");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.text(), json);
    // A text page stays text; what it includes escapes as its own says.
    let r = srv.get("/mail.txt");
    assert_eq!(r.text(), format!("<b>'x'</b> {json}"));
}

#[test]
fn symlinks_out_of_the_template_dir_are_config_errors() {
    let config = conf("TemplateDir {dir}/templates", "    Plugin t");
    let script = "function hook_response(r) r:render(r:path():sub(2), { v = 1 }) return OK end";
    for target in ["../secret", "/etc/passwd"] {
        let (ok, out) = check_with(&config, &[("t", script)], |d| {
            linked_templates(d);
            std::os::unix::fs::symlink(target, d.path().join("templates/leak.txt")).unwrap();
        });
        assert!(!ok, "{out}");
        assert!(
            out.contains("TemplateDir (plugin template): cannot read ")
                && out.contains("leak.txt is a symbolic link that leads outside the directory"),
            "{out}"
        );
    }

    // Links that stay beneath it are templates like any other.
    let srv = Axkit::start_single_with(&config, |d| {
        d.write("plugins/t.lua", script);
        linked_templates(d);
    });
    assert_eq!(srv.get("/alias.html").text(), "page 1");
    assert_eq!(srv.get("/sub/up.html").text(), "page 1");
    assert_eq!(srv.get("/dangling.html").status, 500);
}

/// A template, links to it that stay in the directory, a dangling link,
/// and a secret beside the directory.
fn linked_templates(d: &TempDir) {
    d.write("secret", "root only");
    d.write("templates/page.html", "page {{ v }}");
    std::fs::create_dir_all(d.path().join("templates/sub")).unwrap();
    for (target, name) in [
        ("page.html", "alias.html"),
        ("../page.html", "sub/up.html"),
        ("missing.html", "dangling.html"),
    ] {
        std::os::unix::fs::symlink(target, d.path().join("templates").join(name)).unwrap();
    }
}

#[test]
fn a_runaway_render_is_stopped_by_template_fuel() {
    // 10^10 steps, hours unbounded: `LuaTimeLimit` cannot stop the Rust
    // render the script called; the default `TemplateFuel` does, within
    // `get`'s bound of seconds, and the worker serves on.
    let script = "function hook_response(r) r:render(r:path():sub(2), { v = 1 }) return OK end";
    let mut srv = Axkit::start_single_with(
        &conf(
            "LuaTimeLimit 1s\nTemplateDir {dir}/templates",
            "    Plugin t",
        ),
        |d| {
            d.write("plugins/t.lua", script);
            d.write(
                "templates/spin.html",
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            );
            d.write("templates/ok.html", "ok {{ v }}");
        },
    );
    assert_eq!(srv.get("/spin.html").status, 500);
    srv.wait_stderr_line(
        &[
            "templates/spin.html:1: engine ran out of fuel",
            "more than TemplateFuel 10485760 steps",
        ],
        Duration::from_secs(5),
    );
    let r = srv.get("/ok.html");
    assert_eq!((r.status, r.text().as_str()), (200, "ok 1"));
}
