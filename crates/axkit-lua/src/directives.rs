//! Directives in scripts: `directive { … }` turned into the same
//! [`Directive`] declaration a Rust plugin writes (so the core parses,
//! validates, merges and reports them), and config values turned back into
//! typed Lua values for `r:config(name)`.

use axkit::config::{Args, Directive, LocationConfig, Scopes, Setting, Value, ValueType, Words};
use mlua::{Lua, Table};

/// `directive { name = "Greeting", type = "string", args = "one",
/// scopes = { "server", "location" }, default = "Hello", doc = "…",
/// append = false, values = { … } }`.
pub(crate) fn declare(spec: &Table) -> mlua::Result<Directive> {
    let bad = |what: String| mlua::Error::runtime(format!("directive: {what}"));
    let name: String = spec
        .get::<Option<String>>("name")?
        .ok_or_else(|| bad("`name` is required".into()))?;
    let ty: String = spec
        .get::<Option<String>>("type")?
        .unwrap_or_else(|| "string".into());
    let mut args = Args::One;
    let value = match ty.to_ascii_lowercase().as_str() {
        "string" => ValueType::String,
        "path" => ValueType::Path,
        "integer" | "int" => ValueType::Integer,
        "size" => ValueType::Size,
        "duration" => ValueType::Duration,
        "onoff" | "on/off" | "boolean" | "bool" => ValueType::OnOff,
        "regex" => ValueType::Regex,
        "flag" => {
            args = Args::Flag;
            ValueType::String
        }
        "list" => {
            args = Args::Many;
            ValueType::String
        }
        "enum" => {
            let words: Vec<String> = spec
                .get::<Option<Vec<String>>>("values")?
                .ok_or_else(|| bad(format!("{name}: type enum needs `values`")))?;
            ValueType::Enum(Words::Owned(words))
        }
        other => return Err(bad(format!("{name}: unknown type `{other}`"))),
    };
    match spec.get::<mlua::Value>("args")? {
        mlua::Value::Nil => {}
        mlua::Value::String(s) => {
            args = match s.to_str()?.as_ref() {
                "one" => Args::One,
                "many" => Args::Many,
                "flag" => Args::Flag,
                "block" => Args::Block,
                other => return Err(bad(format!("{name}: unknown args `{other}`"))),
            }
        }
        mlua::Value::Table(t) => {
            let min: u8 = t.get(1)?;
            let max: u8 = t.get(2)?;
            args = Args::Range(min, max);
        }
        _ => return Err(bad(format!("{name}: `args` is a word or {{min, max}}"))),
    }
    let scopes = match spec.get::<Option<Vec<String>>>("scopes")? {
        None => Scopes::ALL,
        Some(list) => {
            let mut scopes: Option<Scopes> = None;
            for word in list {
                let one = match word.to_ascii_lowercase().as_str() {
                    "global" => Scopes::GLOBAL,
                    "server" => Scopes::SERVER,
                    "location" => Scopes::LOCATION,
                    other => return Err(bad(format!("{name}: unknown scope `{other}`"))),
                };
                scopes = Some(scopes.map_or(one, |s| s | one));
            }
            scopes.ok_or_else(|| bad(format!("{name}: `scopes` is empty")))?
        }
    };
    let mut d = Directive::new(name, value).args(args).scopes(scopes);
    if let Some(default) = spec.get::<Option<String>>("default")? {
        d = d.default(default);
    }
    if let Some(doc) = spec.get::<Option<String>>("doc")? {
        d = d.doc(doc);
    }
    if spec.get::<Option<bool>>("append")?.unwrap_or(false) {
        d = d.append();
    }
    Ok(d)
}

/// `r:config(name)`: the effective value as Lua sees it. One-argument
/// directives give their value, many-argument ones a list, flags a boolean,
/// append-merged ones a list of every occurrence. Nil when unset.
pub(crate) fn config_value(
    lua: &Lua,
    config: &LocationConfig,
    name: &str,
) -> mlua::Result<mlua::Value> {
    let registry = config.registry();
    let id = registry
        .lookup(name)
        .ok_or_else(|| mlua::Error::runtime(format!("r:config: unknown directive `{name}`")))?;
    let directive = registry.directive(id);
    let settings = config.settings_by_id(id);
    if directive.args == Args::Flag {
        return Ok(mlua::Value::Boolean(!settings.is_empty()));
    }
    if directive.merge == axkit::config::Merge::Append {
        let all = lua.create_table()?;
        for s in settings {
            all.push(setting(lua, directive, s)?)?;
        }
        return Ok(mlua::Value::Table(all));
    }
    match settings.last() {
        Some(s) => setting(lua, directive, s),
        None => Ok(mlua::Value::Nil),
    }
}

fn setting(lua: &Lua, directive: &Directive, s: &Setting) -> mlua::Result<mlua::Value> {
    match directive.args {
        Args::One | Args::Flag => s
            .args
            .first()
            .map_or(Ok(mlua::Value::Nil), |v| value(lua, v)),
        _ => {
            let list = lua.create_table()?;
            for v in &s.args {
                list.push(value(lua, v)?)?;
            }
            Ok(mlua::Value::Table(list))
        }
    }
}

/// One typed value: durations in seconds (a float), sizes in bytes,
/// regexes as their source text, blocks as `{ {name=, args={…}}, … }`.
fn value(lua: &Lua, v: &Value) -> mlua::Result<mlua::Value> {
    Ok(match v {
        Value::Str(s) => mlua::Value::String(lua.create_string(s)?),
        Value::Path(p) => mlua::Value::String(lua.create_string(p.as_os_str().as_encoded_bytes())?),
        Value::Int(i) => mlua::Value::Integer(*i),
        Value::Size(n) => mlua::Value::Integer(*n as i64),
        Value::Duration(d) => mlua::Value::Number(d.as_secs_f64()),
        Value::Bool(b) => mlua::Value::Boolean(*b),
        Value::Regex(r) => mlua::Value::String(lua.create_string(r.as_str())?),
        Value::Flag => mlua::Value::Boolean(true),
        Value::Block(lines) => {
            let list = lua.create_table()?;
            for line in lines {
                let t = lua.create_table()?;
                t.set("name", line.name.as_str())?;
                t.set("args", line.args.clone())?;
                list.push(t)?;
            }
            mlua::Value::Table(list)
        }
    })
}
