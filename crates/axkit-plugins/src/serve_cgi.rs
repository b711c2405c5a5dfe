//! `serve_cgi`: runs CGI/1.1 programs (RFC 3875) as the `response` hook,
//! streaming the request body to the script and its output to the client,
//! with backpressure both ways, without ever blocking the worker.
//!
//! Directives:
//! - `CGI_Match REGEX` (Server, Location): files (as mapped by
//!   `uri_to_file`) whose path matches run as CGI (AxKit2's directive).
//! - `ScriptAlias /url-prefix/ PATH` (Server, Location; repeatable): every
//!   URL under the prefix runs as CGI from PATH (Apache's directive). PATH
//!   may be a directory of scripts or one program, which then gets the rest
//!   of the URL as PATH_INFO
//!   (`ScriptAlias /git/ /usr/lib/git-core/git-http-backend/`).
//! - `CGIPassAuth on|off` (default off): pass `Authorization` and
//!   `Proxy-Authorization` to scripts as HTTP_AUTHORIZATION…
//! - `SetEnv NAME VALUE`, `PassEnv NAME…` (repeatable): extra variables
//!   for scripts; PassEnv copies the server's own value, if it has one.
//! - `CGITimeout DURATION` (default 60s): a script that makes no progress
//!   for this long (no output, no request body taken) is ended.
//! - `CGIMaxTime DURATION` (default 0 = no limit): a script running longer
//!   than this is ended.
//! - `CGIKillGrace DURATION` (default 2s): how long an ended script's
//!   process group has between SIGTERM and SIGKILL.
//! - `CGIKillGroup on|off` (default on): once a script has exited after
//!   its request, end whatever it left running in its process group
//!   (SIGTERM, `CGIKillGrace`, SIGKILL), so that nothing a script starts
//!   outlives it, and keep its `CGIMaxProcesses` slot until all of it is
//!   gone. Off: background children that closed their stdio outlive the
//!   request and are not counted by `CGIMaxProcesses` (one that still
//!   holds the script's stdout or stderr is waited for, within the
//!   timeouts, as before). Either way a script the server ends (a
//!   timeout, the client gone, bad output) has its whole group ended, and
//!   a child that left the group (`setsid`, `setpgid`) escapes both.
//! - `CGIMaxProcesses N` (global, default 64): scripts running at once per
//!   worker; `CGIMaxQueue N` (global, default 256) requests may wait for a
//!   slot, each at most `CGIQueueTimeout DURATION` (global, default 30s);
//!   beyond either: 503.
//!
//! ```text
//! <Server>
//!     DocumentRoot demo
//!     Plugin serve_cgi          # before serve_file (checked at start-up)
//!     Plugin uri_to_file
//!     Plugin serve_file
//!     CGI_Match   \.(cgi|pl|py)$
//!     ScriptAlias /cgi-bin/ cgi-bin/
//!     ScriptAlias /git/ /usr/lib/git-core/git-http-backend/
//!     SetEnv GIT_PROJECT_ROOT /srv/git
//!     SetEnv GIT_HTTP_EXPORT_ALL 1
//! </Server>
//! ```
//!
//! How it behaves, and why:
//! - A script is looked up beneath its root (the DocumentRoot, or the
//!   ScriptAlias directory), under `FollowSymlinks` like every file a
//!   request opens, and started as `./NAME` in a handle on its directory
//!   opened beneath that root: a directory swapped for a symlink out of
//!   the root between the lookup and the exec cannot make it run a program
//!   from elsewhere (see `Start`).
//! - A file that would run as CGI is never served as a static file: one
//!   that is not executable answers 403 (logged). To guarantee it, the
//!   plugin refuses to start when `serve_file` comes first in a chain.
//! - The environment holds only the RFC 3875 meta-variables, `HTTP_*` for
//!   request headers, SetEnv/PassEnv and a fixed `PATH` (Apache sets one
//!   too; scripts need it to find `cat`): nothing of the server's own
//!   environment leaks by accident. `HTTP_PROXY` is never set (httpoxy),
//!   header names with `_` are dropped (they would collide with their `-`
//!   twin), credentials only with `CGIPassAuth on`.
//! - A chunked request body is de-chunked and streamed as it arrives,
//!   without CONTENT_LENGTH (what Apache does): the script reads stdin to
//!   EOF. Nothing is buffered, so uploads of any size work; the core's
//!   `MaxRequestBody` (default 1M) still bounds them: raise it where
//!   scripts take uploads or `git push`.
//! - Output the script has finished by the time its header block is read
//!   goes out in one write with a Content-Length; otherwise the body is
//!   streamed (chunked unless the script sent a Content-Length), waiting
//!   for a slow client before reading more, so memory stays flat. A HEAD
//!   response carries the Content-Length the script sent, if it sent one.
//! - Scripts start through std's posix_spawn path (no `pre_exec`, so the
//!   worker's memory is never copied), called from a few spawner threads
//!   so that the event loop never waits for an exec (see `Spawner`), each
//!   script in a process group of its own so that a timeout or a client
//!   going away ends everything it started: SIGTERM to the group,
//!   `CGIKillGrace`, then SIGKILL (`CGIKillGroup` does the same once a
//!   script ends on its own). Neither the response nor the next request
//!   on the connection waits for that. Every descriptor of the worker is
//!   close-on-exec (those it inherited too: see
//!   `close_inherited_on_exec`), so a script gets only its stdio.
//! - Malformed output (a bad header line, CR/LF/NUL in a field, a header
//!   block over 64 KiB, exit before a complete header) answers 502 and logs
//!   the script and what was wrong; so does a head that could be read two
//!   ways: a repeated Status, Location or Content-Length, or any
//!   Transfer-Encoding (the server frames the body). stderr lines go to the
//!   error log tagged with the script.
//! - `REDIRECT_STATUS` is 200, or after an internal redirect (an
//!   `ErrorDocument`, a script's local `Location`) the status of the
//!   request redirected from, with its decoded path in `REDIRECT_URL` and
//!   its query, if any, in `REDIRECT_QUERY_STRING` (as Apache). An
//!   ErrorDocument script always runs as a GET; its `REQUEST_URI` is the
//!   request-target the client sent (Apache takes it from the request line).
//! - `Location: /local/path` without Status is an internal redirect (a GET;
//!   the body is dropped); an absolute URL without Status answers 302.
//! - `nph-*` scripts write the whole response themselves; it is relayed
//!   byte for byte and the connection closes after it.

