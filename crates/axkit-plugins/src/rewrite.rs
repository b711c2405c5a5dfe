//! `rewrite`: URL redirects and rewrites by rule, mod_alias's `Redirect`
//! and the useful core of mod_rewrite (nginx's `return` and `rewrite`),
//! in `post_read_request`, before any plugin maps the URI. docs/rewrite.md
//! has the rules at length and a table from mod_rewrite and nginx.
//!
//! Directives (Server or Location; a Location's lines add to those of the
//! Server and the Locations around it, outer lines first):
//! - `Redirect [STATUS] /PREFIX URL`: a request for `/PREFIX` or beneath
//!   it is sent to URL with the rest of its path appended and its query
//!   kept. STATUS: 301, 302 (the default), 303, 307, 308, or `permanent`,
//!   `temp`, `seeother`. A PREFIX ending in `/` needs a URL with a path
//!   (refused at load otherwise: the rest appended to a bare host could
//!   name another one).
//! - `RedirectMatch [STATUS] REGEX URL`: the path matches REGEX; URL may
//!   use its captures (`$1`…`$9`, `${name}`), but not in its host part
//!   (refused at load: an open redirect), in `Rewrite` as well.
//! - `RewriteCond host|method|path|header:NAME [!]REGEX [nocase] [not]`:
//!   a condition of the next `Rewrite` line of its block (every one must
//!   hold; `not` or `!` negates); one with no `Rewrite` after it in its
//!   block is a start-up (and `--check`) error.
//! - `Rewrite REGEX REPLACEMENT [FLAG…]`: when the path matches, it
//!   becomes REPLACEMENT (captures expanded). A replacement that is a URL
//!   (`http://`, `https://`) or a rule with `redirect` answers with a
//!   redirect; otherwise the request goes on with the new path (an
//!   internal rewrite: the method, headers and body stay, the
//!   `<Location>` is picked again, CGI's `REQUEST_URI` stays what the
//!   client sent). A replacement without `?` keeps the query; with one, it
//!   replaces it, unless `qsappend`. Flags: `last` (no more rules this
//!   round), `end` (no more rules at all), `redirect[=STATUS]`,
//!   `qsappend`, `nocase`; or mod_rewrite's `[L,END,R=301,QSA,NC]`.
//! - `RewriteMaxLoops N` (1 to 100, default 10): rounds of rules one
//!   request may take before it is answered 500 (logged).
//!
//! Order: the `Redirect` lines, then `RedirectMatch`, each outer first;
//! the first that matches answers. Then the `Rewrite` lines in order, each
//! seeing the path as the lines before it left it. When a round changed
//! the path into another `<Location>`, a new round runs with that
//! Location's lines, its `Redirect` and `RedirectMatch` lines first
//! (unless `end`), but for those it shares with the Location left (the
//! Server's run once, as nginx runs them): a loop between Locations ends
//! at `RewriteMaxLoops`. A request handed over to another Location (a
//! directory's index in a `<Location>` of its own) meets that
//! Location's lines the same way: those it does not share with the
//! Location handed over from (so a Location the request was rewritten
//! out of runs its lines again when the request is handed back into it,
//! as in a loop of rounds). `OPTIONS *` is left alone: `*` is no path.
//!
//! Paths are matched decoded and normalised (`Request::decoded_path`, what
//! `<Location>` matching sees), as one line: `.` matches a newline (a
//! decoded `%0a`) and `^`/`$` anchor at the ends of the path, so that
//! `/private/%0afoo` cannot sidestep `^/private/(.*)$` (as Apache 2.4.41
//! compiles them; docs/rewrite.md compares). A capture put back into a
//! path is percent-encoded again (in the query, all but unreserved
//! characters, so it stays one value, as mod_rewrite's `[B]`), a
//! `${name}` naming no group is refused at load, and every local result
//! is normalised (`..` cannot climb above the root: such a request is
//! answered 400, logged), so that no rule can make a path the core would
//! refuse or a `Location` starting with `//` (another host). Rules are
//! compiled when the config loads: a bad regex is an `axkit --check`
//! error with its file and line.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use axkit::config::{parse, Args, Config, Directive, Key, List, LocationConfig, Scopes, Setting};
use axkit::plugin::{Context, HandOff, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec};
use regex::{Captures, Regex, RegexBuilder};

