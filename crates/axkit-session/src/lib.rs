//! Sessions and request security for AxKit plugins, Rust and Lua alike
//! (the Lua globals `session` and `crypto` are built on this crate):
//!
//! - **Sessions** ([`session`]): a request's session, kept in a signed
//!   (and by default encrypted) cookie, or on the server in a shared zone,
//!   Redis or SQLite with only a signed random id in the cookie. Expiry
//!   (idle timeout and maximum age) travels inside what is signed; the id
//!   is regenerated on login ([`Session::regenerate`]) against fixation.
//!   A cookie that is forged, garbled, expired, signed with a key no
//!   longer configured, or whose store cannot be read, gives a fresh empty
//!   session, never an error. Changes are saved once, just before the
//!   response head goes out ([`axkit::Context::before_head`]); a store
//!   that cannot take the write answers 503.
//! - **CSRF** ([`Session::csrf_token`], [`check_csrf`]): a token bound to
//!   the session (an HMAC of its id), checked in constant time from the
//!   `X-CSRF-Token` header or the `csrf_token` form field; a failure is
//!   a 403 with a log line.
//! - **Cookies** ([`cookie`]): `Set-Cookie` values that encode what they
//!   carry rather than refusing it.
//! - **Crypto** ([`crypto`]): random bytes, HMAC, constant-time
//!   comparison, argon2id password hashes run on the blocking pool.
//!
//! Register [`SessionSource`] in a binary (`Server::source`; the stock
//! `axkit` does); its directives (`config.rs`) may then be written in
//! every config: `SessionKey NAME FILE` (global, repeatable: the first
//! signs, all verify), `SessionStore`, `SessionCookie`, `SessionTimeout`,
//! `SessionMaxAge`, `SessionEncrypt` (any scope). docs/sessions.md has the
//! whole API with an example per call.
//!
//! ```no_run
//! use axkit::{hook, Context, HookFuture, Outcome, Plugin};
//!
//! struct Counter;
//!
//! #[axkit::plugin]
//! impl Plugin for Counter {
//!     fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
//!         hook(async move {
//!             let s = match axkit_session::session(ctx).await {
//!                 Ok(s) => s,
//!                 Err(e) => return e.outcome(ctx),
//!             };
//!             let n = s.get("n").and_then(|v| v.as_int()).unwrap_or(0) + 1;
//!             s.set("n", n);
//!             let _ = ctx.write(format!("visit {n}\n")).await;
//!             Outcome::Done
//!         })
//!     }
//! }
//! ```

mod config;
pub mod cookie;
pub mod crypto;
mod error;
mod session;
mod store;

use std::rc::Rc;

use axkit::config::{Config, ConfigError, Directive, FileReader};
use axkit::plugin::InUse;
use axkit::{Plugin, PluginInit, PluginSource};

pub use crate::config::{
    CookieSpec, SameSite, Secure, SessionKey, Store, MIN_KEY_LEN, SESSION_COOKIE, SESSION_ENCRYPT,
    SESSION_KEY, SESSION_MAX_AGE, SESSION_STORE, SESSION_TIMEOUT,
};
pub use crate::error::Error;
pub use crate::session::{
    check_csrf, csrf_failure, current, save, session, start, Loaded, Loading, Session, CSRF_FIELD,
    CSRF_HEADER,
};

/// `docs/sessions.md`: its Rust examples are compiled as doctests of this
/// crate.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/sessions.md")]
pub struct SessionsGuide;

/// The source of the session directives: in use in every config, with no
/// plugins of its own. When the config loads it checks that each
/// `SessionStore` names a database of the right kind or a declared zone,
/// and hands the worker's databases to the stores.
pub struct SessionSource;

impl PluginSource for SessionSource {
    /// Not a name a script is likely to take (see `axkit_db::DbSource`).
    fn name(&self) -> &str {
        "sessions"
    }

    fn directives(&self) -> Vec<Directive> {
        vec![
            SESSION_KEY.declare(),
            SESSION_STORE.declare(),
            SESSION_COOKIE.declare(),
            SESSION_TIMEOUT.declare(),
            SESSION_MAX_AGE.declare(),
            SESSION_ENCRYPT.declare(),
        ]
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn load_files(&self, config: &Config, _: &mut FileReader<'_>) -> Result<(), Vec<ConfigError>> {
        store::configure(config)
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}
