//! The `json` global: JSON that round-trips through Lua, with serde_json
//! doing the parsing and the escaping.
//!
//! Lua has one table type for JSON's arrays and objects and `nil` cannot
//! sit in a table, so the mapping is made explicit instead of guessed:
//!
//! - `json.null` (a light userdata) is JSON's `null` both ways, so
//!   `[1, null, 3]` keeps its three elements.
//! - A decoded array carries the array metatable (`json.array`): `[]`
//!   decodes to an empty table that encodes back as `[]`, while a plain
//!   empty table encodes as `{}`. `json.array(t)` marks a table a script
//!   builds.
//! - A table is an array when its keys are exactly 1..n, an object when
//!   they are all strings; anything else (a gap, mixed keys, a float or
//!   boolean key, a cycle, a function, a string that is not UTF-8, NaN or
//!   an infinity) is an error naming where it is, never a silently
//!   different document.
//! - Integers stay integers: a JSON number without fraction or exponent
//!   that fits 64 bits decodes to a Lua integer, and a Lua integer encodes
//!   as itself; other numbers are floats (as Lua's own numerals are).
//! - Object keys are written in byte order, so equal tables encode to
//!   equal text.
//! - The text is bounded by `LuaMemoryLimit` as it is written (`bounds.rs`):
//!   a table that holds one subtable many times is written out as often,
//!   in Rust memory, and could not become a Lua string past the limit.

use std::fmt;

use mlua::{Lua, LuaString, Table, Value};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::bounds::{Budget, OverBudget};

/// Deeper than this is refused (serde_json stops decoding at 128 too):
/// the encoder recurses, and a table can contain itself.
const MAX_DEPTH: usize = 128;

/// Install `json` into the scripts' base environment.
pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    let array_mt = lua.create_table()?;
    // Shared by every script's arrays: not theirs to change.
    array_mt.raw_set("__metatable", false)?;
    let json = lua.create_table()?;
    let mt = array_mt.clone();
    json.raw_set(
        "encode",
        lua.create_function(move |lua, value: Value| {
            let mut out = Vec::new();
            let mut seen = Vec::new();
            let mut budget = Budget::of_lua(lua);
            encode(&mut out, &value, &mt, &mut seen, &mut budget)
                .map_err(|e| mlua::Error::runtime(format!("json.encode: {e}")))?;
            // The encoder writes only UTF-8 (strings are checked).
            String::from_utf8(out).map_err(mlua::Error::external)
        })?,
    )?;
    let mt = array_mt.clone();
    json.raw_set(
        "decode",
        lua.create_function(move |lua, text: LuaString| {
            let bytes = text.as_bytes();
            let mut de = serde_json::Deserializer::from_slice(&bytes);
            let value = Decode { lua, array_mt: &mt }
                .deserialize(&mut de)
                .and_then(|v| de.end().map(|()| v))
                .map_err(|e| mlua::Error::runtime(format!("json.decode: {e}")))?;
            Ok(value)
        })?,
    )?;
    let mt = array_mt.clone();
    json.raw_set(
        "array",
        lua.create_function(move |lua, t: Option<Table>| {
            let t = match t {
                Some(t) => t,
                None => lua.create_table()?,
            };
            match t.metatable() {
                None => t.set_metatable(Some(mt.clone()))?,
                Some(m) if m == mt => {}
                Some(_) => {
                    return Err(mlua::Error::runtime(
                        "json.array: the table already has a metatable",
                    ))
                }
            }
            Ok(t)
        })?,
    )?;
    json.raw_set("null", Value::NULL)?;
    base.raw_set("json", json)
}

/// What went wrong while encoding, and where (`$.items[3]`), the path
/// built as the error travels back up.
struct EncodeError {
    path: Vec<String>,
    message: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at $", self.message)?;
        for step in self.path.iter().rev() {
            f.write_str(step)?;
        }
        Ok(())
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, EncodeError> {
    Err(EncodeError {
        path: Vec::new(),
        message: message.into(),
    })
}

/// Add `step` to the path of an error coming up from below.
fn at<T>(step: impl FnOnce() -> String, r: Result<T, EncodeError>) -> Result<T, EncodeError> {
    r.map_err(|mut e| {
        e.path.push(step());
        e
    })
}

fn lua_err(e: mlua::Error) -> EncodeError {
    EncodeError {
        path: Vec::new(),
        message: e.to_string(),
    }
}

/// The text has grown past its budget: a table that holds one subtable or
/// string many times is written out as often.
fn too_big(over: OverBudget) -> EncodeError {
    EncodeError {
        path: Vec::new(),
        message: format!("the text would be {over}"),
    }
}

/// Write `value` as JSON. `seen` holds the tables being written (the path
/// from the top), to refuse a cycle; `budget` bounds the text.
fn encode(
    out: &mut Vec<u8>,
    value: &Value,
    array_mt: &Table,
    seen: &mut Vec<*const std::ffi::c_void>,
    budget: &mut Budget,
) -> Result<(), EncodeError> {
    budget.reach(out.len()).map_err(too_big)?;
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Number(n) if n.is_finite() => {
            serde_json::to_writer(&mut *out, n).map_err(|e| EncodeError {
                path: Vec::new(),
                message: e.to_string(),
            })?
        }
        Value::Number(n) => return fail(format!("{n} has no JSON form")),
        Value::String(s) => write_string(out, &s.as_bytes())?,
        Value::Table(t) => {
            if seen.len() >= MAX_DEPTH {
                return fail(format!("nested deeper than {MAX_DEPTH} tables"));
            }
            let id = t.to_pointer();
            if seen.contains(&id) {
                return fail("a table that contains itself");
            }
            seen.push(id);
            let r = encode_table(out, t, array_mt, seen, budget);
            seen.pop();
            r?
        }
        other => return fail(format!("a {} cannot be encoded", other.type_name())),
    }
    budget.reach(out.len()).map_err(too_big)
}