use axkit_http::encode_path;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::per_location::PerLocation;

/// A redirect's status, from a number or mod_alias's words.
fn parse_status(word: &str) -> Option<u16> {
    match word.to_ascii_lowercase().as_str() {
        "permanent" => Some(301),
        "temp" => Some(302),
        "seeother" => Some(303),
        w => w
            .parse()
            .ok()
            .filter(|s| matches!(s, 301 | 302 | 303 | 307 | 308)),
    }
}

/// A rule's regex. The path is matched as one line: `.` matches a
/// newline too (`(?s)`) and `^`/`$` anchor at the ends of the whole text
/// (the `regex` crate's default), or `/private/%0afoo`, decoded to a path
/// with a newline in it, would sidestep `^/private/(.*)$`.
fn compile(pattern: &str, nocase: bool) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(nocase)
        .dot_matches_new_line(true)
        .build()
        .map_err(|e| format!("bad regex {pattern:?}: {e}"))
}

/// A redirect target: a URL or a local path, checked when loaded.
fn check_target(target: &str) -> Result<(), String> {
    if is_url(target) || target.starts_with('/') {
        if axkit_http::valid_header_value(target.as_bytes()) && !target.contains(' ') {
            return Ok(());
        }
        return Err(format!("{target:?} holds a space or a control character"));
    }
    Err(format!(
        "{target:?} is neither a URL (http://, https://) nor a path"
    ))
}

/// A URL's authority (after `://`, up to the path, query or fragment) and
/// what follows it.
fn split_authority(url: &str) -> (&str, &str) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    after_scheme.split_at(end)
}

/// Whether a URL has a path after its authority (`https://h/…`), not
/// just a host (`https://h`, `https://h?q`).
fn has_path(url: &str) -> bool {
    split_authority(url).1.starts_with('/')
}

