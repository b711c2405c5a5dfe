//! The master's own log lines (a reload that failed, a worker that died,
//! warnings): to stderr as always, and to the file that `logging/file`
//! writes (`LogFile`, read through its typed key: the master runs no
//! plugin code), at or above `LogLevel` as that plugin writes them. The
//! master opens the file itself, as root before any worker starts;
//! `SIGUSR1` reopens it and a reload that names another file switches to
//! it.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::config::{core, Config, ConfigError};
use crate::plugin::{log_dir_warning, log_line, log_to_stderr, open_log_file, Level, LOG_FILE};

struct Target {
    path: PathBuf,
    file: File,
    level: Level,
}

/// The master is one thread; a lock keeps this simple and sound.
static TARGET: Mutex<Option<Target>> = Mutex::new(None);

/// Follow `config`'s `LogFile` and `LogLevel` (at start and after each
/// reload); an error if the file cannot be opened (the old one is kept).
pub(crate) fn configure(config: &Config) -> Result<(), String> {
    let mut target = TARGET.lock().unwrap_or_else(PoisonError::into_inner);
    let level = *config.global.get(&core::LOG_LEVEL);
    let Some(Some(path)) = config.global.try_get(&LOG_FILE) else {
        *target = None;
        return Ok(());
    };
    match target.as_mut() {
        Some(t) if t.path == *path => t.level = level,
        _ => {
            let file =
                open_log_file(path).map_err(|e| format!("LogFile {}: {e}", path.display()))?;
            if let Some(warning) = log_dir_warning(path, config) {
                log_to_stderr(Level::Warn, &format!("LogFile {warning}"));
            }
            *target = Some(Target {
                path: path.clone(),
                file,
                level,
            });
        }
    }
    Ok(())
}

/// Reopen the file (SIGUSR1, after logrotate moved it).
pub(crate) fn reopen() {
    let mut target = TARGET.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = target.as_mut() {
        match open_log_file(&t.path) {
            Ok(file) => t.file = file,
            Err(e) => {
                let message = format!("reopening LogFile {}: {e}", t.path.display());
                let _ = writeln!(t.file, "{}", log_line(Level::Error, &message));
                log_to_stderr(Level::Error, &message);
            }
        }
    }
}

/// One line of the master's: stderr, and the log file.
pub(crate) fn log(level: Level, message: &str) {
    log_to_stderr(level, message);
    let mut target = TARGET.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = target.as_mut().filter(|t| level <= t.level) {
        let mut line = log_line(level, message);
        line.push('\n');
        // One write: O_APPEND keeps it whole among the workers' lines.
        let _ = t.file.write_all(line.as_bytes());
    }
}

/// A config's errors, as the master reports them when a reload fails:
/// stderr as `axkit --check` prints them, and one line each in the file.
pub(crate) fn config_errors(errors: &[ConfigError]) {
    super::report_errors(errors);
    let mut target = TARGET.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(t) = target.as_mut() {
        for e in errors {
            let mut line = log_line(Level::Error, &e.to_string());
            line.push('\n');
            let _ = t.file.write_all(line.as_bytes());
        }
    }
}
