//! Non-blocking primitives for scripts. Each suspends only the calling
//! request's coroutine and lets the worker serve everyone else: `sleep`,
//! TCP sockets (`tcp`) and subprocesses (`process`, which bounds what a
//! program may write: [`MAX_OUTPUT`]). The HTTP client (`http`) is
//! `http.rs`, files `files.rs`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use axkit::config::{Key, Scopes};
use mlua::{Lua, Table, UserData, UserDataMethods};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The most one `socket:receive` reads: `n` bytes, a line, or all.
const MAX_RECEIVE: usize = 16 << 20;

/// The most a subprocess may write to its standard output, and to its
/// standard error: beyond it `process.run` kills it and fails.
const MAX_OUTPUT: usize = 16 << 20;

/// Default for every network wait that a script does not bound itself.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

fn err(what: &str, e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("{what}: {e}"))
}

fn seconds(s: Option<f64>) -> mlua::Result<Duration> {
    match s {
        None => Ok(DEFAULT_TIMEOUT),
        Some(s) => Duration::try_from_secs_f64(s).map_err(|e| err("bad timeout", e)),
    }
}

/// Bound a future by a timeout, as a Lua error.
async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> mlua::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| err(what, e)),
        Err(_) => Err(err(what, "timed out")),
    }
}

pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    base.raw_set(
        "sleep",
        lua.create_async_function(|_, secs: f64| async move {
            tokio::time::sleep(Duration::try_from_secs_f64(secs).map_err(|e| err("sleep", e))?)
                .await;
            Ok(())
        })?,
    )?;

    let tcp = lua.create_table()?;
    tcp.raw_set(
        "connect",
        lua.create_async_function(
            |_, (host, port, timeout): (String, u16, Option<f64>)| async move {
                let stream = within(
                    seconds(timeout)?,
                    "tcp.connect",
                    TcpStream::connect((host.as_str(), port)),
                )
                .await?;
                Ok(Socket(Rc::new(RefCell::new(Some(BufReader::new(stream))))))
            },
        )?,
    )?;
    base.raw_set("tcp", tcp)?;

    let process = lua.create_table()?;
    process.raw_set("run", lua.create_async_function(process_run)?)?;
    base.raw_set("process", process)?;

    Ok(())
}

/// `LuaProcess on|off` (global, default off): whether `process.run` may
/// start programs. A program has the server's rights whatever the file
/// API's roots, so it is a deliberate choice in the config.
pub(crate) static LUA_PROCESS: Key<bool> = Key::new("LuaProcess")
    .scopes(Scopes::GLOBAL)
    .default("off")
    .doc("Let Lua scripts run programs with process.run (they run with the server's rights)");

/// Whether this worker's scripts may run programs ([`LUA_PROCESS`]): Lua
/// app data, set when the plugins are built.
#[derive(Default)]
pub(crate) struct ProcessPolicy(pub std::cell::Cell<bool>);

