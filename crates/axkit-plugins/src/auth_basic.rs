//! `auth_basic`: HTTP Basic authentication against an htpasswd file (hooks
//! `authentication` and `authorization`), as Apache's mod_auth_basic with
//! mod_authn_file and mod_authz_groupfile.
//!
//! Directives (Server or Location; the innermost of each applies):
//! - `Require valid-user | user NAME… | group NAME…`: who may pass. Without
//!   it, the plugin lets every request through (so it can be loaded for a
//!   whole Server and required in a Location).
//! - `AuthName REALM` (default `Restricted`): the realm the browser shows.
//! - `AuthUserFile FILE`: `user:hash` lines (`#` comments and empty lines
//!   skipped). Accepted hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`: `htpasswd
//!   -B`), SHA-crypt (`$5$`, `$6$`: `openssl passwd -5`/`-6`) and Argon2
//!   (`$argon2id$`, `$argon2i$`, `$argon2d$`). Refused, with the file and
//!   line: MD5-crypt (`$apr1$`, htpasswd's old default), `{SHA}`, crypt(3)
//!   and plain text: all are fast enough to guess offline from a leaked
//!   file (regenerate with `htpasswd -B`).
//! - `AuthGroupFile FILE`: `group: user user…` lines, for `Require group`.
//!   A relative FILE (either directive's) is taken from `ServerRoot`.
//! - `AuthFailureLimit COUNT PERIOD` (default `10 1m`): after COUNT
//!   attempts with credentials that fail within PERIOD, a client address
//!   (an IPv6 client's whole /64) gets 429 (with `Retry-After`) for the
//!   rest of the period, without its passwords being checked. A good
//!   password does not clear the failures before it: they last their
//!   period. A COUNT or PERIOD of 0 is refused (a PERIOD of 0 would
//!   forget each failure at once: no limit at all).
//!
//! The files are read when the config loads (through the config's file
//! reader: `--check` reports their errors with file and line, a worker gets
//! what the master read, and a reload rereads them). A `Require` without an
//! `AuthUserFile`, or `Require group` without an `AuthGroupFile`, is an
//! error when the plugin starts.
//!
//! Answers: no credentials, another scheme, malformed credentials (not
//! base64, no `:`, not UTF-8), an unknown user or a wrong password: 401 with
//! `WWW-Authenticate: Basic realm="REALM", charset="UTF-8"` (malformed ones
//! count as failures and are logged at info); a user the `Require` line does
//! not name: 401 as well, so the browser asks again. The client address is
//! the one the core resolves (`TrustedProxy`).
//!
//! Safety: a password is verified on the blocking pool (bcrypt and Argon2
//! take tens of milliseconds by design), never on the event loop, at most
//! as many at once as there are cores (`axkit::plugin::hashing`, shared
//! with the session crypto), so that a flood of guesses cannot hold a
//! memory-hard hash's memory many times over; up to 16 checks per core
//! wait for a turn, and a request past that gets 503 with
//! `Retry-After: 1` at once. One client address (an IPv6 client's /64)
//! may have at most 6 checks running or waiting at once in a worker; its
//! next request gets 429 with `Retry-After: 1` at once, without a hash,
//! and counts as no failure. Without that bound, one client sending a
//! hundred guesses at once filled the queue, and everyone else's logins
//! got 503 until it drained (`AuthFailureLimit`, which counts attempts
//! as they start, bounded it only at its COUNT, and a COUNT raised for an
//! address many users share bounded nothing). Six is what a browser sends
//! at once: it opens up to six connections to a host and sends the
//! credentials on each, so a page's own parallel requests never meet the
//! bound, while one address holds at most 6 of the 16 places per core.
//! The hash crates compare in constant time; an
//! unknown user's password is still verified, against the file's slowest
//! hash, so that an unknown name never answers faster than a known one
//! (a user whose hash is cheaper than the others' still answers faster:
//! keep one cost per file). The `Authorization` header and passwords are
//! never logged by this plugin (a `RequestLogFormat` with
//! `%{Authorization}i` would: do not write one). Failures are counted per
//! client address in each worker (at most 10,000 addresses, the oldest
//! forgotten first), so with `Workers N` a client gets up to N × COUNT
//! attempts per period.
//!
//! With `access` (addresses) both must pass, Apache's `Satisfy All`: a
//! refused address gets its 403 before any password is asked.
//! `Satisfy Any` (an address or a password) is not offered.
//!
//! ```text
//! Plugin auth_basic
//! <Server>
//!     <Location /admin>
//!         AuthName     "Administration"
//!         AuthUserFile /etc/axkit/htpasswd
//!         Require      user ada grace
//!     </Location>
//! </Server>
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axkit::config::{parse, Args, Directive, FileReader, Key, Scopes};
use axkit::plugin::{
    hashing, hook, Context, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec,
};
use base64::Engine;

