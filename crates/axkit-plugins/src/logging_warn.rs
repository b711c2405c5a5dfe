//! `logging/warn`: writes log lines to stderr (hook `logging`).
//!
//! No directives of its own: which lines reach it is set with the core's
//! `LogLevel` (AxKit2 names `LOGDEBUG` … `LOGEMERG`, or `debug` … `emerg`).
//!
//! ```text
//! Plugin   logging/warn
//! LogLevel LOGINFO
//! ```
//!
//! It declines every line so that other log sinks see it too.

use std::rc::Rc;

use axkit::config::Directive;
use axkit::plugin::log_to_stderr;
use axkit::plugin::{HookFuture, LogRecord, Outcome, Plugin, PluginInit, PluginSpec};

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "logging/warn",
        directives: Vec::<Directive>::new,
        create,
    }
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(LoggingWarn))
}

struct LoggingWarn;

#[axkit::plugin]
impl Plugin for LoggingWarn {
    fn logging<'a>(&'a self, record: &'a LogRecord<'a>) -> HookFuture<'a> {
        log_to_stderr(record.level, record.message);
        Outcome::Declined.into()
    }
}
