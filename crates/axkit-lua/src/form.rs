//! Query strings, form bodies (`application/x-www-form-urlencoded` and
//! `multipart/form-data`, AxKit2's `parse_post_data`) and cookies.
//!
//! Uploads: a file field is saved to disk only when the handler asks for
//! it (`r:form{ uploads = { "avatar" } }`, or `uploads = true` for every
//! one); otherwise it is reported without content and its bytes go with
//! the body. A saved file is created exclusively (`O_CREAT|O_EXCL`, which
//! refuses any existing name, a planted symbolic link included) under a
//! random name, inside a directory private to the worker (mode 0700,
//! itself made under a random name in `$TMPDIR`), and removed when the
//! request ends. The directory goes when the worker exits; a worker that
//! crashes leaves it behind, holding only the uploads of the requests it
//! was serving, readable by the server's user alone.
//!
//! A multipart body is refused with 400 when it is malformed (or its
//! boundary is over RFC 2046's 70 characters, or a part's head over
//! [`MAX_PART_HEAD`]) and with 413 past [`MAX_PARTS`] parts; its total size
//! is bounded by `MaxRequestBody`, since it is read whole first.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use memchr::memmem;
use mlua::{Lua, Table, Value};
use percent_encoding::percent_decode;
use tempfile::{TempDir, TempPath};

use crate::request::Slot;

/// The most parts a multipart body may have.
pub(crate) const MAX_PARTS: usize = 1000;

/// The most bytes of header lines one part may have.
pub(crate) const MAX_PART_HEAD: usize = 8 * 1024;

/// RFC 2046's limit on a boundary's length.
const MAX_BOUNDARY: usize = 70;

/// Decode one `application/x-www-form-urlencoded` component.
pub(crate) fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode(plus.as_bytes())
        .decode_utf8_lossy()
        .into_owned()
}

/// Every `name=value` pair of a query string or urlencoded body, decoded.
pub(crate) fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The first value of `name` in a query string, decoded as [`pairs`]
/// does. Nothing is allocated for the usual plain `name=value` pairs.
pub(crate) fn lookup<'q>(query: &'q str, name: &[u8]) -> Option<Cow<'q, str>> {
    query.split('&').filter(|p| !p.is_empty()).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode_cow(k).as_bytes() == name).then(|| decode_cow(v))
    })
}

/// [`decode`], borrowing `s` when there is nothing to decode.
fn decode_cow(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b == b'%' || b == b'+') {
        Cow::Owned(decode(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// The value of cookie `name` in a Cookie header.
pub(crate) fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"').to_string())
    })
}

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

    fn wants(&self, field: &str) -> bool {
        match self {
            Wanted::Nothing => false,
            Wanted::All => true,
            Wanted::Fields(names) => names.iter().any(|n| n == field),
        }
    }
}

/// Parse a form body into a table (or, given the table an earlier
/// `r:form` made of the same body, add to it): fields are strings, file
/// fields `{ filename =, size =, content_type = }`, with `path =` the saved
/// copy for those in `wanted`. When a name repeats, the last part wins.
pub(crate) async fn parse(
    lua: &Lua,
    slot: &Slot,
    content_type: Option<&str>,
    body: &Bytes,
    wanted: &Wanted,
    parsed: Option<Table>,
) -> mlua::Result<Table> {
    let fresh = parsed.is_none();
    let t = match parsed {
        Some(t) => t,
        None => lua.create_table()?,
    };
    let ct = content_type.unwrap_or("");
    let media_type = ct.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("multipart/form-data") {
        if fresh {
            for (k, v) in pairs(&String::from_utf8_lossy(body)) {
                t.set(k, v)?;
            }
        }
        return Ok(t);
    }
    let boundary = params(ct)
        .into_iter()
        .find_map(|(k, v)| (k == "boundary").then_some(v))
        .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
        .ok_or_else(|| {
            slot.refuse(
                400,
                format!("multipart body without a boundary of 1 to {MAX_BOUNDARY} characters"),
            )
        })?;
    let parts = multipart(body, &boundary).map_err(|(status, why)| slot.refuse(status, why))?;
    let mut last = HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        last.insert(part.name.as_str(), i);
    }
    for (i, part) in parts.iter().enumerate() {
        if last[part.name.as_str()] != i {
            continue;
        }
        let Some(filename) = &part.filename else {
            if fresh {
                t.set(part.name.as_str(), lua.create_string(part.data)?)?;
            }
            continue;
        };
        let file = if fresh {
            let file = lua.create_table()?;
            file.set("filename", filename.as_str())?;
            file.set("size", part.data.len())?;
            file.set("content_type", part.content_type.as_deref())?;
            t.set(part.name.as_str(), &file)?;
            file
        } else {
            match t.get(part.name.as_str())? {
                Value::Table(file) => file,
                // The script replaced the entry: leave it be.
                _ => continue,
            }
        };
        if wanted.wants(&part.name) && file.get::<Value>("path")?.is_nil() {
            let saved = save_upload(lua, body.slice_ref(part.data)).await?;
            file.set("path", saved.display().to_string())?;
            slot.add_upload(saved);
        }
    }
    Ok(t)
}