use std::cell::Cell;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use axkit::config::{Args, Directive, Key, List, Scopes};
use axkit::plugin::BodyError;
use axkit::plugin::{
    escape_log_bytes, hook, is_escape, Body, Context, DocRoot, HookFuture, Level, Logger, Outcome,
    Plugin, PluginInit, PluginSpec, Rule, DOCUMENT_ROOT,
};
use regex::Regex;

use super::cgi_output::{header_end, parse_head, Applied};
use super::cgi_process::{
    close_inherited_on_exec, end_leftovers, exited, signal_group, terminate, Spawner,
};

/// Largest header block a script may send before its body.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// How much script output is read (and written to the client) at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A stderr line longer than this is logged in pieces.
const MAX_LOG_LINE: usize = 4096;
/// The PATH scripts get unless SetEnv/PassEnv say otherwise (Apache's
/// default, minus the sbin directories).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

const HERE: Scopes = Scopes::SERVER.or(Scopes::LOCATION);

static CGI_MATCH: Key<Option<Regex>> = Key::new("CGI_Match")
    .scopes(HERE)
    .doc("Files whose path matches run as CGI scripts");

/// `ScriptAlias /url-prefix/ PATH`.
static SCRIPT_ALIAS: List<(String, String)> = List::parsed("ScriptAlias", |args| match args {
    [prefix, target] if prefix.starts_with('/') => Ok((prefix.to_string(), target.to_string())),
    [prefix, _] => Err(format!(
        "expected a URL prefix starting with /, got {prefix:?}"
    )),
    _ => Err("expected ScriptAlias /url-prefix/ PATH".into()),
})
.args(Args::Range(2, 2))
.scopes(HERE)
.doc("ScriptAlias /url-prefix/ PATH: everything under the prefix runs as CGI from PATH");

static CGI_PASS_AUTH: Key<bool> = Key::new("CGIPassAuth")
    .scopes(HERE)
    .default("off")
    .doc("Pass Authorization and Proxy-Authorization headers to CGI scripts");

