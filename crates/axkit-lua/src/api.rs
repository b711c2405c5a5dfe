//! The environment every script sees: a safe subset of the Lua standard
//! library (no `io`, no `os.execute`, no `dofile`/`require`: nothing that
//! blocks the worker), AxKit2's return constants, and the non-blocking
//! primitives of `io.rs` plus small helpers (JSON, escaping, logging).

use axkit::Level;
use mlua::{Lua, LuaSerdeExt, Table, Value};

use crate::script::{DECLINED, DONE, OK};

/// Globals copied from the standard library into the scripts' base.
const SAFE_GLOBALS: &[&str] = &[
    "assert",
    "error",
    "ipairs",
    "next",
    "pairs",
    "pcall",
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
    "xpcall",
    "_VERSION",
    "string",
    "table",
    "math",
    "utf8",
    "coroutine",
];

/// The parts of `os` that neither block nor touch the process.
const SAFE_OS: &[&str] = &["time", "clock", "date", "difftime", "getenv"];

/// Build the base environment (each script's globals fall back to it).
pub(crate) fn install(lua: &Lua) -> mlua::Result<Table> {
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
    // `load` for text chunks only: compiling bytecode can crash the VM.
    let std_load: mlua::Function = globals.raw_get("load")?;
    base.raw_set(
        "load",
        lua.create_function(move |_, (chunk, name): (mlua::LuaString, Option<String>)| {
            std_load.call::<mlua::MultiValue>((chunk, name, "t"))
        })?,
    )?;
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
        lua.create_function(|_, s: String| Ok(axkit::server::html_escape(&s)))?,
    )?;
    base.raw_set(
        "url_decode",
        lua.create_function(|_, s: String| Ok(crate::form::decode(&s)))?,
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
    let json = lua.create_table()?;
    json.raw_set(
        "encode",
        lua.create_function(|_, v: Value| {
            serde_json::to_string(&v).map_err(|e| mlua::Error::runtime(format!("json.encode: {e}")))
        })?,
    )?;
    json.raw_set(
        "decode",
        lua.create_function(|lua, s: String| {
            let v: serde_json::Value = serde_json::from_str(&s)
                .map_err(|e| mlua::Error::runtime(format!("json.decode: {e}")))?;
            lua.to_value(&v)
        })?,
    )?;
    base.raw_set("json", json)?;
    crate::io::install(lua, &base)?;
    Ok(base)
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
    eprintln!("{}", axkit::server::log_line(level, &text));
    Ok(())
}
