//! PostgreSQL through tokio-postgres: a [`Postgres`] handle on a worker's
//! pool, statements prepared once per connection and kept (the cache is
//! keyed by the statement's text), parameters always bound (`$1`, `$2`…),
//! rows as tokio-postgres [`Row`]s (typed `row.get::<_, i32>("id")`, or
//! [`cell`](crate::pg_value::cell) for a script host), transactions that
//! roll back unless committed.
//!
//! No TLS: PostgreSQL is reached over loopback or a Unix socket
//! (`sslmode=require` is refused when the config loads).

use std::collections::HashMap;
use std::rc::Rc;

use futures_util::TryStreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{BorrowToSql, FromSql, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::config::{Kind, Spec, Target};
use crate::error::{over_max_result, Error, ErrorKind};
use crate::pool::{Connector, Pool, Pooled};

/// Prepared statements kept per connection; past this the cache starts
/// over (an application has a fixed set of statements; one that builds
/// them from data would otherwise grow it without end).
const MAX_STATEMENTS: usize = 512;

/// A PostgreSQL database of this worker: cheap to clone, every clone
/// sharing one pool. Each call takes a connection for its duration (a
/// slow statement holds only its own), and is bounded by the database's
/// `timeout=` (waiting for a connection included).
#[derive(Clone)]
pub struct Postgres {
    pool: Rc<Pool<PgConnector>>,
}

pub(crate) struct PgConnector;

pub(crate) struct PgConn {
    client: Client,
    statements: HashMap<Box<str>, Statement>,
    /// A statement is on its way or running: a connection given up now
    /// asks the server to cancel it.
    running: bool,
}

impl Connector for PgConnector {
    type Conn = PgConn;

    async fn connect(&self, spec: &Spec) -> Result<PgConn, Error> {
        let Target::Postgres(config) = &spec.target else {
            unreachable!("a postgres pool of another database");
        };
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| unavailable(spec, &e))?;
        // The connection's I/O runs as a task of its own; it ends when the
        // client is dropped or the server goes away (`is_closed`).
        tokio::spawn(connection);
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            running: false,
        })
    }

    fn alive(conn: &PgConn) -> bool {
        !conn.client.is_closed()
    }

    fn abandon(conn: PgConn) {
        if conn.running && !conn.client.is_closed() {
            let cancel = conn.client.cancel_token();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = cancel.cancel_query(NoTls).await;
                });
            }
        }
    }
}

impl PgConn {
    /// The prepared statement for `sql`, from the cache or prepared now.
    async fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.into(), statement.clone());
        Ok(statement)
    }
}

/// The connection could not be had or was lost.
fn unavailable(spec: &Spec, e: &tokio_postgres::Error) -> Error {
    let error = Error::new(
        &spec.name,
        Kind::Postgres,
        ErrorKind::Unavailable,
        message(e),
    );
    match e.code() {
        Some(code) => error.with_code(code.code()),
        None => error,
    }
}

/// What the server or the client said, without tokio-postgres's `db
/// error: ` prefix; the server's detail and hint after it.
fn message(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
    };
    let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str("; ");
        text.push_str(detail);
    }
    if let Some(hint) = db.hint() {
        text.push_str("; hint: ");
        text.push_str(hint);
    }
    text
}

/// A failed call on a live connection: the server refused the statement
/// (or cannot serve now), or a value could not be converted.
fn failed(spec: &Spec, e: &tokio_postgres::Error, closed: bool) -> Error {
    let Some(db) = e.as_db_error() else {
        let kind = if closed {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Usage
        };
        return Error::new(&spec.name, Kind::Postgres, kind, message(e));
    };
    let code = db.code().code();
    // Connection exceptions, insufficient resources, operator
    // intervention (shutdown, a cancelled statement): not the statement's
    // fault.
    let kind =
        if closed || code.starts_with("08") || code.starts_with("53") || code.starts_with("57") {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Query
        };
    Error::new(&spec.name, Kind::Postgres, kind, message(e)).with_code(code)
}