/// Copy an upload into a new file of the worker's upload directory, on the
/// blocking pool. Should the request end meanwhile, the file is removed as
/// soon as it is written (its `TempPath` dropped with the task's output).
async fn save_upload(lua: &Lua, data: Bytes) -> mlua::Result<TempPath> {
    let dir = lua
        .app_data_ref::<UploadDir>()
        .map(|d| d.clone())
        .ok_or_else(|| mlua::Error::runtime("no upload directory"))?;
    tokio::task::spawn_blocking(move || dir.save(&data))
        .await
        .map_err(mlua::Error::runtime)?
        .map_err(|e| mlua::Error::runtime(format!("saving an upload: {e}")))
}

/// The worker's private directory for uploads (Lua app data: one per Lua
/// state, so one per worker), made on first use and removed with the
/// state. Checked before each use: if it is gone, or what is at its name is
/// not a directory of ours closed to everyone else (a temp cleaner removed it while
/// it sat empty, and someone made another), a new one is made and whatever
/// is at the old name is left alone.
#[derive(Clone, Default)]
pub(crate) struct UploadDir(Arc<Mutex<Option<TempDir>>>);

impl UploadDir {
    /// The directory, if this worker has made one.
    pub fn path(&self) -> Option<PathBuf> {
        let current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().map(|d| d.path().to_path_buf())
    }

    fn save(&self, data: &[u8]) -> std::io::Result<TempPath> {
        let dir = self.current()?;
        let mut file = tempfile::Builder::new()
            .prefix("upload-")
            .rand_bytes(16)
            .tempfile_in(dir)?;
        file.write_all(data)?;
        Ok(file.into_temp_path())
    }

    fn current(&self) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // Only this user (or root) can have made such a directory, and no
        // one else can add anything to it.
        let private = |path: &Path| {
            std::fs::symlink_metadata(path).is_ok_and(|m| {
                // SAFETY: geteuid cannot fail and touches no memory.
                m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o077 == 0
            })
        };
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match current.take() {
            Some(dir) if private(dir.path()) => {
                let path = dir.path().to_path_buf();
                *current = Some(dir);
                return Ok(path);
            }
            // Not ours any more: removing it could remove someone else's.
            Some(dir) => drop(dir.keep()),
            None => {}
        }
        let dir = tempfile::Builder::new()
            .prefix("axkit-uploads-")
            .rand_bytes(16)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()?;
        let path = dir.path().to_path_buf();
        *current = Some(dir);
        Ok(path)
    }
}

/// The parameters of a header value (`form-data; name="a"; filename="b"`,
/// `multipart/form-data; boundary=x`) after its first item: lower-case
/// names, values unquoted. A quoted value runs to the next `"` (browsers
/// send a `"` in a file name as `%22` and a backslash as is, so there is
/// no escaping to undo) and may hold `;`.
fn params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match value.split_once(';') {
        Some((_, rest)) => rest,
        None => return out,
    };
    while !rest.is_empty() {
        let (name, after) = match rest.find(['=', ';']) {
            Some(i) if rest.as_bytes()[i] == b'=' => (&rest[..i], &rest[i + 1..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let after = after.trim_start();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, after)) => (v, after),
                None => (quoted, ""),
            },
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim_end(), &after[end..])
            }
        };
        out.push((name.trim().to_ascii_lowercase(), value.to_string()));
        rest = after.split_once(';').map_or("", |(_, r)| r);
    }
    out
}

struct Part<'a> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: &'a [u8],
}

