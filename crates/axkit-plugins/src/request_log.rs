//! `request_log`: one line per request (hook `response_sent`), by default
//! in the Combined Log Format that every log analyser reads:
//!
//! ```text
//! 127.0.0.1 - - [26/Nov/2026:05:59:01 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8.0"
//! ```
//!
//! Directives:
//! - `RequestLog PATH` (any scope): the file to append to; `-` is stdout.
//! - `RequestLogFormat FORMAT` (any scope, default `combined`): `combined`,
//!   `common`, or Apache `LogFormat` tokens: `%h` client address (behind
//!   a `TrustedProxy`, the one it forwarded for), `%a` (same), `%{c}a` the
//!   socket's peer (the proxy), `%l` (always `-`), `%u` user, `%t` time, `%r` request line,
//!   `%>s`/`%s` status, `%b` body bytes (`-` for none), `%B` (`0` for
//!   none), `%{Name}i` request header, `%{Name}o` response header,
//!   `%{name}n` note, `%D` time taken in microseconds, `%T` in seconds,
//!   `%m` method, `%U` path, `%q` query (with its `?`), `%H` protocol,
//!   `%v` server name, `%p` local port, `%%`.
//!
//! ```text
//! Plugin           request_log
//! RequestLog       logs/access_log
//! RequestLogFormat "%h %t \"%r\" %>s %b %D"
//! ```
//!
//! Files are opened with O_APPEND and each line is one write, so workers
//! never interleave. The writes happen on a thread of their own, so a slow
//! disk never blocks the event loop; SIGUSR1 reopens the files.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sink::Sink;
use axkit::config::{Directive, Key};
use axkit::plugin::{
    escape_log_field, log_dir_warning, log_to_stderr, Context, HookFuture, Level, Outcome, Plugin,
    PluginInit, PluginSpec,
};

const COMBINED: &str = "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\"";
const COMMON: &str = "%h %l %u %t \"%r\" %>s %b";

static REQUEST_LOG: Key<Option<PathBuf>> =
    Key::new("RequestLog").doc("File for the access log (see RequestLogFormat); - is stdout");

/// Compiled when the config loads: a bad token is a config error with
/// file and line, never a broken line.
static REQUEST_LOG_FORMAT: Key<Format> = Key::parsed("RequestLogFormat", |args| match args {
    [text] => compile(text).map(|tokens| Format(tokens.into())),
    _ => Err("expected one format".into()),
})
.default("combined")
.doc("Access log line: combined, common, or Apache LogFormat tokens (%h %t %r %>s %b %D...)");

/// A compiled `RequestLogFormat`.
struct Format(Box<[Token]>);

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "request_log",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![REQUEST_LOG.declare(), REQUEST_LOG_FORMAT.declare()]
}

/// Every `RequestLog` of the config is opened here, before the first
/// request: a file that cannot be (a missing directory, no permission)
/// stops the server from starting and `--check` reports it, with the line
/// that names it, where opening on first use lost every line.
fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let log = RequestLog {
        sinks: RefCell::new(HashMap::new()),
    };
    for config in init.config.scopes() {
        let (Some(setting), Some(path)) = (
            config.settings_of(&REQUEST_LOG).last(),
            config.get(&REQUEST_LOG),
        ) else {
            continue;
        };
        if let Err(e) = log.sink(path) {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            return Err(format!(
                "{}:{}: RequestLog {}: {e}",
                setting.file,
                setting.line,
                shown.display()
            ));
        }
        if let Some(warning) = Some(path)
            .filter(|p| p.as_os_str() != "-")
            .and_then(|p| log_dir_warning(p, init.config))
        {
            log_to_stderr(Level::Warn, &format!("RequestLog {warning}"));
        }
    }
    Ok(Rc::new(log))
}

struct RequestLog {
    sinks: RefCell<HashMap<PathBuf, Rc<Sink>>>,
}

#[axkit::plugin]
impl Plugin for RequestLog {
    fn response_sent<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if let Some(path) = ctx.config().get(&REQUEST_LOG) {
            match self.sink(path) {
                Ok(sink) => {
                    let format = ctx.config().get(&REQUEST_LOG_FORMAT);
                    sink.write_line(render(&format.0, ctx).as_bytes())
                }
                Err(e) => ctx.log(Level::Error, &format!("RequestLog {}: {e}", path.display())),
            }
        }
        Outcome::Declined.into()
    }

    fn reopen_logs(&self) {
        for sink in self.sinks.borrow().values() {
            let _ = sink.reopen();
        }
    }
}

impl RequestLog {
    fn sink(&self, path: &Path) -> std::io::Result<Rc<Sink>> {
        if let Some(s) = self.sinks.borrow().get(path) {
            return Ok(s.clone());
        }
        let sink = Rc::new(Sink::open_background(path)?);
        self.sinks
            .borrow_mut()
            .insert(path.to_path_buf(), sink.clone());
        Ok(sink)
    }
}

/// One piece of a compiled log format.
#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    ClientIp,
    /// `%{c}a`: the socket's peer, which behind a proxy is the proxy.
    PeerIp,
    Ident,
    User,
    Time,
    RequestLine,
    Status,
    /// `%b` (`-` for none) or `%B` (`0`).
    Bytes {
        dash: bool,
    },
    RequestHeader(String),
    ResponseHeader(String),
    Note(String),
    Micros,
    Seconds,
    Method,
    Path,
    Query,
    Protocol,
    ServerName,
    LocalPort,
}

