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
//!   (`ScriptAlias /git/ /usr/lib/git-core/git-http-backend/`); relative,
//!   it is taken from `ServerRoot`. `axkit --check` refuses a PATH that is
//!   not there (or is neither a directory nor a file), with the path.
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
//!   a child that left the group (`setsid`, `setpgid`) escapes both. Not
//!   for ever: a CGI process has no business outliving its worker. Under a
//!   master, which adopts whatever loses its parent beneath it, a child
//!   kept by `CGIKillGroup off` or one that left its group is adopted when
//!   its script exits and ended when a worker exits (a reload's old
//!   generation too) or the master stops, as are the scripts of a worker
//!   that dies (docs/architecture.md, "What a dead worker leaves").
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
//!   from elsewhere (see `map::Start`).
//! - A file that would run as CGI is never served as a static file: one
//!   that is not executable answers 403 (logged). To guarantee it, the
//!   plugin refuses to start when `serve_file` comes first in a chain.
//! - The environment holds only the RFC 3875 meta-variables, `HTTP_*` for
//!   request headers, SetEnv/PassEnv and a fixed `PATH` (Apache sets one
//!   too; scripts need it to find `cat`): nothing of the server's own
//!   environment leaks by accident. `HTTP_PROXY` is never set (httpoxy),
//!   header names with `_` are dropped (they would collide with their `-`
//!   twin), credentials only with `CGIPassAuth on`. A variable that would
//!   hold a NUL byte (a plugin's REMOTE_USER, say) answers 500, logged.
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
//! - A body that disagrees with the script's Content-Length is logged
//!   (error, naming the script) once per request. One longer is cut at
//!   that length and the script ended (nginx does the same with an
//!   upstream's): the client gets exactly the bytes announced and nothing
//!   after them, so the connection stays in step for its next request.
//!   One shorter goes out as far as it came, then the connection closes
//!   at once, which is how the client learns the response is truncated;
//!   with no body at all yet, the answer is a 502.
//! - Scripts start through std's posix_spawn path (no `pre_exec`, so the
//!   worker's memory is never copied), called from a few spawner threads
//!   so that the event loop never waits for an exec (see
//!   `process::Spawner`), each script in a process group of its own so
//!   that a timeout or a client going away ends everything it started:
//!   SIGTERM to the group, `CGIKillGrace`, then SIGKILL (`CGIKillGroup`
//!   does the same once a script ends on its own). Neither the response
//!   nor the next request on the connection waits for that. Every
//!   descriptor of the worker is close-on-exec (those it inherited too:
//!   the core marks them as the worker starts), so a script gets only its
//!   stdio.
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
//!
//! The module's files: `map` (which URLs run as which script, and how a
//! script is started beneath its root), `env` (the RFC 3875 environment,
//! a plain function of plain inputs), `run` (running a script and relaying
//! its I/O), `output` (the script's output head), `process` (spawning and
//! ending process groups).

mod env;
mod map;
pub(crate) mod output;
mod process;
mod run;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use axkit::config::{Args, Directive, Expect, Key, List, Scopes};
use axkit::plugin::metrics::Gauge;
use axkit::plugin::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};
use regex::Regex;

use map::{cgi_match, script_alias, Script};
use process::Spawner;

const HERE: Scopes = Scopes::SERVER.or(Scopes::LOCATION);

static CGI_MATCH: Key<Option<Regex>> = Key::new("CGI_Match")
    .scopes(HERE)
    .doc("Files whose path matches run as CGI scripts");

/// `ScriptAlias /url-prefix/ PATH`: the prefix, and PATH as the config
/// means it (relative: beneath `ServerRoot`), without the trailing `/` a
/// program may be written with.
static SCRIPT_ALIAS: List<(String, PathBuf)> =
    List::parsed_with_files("ScriptAlias", |args, files| match args {
        [prefix, target] if prefix.starts_with('/') => {
            let trimmed = target.trim_end_matches('/');
            let target = files.path(if trimmed.is_empty() { "/" } else { trimmed });
            // Every request under the prefix would fail without it.
            files.expect(&target, Expect::DirectoryOrFile);
            Ok((prefix.to_string(), target))
        }
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
    .nonzero()
    .doc("End a CGI script that makes no progress (output or input) for this long (above 0)");

static CGI_MAX_TIME: Key<Duration> = Key::new("CGIMaxTime")
    .scopes(HERE)
    .default("0")
    .doc("End a CGI script that runs longer than this (0: no limit)");

static CGI_KILL_GRACE: Key<Duration> = Key::new("CGIKillGrace")
    .scopes(HERE)
    .default("2s")
    .doc("Time between SIGTERM and SIGKILL when a CGI script is ended (0: SIGKILL at once)");

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
    .doc("How long a request waits for a CGI slot before 503 (0: 503 at once if none is free)");

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
    // send it) may not answer before us in any chain, in the order the
    // `response` hook tries them (innermost scope first).
    for server in &init.config.servers {
        for node in &server.locations {
            let order = node.content_order();
            let position = |name: &str| order.iter().position(|p| *p == name);
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
    let global = &init.config.global;
    Ok(Rc::new(ServeCgi {
        slots: Arc::new(Semaphore::new((*global.get(&CGI_MAX_PROCESSES)).max(1))),
        waiting: Cell::new(0),
        max_queue: *global.get(&CGI_MAX_QUEUE),
        queue_timeout: *global.get(&CGI_QUEUE_TIMEOUT),
        spawner: Spawner::default(),
        running: Gauge::register(
            "axkit_cgi_processes",
            "CGI scripts running (and starting), by serve_cgi.",
        ),
    }))
}

/// A script's slot (`CGIMaxProcesses`), held until the script is reaped,
/// and counted meanwhile in the `axkit_cgi_processes` gauge of the
/// metrics.
pub(super) struct ScriptSlot {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl ScriptSlot {
    fn new(permit: OwnedSemaphorePermit, gauge: Gauge) -> ScriptSlot {
        gauge.add(1);
        ScriptSlot {
            _permit: permit,
            gauge,
        }
    }
}

impl Drop for ScriptSlot {
    fn drop(&mut self) {
        self.gauge.add(-1);
    }
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
    /// Scripts holding a slot, for the metrics.
    running: Gauge,
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
                ctx.filename = Some(script.path.as_path().into());
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
