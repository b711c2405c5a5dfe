//! The directives: `Database NAME URL [pool=N] [timeout=D] [max_result=SIZE]`
//! and `DatabaseFile NAME FILE [pool=N] [timeout=D] [max_result=SIZE]` (the
//! URL read from FILE),
//! both global. The URL's scheme picks the server: `postgres://` or
//! `postgresql://` PostgreSQL, `redis://` or `redis+unix://` Redis,
//! `sqlite:PATH` SQLite. A relative PATH, like a relative FILE, is taken
//! from `ServerRoot` (the working directory without one).
//!
//! Everything that can be checked without a connection is checked when
//! the config loads (so `axkit --check` reports it): the name, the URL's
//! syntax and scheme, the client's own parse of it, the options. The URL
//! may hold a password: `Database` is a secret directive, and no message
//! here quotes the URL or any part of it but its scheme.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axkit::config::{parse, Args, FileReader, List, Scopes};

/// Connections per database and worker when `pool=` is not written.
pub const DEFAULT_POOL: usize = 4;
/// How long a call may take when `timeout=` is not written.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections `pool=` may ask for, per database and worker.
const MAX_POOL: usize = 1024;
/// The most a query's rows may hold when `max_result=` is not written
/// (as the HTTP client's body limit): a result is held whole in the
/// worker before a script sees it, outside `LuaMemoryLimit`.
pub const DEFAULT_MAX_RESULT: usize = 16 << 20;

/// `Database NAME URL [pool=N] [timeout=D] [max_result=SIZE]`, any number
/// of times.
pub static DATABASE: List<Spec> = List::parsed_with_files("Database", parse_database)
    .args(Args::Range(2, 5))
    .scopes(Scopes::GLOBAL)
    .secret()
    .doc(
        "A database: NAME, then a URL whose scheme picks the server (postgres://, redis://, \
         sqlite:PATH), then pool=N connections per worker (4), timeout=D per call (10s) and \
         max_result=SIZE, the most a query's rows, a Redis reply or a subscription's unread \
         messages may hold (16M; 0: no limit)",
    );

/// `DatabaseFile NAME FILE [options]`: the URL is FILE's first
/// line, read with the config (and kept in the snapshot the workers get).
pub static DATABASE_FILE: List<Spec> = List::parsed_with_files("DatabaseFile", parse_file)
    .args(Args::Range(2, 5))
    .scopes(Scopes::GLOBAL)
    .doc(
        "A database whose URL (a secret) is the first line of FILE; \
         otherwise as Database NAME URL [pool=N] [timeout=D] [max_result=SIZE]",
    );

/// Which server a database is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Redis,
    Sqlite,
}

impl Kind {
    /// As errors and the Lua globals name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            Kind::Sqlite => "sqlite",
        }
    }
}

/// Where a database is, as its client understands it.
#[derive(Clone)]
pub(crate) enum Target {
    Postgres(tokio_postgres::Config),
    Redis(redis::Client),
    Sqlite(PathBuf),
}

/// One declared database. Its `Debug` leaves the URL out.
#[derive(Clone)]
pub struct Spec {
    pub(crate) name: Arc<str>,
    pub(crate) kind: Kind,
    pub(crate) pool: usize,
    pub(crate) timeout: Duration,
    /// The most a query's rows may hold, in bytes of their values (0: no
    /// limit).
    pub(crate) max_result: usize,
    pub(crate) target: Target,
}

impl Spec {
    /// The name the config gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Connections per worker, at most.
    pub fn pool(&self) -> usize {
        self.pool
    }

    /// How long one call may take, waiting for a connection included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Spec {
    /// A Redis database that no `Database` line declares: a plugin's own
    /// (the cache's `CacheStore redis URL`), its URL checked as a
    /// `Database` line's is (an error never quotes it), with `pool`
    /// connections per worker and `timeout` per call, and a `Database`
    /// line's default `max_result=` (see [`with_max_result`](Self::with_max_result)).
    pub fn redis(name: &str, url: &str, pool: usize, timeout: Duration) -> Result<Spec, String> {
        check_name(name)?;
        if !url.to_ascii_lowercase().starts_with("redis") && !url.starts_with("unix:") {
            return Err("expected a redis:// URL".into());
        }
        let (kind, target) = target(url, &FileReader::new(None))?;
        Ok(Spec {
            name: Arc::from(name),
            kind,
            pool: pool.clamp(1, MAX_POOL),
            timeout,
            max_result: DEFAULT_MAX_RESULT,
            target,
        })
    }