const HERE: Scopes = Scopes::SERVER.or(Scopes::LOCATION);

/// Client addresses whose failures one worker remembers.
const MAX_TRACKED: usize = 10_000;

/// Password checks one client (by [`client_key`]) may have running or
/// waiting at once, per worker: the six connections a browser opens to a
/// host, each sending the credentials (see the module documentation).
const CHECKS_PER_CLIENT: usize = 6;

/// Password checks that may wait for a turn on the hashing pool, per core
/// (`axkit::plugin::hashing`: as many run at once as there are cores);
/// past that a request gets 503 at once. With a 250 ms hash, the last in
/// the queue waits about 4 s.
const WAITING_PER_CORE: usize = 16;

static REQUIRE: Key<Option<Require>> = Key::parsed("Require", parse_require)
    .args(Args::Many)
    .optional()
    .guard()
    .scopes(HERE)
    .doc("Who may pass Basic authentication: valid-user, user NAME…, or group NAME…");

static AUTH_NAME: Key<String> = Key::new("AuthName")
    .scopes(HERE)
    .default("Restricted")
    .doc("The realm of the Basic authentication challenge");

static AUTH_USER_FILE: Key<Option<Arc<Users>>> =
    Key::parsed_with_files("AuthUserFile", read_user_file)
        .optional()
        .scopes(HERE)
        .doc("htpasswd file of user:hash lines (bcrypt, SHA-crypt or Argon2 hashes)");

static AUTH_GROUP_FILE: Key<Option<Arc<Groups>>> =
    Key::parsed_with_files("AuthGroupFile", read_group_file)
        .optional()
        .scopes(HERE)
        .doc("File of `group: user user…` lines, for Require group");

static AUTH_FAILURE_LIMIT: Key<FailureLimit> = Key::parsed("AuthFailureLimit", |args| match args {
    [count, period] => Ok(FailureLimit {
        count: u32::try_from(parse::integer(count)?)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("expected a count of at least 1, got {count:?}"))?,
        period: Some(parse::duration(period)?)
            .filter(|p| !p.is_zero())
            .ok_or("a PERIOD of 0 would forget each failure at once, which is no limit: \
                    expected a duration above 0")?,
    }),
    _ => Err("expected AuthFailureLimit COUNT PERIOD".into()),
})
.args(Args::Range(2, 2))
.default("10 1m")
.scopes(HERE)
.doc(
    "Failed attempts a client address (an IPv6 client's /64) may make per PERIOD before it gets 429",
);

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "auth_basic",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![
        REQUIRE.declare(),
        AUTH_NAME.declare(),
        AUTH_USER_FILE.declare(),
        AUTH_GROUP_FILE.declare(),
        AUTH_FAILURE_LIMIT.declare(),
    ]
}

/// `Require …`.
#[derive(Debug, PartialEq)]
enum Require {
    ValidUser,
    Users(Vec<String>),
    Groups(Vec<String>),
}

fn parse_require(args: &[&str]) -> Result<Option<Require>, String> {
    let usage = "expected Require valid-user, Require user NAME… or Require group NAME…";
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    match args {
        [w] if w.eq_ignore_ascii_case("valid-user") => Ok(Some(Require::ValidUser)),
        [w, rest @ ..] if w.eq_ignore_ascii_case("user") && !rest.is_empty() => {
            Ok(Some(Require::Users(names(rest))))
        }
        [w, rest @ ..] if w.eq_ignore_ascii_case("group") && !rest.is_empty() => {
            Ok(Some(Require::Groups(names(rest))))
        }
        _ => Err(usage.into()),
    }
}

#[derive(Debug)]
struct FailureLimit {
    count: u32,
    period: Duration,
}

/// A password hash of a kind this plugin verifies.
#[derive(Clone, Debug, PartialEq)]
enum Hash {
    Bcrypt(String),
    ShaCrypt(String),
    Argon2(String),
}

