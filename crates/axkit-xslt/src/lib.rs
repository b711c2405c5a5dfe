//! The `xslt` plugin: AxKit's XML pipeline. It answers `xmlresponse`: it
//! takes the document an earlier plugin of the chain left in
//! `ctx.document` (text, or an `axkit_xml::Document` as
//! `Document::Tree`), or else reads the `.xml` file `uri_to_file` mapped
//! the request to, runs it through a chain of XSLT 1.0 stylesheets
//! (libxslt, with EXSLT) and leaves the output of the last one as
//! `Document::Text`, with the `Content-Type` its `xsl:output` says. A Lua
//! (or Rust) processor after it in the chain gets that text.
//!
//! Directives (Server and Location unless said):
//!
//! - `XMLMatch .ext…` | `XMLMatch root NAME` | `XMLMatch namespace URI`
//!   (repeatable): which files are read as XML (by extension; `.xml` when
//!   no extension is given) and which documents the pipeline takes (with
//!   `root`/`namespace` lines, only those whose root element has that
//!   local name or namespace; the others are left alone).
//! - `XSLTStyle FILE [MEDIA]` (repeatable): the default chain, in order;
//!   with MEDIA (`screen`, `print`, `handheld`, `tty`…) only for that
//!   medium.
//! - `<Style NAME> XSLTStyle FILE [MEDIA]… </Style>`: a named chain, chosen
//!   by a style chooser.
//! - `StyleChooser querystring|useragent|media…` (default `querystring`):
//!   how a request picks its style: `?style=NAME`; the first
//!   `StyleUserAgent REGEX NAME` whose regex matches the User-Agent; the
//!   medium guessed from the User-Agent (else `screen`).
//! - `StyleUserAgent REGEX NAME` (repeatable): for the `useragent` chooser.
//! - `XMLStylesheetPI On|Off` (default Off): honour the document's
//!   `<?xml-stylesheet?>` processing instructions (XSLT ones) when no
//!   named `<Style>` was chosen.
//! - `XSLTParam NAME VALUE` (repeatable): a string parameter, as
//!   `xsltproc --stringparam`.
//! - `XSLTParamsFromRequest On|Off` (default Off): also pass the query
//!   parameters (by their own name), `request.path`, `request.method` and
//!   the notes (`note.NAME`), all strings; `XSLTParam` wins, and query
//!   names beginning `request.` or `note.` are dropped.
//! - `XSLTTimeLimit DURATION` (default 5s): how long a request's
//!   parsing, XIncludes and transforms may take in all; past it a
//!   transform is stopped from another thread (even one running on the
//!   event loop), and a parse that ended past it fails: the request is a
//!   500.
//! - `XSLTCache On|Off` (default On): keep transformed files in the
//!   worker's result cache.
//! - `XSLTCacheSize SIZE` (global, default 16M): that cache's bound.
//! - `XSLTPool N` (global, default 2): transforms of large documents run
//!   on the blocking pool, at most N at once per worker.
//!
//! Paths are relative to the Location's DocumentRoot unless absolute.
//! Every file the libraries load for a request (XInclude, `document()`,
//! a PI's stylesheet) is read beneath the DocumentRoot through the core's
//! opener; a stylesheet's own includes, and `document('')` (the
//! stylesheet itself), are read beneath its directory (or the
//! DocumentRoot it lies under). XInclude pointers that need XPath are
//! refused (libxml2 puts no bound on their work). `axkit --check` compiles every
//! stylesheet the config names and reports XSLT errors with file:line.

mod choose;
mod results;
mod styles;
mod transform;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axkit::config::{ArgType, Args, Directive, FromConfig, Key, List, Scopes, Value};
use axkit::plugin::{Body, DocRoot, Document, Rule, DOCUMENT_ROOT};
use axkit::{hook, Context, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec};
use axkit_plugins::file_http::{self, Precondition};
use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::results::{Cached, Results, Validators};
use crate::styles::{Compiled, Files, Stamp, Styles};
use crate::transform::{Job, Limit};

pub const XSLT: PluginSpec = PluginSpec {
    name: "xslt",
    directives,
    create,
};

const HERE: Scopes = Scopes::SERVER.or(Scopes::LOCATION);

