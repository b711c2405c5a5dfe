//! Databases for AxKit plugins, never blocking the worker: PostgreSQL
//! (tokio-postgres), Redis (the `redis` crate) and SQLite (rusqlite, built
//! in), each through a pool of connections per worker process.
//!
//! Declared in the config, globally:
//!
//! ```text
//! Database     main   postgres://app@127.0.0.1/app  pool=8 timeout=5s
//! Database     cache  redis://127.0.0.1:6379/0
//! Database     local  sqlite:data/app.db
//! DatabaseFile billing /etc/axkit/billing.url
//! ```
//!
//! - `Database NAME URL [pool=N] [timeout=D] [max_result=SIZE]`: the URL's
//!   scheme picks the server. `pool=` is how many connections each worker
//!   may open to it (default 4), `timeout=` how long one call may take,
//!   waiting for a free connection included (default 10s), `max_result=`
//!   the most a PostgreSQL or SQLite query's rows, a Redis reply, or the
//!   messages a subscription has read and not yet delivered, may hold
//!   (default 16M; `0`: no limit, but a subscription still holds at most
//!   [`SUBSCRIPTION_QUEUE`] messages).
//!   The URL is a secret: it is never quoted in an error or a log line.
//! - `DatabaseFile NAME FILE [options]`: the same, the URL being
//!   FILE's first line. The file is read with the config (the master's
//!   read is part of the snapshot its workers get, so a restarted worker
//!   uses what the master read).
//!
//! The directives come from a [`DbSource`], which a binary registers
//! (`Server::source(axkit_db::DbSource)`; the stock `axkit` does): they
//! may be written in every config, with no `Plugin` line.
//!
//! A Rust plugin takes its handles in its constructor and uses them in its
//! hooks; nothing connects until the first call, in a worker:
//!
//! ```no_run
//! use std::rc::Rc;
//! use axkit::{hook, Context, HookFuture, Outcome, Plugin, PluginInit};
//! use axkit_db::{Databases, Postgres};
//!
//! struct Posts {
//!     db: Postgres,
//! }
//!
//! fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
//!     let db = Databases::of(init.config)?.postgres("main")?;
//!     Ok(Rc::new(Posts { db }))
//! }
//!
//! #[axkit::plugin]
//! impl Plugin for Posts {
//!     fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
//!         hook(async move {
//!             let row = match self.db.query_one("SELECT count(*) FROM posts", &[]).await {
//!                 Ok(row) => row,
//!                 // 503 and a log line naming the database when it is down;
//!                 // 500 for a statement it refused.
//!                 Err(e) => return e.outcome(ctx),
//!             };
//!             let n: i64 = row.get(0);
//!             let _ = ctx.write(format!("{n} posts\n")).await;
//!             Outcome::Done
//!         })
//!     }
//! }
//! ```
//!
//! Every call waits without blocking: other requests of the worker go on
//! meanwhile, and a slow statement holds only its own request and its own
//! connection. A database that is down, or a call past its `timeout=`,
//! fails with an [`Error`] that [`is_unavailable`](Error::is_unavailable)
//! (a 503 through [`Error::outcome`]); the pool opens new connections on
//! the next calls once the server is back. docs/databases.md has the
//! whole API, Rust and Lua.

mod config;
mod error;
mod pg_value;
mod pool;
mod postgres;
mod redis_db;
mod registry;
mod sqlite;

use std::rc::Rc;

use axkit::config::Directive;
use axkit::plugin::InUse;
use axkit::{Plugin, PluginInit, PluginSource};

pub use crate::config::{Kind, Spec, DATABASE, DATABASE_FILE, DEFAULT_POOL, DEFAULT_TIMEOUT};
pub use crate::error::{log_unavailable, Error, ErrorKind};
pub use crate::postgres::{PgTransaction, Postgres};
pub use crate::redis_db::{Redis, Subscription, SUBSCRIPTION_QUEUE};
pub use crate::registry::Databases;
pub use crate::sqlite::{Executed, Rows, SqlValue, Sqlite, SqliteTransaction};

/// Dynamically typed PostgreSQL values, for script hosts.
pub mod pg {
    pub use crate::pg_value::{cell, Cell, Param};
}

/// The clients, for their types (`tokio_postgres::Row`, `redis::cmd`,
/// `rusqlite::Connection`…).
pub use redis;
pub use rusqlite;
pub use tokio_postgres;

/// `docs/databases.md`: its Rust examples are compiled as doctests of
/// this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/databases.md")]
pub struct DatabasesGuide;

/// The source of the `Database` and `DatabaseFile` directives: in use in
/// every config, with no plugins of its own.
pub struct DbSource;

impl PluginSource for DbSource {
    /// Not a plugin name a script is likely to take: a `Plugin` line
    /// naming a source with directives is read as the deprecated way to
    /// put it in use, not as a script.
    fn name(&self) -> &str {
        "databases"
    }

    fn directives(&self) -> Vec<Directive> {
        vec![DATABASE.declare(), DATABASE_FILE.declare()]
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}