fn write_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), EncodeError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return fail("a string that is not UTF-8");
    };
    serde_json::to_writer(&mut *out, text).map_err(|e| EncodeError {
        path: Vec::new(),
        message: e.to_string(),
    })
}

fn encode_table(
    out: &mut Vec<u8>,
    t: &Table,
    array_mt: &Table,
    seen: &mut Vec<*const std::ffi::c_void>,
    budget: &mut Budget,
) -> Result<(), EncodeError> {
    let marked = t.metatable().is_some_and(|m| &m == array_mt);
    let mut ints: Vec<(i64, Value)> = Vec::new();
    let mut strings: Vec<(Vec<u8>, Value)> = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(lua_err)?;
        match k {
            Value::Integer(i) => ints.push((i, v)),
            Value::String(s) => strings.push((s.as_bytes().to_vec(), v)),
            other => {
                let shown = match &other {
                    Value::Number(n) => format!("the key {n}"),
                    Value::Boolean(b) => format!("the key {b}"),
                    k => format!("a {} key", k.type_name()),
                };
                return fail(format!(
                    "{shown} has no JSON form (keys are 1..n or strings)"
                ));
            }
        }
    }
    if !ints.is_empty() && !strings.is_empty() {
        return fail("a table with both integer and string keys");
    }
    if marked && !strings.is_empty() {
        return fail("an array (json.array) with string keys");
    }
    if strings.is_empty() && (marked || !ints.is_empty()) {
        ints.sort_unstable_by_key(|(i, _)| *i);
        let n = ints.len() as i64;
        if let Some(&(bad, _)) = ints
            .iter()
            .enumerate()
            .find(|&(pos, (i, _))| *i != pos as i64 + 1)
            .map(|(_, e)| e)
        {
            let why = if bad < 1 {
                format!("an array index {bad} (arrays start at 1)")
            } else {
                format!(
                    "a sparse array ({n} values, index {} missing)",
                    first_gap(&ints)
                )
            };
            return fail(why);
        }
        out.push(b'[');
        for (pos, (_, v)) in ints.iter().enumerate() {
            if pos > 0 {
                out.push(b',');
            }
            at(
                || format!("[{}]", pos + 1),
                encode(out, v, array_mt, seen, budget),
            )?;
        }
        out.push(b']');
        return Ok(());
    }
    strings.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    out.push(b'{');
    for (pos, (k, v)) in strings.iter().enumerate() {
        if pos > 0 {
            out.push(b',');
        }
        let step = || format!(".{}", String::from_utf8_lossy(k));
        at(step, write_string(out, k))?;
        out.push(b':');
        at(step, encode(out, v, array_mt, seen, budget))?;
    }
    out.push(b'}');
    Ok(())
}

/// The first index of 1.. missing from `ints` (sorted, positive).
fn first_gap(ints: &[(i64, Value)]) -> i64 {
    let mut want = 1;
    for (i, _) in ints {
        if *i > want {
            break;
        }
        want = i + 1;
    }
    want
}

/// Builds Lua values straight from the parser: arrays get the array
/// metatable, `null` becomes `json.null`.
#[derive(Clone, Copy)]
struct Decode<'a> {
    lua: &'a Lua,
    array_mt: &'a Table,
}

impl<'de> DeserializeSeed<'de> for Decode<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Decode<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }

    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Integer(i))
    }

    /// Past i64 a Lua numeral is a float too.
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(match i64::try_from(u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Number(u as f64),
        })
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Number(n))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        self.lua
            .create_string(s)
            .map(Value::String)
            .map_err(E::custom)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::NULL)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let t = self
            .lua
            .create_table_with_capacity(seq.size_hint().unwrap_or(0), 0)
            .map_err(A::Error::custom)?;
        t.set_metatable(Some(self.array_mt.clone()))
            .map_err(A::Error::custom)?;
        let mut n = 0;
        while let Some(v) = seq.next_element_seed(self)? {
            n += 1;
            t.raw_set(n, v).map_err(A::Error::custom)?;
        }
        Ok(Value::Table(t))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let t = self.lua.create_table().map_err(A::Error::custom)?;
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let v = map.next_value_seed(self)?;
            t.raw_set(k.as_ref(), v).map_err(A::Error::custom)?;
        }
        Ok(Value::Table(t))
    }
}
