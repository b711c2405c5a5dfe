//! `request_log`: one line per request in the Combined Log Format
//! (hook `response_sent`), the format every log analyser reads:
//!
//! ```text
//! 127.0.0.1 - - [26/Nov/2026:05:59:01 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8.0"
//! ```
//!
//! Directives:
//! - `RequestLog PATH` (any scope): the file to append to; `-` is stdout.
//!
//! ```text
//! Plugin     request_log
//! RequestLog logs/access_log
//! ```
//!
//! Files are opened with O_APPEND and each line is one write, so workers
//! never interleave; SIGUSR1 reopens them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{Directive, ValueType};
use crate::plugin::{
    Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin, PluginInit, PluginSpec,
};
use crate::plugins::sink::Sink;

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "request_log",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![Directive::new("RequestLog", ValueType::Path)
        .doc("File for the access log in Combined Log Format; - is stdout")]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(RequestLog {
        sinks: RefCell::new(HashMap::new()),
    }))
}

struct RequestLog {
    sinks: RefCell<HashMap<PathBuf, Rc<Sink>>>,
}

impl Plugin for RequestLog {
    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::ResponseSent])
    }

    fn response_sent<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if let Some(path) = ctx.config().path("RequestLog") {
            match self.sink(path) {
                Ok(sink) => sink.write_line(combined_line(ctx).as_bytes()),
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
        let sink = Rc::new(Sink::open(path)?);
        self.sinks
            .borrow_mut()
            .insert(path.to_path_buf(), sink.clone());
        Ok(sink)
    }
}

fn combined_line(ctx: &Context) -> String {
    let bytes = ctx.body_bytes_sent();
    let req = &ctx.request;
    format!(
        "{} - {} [{}] \"{}\" {} {} \"{}\" \"{}\"\n",
        ctx.conn.peer.ip(),
        ctx.user
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "-".into()),
        clf_time(req.start_time()),
        escape(&req.request_line()),
        ctx.response.status,
        if bytes == 0 {
            "-".to_string()
        } else {
            bytes.to_string()
        },
        escape(req.header("Referer").unwrap_or("-")),
        escape(req.header("User-Agent").unwrap_or("-")),
    )
}

/// Apache's escaping for logged strings: quotes, backslashes and
/// non-printable bytes become `\"`, `\\`, `\xNN`, so a client cannot forge
/// log lines.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
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
    fn escapes_quotes_and_controls() {
        assert_eq!(escape("a\"b\\c\n"), "a\\\"b\\\\c\\x0a");
    }
}