/// Run a statement on a lent connection; the connection is given back,
/// or discarded when it broke.
async fn run<T, F>(c: &mut Pooled<PgConnector>, sql: &str, op: F) -> Result<T, Error>
where
    F: AsyncFnOnce(&Client, Statement) -> Result<T, tokio_postgres::Error>,
{
    let conn = c.start();
    let result = match conn.statement(sql).await {
        Ok(statement) => {
            conn.running = true;
            let result = op(&conn.client, statement).await;
            conn.running = false;
            result
        }
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        // The schema changed under a kept statement so that its result
        // has other columns ("cached plan must not change result type"):
        // prepare it again next time.
        if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
            conn.statements.remove(sql);
        }
    }
    let closed = conn.client.is_closed();
    if closed {
        c.discard();
    } else {
        c.done();
    }
    result.map_err(|e| failed(c.spec(), &e, closed))
}

async fn query_on<P, I>(
    c: &mut Pooled<PgConnector>,
    sql: &str,
    params: I,
) -> Result<Vec<Row>, Error>
where
    P: BorrowToSql,
    I: IntoIterator<Item = P>,
    I::IntoIter: ExactSizeIterator,
{
    let max = c.spec().max_result;
    // Past `max`, the rows read so far and how many: the rest is not read.
    let mut over = None;
    let rows = run(c, sql, async |client: &Client, statement| {
        let stream = client.query_raw(&statement, params).await?;
        futures_util::pin_mut!(stream);
        let (mut rows, mut size) = (Vec::new(), 0usize);
        while let Some(row) = stream.try_next().await? {
            size += row_size(&row);
            rows.push(row);
            if max != 0 && size > max {
                over = Some(rows.len());
                break;
            }
        }
        Ok(rows)
    })
    .await?;
    let Some(count) = over else {
        return Ok(rows);
    };
    // The server may still be sending the rest: the connection is closed
    // rather than drained.
    c.discard();
    Err(Error::new(
        &c.spec().name,
        Kind::Postgres,
        ErrorKind::Query,
        over_max_result(max, count),
    ))
}

/// What a row costs to hold: its values' bytes as the server sent them,
/// and a little per value.
fn row_size(row: &Row) -> usize {
    (0..row.len())
        .map(|i| row.try_get::<_, Sent>(i).map_or(0, |s| s.0) + 16)
        .sum()
}

/// The length of a value as sent, whatever its type.
struct Sent(usize);

impl<'a> FromSql<'a> for Sent {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Sent, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Sent(raw.len()))
    }

    fn from_sql_null(_: &Type) -> Result<Sent, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Sent(0))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

async fn execute_on<P, I>(c: &mut Pooled<PgConnector>, sql: &str, params: I) -> Result<u64, Error>
where
    P: BorrowToSql,
    I: IntoIterator<Item = P>,
    I::IntoIter: ExactSizeIterator,
{
    run(c, sql, async |client: &Client, statement| {
        client.execute_raw(&statement, params).await
    })
    .await
}

/// `sql` as a simple query: several statements, no parameters, nothing
/// prepared (schema set-up, `BEGIN`/`COMMIT`).
async fn batch_on(c: &mut Pooled<PgConnector>, sql: &str) -> Result<(), Error> {
    let conn = c.start();
    conn.running = true;
    let result = conn.client.batch_execute(sql).await;
    conn.running = false;
    let closed = conn.client.is_closed();
    if closed {
        c.discard();
    } else {
        c.done();
    }
    result.map_err(|e| failed(c.spec(), &e, closed))
}

/// What a statement leaves behind on its connection, beyond its own
/// effect, judged by its first words (as PostgreSQL's own grammar starts
/// them; a prepared statement is one statement). Not seen: functions with
/// such effects (`set_config(…, false)`, session advisory locks).
#[derive(Debug, PartialEq, Eq)]
enum Lasting {
    No,
    /// Starts or ends a transaction block (`BEGIN`, `COMMIT`…).
    Ends(String),
    /// Works inside a transaction block only (`SAVEPOINT`, `ROLLBACK TO`).
    Transaction(String),
    /// Changes the session for the statements after it (`SET`, `LISTEN`,
    /// `PREPARE`, a temporary table…).
    Session(String),
}

