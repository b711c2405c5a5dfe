//! The benchmark server of `bench/app.sh`: Lua scripts with the
//! application toolkit (databases, templates), and `rust_single_query`, a
//! Rust plugin answering TechEmpower's "single query" test through
//! `axkit_db`, so that a Rust handler and a Lua handler are measured in the
//! same binary against Node.js.
//!
//! `rust_single_query` reads one row of `world(id int primary key,
//! randomnumber int)` by a random id between 1 and 10,000 from the
//! PostgreSQL database named `main`, and answers
//! `{"id":…,"randomNumber":…}` as `application/json`.
//!
//!     cargo build --release -p axkit-lua --example app-bench

use std::cell::Cell;
use std::rc::Rc;

use axkit::plugin::Body;
use axkit::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};
use axkit_db::{Databases, Postgres};

const RUST_SINGLE_QUERY: PluginSpec = PluginSpec {
    name: "rust_single_query",
    directives: Vec::new,
    create,
};

/// The ids are 1..=ROWS.
const ROWS: u64 = 10_000;

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let db = Databases::of(init.config)?
        .postgres("main")
        .map_err(|e| e.to_string())?;
    // Any seed but zero; each worker its own sequence.
    let seed = u64::from(std::process::id()) << 32 | 0x9e37_79b9;
    Ok(Rc::new(SingleQuery {
        db,
        state: Cell::new(seed),
    }))
}

struct SingleQuery {
    db: Postgres,
    /// xorshift64* state: ids as random as the Lua script's `math.random`,
    /// without a dependency.
    state: Cell<u64>,
}

impl SingleQuery {
    fn random_id(&self) -> i32 {
        let mut x = self.state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % ROWS + 1) as i32
    }
}

#[axkit::plugin]
impl Plugin for SingleQuery {
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        hook(async move {
            let id = self.random_id();
            let row = match self
                .db
                .query_one("SELECT id, randomnumber FROM world WHERE id = $1", &[&id])
                .await
            {
                Ok(row) => row,
                Err(e) => return e.outcome(ctx),
            };
            let (id, number): (i32, i32) = (row.get(0), row.get(1));
            // Two integers: nothing in them needs escaping.
            let body = format!(r#"{{"id":{id},"randomNumber":{number}}}"#);
            ctx.response.headers.set("Content-Type", "application/json");
            ctx.response.body = Body::Bytes(body.into());
            Outcome::Ok
        })
    }
}

fn main() -> std::process::ExitCode {
    axkit::Server::new()
        .plugin(RUST_SINGLE_QUERY)
        .source(axkit_db::DbSource)
        .source(axkit_lua::LuaSource::new())
        .source(axkit_template::TemplateSource)
        .main()
}