/// `SetEnv NAME VALUE`.
static SET_ENV: List<(String, String)> = List::parsed("SetEnv", |args| match args {
    [name, _] if name.is_empty() || name.contains(['=', '\0']) => Err(format!(
        "expected an environment variable name, got {name:?}"
    )),
    [_, value] if value.contains('\0') => Err("a value cannot hold NUL".into()),
    [name, value] => Ok((name.to_string(), value.to_string())),
    _ => Err("expected SetEnv NAME VALUE".into()),
})
.args(Args::Range(2, 2))
.scopes(HERE)
.doc("SetEnv NAME VALUE: an environment variable for CGI scripts");

static PASS_ENV: List<Vec<String>> = List::new("PassEnv")
    .scopes(HERE)
    .doc("Pass these variables of the server's own environment to CGI scripts");

static CGI_TIMEOUT: Key<Duration> = Key::new("CGITimeout")
    .scopes(HERE)
    .default("60s")
    .doc("End a CGI script that makes no progress (output or input) for this long");

static CGI_MAX_TIME: Key<Duration> = Key::new("CGIMaxTime")
    .scopes(HERE)
    .default("0")
    .doc("End a CGI script that runs longer than this (0: no limit)");

static CGI_KILL_GRACE: Key<Duration> = Key::new("CGIKillGrace")
    .scopes(HERE)
    .default("2s")
    .doc("Time between SIGTERM and SIGKILL when a CGI script is ended");

static CGI_KILL_GROUP: Key<bool> = Key::new("CGIKillGroup")
    .scopes(HERE)
    .default("on")
    .doc("End what a CGI script started in its process group when the script ends");

static CGI_MAX_PROCESSES: Key<usize> = Key::new("CGIMaxProcesses")
    .scopes(Scopes::GLOBAL)
    .default("64")
    .doc("CGI scripts running at once, per worker");

static CGI_MAX_QUEUE: Key<usize> = Key::new("CGIMaxQueue")
    .scopes(Scopes::GLOBAL)
    .default("256")
    .doc("Requests that may wait for a CGI slot, per worker; more get 503");

static CGI_QUEUE_TIMEOUT: Key<Duration> = Key::new("CGIQueueTimeout")
    .scopes(Scopes::GLOBAL)
    .default("30s")
    .doc("How long a request waits for a CGI slot before 503");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "serve_cgi",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![
        CGI_MATCH.declare(),
        SCRIPT_ALIAS.declare(),
        CGI_PASS_AUTH.declare(),
        SET_ENV.declare(),
        PASS_ENV.declare(),
        CGI_TIMEOUT.declare(),
        CGI_MAX_TIME.declare(),
        CGI_KILL_GRACE.declare(),
        CGI_KILL_GROUP.declare(),
        CGI_MAX_PROCESSES.declare(),
        CGI_MAX_QUEUE.declare(),
        CGI_QUEUE_TIMEOUT.declare(),
    ]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    // A CGI must never be served as its source: serve_file (which would
    // send it) may not answer before us in any chain.
    for server in &init.config.servers {
        for node in &server.locations {
            let position = |name: &str| node.plugins.iter().position(|p| p == name);
            if let (Some(file), Some(cgi)) = (position("serve_file"), position(init.name)) {
                if file < cgi {
                    return Err(format!(
                        "`Plugin {}` must come before `Plugin serve_file` (in <Location {}> of \
                         the <Server> at {}:{}), or scripts would be served as files",
                        init.name, node.prefix, server.file, server.line
                    ));
                }
            }
        }
    }
    close_inherited_on_exec();
    let global = &init.config.global;
    Ok(Rc::new(ServeCgi {
        slots: Arc::new(Semaphore::new((*global.get(&CGI_MAX_PROCESSES)).max(1))),
        waiting: Cell::new(0),
        max_queue: *global.get(&CGI_MAX_QUEUE),
        queue_timeout: *global.get(&CGI_QUEUE_TIMEOUT),
        spawner: Spawner::default(),
    }))
}

struct ServeCgi {
    /// One permit per running script (held until it has been reaped); an
    /// Arc only because tokio's owned permits need one.
    slots: Arc<Semaphore>,
    /// Requests waiting for a permit.
    waiting: Cell<usize>,
    max_queue: usize,
    queue_timeout: Duration,
    spawner: Spawner,
}