impl Hash {
    /// The hash of an htpasswd line, or why it is refused.
    fn parse(text: &str) -> Result<Hash, String> {
        let refused = |what: &str| {
            Err(format!(
                "{what} is refused: too fast to resist guessing from a leaked file; \
                 make the hash with `htpasswd -B` (bcrypt)"
            ))
        };
        if ["$2y$", "$2b$", "$2a$"].iter().any(|p| text.starts_with(p)) {
            if text.len() != 60 {
                return Err("a malformed bcrypt hash".into());
            }
            return Ok(Hash::Bcrypt(text.to_string()));
        }
        if text.starts_with("$5$") || text.starts_with("$6$") {
            sha_crypt::PasswordHashRef::new(text)
                .map_err(|_| "a malformed SHA-crypt hash".to_string())?;
            return Ok(Hash::ShaCrypt(text.to_string()));
        }
        if ["$argon2id$", "$argon2i$", "$argon2d$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            argon2::password_hash::phc::PasswordHash::new(text)
                .map_err(|_| "a malformed Argon2 hash".to_string())?;
            return Ok(Hash::Argon2(text.to_string()));
        }
        if text.starts_with("$apr1$") || text.starts_with("$1$") {
            return refused("MD5-crypt ($apr1$, $1$)");
        }
        if text.starts_with("{SHA}") {
            return refused("{SHA}");
        }
        refused("a plain-text password or crypt(3) hash")
    }

    /// Roughly how long verifying takes, in microseconds: bcrypt by its
    /// cost (2^cost rounds), SHA-crypt by its rounds (5,000 when the hash
    /// does not say), Argon2 by memory × passes. Only good enough to pick
    /// the slowest hash of a file, across kinds.
    fn cost(&self) -> u64 {
        match self {
            Hash::Bcrypt(h) => h
                .get(4..6)
                .and_then(|c| c.parse::<u32>().ok())
                .map_or(0, |c| 60 << c.min(31)),
            Hash::ShaCrypt(h) => h
                .split('$')
                .nth(2)
                .and_then(|p| p.strip_prefix("rounds="))
                .and_then(|r| r.parse().ok())
                .unwrap_or(5_000),
            Hash::Argon2(h) => argon2::password_hash::phc::PasswordHash::new(h)
                .ok()
                .and_then(|p| argon2::Params::try_from(&p).ok())
                .map_or(0, |p| {
                    u64::from(p.m_cost()) * u64::from(p.t_cost()) * 13 / 10
                }),
        }
    }

    /// Whether `password` matches. Blocks for as long as the hash was
    /// made to take: call it on the blocking pool.
    fn verify(&self, password: &[u8]) -> bool {
        use argon2::password_hash::PasswordVerifier;
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::ShaCrypt(h) => sha_crypt::PasswordHashRef::new(h).is_ok_and(|h| {
                sha_crypt::ShaCrypt::SHA512
                    .verify_password(password, h)
                    .is_ok()
            }),
            Hash::Argon2(h) => argon2::Argon2::default()
                .verify_password(password, h.as_str())
                .is_ok(),
        }
    }
}

/// An `AuthUserFile`, read when the config loaded.
#[derive(Debug)]
struct Users {
    hashes: HashMap<String, Hash>,
    /// Verified for a user who does not exist: the slowest hash of the
    /// file, so that an unknown name never answers faster than a known
    /// one (with the first user's hash, a cheap first line made the
    /// costly users stand out).
    decoy: Hash,
}

/// The text of the file `path` names (relative: beneath `ServerRoot`),
/// with the path as it resolved, which messages show.
fn read_lines(path: &str, files: &mut FileReader<'_>) -> Result<(String, String), String> {
    let (path, bytes) = files.required_file(path)?;
    let shown = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8"))?;
    Ok((shown, text))
}

/// Each line that is not blank or a comment, with its number.
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

fn read_user_file(args: &[&str], files: &mut FileReader<'_>) -> Result<Option<Arc<Users>>, String> {
    let [path] = args else {
        return Err("expected AuthUserFile FILE".into());
    };
    let (path, text) = read_lines(path, files)?;
    let mut hashes = HashMap::new();
    let mut decoy = None;
    for (n, line) in content_lines(&text) {
        let Some((user, hash)) = line.split_once(':').filter(|(u, _)| !u.is_empty()) else {
            return Err(format!("{path}:{n}: expected user:hash"));
        };
        // Never quote the hash: the file is a secret.
        let hash = Hash::parse(hash).map_err(|e| format!("{path}:{n}: user {user:?}: {e}"))?;
        if decoy.as_ref().is_none_or(|d: &Hash| hash.cost() > d.cost()) {
            decoy = Some(hash.clone());
        }
        if hashes.insert(user.to_string(), hash).is_some() {
            return Err(format!("{path}:{n}: user {user:?} is listed twice"));
        }
    }
    let decoy = decoy.ok_or_else(|| format!("{path}: no users"))?;
    Ok(Some(Arc::new(Users { hashes, decoy })))
}