/// A rule's URL target must not take a capture into its authority: the
/// capture is the client's path, and `https://new.example$1` sends
/// `/go@evil.com` to `https://new.example@evil.com` (`@` and `.` are
/// path characters, left as they are).
fn check_fixed_host(target: &str) -> Result<(), String> {
    if !is_url(target) {
        return Ok(());
    }
    let mut rest = split_authority(target).0;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        match rest.as_bytes().first() {
            Some(b'$') => rest = &rest[1..],
            Some(b'0'..=b'9' | b'{') => {
                return Err(format!(
                    "{target:?} takes a capture into the host part (before the first / after \
                     ://), so a request could send its client to any host: write the host \
                     yourself with a / after it (https://new.example/$1)"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// `Redirect [STATUS] /PREFIX URL`.
#[derive(Clone, Debug)]
struct Redirect {
    status: u16,
    prefix: String,
    target: String,
}

fn status_and_rest<'a>(args: &'a [&'a str], usage: &str) -> Result<(u16, &'a [&'a str]), String> {
    match args {
        [status, rest @ ..] if rest.len() == 2 => {
            parse_status(status).map(|s| (s, rest)).ok_or_else(|| {
                format!("{status:?} is not a redirect status (301, 302, 303, 307, 308)")
            })
        }
        rest if rest.len() == 2 => Ok((302, rest)),
        _ => Err(usage.into()),
    }
}

fn parse_redirect(args: &[&str]) -> Result<Redirect, String> {
    let (status, rest) = status_and_rest(args, "expected Redirect [STATUS] /PREFIX URL")?;
    let (prefix, target) = (rest[0], rest[1]);
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?}: the prefix is a path, starting with /"));
    }
    check_target(target)?;
    // The rest of the path is appended as it is: after a host with no
    // path, `/old/.evil.com` or `/old/@evil.com` would change the host.
    if prefix.ends_with('/') && is_url(target) && !has_path(target) {
        return Err(format!(
            "{target:?} has no path, and {prefix:?} ends in /: what follows it would be \
             appended to the host name (write {target:?} with a / after the host)"
        ));
    }
    Ok(Redirect {
        status,
        prefix: prefix.to_string(),
        target: target.to_string(),
    })
}

/// `RedirectMatch [STATUS] REGEX URL`.
#[derive(Clone, Debug)]
struct RedirectMatch {
    status: u16,
    regex: Regex,
    target: String,
}

fn parse_redirect_match(args: &[&str]) -> Result<RedirectMatch, String> {
    let (status, rest) = status_and_rest(args, "expected RedirectMatch [STATUS] REGEX URL")?;
    check_target(rest[1])?;
    check_fixed_host(rest[1])?;
    let regex = compile(rest[0], false)?;
    check_names(rest[1], &regex)?;
    Ok(RedirectMatch {
        status,
        regex,
        target: rest[1].to_string(),
    })
}

/// Every `${name}` of `template` names a group of `regex`: one that does
/// not would expand to nothing, a typo found only by the requests it
/// sends astray.
fn check_names(template: &str, regex: &Regex) -> Result<(), String> {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some((name, after)) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) {
            if !regex.capture_names().flatten().any(|n| n == name) {
                return Err(format!(
                    "{template:?}: ${{{name}}} names no group of {:?} (a group is named with \
                     (?P<{name}>…))",
                    regex.as_str()
                ));
            }
            rest = after;
        }
    }
    Ok(())
}

/// What a `RewriteCond` tests.
#[derive(Clone, Debug)]
enum Subject {
    Host,
    Method,
    Path,
    Header(String),
}

#[derive(Clone, Debug)]
struct Cond {
    subject: Subject,
    regex: Regex,
    negate: bool,
}

impl Cond {
    fn holds(&self, ctx: &Context, path: &str) -> bool {
        let text = match &self.subject {
            Subject::Host => ctx.host().unwrap_or(""),
            Subject::Method => ctx.request.method(),
            Subject::Path => path,
            Subject::Header(name) => ctx.request.header(name).unwrap_or(""),
        };
        self.regex.is_match(text) != self.negate
    }
}

const COND_USAGE: &str =
    "expected RewriteCond host|method|path|header:NAME [!]REGEX [nocase] [not]";

fn parse_cond(args: &[&str]) -> Result<Cond, String> {
    let [subject, pattern, flags @ ..] = args else {
        return Err(COND_USAGE.into());
    };
    let subject = match subject.to_ascii_lowercase().as_str() {
        "host" => Subject::Host,
        "method" => Subject::Method,
        "path" => Subject::Path,
        s => match s.strip_prefix("header:") {
            Some(name) if axkit_http::valid_header_name(name) => Subject::Header(name.to_string()),
            _ => return Err(format!("unknown subject {subject:?}; {COND_USAGE}")),
        },
    };
    let (mut negate, pattern) = match pattern.strip_prefix('!') {
        Some(p) => (true, p),
        None => (false, *pattern),
    };
    let mut nocase = false;
    for flag in flags {
        match flag.to_ascii_lowercase().as_str() {
            "nocase" | "[nc]" => nocase = true,
            "not" => negate = !negate,
            _ => return Err(format!("unknown flag {flag:?}; {COND_USAGE}")),
        }
    }
    Ok(Cond {
        subject,
        regex: compile(pattern, nocase)?,
        negate,
    })
}

/// One `Rewrite` line.
#[derive(Clone, Debug)]
struct Rule {
    regex: Regex,
    replacement: String,
    last: bool,
    end: bool,
    redirect: Option<u16>,
    qsappend: bool,
}

const REWRITE_USAGE: &str =
    "expected Rewrite REGEX REPLACEMENT [last|end|redirect[=STATUS]|qsappend|nocase…]";

/// The flags of a `Rewrite` line as words (`last redirect=301`) or in
/// mod_rewrite's brackets (`[L,R=301]`).
fn flag_words<'a>(args: &'a [&'a str]) -> Vec<&'a str> {
    let mut words = Vec::new();
    for arg in args {
        match arg.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
            Some(list) => words.extend(list.split(',')),
            None => words.push(*arg),
        }
    }
    words
}

fn parse_rewrite(args: &[&str]) -> Result<Rule, String> {
    let [pattern, replacement, flags @ ..] = args else {
        return Err(REWRITE_USAGE.into());
    };
    if !is_url(replacement) && !replacement.starts_with('/') {
        return Err(format!(
            "{replacement:?}: the replacement is a path (starting with /) or a URL"
        ));
    }
    if !axkit_http::valid_header_value(replacement.as_bytes()) || replacement.contains(' ') {
        return Err(format!(
            "{replacement:?} holds a space or a control character"
        ));
    }
    check_fixed_host(replacement)?;
    let mut rule = Rule {
        regex: compile("", false)?,
        replacement: replacement.to_string(),
        last: false,
        end: false,
        redirect: None,
        qsappend: false,
    };
    let mut nocase = false;
    for flag in flag_words(flags) {
        let lower = flag.to_ascii_lowercase();
        let (name, value) = match lower.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (lower.as_str(), None),
        };
        match (name, value) {
            ("last" | "l", None) => rule.last = true,
            ("end", None) => rule.end = true,
            ("qsappend" | "qsa", None) => rule.qsappend = true,
            ("nocase" | "nc", None) => nocase = true,
            ("redirect" | "r", None) => rule.redirect = Some(302),
            ("redirect" | "r", Some(v)) => {
                rule.redirect = Some(parse_status(v).ok_or_else(|| {
                    format!("{v:?} is not a redirect status (301, 302, 303, 307, 308)")
                })?)
            }
            _ => return Err(format!("unknown flag {flag:?}; {REWRITE_USAGE}")),
        }
    }
    rule.regex = compile(pattern, nocase)?;
    check_names(replacement, &rule.regex)?;
    Ok(rule)
}

static REDIRECT: List<Redirect> = List::parsed("Redirect", parse_redirect)
    .args(Args::Range(2, 3))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("Redirect [STATUS] /PREFIX URL: redirect a path and everything beneath it, rest of path and query kept");

static REDIRECT_MATCH: List<RedirectMatch> = List::parsed("RedirectMatch", parse_redirect_match)
    .args(Args::Range(2, 3))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc(
        "RedirectMatch [STATUS] REGEX URL: redirect a path matching REGEX ($1…$9, ${name} in URL)",
    );

static REWRITE_COND: List<Cond> = List::parsed("RewriteCond", parse_cond)
    .args(Args::Range(2, 4))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("RewriteCond host|method|path|header:NAME [!]REGEX [nocase] [not]: a condition of the next Rewrite line");

static REWRITE: List<Rule> = List::parsed("Rewrite", parse_rewrite)
    .args(Args::Many)
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("Rewrite REGEX REPLACEMENT [last|end|redirect[=STATUS]|qsappend|nocase]: rewrite or redirect a matching path");

/// The most `RewriteMaxLoops` may allow: a request that loops between
/// Locations runs every round before it is refused.
const MAX_LOOPS_LIMIT: usize = 100;

static MAX_LOOPS: Key<usize> = Key::parsed("RewriteMaxLoops", |args| {
    let [n] = args else {
        return Err("expected RewriteMaxLoops N".into());
    };
    parse::integer(n)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_LOOPS_LIMIT).contains(n))
        .ok_or_else(|| {
            format!("expected a number of rounds from 1 to {MAX_LOOPS_LIMIT}, got {n:?}")
        })
})
.default("10")
.doc("How many rounds of Rewrite rules one request may take before it is answered 500");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "rewrite",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![
        REDIRECT.declare(),
        REDIRECT_MATCH.declare(),
        REWRITE_COND.declare(),
        REWRITE.declare(),
        MAX_LOOPS.declare(),
    ]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let blocks = Blocks::of(init.config);
    blocks.check_conditions()?;
    Ok(Rc::new(Rewrite {
        blocks,
        none: Rc::default(),
        lines: PerLocation::default(),
    }))
}

