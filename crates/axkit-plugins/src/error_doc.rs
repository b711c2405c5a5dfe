//! `error_doc`: custom error pages (hook `error`), as Apache's
//! `ErrorDocument`: the page at a local URI is served through the whole
//! request walk (so it can be a static file, a script, anything) with the
//! original error's status.
//!
//! Directives:
//! - `ErrorDocument STATUS URI` (repeatable; Server or Location; inner
//!   scopes add to and override outer ones): for responses with STATUS,
//!   serve URI (a local path starting with `/`, optionally with a query).
//!
//! ```text
//! Plugin error_doc
//! <Server>
//!     ErrorDocument 404 /errors/404.html
//!     ErrorDocument 500 /errors/oops.html
//! </Server>
//! ```
//!
//! Statuses without an ErrorDocument get the built-in page. If the error
//! page itself fails, the built-in page for the original status is sent
//! rather than looping, without what the page's walk set (a redirect's
//! `Location`). Either way the page keeps the fields of the error that
//! hold for it (`WWW-Authenticate`, `Allow`, a 416's `Content-Range`,
//! `Retry-After`, `Set-Cookie`…): a 401 page still asks for credentials.
//! The failing request's details never reach the page: with `StackTrace On`
//! only the built-in 500 page shows them.

use std::rc::Rc;

use axkit::config::{Args, Directive, List, Scopes};
use axkit::plugin::{Body, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

/// `ErrorDocument STATUS URI`, checked when the config loads.
static ERROR_DOCUMENT: List<(u16, String)> = List::parsed("ErrorDocument", |args| match args {
    [status, uri] => parse_rule(status, uri).map(|(code, uri)| (code, uri.to_string())),
    _ => Err("expected ErrorDocument STATUS URI".into()),
})
.args(Args::Range(2, 2))
.scopes(Scopes::SERVER.or(Scopes::LOCATION))
.doc("Serve a local URI as the page for an error status: ErrorDocument 404 /404.html");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "error_doc",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![ERROR_DOCUMENT.declare()]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(ErrorDoc))
}

/// `404 /errors/404.html` → (404, "/errors/404.html").
fn parse_rule<'a>(status: &str, uri: &'a str) -> Result<(u16, &'a str), String> {
    let code = status
        .parse::<u16>()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .ok_or_else(|| format!("expected an error status 400-599, got {status:?}"))?;
    if !uri.starts_with('/') || uri.starts_with("//") {
        return Err(format!("expected a local URI starting with /, got {uri:?}"));
    }
    // What the internal redirect does with it at run time: parse it as a
    // request-target and normalise its path. A URI that fails there would
    // turn every such error into a 500, so it fails here, at start-up.
    let raw = format!("GET {uri} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let limits = axkit_http::Limits::default();
    let head = axkit_http::parse_request_head(&mut raw.as_bytes().into(), &limits);
    let Ok(Some(head)) = head else {
        return Err(format!(
            "{uri:?} is not a valid request URI (spaces and control characters must be %-encoded)"
        ));
    };
    if axkit_http::normalize_path(head.path()).is_none() {
        return Err(format!(
            "{uri:?} does not name a path beneath the root (`..` above it, or a bad %-escape)"
        ));
    }
    Ok((code, uri))
}

struct ErrorDoc;

#[axkit::plugin]
impl Plugin for ErrorDoc {
    fn error<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        // The error page failed in turn: the built-in page for the
        // original status (as Apache does), never a loop.
        if let Some(original) = ctx.notes.get("redirect.status") {
            let Some(original) = original.parse::<u16>().ok().filter(|s| *s >= 400) else {
                return Outcome::Declined.into();
            };
            let page = axkit::plugin::default_error_page(original, None);
            ctx.response.status = original;
            // What the page's walk set (the `Location` of a directory
            // named without its slash, a challenge of its own) is about
            // the page, not the error; the error's own fields that hold
            // go out with it all the same (`internal_redirect_with_status`).
            ctx.response.headers.clear();
            ctx.response
                .headers
                .set("Content-Type", "text/html; charset=utf-8");
            ctx.response.body = Body::Bytes(page.into());
            return Outcome::Ok.into();
        }
        let status = ctx.response.status;
        // The innermost (last) rule for this status wins.
        let target = ctx
            .config()
            .list(&ERROR_DOCUMENT)
            .iter()
            .rev()
            .find(|(code, _)| *code == status)
            .map(|(_, uri)| uri.clone());
        match target {
            Some(uri) => {
                ctx.internal_redirect_with_status(&uri, status);
                Outcome::Done.into()
            }
            None => Outcome::Declined.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(parse_rule("404", "/e/404.html"), Ok((404, "/e/404.html")));
        assert!(parse_rule("200", "/x").is_err());
        assert!(parse_rule("abc", "/x").is_err());
        assert!(parse_rule("404", "http://evil/").is_err());
        assert!(parse_rule("404", "//evil/x").is_err());
        assert!(parse_rule("404", "/../../x").is_err());
        assert!(parse_rule("404", "/a/%2e%2e/%2e%2e/x").is_err());
        assert!(parse_rule("404", "/a b").is_err());
        assert!(parse_rule("404", "/bad%zz").is_err());
        assert_eq!(
            parse_rule("404", "/a/../e.html?x=1"),
            Ok((404, "/a/../e.html?x=1"))
        );
    }
}
