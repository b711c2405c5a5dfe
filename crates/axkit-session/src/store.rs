//! Where server-side sessions live: a shared zone, a Redis database or an
//! SQLite database, each holding a session's record under its id, with
//! the session's remaining life as the entry's expiry. Only sessions that
//! hold data have a record: an empty one is its cookie's signed id alone.
//!
//! - Shared zone: key `axkit_session:ID` (ID in base64url), the record as
//!   a string value, the zone's TTL. A full zone evicts its least recently
//!   used entries, sessions among them: give sessions a zone of their own
//!   (`SharedZone sessions 64M`, `SessionStore shared:sessions`).
//! - Redis: the same key, `SET key record PX ms`.
//! - SQLite: the table `axkit_sessions (id TEXT PRIMARY KEY, data BLOB,
//!   expires INTEGER)` (milliseconds since 1970, NULL: never), made on
//!   first use; each worker deletes the expired rows at most once a
//!   minute, when it writes one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use axkit_db::redis::{cmd, Value as RedisValue};
use axkit_db::{Databases, Redis, Sqlite};
use axkit_shared::{Options, Value, Zone};

use axkit::config::{Config, ConfigError};

use crate::config::{Store, SESSION_STORE};
use crate::Error;

/// The bytes of a session id.
pub(crate) const ID_LEN: usize = 24;

pub(crate) type Id = [u8; ID_LEN];

/// How a record is written.
#[derive(Clone, Copy)]
pub(crate) enum Put<'a> {
    /// A new id: there must be no record under it. A session's first
    /// record always has one, even when a cookie named the session before
    /// (one without data gets a new id with its first data), so no record
    /// is ever written under an id that went out without one.
    Create,
    /// A session read from the store and changed: only over a record still
    /// there, so that a session ended meanwhile (logged out, regenerated
    /// or expired) is not brought back. Between two requests that both
    /// change it, the last to write wins.
    Update,
    /// A session only read, written to push its idle timeout back: only
    /// over the very record it read (these bytes), so that it never undoes
    /// another request's change.
    Touch(&'a [u8]),
}

/// What a [`Backend::put`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    Yes,
    /// No record under the id any more: the session ended meanwhile.
    Gone,
    /// A touch found the record changed by another request (which pushed
    /// the timeout back itself).
    Changed,
}

/// A touch in Redis: `SET` only over the record read (ARGV[1]); 1 written,
/// 2 changed, 0 gone. ARGV[3] is the life in ms, 0 for none.
const TOUCH_SCRIPT: &str = "local cur = redis.call('GET', KEYS[1]) \
    if not cur then return 0 end \
    if cur ~= ARGV[1] then return 2 end \
    if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2]) \
    else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end \
    return 1";

/// A new id that is somebody's already: 192 random bits make it one
/// chance in 2^96 even after 2^48 sessions, so something is wrong.
fn id_taken() -> Error {
    Error::Value("a new session id is taken already (is the random source broken?)".into())
}

/// The key a session is kept under in a zone or in Redis.
fn key(id: &Id) -> String {
    format!("axkit_session:{}", crate::crypto::base64url(id))
}

