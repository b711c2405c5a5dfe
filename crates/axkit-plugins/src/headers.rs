//! `headers`: set, add, append or remove response and request header
//! fields by configuration, as Apache's mod_headers (`Header`,
//! `RequestHeader`) or nginx's `add_header` / `proxy_set_header`.
//!
//! Directives (Server or Location; a Location's lines add to those of the
//! Server and the Locations around it, outer lines first, each in config
//! order, so an inner `unset` undoes an outer `set`):
//! - `Header [onsuccess|always] ACTION NAME [VALUE] [status=CODE,…]`:
//!   a response header, applied once per response in the `before_head`
//!   hook, just before the head is committed, whichever plugin answered
//!   and wherever `Plugin headers` is listed (a redirect from `rewrite`,
//!   an error page), with the lines of the Location that answers (after
//!   a rewrite or an internal redirect, the final one, as Apache applies
//!   the final request's), and before a cache or a compressor looks at
//!   the head. A response a cache stored got them when it was made, and
//!   gets them no second time when served again. `onsuccess` (the
//!   default) applies to responses below 400, `always` to every response,
//!   and `status=404,410` to exactly those statuses (whatever the
//!   condition word says).
//! - `RequestHeader ACTION NAME [VALUE]`: a request header, applied in
//!   `post_read_request`, so every later hook, CGI and Lua see it (list
//!   `Plugin headers` before a plugin whose `post_read_request` must see
//!   it too; listed before `rewrite` it takes up the rules of the Location
//!   rewritten to as of a hand-off, after it as of that Location), once
//!   per client request: an internal redirect (an ErrorDocument's page)
//!   keeps the headers as they were changed and gets the lines of its
//!   Location that did not apply before (an `unset` there strips a field
//!   the client sent from what the page sees; every line, when a plugin
//!   listed before `headers` refused the request first). A request handed over to another Location (a
//!   directory's index in a `<Location>` of its own) gets that Location's
//!   lines but those it shares with a Location whose lines were applied
//!   already, so that each line applies once (as Apache applies the index
//!   directory's to its subrequest), also to a request rewritten out of a
//!   Location and handed back into it. `Content-Length` and `Transfer-Encoding` are refused:
//!   the body is framed by what the client sent.
//!
//! ACTION is one of `set` (replace every field of the name with one),
//! `add` (one more field, keeping the others), `append` (join VALUE to the
//! existing value with `, `, or set it when there is none), `setifempty`
//! (set only when there is no such field) and `unset` (remove every field
//! of the name; no VALUE). Values are literal: no variables are expanded.
//! Names and values are checked when the config loads: a name must be a
//! token and a value must hold no control character (CR, LF, NUL…), so a
//! configured header can never split a response. The core writes `Date`,
//! `Server`, `Connection` and the framing fields itself: `Header` refuses
//! `Content-Length`, `Transfer-Encoding` and `Connection`.
//!
//! ```text
//! Plugin headers
//! <Server>
//!     Header set X-Content-Type-Options nosniff
//!     Header always set Strict-Transport-Security "max-age=31536000"
//!     RequestHeader unset Proxy
//!     <Location /static>
//!         Header set Cache-Control "public, max-age=86400"
//!         Header set Cache-Control "no-store" status=404
//!     </Location>
//! </Server>
//! ```

use std::rc::Rc;
use std::sync::Arc;

use axkit::config::{Args, Directive, List, Scopes};
use axkit::plugin::{
    Context, HandOff, HeaderValue, Headers, Hook, HookFuture, Hooks, Outcome, Plugin, PluginInit,
    PluginSpec, Request, STORED_RESPONSE_NOTE,
};

/// What a line does to the fields of its name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Set,
    Add,
    Append,
    SetIfEmpty,
    Unset,
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        Some(match word.to_ascii_lowercase().as_str() {
            "set" => Action::Set,
            "add" => Action::Add,
            "append" => Action::Append,
            "setifempty" => Action::SetIfEmpty,
            "unset" => Action::Unset,
            _ => return None,
        })
    }
}

/// Which responses a `Header` line applies to.
#[derive(Clone, Debug, PartialEq)]
enum When {
    /// Below 400.
    OnSuccess,
    Always,
    Statuses(Vec<u16>),
}

impl When {
    fn covers(&self, status: u16) -> bool {
        match self {
            When::OnSuccess => status < 400,
            When::Always => true,
            When::Statuses(list) => list.contains(&status),
        }
    }
}

/// One `Header` or `RequestHeader` line, checked.
#[derive(Debug)]
struct Rule {
    when: When,
    action: Action,
    name: String,
    /// Checked when loaded: set on a response for a reference count.
    value: HeaderValue,
}

const HEADER_USAGE: &str =
    "expected Header [onsuccess|always] set|add|append|setifempty|unset NAME [VALUE] [status=CODE,…]";
const REQUEST_USAGE: &str = "expected RequestHeader set|add|append|setifempty|unset NAME [VALUE]";

