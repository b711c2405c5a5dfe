//! The benchmark server of `bench/lua.sh`: Lua scripts (no built-in plugin),
//! and `rust_hello`, a Rust plugin doing what `plugins/hello.lua` does
//! (greet `?name=` with its configured greeting, default "world"), so
//! that a Rust handler and a Lua handler can be measured in the same
//! binary against nginx + Lua.
//!
//!     cargo build --release -p axkit-lua --example hello-bench

use std::rc::Rc;

use axkit::config::{Key, Scopes};
use axkit::plugin::Body;
use axkit::{Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

const RUST_HELLO: PluginSpec = PluginSpec {
    name: "rust_hello",
    directives: || vec![GREETING.declare()],
    create,
};

/// hello.lua's `Greeting` (named apart: both plugins live in this binary).
static GREETING: Key<String> = Key::new("RustGreeting")
    .default("Hello")
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("What the rust_hello plugin greets with");

fn create(_init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(RustHello))
}

struct RustHello;

#[axkit::plugin]
impl Plugin for RustHello {
    /// What hello.lua's `hook_response` does, step for step: the content
    /// type, then the configured greeting and the `name` parameter
    /// (percent-decoded, as `r:param` gives it), or "world" without one.
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        ctx.response
            .headers
            .set("Content-Type", "text/plain; charset=utf-8");
        let greeting = ctx.config().get(&GREETING);
        let name = ctx.request.param("name");
        let name = name.as_deref().unwrap_or("world");
        // Built at its exact size: a `Bytes` then takes the buffer over
        // as it is.
        let mut body = String::with_capacity(greeting.len() + name.len() + 3);
        body.push_str(greeting);
        body.push_str(", ");
        body.push_str(name);
        body.push('\n');
        ctx.response.body = Body::Bytes(body.into());
        Outcome::Ok.into()
    }
}

fn main() -> std::process::ExitCode {
    axkit::Server::new()
        .plugin(RUST_HELLO)
        // The Lua host reads the directives of these sources (its globals
        // `postgres`, `template`, `http`, `shared`, `session` stand on them).
        .source(axkit_db::DbSource)
        .source(axkit_lua::LuaSource::new())
        .source(axkit_template::TemplateSource)
        .source(axkit_client::ClientSource)
        .source(axkit_shared::SharedSource::new())
        .source(axkit_session::SessionSource)
        .main()
}