/// Where each `Rewrite` and `RewriteCond` line is in effect: the
/// `(server, location)` configs that hold it. Two lines of the same block
/// are in effect in exactly the same configs, and lines of different
/// blocks never are, so this tells a condition written inside a
/// `<Location>` from a rule written after the block ends.
struct Blocks {
    /// By the address of the line's `Setting` (shared by every merged
    /// config that holds it).
    seen_in: HashMap<usize, Vec<(usize, usize)>>,
    /// Every line once, for the check.
    lines: Vec<(bool, Arc<Setting>)>,
}

impl Blocks {
    fn of(config: &Config) -> Blocks {
        let mut blocks = Blocks {
            seen_in: HashMap::new(),
            lines: Vec::new(),
        };
        for (si, server) in config.servers.iter().enumerate() {
            for (li, node) in server.locations.iter().enumerate() {
                let rules = node.config.settings("Rewrite").iter().map(|s| (true, s));
                let conds = node
                    .config
                    .settings("RewriteCond")
                    .iter()
                    .map(|s| (false, s));
                for (is_rule, setting) in rules.chain(conds) {
                    let seen = blocks.seen_in.entry(key(setting)).or_default();
                    if seen.is_empty() {
                        blocks.lines.push((is_rule, setting.clone()));
                    }
                    seen.push((si, li));
                }
            }
        }
        blocks
    }