static XML_MATCH: List<Match> = List::parsed("XMLMatch", parse_match)
    .args(Args::Many)
    .scopes(HERE)
    .doc("XMLMatch .ext… | root NAME | namespace URI: which files are XML (default .xml) and which documents the pipeline takes");

static XSLT_STYLE: List<Style> = List::parsed("XSLTStyle", parse_style)
    .args(Args::Range(1, 2))
    .scopes(HERE)
    .doc("XSLTStyle FILE [MEDIA]: the next stylesheet of the default chain");

static STYLE: List<NamedStyle> = List::new("Style")
    .scopes(HERE)
    .doc("<Style NAME> XSLTStyle FILE [MEDIA]… </Style>: a named chain, chosen by StyleChooser");

static CHOOSER: Key<Vec<Chooser>> = Key::parsed("StyleChooser", parse_choosers)
    .args(Args::Many)
    .scopes(HERE)
    .default("querystring")
    .doc("How a request picks a named style: querystring (?style=NAME), useragent (StyleUserAgent), media");

static USER_AGENT: List<(regex::Regex, String)> = List::parsed(
    "StyleUserAgent",
    |args| match args {
        [re, name] => regex::Regex::new(re)
            .map(|re| (re, name.to_string()))
            .map_err(|e| format!("bad regex: {e}")),
        _ => Err("expected StyleUserAgent REGEX NAME".into()),
    },
)
.args(Args::Range(2, 2))
.scopes(HERE)
.doc("StyleUserAgent REGEX NAME: the style the useragent chooser picks for a matching User-Agent");

static STYLESHEET_PI: Key<bool> = Key::new("XMLStylesheetPI")
    .scopes(HERE)
    .doc("Honour the document's <?xml-stylesheet?> PIs (XSLT ones)");

static PARAM: List<(String, String)> = List::parsed("XSLTParam", |args| match args {
    [name, value] if valid_name(name) => Ok((name.to_string(), value.to_string())),
    [name, _] => Err(format!("not an XSLT parameter name: {name:?}")),
    _ => Err("expected XSLTParam NAME VALUE".into()),
})
.args(Args::Range(2, 2))
.scopes(HERE)
.doc("XSLTParam NAME VALUE: a string parameter for every stylesheet of the chain");

static PARAMS_FROM_REQUEST: Key<bool> = Key::new("XSLTParamsFromRequest")
    .scopes(HERE)
    .doc("Pass query parameters, request.path, request.method and note.NAME as string parameters");

static TIME_LIMIT: Key<Duration> = Key::new("XSLTTimeLimit")
    .scopes(HERE)
    .default("5s")
    .zero_is_no_limit()
    .doc(
        "How long a request's parsing, XIncludes and transforms may take in all (500 past it); \
         0: no limit",
    );

static CACHE: Key<bool> = Key::new("XSLTCache")
    .scopes(HERE)
    .default("on")
    .doc("Keep transformed files in the worker's result cache");

static CACHE_SIZE: Key<u64> = Key::new("XSLTCacheSize")
    .scopes(Scopes::GLOBAL)
    .default("16M")
    .doc("The bound of each worker's result cache");

static POOL: Key<usize> = Key::new("XSLTPool")
    .scopes(Scopes::GLOBAL)
    .default("2")
    .doc("Transforms of large documents running at once per worker, on the blocking pool");

fn directives() -> Vec<Directive> {
    vec![
        XML_MATCH.declare(),
        XSLT_STYLE.declare(),
        STYLE.declare(),
        CHOOSER.declare(),
        USER_AGENT.declare(),
        STYLESHEET_PI.declare(),
        PARAM.declare(),
        PARAMS_FROM_REQUEST.declare(),
        TIME_LIMIT.declare(),
        CACHE.declare(),
        CACHE_SIZE.declare(),
        POOL.declare(),
    ]
}

/// Documents up to this size are parsed and transformed on the event
/// loop, without a hand-over to a thread and back; the worker's other
/// requests wait for it (about 3 ms for a 50 KiB page through two
/// stylesheets: docs/xml.md, "Threads").
const INLINE_MAX: usize = 64 * 1024;

/// The largest document (or file a document loads) the pipeline parses.
const MAX_DOCUMENT: usize = 256 * 1024 * 1024;

