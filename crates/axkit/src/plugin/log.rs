//! Log levels (AxKit2's syslog-style names) and the record handed to the
//! `logging` hook.

use std::fmt;

/// Severity, most severe first. The AxKit2 names (`LOGDEBUG` … `LOGEMERG`)
/// and the plain ones (`debug` … `emerg`, also `warning`, `err`) both parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    /// Every level, for directive declarations (`LogLevel`).
    pub const NAMES: [&'static str; 8] = [
        "LOGEMERG",
        "LOGALERT",
        "LOGCRIT",
        "LOGERROR",
        "LOGWARN",
        "LOGNOTICE",
        "LOGINFO",
        "LOGDEBUG",
    ];

    pub fn parse(s: &str) -> Option<Level> {
        let lower = s.to_ascii_lowercase();
        let bare = lower.strip_prefix("log").unwrap_or(&lower);
        Some(match bare {
            "emerg" | "emergency" => Level::Emerg,
            "alert" => Level::Alert,
            "crit" | "critical" => Level::Crit,
            "error" | "err" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "notice" => Level::Notice,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log line on its way to the log sinks.
#[derive(Debug)]
pub struct LogRecord<'a> {
    pub level: Level,
    pub message: &'a str,
    /// The peer of the request or connection this line is about, if any.
    pub peer: Option<std::net::SocketAddr>,
}
