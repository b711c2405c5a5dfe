//! The environment every script sees: a safe subset of the Lua standard
//! library (no `io`, no `os.execute`, no `dofile`/`loadfile`: nothing that
//! blocks the worker or reaches past the sandbox), AxKit2's return names
//! (`OK`, `DECLINED`, `DONE`), `coroutine`/`pcall` wrappers that cooperate
//! with suspension and with `LuaTimeLimit`, the non-blocking primitives of
//! `io.rs`, JSON (`json.rs`) and small helpers (escaping, logging). The
//! host adds `require` (`modules.rs`), `file` (`files.rs`) and `timer`
//! (`timer.rs`); each script's own globals, `_G` among them, fall back to
//! this base.

use std::rc::Rc;

use axkit::Level;
use mlua::{Lua, Table, Value};

use crate::host::Clock;
use crate::script::{DECLINED, DONE, OK};

/// Globals copied from the standard library into the scripts' base.
const SAFE_GLOBALS: &[&str] = &[
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "rawequal",
    "rawget",
    "rawlen",
    "rawset",
    "select",
    "setmetatable",
    "getmetatable",
    "tonumber",
    "tostring",
    "type",
    "_VERSION",
    "string",
    "table",
    "math",
    "utf8",
];

/// The parts of `os` that neither block nor touch the process.
const SAFE_OS: &[&str] = &["time", "clock", "date", "difftime", "getenv"];

/// Build the base environment (each script's globals fall back to it).
pub(crate) fn install(lua: &Lua, clock: Rc<Clock>) -> mlua::Result<Table> {
    lua.load_std_libs(mlua::StdLib::OS)?;
    let globals = lua.globals();
    let base = lua.create_table()?;
    for name in SAFE_GLOBALS {
        base.raw_set(*name, globals.raw_get::<Value>(*name)?)?;
    }
    let os = lua.create_table()?;
    let std_os: Table = globals.raw_get("os")?;
    for name in SAFE_OS {
        os.raw_set(*name, std_os.raw_get::<Value>(*name)?)?;
    }
    base.raw_set("os", os)?;
    // No `__gc` finalizers: Lua runs them with debug hooks off, where
    // LuaTimeLimit cannot stop a loop (and a worker would hang). Adding
    // `__gc` to a metatable after setmetatable has no effect in Lua 5.4.
    // The string metatable is shared by every script: not theirs to change.
    let guarded: mlua::Function = lua
        .load(
            r#"
            local setmetatable, rawget, type, error = ...
            getmetatable("").__metatable = false
            return function(t, mt)
                if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
                    error("setmetatable: __gc finalizers are not allowed", 2)
                end
                return setmetatable(t, mt)
            end
            "#,
        )
        .set_name("=setmetatable")
        .call((
            globals.raw_get::<Value>("setmetatable")?,
            globals.raw_get::<Value>("rawget")?,
            globals.raw_get::<Value>("type")?,
            globals.raw_get::<Value>("error")?,
        ))?;
    base.raw_set("setmetatable", guarded)?;
    // `load` for text chunks only (compiling bytecode can crash the VM),
    // in the environment given, else the caller's own, as standard Lua
    // gives a chunk its global environment: never the state's real
    // globals, which hold what scripts must not reach (`os.execute`,
    // `dofile`…).
    let std_load: mlua::Function = globals.raw_get("load")?;
    let fallback = base.clone();
    base.raw_set(
        "load",
        lua.create_function(
            move |lua,
                  (chunk, name, mode, env): (
                mlua::LuaString,
                Option<String>,
                Option<String>,
                Option<Table>,
            )| {
                if mode.as_deref().is_some_and(|m| m != "t") {
                    return Err(mlua::Error::runtime(
                        "load: only text chunks (mode \"t\"): bytecode is refused",
                    ));
                }
                let env = match env.or_else(|| caller_env(lua)) {
                    Some(env) => env,
                    None => {
                        let env = lua.create_table()?;
                        let meta = lua.create_table()?;
                        meta.raw_set("__index", fallback.clone())?;
                        env.set_metatable(Some(meta))?;
                        env
                    }
                };
                std_load.call::<mlua::MultiValue>((chunk, name, "t", env))
            },
        )?,
    )?;
    install_control(lua, &base, clock)?;
    base.raw_set("OK", OK)?;
    base.raw_set("DECLINED", DECLINED)?;
    base.raw_set("DONE", DONE)?;
    base.raw_set("log", lua.create_function(log)?)?;
    base.raw_set(
        "print",
        lua.create_function(|lua, args: mlua::MultiValue| log(lua, (String::from("info"), args)))?,
    )?;
    base.raw_set(
        "html_escape",
        lua.create_function(|_, s: String| Ok(axkit::plugin::html_escape(&s)))?,
    )?;
    base.raw_set(
        "url_decode",
        lua.create_function(|_, s: String| Ok(axkit::plugin::form::url_decode(&s).into_owned()))?,
    )?;
    base.raw_set(
        "url_encode",
        lua.create_function(|_, s: String| {
            Ok(
                percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            )
        })?,
    )?;
    crate::json::install(lua, &base)?;
    crate::io::install(lua, &base)?;
    crate::http::install(lua, &base)?;
    crate::template::install(lua, &base)?;
    crate::shared::install(lua, &base)?;
    crate::db::install(lua, &base)?;
    crate::session::install(lua, &base)?;
    crate::xml::install(lua, &base)?;
    Ok(base)
}