/// What a request runs, from ScriptAlias or CGI_Match (always a regular
/// file).
#[derive(Clone, Debug)]
struct Script {
    path: PathBuf,
    /// The root the script was found beneath (the DocumentRoot, or a
    /// ScriptAlias directory); `None` for a ScriptAlias naming one
    /// program, whose path is the configuration's.
    root: Option<DocRoot>,
    /// The URL path of the script (SCRIPT_NAME)…
    script_name: String,
    /// …and what follows it (PATH_INFO), decoded.
    path_info: String,
}

/// uri_translation's ScriptAlias mapping, for the response hook.
struct Mapped {
    uri: String,
    script: Script,
}

#[axkit::plugin]
impl Plugin for ServeCgi {
    fn uri_translation<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        match script_alias(ctx) {
            None => Outcome::Declined,
            Some(Err(status)) => Outcome::Status(status),
            Some(Ok((script, metadata))) => {
                ctx.metadata = Some(metadata);
                ctx.filename = Some(script.path.clone());
                ctx.path_info = script.path_info.clone();
                let uri = ctx.request.uri().to_string();
                ctx.set_state(Mapped { uri, script });
                Outcome::Ok
            }
        }
        .into()
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        // Typed state outlives an internal redirect: trust it for the URI
        // it was made for only.
        let mapped = ctx
            .state::<Mapped>()
            .filter(|m| m.uri == ctx.request.uri())
            .map(|m| m.script.clone());
        let script = match mapped {
            Some(s) => s,
            // uri_to_file translated first: ScriptAlias still wins.
            None => match script_alias(ctx) {
                Some(Ok((s, _))) => s,
                Some(Err(status)) => return Outcome::Status(status).into(),
                None => match cgi_match(ctx) {
                    Some(s) => s,
                    None => return Outcome::Declined.into(),
                },
            },
        };
        hook(self.run(ctx, script))
    }
}

