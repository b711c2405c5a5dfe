//! Log levels (AxKit2's syslog-style names), the record handed to the
//! `logging` hook, and the escaping that keeps untrusted bytes from forging
//! or hiding log lines: one set of rules that the core and every plugin use.

use std::borrow::Cow;
use std::fmt::{self, Write};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::config::{core, Config, Key, Scopes};

/// `LogFile PATH` (global): the file `logging/file` appends log lines to.
/// Declared by that plugin; here because the master writes its own lines
/// (a failed reload, a worker that died) to the same file, and the master
/// runs no plugin code.
pub static LOG_FILE: Key<Option<PathBuf>> = Key::new("LogFile")
    .scopes(Scopes::GLOBAL)
    .doc("File that logging/file appends log lines to (the master's own lines go there too)");

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

/// Whether `c` must not reach a log line as it is: C0 controls (newline,
/// carriage return, escape…), DEL and the C1 controls, which start lines or
/// drive terminals; Unicode's line and paragraph separators, which some
/// viewers break lines at; and the bidirectional overrides and isolates,
/// which make a viewer show text in another order than it was written.
fn unsafe_in_log(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{2028}' | '\u{2029}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` made safe for a log line: C0 and C1 controls, DEL, the Unicode
/// line separators and the bidirectional controls become `\xNN` (or
/// `\u{NNNN}`), so nothing a client or a script sends can start a line of
/// its own, rewrite a terminal, or reorder what a reader
/// sees. Borrowed when nothing needed escaping (the usual case).
///
/// Idempotent: the result has no such characters left, so escaping again
/// changes nothing. The core escapes every message on its way to the
/// `logging` hooks and again where it formats a line for stderr or a file,
/// so a plugin never has to remember; backslashes are left as they are for
/// that reason (a literal `\x0a` from a client stays on its own line, which
/// is all that matters for forging).
pub fn escape_log(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_in_log) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    push_escaped(&mut out, s);
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c as u32 {
            n if n < 0x100 && unsafe_in_log(c) => {
                let _ = write!(out, "\\x{n:02x}");
            }
            n if unsafe_in_log(c) => {
                let _ = write!(out, "\\u{{{n:04x}}}");
            }
            _ => out.push(c),
        }
    }
}

/// Bytes that may not be UTF-8 (a script's stderr, a client's header) for a
/// log line: [`escape_log`], with each byte of an invalid sequence as
/// `\xNN` instead of being dropped or replaced.
pub fn escape_log_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return escape_log(s);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// A quoted field of an access log line (the request line, a header), as
/// Apache escapes them: `"` and `\` as `\"` and `\\`, every byte outside
/// printable ASCII as `\xNN`. A field can then never end its quotes early,
/// and the line parses back into the bytes that were sent.
pub fn escape_log_field(bytes: &[u8]) -> Cow<'_, str> {
    let plain = |b: &u8| (0x20..=0x7e).contains(b) && *b != b'"' && *b != b'\\';
    if bytes.iter().all(plain) {
        // Printable ASCII is UTF-8.
        return Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default());
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    Cow::Owned(out)
}

/// The one format for log lines written to stderr or a log file:
/// `[Wed, 02 Dec 2026 10:00:00 GMT] [warn] axkit[1234]: message`, the
/// message escaped (see [`escape_log`]) so that
/// it stays one line whatever it quotes.
pub fn log_line(level: Level, message: &str) -> String {
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let message = escape_log(message);
    format!("[{now}] [{level}] axkit[{}]: {message}", std::process::id())
}