/// An `AuthGroupFile`: each group's members.
#[derive(Debug)]
struct Groups(HashMap<String, Vec<String>>);

fn read_group_file(
    args: &[&str],
    files: &mut FileReader<'_>,
) -> Result<Option<Arc<Groups>>, String> {
    let [path] = args else {
        return Err("expected AuthGroupFile FILE".into());
    };
    let (path, text) = read_lines(path, files)?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for (n, line) in content_lines(&text) {
        let Some((group, members)) = line.split_once(':').filter(|(g, _)| !g.trim().is_empty())
        else {
            return Err(format!("{path}:{n}: expected group: user user…"));
        };
        groups
            .entry(group.trim().to_string())
            .or_default()
            .extend(members.split_whitespace().map(str::to_string));
    }
    Ok(Some(Arc::new(Groups(groups))))
}

/// Every scope with a `Require` has what it needs.
fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    for server in &init.config.servers {
        for node in &server.locations {
            let config = &node.config;
            let Some(require) = config.get(&REQUIRE) else {
                continue;
            };
            let at = format!(
                "<Location {}> of the <Server> at {}:{}",
                node.prefix, server.file, server.line
            );
            if config.get(&AUTH_USER_FILE).is_none() {
                return Err(format!("{at}: Require needs an AuthUserFile"));
            }
            if matches!(require, Require::Groups(_)) && config.get(&AUTH_GROUP_FILE).is_none() {
                return Err(format!("{at}: Require group needs an AuthGroupFile"));
            }
        }
    }
    Ok(Rc::new(AuthBasic {
        failures: RefCell::new(HashMap::new()),
        checking: RefCell::new(HashMap::new()),
    }))
}

/// A client's recent attempts: failures, and checks still running.
#[derive(Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
}

struct AuthBasic {
    /// By [`client_key`].
    failures: RefCell<HashMap<IpAddr, Failures>>,
    /// Password checks running or waiting, by [`client_key`]: only
    /// clients with one in flight, so bounded by the connections.
    checking: RefCell<HashMap<IpAddr, usize>>,
}

/// One password check of a client, counted in [`AuthBasic::checking`]
/// for as long as this lives: a request dropped while it waits (its
/// client went away) stops counting.
struct Checking<'a> {
    plugin: &'a AuthBasic,
    key: IpAddr,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut checking = self.plugin.checking.borrow_mut();
        if let Some(n) = checking.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                checking.remove(&self.key);
            }
        }
    }
}

/// Who failures are counted against: an IPv4 address, or an IPv6
/// address's /64. One subscriber usually gets a whole /64 and can pick
/// any address in it, so counting each /128 apart would give it 2^64
/// times `AuthFailureLimit`.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u64::MAX as u128)).into()),
    }
}

impl AuthBasic {
    /// A check for `key`, unless it has [`CHECKS_PER_CLIENT`] in flight.
    fn begin_check(&self, key: IpAddr) -> Option<Checking<'_>> {
        let mut checking = self.checking.borrow_mut();
        let n = checking.entry(key).or_insert(0);
        if *n >= CHECKS_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(Checking { plugin: self, key })
    }

    /// How long `key` must still wait, if it has used up its attempts.
    fn blocked_for(&self, key: IpAddr, limit: &FailureLimit) -> Option<Duration> {
        let failures = self.failures.borrow();
        let f = failures.get(&key)?;
        let left = limit.period.checked_sub(f.since.elapsed())?;
        (f.count >= limit.count).then_some(left)
    }

    /// Count an attempt by `key` (before it is checked, so that attempts
    /// made in parallel count too).
    fn attempt(&self, key: IpAddr, limit: &FailureLimit) {
        let mut failures = self.failures.borrow_mut();
        let now = Instant::now();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&key) {
            failures.retain(|_, f| now.duration_since(f.since) < limit.period);
            if failures.len() >= MAX_TRACKED {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let f = failures.entry(key).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(f.since) >= limit.period {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count += 1;
    }

    /// A good password, or a check that never ran: that attempt is taken
    /// back, and only that one. The failures before it stay until their
    /// period ends (as fail2ban's do): were a success to clear them, one
    /// account of one's own would buy unlimited guesses at everyone
    /// else's, and a user's own success to clear only that user's
    /// failures would let a guesser behind the same address go on for as
    /// long as the real user's browser keeps sending good credentials.
    fn take_back(&self, key: IpAddr) {
        let mut failures = self.failures.borrow_mut();
        if let Some(f) = failures.get_mut(&key) {
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                failures.remove(&key);
            }
        }
    }
}