    /// The same, with the most one result or reply may hold set to `max`
    /// bytes (0: no limit), as `max_result=` on a `Database` line.
    pub fn with_max_result(mut self, max: usize) -> Spec {
        self.max_result = max;
        self
    }
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("pool", &self.pool)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn parse_database(args: &[&str], files: &mut FileReader<'_>) -> Result<Spec, String> {
    let [name, url, options @ ..] = args else {
        return Err("expected Database NAME URL [pool=N] [timeout=D] [max_result=SIZE]".into());
    };
    spec(name, url, options, files)
}

fn parse_file(args: &[&str], files: &mut FileReader<'_>) -> Result<Spec, String> {
    let [name, path, options @ ..] = args else {
        return Err(
            "expected DatabaseFile NAME FILE [pool=N] [timeout=D] [max_result=SIZE]".into(),
        );
    };
    let (path, bytes) = files.required_file(path)?;
    let shown = path.display();
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{shown}: the URL in it is not UTF-8"))?;
    let url = text.lines().next().unwrap_or("").trim();
    spec(name, url, options, files).map_err(|e| format!("{shown}: {e}"))
}

/// A spec from its words (a `sqlite:` file as `files` resolves it);
/// errors never quote `url`.
fn spec(name: &str, url: &str, options: &[&str], files: &FileReader<'_>) -> Result<Spec, String> {
    check_name(name)?;
    let (kind, target) = target(url, files)?;
    let mut pool = DEFAULT_POOL;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut max_result = DEFAULT_MAX_RESULT;
    for option in options {
        match option.split_once('=') {
            Some(("pool", n)) => {
                pool = parse::integer(n)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=MAX_POOL).contains(n))
                    .ok_or_else(|| format!("pool: expected a count from 1 to {MAX_POOL}"))?;
            }
            Some(("timeout", d)) => {
                timeout = parse::duration(d)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or("timeout: expected a duration like 500ms, 10s or 1m")?;
            }
            Some(("max_result", size)) => {
                max_result = parse::size(size)
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("max_result: expected a size like 512k or 16M (0: no limit)")?;
            }
            _ => {
                return Err("unknown option; expected pool=N, timeout=D or max_result=SIZE".into())
            }
        }
    }
    Ok(Spec {
        name: Arc::from(name),
        kind,
        pool,
        timeout,
        max_result,
        target,
    })
}

/// Names are what scripts pass to `postgres.get(NAME)`: short and plain.
fn check_name(name: &str) -> Result<(), String> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if name.is_empty() || name.len() > 64 || !name.bytes().all(plain) {
        return Err(
            "a database name is 1 to 64 letters, digits, `_`, `-` or `.` (then the URL)".into(),
        );
    }
    Ok(())
}

