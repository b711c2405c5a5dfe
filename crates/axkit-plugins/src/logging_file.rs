//! `logging/file`: appends log lines to a file (hook `logging`), reopened
//! on SIGUSR1 for logrotate.
//!
//! Directives:
//! - `LogFile PATH` (global): the file to append to. The master writes its
//!   own lines (a failed reload, a worker that died) there too; the key is
//!   `axkit::plugin::LOG_FILE` for that reason.
//!
//! ```text
//! Plugin   logging/file
//! LogFile  /var/log/axkit/error.log
//! LogLevel LOGWARN
//! ```

use std::rc::Rc;

use crate::sink::Sink;
use axkit::config::Directive;
use axkit::plugin::{log_dir_warning, log_line, log_to_stderr, LOG_FILE};
use axkit::plugin::{HookFuture, Level, LogRecord, Outcome, Plugin, PluginInit, PluginSpec};

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "logging/file",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![LOG_FILE.declare()]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let path = init
        .config
        .global
        .get(&LOG_FILE)
        .as_deref()
        .ok_or("LogFile is not set")?;
    let sink = Sink::open(path).map_err(|e| format!("LogFile {}: {e}", path.display()))?;
    if let Some(warning) = log_dir_warning(path, init.config) {
        log_to_stderr(Level::Warn, &format!("LogFile {warning}"));
    }
    Ok(Rc::new(LoggingFile { sink }))
}

struct LoggingFile {
    sink: Sink,
}

#[axkit::plugin]
impl Plugin for LoggingFile {
    fn logging<'a>(&'a self, record: &'a LogRecord<'a>) -> HookFuture<'a> {
        let mut line = log_line(record.level, record.message);
        line.push('\n');
        self.sink.write_line(line.as_bytes());
        Outcome::Declined.into()
    }

    fn reopen_logs(&self) {
        if let Err(e) = self.sink.reopen() {
            // One write, line and newline: the workers share stderr.
            axkit::plugin::log_to_stderr(
                Level::Error,
                &format!("reopening LogFile {}: {e}", self.sink.path().display()),
            );
        }
    }
}