fn lasting(sql: &str) -> Lasting {
    let words = leading_words(sql, 5);
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    let first = word(0).to_string();
    match word(0) {
        "ROLLBACK" if word(1) == "TO" => Lasting::Transaction(first),
        "SAVEPOINT" | "RELEASE" => Lasting::Transaction(first),
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" => Lasting::Ends(first),
        "PREPARE" if word(1) == "TRANSACTION" => Lasting::Ends(first),
        "SET" if matches!(word(1), "LOCAL" | "TRANSACTION" | "CONSTRAINTS") => Lasting::No,
        "SET" | "RESET" | "DISCARD" | "LISTEN" | "UNLISTEN" | "DECLARE" | "PREPARE"
        | "DEALLOCATE" | "LOAD" => Lasting::Session(first),
        // CREATE [OR REPLACE] [GLOBAL | LOCAL] TEMP[ORARY] …
        "CREATE"
            if words[1..]
                .iter()
                .find(|w| !matches!(w.as_str(), "OR" | "REPLACE" | "GLOBAL" | "LOCAL"))
                .is_some_and(|w| w == "TEMP" || w == "TEMPORARY") =>
        {
            Lasting::Session(first)
        }
        _ => Lasting::No,
    }
}

/// Up to `n` words `sql` starts with, upper-cased, past spaces, comments
/// (`--`, nested `/* */`) and opening parentheses; up to the first thing
/// that is none of these.
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = sql;
    while words.len() < n {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if rest.starts_with("/*") {
            let mut depth = 0usize;
            let mut end = rest.len();
            let bytes = rest.as_bytes();
            let mut i = 0;
            while i + 1 < bytes.len() {
                match &bytes[i..i + 2] {
                    b"/*" => (depth, i) = (depth + 1, i + 2),
                    b"*/" => {
                        (depth, i) = (depth - 1, i + 2);
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
            rest = &rest[end..];
        } else {
            let len = rest
                .find(|c: char| !c.is_ascii_alphabetic() && c != '_')
                .unwrap_or(rest.len());
            if len == 0 {
                break;
            }
            words.push(rest[..len].to_ascii_uppercase());
            rest = &rest[len..];
        }
    }
    words
}

/// Refuse, before it is sent, a statement that cannot work on a pooled
/// connection outside a transaction: one that starts or ends a transaction
/// block (the next call may run on another connection), or changes the
/// session for whoever borrows the connection next.
fn plain_statement(spec: &Spec, sql: &str) -> Result<(), Error> {
    match lasting(sql) {
        Lasting::No => Ok(()),
        Lasting::Ends(word) | Lasting::Transaction(word) => Err(refused(
            spec,
            format!(
                "{word} through a plain call: each call may run on another connection of the \
                 pool, so make transactions with begin()"
            ),
        )),
        Lasting::Session(word) => Err(refused(
            spec,
            format!(
                "{word} would change the pooled connection for the calls that borrow it next: \
                 do it inside a transaction (begin(), then SET LOCAL …)"
            ),
        )),
    }
}

fn refused(spec: &Spec, message: String) -> Error {
    Error::new(&spec.name, Kind::Postgres, ErrorKind::Usage, message)
}

fn one(spec: &Spec, mut rows: Vec<Row>) -> Result<Row, Error> {
    match rows.len() {
        1 => Ok(rows.swap_remove(0)),
        n => Err(Error::new(
            &spec.name,
            Kind::Postgres,
            ErrorKind::Query,
            format!("expected one row, got {n}"),
        )),
    }
}

fn at_most_one(spec: &Spec, mut rows: Vec<Row>) -> Result<Option<Row>, Error> {
    match rows.len() {
        0 => Ok(None),
        1 => Ok(Some(rows.swap_remove(0))),
        n => Err(Error::new(
            &spec.name,
            Kind::Postgres,
            ErrorKind::Query,
            format!("expected at most one row, got {n}"),
        )),
    }
}

impl Postgres {
    pub(crate) fn new(spec: Spec) -> Postgres {
        Postgres {
            pool: Pool::new(spec, PgConnector),
        }
    }

    /// The database's name in the config.
    pub fn name(&self) -> &str {
        &self.pool.spec.name
    }

    /// The rows `sql` returns, `params` bound to `$1`, `$2`…
    ///
    /// ```no_run
    /// # async fn f(db: axkit_db::Postgres) -> Result<(), axkit_db::Error> {
    /// let rows = db.query("SELECT id, title FROM posts WHERE author = $1", &[&"ada"]).await?;
    /// for row in &rows {
    ///     let (id, title): (i32, &str) = (row.get("id"), row.get("title"));
    /// #   let _ = (id, title);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.query_raw(sql, params.iter().copied()).await
    }

    /// [`query`](Self::query) with the parameters from an iterator (of
    /// [`Param`](crate::pg_value::Param)s, say), so that nothing needs
    /// collecting first.
    pub async fn query_raw<P, I>(&self, sql: &str, params: I) -> Result<Vec<Row>, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        plain_statement(&self.pool.spec, sql)?;
        self.pool
            .within(async {
                let mut c = self.pool.get().await?;
                query_on(&mut c, sql, params).await
            })
            .await
    }

    /// The one row `sql` returns; none or several is an error.
    pub async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error> {
        one(&self.pool.spec, self.query(sql, params).await?)
    }

    /// The row `sql` returns, if any; several is an error.
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        at_most_one(&self.pool.spec, self.query(sql, params).await?)
    }

    /// Run `sql` (an `INSERT`, `UPDATE`…): the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error> {
        self.execute_raw(sql, params.iter().copied()).await
    }

    /// [`execute`](Self::execute) with the parameters from an iterator.
    pub async fn execute_raw<P, I>(&self, sql: &str, params: I) -> Result<u64, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        plain_statement(&self.pool.spec, sql)?;
        self.pool
            .within(async {
                let mut c = self.pool.get().await?;
                execute_on(&mut c, sql, params).await
            })
            .await
    }

    /// Run several statements without parameters (`CREATE TABLE …;
    /// CREATE INDEX …`), for setting up a schema. The connection is closed
    /// after them rather than given back: nothing they set (`SET`, a
    /// `BEGIN`, a temporary table) outlives the call.
    pub async fn batch(&self, sql: &str) -> Result<(), Error> {
        self.pool
            .within(async {
                let mut c = self.pool.get().await?;
                let result = batch_on(&mut c, sql).await;
                c.discard();
                result
            })
            .await
    }

    /// Start a transaction on a connection of its own. It ends with
    /// [`commit`](PgTransaction::commit) or
    /// [`rollback`](PgTransaction::rollback); dropped before either, its
    /// connection is closed and the server rolls it back.
    pub async fn begin(&self) -> Result<PgTransaction, Error> {
        self.pool
            .within(async {
                let mut c = self.pool.get().await?;
                batch_on(&mut c, "BEGIN").await?;
                Ok(PgTransaction {
                    conn: Some(c),
                    changed_session: false,
                })
            })
            .await
    }
}