/// 401 with the challenge for `ctx`'s realm.
fn challenge(ctx: &mut Context) -> Outcome {
    let realm = ctx.config().get(&AUTH_NAME);
    let realm = realm.replace('\\', "\\\\").replace('"', "\\\"");
    ctx.response.headers.set(
        "WWW-Authenticate",
        format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
    );
    Outcome::Status(401)
}

/// The user and password of a `Basic` Authorization value; None when it is
/// some other scheme, Err when it is Basic but malformed.
pub(crate) fn credentials(value: &[u8]) -> Option<Result<(String, String), &'static str>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = match base64::engine::general_purpose::STANDARD.decode(token.trim()) {
        Ok(d) => d,
        Err(_) => return Some(Err("credentials that are not base64")),
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return Some(Err("credentials that are not UTF-8"));
    };
    match text.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Some(Ok((user.to_string(), password.to_string())))
        }
        _ => Some(Err("credentials without user:password")),
    }
}

#[axkit::plugin]
impl Plugin for AuthBasic {
    fn authentication<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let config = ctx.config();
        if config.get(&REQUIRE).is_none() {
            return Outcome::Declined.into();
        }
        let Some(users) = config.get(&AUTH_USER_FILE).clone() else {
            return Outcome::Error("Require without AuthUserFile".into()).into();
        };
        let limit = config.get(&AUTH_FAILURE_LIMIT);
        let ip = ctx.client().addr.ip();
        let key = client_key(ip);
        if let Some(wait) = self.blocked_for(key, limit) {
            let msg = format!(
                "auth_basic: {ip} {}: too many failed attempts, 429 for {}s more",
                ctx.request.request_line(),
                wait.as_secs() + 1
            );
            ctx.log(Level::Info, &msg);
            ctx.response
                .headers
                .set("Retry-After", (wait.as_secs() + 1).to_string());
            return Outcome::Status(429).into();
        }
        let given = ctx
            .request
            .header_bytes("Authorization")
            .and_then(credentials);
        let (user, password) = match given {
            None => return challenge(ctx).into(),
            Some(Err(why)) => {
                self.attempt(key, limit);
                let msg = format!(
                    "auth_basic: {ip} {}: malformed Authorization: {why}",
                    ctx.request.request_line()
                );
                ctx.log(Level::Info, &msg);
                return challenge(ctx).into();
            }
            Some(Ok(pair)) => pair,
        };
        let Some(checking) = self.begin_check(key) else {
            let msg = format!(
                "auth_basic: {ip} {}: {CHECKS_PER_CLIENT} password checks of this client \
                 already in flight, 429",
                ctx.request.request_line()
            );
            ctx.log(Level::Info, &msg);
            ctx.response.headers.set("Retry-After", "1");
            return Outcome::Status(429).into();
        };
        self.attempt(key, limit);
        hook(async move {
            let _checking = checking;
            let known = users.hashes.contains_key(&user);
            let check = {
                let users = users.clone();
                let user = user.clone();
                move || {
                    let hash = users.hashes.get(&user).unwrap_or(&users.decoy);
                    hash.verify(password.as_bytes())
                }
            };
            let max_waiting = hashing::slots() * WAITING_PER_CORE;
            let Ok(matched) = hashing::run_or_refuse(max_waiting, check).await else {
                self.take_back(key);
                let msg = format!(
                    "auth_basic: {ip} {}: {max_waiting} password checks already waiting, 503",
                    ctx.request.request_line()
                );
                ctx.log(Level::Info, &msg);
                ctx.response.headers.set("Retry-After", "1");
                return Outcome::Status(503);
            };
            if known && matched {
                self.take_back(key);
                ctx.user = Some(user);
                ctx.auth_type = Some("Basic".into());
                return Outcome::Ok;
            }
            let why = if known {
                "wrong password"
            } else {
                "unknown user"
            };
            let msg = format!(
                "auth_basic: {ip} {}: user {user:?}: {why}",
                ctx.request.request_line()
            );
            ctx.log(Level::Info, &msg);
            challenge(ctx)
        })
    }

    fn authorization<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let config = ctx.config();
        let Some(require) = config.get(&REQUIRE) else {
            return Outcome::Declined.into();
        };
        let Some(user) = ctx.user.as_deref() else {
            return challenge(ctx).into();
        };
        let allowed = match require {
            Require::ValidUser => true,
            Require::Users(names) => names.iter().any(|n| n == user),
            Require::Groups(names) => config.get(&AUTH_GROUP_FILE).as_ref().is_some_and(|g| {
                names
                    .iter()
                    .any(|n| g.0.get(n).is_some_and(|m| m.iter().any(|u| u == user)))
            }),
        };
        if allowed {
            return Outcome::Declined.into();
        }
        let msg = format!(
            "auth_basic: {} {}: user {user:?} is not allowed by Require",
            ctx.client().addr.ip(),
            ctx.request.request_line()
        );
        ctx.log(Level::Info, &msg);
        challenge(ctx).into()
    }
}

