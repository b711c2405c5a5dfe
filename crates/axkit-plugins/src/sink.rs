//! An append-only log destination shared by the logging plugins: a file
//! opened with O_APPEND (so several workers can write whole lines to it
//! without interleaving), or `-` for stdout, reopened on SIGUSR1.
//!
//! A sink opened with [`Sink::open_background`] hands its lines to a
//! writer thread over a bounded queue, so a slow or stalled disk never
//! blocks the event loop (the access log writes once per request); when
//! the queue is full, in lines or in bytes (a line quoting big headers
//! may be tens of KiB), lines are dropped and counted rather than waited
//! for. The thread writes whatever has queued up in one `write`, and the
//! sink flushes the queue and joins the thread when dropped.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use axkit::plugin::open_log_file;

/// Lines a background sink may hold before it starts dropping them.
const QUEUE: usize = 16 * 1024;
/// Bytes of lines a background sink may hold before it starts dropping
/// them.
const QUEUE_BYTES: usize = 16 << 20;
/// Most bytes the writer thread gathers into one write.
const BATCH: usize = 64 * 1024;

pub(crate) struct Sink {
    path: PathBuf,
    file: RefCell<Option<File>>,
    background: Option<Background>,
}

struct Background {
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    dropped: Cell<u64>,
    /// Bytes of the lines queued and not yet taken by the thread.
    queued: Arc<AtomicUsize>,
}

enum Message {
    Line(Vec<u8>),
    Reopen,
}

fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

impl Sink {
    /// Open `path` (created if missing); `-` means stdout. Lines are
    /// written by the calling thread.
    pub fn open(path: &Path) -> io::Result<Sink> {
        let sink = Sink {
            path: path.to_path_buf(),
            file: RefCell::new(None),
            background: None,
        };
        sink.reopen()?;
        Ok(sink)
    }

    /// Open `path` (so that an error shows at once) and write its lines
    /// from a thread of its own.
    pub fn open_background(path: &Path) -> io::Result<Sink> {
        let file = if is_stdout(path) {
            None
        } else {
            Some(open_log_file(path)?)
        };
        let (tx, rx) = sync_channel(QUEUE);
        let owned = path.to_path_buf();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let thread = std::thread::Builder::new()
            .name("axkit-log".into())
            .spawn(move || write_loop(&owned, file, rx, &taken))?;
        Ok(Sink {
            path: path.to_path_buf(),
            file: RefCell::new(None),
            background: Some(Background {
                tx: Some(tx),
                thread: Some(thread),
                dropped: Cell::new(0),
                queued,
            }),
        })
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reopen the file (logrotate moved it away); on an error the file
    /// open until now is kept.
    pub fn reopen(&self) -> io::Result<()> {
        if let Some(bg) = &self.background {
            bg.send(Message::Reopen);
            return Ok(());
        }
        if is_stdout(&self.path) {
            return Ok(());
        }
        *self.file.borrow_mut() = Some(open_log_file(&self.path)?);
        Ok(())
    }

    /// Write one whole line in one syscall (or queue it).
    pub fn write_line(&self, line: &[u8]) {
        if let Some(bg) = &self.background {
            bg.send(Message::Line(line.to_vec()));
        } else if is_stdout(&self.path) {
            let mut out = io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.flush();
        } else if let Some(file) = self.file.borrow_mut().as_mut() {
            let _ = file.write_all(line);
        }
    }
}

impl Background {
    fn send(&self, message: Message) {
        let Some(tx) = &self.tx else { return };
        let len = match &message {
            Message::Line(line) => line.len(),
            Message::Reopen => 0,
        };
        if self.queued.load(Ordering::Relaxed) + len <= QUEUE_BYTES {
            self.queued.fetch_add(len, Ordering::Relaxed);
            match tx.try_send(message) {
                Ok(()) => return,
                Err(e) => {
                    self.queued.fetch_sub(len, Ordering::Relaxed);
                    if let TrySendError::Disconnected(_) = e {
                        return;
                    }
                }
            }
        }
        let n = self.dropped.get() + 1;
        self.dropped.set(n);
        // Say so now and then, on stderr: the log itself is what is stuck.
        if n.is_power_of_two() {
            axkit::plugin::log_to_stderr(
                axkit::plugin::Level::Error,
                &format!("log writer behind: {n} lines dropped"),
            );
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(bg) = &mut self.background {
            // Closing the queue ends the thread once it has written the rest.
            bg.tx = None;
            if let Some(thread) = bg.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// The writer thread: gather what is queued, write it in one go.
fn write_loop(path: &Path, mut file: Option<File>, rx: Receiver<Message>, queued: &AtomicUsize) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    batch.extend_from_slice(&line);
                    queued.fetch_sub(line.len(), Ordering::Relaxed);
                }
                Message::Reopen => {
                    flush(&mut file, &mut batch);
                    if !is_stdout(path) {
                        match open_log_file(path) {
                            Ok(f) => file = Some(f),
                            Err(e) => axkit::plugin::log_to_stderr(
                                axkit::plugin::Level::Error,
                                &format!("reopening {}: {e}", path.display()),
                            ),
                        }
                    }
                }
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        flush(&mut file, &mut batch);
    }
}

fn flush(file: &mut Option<File>, batch: &mut Vec<u8>) {
    if batch.is_empty() {
        return;
    }
    match file {
        Some(f) => {
            let _ = f.write_all(batch);
        }
        None => {
            let mut out = io::stdout().lock();
            let _ = out.write_all(batch);
            let _ = out.flush();
        }
    }
    batch.clear();
}