/// Files whose loads are remembered, at most (then forgotten at once).
const MAX_SOURCES: usize = 10_000;

/// One `XMLMatch` line.
#[derive(Clone, Debug)]
enum Match {
    Extensions(Vec<String>),
    Root(String),
    Namespace(String),
}

fn parse_match(args: &[&str]) -> Result<Match, String> {
    match args {
        ["root", name] => Ok(Match::Root(name.to_string())),
        ["namespace", uri] => Ok(Match::Namespace(uri.to_string())),
        exts if !exts.is_empty() && exts.iter().all(|e| e.len() > 1 && e.starts_with('.')) => Ok(
            Match::Extensions(exts.iter().map(|e| e.to_string()).collect()),
        ),
        _ => Err("expected XMLMatch .EXT…, XMLMatch root NAME or XMLMatch namespace URI".into()),
    }
}

/// One stylesheet of a chain, as written: its path (relative to the
/// DocumentRoot unless absolute) and the medium it is for.
#[derive(Clone, Debug)]
pub(crate) struct Style {
    path: String,
    media: Option<String>,
}

fn parse_style(args: &[&str]) -> Result<Style, String> {
    match args {
        [path] | [path, _] if path.contains("://") => {
            Err(format!("a stylesheet is a file, not a URL: {path:?}"))
        }
        [path] => Ok(Style {
            path: path.to_string(),
            media: None,
        }),
        [path, media] => Ok(Style {
            path: path.to_string(),
            media: Some(media.to_ascii_lowercase()),
        }),
        _ => Err("expected XSLTStyle FILE [MEDIA]".into()),
    }
}

/// A `<Style NAME>` block.
#[derive(Clone, Debug)]
pub(crate) struct NamedStyle {
    name: String,
    chain: Vec<Style>,
}