thread_local! {
    /// The databases of this thread's config, when its session stores
    /// use some (set as the config loads).
    static DATABASES: RefCell<Option<Rc<Databases>>> = const { RefCell::new(None) };
    /// The SQLite databases whose table this worker has made.
    static TABLES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// When this worker last deleted expired SQLite rows.
    static PURGED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The config that loaded has these databases.
fn set_databases(databases: Option<Rc<Databases>>) {
    DATABASES.set(databases);
}

fn databases() -> Result<Rc<Databases>, Error> {
    DATABASES.with_borrow(Clone::clone).ok_or_else(|| {
        Error::NotConfigured(
            "no databases: register axkit_db::DbSource and Database NAME URL".into(),
        )
    })
}

/// A store a request's session uses.
pub(crate) enum Backend {
    Shared(Zone),
    Redis(Redis),
    Sqlite(Sqlite),
}

impl Backend {
    /// The store behind `store`; None for cookie sessions.
    pub fn of(store: &Store) -> Result<Option<Backend>, Error> {
        Ok(Some(match store {
            Store::Cookie => return Ok(None),
            Store::Shared(zone) => Backend::Shared(Zone::open(zone)?),
            Store::Redis(name) => Backend::Redis(databases()?.redis(name)?),
            Store::Sqlite(name) => Backend::Sqlite(databases()?.sqlite(name)?),
        }))
    }

    /// The record kept for `id`, if it is there and has not expired.
    pub async fn get(&self, id: &Id) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Backend::Shared(zone) => Ok(zone
                .get(key(id))?
                .and_then(|e| e.value.as_bytes().map(<[u8]>::to_vec))),
            Backend::Redis(db) => match db.cmd(cmd("GET").arg(key(id))).await? {
                RedisValue::BulkString(bytes) => Ok(Some(bytes)),
                _ => Ok(None),
            },
            Backend::Sqlite(db) => {
                let id = crate::crypto::base64url(id);
                let now = crate::session::now_ms() as i64;
                ensure_table(db).await?;
                Ok(db
                    .call(move |conn| {
                        let mut st = conn.prepare_cached(
                            "SELECT data FROM axkit_sessions \
                             WHERE id = ?1 AND (expires IS NULL OR expires > ?2)",
                        )?;
                        let mut rows = st.query(axkit_db::rusqlite::params![id, now])?;
                        match rows.next()? {
                            Some(row) => row.get(0).map(Some),
                            None => Ok(None),
                        }
                    })
                    .await?)
            }
        }
    }

    /// Keep `record` for `id`, for `ttl` (None: until deleted), as `how`
    /// says; whether it was.
    pub async fn put(
        &self,
        id: &Id,
        record: Vec<u8>,
        ttl: Option<Duration>,
        how: Put<'_>,
    ) -> Result<Stored, Error> {
        match self {
            Backend::Shared(zone) => {
                let options = Options {
                    ttl,
                    ..Options::default()
                };
                let value = Value::Bytes(record);
                let done = match how {
                    Put::Create => zone.add(key(id), value, options),
                    Put::Update => zone.replace(key(id), value, options),
                    Put::Touch(read) => {
                        zone.cas(key(id), &Value::Bytes(read.to_vec()), value, options)
                    }
                };
                match done {
                    Ok(()) => Ok(Stored::Yes),
                    Err(axkit_shared::Error::NotFound) => Ok(Stored::Gone),
                    Err(axkit_shared::Error::Changed) => Ok(Stored::Changed),
                    Err(e) => Err(e.into()),
                }
            }
            Backend::Redis(db) => {
                let ttl = ttl.map_or(0, |t| t.as_millis().max(1) as u64);
                let reply = match how {
                    Put::Touch(read) => {
                        let mut eval = cmd("EVAL");
                        eval.arg(TOUCH_SCRIPT)
                            .arg(1)
                            .arg(key(id))
                            .arg(read)
                            .arg(record)
                            .arg(ttl);
                        return match db.cmd(&eval).await? {
                            RedisValue::Int(1) => Ok(Stored::Yes),
                            RedisValue::Int(2) => Ok(Stored::Changed),
                            _ => Ok(Stored::Gone),
                        };
                    }
                    Put::Create | Put::Update => {
                        let mut set = cmd("SET");
                        set.arg(key(id)).arg(record);
                        if ttl > 0 {
                            set.arg("PX").arg(ttl);
                        }
                        set.arg(if matches!(how, Put::Create) {
                            "NX"
                        } else {
                            "XX"
                        });
                        db.cmd(&set).await?
                    }
                };
                // `OK`, or nil when the condition did not hold.
                Ok(match (reply, how) {
                    (RedisValue::Nil, Put::Create) => return Err(id_taken()),
                    (RedisValue::Nil, _) => Stored::Gone,
                    _ => Stored::Yes,
                })
            }
            Backend::Sqlite(db) => {
                let id = crate::crypto::base64url(id);
                let now = crate::session::now_ms();
                let expires = ttl.map(|t| now.saturating_add(t.as_millis() as u64) as i64);
                let purge = PURGED
                    .get()
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
                if purge {
                    PURGED.set(Some(Instant::now()));
                }
                let read = match how {
                    Put::Touch(read) => Some(read.to_vec()),
                    _ => None,
                };
                let create = matches!(how, Put::Create);
                ensure_table(db).await?;
                let stored = db
                    .call(move |conn| {
                        use axkit_db::rusqlite::{params, OptionalExtension};
                        let now = now as i64;
                        let stored = if create {
                            conn.prepare_cached(
                                "INSERT INTO axkit_sessions (id, data, expires) VALUES (?1, ?2, ?3)",
                            )?
                            .execute(params![id, record, expires])?;
                            Stored::Yes
                        } else {
                            // Only a record still there (and, for a touch,
                            // still as it was read).
                            let changed = conn
                                .prepare_cached(
                                    "UPDATE axkit_sessions SET data = ?2, expires = ?3 \
                                     WHERE id = ?1 AND (expires IS NULL OR expires > ?4) \
                                     AND (?5 IS NULL OR data = ?5)",
                                )?
                                .execute(params![id, record, expires, now, read])?;
                            match (changed, &read) {
                                (1.., _) => Stored::Yes,
                                (0, None) => Stored::Gone,
                                (0, Some(_)) => {
                                    let there: Option<i64> = conn
                                        .prepare_cached(
                                            "SELECT 1 FROM axkit_sessions WHERE id = ?1 \
                                             AND (expires IS NULL OR expires > ?2)",
                                        )?
                                        .query_row(params![id, now], |row| row.get(0))
                                        .optional()?;
                                    match there {
                                        Some(_) => Stored::Changed,
                                        None => Stored::Gone,
                                    }
                                }
                            }
                        };
                        if purge {
                            conn.prepare_cached(
                                "DELETE FROM axkit_sessions WHERE expires IS NOT NULL AND expires <= ?1",
                            )?
                            .execute([now])?;
                        }
                        Ok(stored)
                    })
                    .await?;
                Ok(stored)
            }
        }
    }

    /// Forget `id`.
    pub async fn delete(&self, id: &Id) -> Result<(), Error> {
        match self {
            Backend::Shared(zone) => {
                zone.delete(key(id))?;
                Ok(())
            }
            Backend::Redis(db) => {
                db.cmd(cmd("DEL").arg(key(id))).await?;
                Ok(())
            }
            Backend::Sqlite(db) => {
                let id = crate::crypto::base64url(id);
                ensure_table(db).await?;
                db.call(move |conn| {
                    conn.prepare_cached("DELETE FROM axkit_sessions WHERE id = ?1")?
                        .execute([id])?;
                    Ok(())
                })
                .await?;
                Ok(())
            }
        }
    }
}

