//! A custom AxKit binary with a third-party plugin, `greeting`, built in:
//! the way you add Rust plugins to AxKit (as with Caddy modules or Pingora
//! apps). The binary has the full `axkit` command line.
//!
//! Directives:
//! - `Greeting TEXT` (Server, Location; default `Hello`): what to greet with.
//!
//! ```text
//! <Server>
//!     Listen 127.0.0.1:8080
//!     Plugin greeting
//!     Greeting "Good morning"
//! </Server>
//! ```
//!
//! `GET /anything?name=Ada` answers `Good morning, Ada!`. The body is
//! streamed in two pieces with `ctx.write` to show the streaming API; a
//! plain plugin would set `ctx.response.body` instead.
//!
//! It also carries `faults` (`src/faults.rs`), a plugin that misbehaves on
//! purpose so that the tests can check a bad hook costs one request only,
//! `echo` (`src/echo.rs`), which takes its connection over after an
//! `Upgrade` request, and `forms` (`src/forms.rs`), which reads query
//! parameters, cookies and forms with the request conveniences, and
//! `articles` (`src/articles.rs`), which hands the XML pipeline (the
//! `xslt` plugin, built in here too) a document as a parsed tree.

mod articles;
mod echo;
mod faults;
mod forms;

use std::rc::Rc;

use axkit::config::{Directive, Key, Scopes};
use axkit::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

const GREETING: PluginSpec = PluginSpec {
    name: "greeting",
    directives,
    create,
};

/// Declared once, with its type and default; read with `ctx.config().get`.
static GREETING_TEXT: Key<String> = Key::new("Greeting")
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .default("Hello")
    .doc("What the greeting plugin greets with");

fn directives() -> Vec<Directive> {
    vec![GREETING_TEXT.declare()]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(Greeting))
}

struct Greeting;

#[axkit::plugin]
impl Plugin for Greeting {
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        hook(async move {
            let greeting = ctx.config().get(&GREETING_TEXT).clone();
            let name = ctx
                .request
                .param("name")
                .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or("world".into())
                .into_owned();
            ctx.response
                .headers
                .set("Content-Type", "text/plain; charset=utf-8");
            if ctx.write(format!("{greeting}, ")).await.is_err() {
                return Outcome::Done;
            }
            let _ = ctx.write(format!("{name}!\n")).await;
            Outcome::Done
        })
    }
}

fn main() -> std::process::ExitCode {
    axkit::Server::new()
        .plugins(axkit_plugins::builtin())
        .plugin(GREETING)
        .plugin(faults::FAULTS)
        .plugin(echo::ECHO)
        .plugin(forms::FORMS)
        .plugin(articles::ARTICLES)
        .plugin(axkit_xslt::XSLT)
        .source(axkit_template::TemplateSource)
        .source(axkit_client::ClientSource)
        .main()
}
