//! Templates for AxKit: [minijinja](https://docs.rs/minijinja) (Jinja2's
//! language) over the files beneath a `TemplateDir`, for Rust plugins
//! ([`render`]) and Lua scripts (`template.render`, `r:render`). Register
//! the source in a binary with
//! `axkit::Server::new().source(axkit_template::TemplateSource)`; the stock
//! `axkit` command does. `docs/templates.md` documents the language, the
//! calls and the directive.
//!
//! Directives (any scope; the source is always in use, no `Plugin` line):
//! - `TemplateDir DIR`, the directory whose files are the templates, named
//!   by their path beneath it (`page.html`, `layouts/base.html`).
//! - `TemplateFuel N` (default 10M, 0 for none): the most steps (minijinja's
//!   fuel: an instruction, or 64 bytes of data made) one render may take.
//!   A render runs on the worker's one thread and cannot be interrupted
//!   (`LuaTimeLimit` stops Lua, not the Rust render it called), so a
//!   runaway loop would stall every connection of the worker; past the
//!   bound the render fails, naming the template.
//!
//! The templates are read when the config loads, through the config's
//! `FileReader`: the master records them in the snapshot it hands its
//! workers, so every worker renders what the master loaded (edits take
//! effect on SIGHUP) and a syntax error is a config error with the
//! template's file:line (at start-up, by `--check`, on reload, which keeps
//! the old config). Each worker compiles them once, as it loads its
//! config; a render only looks the template up and runs it. With
//! `LuaReload On` (development) a render first looks at the files on disk
//! and recompiles them when one changed, keeping the previous templates if
//! the new ones do not compile.
//!
//! Includes, extends and imports name other templates of the same
//! directory and nothing else: every template was read at load time, so
//! `{% include "../../etc/passwd" %}` or an absolute path finds no
//! template, and a render never opens a file.
//!
//! Autoescaping by the template's extension (after a `.j2`, `.jinja` or
//! `.jinja2` suffix): none for `.txt`, JSON for `.json`, and HTML for
//! every other one (`.html`, `.htm`, `.xml`…), so that a value is escaped
//! unless a template says otherwise (`{% autoescape false %}`, `|safe`).
//! An included (or imported) template escapes at least as the page being
//! rendered does ([`format`]): minijinja gives each template its own
//! escaping, so a `.txt` partial in an HTML page would print its values
//! raw. JSON is written HTML-safe (`<`, `>`, `&`, `'` as `\u003c`…, as the
//! `tojson` filter writes it), so that a `.json` template included in a
//! `<script>` cannot close it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use axkit::config::{
    Config, ConfigError, Directive, FileReader, Key, LocationConfig, Value as Arg,
};
use axkit::plugin::{InUse, Level};
use axkit::{Plugin, PluginInit, PluginSource};
use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, HtmlEscape, Output, State};

pub use minijinja;
pub use minijinja::Value;

/// `TemplateDir DIR`: where the templates are. Unset: no templates.
pub static TEMPLATE_DIR: Key<Option<PathBuf>> = Key::new("TemplateDir").doc(
    "Directory of templates (minijinja): its files, read when the config loads, \
     are what template.render names",
);

/// `TemplateFuel N`: the steps one render may take, 0 for no bound. 10M
/// is about a third of a second of a release build's loops.
pub static TEMPLATE_FUEL: Key<u64> = Key::new("TemplateFuel").default("10M").doc(
    "Most steps (instructions, 64-byte pieces of data) one template render may take; 0: no bound",
);

/// The source of the `TemplateDir` directive: it reads and compiles the
/// templates whenever a config loads. It has no plugins.
pub struct TemplateSource;

