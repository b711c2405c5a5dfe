//! SQLite through rusqlite (SQLite built in: nothing to install). SQLite's
//! calls block, so they run on tokio's blocking threads, never on the
//! event loop: each call takes one of the database's `pool=N` connections
//! (so at most N threads work for it at once), runs there, and gives the
//! connection back. Connections are opened in WAL mode (readers never wait
//! for a writer), with `busy_timeout` set to the database's `timeout=`,
//! `synchronous=NORMAL` (durable across a crash of the server, may lose
//! the last transactions to a power cut, as WAL mode allows) and foreign
//! keys enforced; statements are prepared once per connection and kept.
//!
//! A call that runs past `timeout=` is interrupted (`sqlite3_interrupt`)
//! and its connection closed.

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use rusqlite::{Connection, InterruptHandle};

pub use rusqlite::types::Value as SqlValue;

use crate::config::{Kind, Spec, Target};
use crate::error::{over_max_result, Error, ErrorKind};
use crate::pool::{Connector, Pool, Pooled};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 256;

/// An SQLite database of this worker: cheap to clone, every clone sharing
/// one pool.
#[derive(Clone)]
pub struct Sqlite {
    pool: Rc<Pool<SqliteConnector>>,
}

pub(crate) struct SqliteConnector;

impl Connector for SqliteConnector {
    type Conn = Connection;

    async fn connect(&self, spec: &Spec) -> Result<Connection, Error> {
        let Target::Sqlite(path) = &spec.target else {
            unreachable!("an sqlite pool of another database");
        };
        let (path, busy) = (path.clone(), spec.timeout);
        tokio::task::spawn_blocking(move || open(path, busy))
            .await
            .map_err(|e| panicked(spec, &e))?
            .map_err(|e| failed(spec, &e))
    }

    fn alive(_: &Connection) -> bool {
        true
    }
}

fn open(path: PathBuf, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get::<_, String>(0))?;
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
    Ok(conn)
}

fn failed(spec: &Spec, e: &rusqlite::Error) -> Error {
    use rusqlite::ffi::ErrorCode as C;
    let code = match e {
        // A statement SQLite could not parse: its error is set apart.
        rusqlite::Error::SqlInputError { error, .. } => Some(error.code),
        other => other.sqlite_error_code(),
    };
    let kind = match code {
        Some(C::OperationInterrupted) => ErrorKind::Timeout,
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::CannotOpen
            | C::SystemIoFailure
            | C::DiskFull
            | C::OutOfMemory
            | C::NotADatabase
            | C::DatabaseCorrupt,
        ) => ErrorKind::Unavailable,
        Some(_) => ErrorKind::Query,
        None => ErrorKind::Usage,
    };
    Error::new(&spec.name, Kind::Sqlite, kind, e.to_string())
}

fn panicked(spec: &Spec, e: &tokio::task::JoinError) -> Error {
    Error::new(
        &spec.name,
        Kind::Sqlite,
        ErrorKind::Usage,
        format!("the call on the blocking thread failed: {e}"),
    )
}

/// What a query returned: its column names, and its rows as values in
/// column order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    columns: Vec<String>,
    values: Vec<SqlValue>,
    count: usize,
}

impl Rows {
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Row `i`'s values, in column order.
    pub fn row(&self, i: usize) -> Option<&[SqlValue]> {
        let n = self.columns.len();
        (i < self.count).then(|| &self.values[i * n..(i + 1) * n])
    }

    /// Every row's values.
    pub fn iter(&self) -> impl Iterator<Item = &[SqlValue]> {
        (0..self.count).filter_map(|i| self.row(i))
    }
}

/// What a statement that returns no rows did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Executed {
    /// Rows inserted, updated or deleted.
    pub changes: u64,
    /// The rowid of the connection's last `INSERT`.
    pub last_insert_rowid: i64,
}

/// The rows of `sql`, whose values may hold at most `max` bytes (0: no
/// limit): past it, an error rather than a worker grown without bound.
fn query_rows(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
    max: usize,
) -> rusqlite::Result<Rows> {
    let mut statement = conn.prepare_cached(sql)?;
    let columns: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(String::from)
        .collect();
    let n = columns.len();
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    let mut out = Rows {
        columns,
        ..Rows::default()
    };
    let mut size = 0usize;
    while let Some(row) = rows.next()? {
        for i in 0..n {
            let value: SqlValue = row.get(i)?;
            size += std::mem::size_of::<SqlValue>()
                + match &value {
                    SqlValue::Text(t) => t.len(),
                    SqlValue::Blob(b) => b.len(),
                    _ => 0,
                };
            out.values.push(value);
        }
        out.count += 1;
        if max != 0 && size > max {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
                Some(over_max_result(max, out.count)),
            ));
        }
    }
    Ok(out)
}

fn execute(conn: &Connection, sql: &str, params: &[SqlValue]) -> rusqlite::Result<Executed> {
    let changes = conn
        .prepare_cached(sql)?
        .execute(rusqlite::params_from_iter(params))?;
    Ok(Executed {
        changes: changes as u64,
        last_insert_rowid: conn.last_insert_rowid(),
    })
}

/// Interrupts the statement of a call given up (its future dropped).
struct Interrupt(Option<InterruptHandle>);

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.interrupt();
        }
    }
}