/// An open transaction: each call as on [`Postgres`], on the
/// transaction's connection.
pub struct PgTransaction {
    /// None once committed or rolled back.
    conn: Option<Pooled<PgConnector>>,
    /// A statement changed the session (`SET` without `LOCAL`…): the
    /// connection is closed at the end rather than given back.
    changed_session: bool,
}

impl PgTransaction {
    /// The connection, unless a call timed out on it (its state is then
    /// unknown: the transaction can only be dropped).
    fn conn(&mut self) -> Result<&mut Pooled<PgConnector>, Error> {
        let conn = self.conn.as_mut().expect("a transaction in use is open");
        if conn.is_busy() {
            return Err(Error::new(
                &conn.spec().name,
                Kind::Postgres,
                ErrorKind::Unavailable,
                "the transaction was broken off by an earlier timeout",
            ));
        }
        Ok(conn)
    }

    fn pool(&self) -> Rc<Pool<PgConnector>> {
        self.conn
            .as_ref()
            .expect("a transaction in use is open")
            .pool()
            .clone()
    }

    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.query_raw(sql, params.iter().copied()).await
    }

    pub async fn query_raw<P, I>(&mut self, sql: &str, params: I) -> Result<Vec<Row>, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        self.statement(sql)?;
        let pool = self.pool();
        pool.within(async { query_on(self.conn()?, sql, params).await })
            .await
    }

    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        let rows = self.query(sql, params).await?;
        one(&self.pool().spec, rows)
    }

    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let rows = self.query(sql, params).await?;
        at_most_one(&self.pool().spec, rows)
    }

    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        self.execute_raw(sql, params.iter().copied()).await
    }

    pub async fn execute_raw<P, I>(&mut self, sql: &str, params: I) -> Result<u64, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        self.statement(sql)?;
        let pool = self.pool();
        pool.within(async { execute_on(self.conn()?, sql, params).await })
            .await
    }

    /// Make the transaction's changes permanent. If the server refuses
    /// (a deferred constraint), it has rolled the transaction back.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.end("COMMIT").await
    }

    /// Undo the transaction's changes.
    pub async fn rollback(mut self) -> Result<(), Error> {
        self.end("ROLLBACK").await
    }

    /// Refuse what would end the transaction behind its back; note what
    /// changes the session.
    fn statement(&mut self, sql: &str) -> Result<(), Error> {
        match lasting(sql) {
            Lasting::Ends(word) => Err(refused(
                &self.pool().spec,
                format!("{word} inside a transaction: end it with commit() or rollback()"),
            )),
            Lasting::Session(_) => {
                self.changed_session = true;
                Ok(())
            }
            Lasting::Transaction(_) | Lasting::No => Ok(()),
        }
    }

    async fn end(&mut self, sql: &str) -> Result<(), Error> {
        let pool = self.pool();
        let result = pool
            .within(async { batch_on(self.conn()?, sql).await })
            .await;
        // Over, whatever the server said (a failed COMMIT rolls back): the
        // connection goes back to the pool, unless the call was given up
        // or the session changed.
        if let Some(c) = self.conn.as_mut().filter(|c| !c.is_busy()) {
            if self.changed_session {
                c.discard();
            }
            self.conn = None;
        }
        result
    }
}