impl PluginSource for TemplateSource {
    fn name(&self) -> &str {
        "template"
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn directives(&self) -> Vec<Directive> {
        vec![TEMPLATE_DIR.declare(), TEMPLATE_FUEL.declare()]
    }

    /// Every distinct `TemplateDir` of the config, compiled for this
    /// thread's renders.
    fn load_files(
        &self,
        config: &Config,
        files: &mut FileReader<'_>,
    ) -> Result<(), Vec<ConfigError>> {
        let mut sets: Vec<Rc<Templates>> = Vec::new();
        let mut errors = Vec::new();
        // Each directory once, whether it loaded or not: a scope inherits
        // its enclosing scope's, and its errors would be reported again.
        let mut seen: Vec<&PathBuf> = Vec::new();
        for scope in config.scopes() {
            let Some(dir) = scope.get(&TEMPLATE_DIR) else {
                continue;
            };
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir);
            let written = scope.settings_of(&TEMPLATE_DIR).last();
            let at = |message: String| ConfigError {
                file: written.map_or(String::new(), |s| s.file.to_string()),
                line: written.map_or(0, |s| s.line),
                directive: Some(TEMPLATE_DIR.name().to_string()),
                plugin: Some("template".into()),
                message,
            };
            let sources = match read(dir, files) {
                Ok(sources) => sources,
                Err(e) => {
                    errors.push(at(e));
                    continue;
                }
            };
            match compile(dir, sources) {
                Ok(env) => sets.push(Rc::new(Templates {
                    dir: dir.clone(),
                    env: RefCell::new(env),
                    stamp: RefCell::new(None),
                })),
                Err(bad) => {
                    errors.extend(bad.into_iter().map(|(file, line, message)| ConfigError {
                        file,
                        line,
                        ..at(message)
                    }))
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let reload = config
            .global
            .settings("LuaReload")
            .last()
            .is_some_and(|s| matches!(s.args.first(), Some(Arg::Bool(true))));
        LOADED.with(|l| *l.borrow_mut() = Rc::new(Loaded { sets, reload }));
        Ok(())
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}

thread_local! {
    /// What this thread's last config load compiled: in a worker, the
    /// templates every render uses.
    static LOADED: RefCell<Rc<Loaded>> = RefCell::new(Rc::new(Loaded {
        sets: Vec::new(),
        reload: false,
    }));
    /// The escaping of the page being rendered (the template a render
    /// names), which its includes escape at least as: see [`format`].
    static PAGE: RefCell<AutoEscape> = const { RefCell::new(AutoEscape::None) };
}

struct Loaded {
    sets: Vec<Rc<Templates>>,
    /// `LuaReload On`: look for edits before each render.
    reload: bool,
}

/// Each template file beneath a directory with its modification time and
/// size, to tell an edit.
type Stamp = Vec<(String, Option<SystemTime>, u64)>;

/// The compiled templates of one directory.
struct Templates {
    dir: PathBuf,
    env: RefCell<Environment<'static>>,
    /// The files as last seen on disk, for `LuaReload`: None until the
    /// first look (what was loaded came from the master's snapshot).
    stamp: RefCell<Option<Stamp>>,
}

/// A template that cannot be found or rendered, or no `TemplateDir`. Its
/// message names the template file and line where there is one
/// (`templates/page.html:12: undefined value: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Render template `name` of the `TemplateDir` in effect for `config` (a
/// request's `ctx.config()`, or `init.config.global` in a constructor)
/// with `data`, any value serde can serialise (a struct deriving
/// `Serialize`, a map, `serde_json::Value`…).
///
/// ```no_run
/// # fn hook(ctx: &mut axkit::Context) -> axkit::Outcome {
/// #[derive(serde::Serialize)]
/// struct Page<'a> { title: &'a str, rows: Vec<(u32, &'a str)> }
///
/// let page = Page { title: "Guests", rows: vec![(1, "Ada"), (2, "<Bob>")] };
/// match axkit_template::render(ctx.config(), "guests.html", &page) {
///     Ok(html) => {
///         ctx.response.headers.set("Content-Type", "text/html; charset=utf-8");
///         ctx.response.body = axkit::plugin::Body::Bytes(html.into());
///         axkit::Outcome::Ok
///     }
///     Err(e) => axkit::Outcome::Error(e.to_string()),
/// }
/// # }
/// ```
pub fn render(
    config: &LocationConfig,
    name: &str,
    data: impl serde::Serialize,
) -> Result<String, Error> {
    render_value(config, name, minijinja::value::Serde(data))
}

/// [`render`] with a minijinja [`Value`] (or `minijinja::context!{ … }`),
/// which skips serde: what the Lua host passes.
pub fn render_value(
    config: &LocationConfig,
    name: &str,
    data: impl Into<Value>,
) -> Result<String, Error> {
    let dir = config
        .try_get(&TEMPLATE_DIR)
        .ok_or_else(|| {
            Error("TemplateDir is not declared: register axkit_template::TemplateSource".into())
        })?
        .as_ref()
        .ok_or_else(|| Error(format!("{name}: no TemplateDir is set here")))?;
    let loaded = LOADED.with(|l| l.borrow().clone());
    let set = loaded
        .sets
        .iter()
        .find(|s| &s.dir == dir)
        .ok_or_else(|| Error(format!("TemplateDir {}: not loaded", dir.display())))?;
    if loaded.reload {
        set.reload_if_changed();
    }
    let fuel = *config.get(&TEMPLATE_FUEL);
    set.env.borrow_mut().set_fuel((fuel > 0).then_some(fuel));
    let rendered = render_page(&set.env.borrow(), name, data.into());
    rendered.map_err(|e| {
        let error = set.error(&e);
        if out_of_fuel(&e) {
            Error(format!(
                "{error}: the render took more than TemplateFuel {fuel} steps"
            ))
        } else {
            error
        }
    })
}

/// Render template `name` of `env` as the page: what it includes escapes
/// at least as it does ([`format`]).
fn render_page(env: &Environment<'_>, name: &str, data: Value) -> Result<String, minijinja::Error> {
    let template = env.get_template(name)?;
    let outer = PAGE.replace(escape_for(name));
    let rendered = template.render(data);
    PAGE.set(outer);
    rendered
}

/// Whether `e` (or what caused it: an included template's error is
/// wrapped) is the render running out of fuel.
fn out_of_fuel(e: &minijinja::Error) -> bool {
    std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source()).any(|e| {
        e.downcast_ref::<minijinja::Error>()
            .is_some_and(|e| e.kind() == minijinja::ErrorKind::OutOfFuel)
    })
}

/// The `Content-Type` of what template `name` produces, by its extension
/// (as autoescaping goes): `text/plain` for `.txt`, `application/json`,
/// `application/xml`, else `text/html`; text in UTF-8.
pub fn content_type(name: &str) -> &'static str {
    match extension(name) {
        "txt" | "text" => "text/plain; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml; charset=utf-8",
        _ => "text/html; charset=utf-8",
    }
}

/// The extension that says what a template produces, past a `.j2`,
/// `.jinja` or `.jinja2` suffix.
fn extension(name: &str) -> &str {
    let name = [".j2", ".jinja2", ".jinja"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let base = name.rsplit('/').next().unwrap_or(name);
    base.rsplit_once('.').map_or("", |(_, ext)| ext)
}

fn escape_for(name: &str) -> AutoEscape {
    match extension(name) {
        "txt" | "text" => AutoEscape::None,
        "json" => AutoEscape::Json,
        _ => AutoEscape::Html,
    }
}

/// The formatter of every template: `value` escaped as the template it is
/// written in says, except that a template with no escaping of its own
/// (`.txt`) takes the page's: minijinja escapes an included template by
/// its own name, and a `.txt` partial would print raw into an HTML page. A
/// block that says `{% autoescape false %}` in an escaping template is
/// honoured. JSON is written HTML-safe.
fn format(out: &mut Output, state: &mut State, value: &Value) -> Result<(), minijinja::Error> {
    let own = state.auto_escape();
    let mode = match own {
        AutoEscape::None if escape_for(state.name()) == AutoEscape::None => {
            PAGE.with_borrow(Clone::clone)
        }
        _ => own.clone(),
    };
    if value.is_safe() || (mode == *own && mode != AutoEscape::Json) {
        return minijinja::escape_formatter(out, state, value);
    }
    match mode {
        AutoEscape::Json => {
            // The filter's output is marked safe, and HTML-safe.
            let no_args = Kwargs::from_iter(std::iter::empty::<(&str, Value)>());
            let json = minijinja::filters::tojson(value, None, no_args)?;
            minijinja::escape_formatter(out, state, &json)
        }
        // HTML: a `.txt` template's value in an HTML page.
        _ => write!(out, "{}", HtmlEscape(&value.to_string())).map_err(Into::into),
    }
}

/// A file beneath a template directory that is not a template: anything
/// hidden (`.page.html.swp`, `.git/…`).
fn hidden(name: &str) -> bool {
    name.split('/').any(|part| part.starts_with('.'))
}

/// The templates beneath `dir`, by name, read through `files`.
fn read(dir: &Path, files: &mut FileReader<'_>) -> Result<Vec<(String, String)>, String> {
    let names = files
        .files_beneath(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut sources = Vec::new();
    for name in names.into_iter().filter(|n| !hidden(n)) {
        let path = dir.join(&name);
        let file = files
            .file_beneath(dir, &name)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ok_or_else(|| format!("{}: gone while it was read", path.display()))?;
        let text = String::from_utf8(file.bytes)
            .map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
        sources.push((name, text));
    }
    Ok(sources)
}

/// Compile `sources` (name, text) into an environment, or say which
/// template is wrong where: (file, line, message) each.
fn compile(
    dir: &Path,
    sources: Vec<(String, String)>,
) -> Result<Environment<'static>, Vec<(String, u32, String)>> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(escape_for);
    env.set_formatter(format);
    let mut errors = Vec::new();
    for (name, text) in sources {
        if let Err(e) = env.add_template_owned(name.clone(), text) {
            let file = dir.join(&name).display().to_string();
            let line = e.line().map_or(0, |l| u32::try_from(l).unwrap_or(u32::MAX));
            errors.push((file, line, message(&e)));
        }
    }
    if errors.is_empty() {
        Ok(env)
    } else {
        Err(errors)
    }
}

/// What went wrong, without the position (given apart): `syntax error:
/// unexpected end of input`, and the causes.
fn message(e: &minijinja::Error) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl Templates {
    /// An error of this set as the caller sees it: the template's path and
    /// line first, where known.
    fn error(&self, e: &minijinja::Error) -> Error {
        let at = match (e.name(), e.line()) {
            (Some(name), Some(line)) => format!("{}:{line}: ", self.dir.join(name).display()),
            (Some(name), None) => format!("{}: ", self.dir.join(name).display()),
            _ => String::new(),
        };
        Error(format!("{at}{}", message(e)))
    }

    /// `LuaReload On`: if a file beneath the directory was added, removed
    /// or modified since the last look, compile them all again from the
    /// disk (not the snapshot: this is a development mode). Templates that
    /// do not compile leave the previous ones in place, and the errors are
    /// logged once per change.
    fn reload_if_changed(&self) {
        let stamp = match disk_stamp(&self.dir) {
            Ok(stamp) => stamp,
            Err(e) => {
                return axkit::plugin::log_to_stderr(
                    Level::Error,
                    &format!("TemplateDir {}: {e}", self.dir.display()),
                )
            }
        };
        if self.stamp.borrow().as_ref() == Some(&stamp) {
            return;
        }
        *self.stamp.borrow_mut() = Some(stamp);
        let mut files = FileReader::new(None);
        let compiled = read(&self.dir, &mut files)
            .map_err(|e| vec![(self.dir.display().to_string(), 0, e)])
            .and_then(|sources| compile(&self.dir, sources));
        match compiled {
            Ok(env) => *self.env.borrow_mut() = env,
            Err(errors) => {
                for (file, line, message) in errors {
                    axkit::plugin::log_to_stderr(
                        Level::Error,
                        &format!(
                            "LuaReload: keeping the previous templates of {}: {file}:{line}: {message}",
                            self.dir.display()
                        ),
                    );
                }
            }
        }
    }
}

/// Every template file beneath `dir` with its modification time and size.
fn disk_stamp(dir: &Path) -> std::io::Result<Stamp> {
    let mut files = FileReader::new(None);
    let mut stamp = Vec::new();
    for name in files.files_beneath(dir)? {
        if hidden(&name) {
            continue;
        }
        let meta = std::fs::metadata(dir.join(&name))?;
        stamp.push((name, meta.modified().ok(), meta.len()));
    }
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_content_type_by_extension() {
        assert_eq!(escape_for("page.html"), AutoEscape::Html);
        assert_eq!(escape_for("feed.xml.j2"), AutoEscape::Html);
        assert_eq!(escape_for("mail/body.txt"), AutoEscape::None);
        assert_eq!(escape_for("data.json"), AutoEscape::Json);
        assert_eq!(escape_for("noext"), AutoEscape::Html);
        assert_eq!(escape_for("dir.txt/page"), AutoEscape::Html);
        assert_eq!(content_type("a.txt.jinja"), "text/plain; charset=utf-8");
        assert_eq!(content_type("a.html"), "text/html; charset=utf-8");
    }

    #[test]
    fn includes_escape_at_least_as_their_page() {
        let env = compile(
            Path::new("t"),
            vec![
                ("p.txt".into(), "{{ v }}".into()),
                ("d.json".into(), "{{ m }}".into()),
                (
                    "m.txt".into(),
                    "{% macro show(x) %}[{{ x }}]{% endmacro %}".into(),
                ),
                (
                    "page.html".into(),
                    "{% include 'p.txt' %} {% include 'd.json' %} \
                     {% from 'm.txt' import show %}{{ show(v) }} \
                     {% autoescape false %}{{ v }}{% endautoescape %}"
                        .into(),
                ),
                ("page.json".into(), "{% include 'p.txt' %}".into()),
                ("page.txt".into(), "{% include 'p.txt' %} {{ v|e }}".into()),
            ],
        )
        .unwrap();
        let data = minijinja::context! { v => "<a&'>", m => minijinja::context! { k => [1, 2] } };
        let page = |name: &str| render_page(&env, name, data.clone()).unwrap();
        assert_eq!(
            page("page.html"),
            "&lt;a&amp;&#x27;&gt; {\"k\": [1, 2]} [&lt;a&amp;&#x27;&gt;] <a&'>"
        );
        assert_eq!(page("page.json"), "\"\\u003ca\\u0026\\u0027\\u003e\"");
        assert_eq!(page("page.txt"), "<a&'> &lt;a&amp;&#x27;&gt;");
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let errors = compile(
            Path::new("t"),
            vec![
                ("ok.html".into(), "{{ x }}".into()),
                ("bad.html".into(), "line 1\n{% if %}\n".into()),
            ],
        )
        .err()
        .unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].0.as_str(), errors[0].1), ("t/bad.html", 2));
        assert!(errors[0].2.starts_with("syntax error"), "{}", errors[0].2);
    }

