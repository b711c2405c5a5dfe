//! Running a script: starting it in a slot of `CGIMaxProcesses`, feeding
//! it the request body and relaying its output to the client (backpressure
//! both ways, never blocking the worker), logging its stderr, and once the
//! response is decided, reaping it, or ending its process group, in a task
//! of its own.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::time::{sleep_until, timeout, Instant};

use axkit::plugin::{escape_log_bytes, Body, BodyError, Context, Level, Logger, Outcome};

use super::env::{environment, EnvInput};
use super::map::{Script, Start};
use super::output::{header_end, parse_head, Applied};
use super::process::{end_leftovers, exited, signal_group, terminate};
use super::{ScriptSlot, ServeCgi, CGI_KILL_GRACE, CGI_KILL_GROUP, CGI_MAX_TIME, CGI_TIMEOUT};

/// Largest header block a script may send before its body.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// How much script output is read (and written to the client) at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A stderr line longer than this is logged in pieces.
const MAX_LOG_LINE: usize = 4096;

/// What woke the script's event loop.
enum Event {
    Stdout(std::io::Result<usize>),
    Stderr(std::io::Result<usize>),
    StdinWritten(std::io::Result<usize>),
    Body(Result<Option<Bytes>, BodyError>),
    ClientGone,
    Idle,
    MaxTime,
}

/// One running script: its process and the pipes still open.
struct Running {
    child: Child,
    pgid: i32,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// Request body read from the client, not yet taken by the script.
    pending: Option<Bytes>,
    /// More request body to read from the client.
    body_open: bool,
    /// Unfinished stderr line.
    errbuf: BytesMut,
    /// For stderr lines, also once the request is over.
    log: Logger,
    idle: Duration,
    idle_at: Instant,
    max_at: Option<Instant>,
    grace: Duration,
    /// CGIKillGroup: end the script's process group once it has exited.
    kill_group: bool,
    /// We gave up on the script (timeout, bad output, client gone): end it
    /// rather than wait for it.
    doomed: bool,
    /// The body length the script's Content-Length announced, for a
    /// response that carries a body: the body is cut there, and one that
    /// ends short of it is a truncated response.
    length: Option<u64>,
    /// Body bytes relayed to the client so far.
    sent: u64,
}

impl ServeCgi {
    pub(super) async fn run(&self, ctx: &mut Context, mut script: Script) -> Outcome {
        let start = match Start::new(ctx, &script) {
            Ok(start) => start,
            Err(status) => return Outcome::Status(status),
        };
        let Some(permit) = self.slot(ctx, &script).await else {
            return Outcome::Status(503);
        };
        // SCRIPT_FILENAME is absolute, whatever the configuration wrote.
        if let Ok(absolute) = std::path::absolute(&script.path) {
            script.path = absolute;
        }
        let input = EnvInput::of(ctx);
        let body = input.body();
        let env = match environment(&input, &script, |name| std::env::var_os(name)) {
            Ok(env) => env,
            Err(name) => {
                let msg = format!(
                    "serve_cgi: {}: {name} would hold a NUL byte, which no environment \
                     variable can",
                    script.path.display()
                );
                ctx.log(Level::Error, &msg);
                return Outcome::Status(500);
            }
        };
        let mut command = Command::new(&start.program);
        command
            .env_clear()
            .envs(env)
            .current_dir(&start.dir)
            // std stays on its posix_spawn path with these options (see
            // `Command::posix_spawn` in library/std/src/sys/process/unix/
            // unix.rs): process_group becomes POSIX_SPAWN_SETPGROUP,
            // current_dir posix_spawn_file_actions_addchdir_np (glibc
            // 2.29+), and setting PATH is fine because the program is a
            // path. What would leave it (pre_exec, uid/gid, groups, chroot)
            // is not used, so the worker is never forked.
            .process_group(0)
            .stdin(if body.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The last resort if the worker itself goes away mid-request.
            .kill_on_drop(true);
        let spawned = self.spawner.spawn(command).await;
        drop(start);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let msg = format!("serve_cgi: {}: cannot run: {e}", script.path.display());
                ctx.log(Level::Error, &msg);
                return Outcome::Status(500);
            }
        };
        let config = ctx.config();
        let idle = *config.get(&CGI_TIMEOUT);
        let max_time = *config.get(&CGI_MAX_TIME);
        let now = Instant::now();
        let mut run = Running {
            pgid: child.id().map_or(0, |id| id as i32),
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            pending: None,
            body_open: body.is_some(),
            errbuf: BytesMut::new(),
            log: ctx.logger(),
            idle,
            idle_at: now + idle,
            max_at: (!max_time.is_zero()).then(|| now + max_time),
            grace: *config.get(&CGI_KILL_GRACE),
            kill_group: *config.get(&CGI_KILL_GROUP),
            doomed: false,
            length: None,
            sent: 0,
        };
        let nph = script
            .path
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b"nph-"));
        let outcome = if nph {
            run.relay_raw(ctx, &script).await
        } else {
            run.respond(ctx, &script).await
        };
        run.finish(script, permit);
        outcome
    }

    /// Wait for a free script slot, in a bounded queue for a bounded time.
    async fn slot(&self, ctx: &Context, script: &Script) -> Option<ScriptSlot> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(ScriptSlot::new(permit, self.running));
        }
        let why = if self.waiting.get() >= self.max_queue {
            "queue full"
        } else {
            self.waiting.set(self.waiting.get() + 1);
            let waited = timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
            self.waiting.set(self.waiting.get() - 1);
            match waited {
                Ok(Ok(permit)) => return Some(ScriptSlot::new(permit, self.running)),
                _ => "waited too long",
            }
        };
        let msg = format!(
            "serve_cgi: {}: CGIMaxProcesses reached, {why}: 503",
            script.path.display()
        );
        ctx.log(Level::Warn, &msg);
        None
    }
}

