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

/// The most `socket:receive(n)` reads in one call.
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

/// `process.run{ "cmd", "arg", …, stdin = "…", timeout = 30 }` →
/// `{ status =, stdout =, stderr = }`. The program runs without a shell;
/// it is killed if it outlives the timeout.
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
    command
        .args(args)
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
        let (_, stdout, stderr, status) = tokio::try_join!(
            feed,
            read_output(stdout, "standard output"),
            read_output(stderr, "standard error"),
            child.wait()
        )?;
        Ok(std::process::Output {
            status,
            stdout,
            stderr,
        })
    })
    .await?;
    let t = lua.create_table()?;
    t.set("status", output.status.code())?;
    t.set("stdout", lua.create_string(output.stdout)?)?;
    t.set("stderr", lua.create_string(output.stderr)?)?;
    Ok(t)
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
        // `receive("all")` until the peer closes. Nil at end of stream.
        m.add_async_method(
            "receive",
            |lua, s, (what, timeout): (mlua::Value, Option<f64>)| async move {
                let mut stream = s.take()?;
                let limit = seconds(timeout)?;
                let r = within(limit, "socket:receive", async {
                    match &what {
                        mlua::Value::Integer(n) => {
                            let want = usize::try_from(*n)
                                .ok()
                                .filter(|n| *n <= MAX_RECEIVE)
                                .ok_or_else(|| std::io::Error::other("bad byte count"))?;
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
                        mlua::Value::String(s) if s.as_bytes().as_ref() == b"all" => {
                            let mut buf = Vec::new();
                            stream.read_to_end(&mut buf).await?;
                            Ok(Some(buf))
                        }
                        _ => {
                            let mut buf = Vec::new();
                            let n = stream.read_until(b'\n', &mut buf).await?;
                            if n == 0 {
                                return Ok(None);
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
