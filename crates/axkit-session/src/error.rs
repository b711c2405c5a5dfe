//! Why a session call failed.

use std::fmt;

use axkit::{Context, Level, Outcome};

/// A session call that could not be done. `Display` starts with
/// `session: `.
#[derive(Debug)]
pub enum Error {
    /// The binary does not register [`SessionSource`](crate::SessionSource),
    /// or the config has no `SessionKey`.
    NotConfigured(String),
    /// A cookie session whose data would not fit in a cookie.
    TooLarge { size: usize, limit: usize },
    /// The session was changed after the response head had gone, with
    /// the `Set-Cookie` that would have saved it.
    HeadSent,
    /// A value that cannot be kept (a table nested too deeply).
    Value(String),
    /// The Redis or SQLite database holding the sessions failed
    /// ([`is_unavailable`](Error::is_unavailable) when it could not serve).
    Database(axkit_db::Error),
    /// The shared zone holding the sessions failed (full, say).
    Shared(axkit_shared::Error),
    /// A CSRF check could not read the request's form.
    Form(axkit::plugin::FormError),
    /// The session kept on the server ended while the request ran
    /// (destroyed, regenerated or expired by another request): its
    /// changes are not written, so that the end stands. Only logged.
    Ended,
}

impl Error {
    /// The store could not serve: a request ended by this answers 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Database(e) => e.is_unavailable(),
            Error::Shared(e) => matches!(e, axkit_shared::Error::NoMemory),
            _ => false,
        }
    }

    /// End a hook with this error: 503 and a log line when the store
    /// could not serve, the form's own status (400, 413…) when the form
    /// could not be read, else an [`Outcome::Error`] (500, logged by the
    /// core).
    pub fn outcome(&self, ctx: &mut Context) -> Outcome {
        match self {
            Error::Database(e) => e.outcome(ctx),
            Error::Form(e) => Outcome::Status(e.status),
            e if e.is_unavailable() => {
                ctx.log_request(Level::Error, format_args!("{e}"));
                Outcome::Status(503)
            }
            e => Outcome::Error(e.to_string()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("session: ")?;
        match self {
            Error::NotConfigured(why) => f.write_str(why),
            Error::TooLarge { size, limit } => write!(
                f,
                "too large for a cookie ({size} bytes, at most {limit}): keep less in the \
                 session, or keep it on the server (SessionStore shared, redis:NAME or sqlite:NAME)"
            ),
            Error::HeadSent => f.write_str(
                "the response head has gone out, and the Set-Cookie with it: change the \
                 session before the response starts (before the first flush)",
            ),
            Error::Value(why) => f.write_str(why),
            Error::Database(e) => write!(f, "{e}"),
            Error::Shared(e) => write!(f, "shared zone: {e}"),
            Error::Form(e) => write!(f, "reading the form: {e}"),
            Error::Ended => f.write_str(
                "the session ended while this request ran (destroyed, regenerated or expired by \
                 another request): its changes were not saved",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl From<axkit_db::Error> for Error {
    fn from(e: axkit_db::Error) -> Error {
        Error::Database(e)
    }
}

impl From<axkit_shared::Error> for Error {
    fn from(e: axkit_shared::Error) -> Error {
        Error::Shared(e)
    }
}

/// For constructors and scripts, whose errors are strings.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}
