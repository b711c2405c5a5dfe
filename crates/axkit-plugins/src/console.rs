//! `console`: AxKit2's console, a line protocol for an operator on the
//! machine: list the connections and their state, the workers' load, the
//! configuration generation; change `LogLevel` in every worker; reload.
//!
//! Directives (global):
//! - `ConsoleTimeout DURATION` (default `5m`): a session waiting that long
//!   for a command line, or for its client to take an answer, is closed,
//!   so that forgotten or hostile idle sessions do not hold the 16 there
//!   may be at once.
//! - `ConsoleLifetime DURATION` (default `1h`): a session open that long is
//!   closed, however busy: a client sending `help` for ever keeps no slot.
//! - `ConsoleListen ADDR:PORT | unix:/PATH`: a loopback address
//!   (`127.0.0.1:9000`, `[::1]:9000`) or a unix socket; a relative PATH
//!   is taken from `ServerRoot`. No other address is accepted: the
//!   console has no authentication, so who may use it is who may reach
//!   it. The master binds it, as root, before any worker runs: a unix
//!   socket is made mode 0600, owned by the user who started the server,
//!   and a PATH in a directory the workers' `User` may write (theirs, or
//!   group- or world-writable without the sticky bit, there or above) is
//!   refused when the config loads, since a worker or a CGI script could
//!   put its own socket there. On the unix socket, only root and the user
//!   the server was started as are let in (`SO_PEERCRED`), not the
//!   workers' `User` (a CGI script runs as that user).
//!
//! At most 16 sessions run at once. A 17th is let in, never refused, so
//! that whoever holds the 16 (busy or not) cannot keep the operator out;
//! to make room it ends the oldest session of the user (the client's uid,
//! on the unix socket) holding the most, its own user's when that one
//! holds as many. A process that reconnects in a loop (an application
//! compromised, running as the user who started the server) so ends only
//! its own sessions, never those of another user (root) holding no more
//! than half. On a TCP console every client looks alike: the oldest ends.
//!
//! ```text
//! Plugin        console
//! ConsoleListen unix:/run/axkit/console.sock
//! ```
//!
//! Commands, one per line; each answer ends with a line `OK …` or
//! `ERR …`:
//!
//! ```text
//! help                the commands
//! connections         every open connection: worker pid, number, peer, state, age, request line
//! workers             every worker: pid, generation, index, connections, requests, uptime
//! config              the configuration generation and file
//! loglevel [LEVEL]    show LogLevel, or set it in every worker until the next reload
//! reload              reload the configuration, as SIGHUP does
//! quit                end the session
//! ```
//!
//! A line that belongs to an HTTP request (a request line, a `Host:`
//! field) ends the session at once, unanswered and logged: a web page may
//! make a browser on this machine POST to a loopback port, and the lines
//! of its body must not run as commands.
//!
//! **Where it runs.** In worker 0 of the current generation: the master
//! runs no plugin code, and what the console shows is in the core's
//! metrics in shared memory, which any worker reads (every worker's
//! connection table and counters, the control word that sets `LogLevel`
//! for all of them). A reload asks the master through the workers'
//! control pipe (`Worker::request_reload`), which works whatever `User`
//! the workers run as. The socket is the master's
//! ([`ListenSpec`]: `StatsSource` asks for it), handed to each worker 0
//! and kept across reloads while `ConsoleListen` is unchanged, so that its
//! address is never free for another process to take (a TCP address is
//! bound without `SO_REUSEPORT`, which would let any process of the same
//! user listen beside it). A session with the old generation's worker 0
//! ends with it. A unix socket's file is removed by the master once the
//! console moves elsewhere or the server stops.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axkit::config::{Config, Directive, FileReader, Key, Scopes};
use axkit::plugin::{
    escape_log, escape_log_field, metrics, Level, ListenAddr, ListenSpec, Listener, Plugin,
    PluginInit, Worker,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

fn parse_endpoint(args: &[&str], files: &mut FileReader<'_>) -> Result<Option<ListenAddr>, String> {
    let [text] = args else {
        return Err("expected ADDR:PORT or unix:/PATH".into());
    };
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("expected a path after unix:".into());
        }
        return Ok(Some(ListenAddr::Unix(files.path(path))));
    }
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("expected ADDR:PORT or unix:/PATH, got {text:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the console listens on loopback or a unix socket only"
        ));
    }
    Ok(Some(ListenAddr::Tcp(addr)))
}