/// Split a multipart body into its parts, or say why it is refused (the
/// status and a message for the log).
fn multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, (u16, String)> {
    let bad = |what: &str| (400, format!("malformed multipart body: {what}"));
    let delim = format!("--{boundary}");
    let start = memmem::find(body, delim.as_bytes()).ok_or_else(|| bad("no boundary"))?;
    let mut rest = &body[start..];
    let next = format!("\r\n--{boundary}");
    let next = memmem::Finder::new(next.as_bytes());
    let head_end = memmem::Finder::new(b"\r\n\r\n");
    let mut parts = Vec::new();
    loop {
        rest = &rest[delim.len()..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if parts.len() == MAX_PARTS {
            return Err((
                413,
                format!("multipart body of more than {MAX_PARTS} parts"),
            ));
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("boundary line"))?;
        let head_len = head_end
            .find(&rest[..rest.len().min(MAX_PART_HEAD + 4)])
            .ok_or_else(|| match rest.len() > MAX_PART_HEAD {
                true => bad("part head over 8 KiB"),
                false => bad("part head"),
            })?;
        let head = String::from_utf8_lossy(&rest[..head_len]);
        let data_start = head_len + 4;
        let end = next
            .find(&rest[data_start..])
            .ok_or_else(|| bad("unterminated part"))?;
        let (mut name, mut filename, mut content_type) = (None, None, None);
        for line in head.split("\r\n") {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            if field.eq_ignore_ascii_case("content-disposition") {
                for (k, v) in params(value) {
                    match k.as_str() {
                        "name" => name = Some(v),
                        "filename" => filename = Some(v),
                        _ => {}
                    }
                }
            } else if field.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.trim().to_string());
            }
        }
        parts.push(Part {
            name: name.ok_or_else(|| bad("part without a name"))?,
            filename,
            content_type,
            data: &rest[data_start..data_start + end],
        });
        rest = &rest[data_start + end + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_plus_and_percent() {
        assert_eq!(
            pairs("a=1+2&b=%41%26&c&&d="),
            [
                ("a".into(), "1 2".into()),
                ("b".into(), "A&".into()),
                ("c".into(), String::new()),
                ("d".into(), String::new())
            ]
        );
        assert_eq!(
            lookup("x=1&na%6De=Ada+L&name=second", b"name"),
            Some("Ada L".into())
        );
        assert_eq!(lookup("x=1", b"name"), None);
        assert_eq!(lookup("c&name=Ada&x", b"name"), Some("Ada".into()));
        assert_eq!(lookup("c&name=Ada&x", b"c"), Some("".into()));
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie("a=1; sid=\"xyz\"; b=2", "sid"), Some("xyz".into()));
        assert_eq!(cookie("a=1", "sid"), None);
        assert!(set_cookie("bad name", "v", None).is_err());
        assert!(set_cookie("n", "v;injected", None).is_err());
    }

    #[test]
    fn header_parameters() {
        let p = |v: &str| params(v);
        assert_eq!(
            p(r#"form-data; name="up"; filename="a;b \x.txt""#),
            [
                ("name".into(), "up".into()),
                ("filename".into(), r"a;b \x.txt".into())
            ]
        );
        assert_eq!(
            p("multipart/form-data; Boundary = x-y ;charset=utf-8"),
            [
                ("boundary".into(), "x-y".into()),
                ("charset".into(), "utf-8".into())
            ]
        );
        assert_eq!(p("form-data"), []);
        assert_eq!(
            p("form-data; flag; name=\"unterminated"),
            [
                ("flag".into(), String::new()),
                ("name".into(), "unterminated".into())
            ]
        );
    }

    #[test]
    fn multipart_parts_and_errors() {
        let body =
            b"preamble\r\n--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nx\r\n--b\r\n\
Content-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\nContent-Type: image/png\r\n\r\n\
\x00\x01\r\n--b--\r\n";
        let parts = multipart(body, "b").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), parts[0].data), ("t", &b"x"[..]));
        assert_eq!(parts[1].filename.as_deref(), Some("a.bin"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, b"\x00\x01");
        assert!(multipart(b"--b\r\nno head end", "b").is_err());
        assert!(multipart(b"--b\r\n\r\nunterminated", "b").is_err());
        assert!(multipart(b"nothing", "b").is_err());
        let head = format!("--b\r\nX: {}\r\n\r\nx\r\n--b--", "p".repeat(MAX_PART_HEAD));
        assert_eq!(multipart(head.as_bytes(), "b").err().unwrap().0, 400);
        let many = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n"
            .repeat(MAX_PARTS + 1)
            + "--b--";
        assert_eq!(multipart(many.as_bytes(), "b").err().unwrap().0, 413);
        let enough = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".repeat(MAX_PARTS)
            + "--b--";
        assert_eq!(multipart(enough.as_bytes(), "b").unwrap().len(), MAX_PARTS);
    }
}
