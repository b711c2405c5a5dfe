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
use tokio_postgres::error::{Severity, SqlState};
use tokio_postgres::types::{BorrowToSql, FromSql, ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::config::{Kind, Spec, Target};
use crate::error::{over_max_result, Error, ErrorKind};
use crate::pg_value::Unbindable;
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
    // Preparing waits for the locks the statement takes as long as running
    // it would: a call given up then cancels it too.
    conn.running = true;
    let result = match conn.statement(sql).await {
        Ok(statement) => op(&conn.client, statement).await,
        Err(e) => Err(e),
    };
    conn.running = false;
    if let Err(e) = &result {
        // The schema changed under a kept statement so that its result
        // has other columns ("cached plan must not change result type"):
        // prepare it again next time.
        if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
            conn.statements.remove(sql);
        }
    }
    let closed = conn.client.is_closed();
    settle(c, closed, result)
}

/// End a call: give the connection back, or close it when it closed, is
/// closing (the server's error was FATAL: it was terminated, say), or
/// when the call's error leaves its state unknown (anything but the
/// server's own refusal or a parameter that could not be bound, which is
/// found before anything is sent: `COPY … FROM STDIN` answered with a
/// message the client did not expect, say).
fn settle<T>(
    c: &mut Pooled<PgConnector>,
    closed: bool,
    result: Result<T, tokio_postgres::Error>,
) -> Result<T, Error> {
    let unusable = |e: &tokio_postgres::Error| match e.as_db_error() {
        Some(db) => matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ),
        None => !std::error::Error::source(e).is_some_and(|cause| cause.is::<Unbindable>()),
    };
    if closed || result.as_ref().is_err_and(unusable) {
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
    settle(c, closed, result)
}

/// What a statement leaves behind on its connection, beyond its own
/// effect, judged by its first words (as PostgreSQL's own grammar starts
/// them; a prepared statement is one statement: the server refuses a
/// second one, and skips empty ones before it) and by the clauses that
/// make a temporary table. Not seen: functions with such effects
/// (`set_config(…, false)`, session advisory locks, `CREATE TEMP` inside
/// a `DO` block).
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
    let tokens = tokens(sql);
    let words = leading_words(&tokens, 5);
    let word = |i: usize| words.get(i).copied().unwrap_or("");
    let first = word(0).to_string();
    match word(0) {
        "ROLLBACK" if word(1) == "TO" => Lasting::Transaction(first),
        "SAVEPOINT" | "RELEASE" => Lasting::Transaction(first),
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" => Lasting::Ends(first),
        "PREPARE" if word(1) == "TRANSACTION" => Lasting::Ends(first),
        "SET" if matches!(word(1), "LOCAL" | "TRANSACTION" | "CONSTRAINTS") => Lasting::No,
        "SET" | "RESET" | "DISCARD" | "LISTEN" | "UNLISTEN" | "DECLARE" | "PREPARE"
        | "DEALLOCATE" | "LOAD" => Lasting::Session(first),
        _ if makes_temporary_table(&tokens) => Lasting::Session(first),
        _ => Lasting::No,
    }
}

/// A token of SQL, as far as [`lasting`] needs to tell them apart.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A keyword or a bare name, upper-cased.
    Word(String),
    /// Anything else, by its first character: `(`, `;`, an operator, a
    /// literal (`'`, a dollar-quoted one too), a quoted name (`"`), a
    /// number (`0`), a parameter (`$`).
    Other(char),
}

/// The tokens of `sql`, past spaces and comments (`--`, nested `/* */`);
/// literals, quoted names and dollar-quoted bodies are one token each, so
/// that no word inside them is taken for a keyword.
fn tokens(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let name_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"--") {
            i = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0usize;
            while i < b.len() {
                match b.get(i..i + 2) {
                    Some(b"/*") => (depth, i) = (depth + 1, i + 2),
                    Some(b"*/") => {
                        (depth, i) = (depth - 1, i + 2);
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
        } else if c == b'\'' || c == b'"' {
            i = quoted_end(b, i, false);
            out.push(Token::Other(c as char));
        } else if c == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            out.push(Token::Other('$'));
        } else if c == b'$' {
            // `$tag$ … $tag$`, the tag maybe empty.
            let tag_len = b[i + 1..]
                .iter()
                .take_while(|&&c| name_byte(c) && c != b'$')
                .count();
            if b.get(i + 1 + tag_len) == Some(&b'$') {
                let tag = &b[i..i + tag_len + 2];
                let body = i + tag.len();
                i = b[body..]
                    .windows(tag.len())
                    .position(|w| w == tag)
                    .map_or(b.len(), |n| body + n + tag.len());
                out.push(Token::Other('\''));
            } else {
                i += 1;
                out.push(Token::Other('$'));
            }
        } else if c.is_ascii_digit() {
            while b
                .get(i)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
            {
                i += 1;
            }
            out.push(Token::Other('0'));
        } else if name_byte(c) {
            let start = i;
            while b.get(i).is_some_and(|&c| name_byte(c)) {
                i += 1;
            }
            let word = &sql[start..i];
            if word.eq_ignore_ascii_case("E") && b.get(i) == Some(&b'\'') {
                // E'…': backslashes escape, `\'` included.
                i = quoted_end(b, i, true);
                out.push(Token::Other('\''));
            } else {
                out.push(Token::Word(word.to_ascii_uppercase()));
            }
        } else {
            i += 1;
            out.push(Token::Other(c as char));
        }
    }
    out
}