#[cfg(test)]
mod tests {
    use super::{credentials, parse_require, Hash, Require};

    #[test]
    fn hashes_of_each_kind_verify() {
        let bcrypt = bcrypt::hash("open sesame", 4).unwrap();
        let sha512 = "$6$saltsalt$e/5XKibXPLqVcfjpD.ouauaJrAOL5V0uo80Lt7n7EbRdRiCx3HbQ90yjOHr.G0T.mx79PEMRy8nmtr0qSYhQp1";
        let sha256 = "$5$saltsalt$yrhPKxCqiWcCE9h0g86j6Ugz7SDFdFm.BjU.d8RaQnC";
        let argon2 = {
            use argon2::password_hash::PasswordHasher;
            argon2::Argon2::default()
                .hash_password_with_salt(b"open sesame", b"saltsaltsaltsalt")
                .unwrap()
                .to_string()
        };
        for text in [bcrypt.as_str(), sha512, sha256, argon2.as_str()] {
            let hash = Hash::parse(text).unwrap();
            assert!(hash.verify(b"open sesame"), "{text}");
            assert!(!hash.verify(b"open sesame!"), "{text}");
            assert!(!hash.verify(b""), "{text}");
        }
    }

    #[test]
    fn weak_and_malformed_hashes_are_refused() {
        for text in [
            "$apr1$salt$abcdefghijklmnopqrstuv",
            "$1$salt$abcdefghijklmnopqrstuv",
            "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=",
            "plaintext",
            "abJnggxhB/yWI",
            "$2y$10$short",
            "$6$",
            "$argon2id$nonsense",
        ] {
            assert!(Hash::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn authorization_values() {
        assert_eq!(
            credentials(b"Basic YWRhOm9wZW4gc2VzYW1l"),
            Some(Ok(("ada".into(), "open sesame".into())))
        );
        assert_eq!(
            credentials(b"basic  YWRhOmE6Yg== "),
            Some(Ok(("ada".into(), "a:b".into())))
        );
        assert_eq!(credentials(b"Bearer abc"), None);
        assert!(matches!(credentials(b"Basic !!!"), Some(Err(_))));
        assert!(matches!(credentials(b"Basic YWRh"), Some(Err(_))));
        assert!(matches!(credentials(b"Basic OnB3"), Some(Err(_))));
        assert!(matches!(credentials(b"Basic /w=="), Some(Err(_))));
    }

    #[test]
    fn require_lines() {
        assert_eq!(parse_require(&["valid-user"]), Ok(Some(Require::ValidUser)));
        assert_eq!(
            parse_require(&["user", "ada", "grace"]),
            Ok(Some(Require::Users(vec!["ada".into(), "grace".into()])))
        );
        assert_eq!(
            parse_require(&["group", "admins"]),
            Ok(Some(Require::Groups(vec!["admins".into()])))
        );
        for bad in [
            &[][..],
            &["user"],
            &["valid-user", "x"],
            &["ip", "10.0.0.1"],
        ] {
            assert!(parse_require(bad).is_err(), "{bad:?}");
        }
    }
}