/// The global environment of the Lua function calling the host function
/// being run, unless it is the state's own globals (host code).
fn caller_env(lua: &Lua) -> Option<Table> {
    let env = lua.inspect_stack(1, |d| d.function())?.environment()?;
    (env != lua.globals()).then_some(env)
}

/// Control flow that must cooperate with the server, written in Lua:
///
/// - `coroutine.resume` and `coroutine.wrap` pass a suspension through:
///   when a coroutine the script made waits in a primitive (`sleep`, a
///   socket…), mlua yields a "pending" marker out of it; these yield that
///   marker on to the hook's own coroutine, which the server suspends, and
///   resume the inner coroutine when the hook's is resumed. Without them
///   the script would receive the marker as if it were a result.
/// - `pcall`, `xpcall` and `coroutine.resume` do not swallow the error
///   that `LuaTimeLimit` raises: once the limit is hit (`time_up()`), any
///   error they catch is raised again, so a loop around `pcall` ends too.
/// - `coroutine.create` and `wrap` make coroutines that carry the
///   instruction-count hook (`hooked`: see `watchdog.rs`).
const CONTROL: &str = r##"
local pending, std, raw_pcall, raw_xpcall, time_up, hooked = ...
local raw_create, resume, status, yield = std.create, std.resume, std.status, std.yield
local function create(f) return hooked(raw_create, f) end
local function rethrow(ok, ...)
  if not ok and time_up() then error((...), 0) end
  return ok, ...
end
local function forward(co, ok, ...)
  if ok and select("#", ...) == 1 and (...) == pending and status(co) == "suspended" then
    return forward(co, resume(co, yield(pending)))
  end
  return rethrow(ok, ...)
end
local function unwrap(ok, ...)
  if not ok then error((...), 0) end
  return ...
end
local co = {}
for k, v in pairs(std) do co[k] = v end
co.create = create
co.resume = function(c, ...) return forward(c, resume(c, ...)) end
co.wrap = function(f)
  local c = create(f)
  return function(...) return unwrap(forward(c, resume(c, ...))) end
end
local function pcall(f, ...) return rethrow(raw_pcall(f, ...)) end
local function xpcall(f, handler, ...) return rethrow(raw_xpcall(f, handler, ...)) end
return co, pcall, xpcall
"##;

fn install_control(lua: &Lua, base: &Table, clock: Rc<Clock>) -> mlua::Result<()> {
    let globals = lua.globals();
    let time_up = lua.create_function(move |_, ()| Ok(clock.killed().is_some()))?;
    let (co, pcall, xpcall): (Table, mlua::Function, mlua::Function) =
        lua.load(CONTROL).set_name("=control").call((
            Value::LightUserData(Lua::poll_pending()),
            globals.raw_get::<Table>("coroutine")?,
            globals.raw_get::<mlua::Function>("pcall")?,
            globals.raw_get::<mlua::Function>("xpcall")?,
            time_up,
            // SAFETY: a C function following the Lua API's rules.
            unsafe { lua.create_c_function(crate::watchdog::inherit_count_hook)? },
        ))?;
    base.raw_set("coroutine", co)?;
    base.raw_set("pcall", pcall)?;
    base.raw_set("xpcall", xpcall)
}

/// `log(level, ...)` outside a request: straight to stderr in the server's
/// log format. Inside a hook, `r:log` goes through the logging hooks.
fn log(_: &Lua, (level, args): (String, mlua::MultiValue)) -> mlua::Result<()> {
    let level = Level::parse(&level)
        .ok_or_else(|| mlua::Error::runtime(format!("unknown log level `{level}`")))?;
    let mut text = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&v.to_string()?);
    }
    axkit::plugin::log_to_stderr(level, &text);
    Ok(())
}
