//! The benchmark server of `bench/lua.sh`: Lua scripts (no built-in plugin),
//! and `rust_hello`, a Rust plugin doing what `plugins/hello.lua` does
//! (greet `?name=`, default "world"), so that a Rust handler and a Lua
//! handler can be measured in the same binary against nginx + Lua.
//!
//!     cargo build --release -p axkit-lua --example hello-bench

use std::rc::Rc;

use axkit::plugin::Body;
use axkit::{Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

const RUST_HELLO: PluginSpec = PluginSpec {
    name: "rust_hello",
    directives: Vec::new,
    create,
};

fn create(_init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(RustHello))
}

struct RustHello;

#[axkit::plugin]
impl Plugin for RustHello {
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let name = ctx
            .request
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")))
            .unwrap_or("world");
        // Built at its exact size: a `Bytes` then takes the buffer over
        // as it is.
        let mut body = String::with_capacity(8 + name.len());
        body.push_str("Hello, ");
        body.push_str(name);
        body.push('\n');
        ctx.response
            .headers
            .set("Content-Type", "text/plain; charset=utf-8");
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