    #[test]
    fn renders_escape_and_stay_in_their_directory() {
        let env = compile(
            Path::new("t"),
            vec![
                ("base.html".into(), "<h1>{{ title }}</h1>{% block body %}{% endblock %}".into()),
                (
                    "page.html".into(),
                    "{% extends \"base.html\" %}{% block body %}{% for r in rows %}<p>{{ r }}</p>{% endfor %}{% endblock %}".into(),
                ),
                ("note.txt".into(), "{{ title }}".into()),
                ("evil.html".into(), "{% include \"../etc/passwd\" %}".into()),
            ],
        )
        .unwrap();
        let data = minijinja::context! { title => "<T&>", rows => vec!["a<b", "c"] };
        let page = env
            .get_template("page.html")
            .unwrap()
            .render(&data)
            .unwrap();
        assert_eq!(page, "<h1>&lt;T&amp;&gt;</h1><p>a&lt;b</p><p>c</p>");
        let note = env.get_template("note.txt").unwrap().render(&data).unwrap();
        assert_eq!(note, "<T&>");
        let set = Templates {
            dir: "t".into(),
            env: RefCell::new(env),
            stamp: RefCell::new(None),
        };
        let env = set.env.borrow();
        let e = env
            .get_template("evil.html")
            .unwrap()
            .render(&data)
            .unwrap_err();
        let shown = set.error(&e).to_string();
        assert!(
            shown.starts_with("t/evil.html:1: template not found"),
            "{shown}"
        );
    }
}