impl FromConfig for NamedStyle {
    const VALUE: ArgType = ArgType::String;
    const ARGS: Args = Args::Block;
    fn from_args(args: &[Value]) -> Result<Self, String> {
        let (Some(lines), [Value::Str(name)]) =
            (args.first().and_then(Value::as_block), &args[1..])
        else {
            return Err("expected <Style NAME> XSLTStyle FILE… </Style>".into());
        };
        let mut chain = Vec::new();
        for line in lines {
            let words: Vec<&str> = line.args.iter().map(String::as_str).collect();
            if !line.name.eq_ignore_ascii_case("XSLTStyle") || !line.children.is_empty() {
                return Err(format!(
                    "{}:{}: Style {name}: only XSLTStyle FILE [MEDIA] lines go in a <Style>, got {:?}",
                    line.file, line.line, line.name
                ));
            }
            chain.push(
                parse_style(&words)
                    .map_err(|e| format!("{}:{}: Style {name}: {e}", line.file, line.line))?,
            );
        }
        Ok(NamedStyle {
            name: name.to_string(),
            chain,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chooser {
    QueryString,
    UserAgent,
    Media,
}

fn parse_choosers(args: &[&str]) -> Result<Vec<Chooser>, String> {
    args.iter()
        .map(|a| match a.to_ascii_lowercase().as_str() {
            "querystring" => Ok(Chooser::QueryString),
            "useragent" => Ok(Chooser::UserAgent),
            "media" => Ok(Chooser::Media),
            other => Err(format!(
                "expected querystring, useragent or media, got {other:?}"
            )),
        })
        .collect()
}

/// An XML name without a prefix, as an `xsl:param` is named.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    // Loads libxml2/libxslt now, as the plugin is built (by `--check` and
    // by each worker): a missing library fails the config, not a request.
    axkit_xml::init().map_err(|e| format!("the xslt plugin needs {e}"))?;
    let global = &init.config.global;
    let styles = Styles::default();
    // Every stylesheet the config names is compiled now: `--check` reports
    // what does not compile, and a worker starts with them in its cache.
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for server in &init.config.servers {
        for location in &server.locations {
            let config = &location.config;
            let root = config.get(&DOCUMENT_ROOT).clone();
            let named = config.list(&STYLE).iter().flat_map(|s| s.chain.iter());
            for style in config.list(&XSLT_STYLE).iter().chain(named) {
                let path = resolve(root.as_deref(), &style.path);
                if seen.insert(path.clone()) {
                    if let Err(e) = styles.compile_now(&path, root.as_deref()) {
                        errors.push(format!("xslt: {e}"));
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(Rc::new(Xslt {
        styles,
        results: Results::new(usize::try_from(*global.get(&CACHE_SIZE)).unwrap_or(usize::MAX)),
        sources: RefCell::default(),
        key: RefCell::default(),
        pool: Rc::new(Semaphore::new((*global.get(&POOL)).max(1))),
    }))
}

/// A stylesheet path as the config means it: relative to the
/// DocumentRoot (or the working directory without one) unless absolute;
/// made absolute, as the libraries name files.
fn resolve(root: Option<&Path>, path: &str) -> PathBuf {
    transform::absolute(&match root {
        Some(root) if !path.starts_with('/') => root.join(path),
        _ => PathBuf::from(path),
    })
}

struct Xslt {
    /// Compiled stylesheets of this worker.
    styles: Styles,
    /// Transformed files of this worker.
    results: Results,
    /// What each result loaded (XIncludes, `document()`) when it was last
    /// made, for its cache key. Keyed by the result's base key (the file,
    /// its stamp, the stylesheets, the parameters, the style), not the
    /// file alone: another style or parameters may load other files.
    /// Request-chosen, so std's keyed hash.
    sources: RefCell<HashMap<String, Rc<Files>>>,
    /// Where each request's result cache key is built: a hit allocates
    /// none.
    key: RefCell<Vec<u8>>,
    /// Turns on the blocking pool for large transforms.
    pool: Rc<Semaphore>,
}

#[axkit::plugin]
impl Plugin for Xslt {
    fn xmlresponse<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        // A hit answers without a future of its own.
        let front = match self.front(ctx) {
            ControlFlow::Continue(front) => front,
            ControlFlow::Break(outcome) => return outcome.into(),
        };
        hook(async move {
            match self.run(ctx, front).await {
                Ok(outcome) => outcome,
                Err(e) => Outcome::Error(e),
            }
        })
    }
}

/// What the pipeline starts from.
enum Input {
    /// The file the request maps to: read when needed.
    File,
    Text(Bytes),
    Tree(axkit_xml::Document),
}

/// What the front of the pipeline found for a request it did not answer.
struct Front {
    /// The stamp of the file the request maps to, when it takes that file.
    stamp: Option<Stamp>,
    choice: choose::Choice,
    /// The parameters, when they come from the request too.
    request_params: Option<Vec<(String, String)>>,
    /// The result cache's key, for a file it may keep.
    hit_key: Option<Vec<u8>>,
}

impl Xslt {
    /// The front of the pipeline, which never waits: whether it takes the
    /// request at all, what the choosers pick, and a result cache hit
    /// (`Break` with the outcome when it answers or declines).
    fn front(&self, ctx: &mut Context) -> ControlFlow<Outcome, Front> {
        let config = ctx.config();
        let matches = config.list(&XML_MATCH);
        let stamp = match &ctx.document {
            Some(_) => None,
            None => match xml_file(ctx, matches) {
                Some(stamp) => Some(stamp),
                None => return ControlFlow::Break(Outcome::Declined),
            },
        };
        let choice = choose::choose(
            ctx,
            config.get(&CHOOSER).as_slice(),
            config.list(&USER_AGENT),
        );
        let use_cache = *config.get(&CACHE);
        // With XSLTParamsFromRequest, the parameters are part of what the
        // request names; otherwise they are all the config's.
        let request_params = (*config.get(&PARAMS_FROM_REQUEST)).then(|| params(ctx));

        // A file's result, found by what the request names. While all it
        // was made from was checked within the second, it is sent as it
        // is; otherwise `run` checks that first.
        let hit_key = match (&stamp, &ctx.filename) {
            (Some(stamp), Some(path)) if use_cache => {
                let mut key = self.key.borrow_mut();
                let params = request_params.as_deref();
                results::request_key(&mut key, config, path, stamp, &choice, params);
                if let Some(hit) = self.results.get(&key) {
                    if hit.fresh(Instant::now()) {
                        drop(key);
                        if choice.by_agent {
                            ctx.response.headers.add("Vary", "User-Agent");
                        }
                        return ControlFlow::Break(answer(ctx, &hit));
                    }
                }
                Some(key.clone())
            }
            _ => None,
        };
        ControlFlow::Continue(Front {
            stamp,
            choice,
            request_params,
            hit_key,
        })
    }

    async fn run(&self, ctx: &mut Context, front: Front) -> Result<Outcome, String> {
        let Front {
            stamp,
            choice,
            request_params,
            hit_key,
        } = front;
        // What the config says for this request, read before the request
        // is changed.
        let config = ctx.config();
        let matches = config.list(&XML_MATCH);
        let file = stamp.zip(ctx.filename.clone()).map(|(s, p)| (p, s));
        let root_dir = config.get(&DOCUMENT_ROOT).clone();
        let doc_root = match (&ctx.doc_root, &root_dir) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(path)) => Some(DocRoot::new(path, Rule::of(config))),
            (None, None) => None,
        };
        let roots: Vec<Match> = matches
            .iter()
            .filter(|m| matches!(m, Match::Root(_) | Match::Namespace(_)))
            .cloned()
            .collect();
        let named = choice
            .style
            .as_deref()
            .and_then(|name| config.list(&STYLE).iter().find(|s| s.name == name));
        let use_pis = *config.get(&STYLESHEET_PI) && named.is_none();
        let configured: Vec<PathBuf> = choose::for_media(
            named.map_or(config.list(&XSLT_STYLE), |n| &n.chain),
            choice.media,
        )
        .map(|s| resolve(root_dir.as_deref(), &s.path))
        .collect();
        let named = named.is_some();
        let params = request_params.unwrap_or_else(|| params(ctx));
        // Counted from here: parsing is part of the request's XML work.
        let limit = Limit::start(*config.get(&TIME_LIMIT));
        // A document an earlier plugin left, else the mapped file.
        let mut input = match ctx.document.take() {
            Some(Document::Text(text)) => Input::Text(text),
            Some(Document::Tree(tree)) => match tree.downcast::<axkit_xml::Document>() {
                Ok(doc) => Input::Tree(*doc),
                Err(other) => {
                    // Someone else's tree: not ours to touch.
                    ctx.document = Some(Document::Tree(other));
                    return Ok(Outcome::Declined);
                }
            },
            None => Input::File,
        };
        let (policy, loaded) =
            transform::recording(transform::policy(doc_root.clone(), MAX_DOCUMENT));
        // What names the document in errors and anchors its relative
        // references: its file, else where its URL would map.
        let url = match &file {
            Some((path, _)) => transform::absolute(path),
            None => resolve(
                root_dir.as_deref(),
                ctx.request.decoded_path().trim_start_matches('/'),
            ),
        };
        let wants_root = !roots.is_empty();

        // Parse first when the choice depends on the document itself.
        if wants_root || use_pis {
            let (doc, text) = match input {
                Input::Tree(doc) => (doc, None),
                Input::Text(text) => {
                    let doc = transform::Input::Text(text.clone());
                    (self.parse(doc, &url, &policy, &limit).await?, Some(text))
                }
                Input::File => {
                    let doc = transform::Input::File(read_file(ctx).await?);
                    (self.parse(doc, &url, &policy, &limit).await?, None)
                }
            };
            if wants_root && !root_matches(&doc, &roots) {
                // Not for this pipeline: a file goes on to be served as it
                // is, a document stays as it came for the next plugin.
                if file.is_none() {
                    ctx.document = Some(match text {
                        Some(text) => Document::Text(text),
                        None => Document::Tree(Box::new(doc)),
                    });
                }
                return Ok(Outcome::Declined);
            }
            input = Input::Tree(doc);
        }

        if choice.by_agent {
            ctx.response.headers.add("Vary", "User-Agent");
        }

        // The chain: a named style, else the document's PIs, else the
        // default chain, each for the chosen medium.
        let pis = match &input {
            Input::Tree(doc) if use_pis => {
                let root = root_dir.as_deref().map(transform::absolute);
                choose::from_pis(doc, &choice, root.as_deref(), &url)?
            }
            _ => Vec::new(),
        };
        let chain = if named || pis.is_empty() {
            if let (false, Some(name)) = (named, &choice.style) {
                ctx.log_reason(404, format_args!("no style named {name:?} here"));
                return Ok(Outcome::Status(404));
            }
            configured
        } else {
            pis
        };
        let mut sheets = Vec::with_capacity(chain.len());
        for path in &chain {
            sheets.push(self.styles.get(path, root_dir.as_deref()).await?);
        }

        // A file's result has validators made of everything it depends
        // on (its stylesheets, what it and they loaded), and is cached by
        // them. What a file loads is known once it has been transformed.
        let base = file
            .as_ref()
            .map(|(path, stamp)| base_key(path, stamp, &sheets, &params, choice.style.as_deref()));
        let known = match &base {
            Some((base, _)) => self.known_deps(base).await,
            None => None,
        };
        // The key and validators, when what the file loads is known.
        let mut checked = None;
        if let (Some(base), Some(deps)) = (&base, &known) {
            let (full_key, validators) = full_key(base, deps);
            if let Some(outcome) = conditional(ctx, &validators) {
                return Ok(outcome);
            }
            let found = hit_key.as_ref().and_then(|key| {
                let hit = self.results.get(key)?;
                (*hit.full_key == *full_key).then_some((key, hit))
            });
            if let Some((key, hit)) = found {
                // Nothing it depends on changed: the hits that follow
                // within the second need no checks, once the entry
                // holds what was just checked.
                if !hit.made_from(&sheets, deps) {
                    self.results
                        .put(key.clone(), hit.renewed(&sheets, deps.clone()));
                }
                return Ok(answer(ctx, &hit));
            }
            checked = Some((full_key, validators));
        }

        // Transform, on the pool when the document is large.
        let input = match input {
            Input::Tree(doc) => transform::Input::Tree(doc),
            Input::Text(text) => transform::Input::Text(text),
            Input::File => transform::Input::File(read_file(ctx).await?),
        };
        let job = Job {
            input,
            url: url.display().to_string(),
            sheets: sheets.iter().map(|s| s.sheet.clone()).collect(),
            params,
            policy,
            limit,
        };
        let out = if job.input.size() <= INLINE_MAX {
            job.run()
        } else {
            self.on_pool(move || job.run()).await?
        }
        .map_err(|e| e.to_string())?;
        let body = Bytes::from(out.body);
        let content_type: Arc<str> = out.content_type.into();
        if let Some(base) = &base {
            let (deps, full_key, validators) = match (known, checked) {
                (Some(deps), Some((key, validators))) => (deps, key, validators),
                _ => {
                    // First seen (or changed): what it loaded is known now.
                    let deps = self.record_deps(&base.0, doc_root, &loaded).await;
                    let (key, validators) = full_key(base, &deps);
                    if let Some(outcome) = conditional(ctx, &validators) {
                        return Ok(outcome);
                    }
                    (deps, key, validators)
                }
            };
            if let Some(key) = hit_key {
                let entry = Cached::new(
                    body.clone(),
                    content_type.clone(),
                    validators,
                    full_key.into_boxed_str(),
                    &sheets,
                    deps,
                );
                self.results.put(key, entry);
            }
        }
        ctx.response.headers.set("Content-Type", content_type);
        ctx.document = Some(Document::Text(body));
        Ok(Outcome::Ok)
    }

    /// What `path` (at `stamp`) loaded when it was last transformed, if
    /// none of it changed since.
    async fn known_deps(&self, base: &str) -> Option<Rc<Files>> {
        let known = self.sources.borrow().get(base).cloned()?;
        if known.unchanged().await {
            return Some(known);
        }
        self.sources.borrow_mut().remove(base);
        None
    }

    /// Stamp and remember what the result of `base` loaded.
    async fn record_deps(
        &self,
        base: &str,
        root: Option<DocRoot>,
        loaded: &transform::Loaded,
    ) -> Rc<Files> {
        let paths = transform::loaded(loaded);
        let files = if paths.is_empty() {
            Files::stat(None, &[])
        } else {
            let stat_root = root.clone();
            tokio::task::spawn_blocking(move || Files::stat(stat_root, &paths))
                .await
                .unwrap_or_else(|_| Files::stat(None, &[]))
        };
        let files = Rc::new(files);
        let mut sources = self.sources.borrow_mut();
        if sources.len() >= MAX_SOURCES {
            sources.clear();
        }
        sources.insert(base.to_owned(), files.clone());
        files
    }

    /// Parse `input` (on the pool when large; a file's XIncludes
    /// processed).
    async fn parse(
        &self,
        input: transform::Input,
        url: &Path,
        policy: &axkit_xml::Policy,
        limit: &Limit,
    ) -> Result<axkit_xml::Document, String> {
        let url = url.display().to_string();
        let policy = policy.clone();
        let limit = *limit;
        let large = input.size() > INLINE_MAX;
        let work = move || input.parse(&url, &policy, &limit);
        let parsed = if large {
            self.on_pool(work).await?
        } else {
            work()
        };
        parsed.map_err(|e| e.to_string())
    }

    /// Run `work` on the blocking pool, at most `XSLTPool` at once.
    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let _turn = self
            .pool
            .acquire()
            .await
            .map_err(|_| "the transform pool is closed".to_string())?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| format!("the transform failed: {e}"))
    }
}

/// The stamp of the file the request maps to (`ctx.filename`), when it is
/// one `XMLMatch` takes as XML (by extension; `.xml` without an extension
/// line).
fn xml_file(ctx: &Context, matches: &[Match]) -> Option<Stamp> {
    if !matches!(ctx.request.method(), "GET" | "HEAD") || !ctx.path_info.is_empty() {
        return None;
    }
    let path = ctx.filename.as_ref()?.as_os_str().as_bytes();
    let md = ctx.metadata.as_ref().filter(|m| m.is_file())?;
    // The last component by its bytes (`Path::file_name` parses them all).
    let name = path.rsplit(|&b| b == b'/').next()?;
    let name = std::str::from_utf8(name).ok()?;
    let mut exts = matches.iter().filter_map(|m| match m {
        Match::Extensions(e) => Some(e),
        _ => None,
    });
    let taken = match exts.next() {
        None => name.ends_with(".xml"),
        Some(first) => std::iter::once(first)
            .chain(exts)
            .flatten()
            .any(|e| name.ends_with(e.as_str())),
    };
    taken.then(|| Stamp::of(md))
}

/// The mapped file's bytes: from the open file `uri_to_file` left (read
/// beneath its root, on the blocking pool unless already in memory).
async fn read_file(ctx: &Context) -> Result<Bytes, String> {
    if let Some(bytes) = ctx.file.as_ref().and_then(|f| f.contents()) {
        return Ok(bytes.clone());
    }
    let Some(path) = ctx.filename.clone() else {
        return Err("no file to read".into());
    };
    let root = DocRoot::for_file(ctx, &path);
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || transform::read_beneath(&root, &path, MAX_DOCUMENT))
        .await
        .map_err(|e| format!("{shown}: {e}"))?
        .map(Bytes::from)
        .map_err(|e| format!("{shown}: {e}"))
}

/// Whether the document's root element is one `XMLMatch root|namespace`
/// asks for.
fn root_matches(doc: &axkit_xml::Document, matches: &[Match]) -> bool {
    let Some((ns, name)) = doc.root() else {
        return false;
    };
    matches.iter().any(|m| match m {
        Match::Root(n) => *n == name,
        Match::Namespace(u) => *u == ns,
        Match::Extensions(_) => false,
    })
}

/// The string parameters: `XSLTParam`s, then (with
/// `XSLTParamsFromRequest On`) the ones the server sets (`request.*`,
/// `note.*`), then the query's, each for a name not taken. A query name
/// in the server's namespaces is dropped even when the name is free: a
/// stylesheet trusts `note.user` to be what a plugin said, whether or
/// not that plugin set it on this request.
fn params(ctx: &Context) -> Vec<(String, String)> {
    let config = ctx.config();
    let mut params: Vec<(String, String)> = config.list(&PARAM).to_vec();
    if *config.get(&PARAMS_FROM_REQUEST) {
        let mut add = |name: String, value: String| {
            if valid_name(&name) && !params.iter().any(|(n, _)| *n == name) {
                params.push((name, value));
            }
        };
        add(
            "request.path".into(),
            ctx.request.decoded_path().to_string(),
        );
        add("request.method".into(), ctx.request.method().to_string());
        let mut notes: Vec<_> = ctx.notes.iter().collect();
        notes.sort();
        for (name, value) in notes {
            add(format!("note.{name}"), value.clone());
        }
        for (name, value) in ctx.request.query_params() {
            if !SERVER_SET.iter().any(|p| name.starts_with(p)) {
                add(name.into_owned(), value.into_owned());
            }
        }
    }
    params
}

/// The prefixes of the parameter names the server sets, which a query
/// parameter may not take.
const SERVER_SET: [&str; 2] = ["request.", "note."];

/// The result cache's key of a file before what it loads: its path and
/// stamp, its stylesheets' files, the parameters and the style; and the
/// newest modification time among them.
fn base_key(
    path: &Path,
    stamp: &Stamp,
    sheets: &[Rc<Compiled>],
    params: &[(String, String)],
    style: Option<&str>,
) -> (String, SystemTime) {
    // Built with pushes into one allocation: `format!` here cost more than
    // the rest of a result cache hit.
    let path = path.to_string_lossy();
    let stamp_key = stamp.key();
    let len = path.len()
        + 1
        + stamp_key.len()
        + sheets.iter().map(|s| s.files.key.len() + 1).sum::<usize>()
        + params
            .iter()
            .map(|(n, v)| n.len() + v.len() + 2)
            .sum::<usize>()
        + style.map_or(0, |s| s.len() + 7);
    let mut key = String::with_capacity(len);
    key.push_str(&path);
    key.push('\0');
    key.push_str(&stamp_key);
    let mut modified = stamp.modified;
    for sheet in sheets {
        key.push('\0');
        key.push_str(&sheet.files.key);
        modified = modified.max(sheet.files.modified);
    }
    for (name, value) in params {
        key.push('\0');
        key.push_str(name);
        key.push('=');
        key.push_str(value);
    }
    if let Some(name) = style {
        key.push_str("\0style=");
        key.push_str(name);
    }
    (key, modified)
}

/// The whole key, with what the file loaded, and its validators.
fn full_key((base, modified): &(String, SystemTime), deps: &Files) -> (String, Validators) {
    let mut key = String::with_capacity(base.len() + 1 + deps.key.len());
    key.push_str(base);
    key.push('\0');
    key.push_str(&deps.key);
    let modified = (*modified).max(deps.modified);
    // To the second, as Last-Modified says it.
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let modified = UNIX_EPOCH + Duration::from_secs(secs);
    let validators = Validators {
        etag: format!("\"x{:016x}\"", hash(&key)).into(),
        modified,
        last_modified: axkit_http::fmt_http_date(modified).into(),
    };
    (key, validators)
}

/// Put the validators on the response and answer a conditional request
/// they satisfy (304) or fail (412); `None` to answer in full.
///
/// A result made with notes among its parameters (`XSLTParamsFromRequest
/// On`) depends on what plugins said of this request (who is logged in),
/// which no file's time tells: it goes out with its tag alone, which the
/// notes are part of, so that a copy made before a login is not kept by
/// an `If-Modified-Since` after it.
fn conditional(ctx: &mut Context, v: &Validators) -> Option<Outcome> {
    let dated = ctx.notes.is_empty() || !*ctx.config().get(&PARAMS_FROM_REQUEST);
    let modified = dated.then_some(v.modified);
    let precondition = file_http::evaluate(&ctx.request, Some(&*v.etag), modified);
    if precondition == Precondition::Failed {
        return Some(Outcome::Status(412));
    }
    let headers = &mut ctx.response.headers;
    headers.set("ETag", &v.etag);
    if dated {
        headers.set("Last-Modified", &v.last_modified);
    }
    if precondition == Precondition::NotModified {
        headers.remove("Content-Type");
        ctx.response.status = 304;
        ctx.response.body = Body::Empty;
        return Some(Outcome::Done);
    }
    None
}

/// Answer from a cached result: a 304 or 412 when its validators say so,
/// else its body, left as the document.
fn answer(ctx: &mut Context, hit: &Cached) -> Outcome {
    if let Some(outcome) = conditional(ctx, &hit.validators) {
        return outcome;
    }
    if ctx.worker().log_level() >= Level::Debug {
        if let Some(path) = &ctx.filename {
            let msg = format!("xslt: {} from the result cache", path.display());
            ctx.log(Level::Debug, &msg);
        }
    }
    ctx.response.headers.set("Content-Type", &hit.content_type);
    ctx.document = Some(Document::Text(hit.body.clone()));
    Outcome::Ok
}

fn hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