/// Where the literal or quoted name opening at `start` ends (its quote
/// doubled is one of it; a backslash escapes too when `backslash`).
fn quoted_end(b: &[u8], start: usize, backslash: bool) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if (backslash && b[i] == b'\\') || (b[i] == quote && b.get(i + 1) == Some(&quote)) {
            i += 2;
        } else if b[i] == quote {
            return i + 1;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Up to `n` words a statement starts with, past opening parentheses and
/// the empty statements before it (`;BEGIN` is a `BEGIN`: the server
/// skips them); up to the first token that is none of these.
fn leading_words(tokens: &[Token], n: usize) -> Vec<&str> {
    tokens
        .iter()
        .filter(|t| !matches!(t, Token::Other('(' | ';')))
        .map_while(|t| match t {
            Token::Word(w) => Some(w.as_str()),
            Token::Other(_) => None,
        })
        .take(n)
        .collect()
}

/// Whether a statement makes a temporary table, wherever it says so:
/// `CREATE [OR REPLACE] [GLOBAL | LOCAL] TEMP[ORARY] …` (after an
/// `EXPLAIN ANALYZE` too), `SELECT … INTO [GLOBAL | LOCAL] TEMP[ORARY] …`
/// (after a `WITH` too).
fn makes_temporary_table(tokens: &[Token]) -> bool {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => w.as_str(),
        _ => "",
    };
    (0..tokens.len()).any(|i| {
        let before: &[&str] = match word(i) {
            "CREATE" => &["OR", "REPLACE", "GLOBAL", "LOCAL"],
            // Not `INSERT INTO temp …`: a table may be named temp.
            "INTO" if !matches!(i.checked_sub(1).map_or("", word), "INSERT" | "MERGE") => {
                &["GLOBAL", "LOCAL"]
            }
            _ => return false,
        };
        let mut j = i + 1;
        while before.contains(&word(j)) {
            j += 1;
        }
        matches!(word(j), "TEMP" | "TEMPORARY")
    })
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
    /// unknown: the transaction can only be dropped) or it was closed (it
    /// broke, or a result over `max_result=` was left unread): the server
    /// has rolled the transaction back then.
    fn conn(&mut self) -> Result<&mut Pooled<PgConnector>, Error> {
        let conn = self.conn.as_mut().expect("a transaction in use is open");
        let why = if conn.is_busy() {
            "the transaction was broken off by an earlier timeout"
        } else if conn.is_discarded() {
            "the transaction is over: its connection was lost"
        } else {
            return Ok(conn);
        };
        Err(Error::new(
            &conn.spec().name,
            Kind::Postgres,
            ErrorKind::Unavailable,
            why,
        ))
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
    /// (a deferred constraint), or an earlier statement failed, it has
    /// rolled the transaction back.
    pub async fn commit(mut self) -> Result<(), Error> {
        // The server answers COMMIT of a transaction that a failed
        // statement aborted by rolling it back, which the client does not
        // show (the command's tag): a statement first fails then, in the
        // same round trip.
        let pool = self.pool();
        self.end("SELECT 1; COMMIT").await.map_err(|e| {
            if e.code() == Some(SqlState::IN_FAILED_SQL_TRANSACTION.code()) {
                Error::new(
                    &pool.spec.name,
                    Kind::Postgres,
                    ErrorKind::Query,
                    "the transaction was rolled back: an earlier statement failed",
                )
                .with_code(SqlState::IN_FAILED_SQL_TRANSACTION.code())
            } else {
                e
            }
        })
    }

    /// Undo the transaction's changes. One whose connection was lost is
    /// undone already (the server rolled it back): that succeeds too.
    pub async fn rollback(mut self) -> Result<(), Error> {
        if self.conn.as_ref().is_some_and(Pooled::is_discarded) {
            return Ok(());
        }
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
        // Over, whatever the server said: the connection goes back to the
        // pool, unless the call was given up, the session changed, or the
        // call failed (a failed COMMIT rolls back, but one refused before
        // it leaves the transaction open).
        if let Some(c) = self.conn.as_mut().filter(|c| !c.is_busy()) {
            if self.changed_session || result.is_err() {
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
            // The server skips empty statements: these are what follows.
            (";BEGIN", ends("BEGIN")),
            (" ;\n; /* c */ ; start transaction", ends("START")),
            ("(;begin", ends("BEGIN")),
            (";SET search_path TO evil", session("SET")),
            ("SELECT 42 AS secret INTO TEMP tt", session("SELECT")),
            (
                "select 1 into local temporary table tt from x",
                session("SELECT"),
            ),
            (
                "WITH x AS (SELECT 1) SELECT * INTO Temp t FROM x",
                session("WITH"),
            ),
            (
                "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
                session("EXPLAIN"),
            ),
            ("SELECT 1 INTO UNLOGGED u", Lasting::No),
            ("INSERT INTO temp VALUES (1)", Lasting::No),
            (
                "MERGE INTO temp USING s ON true WHEN MATCHED THEN DO NOTHING",
                Lasting::No,
            ),
            // Literals and quoted names are not words.
            (
                "SELECT 'x INTO TEMP y', $$ CREATE TEMP $$, $f$ ; BEGIN $f$, \"into\" temp",
                Lasting::No,
            ),
            ("SELECT E'\\' INTO TEMP t', 'it''s' INTO x", Lasting::No),
            ("SELECT $1 INTO t", Lasting::No),
            ("", Lasting::No),
            ("-- only a comment", Lasting::No),
        ] {
            assert_eq!(lasting(sql), expected, "{sql:?}");
        }
    }
}