    /// Whether `a` and `b` were written in the same block.
    fn same_block(&self, a: &Setting, b: &Setting) -> bool {
        a.file == b.file && self.seen_in.get(&key(a)) == self.seen_in.get(&key(b))
    }

    /// Every `RewriteCond` has a `Rewrite` line after it in its block.
    fn check_conditions(&self) -> Result<(), String> {
        for (_, cond) in self.lines.iter().filter(|(is_rule, _)| !is_rule) {
            let ruled = self.lines.iter().any(|(is_rule, rule)| {
                *is_rule && rule.line > cond.line && self.same_block(cond, rule)
            });
            if !ruled {
                return Err(format!(
                    "{}:{}: RewriteCond with no Rewrite line after it in its block",
                    cond.file, cond.line
                ));
            }
        }
        Ok(())
    }
}

fn key(setting: &Setting) -> usize {
    setting as *const Setting as usize
}

/// A `Rewrite` line with the `RewriteCond` lines written above it.
struct Guarded {
    rule: Rule,
    conds: Vec<Cond>,
}

/// A line of a Location's merged config, with its [`key`]: the same in
/// every Location's config that holds it, so a later round tells by it
/// the lines it already ran.
struct Keyed<T> {
    key: usize,
    value: T,
}

/// `lines` but those in `ran`.
fn fresh<'a, T>(lines: &'a [Keyed<T>], ran: &'a [Keyed<T>]) -> impl Iterator<Item = &'a T> {
    lines
        .iter()
        .filter(|l| !ran.iter().any(|r| r.key == l.key))
        .map(|l| &l.value)
}

/// Every line of the plugin in one `<Location>`'s merged config.
#[derive(Default)]
struct Lines {
    redirects: Vec<Keyed<Redirect>>,
    matches: Vec<Keyed<RedirectMatch>>,
    rules: Vec<Keyed<Guarded>>,
}

impl Lines {
    fn of(config: &LocationConfig, blocks: &Blocks) -> Lines {
        Lines {
            redirects: keyed(config.list(&REDIRECT), config.settings("Redirect")),
            matches: keyed(
                config.list(&REDIRECT_MATCH),
                config.settings("RedirectMatch"),
            ),
            rules: pair(config, blocks),
        }
    }
}

/// A list's values with the keys of the lines they come from.
fn keyed<T: Clone>(values: &[T], settings: &[Arc<Setting>]) -> Vec<Keyed<T>> {
    values
        .iter()
        .zip(settings)
        .map(|(value, at)| Keyed {
            key: key(at),
            value: value.clone(),
        })
        .collect()
}

struct Rewrite {
    blocks: Blocks,
    /// No lines: those that ran before a request's first round, made
    /// once so that a request pays no allocation for them.
    none: Rc<Lines>,
    /// The lines of each `<Location>`'s merged config, conditions paired
    /// with their rule once.
    lines: PerLocation<Rc<Lines>>,
}

impl Rewrite {
    fn lines_of(&self, config: &LocationConfig) -> Rc<Lines> {
        self.lines
            .get(config, |config| Rc::new(Lines::of(config, &self.blocks)))
    }
}