/// `process.run{ "cmd", "arg", …, stdin = "…", timeout = 30, env = {…} }`
/// → `{ status =, stdout =, stderr = }`. The program runs without a
/// shell, with only `PATH`, `TZ` and the `env` given in its environment
/// (as nginx clears its children's: the worker's may hold secrets). Past
/// the timeout, or past [`MAX_OUTPUT`] of output, its process group is
/// killed and the call is an error.
async fn process_run(lua: Lua, spec: Table) -> mlua::Result<Table> {
    // A program runs with the server's rights, beyond any LuaFileRoot:
    // off unless the config says so.
    let allowed = lua
        .app_data_ref::<ProcessPolicy>()
        .is_some_and(|p| p.0.get());
    if !allowed {
        return Err(err(
            "process.run",
            "running programs is off (LuaProcess off)",
        ));
    }
    let argv: Vec<String> = spec.sequence_values().collect::<mlua::Result<_>>()?;
    let Some((program, args)) = argv.split_first() else {
        return Err(err("process.run", "no program given"));
    };
    let input: Option<mlua::LuaString> = spec.get("stdin")?;
    let limit = seconds(spec.get("timeout")?)?;
    let mut command = tokio::process::Command::new(program);
    command.env_clear();
    for name in ["PATH", "TZ"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if let Some(env) = spec.get::<Option<Table>>("env")? {
        for pair in env.pairs::<String, String>() {
            let (name, value) = pair?;
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(err(
                    "process.run",
                    format!("env: {name:?} is not a variable name and value"),
                ));
            }
            command.env(name, value);
        }
    }
    command
        .args(args)
        .process_group(0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| err(&format!("process.run {program}"), e))?;
    let stdin = child.stdin.take();
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(err("process.run", "no output pipes"));
    };
    // Given up (the timeout, an error), the program's whole process group
    // goes with it: its own children (`sh -c 'x &'`) would run on, holding
    // its pipes. Killed while the program is unreaped (see below), so
    // the group's id is still its own.
    let mut group = KillGroup(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let data = input.map(|s| s.as_bytes().to_vec()).unwrap_or_default();
    // The input is fed while the output is read: a program that writes
    // before it has read all its input (`cat`) would otherwise fill its
    // output pipe and wait for us while we wait for it. Dropped at the
    // timeout or on an error, the child is killed (`kill_on_drop`).
    let output = within(limit, "process.run", async move {
        let feed = async move {
            if let Some(mut pipe) = stdin {
                // A program that exits without reading its input is fine.
                let _ = pipe.write_all(&data).await;
            }
            Ok(())
        };
        let (_, stdout, stderr) = tokio::try_join!(
            feed,
            read_output(stdout, "standard output"),
            read_output(stderr, "standard error"),
        )?;
        // Not before: while its outputs are held open (by a child of its
        // own, once it has exited), the program's unreaped pid keeps its
        // group's id from being reused before the group is killed.
        let status = child.wait().await?;
        Ok(std::process::Output {
            status,
            stdout,
            stderr,
        })
    })
    .await?;
    group.0 = None;
    let t = lua.create_table()?;
    t.set("status", output.status.code())?;
    t.set("stdout", lua.create_string(output.stdout)?)?;
    t.set("stderr", lua.create_string(output.stderr)?)?;
    Ok(t)
}

/// A program's process group, killed when this is dropped (see
/// `process_run`).
struct KillGroup(Option<i32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill has no memory preconditions.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Everything a child writes to one pipe, up to [`MAX_OUTPUT`].
async fn read_output(pipe: impl AsyncRead + Unpin, which: &str) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    pipe.take(MAX_OUTPUT as u64 + 1)
        .read_to_end(&mut out)
        .await?;
    if out.len() > MAX_OUTPUT {
        return Err(std::io::Error::other(format!(
            "{which} of more than {} MiB",
            MAX_OUTPUT >> 20
        )));
    }
    Ok(out)
}

/// What `socket:receive` reads.
enum Pattern {
    /// Up to this many bytes.
    Bytes(usize),
    /// A line.
    Line,
    /// Everything until the peer closes.
    All,
}

impl Pattern {
    /// The pattern a script gave (a line without one, as LuaSocket); a
    /// name it does not know is an error rather than taken for a line.
    fn of(what: &mlua::Value) -> mlua::Result<Pattern> {
        let wrong = |what: String| {
            err(
                "socket:receive",
                format!("{what}: not \"line\", \"all\" or a byte count (0 to {MAX_RECEIVE})"),
            )
        };
        match what {
            mlua::Value::Nil => Ok(Pattern::Line),
            mlua::Value::Integer(n) => usize::try_from(*n)
                .ok()
                .filter(|n| *n <= MAX_RECEIVE)
                .map(Pattern::Bytes)
                .ok_or_else(|| wrong(n.to_string())),
            // A float with an integer value (`2^10`) counts as that integer.
            mlua::Value::Number(f) if f.fract() == 0.0 => {
                Pattern::of(&mlua::Value::Integer(*f as i64)).map_err(|_| wrong(f.to_string()))
            }
            mlua::Value::String(s) => match &*s.as_bytes() {
                b"line" | b"*l" => Ok(Pattern::Line),
                b"all" | b"*a" => Ok(Pattern::All),
                other => Err(wrong(format!("{:?}", String::from_utf8_lossy(other)))),
            },
            other => Err(wrong(format!("a {}", other.type_name()))),
        }
    }
}

