//! The `template` global and `r:render`: templates of the `TemplateDir`
//! (`axkit-template`), rendered with a Lua table as their data.
//!
//! A Lua value becomes a template value directly, without JSON or serde
//! in between: strings, numbers, booleans; nil and `json.null` are none;
//! a table whose keys are 1..n is a list, any other a map (string and
//! integer keys; other keys, and functions, coroutines and userdata
//! values, are left out). Tables are read raw: no metamethod runs. The
//! copy is bounded by `LuaMemoryLimit` (`bounds.rs`): a table that holds
//! one subtable or string many times is copied as often.

use std::collections::BTreeMap;
use std::sync::Arc;

use axkit::config::LocationConfig;
use axkit_template::Value;
use mlua::{Lua, Table};

use crate::bounds::{Budget, OverBudget};
use crate::request::{with_current, with_polled, OUTSIDE};

/// How deep tables may nest: deeper is a table that contains itself.
const MAX_DEPTH: usize = 100;

/// The global config, for renders outside a request (set when the
/// worker's script plugins are made).
pub(crate) struct GlobalConfig(pub Arc<LocationConfig>);

pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    let template = lua.create_table()?;
    template.raw_set(
        "render",
        lua.create_function(|lua, (name, data): (String, mlua::Value)| {
            let data = value(lua, &data, 0, &mut Budget::of_lua(lua))?;
            let rendered = match with_current(|c| {
                axkit_template::render_value(c.config(), &name, data.clone())
            }) {
                Some(result) => result?,
                None => {
                    let global = lua.app_data_ref::<GlobalConfig>().ok_or_else(|| {
                        mlua::Error::runtime(
                            "template.render: no config yet (at a script's top level)",
                        )
                    })?;
                    axkit_template::render_value(&global.0, &name, data)
                }
            };
            rendered.map_err(|e| mlua::Error::runtime(format!("template.render: {e}")))
        })?,
    )?;
    base.raw_set("template", template)
}

/// `r:render(name, data)`: render with the request's `TemplateDir`, set
/// `Content-Type` by the template's extension unless it is set, and
/// `r:write` the result.
pub(crate) fn install_methods(lua: &Lua, methods: &Table) -> mlua::Result<()> {
    let render =
        lua.create_function(|lua, (r, name, data): (mlua::Value, String, mlua::Value)| {
            let data = value(lua, &data, 0, &mut Budget::of_lua(lua))?;
            let rendered = with_polled(r.to_pointer() as usize, |_, c| {
                if c.response.headers.get("Content-Type").is_none() {
                    c.response
                        .headers
                        .set("Content-Type", axkit_template::content_type(&name));
                }
                axkit_template::render_value(c.config(), &name, data)
            })
            .ok_or_else(|| mlua::Error::runtime(OUTSIDE))?;
            let text = rendered.map_err(|e| mlua::Error::runtime(format!("r:render: {e}")))?;
            lua.create_string(text)
        })?;
    // Written through `r:write`, which flushes (and may suspend) when the
    // output is large.
    let method: mlua::Function = lua
        .load(
            r#"
            local render, write = ...
            return function(r, name, data)
                return write(r, render(r, name, data))
            end
            "#,
        )
        .set_name("=r:render")
        .call((render, methods.raw_get::<mlua::Function>("write")?))?;
    methods.raw_set("render", method)
}

/// Template data past its budget.
fn too_big(over: OverBudget) -> mlua::Error {
    mlua::Error::runtime(format!("template data of {over}"))
}

/// A Lua value as a template value (see the module's doc), its copy
/// bounded by `budget`.
fn value(lua: &Lua, v: &mlua::Value, depth: usize, budget: &mut Budget) -> mlua::Result<Value> {
    let size = match v {
        mlua::Value::String(s) => s.as_bytes().len(),
        mlua::Value::Table(_) => 1,
        _ => 8,
    };
    budget.spend(size).map_err(too_big)?;
    Ok(match v {
        mlua::Value::Nil => Value::from(()),
        mlua::Value::Boolean(b) => Value::from(*b),
        mlua::Value::Integer(i) => Value::from(*i),
        mlua::Value::Number(n) => Value::from(*n),
        mlua::Value::String(s) => match s.to_str() {
            Ok(s) => Value::from(&*s),
            Err(_) => Value::from(s.to_string_lossy()),
        },
        mlua::Value::Table(t) => table(lua, t, depth + 1, budget)?,
        // `json.null` (a NULL light userdata) and whatever else has no
        // meaning in a template.
        _ => Value::from(()),
    })
}

fn table(lua: &Lua, t: &Table, depth: usize, budget: &mut Budget) -> mlua::Result<Value> {
    if depth > MAX_DEPTH {
        return Err(mlua::Error::runtime(format!(
            "template data nested deeper than {MAX_DEPTH} tables (a table that contains itself?)"
        )));
    }
    let len = t.raw_len();
    if len > 0 {
        let mut keys = 0;
        let mut list = true;
        for pair in t.pairs::<mlua::Value, mlua::Value>() {
            let (k, _) = pair?;
            keys += 1;
            if !matches!(k, mlua::Value::Integer(i) if i >= 1 && i as usize <= len) {
                list = false;
                break;
            }
        }
        if list && keys == len {
            let mut items = Vec::with_capacity(len);
            for i in 1..=len {
                items.push(value(lua, &t.raw_get::<mlua::Value>(i)?, depth, budget)?);
            }
            return Ok(Value::from(items));
        }
    }
    let mut map = BTreeMap::new();
    for pair in t.pairs::<mlua::Value, mlua::Value>() {
        let (k, v) = pair?;
        let skipped = matches!(
            v,
            mlua::Value::Function(_) | mlua::Value::Thread(_) | mlua::Value::UserData(_)
        );
        if !skipped && matches!(k, mlua::Value::String(_) | mlua::Value::Integer(_)) {
            map.insert(
                value(lua, &k, depth, budget)?,
                value(lua, &v, depth, budget)?,
            );
        }
    }
    Ok(Value::from(map))
}