/// Write one log line to stderr. A failed write is dropped, where
/// `eprintln!` would panic: a server whose stderr was closed (its terminal
/// gone, a log pipe's reader dead) keeps serving.
pub fn log_to_stderr(level: Level, message: &str) {
    use std::io::Write;
    let mut line = log_line(level, message);
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Open the log file `path` for appending, creating it mode 0640 (a log
/// quotes request lines, query strings included: not for every local
/// account to read). The master and the plugins' constructors open their
/// logs as root; where the workers' `User` may write in the log's
/// directory, it could put a symlink to any file there, so a symlink at
/// `path` that leads to a file is refused rather than followed (one to a
/// device, `/dev/stdout` say, is followed). The open never waits (a FIFO
/// with no reader is an error).
pub fn open_log_file(path: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // Never waiting in the open: a FIFO nobody reads put at the path would
    // hold the master there, deaf to its signals.
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let (file, linked) = match opened {
        Ok(file) => (file, false),
        // A symlink is followed only to what is not a regular file
        // (`/dev/stdout`, `/dev/null`, a terminal or a pipe), where no one
        // can point it at a file of root's to append to; what it led to is
        // looked at once open, so a link swapped meanwhile changes nothing.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => (
            OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(named)?,
            true,
        ),
        Err(e) => return Err(named(e)),
    };
    if linked && file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a symbolic link to a file, which a log file is not opened through \
             (a link to a device such as /dev/stdout is)",
        ));
    }
    // Writes wait as they always did (each log has a thread of its own).
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// An open's error, said for a log.
fn named(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENXIO) => io::Error::new(e.kind(), "is a FIFO nobody reads"),
        _ => e,
    }
}

/// A warning when this process runs as root, `config` has the workers
/// run as `User`, and that user may write in `path`'s directory (as its
/// owner, through its primary group, or as anyone): it could replace the
/// log by a symlink, which root would follow when it next opens the log
/// if the log were not opened with `O_NOFOLLOW` (nginx's CVE-2016-1247),
/// or fill the directory. Said once per process and path.
pub fn log_dir_warning(path: &Path, config: &Config) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    static WARNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    // SAFETY: geteuid has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let user = config.global.get(&core::USER).as_ref()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let md = std::fs::metadata(dir).ok()?;
    let writable = (md.uid() == user.uid && md.mode() & 0o200 != 0)
        || (md.gid() == user.gid && md.mode() & 0o020 != 0)
        || md.mode() & 0o002 != 0;
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if !writable || warned.iter().any(|p| p == path) {
        return None;
    }
    warned.push(path.to_path_buf());
    Some(format!(
        "{}: its directory {} may be written by User {}, who could replace the log; \
         make it root's (the log is opened as root)",
        path.display(),
        dir.display(),
        user.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_cannot_start_a_line_or_drive_a_terminal() {
        let forged = "/x\n[Wed, 02 Dec 2026 10:00:00 GMT] [emerg] axkit[1]: FORGED\r\x1b[2J";
        let escaped = escape_log(forged);
        assert_eq!(
            escaped,
            "/x\\x0a[Wed, 02 Dec 2026 10:00:00 GMT] [emerg] axkit[1]: FORGED\\x0d\\x1b[2J"
        );
        assert_eq!(escape_log(&escaped), escaped, "idempotent");
        assert_eq!(
            escape_log("a\u{85}b\u{2028}c\u{202e}d\x7f"),
            "a\\x85b\\u{2028}c\\u{202e}d\\x7f"
        );
        assert!(matches!(
            escape_log("plain \"text\" é \\x0a"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn invalid_utf8_is_shown_byte_by_byte() {
        assert_eq!(
            escape_log_bytes(b"ok \xff\xfe\n \xc3\xa9"),
            "ok \\xff\\xfe\\x0a \u{e9}"
        );
        assert!(matches!(escape_log_bytes(b"fine"), Cow::Borrowed("fine")));
    }

    #[test]
    fn access_log_fields_keep_their_quotes() {
        assert_eq!(escape_log_field(b"a\"b\\c\n\xe9"), "a\\\"b\\\\c\\x0a\\xe9");
        assert!(matches!(
            escape_log_field(b"GET / HTTP/1.1"),
            Cow::Borrowed(_)
        ));
    }
}