static CONSOLE_LISTEN: Key<Option<ListenAddr>> =
    Key::parsed_with_files("ConsoleListen", parse_endpoint)
        .optional()
        .scopes(Scopes::GLOBAL)
        .doc("Where the console listens: a loopback ADDR:PORT or unix:/PATH (mode 0600)");

static CONSOLE_TIMEOUT: Key<Duration> = Key::new("ConsoleTimeout")
    .scopes(Scopes::GLOBAL)
    .default("5m")
    .nonzero()
    .doc(
        "How long a console session may wait for a command line, or for its client to take an \
         answer, before it is closed (above 0)",
    );

static CONSOLE_LIFETIME: Key<Duration> = Key::new("ConsoleLifetime")
    .scopes(Scopes::GLOBAL)
    .default("1h")
    .nonzero()
    .doc("How long a console session may stay open, however busy, before it is closed (above 0)");

/// Console sessions open at once, at most: a newcomer beyond them ends
/// one (see [`Open::enter`]).
const MAX_SESSIONS: usize = 16;
/// A command line, at most.
const MAX_LINE: u64 = 1024;
/// The console's socket, as the master hands it over.
const SOCKET: &str = "console";

pub(crate) fn directives() -> Vec<Directive> {
    vec![
        CONSOLE_LISTEN.declare(),
        CONSOLE_TIMEOUT.declare(),
        CONSOLE_LIFETIME.declare(),
    ]
}

/// The socket the console needs in `config`, if it is loaded: worker 0's
/// alone (only it serves the console).
pub(crate) fn listeners(config: &Config) -> Vec<ListenSpec> {
    if !config.plugins.iter().any(|p| p == "console") {
        return Vec::new();
    }
    let addr = config.global.get(&CONSOLE_LISTEN).clone();
    addr.map(|addr| ListenSpec {
        name: SOCKET.into(),
        addr,
        worker: Some(0),
    })
    .into_iter()
    .collect()
}

pub(crate) fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let endpoint = init
        .config
        .global
        .get(&CONSOLE_LISTEN)
        .clone()
        .ok_or("`console` needs `ConsoleListen ADDR:PORT` or `ConsoleListen unix:/PATH`")?;
    // The constructor runs before a worker switches to `User`: this is
    // the user the server was started as.
    // SAFETY: getuid has no memory effects.
    let allowed_uid = unsafe { libc::getuid() };
    Ok(Rc::new(Console {
        endpoint,
        listener: Rc::new(RefCell::new(init.listener(SOCKET))),
        allowed_uid,
        idle: *init.config.global.get(&CONSOLE_TIMEOUT),
        lifetime: *init.config.global.get(&CONSOLE_LIFETIME),
    }))
}

#[derive(Clone)]
struct Console {
    endpoint: ListenAddr,
    /// The socket the master bound, in worker 0 until it starts serving.
    listener: Rc<RefCell<Option<Listener>>>,
    /// Besides root, who may use a unix-socket console.
    allowed_uid: u32,
    /// `ConsoleTimeout`.
    idle: Duration,
    /// `ConsoleLifetime`.
    lifetime: Duration,
}

#[axkit::plugin]
impl Plugin for Console {
    fn worker_start(&self, worker: &Worker) {
        if worker.index() == 0 {
            tokio::task::spawn_local(listen(self.clone(), worker.clone()));
        }
    }
}

