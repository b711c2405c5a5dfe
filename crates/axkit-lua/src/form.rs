//! Forms and cookies as scripts see them. The parsing is axkit's
//! ([`axkit::plugin::form`], shared with Rust plugins): this module reads
//! the options of `r:form{ … }`, turns a parsed [`Form`] into the table a
//! script gets, and builds `Set-Cookie` values (with `axkit-session`'s
//! cookie helpers, which encode values rather than refuse them).
//!
//! In a form's table a field is a string and a file field a table
//! `{ filename =, size =, content_type = }`, with `path =` once the upload
//! is saved (only when the handler asks for it: `uploads = { "avatar" }`
//! or `uploads = true`).

use axkit::plugin::{Field, Form};
use axkit_session::cookie::{SameSite, SetCookie};
use mlua::{Lua, Table, Value};

/// A Set-Cookie value: the value percent-encoded where a cookie cannot
/// carry it (`;`, `,`, spaces, quotes, `%`, anything not ASCII), which
/// `r:cookie` decodes. Options: `path`, `domain`, `max_age` (seconds),
/// `expires` (an HTTP date), `secure`, `http_only`, `same_site` (`"Lax"`,
/// `"Strict"`, `"None"`). A name that is not a token, or an attribute
/// with `;` or a control character, is an error.
pub(crate) fn set_cookie(name: &str, value: &[u8], opts: Option<&Table>) -> mlua::Result<String> {
    let fail = |e: String| mlua::Error::runtime(format!("set_cookie: {e}"));
    let mut c = SetCookie::new(name, value);
    if let Some(o) = opts {
        if let Some(v) = o.get::<Option<String>>("path")? {
            c = c.path(v);
        }
        if let Some(v) = o.get::<Option<String>>("domain")? {
            c = c.domain(v);
        }
        if let Some(v) = o.get::<Option<String>>("expires")? {
            c = c.expires(v);
        }
        if let Some(v) = o.get::<Option<String>>("same_site")? {
            let same_site = match v.to_ascii_lowercase().as_str() {
                "lax" => SameSite::Lax,
                "strict" => SameSite::Strict,
                "none" => SameSite::None,
                _ => {
                    return Err(fail(format!(
                        "same_site {v:?}: expected Lax, Strict or None"
                    )))
                }
            };
            c = c.same_site(same_site);
        }
        if let Some(age) = o.get::<Option<i64>>("max_age")? {
            c = c.max_age(age);
        }
        c = c
            .secure(o.get::<Option<bool>>("secure")?.unwrap_or(false))
            .http_only(o.get::<Option<bool>>("http_only")?.unwrap_or(false));
    }
    c.header().map_err(fail)
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
    fn cookie_values_are_encoded_and_names_checked() {
        assert!(set_cookie("bad name", b"v", None).is_err());
        assert_eq!(
            set_cookie("n", b"v;injected", None).unwrap(),
            "n=v%3Binjected"
        );
        assert_eq!(set_cookie("n", b"v", None).unwrap(), "n=v");
    }
}