/// The server a URL names, parsed by its client; a `sqlite:` file
/// relative to `ServerRoot` ([`FileReader::path`]).
fn target(url: &str, files: &FileReader<'_>) -> Result<(Kind, Target), String> {
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+'))
        .ok_or("expected a URL such as postgres://USER@HOST/DB, redis://HOST or sqlite:PATH")?;
    match scheme.as_str() {
        "postgres" | "postgresql" => {
            let config: tokio_postgres::Config =
                url.parse().map_err(|e: tokio_postgres::Error| {
                    let why =
                        std::error::Error::source(&e).map_or(e.to_string(), |c| c.to_string());
                    format!("not a PostgreSQL URL the client understands: {why}")
                })?;
            if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                return Err(
                    "sslmode=require: this build does not speak TLS to PostgreSQL; \
                            connect over loopback or a Unix socket"
                        .into(),
                );
            }
            Ok((Kind::Postgres, Target::Postgres(config)))
        }
        "redis" | "redis+unix" | "unix" | "rediss" => {
            if scheme == "rediss" {
                return Err("rediss://: this build does not speak TLS to Redis; \
                            connect over loopback or a Unix socket"
                    .into());
            }
            // The client ignores what it does not know (`password=` for
            // `pass=`): a URL that says more than it reads is refused.
            let query = url
                .split_once('?')
                .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                if !["db", "user", "pass", "protocol"].contains(&name) {
                    // The name is not quoted: it could be a password
                    // written where a name goes.
                    return Err(
                        "the Redis URL's query has a field the client does not read \
                                (it reads db=, user=, pass= (the password) and protocol=)"
                            .into(),
                    );
                }
            }
            let client = redis::Client::open(url)
                .map_err(|e| format!("not a Redis URL the client understands: {e}"))?;
            Ok((Kind::Redis, Target::Redis(client)))
        }
        "sqlite" => {
            let rest = &url["sqlite:".len()..];
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() || path.starts_with(':') {
                return Err("expected sqlite:PATH (a file; created if missing)".into());
            }
            Ok((Kind::Sqlite, Target::Sqlite(files.path(path))))
        }
        _ => Err(format!(
            "unknown scheme {scheme:?}; expected postgres://, postgresql://, redis://, \
             redis+unix:// or sqlite:"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Result<Spec, String> {
        parse_database(args, &mut FileReader::new(None))
    }

    fn err(args: &[&str]) -> String {
        parse(args).unwrap_err()
    }

    #[test]
    fn urls_pick_the_server_and_options_parse() {
        let pg = parse(&["main", "postgres://app:pw@127.0.0.1:5432/app"]).unwrap();
        assert_eq!(
            (pg.name(), pg.kind(), pg.pool(), pg.timeout()),
            ("main", Kind::Postgres, 4, DEFAULT_TIMEOUT)
        );
        let r = parse(&[
            "cache",
            "redis://127.0.0.1:6379/2",
            "pool=2",
            "timeout=500ms",
        ])
        .unwrap();
        assert_eq!(
            (r.kind(), r.pool(), r.timeout()),
            (Kind::Redis, 2, Duration::from_millis(500))
        );
        let s = parse(&["local", "sqlite:data/app.db", "timeout=2s"]).unwrap();
        assert!(matches!(&s.target, Target::Sqlite(p) if p == Path::new("data/app.db")));
        let abs = parse(&["abs", "sqlite:///var/lib/app.db"]).unwrap();
        assert!(matches!(&abs.target, Target::Sqlite(p) if p == Path::new("/var/lib/app.db")));
    }

    #[test]
    fn errors_never_quote_the_url() {
        let secret = "hunter2";
        let cases = [
            vec!["main", "ftp://u:hunter2@h/"],
            vec!["main", "hunter2"],
            vec!["main", "postgres://u:hunter2@h/db?bogus=1"],
            vec!["main", "postgres://u:hunter2@h/db?sslmode=require"],
            vec!["main", "rediss://u:hunter2@h/"],
            vec!["main", "redis://u:hunter2@h/notanumber"],
            vec!["main", "sqlite:"],
            vec!["main", "postgres://u:hunter2@h/db", "pool=0"],
            vec!["main", "postgres://u:hunter2@h/db", "timeout=soon"],
            vec!["main", "postgres://u:hunter2@h/db", "size=3"],
            vec!["bad name", "postgres://u:hunter2@h/db"],
        ];
        for args in cases {
            let e = err(&args);
            assert!(!e.contains(secret), "{args:?}: {e}");
        }
        assert_eq!(
            err(&["main", "ftp://u:hunter2@h/"]),
            "unknown scheme \"ftp\"; expected postgres://, postgresql://, redis://, redis+unix:// or sqlite:"
        );
        let ignored = err(&["main", "redis+unix:///run/r.sock?db=1&password=hunter2"]);
        assert!(
            ignored.contains("a field the client does not read"),
            "{ignored}"
        );
        assert!(!ignored.contains(secret), "{ignored}");
        assert!(err(&["main", "redis+unix:///run/r.sock?db=1&hunter2"]).contains("a field"));
        let bogus = err(&["main", "postgres://u:p@h/db?bogus=1"]);
        assert!(bogus.contains("unknown option `bogus`"), "{bogus}");
        assert!(err(&["main", "postgres://h/db", "pool=0"]).starts_with("pool:"));
    }

    #[test]
    fn a_plugins_own_redis() {
        let spec = Spec::redis("cache", "redis://127.0.0.1:6379/1", 16, DEFAULT_TIMEOUT).unwrap();
        assert_eq!((spec.kind(), spec.pool()), (Kind::Redis, 16));
        for url in ["postgres://u:hunter2@h/db", "redis://u:hunter2@h/x"] {
            let e = Spec::redis("cache", url, 1, DEFAULT_TIMEOUT).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
