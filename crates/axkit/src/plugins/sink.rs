//! An append-only log destination shared by the logging plugins: a file
//! opened with O_APPEND (so several workers can write whole lines to it
//! without interleaving), or `-` for stdout, reopened on SIGUSR1.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) struct Sink {
    path: PathBuf,
    file: RefCell<Option<File>>,
}

impl Sink {
    /// Open `path` (created if missing); `-` means stdout.
    pub fn open(path: &Path) -> io::Result<Sink> {
        let sink = Sink {
            path: path.to_path_buf(),
            file: RefCell::new(None),
        };
        sink.reopen()?;
        Ok(sink)
    }

    fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }

    /// Reopen the file (logrotate moved it away).
    pub fn reopen(&self) -> io::Result<()> {
        if self.is_stdout() {
            return Ok(());
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        *self.file.borrow_mut() = Some(file);
        Ok(())
    }

    /// Write one whole line in one syscall.
    pub fn write_line(&self, line: &[u8]) {
        if self.is_stdout() {
            let mut out = io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.flush();
        } else if let Some(file) = self.file.borrow_mut().as_mut() {
            let _ = file.write_all(line);
        }
    }
}