impl Drop for PgTransaction {
    /// Neither committed nor rolled back: close the connection, and the
    /// server rolls the transaction back. (Rolling back here would need an
    /// await, which a drop cannot do.)
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().as_mut().and_then(Pooled::take) {
            PgConnector::abandon(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_told_by_their_first_words() {
        let ends = |w: &str| Lasting::Ends(w.to_string());
        let session = |w: &str| Lasting::Session(w.to_string());
        for (sql, expected) in [
            ("begin", ends("BEGIN")),
            (
                "  /* a /* nested */ comment */ -- line\n Commit",
                ends("COMMIT"),
            ),
            ("ROLLBACK", ends("ROLLBACK")),
            (
                "rollback to savepoint s",
                Lasting::Transaction("ROLLBACK".into()),
            ),
            ("SAVEPOINT s", Lasting::Transaction("SAVEPOINT".into())),
            ("PREPARE TRANSACTION 'x'", ends("PREPARE")),
            ("PREPARE q AS SELECT 1", session("PREPARE")),
            ("SET search_path TO x", session("SET")),
            (
                "set session characteristics as transaction read only",
                session("SET"),
            ),
            ("SET LOCAL work_mem = '1MB'", Lasting::No),
            ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Lasting::No),
            (
                "create or replace temp view v as select 1",
                session("CREATE"),
            ),
            ("CREATE TABLE temps (temp int)", Lasting::No),
            ("(SELECT 1)", Lasting::No),
            ("SELECT 'BEGIN'", Lasting::No),
            ("/* never closed BEGIN", Lasting::No),
            ("", Lasting::No),
            ("-- only a comment", Lasting::No),
        ] {
            assert_eq!(lasting(sql), expected, "{sql:?}");
        }
    }
}
