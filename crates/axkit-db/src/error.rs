//! What a database call can fail with, and what a request answers then: a
//! database that is down or too slow is the server's trouble of the
//! moment (503, with a log line naming the database); a statement the
//! database refused, or a value that cannot be converted, is the
//! application's bug (500).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axkit::{Context, Level, Outcome};

use crate::config::Kind;

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The database cannot be reached, refused the connection or lost it,
    /// or says it cannot serve now (shutting down, starting up, too many
    /// connections).
    Unavailable,
    /// The call took longer than the database's `timeout=`.
    Timeout,
    /// The database refused the statement (a syntax error, a constraint),
    /// or a Redis command answered with an error.
    Query,
    /// The call itself was wrong: a value that cannot be bound or
    /// converted, a name that is not a database of that kind.
    Usage,
}

/// What a query whose rows went over `max_result=` fails with, after
/// `rows` rows.
pub(crate) fn over_max_result(max: usize, rows: usize) -> String {
    format!(
        "the result is over max_result={max} bytes (at row {rows}): ask for less (LIMIT, fewer \
         columns), or raise max_result= on the Database line"
    )
}

/// A failed database call. Its message names the database (never its
/// URL).
#[derive(Clone, Debug)]
pub struct Error {
    database: Arc<str>,
    kind: Kind,
    error: ErrorKind,
    message: String,
    code: Option<String>,
}

impl Error {
    pub(crate) fn new(
        database: &Arc<str>,
        kind: Kind,
        error: ErrorKind,
        message: impl Into<String>,
    ) -> Error {
        Error {
            database: database.clone(),
            kind,
            error,
            message: message.into(),
            code: None,
        }
    }

    pub(crate) fn timeout(database: &Arc<str>, kind: Kind, limit: Duration) -> Error {
        Error::new(
            database,
            kind,
            ErrorKind::Timeout,
            format!("no answer within {limit:?} (timeout=)"),
        )
    }

    pub(crate) fn with_code(mut self, code: &str) -> Error {
        self.code = Some(code.to_string());
        self
    }

    /// The database's name in the config.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Which server it is.
    pub fn server(&self) -> Kind {
        self.kind
    }

    pub fn kind(&self) -> ErrorKind {
        self.error
    }

    /// What went wrong, without the database's name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// PostgreSQL's SQLSTATE (`23505` for a unique violation…), when the
    /// server gave one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the database could not serve (down, unreachable, too slow):
    /// worth a 503 and maybe a retry, not the application's bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.error, ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// The status a request answers when this ends it: 503 or 500.
    pub fn status(&self) -> u16 {
        if self.is_unavailable() {
            503
        } else {
            500
        }
    }

    /// End a hook with this error: a database that could not serve logs
    /// a line naming it (and the request) and answers 503; anything else
    /// is an [`Outcome::Error`] (500, logged by the core with the plugin
    /// and hook).
    pub fn outcome(&self, ctx: &mut Context) -> Outcome {
        if self.is_unavailable() {
            log_unavailable(ctx, self, "");
            Outcome::Status(503)
        } else {
            Outcome::Error(self.to_string())
        }
    }
}

/// Log `error`, a database that could not serve a request, with the
/// request it failed (as the core's own 5xx lines have it), after
/// `context` (a script's name and hook, say).
pub fn log_unavailable(ctx: &mut Context, error: &Error, context: &str) {
    ctx.log_request(Level::Error, format_args!("{context}{error}"));
}

impl fmt::Display for Error {
    /// `postgres database "main": MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.error {
            ErrorKind::Unavailable => "unavailable: ",
            ErrorKind::Timeout => "timed out: ",
            ErrorKind::Query | ErrorKind::Usage => "",
        };
        write!(
            f,
            "{} database {:?}: {what}{}",
            self.kind.as_str(),
            self.database,
            self.message
        )
    }
}

impl std::error::Error for Error {}

/// For constructors, whose errors are strings: `Databases::of(…)?.postgres("main")?`.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}