/// More than [`MAX_RECEIVE`] bytes arrived `how`.
fn too_much(how: &str) -> std::io::Error {
    std::io::Error::other(format!("more than {} MiB {how}", MAX_RECEIVE >> 20))
}

/// A connected TCP socket. Taken out of its cell while an operation waits,
/// so that two coroutines cannot use it at once.
struct Socket(Rc<RefCell<Option<BufReader<TcpStream>>>>);

impl Socket {
    fn take(&self) -> mlua::Result<BufReader<TcpStream>> {
        self.0
            .borrow_mut()
            .take()
            .ok_or_else(|| err("socket", "closed or busy"))
    }
}

impl UserData for Socket {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_async_method(
            "send",
            |_, s, (data, timeout): (mlua::LuaString, Option<f64>)| async move {
                let mut stream = s.take()?;
                let bytes = data.as_bytes().to_vec();
                let r = within(
                    seconds(timeout)?,
                    "socket:send",
                    stream.get_mut().write_all(&bytes),
                )
                .await;
                *s.0.borrow_mut() = Some(stream);
                r
            },
        );
        // `receive("line")` (without the newline), `receive(n)` bytes, or
        // `receive("all")` until the peer closes; LuaSocket's `"*l"` and
        // `"*a"` name the same. Nil at end of stream. What is read is held
        // in Rust memory, outside LuaMemoryLimit, until it becomes a Lua
        // string: a line or the rest of the stream is bounded as `n` is.
        m.add_async_method(
            "receive",
            |lua, s, (what, timeout): (mlua::Value, Option<f64>)| async move {
                let pattern = Pattern::of(&what)?;
                let mut stream = s.take()?;
                let limit = seconds(timeout)?;
                let r = within(limit, "socket:receive", async {
                    match pattern {
                        Pattern::Bytes(want) => {
                            let mut buf = vec![0; want];
                            let mut filled = 0;
                            while filled < want {
                                let got = stream.read(&mut buf[filled..]).await?;
                                if got == 0 {
                                    break;
                                }
                                filled += got;
                            }
                            buf.truncate(filled);
                            // At end of stream before any byte: nil.
                            Ok((filled > 0 || want == 0).then_some(buf))
                        }
                        Pattern::All => {
                            let mut buf = Vec::new();
                            (&mut stream)
                                .take(MAX_RECEIVE as u64 + 1)
                                .read_to_end(&mut buf)
                                .await?;
                            if buf.len() > MAX_RECEIVE {
                                return Err(too_much("before the peer closed"));
                            }
                            Ok(Some(buf))
                        }
                        Pattern::Line => {
                            let mut buf = Vec::new();
                            // A line of up to MAX_RECEIVE bytes, and its newline.
                            let most = MAX_RECEIVE as u64 + 1;
                            let n = (&mut stream).take(most).read_until(b'\n', &mut buf).await?;
                            if n == 0 {
                                return Ok(None);
                            }
                            if n as u64 == most && buf.last() != Some(&b'\n') {
                                return Err(too_much("without a newline"));
                            }
                            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                                buf.pop();
                            }
                            Ok(Some(buf))
                        }
                    }
                })
                .await;
                *s.0.borrow_mut() = Some(stream);
                match r? {
                    Some(bytes) => Ok(Some(lua.create_string(bytes)?)),
                    None => Ok(None),
                }
            },
        );
        m.add_method("close", |_, s, ()| {
            s.0.borrow_mut().take();
            Ok(())
        });
    }
}