impl Running {
    /// The next thing that happens to the script or the request: output
    /// (into `out`), stderr, stdin taking body, body arriving, the client
    /// leaving, a timeout. Writing output to the client is the caller's
    /// job, between events: while the client is slow nothing more is read
    /// from the script, which is what keeps memory flat.
    async fn next(&mut self, ctx: &mut Context, out: &mut BytesMut) -> Event {
        let idle_at = self.idle_at;
        let max_at = self.max_at;
        let body_open = self.body_open;
        let want_body = body_open && self.pending.is_none() && self.stdin.is_some();
        let client = async {
            if want_body {
                Event::Body(ctx.read_body().await)
            } else if body_open {
                std::future::pending().await
            } else {
                ctx.client_closed().await;
                Event::ClientGone
            }
        };
        let stdout = &mut self.stdout;
        let stderr = &mut self.stderr;
        let stdin = &mut self.stdin;
        let pending = &self.pending;
        let errbuf = &mut self.errbuf;
        tokio::select! {
            biased;
            r = read_pipe(stderr, errbuf) => Event::Stderr(r),
            r = read_pipe(stdout, out) => Event::Stdout(r),
            r = async { stdin.as_mut().unwrap().write(pending.as_ref().unwrap()).await },
                if stdin.is_some() && pending.is_some() => Event::StdinWritten(r),
            e = client => e,
            _ = sleep_until(idle_at) => Event::Idle,
            _ = async { sleep_until(max_at.unwrap()).await }, if max_at.is_some() => {
                Event::MaxTime
            }
        }
    }