/// `ACTION NAME [VALUE]` and what follows, checked; the rest of `args`.
fn action_name_value<'a>(
    args: &'a [&'a str],
    usage: &str,
) -> Result<(Action, String, HeaderValue, &'a [&'a str]), String> {
    let [action, name, rest @ ..] = args else {
        return Err(usage.into());
    };
    let action =
        Action::parse(action).ok_or_else(|| format!("unknown action {action:?}; {usage}"))?;
    if !axkit_http::valid_header_name(name) {
        return Err(format!("invalid header name {name:?}"));
    }
    let (value, rest) = match (action, rest) {
        (Action::Unset, rest) => (String::new(), rest),
        (_, [value, rest @ ..]) => (value.to_string(), rest),
        (_, []) => return Err(format!("{name}: a value is needed; {usage}")),
    };
    let value = HeaderValue::checked(value)
        .map_err(|_| format!("the value for {name} holds a control character (CR, LF, NUL…)"))?;
    Ok((action, name.to_string(), value, rest))
}

fn parse_header(args: &[&str]) -> Result<Arc<Rule>, String> {
    let (mut when, args) = match args.first().map(|w| w.to_ascii_lowercase()) {
        Some(w) if w == "always" => (When::Always, &args[1..]),
        Some(w) if w == "onsuccess" => (When::OnSuccess, &args[1..]),
        _ => (When::OnSuccess, args),
    };
    let (action, name, value, rest) = action_name_value(args, HEADER_USAGE)?;
    for framing in ["content-length", "transfer-encoding", "connection"] {
        if name.eq_ignore_ascii_case(framing) {
            return Err(format!("{name} is the server's to write"));
        }
    }
    match rest {
        [] => {}
        [statuses] => {
            let list = statuses
                .strip_prefix("status=")
                .ok_or_else(|| format!("unexpected {statuses:?}; {HEADER_USAGE}"))?;
            let codes = list
                .split(',')
                .map(|c| match c.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => Ok(code),
                    _ => Err(format!("status=: {c:?} is not an HTTP status")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            when = When::Statuses(codes);
        }
        _ => return Err(HEADER_USAGE.into()),
    }
    Ok(Arc::new(Rule {
        when,
        action,
        name,
        value,
    }))
}

fn parse_request_header(args: &[&str]) -> Result<Arc<Rule>, String> {
    let (action, name, value, rest) = action_name_value(args, REQUEST_USAGE)?;
    if !rest.is_empty() {
        return Err(REQUEST_USAGE.into());
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(format!(
            "{name} cannot be changed: the request body is framed by it"
        ));
    }
    Ok(Arc::new(Rule {
        when: When::Always,
        action,
        name,
        value,
    }))
}

static HEADER: List<Arc<Rule>> = List::parsed("Header", parse_header)
    .args(Args::Range(2, 5))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("Header [onsuccess|always] set|add|append|setifempty|unset NAME [VALUE] [status=CODE,…]: change a response header");

static REQUEST_HEADER: List<Arc<Rule>> = List::parsed("RequestHeader", parse_request_header)
    .args(Args::Range(2, 3))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("RequestHeader set|add|append|setifempty|unset NAME [VALUE]: change a request header before the other hooks see it");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "headers",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![HEADER.declare(), REQUEST_HEADER.declare()]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let any =
        |list: &'static List<Arc<Rule>>| init.config.scopes().any(|c| !c.list(list).is_empty());
    Ok(Rc::new(HeadersPlugin {
        requests: any(&REQUEST_HEADER),
        responses: any(&HEADER),
    }))
}

/// Which kinds of lines some scope has: a hook with nothing to do is not
/// called at all.
struct HeadersPlugin {
    requests: bool,
    responses: bool,
}

/// Apply `rule` to response headers.
fn apply_response(headers: &mut Headers, rule: &Rule) {
    let name = rule.name.clone();
    match rule.action {
        Action::Set => headers.set(name, rule.value.clone()),
        Action::Add => headers.add(name, rule.value.clone()),
        Action::SetIfEmpty if headers.get(&name).is_none() => headers.set(name, rule.value.clone()),
        Action::SetIfEmpty => {}
        Action::Append => {
            let joined = joined(
                headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
                    .map(|(_, v)| v.as_bytes()),
                &rule.value,
            );
            headers.set(name, joined);
        }
        Action::Unset => headers.remove(&name),
    }
}

/// The existing values of a field and `value`, joined with `, ` (the one
/// value when there were none).
fn joined<'a>(existing: impl Iterator<Item = &'a [u8]>, value: &str) -> String {
    let mut out = String::new();
    for v in existing {
        out.push_str(&String::from_utf8_lossy(v));
        out.push_str(", ");
    }
    out.push_str(value);
    out
}