/// Each `Rewrite` line with the `RewriteCond` lines right above it in its
/// block (after the `Rewrite` line before it), as mod_rewrite reads them.
fn pair(config: &LocationConfig, blocks: &Blocks) -> Vec<Keyed<Guarded>> {
    let rules = config.list(&REWRITE);
    let rule_at = config.settings("Rewrite");
    let conds = config.list(&REWRITE_COND);
    let cond_at = config.settings("RewriteCond");
    let mut out = Vec::with_capacity(rules.len());
    for (rule, at) in rules.iter().zip(rule_at) {
        let previous = rule_at
            .iter()
            .filter(|r| r.line < at.line && blocks.same_block(r, at))
            .map(|r| r.line)
            .max()
            .unwrap_or(0);
        let conds = conds
            .iter()
            .zip(cond_at)
            .filter(|(_, c)| c.line > previous && c.line < at.line && blocks.same_block(c, at))
            .map(|(c, _)| c.clone())
            .collect();
        out.push(Keyed {
            key: key(at),
            value: Guarded {
                rule: rule.clone(),
                conds,
            },
        });
    }
    out
}

/// What a value put into a query is escaped of: everything but the
/// unreserved characters (RFC 3986), so that it stays one value (`&`,
/// `=`, `+`, `;` and `#` included), as mod_rewrite's `[B]` flag does.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` (decoded) percent-encoded for where it goes: the path (a space,
/// `?` or `#` in it stays part of the path) or, after a `?`, the query,
/// where it is a single value.
fn encode_into(out: &mut String, text: &str, in_query: bool) {
    if in_query {
        out.extend(utf8_percent_encode(text, QUERY_VALUE));
    } else {
        out.extend(encode_path(text));
    }
}

/// `template` with `$0`…`$9`, `${name}` and `$$` expanded from `caps`,
/// each capture percent-encoded for the part of the URL it lands in
/// ([`encode_into`]): it is decoded text, and may not end the path or
/// add a parameter to the query.
pub(crate) fn expand(template: &str, caps: &Captures<'_>) -> String {
    let put = |out: &mut String, text: Option<regex::Match<'_>>| {
        let in_query = out.contains('?');
        encode_into(out, text.map_or("", |m| m.as_str()), in_query);
    };
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let next = rest.as_bytes().first().copied();
        match next {
            Some(d @ b'0'..=b'9') => {
                put(&mut out, caps.get(usize::from(d - b'0')));
                rest = &rest[1..];
            }
            Some(b'{') => match rest.find('}') {
                Some(end) => {
                    put(&mut out, caps.name(&rest[1..end]));
                    rest = &rest[end + 1..];
                }
                None => out.push('$'),
            },
            Some(b'$') => {
                out.push('$');
                rest = &rest[1..];
            }
            _ => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// A local `path?query` made by a rule, normalised and encoded again;
/// None if its path cannot be normalised (it climbs above the root).
pub(crate) fn local_target(target: &str) -> Option<String> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let normal = axkit_http::normalize_path(path)?;
    let mut out: String = encode_path(&normal).collect();
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// `target` with the request's `query` added: after `?`, or after `&` if
/// `target` has one.
fn with_query(mut target: String, query: Option<&str>) -> String {
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        target.push(if target.contains('?') { '&' } else { '?' });
        target.push_str(q);
    }
    target
}

/// Answer with a redirect to `target` (a URL, or a local path normalised
/// so that it cannot name another host).
fn redirect(ctx: &mut Context, status: u16, target: String) -> Outcome {
    let location = if is_url(&target) {
        target
    } else {
        match local_target(&target) {
            Some(t) => t,
            None => return refuse(ctx, &target),
        }
    };
    if !axkit_http::valid_header_value(location.as_bytes()) {
        return refuse(ctx, &location);
    }
    ctx.response.status = status;
    ctx.response.headers.set("Location", location);
    Outcome::Done
}

/// A rule made a target that is no URI: 400, with why in the log.
fn refuse(ctx: &Context, target: &str) -> Outcome {
    ctx.log_reason(
        400,
        format_args!("rewrite: the rules made {target:?}, which is not a valid path"),
    );
    Outcome::Status(400)
}