/// The console's socket, on the worker's event loop.
enum Accepting {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

fn accepting(listener: Listener) -> std::io::Result<Accepting> {
    Ok(match listener {
        Listener::Tcp(l) => Accepting::Tcp(tokio::net::TcpListener::from_std(l)?),
        Listener::Unix(l) => Accepting::Unix(tokio::net::UnixListener::from_std(l)?),
    })
}

/// Serve the console until the worker drains.
async fn listen(console: Console, worker: Worker) {
    let endpoint = &console.endpoint;
    let Some(listener) = console.listener.borrow_mut().take() else {
        let msg = format!("console: the master handed over no socket for {endpoint}");
        return worker.log(Level::Error, &msg);
    };
    let listener = match accepting(listener) {
        Ok(l) => l,
        Err(e) => {
            let msg = format!("console: cannot listen on {endpoint}: {e}");
            return worker.log(Level::Error, &msg);
        }
    };
    worker.log(
        Level::Notice,
        &format!(
            "console: listening on {endpoint} (generation {})",
            worker.generation()
        ),
    );
    let sessions = Rc::new(Open::default());
    loop {
        let accepted = tokio::select! {
            _ = worker.stopping() => return,
            accepted = async {
                match &listener {
                    Accepting::Tcp(l) => l.accept().await.map(|(s, _)| Session::Tcp(s)),
                    Accepting::Unix(l) => l.accept().await.map(|(s, _)| Session::Unix(s)),
                }
            } => accepted,
        };
        match accepted {
            Ok(stream) => {
                let (worker, sessions) = (worker.clone(), sessions.clone());
                let console = console.clone();
                tokio::task::spawn_local(async move {
                    match stream {
                        Session::Tcp(s) => session(s, None, &worker, &sessions, &console).await,
                        Session::Unix(mut s) => {
                            match allowed_peer(&s, console.allowed_uid, &worker) {
                                Some(uid) => {
                                    session(s, Some(uid), &worker, &sessions, &console).await
                                }
                                None => {
                                    let _ = s.write_all(b"ERR not allowed\n").await;
                                }
                            }
                        }
                    }
                });
            }
            Err(e) => {
                worker.log(Level::Error, &format!("console: accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Session {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// The uid of the process at the other end of a unix socket if it may use
/// the console: root, or the user the server was started as (`allowed_uid`),
/// never the workers' `User` when that is another. The socket file is the
/// starting user's, mode 0600, so this holds already where the socket's
/// path is reached; the check keeps it for a client that got there
/// otherwise (a descriptor passed to it), since whatever runs as `User`,
/// a CGI script, could list every client's request line, or reload.
fn allowed_peer(stream: &tokio::net::UnixStream, allowed_uid: u32, worker: &Worker) -> Option<u32> {
    let uid = match stream.peer_cred() {
        Ok(cred) => cred.uid(),
        Err(e) => {
            worker.log(Level::Error, &format!("console: SO_PEERCRED: {e}"));
            return None;
        }
    };
    if uid == 0 || uid == allowed_uid {
        return Some(uid);
    }
    let msg = format!(
        "console: refused a session from uid {uid} (only root and uid {allowed_uid}, who \
         started the server, may use it)"
    );
    worker.log(Level::Warn, &msg);
    None
}

/// The sessions open, oldest first.
#[derive(Default)]
struct Open(RefCell<VecDeque<Rc<Slot>>>);

/// One session's place among those open.
struct Slot {
    /// Its client's uid on the unix socket; none on TCP, where every local
    /// account looks alike.
    peer: Option<u32>,
    /// Set when a newcomer took its room: it ends at its next line, or at
    /// once through `wake` if waiting.
    evicted: Cell<bool>,
    wake: Notify,
}

impl Open {
    /// Count in a new session of `peer`, ending one if `MAX_SESSIONS` run
    /// already: the oldest of the peer holding the most, the newcomer's
    /// own if it holds as many, so that a peer connecting in a loop ends
    /// its own sessions and never those of one holding no more than half.
    fn enter(&self, peer: Option<u32>) -> Rc<Slot> {
        let mut open = self.0.borrow_mut();
        if open.len() >= MAX_SESSIONS {
            let held = |p: Option<u32>| open.iter().filter(|s| s.peer == p).count();
            let most = open.iter().map(|s| held(s.peer)).max().unwrap_or(0);
            let own = held(peer) == most;
            let loser = open.iter().position(|s| match own {
                true => s.peer == peer,
                false => held(s.peer) == most,
            });
            if let Some(i) = loser {
                let ended = open.remove(i).expect("a valid position");
                ended.evicted.set(true);
                // A permit: it ends even if not waiting at this moment.
                ended.wake.notify_one();
            }
        }
        let slot = Rc::new(Slot {
            peer,
            evicted: Cell::new(false),
            wake: Notify::new(),
        });
        open.push_back(slot.clone());
        slot
    }

    fn leave(&self, slot: &Rc<Slot>) {
        self.0.borrow_mut().retain(|s| !Rc::ptr_eq(s, slot));
    }
}

/// One operator's session: a command per line, until `quit`, EOF,
/// `ConsoleTimeout` spent waiting for a line or for the client to take an
/// answer (a session forgotten, or opened and left to keep the operator
/// out), `ConsoleLifetime` since it began (one kept busy for that), or a
/// newcomer that needs its room ([`Open::enter`]). `peer`: the client's
/// uid, on the unix socket.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: Option<u32>,
    worker: &Worker,
    sessions: &Open,
    console: &Console,
) {
    let mut stream = BufReader::new(stream);
    let slot = sessions.enter(peer);
    let (idle, lifetime) = (console.idle, console.lifetime);
    let over = tokio::time::Instant::now() + lifetime;
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut stream).take(MAX_LINE);
        let evicted =
            || format!("ERR a new session needed the room ({MAX_SESSIONS} at most); closing\n");
        let lived = || format!("ERR open for {lifetime:?} (ConsoleLifetime); closing\n");
        // A line that came is taken first, and answered with the farewell
        // if the session is over: closed with it unread, the socket would
        // be reset, and the farewell lost.
        let read = tokio::select! {
            biased;
            read = tokio::time::timeout(idle, limited.read_until(b'\n', &mut line)) => {
                read.map_err(|_| format!("ERR idle for {idle:?} (ConsoleTimeout); closing\n"))
            }
            _ = tokio::time::sleep_until(over) => Err(lived()),
            _ = slot.wake.notified() => Err(evicted()),
        };
        let read = match read {
            Ok(_) if slot.evicted.get() => Err(evicted()),
            Ok(_) if tokio::time::Instant::now() >= over => Err(lived()),
            read => read,
        };
        match read {
            Err(farewell) => {
                send(&mut stream, farewell.as_bytes(), idle).await;
                break;
            }
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(_)) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_LINE => {
                send(&mut stream, b"ERR line too long\n", idle).await;
                break;
            }
            Ok(Ok(_)) => {}
        }
        let text = String::from_utf8_lossy(&line);
        if looks_like_http(text.trim()) {
            let msg = format!(
                "console: closed a session that sent an HTTP request (a web page's?): \"{}\"",
                escape_log(text.trim())
            );
            worker.log(Level::Warn, &msg);
            break;
        }
        let (answer, quit) = command(text.trim(), worker);
        if !send(&mut stream, answer.as_bytes(), idle).await || quit {
            break;
        }
    }
    sessions.leave(&slot);
}

/// Write `bytes` to a session's client; whether it took them within
/// `idle` (one that reads nothing must not hold its session for ever).
async fn send<W: AsyncWrite + Unpin>(client: &mut W, bytes: &[u8], idle: Duration) -> bool {
    let write = async {
        client.write_all(bytes).await?;
        client.flush().await
    };
    matches!(tokio::time::timeout(idle, write).await, Ok(Ok(())))
}

/// Whether `line` is part of an HTTP request rather than a command: a
/// request line (`METHOD TARGET HTTP/x`, or one starting with `GET` or
/// `POST`) or a `Host:` field. A browser on this machine may send a
/// `text/plain` POST to a loopback port without asking first; its body's
/// lines would run as commands if the session went on past its head (the
/// cross-protocol request Redis closes the same way).
fn looks_like_http(line: &str) -> bool {
    let mut words = line.split(' ');
    let first = words.next().unwrap_or("");
    let request_line = words.nth(1).is_some_and(|v| v.starts_with("HTTP/"));
    request_line
        || first.eq_ignore_ascii_case("GET")
        || first.eq_ignore_ascii_case("POST")
        || line
            .get(..5)
            .is_some_and(|h| h.eq_ignore_ascii_case("host:"))
}

const HELP: &str = "\
help                the commands
connections         every open connection: worker pid, number, peer, state, age, request line
workers             every worker: pid, generation, index, connections, requests, uptime
config              the configuration generation and file
loglevel [LEVEL]    show LogLevel, or set it in every worker until the next reload
reload              reload the configuration, as SIGHUP does
quit                end the session
";

/// The answer to one command line, and whether the session ends.
fn command(line: &str, worker: &Worker) -> (String, bool) {
    let mut words = line.split_whitespace();
    let answer = match (words.next(), words.next(), words.next()) {
        (None, ..) => return (String::new(), false),
        (Some("help"), None, _) => Ok(format!("{HELP}OK")),
        (Some("quit"), None, _) => return ("OK bye\n".into(), true),
        (Some("connections"), None, _) => connections(),
        (Some("workers"), None, _) => workers(),
        (Some("config"), None, _) => Ok(format!(
            "generation {} (newest running: {})\nfile {}\nOK",
            worker.generation(),
            metrics::snapshot().map_or(0, |s| s.generation),
            escape_log(worker.config_name())
        )),
        (Some("loglevel"), None, _) => Ok(format!("loglevel {}\nOK", worker.log_level())),
        (Some("loglevel"), Some(word), None) => match Level::parse(word) {
            Some(level) => worker.set_log_level(level).map(|()| {
                worker.log(
                    Level::Notice,
                    &format!("console: LogLevel set to {level} in every worker"),
                );
                format!(
                    "OK loglevel {level} in every worker of generation {} and older, until the next reload",
                    worker.generation()
                )
            }),
            None => Err(format!("unknown level \"{}\"", escape_log(word))),
        },
        (Some("reload"), None, _) => worker.request_reload().map(|()| {
            worker.log(Level::Notice, "console: reload requested");
            format!(
                "OK reload requested (generation {} now; `config` shows the new one once it runs)",
                worker.generation()
            )
        }),
        _ => Err(format!("unknown command \"{}\"; try help", escape_log(line))),
    };
    let mut text = match answer {
        Ok(text) => text,
        Err(e) => format!("ERR {e}"),
    };
    text.push('\n');
    (text, false)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn connections() -> Result<String, String> {
    let list = metrics::connections().ok_or("no metrics in this server")?;
    let now = now_ms();
    let mut out = String::from("pid id peer state age request\n");
    for c in &list {
        let request = if c.request_line.is_empty() {
            "-".to_string()
        } else {
            format!("\"{}\"", escape_log_field(&c.request_line))
        };
        out.push_str(&format!(
            "{} {} {} {} {:.1}s {request}\n",
            c.pid,
            c.id,
            c.peer,
            c.state.as_str(),
            now.saturating_sub(c.since_ms) as f64 / 1000.0
        ));
    }
    out.push_str(&format!("OK {} connection(s)", list.len()));
    Ok(out)
}

fn workers() -> Result<String, String> {
    let snapshot = metrics::snapshot().ok_or("no metrics in this server")?;
    let now = now_ms() / 1000;
    let mut out = String::from("pid generation index connections requests uptime\n");
    let alive: Vec<_> = snapshot.workers.iter().filter(|w| w.alive).collect();
    for w in &alive {
        out.push_str(&format!(
            "{} {} {} {} {} {}s\n",
            w.pid,
            w.generation,
            w.index,
            w.connections,
            w.requests,
            now.saturating_sub(w.started)
        ));
    }
    out.push_str(&format!("OK {} worker(s)", alive.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<ListenAddr>, String> {
        parse_endpoint(&[text], &mut FileReader::new(None))
    }

    #[test]
    fn http_request_lines_and_host_fields_are_not_commands() {
        for http in [
            "POST / HTTP/1.1",
            "PUT /x?y HTTP/1.0",
            "GET /",
            "post",
            "Host: 127.0.0.1:9000",
            "HOST:x",
        ] {
            assert!(looks_like_http(http), "{http}");
        }
        for command in [
            "help",
            "loglevel debug",
            "reload",
            "connections",
            "hostname",
        ] {
            assert!(!looks_like_http(command), "{command}");
        }
    }

    #[test]
    fn the_console_listens_on_loopback_or_a_unix_socket_only() {
        assert_eq!(
            parse("127.0.0.1:9000"),
            Ok(Some(ListenAddr::Tcp("127.0.0.1:9000".parse().unwrap())))
        );
        assert!(parse("[::1]:9000").is_ok());
        assert_eq!(
            parse("unix:/run/a.sock"),
            Ok(Some(ListenAddr::Unix("/run/a.sock".into())))
        );
        // Without a ServerRoot, from the working directory.
        assert_eq!(
            parse("unix:run/a.sock"),
            Ok(Some(ListenAddr::Unix("run/a.sock".into())))
        );
        for bad in ["0.0.0.0:9000", "10.0.0.1:9000", "unix:", "nonsense"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
