//! Sessions and request security for AxKit plugins, Rust and Lua alike
//! (the Lua globals `session` and `crypto` are built on this crate):
//!
//! - **Sessions** ([`session`]): a request's session, kept in a signed
//!   (and by default encrypted) cookie, or on the server in a shared zone,
//!   Redis or SQLite with only a signed random id in the cookie. Expiry
//!   (idle timeout and maximum age) travels inside what is signed; the id
//!   is regenerated on login ([`Session::regenerate`]) against fixation,
//!   and changes by itself with the first data of a session that its
//!   cookie brought empty.
//!   A store keeps only sessions that hold data.
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

/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
/// sessions under fixed keys, and the decoders of what comes back from a
/// client (the cookie) or a store (the record), unchanged.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use axkit_shared::Value;

    use crate::session::{self, fixed_settings};
    use crate::store::ID_LEN;
    use crate::{Error, Session, Store};

    /// A new session with a cookie named `sid`, an hour's idle timeout
    /// and a day's maximum age, in `store`, encrypted or only signed,
    /// under keys named `keys` (the first writes), each with its name's
    /// first byte 32 times as its secret.
    pub fn session(store: Store, encrypt: bool, keys: &[&str]) -> Session {
        Session::fresh(fixed_settings(store, encrypt, keys), true)
    }

    /// The value of the session's cookie.
    pub fn cookie_value(s: &Session) -> Result<String, Error> {
        s.cookie_value()
    }

    /// Read a cookie's value at `now` (milliseconds since 1970): a
    /// cookie session is taken (no longer [`Session::is_new`]); for a
    /// session on the server, the id to fetch.
    pub fn read_cookie(s: &mut Session, value: &str, now: u64) -> Option<[u8; ID_LEN]> {
        s.read_cookie(value, now).map(|(id, _)| id)
    }

    /// A session's record: when it began and was last used (milliseconds
    /// since 1970), its id and its data.
    pub type Record = (u64, u64, [u8; ID_LEN], Vec<(String, Value)>);

    /// A record read back from a store.
    pub fn parse_record(bytes: &[u8]) -> Option<Record> {
        session::parse_record(bytes).map(|r| (r.created, r.touched, r.id, r.data))
    }

    /// The record of a session, as it is stored.
    pub fn encode_record(
        created: u64,
        touched: u64,
        id: &[u8; ID_LEN],
        data: &[(String, Value)],
    ) -> Result<Vec<u8>, Error> {
        session::encode_record(created, touched, id, data)
    }
}

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