/// The script a ScriptAlias maps this URL to, with its metadata: None when
/// no alias matches, `Err(status)` for a URL under an alias that names no
/// script.
fn script_alias(ctx: &Context) -> Option<Result<(Script, std::fs::Metadata), u16>> {
    let path = ctx.request.decoded_path();
    let (prefix, target) = ctx
        .config()
        .list(&SCRIPT_ALIAS)
        .iter()
        .filter(|(prefix, _)| alias_matches(prefix, path))
        .max_by_key(|(prefix, _)| prefix.len())?;
    let rest = &path[prefix.len()..];
    // An encoded slash cannot be a path segment (as in uri_to_file).
    if rest.contains("%2F") {
        return Some(Err(404));
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let trailing = path.ends_with('/') && !rest.is_empty();
    let mut file = PathBuf::from(target.trim_end_matches('/'));
    // A directory of scripts is a root: what the URL names inside it is
    // looked up beneath it, under FollowSymlinks (as a DocumentRoot). The
    // target itself is the configuration's, taken as written.
    let root = std::fs::metadata(&file)
        .is_ok_and(|md| md.is_dir())
        .then(|| DocRoot::new(&file, Rule::of(ctx.config())));
    let mut used = 0;
    let metadata = loop {
        let found = match &root {
            Some(root) => root.metadata(&file),
            None => std::fs::metadata(&file),
        };
        match found {
            Ok(md) if md.is_file() => break md,
            Ok(md) if md.is_dir() => match segments.get(used) {
                Some(segment) => {
                    file.push(segment);
                    used += 1;
                }
                // A directory of scripts is not listed.
                None => return Some(Err(403)),
            },
            Ok(_) => return Some(Err(403)),
            Err(e) if is_escape(&e) => return Some(Err(403)),
            Err(_) => return Some(Err(404)),
        }
    };
    let mut path_info = String::new();
    for s in &segments[used..] {
        path_info.push('/');
        path_info.push_str(s);
    }
    if trailing && (used < segments.len() || path_info.is_empty() && used > 0) {
        path_info.push('/');
    }
    let script_name = path
        .strip_suffix(path_info.as_str())
        .unwrap_or(path)
        .trim_end_matches('/')
        .to_string();
    let script = Script {
        path: file,
        root,
        script_name,
        path_info,
    };
    Some(Ok((script, metadata)))
}

/// Apache's ScriptAlias prefix test: a prefix ending in `/` matches by
/// plain prefix, otherwise by whole segments.
fn alias_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The script CGI_Match makes of the file `uri_translation` found.
fn cgi_match(ctx: &Context) -> Option<Script> {
    let filename = ctx.filename.as_ref()?;
    let regex = ctx.config().get(&CGI_MATCH).as_ref()?;
    if !regex.is_match(&filename.to_string_lossy()) {
        return None;
    }
    if !ctx.metadata.as_ref().is_some_and(|md| md.is_file()) {
        return None;
    }
    let path = ctx.request.decoded_path();
    let script_name = match path.strip_suffix(ctx.path_info.as_str()) {
        // A directory index: the script's URL is the directory's plus
        // the index file's name.
        Some(dir) if ctx.path_info.is_empty() && dir.ends_with('/') => {
            let name = filename.file_name().map(|n| n.to_string_lossy());
            format!("{dir}{}", name.unwrap_or_default())
        }
        Some(s) => s.to_string(),
        None => path.to_string(),
    };
    Some(Script {
        path: filename.clone(),
        root: Some(DocRoot::for_file(ctx, filename)),
        script_name,
        path_info: ctx.path_info.clone(),
    })
}

/// How a script is started: the program to run and the directory to run
/// it in. A script found beneath a root runs as `./NAME` in a handle on
/// its directory opened beneath that root (`/proc/self/fd/N`, the handle
/// kept open until the script has started), so the path is never looked
/// up again by full name between the check and the exec: a directory
/// swapped for a symlink out of the root meanwhile cannot make it run
/// something else. (Execing the script's own descriptor would close the
/// last component too, but a `#!` script's interpreter then gets
/// `/dev/fd/N` for `$0`, which breaks `dirname "$0"`, FindBin and
/// `__file__`; whoever can replace a file in a script directory can write
/// a script there anyway.)
struct Start {
    program: PathBuf,
    dir: PathBuf,
    /// The directory's handle, while the script starts.
    _handle: Option<std::os::fd::OwnedFd>,
}

impl Start {
    /// Where and how `script` starts; `Err` is the status to answer, the
    /// reason logged. The lookups here hit the caches `uri_translation`
    /// just warmed.
    fn new(ctx: &Context, script: &Script) -> Result<Start, u16> {
        let refuse = |status, why: &dyn std::fmt::Display| {
            let msg = format!("serve_cgi: {}: {why}, refused", script.path.display());
            ctx.log(Level::Warn, &msg);
            Err(status)
        };
        let name = script.path.file_name().unwrap_or_default();
        let parent = script.path.parent().unwrap_or(Path::new("/"));
        let (program, dir, handle, dir_fd) = match &script.root {
            Some(root) => {
                let handle = match root.open_dir(parent) {
                    Ok(handle) => handle,
                    Err(e) if is_escape(&e) => return refuse(403, &"leads outside its root"),
                    Err(e) => return refuse(404, &e),
                };
                let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
                let program = Path::new(".").join(name);
                let dir = PathBuf::from(format!("/proc/self/fd/{fd}"));
                (program, dir, Some(handle), fd)
            }
            // Config paths may be relative to the server's directory, but
            // the script starts in its own.
            None => {
                let program = std::path::absolute(&script.path).unwrap_or(script.path.clone());
                let dir = program.parent().unwrap_or(Path::new("/")).to_path_buf();
                (program, dir, None, libc::AT_FDCWD)
            }
        };
        let Ok(c) = std::ffi::CString::new(program.as_os_str().as_bytes()) else {
            return refuse(404, &"NUL in its name");
        };
        // SAFETY: faccessat(2) with a directory descriptor we hold (or
        // AT_FDCWD) and a valid C string.
        if unsafe { libc::faccessat(dir_fd, c.as_ptr(), libc::X_OK, 0) } != 0 {
            return refuse(403, &"not an executable file");
        }
        Ok(Start {
            program,
            dir,
            _handle: handle,
        })
    }
}

/// The request's body framing, from its headers (the core has already
/// refused ambiguous ones): Some(Some(n)) for Content-Length, Some(None)
/// for chunked, None without a body.
fn request_body(ctx: &Context) -> Option<Option<u64>> {
    if ctx.request.header("Transfer-Encoding").is_some() {
        return Some(None);
    }
    let length = ctx.request.header("Content-Length")?;
    Some(Some(axkit_http::parse_content_length(length.as_bytes())?))
}

/// The script's environment (RFC 3875 §4.1 and the usual extensions).
fn environment(ctx: &Context, script: &Script) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(40);
    let mut set = |name: &str, value: &[u8]| {
        env.push((name.into(), OsString::from_vec(value.to_vec())));
    };
    let config = ctx.config();
    let req = &ctx.request;
    set("GATEWAY_INTERFACE", b"CGI/1.1");
    set("SERVER_PROTOCOL", req.version().as_str().as_bytes());
    set(
        "SERVER_SOFTWARE",
        concat!("AxKit/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let server_name = req
        .host()
        .map(str::to_string)
        .or_else(|| ctx.server().names.first().cloned())
        .unwrap_or_else(|| ctx.conn.local.ip().to_string());
    set("SERVER_NAME", server_name.as_bytes());
    set("SERVER_ADDR", ctx.conn.local.ip().to_string().as_bytes());
    set("SERVER_PORT", ctx.conn.local.port().to_string().as_bytes());
    set("REMOTE_ADDR", ctx.conn.peer.ip().to_string().as_bytes());
    set("REMOTE_PORT", ctx.conn.peer.port().to_string().as_bytes());
    set("REQUEST_METHOD", req.method().as_bytes());
    // As Apache, from the request line: after an internal redirect (an
    // ErrorDocument front controller) the URI the client asked for.
    set("REQUEST_URI", ctx.original_request().uri().as_bytes());
    set("QUERY_STRING", req.query().unwrap_or("").as_bytes());
    set(
        "REQUEST_SCHEME",
        if ctx.conn.tls { b"https" } else { b"http" },
    );
    if ctx.conn.tls {
        set("HTTPS", b"on");
    }
    redirect_variables(ctx, &mut set);
    set("SCRIPT_NAME", script.script_name.as_bytes());
    set("SCRIPT_FILENAME", script.path.as_os_str().as_bytes());
    let root = config.get(&DOCUMENT_ROOT).as_deref();
    set(
        "DOCUMENT_ROOT",
        root.map_or(&b""[..], |r| r.as_os_str().as_bytes()),
    );
    if !script.path_info.is_empty() {
        set("PATH_INFO", script.path_info.as_bytes());
        if let Some(root) = root {
            // Normal components only: never let a path replace the root.
            let mut translated = root.to_path_buf();
            for c in Path::new(&script.path_info).components() {
                if let Component::Normal(part) = c {
                    translated.push(part);
                }
            }
            set("PATH_TRANSLATED", translated.as_os_str().as_bytes());
        }
    }
    if let Some(length) = request_body(ctx) {
        if let Some(n) = length {
            set("CONTENT_LENGTH", n.to_string().as_bytes());
        }
        if let Some(t) = req.header("Content-Type") {
            set("CONTENT_TYPE", t.as_bytes());
        }
    }
    if let Some(user) = &ctx.user {
        set("REMOTE_USER", user.as_bytes());
        if let Some(auth) = &ctx.auth_type {
            set("AUTH_TYPE", auth.as_bytes());
        }
    }
    let pass_auth = *config.get(&CGI_PASS_AUTH);
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in req.headers() {
        let skip = name.contains('_')
            || name.eq_ignore_ascii_case("proxy")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || (!pass_auth
                && (name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("proxy-authorization")));
        if skip {
            continue;
        }
        let var = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        match headers.iter_mut().find(|(n, _)| *n == var) {
            Some((n, joined)) => {
                // Cookies are joined with `; ` (RFC 6265), the rest with `, `.
                joined.extend_from_slice(if n == "HTTP_COOKIE" { b"; " } else { b", " });
                joined.extend_from_slice(value);
            }
            None => headers.push((var, value.to_vec())),
        }
    }
    for (name, value) in &headers {
        set(name, value);
    }
    let mut path_set = false;
    for name in config.list(&PASS_ENV).iter().flatten() {
        if let Some(value) = std::env::var_os(name) {
            path_set |= name == "PATH";
            set(name, value.as_bytes());
        }
    }
    for (name, value) in config.list(&SET_ENV) {
        path_set |= name == "PATH";
        set(name, value.as_bytes());
    }
    if !path_set {
        set("PATH", DEFAULT_PATH.as_bytes());
    }
    env
}

/// REDIRECT_STATUS, and after an internal redirect (an ErrorDocument, a
/// script's `Location: /path`) REDIRECT_URL and REDIRECT_QUERY_STRING, as
/// Apache sets them: the status, decoded path and query of the request
/// redirected from, taken from the notes the core leaves for the new walk.
/// Without a redirect REDIRECT_STATUS is 200: PHP's CGI refuses to run
/// without it (its force-cgi-redirect check), and Apache and lighttpd set it.
fn redirect_variables(ctx: &Context, set: &mut impl FnMut(&str, &[u8])) {
    let status = ctx.notes.get("redirect.status");
    let status = status.and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
    set("REDIRECT_STATUS", status.to_string().as_bytes());
    // Notes are plugins' to write: a NUL could not be passed anyway.
    let Some(uri) = ctx.notes.get("redirect.uri").filter(|u| !u.contains('\0')) else {
        return;
    };
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri.as_str(), None),
    };
    let decoded = axkit_http::normalize_path(path);
    set(
        "REDIRECT_URL",
        decoded.as_deref().unwrap_or(path).as_bytes(),
    );
    if let Some(query) = query {
        set("REDIRECT_QUERY_STRING", query.as_bytes());
    }
}

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
}