/// Run `f` with a lent connection on a blocking thread: inside a
/// transaction of [`SqliteTransaction`]'s (`in_transaction`), or not, and
/// then it must not leave one open.
async fn call_on<T, F>(
    c: &mut Pooled<SqliteConnector>,
    in_transaction: bool,
    f: F,
) -> Result<T, Error>
where
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let spec = c.spec().clone();
    let Some(mut conn) = c.take() else {
        return Err(Error::new(
            &spec.name,
            Kind::Sqlite,
            ErrorKind::Unavailable,
            "the transaction was broken off by an earlier timeout",
        ));
    };
    let mut interrupt = Interrupt(Some(conn.get_interrupt_handle()));
    let job = tokio::task::spawn_blocking(move || {
        let result = f(&mut conn);
        // A `BEGIN` through a plain call would hold the write lock, and
        // keep every later statement of whoever borrows the connection
        // uncommitted: undone here, and refused.
        let left_open = !in_transaction && !conn.is_autocommit();
        if left_open {
            let _ = conn.execute_batch("ROLLBACK");
        }
        (conn, result, left_open)
    });
    let (conn, result, left_open) = job.await.map_err(|e| panicked(&spec, &e))?;
    interrupt.0 = None;
    c.put(conn);
    if left_open {
        return Err(Error::new(
            &spec.name,
            Kind::Sqlite,
            ErrorKind::Usage,
            "the statement left a transaction open, rolled back: each call may run on another \
             connection of the pool, so make transactions with begin()",
        ));
    }
    result.map_err(|e| failed(&spec, &e))
}

impl Sqlite {
    pub(crate) fn new(spec: Spec) -> Sqlite {
        Sqlite {
            pool: Pool::new(spec, SqliteConnector),
        }
    }

    /// The database's name in the config.
    pub fn name(&self) -> &str {
        &self.pool.spec.name
    }

    /// Run `f` with a connection of the pool, on a blocking thread: any
    /// rusqlite code, with its typed rows.
    ///
    /// ```no_run
    /// # async fn f(db: axkit_db::Sqlite) -> Result<(), axkit_db::Error> {
    /// let titles: Vec<String> = db
    ///     .call(|conn| {
    ///         let mut st = conn.prepare_cached("SELECT title FROM posts WHERE draft = ?1")?;
    ///         let rows = st.query_map([false], |row| row.get(0))?;
    ///         rows.collect()
    ///     })
    ///     .await?;
    /// # let _ = titles; Ok(()) }
    /// ```
    pub async fn call<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.pool
            .within(async {
                let mut c = self.pool.get().await?;
                call_on(&mut c, false, f).await
            })
            .await
    }

    /// The rows `sql` returns, `params` bound to `?1`, `?2`… (or `?`).
    pub async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Rows, Error> {
        let sql = sql.to_string();
        let max = self.pool.spec.max_result;
        self.call(move |conn| query_rows(conn, &sql, &params, max))
            .await
    }

    /// Run `sql` (an `INSERT`, `UPDATE`…): what it changed.
    pub async fn execute(&self, sql: &str, params: Vec<SqlValue>) -> Result<Executed, Error> {
        let sql = sql.to_string();
        self.call(move |conn| execute(conn, &sql, &params)).await
    }

    /// Run several statements without parameters (`CREATE TABLE …;
    /// CREATE INDEX …`), for setting up a schema.
    pub async fn batch(&self, sql: &str) -> Result<(), Error> {
        let sql = sql.to_string();
        self.call(move |conn| conn.execute_batch(&sql)).await
    }

    /// Start a transaction (`BEGIN IMMEDIATE`: it takes the write lock
    /// now, so two transactions never deadlock upgrading to it) on a
    /// connection of its own. It ends with
    /// [`commit`](SqliteTransaction::commit) or
    /// [`rollback`](SqliteTransaction::rollback); dropped before either,
    /// it is rolled back.
    pub async fn begin(&self) -> Result<SqliteTransaction, Error> {
        self.pool
            .within(async {
                let mut c = self.pool.get().await?;
                call_on(&mut c, true, |conn| conn.execute_batch("BEGIN IMMEDIATE")).await?;
                Ok(SqliteTransaction { conn: Some(c) })
            })
            .await
    }
}

/// An open transaction: each call as on [`Sqlite`], on the transaction's
/// connection.
pub struct SqliteTransaction {
    /// None once committed or rolled back.
    conn: Option<Pooled<SqliteConnector>>,
}

impl SqliteTransaction {
    async fn call<T, F>(&mut self, f: F) -> Result<T, Error>
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let c = self.conn.as_mut().expect("a transaction in use is open");
        let pool = c.pool().clone();
        pool.within(call_on(c, true, f)).await
    }

    pub async fn query(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Rows, Error> {
        let sql = sql.to_string();
        let max = self
            .conn
            .as_ref()
            .expect("a transaction in use is open")
            .spec()
            .max_result;
        self.call(move |conn| query_rows(conn, &sql, &params, max))
            .await
    }

    pub async fn execute(&mut self, sql: &str, params: Vec<SqlValue>) -> Result<Executed, Error> {
        let sql = sql.to_string();
        self.call(move |conn| execute(conn, &sql, &params)).await
    }

    /// Make the transaction's changes permanent.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.end("COMMIT").await
    }

    /// Undo the transaction's changes.
    pub async fn rollback(mut self) -> Result<(), Error> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, sql: &'static str) -> Result<(), Error> {
        let result = self.call(move |conn| conn.execute_batch(sql)).await;
        // Over if the statement ran: the connection goes back to the pool
        // (a failed COMMIT leaves the transaction open: dropped, it rolls
        // back).
        if result.is_ok() {
            self.conn = None;
        }
        result
    }
}

impl Drop for SqliteTransaction {
    /// Neither committed nor rolled back: roll back on a blocking thread
    /// and close the connection there.
    fn drop(&mut self) {
        let Some(mut c) = self.conn.take() else {
            return;
        };
        let Some(conn) = c.take() else {
            return;
        };
        let rollback = move || {
            let _ = conn.execute_batch("ROLLBACK");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(rollback)),
            Err(_) => rollback(),
        }
    }
}