/// What a round of `Rewrite` rules did.
enum Round {
    /// No rule changed the path.
    Same,
    /// The request now has this target; go on (or stop for good).
    Rewritten { target: String, end: bool },
    /// Answered (a redirect, or a refusal).
    Answered(Outcome),
}

/// A round over `rules`, leaving out the lines in `ran`.
fn run_round(ctx: &mut Context, rules: &[Keyed<Guarded>], ran: &[Keyed<Guarded>]) -> Round {
    // The path and query as the rules left them, once one did: until then
    // the request's own, not copied, as most rounds change nothing.
    let mut rewritten: Option<(String, Option<String>)> = None;
    for Guarded { rule, conds } in fresh(rules, ran) {
        let (path, query) = match &rewritten {
            Some((path, query)) => (path.as_str(), query.as_deref()),
            None => (ctx.request.decoded_path(), ctx.request.query()),
        };
        let Some(caps) = rule.regex.captures(path) else {
            continue;
        };
        if !conds.iter().all(|c| c.holds(ctx, path)) {
            continue;
        }
        let url = is_url(&rule.replacement);
        let expanded = expand(&rule.replacement, &caps);
        let (new_path, new_query) = match expanded.split_once('?') {
            Some((p, q)) if rule.qsappend => match query.filter(|o| !o.is_empty()) {
                Some(old) => (p.to_string(), Some(format!("{q}&{old}"))),
                None => (p.to_string(), Some(q.to_string())),
            },
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (expanded.clone(), query.map(str::to_string)),
        };
        let target = match &new_query {
            Some(q) if !q.is_empty() => format!("{new_path}?{q}"),
            _ => new_path.clone(),
        };
        if url || rule.redirect.is_some() {
            let status = rule.redirect.unwrap_or(302);
            return Round::Answered(redirect(ctx, status, target));
        }
        let Some(normal) = axkit_http::normalize_path(&new_path) else {
            return Round::Answered(refuse(ctx, &target));
        };
        let (path, query) = rewritten.insert((normal.into_owned(), new_query));
        if rule.end {
            return Round::Rewritten {
                target: with_path(path, query.as_deref()),
                end: true,
            };
        }
        if rule.last {
            break;
        }
    }
    match rewritten {
        Some((path, query)) => Round::Rewritten {
            target: with_path(&path, query.as_deref()),
            end: false,
        },
        None => Round::Same,
    }
}