impl ServeCgi {
    async fn run(&self, ctx: &mut Context, mut script: Script) -> Outcome {
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
        let body = request_body(ctx);
        let mut command = Command::new(&start.program);
        command
            .env_clear()
            .envs(environment(ctx, &script))
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
    async fn slot(&self, ctx: &Context, script: &Script) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        let why = if self.waiting.get() >= self.max_queue {
            "queue full"
        } else {
            self.waiting.set(self.waiting.get() + 1);
            let waited = timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
            self.waiting.set(self.waiting.get() - 1);
            match waited {
                Ok(Ok(permit)) => return Some(permit),
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
                    ctx.conn.peer
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
        let head = loop {
            let event = self.next(ctx, &mut out).await;
            match event {
                Event::Stdout(Ok(n)) if n > 0 => {
                    self.progress();
                    // The limit holds however the output was cut into reads.
                    let end = header_end(&out);
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
        let collect = !(head.content_length && ctx.request.is_head());
        match head.apply(ctx) {
            Applied::Redirected => return Outcome::Done,
            Applied::Invalid(what) => return self.gateway_failure(ctx, script, 502, &what),
            Applied::Ready => {}
        }
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
                    ctx.response.body = Body::Bytes(out.freeze());
                    return Outcome::Ok;
                }
                Ok(Ok(_)) => {}
                // Still running, or an error that streaming will report.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if (!out.is_empty() || !collect) && ctx.write(out.split().freeze()).await.is_err() {
            self.doomed = true;
            return Outcome::Done;
        }
        self.stream(ctx, script, false).await
    }

    /// An `nph-` script: relay its output untouched.
    async fn relay_raw(&mut self, ctx: &mut Context, script: &Script) -> Outcome {
        self.stream(ctx, script, true).await
    }

    /// Copy the script's stdout to the client until EOF.
    async fn stream(&mut self, ctx: &mut Context, script: &Script, raw: bool) -> Outcome {
        let mut out = BytesMut::new();
        loop {
            if out.capacity() < READ_CHUNK / 2 {
                out = BytesMut::with_capacity(READ_CHUNK);
            }
            match self.next(ctx, &mut out).await {
                Event::Stdout(Ok(n)) if n > 0 => {
                    let chunk = out.split().freeze();
                    let sent = if raw {
                        ctx.write_raw(&chunk).await
                    } else {
                        ctx.write(chunk).await
                    };
                    if sent.is_err() {
                        // The client went away or stalled: the core closes.
                        self.doomed = true;
                        return Outcome::Done;
                    }
                    self.progress();
                }
                Event::Stdout(Ok(_)) => {
                    self.stdout = None;
                    if raw && !ctx.head_sent() {
                        let status = self.exit_status().await;
                        let what = format!("{status} without any output");
                        return self.gateway_failure(ctx, script, 502, &what);
                    }
                    return Outcome::Done;
                }
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
    fn finish(mut self, script: Script, permit: OwnedSemaphorePermit) {
        self.stdin = None;
        self.stdout = None;
        self.pending = None;
        if self.doomed {
            tokio::task::spawn_local(terminate(self.child, self.pgid, self.grace, permit));
        } else {
            tokio::task::spawn_local(self.reap(script.path, permit));
        }
    }

    async fn reap(mut self, path: PathBuf, permit: OwnedSemaphorePermit) {
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