/// Apply `rule` to the request.
fn apply_request(request: &mut Request, rule: &Rule) -> Result<(), String> {
    match rule.action {
        Action::Set => request.set_header(&rule.name, &rule.value),
        Action::Add => request.add_header(&rule.name, &rule.value),
        Action::SetIfEmpty if request.header_bytes(&rule.name).is_none() => {
            request.set_header(&rule.name, &rule.value)
        }
        Action::SetIfEmpty => Ok(()),
        Action::Append => {
            let existing = request
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case(&rule.name))
                .map(|(_, v)| v);
            let value = joined(existing, &rule.value);
            request.set_header(&rule.name, &value)
        }
        Action::Unset => request.remove_header(&rule.name),
    }
}

/// Apply `rules` to the request, in order: Declined if there are none.
fn apply_requests<'r>(
    request: &mut Request,
    rules: impl Iterator<Item = &'r Arc<Rule>>,
) -> Outcome {
    let mut outcome = Outcome::Declined;
    for rule in rules {
        if let Err(e) = apply_request(request, rule) {
            return Outcome::Error(format!("RequestHeader {}: {e}", rule.name));
        }
        outcome = Outcome::Ok;
    }
    outcome
}

#[axkit::plugin]
impl Plugin for HeadersPlugin {
    fn enabled_hooks(&self, written: Hooks) -> Hooks {
        let mut hooks = Hooks::NONE;
        if self.requests {
            hooks = hooks.with(Hook::PostReadRequest);
        }
        if self.responses {
            hooks = hooks.with(Hook::BeforeHead);
        }
        hooks.and(written)
    }

    /// Every line: the first call for the client request (after an
    /// internal redirect too, when the walks before it ended before this
    /// plugin was called: a refusal by a plugin listed before it).
    fn post_read_request<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if ctx.config().list(&REQUEST_HEADER).is_empty() {
            return Outcome::Declined.into();
        }
        let (config, request, _) = ctx.config_and_messages();
        apply_requests(request, config.list(&REQUEST_HEADER).iter()).into()
    }

    /// The request is handed over to another Location (a directory's
    /// index in a `<Location>` of its own): that Location's lines apply
    /// to it, as Apache's `RequestHeader` in the index directory's context
    /// applies to its subrequest and nginx's a location's after an internal
    /// redirect into it, but for those it shares with a Location whose
    /// lines were applied already (the Server's; a Location's own, when
    /// the request was rewritten out of it and is handed back; on an
    /// internal redirect's walk, an ErrorDocument's page, the Locations of
    /// the walks before it): an `add` would add twice, while an `unset`
    /// of the page's Location applies to the page.
    fn post_read_request_handed_over<'a>(
        &'a self,
        ctx: &'a mut Context,
        from: HandOff<'a>,
    ) -> HookFuture<'a> {
        let (config, request, _) = ctx.config_and_messages();
        let rules = config.list(&REQUEST_HEADER).iter().filter(|rule| {
            // Each line is parsed once: every Location holding it shares it.
            !from.taken_up().any(|ran| {
                ran.list(&REQUEST_HEADER)
                    .iter()
                    .any(|r| Arc::ptr_eq(r, rule))
            })
        });
        apply_requests(request, rules).into()
    }

    fn before_head<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        // A stored response (a cache hit) got the rules when it was made.
        if ctx.config().list(&HEADER).is_empty() || ctx.notes.contains_key(STORED_RESPONSE_NOTE) {
            return Outcome::Declined.into();
        }
        let (config, _, response) = ctx.config_and_messages();
        let status = response.status;
        for rule in config
            .list(&HEADER)
            .iter()
            .filter(|r| r.when.covers(status))
        {
            apply_response(&mut response.headers, rule);
        }
        Outcome::Ok.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_refuses_bad_ones() {
        let r = parse_header(&["always", "set", "X-A", "1", "status=404,410"]).unwrap();
        assert_eq!(r.when, When::Statuses(vec![404, 410]));
        assert_eq!(r.action, Action::Set);
        let r = parse_header(&["unset", "ETag"]).unwrap();
        assert_eq!((r.when.clone(), r.action), (When::OnSuccess, Action::Unset));
        assert!(parse_header(&["set", "X-A"]).is_err());
        assert!(parse_header(&["set", "X A", "1"]).is_err());
        assert!(parse_header(&["set", "X-A", "1\r\nX-B: 2"]).is_err());
        assert!(parse_header(&["set", "X-A", "a\u{1}b"]).is_err());
        assert!(parse_header(&["frob", "X-A", "1"]).is_err());
        assert!(parse_header(&["set", "Content-Length", "1"]).is_err());
        assert!(parse_header(&["set", "X-A", "1", "status=99"]).is_err());
        assert!(parse_request_header(&["set", "Transfer-Encoding", "chunked"]).is_err());
        assert!(parse_request_header(&["unset", "X-A", "1"]).is_err());
    }

    #[test]
    fn append_joins_every_existing_value() {
        let mut h = Headers::default();
        h.add("Vary", "Cookie");
        h.add("vary", "Accept");
        let rule = parse_header(&["append", "Vary", "Accept-Encoding"]).unwrap();
        apply_response(&mut h, &rule);
        let all: Vec<_> = h.iter().collect();
        assert_eq!(all, [("Vary", "Cookie, Accept, Accept-Encoding")]);
    }
}