    /// Handle the events that do not concern stdout. Returns an outcome
    /// when the request must end now.
    fn handle(&mut self, ctx: &mut Context, script: &Script, event: Event) -> Option<Outcome> {
        match event {
            // The callers read stdout themselves.
            Event::Stdout(_) => None,
            Event::Stderr(r) => {
                if !matches!(r, Ok(n) if n > 0) {
                    self.stderr = None;
                }
                self.log_stderr(&script.path, self.stderr.is_none());
                None
            }
            Event::StdinWritten(Ok(n)) => {
                self.progress();
                let rest = self.pending.take().map(|mut p| p.split_off(n));
                self.pending = rest.filter(|p| !p.is_empty());
                if self.pending.is_none() && !self.body_open {
                    // The whole body is in: the script sees EOF.
                    self.stdin = None;
                }
                None
            }
            Event::StdinWritten(Err(_)) => {
                // The script closed its stdin: it wants no (more) body. The
                // core drains or discards the rest.
                self.stdin = None;
                self.pending = None;
                self.body_open = false;
                None
            }
            Event::Body(Ok(Some(chunk))) => {
                self.progress();
                self.pending = Some(chunk);
                None
            }
            Event::Body(Ok(None)) => {
                self.body_open = false;
                if self.pending.is_none() {
                    self.stdin = None;
                }
                None
            }
            Event::Body(Err(e)) => {
                let msg = format!(
                    "serve_cgi: {}: reading the request body: {e}",
                    script.path.display()
                );
                ctx.log(Level::Info, &msg);
                self.doomed = true;
                Some(e.into())
            }
            Event::ClientGone => {
                let msg = format!(
                    "serve_cgi: {}: client {} went away, ending the script",
                    script.path.display(),
                    ctx.client().addr_text()
                );
                ctx.log(Level::Info, &msg);
                self.doomed = true;
                Some(Outcome::Done)
            }
            Event::Idle => {
                let what = format!("no progress for {:?}, ended", self.idle);
                Some(self.gateway_failure(ctx, script, 504, &what))
            }
            Event::MaxTime => {
                Some(self.gateway_failure(ctx, script, 504, "CGIMaxTime reached, ended"))
            }
        }
    }

    fn progress(&mut self) {
        self.idle_at = Instant::now() + self.idle;
    }

    /// The script failed us: log it, and answer `status` if the head has
    /// not gone out (otherwise the core logs the error and closes).
    fn gateway_failure(
        &mut self,
        ctx: &Context,
        script: &Script,
        status: u16,
        what: &str,
    ) -> Outcome {
        self.doomed = true;
        let msg = format!("serve_cgi: {}: {what}", script.path.display());
        if ctx.head_sent() {
            return Outcome::Error(msg);
        }
        ctx.log(Level::Error, &msg);
        Outcome::Status(status)
    }