/// A decoded path encoded again, with a query.
fn with_path(path: &str, query: Option<&str>) -> String {
    let mut out: String = encode_path(path).collect();
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The `Redirect` and `RedirectMatch` lines of `lines` but those in
/// `ran`: the first that matches.
fn redirects(ctx: &mut Context, lines: &Lines, ran: &Lines) -> Option<Outcome> {
    let path = ctx.request.decoded_path();
    let found = fresh(&lines.redirects, &ran.redirects).find_map(|r| {
        // As mod_alias: `/old` takes `/old` and `/old/…`, `/old/` only
        // `/old/…`.
        let rest = path.strip_prefix(r.prefix.as_str())?;
        if !(rest.is_empty() || rest.starts_with('/') || r.prefix.ends_with('/')) {
            return None;
        }
        let mut target = r.target.clone();
        let in_query = target.contains('?');
        encode_into(&mut target, rest, in_query);
        Some((r.status, with_query(target, ctx.request.query())))
    });
    let found = found.or_else(|| {
        fresh(&lines.matches, &ran.matches).find_map(|r| {
            let caps = r.regex.captures(path)?;
            Some((r.status, expand(&r.target, &caps)))
        })
    });
    let (status, target) = found?;
    Some(redirect(ctx, status, target))
}

impl Rewrite {
    /// Rounds of rules from the request's Location, each with the lines
    /// of the Location the request is in but those it shares with the one
    /// it left (`left`, the lines that ran already), until a round leaves
    /// the request in its Location.
    fn rounds(&self, ctx: &mut Context, mut left: Rc<Lines>) -> Outcome {
        // `OPTIONS *` asks about the server: `*` is no path, and a rule
        // written for paths must not turn it into one.
        if ctx.request.decoded_path() == "*" {
            return Outcome::Declined;
        }
        let max = *ctx.config().get(&MAX_LOOPS);
        let mut rounds = 0;
        loop {
            let lines = self.lines_of(ctx.config());
            if let Some(answered) = redirects(ctx, &lines, &left) {
                return answered;
            }
            if lines.rules.is_empty() {
                return Outcome::Declined;
            }
            let (target, end) = match run_round(ctx, &lines.rules, &left.rules) {
                Round::Same => return Outcome::Declined,
                Round::Answered(outcome) => return outcome,
                Round::Rewritten { target, end } => (target, end),
            };
            rounds += 1;
            if rounds > max {
                let msg = format!(
                    "{}: rewrite: more than {max} rounds of rules (RewriteMaxLoops), last at {target:?}",
                    ctx.original_request().request_line()
                );
                ctx.log(Level::Error, &msg);
                return Outcome::Status(500);
            }
            let before: *const LocationConfig = ctx.config();
            if let Err(e) = ctx.rewrite_uri(&target) {
                return refuse(ctx, &e);
            }
            if end || std::ptr::eq(ctx.config(), before) {
                return Outcome::Ok;
            }
            left = lines;
        }
    }
}

#[axkit::plugin]
impl Plugin for Rewrite {
    fn post_read_request<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        // No line has run for the request yet.
        self.rounds(ctx, self.none.clone()).into()
    }

    /// The request is handed over to the Location of its directory's
    /// index: its lines apply as in a round after a rewrite into it (those
    /// `left` shares ran already), as Apache applies the index
    /// directory's rules to its subrequest and nginx a location's
    /// rewrites after an internal redirect into it; `end` does not stop
    /// them, as nginx's `break` does not.
    fn post_read_request_handed_over<'a>(
        &'a self,
        ctx: &'a mut Context,
        from: HandOff<'a>,
    ) -> HookFuture<'a> {
        // An internal redirect's walk is a fresh one: every line.
        let Some(left) = from.left() else {
            return self.post_read_request(ctx);
        };
        let left = self.lines_of(left);
        self.rounds(ctx, left).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_captures_encoded() {
        let re = Regex::new(r"^/u/(?P<name>[^/]+)/(.*)$").unwrap();
        let caps = re.captures("/u/a b/x?y").unwrap();
        assert_eq!(
            expand("/p/${name}/$2/$$/$9/$", &caps),
            "/p/a%20b/x%3Fy/$//$"
        );
        assert_eq!(expand("https://h/$1", &caps), "https://h/a%20b");
    }

    #[test]
    fn local_targets_are_normalised() {
        assert_eq!(
            local_target("//evil.example/x").as_deref(),
            Some("/evil.example/x")
        );
        assert_eq!(local_target("/a/../b?q=1").as_deref(), Some("/b?q=1"));
        assert_eq!(local_target("/../etc/passwd"), None);
    }

    #[test]
    fn captures_stay_out_of_the_host() {
        for bad in [
            "https://new.example$1",
            "https://$1",
            "http://a.${h}/x",
            "https://h:$1/",
        ] {
            assert!(check_fixed_host(bad).is_err(), "{bad}");
        }
        for good in [
            "https://new.example/$1",
            "https://h?x=$1",
            "https://h$$/",
            "/p$1",
        ] {
            assert!(check_fixed_host(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn parses_flags_both_ways() {
        let r = parse_rewrite(&["^/a", "/b", "[L,R=301,QSA,NC]"]).unwrap();
        assert!(r.last && r.qsappend && r.redirect == Some(301));
        assert!(r.regex.is_match("/A"));
        let r = parse_rewrite(&["^/a", "/b", "end", "redirect"]).unwrap();
        assert!(r.end && r.redirect == Some(302) && !r.last);
        assert!(parse_rewrite(&["^/a", "/b", "redirect=200"]).is_err());
        assert!(parse_rewrite(&["^/(a", "/b"]).is_err());
        assert!(parse_rewrite(&["^/a", "b"]).is_err());
        assert!(parse_cond(&["cookie", "x"]).is_err());
        assert!(parse_cond(&["header:X-A", "!^on$", "not"]).is_ok_and(|c| !c.negate));
    }
}