/// Parse a format (or the name of a built-in one) into tokens.
fn compile(format: &str) -> Result<Vec<Token>, String> {
    let format = match format {
        "combined" => COMBINED,
        "common" => COMMON,
        f => f,
    };
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let mut arg = None;
        if chars.peek() == Some(&'{') {
            chars.next();
            let mut name = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) => name.push(c),
                    None => return Err("unclosed %{".into()),
                }
            }
            arg = Some(name);
        }
        // Apache's `>` / `<` (final / original request): one request here.
        while matches!(chars.peek(), Some('>') | Some('<')) {
            chars.next();
        }
        let Some(letter) = chars.next() else {
            return Err("format ends with %".into());
        };
        let token = match (letter, arg) {
            ('%', None) => {
                text.push('%');
                continue;
            }
            ('h' | 'a', None) => Token::ClientIp,
            ('a', Some(c)) if c == "c" => Token::PeerIp,
            ('l', None) => Token::Ident,
            ('u', None) => Token::User,
            ('t', None) => Token::Time,
            ('r', None) => Token::RequestLine,
            ('s', None) => Token::Status,
            ('b', None) => Token::Bytes { dash: true },
            ('B', None) => Token::Bytes { dash: false },
            ('i', Some(name)) => Token::RequestHeader(name),
            ('o', Some(name)) => Token::ResponseHeader(name),
            ('n', Some(name)) => Token::Note(name),
            ('D', None) => Token::Micros,
            ('T', None) => Token::Seconds,
            ('m', None) => Token::Method,
            ('U', None) => Token::Path,
            ('q', None) => Token::Query,
            ('H', None) => Token::Protocol,
            ('v', None) => Token::ServerName,
            ('p', None) => Token::LocalPort,
            (other, _) => return Err(format!("unknown token %{other}")),
        };
        if !text.is_empty() {
            tokens.push(Token::Text(std::mem::take(&mut text)));
        }
        tokens.push(token);
    }
    if !text.is_empty() {
        tokens.push(Token::Text(text));
    }
    Ok(tokens)
}

/// One log line for this request. What the request said comes from the
/// request as the client sent it, even when an internal redirect (an
/// ErrorDocument) produced the response, as Apache's `%r` does; every
/// field is escaped (`escape_log_field`), bytes that are not UTF-8 too.
fn render(tokens: &[Token], ctx: &Context) -> String {
    use std::fmt::Write;
    let req = ctx.original_request();
    let mut out = String::with_capacity(256);
    let field = escape_log_field;
    for token in tokens {
        let _ = match token {
            Token::Text(t) => {
                out.push_str(t);
                Ok(())
            }
            Token::ClientIp => write!(out, "{}", ctx.client().addr.ip()),
            Token::PeerIp => write!(out, "{}", ctx.conn.peer.ip()),
            Token::Ident => write!(out, "-"),
            Token::User => write!(out, "{}", dash_or(ctx.user.as_deref().map(str::as_bytes))),
            Token::Time => write!(out, "[{}]", clf_time(req.start_time())),
            Token::RequestLine => write!(out, "{}", field(req.request_line_bytes())),
            Token::Status => write!(out, "{}", ctx.response.status),
            Token::Bytes { dash } => match ctx.body_bytes_sent() {
                0 if *dash => write!(out, "-"),
                n => write!(out, "{n}"),
            },
            Token::RequestHeader(name) => write!(out, "{}", dash_or(req.header_bytes(name))),
            Token::ResponseHeader(name) => write!(
                out,
                "{}",
                dash_or(ctx.response.headers.get(name).map(str::as_bytes))
            ),
            Token::Note(name) => write!(
                out,
                "{}",
                dash_or(ctx.notes.get(name).map(|s| s.as_bytes()))
            ),
            Token::Micros => write!(out, "{}", elapsed(req.start_time()).as_micros()),
            Token::Seconds => write!(out, "{}", elapsed(req.start_time()).as_secs()),
            Token::Method => write!(out, "{}", field(req.method().as_bytes())),
            Token::Path => write!(out, "{}", field(req.path().as_bytes())),
            Token::Query => match req.query() {
                Some(q) => write!(out, "?{}", field(q.as_bytes())),
                None => Ok(()),
            },
            Token::Protocol => write!(out, "{}", req.version().as_str()),
            Token::ServerName => write!(
                out,
                "{}",
                field(
                    ctx.server()
                        .names
                        .first()
                        .map(String::as_str)
                        .or(req.host())
                        .unwrap_or("-")
                        .as_bytes()
                )
            ),
            Token::LocalPort => write!(out, "{}", ctx.conn.local.port()),
        };
    }
    out.push('\n');
    out
}

/// A field that may be absent (`-`).
fn dash_or(v: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    v.map_or("-".into(), escape_log_field)
}

fn elapsed(since: SystemTime) -> std::time::Duration {
    SystemTime::now().duration_since(since).unwrap_or_default()
}

/// `26/Nov/2026:05:59:01 +0000` (always UTC).
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_clf_time() {
        let t = UNIX_EPOCH + Duration::from_secs(971_186_136); // 2000-10-10 13:55:36 UTC
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_208_000); // 2024-02-29 12:00:00
        assert_eq!(clf_time(t), "29/Feb/2024:12:00:00 +0000");
    }

    #[test]
    fn compiles_formats() {
        assert_eq!(
            compile("%h [%{X-Y}i] %>s 100%%").unwrap(),
            vec![
                Token::ClientIp,
                Token::Text(" [".into()),
                Token::RequestHeader("X-Y".into()),
                Token::Text("] ".into()),
                Token::Status,
                Token::Text(" 100%".into()),
            ]
        );
        assert_eq!(compile("combined").unwrap().len(), 18);
        assert!(compile("%Z").is_err());
        assert!(compile("%{Referer").is_err());
        assert!(compile("abc %").is_err());
    }
}
