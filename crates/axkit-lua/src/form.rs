//! Forms and cookies as scripts see them. The parsing is axkit's
//! ([`axkit::plugin::form`], shared with Rust plugins): this module reads
//! the options of `r:form{ … }`, turns a parsed [`Form`] into the table a
//! script gets, and builds `Set-Cookie` values.
//!
//! In a form's table a field is a string and a file field a table
//! `{ filename =, size =, content_type = }`, with `path =` once the upload
//! is saved (only when the handler asks for it: `uploads = { "avatar" }`
//! or `uploads = true`).

use axkit::plugin::{Field, Form};
use mlua::{Lua, Table, Value};

/// A Set-Cookie value. Options: `path`, `domain`, `max_age` (seconds),
/// `expires` (an HTTP date), `secure`, `http_only`, `same_site`.
pub(crate) fn set_cookie(name: &str, value: &str, opts: Option<&Table>) -> mlua::Result<String> {
    let bad = |c: char| c.is_control() || c == ';' || c == ',' || c == ' ';
    if name.is_empty() || name.chars().any(|c| bad(c) || c == '=') || value.chars().any(bad) {
        return Err(mlua::Error::runtime(format!(
            "set_cookie: invalid cookie {name:?}={value:?}"
        )));
    }
    let mut out = format!("{name}={value}");
    if let Some(o) = opts {
        for key in ["path", "domain", "expires", "same_site"] {
            if let Some(v) = o.get::<Option<String>>(key)? {
                if v.chars().any(|c| c.is_control() || c == ';') {
                    return Err(mlua::Error::runtime(format!("set_cookie: invalid {key}")));
                }
                let attr = match key {
                    "path" => "Path",
                    "domain" => "Domain",
                    "expires" => "Expires",
                    _ => "SameSite",
                };
                out.push_str(&format!("; {attr}={v}"));
            }
        }
        if let Some(age) = o.get::<Option<i64>>("max_age")? {
            out.push_str(&format!("; Max-Age={age}"));
        }
        if o.get::<Option<bool>>("secure")?.unwrap_or(false) {
            out.push_str("; Secure");
        }
        if o.get::<Option<bool>>("http_only")?.unwrap_or(false) {
            out.push_str("; HttpOnly");
        }
    }
    Ok(out)
}

/// Which file fields of a multipart form a handler wants saved: the
/// `uploads` option of `r:form{ … }`.
pub(crate) enum Wanted {
    Nothing,
    All,
    Fields(Vec<String>),
}

impl Wanted {
    /// Read the options table of `r:form`: `uploads = true` or a list of
    /// field names (or one name). Anything else is an error, so that a
    /// misspelt option does not silently drop the uploads.
    pub fn from_options(options: Option<&Table>) -> mlua::Result<Wanted> {
        let bad = |what: String| mlua::Error::runtime(format!("r:form: {what}"));
        let Some(options) = options else {
            return Ok(Wanted::Nothing);
        };
        for pair in options.pairs::<Value, Value>() {
            let (key, _) = pair?;
            let name = match key.as_string() {
                Some(k) if k.as_bytes().as_ref() == b"uploads" => continue,
                Some(k) => format!("{:?}", k.to_string_lossy()),
                None => key.type_name().to_string(),
            };
            return Err(bad(format!("unknown option {name} (known: uploads)")));
        }
        Ok(match options.get::<Value>("uploads")? {
            Value::Nil | Value::Boolean(false) => Wanted::Nothing,
            Value::Boolean(true) => Wanted::All,
            Value::String(name) => Wanted::Fields(vec![name.to_str()?.to_string()]),
            Value::Table(names) => {
                Wanted::Fields(names.sequence_values().collect::<Result<_, _>>()?)
            }
            other => {
                return Err(bad(format!(
                    "uploads must be true or a list of field names, not a {}",
                    other.type_name()
                )))
            }
        })
    }
}

/// The table of `form` (the last field of each name), or, given the table
/// an earlier `r:form` made of it, that table with the paths of uploads
/// saved since.
pub(crate) fn table(lua: &Lua, form: &Form, made: Option<Table>) -> mlua::Result<Table> {
    let fresh = made.is_none();
    let t = match made {
        Some(t) => t,
        None => lua.create_table()?,
    };
    for (name, field) in form.last_fields() {
        match field {
            Field::Text(value) if fresh => t.set(name, lua.create_string(value)?)?,
            Field::Text(_) => {}
            Field::File(upload) => {
                let file = if fresh {
                    let file = lua.create_table()?;
                    file.set("filename", upload.filename())?;
                    file.set("size", upload.size())?;
                    file.set("content_type", upload.content_type())?;
                    t.set(name, &file)?;
                    file
                } else {
                    match t.get(name)? {
                        Value::Table(file) => file,
                        // The script replaced the entry: leave it be.
                        _ => continue,
                    }
                };
                if let Some(path) = upload.path() {
                    if file.get::<Value>("path")?.is_nil() {
                        file.set("path", path.display().to_string())?;
                    }
                }
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_that_would_inject_are_refused() {
        assert!(set_cookie("bad name", "v", None).is_err());
        assert!(set_cookie("n", "v;injected", None).is_err());
        assert_eq!(set_cookie("n", "v", None).unwrap(), "n=v");
    }
}