/// Make the sessions' table in `db`, once per worker.
async fn ensure_table(db: &Sqlite) -> Result<(), Error> {
    let name = db.name().to_string();
    if TABLES.with_borrow(|t| t.contains(&name)) {
        return Ok(());
    }
    db.batch(
        "CREATE TABLE IF NOT EXISTS axkit_sessions \
         (id TEXT PRIMARY KEY, data BLOB NOT NULL, expires INTEGER)",
    )
    .await?;
    TABLES.with_borrow_mut(|t| t.push(name));
    Ok(())
}

/// Check the config's stores: each `SessionStore` names a declared zone,
/// or a `Database` of its kind; and keep the databases for this worker.
pub(crate) fn configure(config: &Config) -> Result<(), Vec<ConfigError>> {
    let mut databases = None;
    let mut errors = Vec::new();
    for scope in config.scopes() {
        let store = scope.get(&SESSION_STORE);
        let problem = match store {
            Store::Cookie => None,
            Store::Shared(zone) => (!axkit_shared::zone_declared(config, zone)).then(|| {
                format!("no shared zone `{zone}` (declare it with `SharedZone {zone} SIZE`)")
            }),
            Store::Redis(name) | Store::Sqlite(name) => {
                let dbs = match &databases {
                    Some(dbs) => Ok(Rc::clone(dbs)),
                    None => Databases::of(config),
                };
                match dbs {
                    Ok(dbs) => {
                        let found = match store {
                            Store::Redis(_) => dbs.redis(name).err(),
                            _ => dbs.sqlite(name).err(),
                        };
                        databases = Some(dbs);
                        found.map(|e| e.to_string())
                    }
                    Err(e) => Some(e),
                }
            }
        };
        if let Some(message) = problem {
            let written = scope.settings_of(&SESSION_STORE).last();
            let error = ConfigError {
                file: written.map_or(String::new(), |s| s.file.to_string()),
                line: written.map_or(0, |s| s.line),
                directive: Some(SESSION_STORE.name().to_string()),
                plugin: Some("sessions".into()),
                message,
            };
            if !errors.contains(&error) {
                errors.push(error);
            }
        }
    }
    set_databases(databases);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