    /// A normal (parsed-header) script: read its header block, answer with
    /// it, then stream its body.
    async fn respond(&mut self, ctx: &mut Context, script: &Script) -> Outcome {
        let mut out = BytesMut::with_capacity(4096);
        // Where the search for the block's end goes on: each read's bytes
        // are searched once, however finely the script cut its output.
        let mut from = 0;
        let head = loop {
            let event = self.next(ctx, &mut out).await;
            match event {
                Event::Stdout(Ok(n)) if n > 0 => {
                    self.progress();
                    // The limit holds however the output was cut into reads.
                    let end = match header_end(&out, from) {
                        Ok(end) => Some(end),
                        Err(next) => {
                            from = next;
                            None
                        }
                    };
                    if let Some(end) = end.filter(|&end| end <= MAX_HEADER_BLOCK) {
                        let block = out.split_to(end);
                        break parse_head(&block);
                    }
                    if end.is_some() || out.len() > MAX_HEADER_BLOCK {
                        let what = format!("header block larger than {MAX_HEADER_BLOCK} bytes");
                        return self.gateway_failure(ctx, script, 502, &what);
                    }
                    if out.capacity() - out.len() < 1024 {
                        out.reserve(4096);
                    }
                }
                Event::Stdout(r) => {
                    self.stdout = None;
                    let status = self.exit_status().await;
                    let what = match r {
                        Err(e) => format!("reading its output: {e}"),
                        Ok(_) if out.is_empty() => format!("{status} without any output"),
                        Ok(_) => format!("{status} before the end of its header block"),
                    };
                    return self.gateway_failure(ctx, script, 502, &what);
                }
                other => {
                    if let Some(outcome) = self.handle(ctx, script, other) {
                        return outcome;
                    }
                }
            }
        };
        let head = match head {
            Ok(head) => head,
            Err(what) => return self.gateway_failure(ctx, script, 502, &what),
        };
        // A HEAD response announces the length a GET would get: the one
        // the script declared, not that of what it sent (usually nothing),
        // so such output is not collected into a body of its own.
        let collect = !(head.content_length.is_some() && ctx.request.is_head());
        let length = head.content_length;
        match head.apply(ctx) {
            Applied::Redirected => return Outcome::Done,
            Applied::Invalid(what) => return self.gateway_failure(ctx, script, 502, &what),
            Applied::Ready => {}
        }
        self.length =
            length.filter(|_| !ctx.request.is_head() && !axkit_http::bodiless(ctx.response.status));
        // Most scripts are done by now: with the whole output in hand it
        // goes out with a Content-Length in one write, rather than as a
        // chunked stream. Only what is already there is taken: a script
        // still working gets its head sent and its body streamed.
        while collect && out.len() < READ_CHUNK {
            let Some(stdout) = self.stdout.as_mut() else {
                break;
            };
            out.reserve(4096);
            match timeout(Duration::ZERO, stdout.read_buf(&mut out)).await {
                Ok(Ok(0)) => {
                    self.stdout = None;
                    match self.length {
                        // Short of its length: streamed, so that the
                        // connection closes after it (see `stream`).
                        Some(n) if n > out.len() as u64 => break,
                        Some(n) if n < out.len() as u64 => {
                            self.overran(ctx, script, n);
                            out.truncate(n as usize);
                        }
                        _ => {}
                    }
                    ctx.response.body = Body::Bytes(out.freeze());
                    return Outcome::Ok;
                }
                Ok(Ok(_)) => {}
                // Still running, or an error that streaming will report.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if !out.is_empty() || !collect {
            if let Err(outcome) = self.relay(ctx, script, out.split().freeze()).await {
                return outcome;
            }
        }
        self.stream(ctx, script, false).await
    }

    /// Stream a piece of the body, cut where the script's Content-Length
    /// says the body ends. What the script sends beyond is dropped, once
    /// logged, and the script ended (nginx: "upstream sent more data than
    /// specified in Content-Length"): the client gets exactly the length
    /// announced, nothing past it reaches the connection, so the next
    /// response on it is read as itself. `Err`: the request is over.
    async fn relay(
        &mut self,
        ctx: &mut Context,
        script: &Script,
        mut chunk: Bytes,
    ) -> Result<(), Outcome> {
        let over = self.length.filter(|&n| self.sent + chunk.len() as u64 > n);
        if let Some(n) = over {
            chunk.truncate((n - self.sent) as usize);
        }
        self.sent += chunk.len() as u64;
        if ctx.write(chunk).await.is_err() {
            // The client went away or stalled: the core closes.
            self.doomed = true;
            return Err(Outcome::Done);
        }
        if let Some(n) = over {
            self.overran(ctx, script, n);
            self.doomed = true;
            return Err(Outcome::Done);
        }
        Ok(())
    }

    /// Log output past the `n` bytes the script's Content-Length announced.
    fn overran(&self, ctx: &Context, script: &Script, n: u64) {
        let msg = format!(
            "serve_cgi: {}: sent more than the {n} bytes its Content-Length announced; \
             the response was cut there",
            script.path.display()
        );
        ctx.log(Level::Error, &msg);
    }

    /// An `nph-` script: relay its output untouched.
    async fn relay_raw(&mut self, ctx: &mut Context, script: &Script) -> Outcome {
        self.stream(ctx, script, true).await
    }

    /// Copy the script's stdout to the client until EOF; a body that ends
    /// short of the script's Content-Length then fails the request.
    async fn stream(&mut self, ctx: &mut Context, script: &Script, raw: bool) -> Outcome {
        let mut out = BytesMut::new();
        while self.stdout.is_some() {
            if out.capacity() < READ_CHUNK / 2 {
                out = BytesMut::with_capacity(READ_CHUNK);
            }
            match self.next(ctx, &mut out).await {
                Event::Stdout(Ok(n)) if n > 0 => {
                    let chunk = out.split().freeze();
                    if raw {
                        if ctx.write_raw(&chunk).await.is_err() {
                            // The client went away or stalled: the core closes.
                            self.doomed = true;
                            return Outcome::Done;
                        }
                    } else if let Err(outcome) = self.relay(ctx, script, chunk).await {
                        return outcome;
                    }
                    self.progress();
                }
                Event::Stdout(Ok(_)) => self.stdout = None,
                Event::Stdout(Err(e)) => {
                    self.stdout = None;
                    let what = format!("reading its output: {e}");
                    return self.gateway_failure(ctx, script, 502, &what);
                }
                other => {
                    if let Some(outcome) = self.handle(ctx, script, other) {
                        return outcome;
                    }
                }
            }
        }
        if raw && !ctx.head_sent() {
            let status = self.exit_status().await;
            let what = format!("{status} without any output");
            return self.gateway_failure(ctx, script, 502, &what);
        }
        match self.length {
            // Short of its length: a truncated response, which only closing
            // the connection tells the client (or a 502 if nothing went).
            Some(n) if self.sent < n => {
                let what = format!(
                    "its output ended after {} of the {n} bytes its Content-Length announced",
                    self.sent
                );
                self.gateway_failure(ctx, script, 502, &what)
            }
            _ => Outcome::Done,
        }
    }

    /// How the script ended, for a log line, waiting for it a moment.
    async fn exit_status(&mut self) -> String {
        match timeout(self.grace, self.child.wait()).await {
            Ok(Ok(status)) => describe(status),
            _ => "it closed its output".to_string(),
        }
    }

    /// Log complete stderr lines (and the rest too at EOF).
    fn log_stderr(&mut self, path: &Path, eof: bool) {
        loop {
            let cut = match memchr::memchr(b'\n', &self.errbuf) {
                Some(i) => i + 1,
                None if self.errbuf.len() >= MAX_LOG_LINE || (eof && !self.errbuf.is_empty()) => {
                    self.errbuf.len().min(MAX_LOG_LINE)
                }
                None => return,
            };
            let line = self.errbuf.split_to(cut);
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            // Bytes that are not UTF-8 shown as \xNN, not replaced.
            let text = escape_log_bytes(line);
            let msg = format!("serve_cgi: {}: stderr: {text}", path.display());
            self.log.log(Level::Error, &msg);
        }
    }

    /// The response is decided: the script gets EOF on stdin and loses its
    /// stdout. A task of its own then waits (within the timeouts) for it to
    /// exit and close stderr, logging what it still says, or ends its
    /// process group; with `CGIKillGroup` it also ends what the script
    /// left in its group. The slot is freed once all that is done. The
    /// response does not wait for any of it.
    fn finish(mut self, script: Script, permit: ScriptSlot) {
        self.stdin = None;
        self.stdout = None;
        self.pending = None;
        if self.doomed {
            tokio::task::spawn_local(terminate(self.child, self.pgid, self.grace, permit));
        } else {
            tokio::task::spawn_local(self.reap(script.path, permit));
        }
    }

    async fn reap(mut self, path: PathBuf, permit: ScriptSlot) {
        let mut deadline = match self.max_at {
            Some(max) => max.min(self.idle_at),
            None => self.idle_at,
        };
        let exit = exited(self.pgid);
        tokio::pin!(exit);
        let mut exited = false;
        while !exited || self.stderr.is_some() {
            let stderr = &mut self.stderr;
            let errbuf = &mut self.errbuf;
            tokio::select! {
                r = read_pipe(stderr, errbuf) => {
                    if !matches!(r, Ok(n) if n > 0) {
                        self.stderr = None;
                    }
                    self.log_stderr(&path, self.stderr.is_none());
                }
                () = &mut exit, if !exited => {
                    exited = true;
                    if self.kill_group {
                        // The script, unreaped, keeps the group's id ours.
                        signal_group(self.pgid, libc::SIGTERM);
                        deadline = deadline.min(Instant::now() + self.grace);
                    }
                }
                _ = sleep_until(deadline) => break,
            }
        }
        // Only an exit of the script's own says something about it.
        let log_failure = |log: &Logger, status: Option<ExitStatus>| {
            if let Some(status) = status.filter(|s| exited && !s.success()) {
                let msg = format!("serve_cgi: {}: {}", path.display(), describe(status));
                log.log(Level::Info, &msg);
            }
        };
        if !exited || self.stderr.is_some() {
            // Still running (or something it started still holds stderr).
            let status = terminate(self.child, self.pgid, self.grace, permit).await;
            return log_failure(&self.log, status);
        }
        log_failure(&self.log, self.child.wait().await.ok());
        if self.kill_group && end_leftovers(self.pgid, deadline).await {
            let msg = format!(
                "serve_cgi: {}: its process group was still there CGIKillGrace after SIGTERM: \
                 SIGKILL",
                path.display()
            );
            self.log.log(Level::Info, &msg);
        }
        drop(permit);
    }
}

/// Read from a pipe that is still open; never resolves for a closed one, so
/// a `select!` can list every pipe whatever its state.
async fn read_pipe<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    match pipe {
        Some(pipe) => pipe.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".to_string(),
    }
}
