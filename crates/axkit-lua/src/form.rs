//! Query strings, form bodies (`application/x-www-form-urlencoded` and
//! `multipart/form-data`, AxKit2's `parse_post_data`) and cookies. Uploaded
//! files go to temporary files that are removed when the request ends.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use mlua::{Lua, Table};
use percent_encoding::percent_decode;

use crate::request::Slot;

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

/// Parse a form body into a table: fields are strings, uploads are
/// `{ filename =, path =, size =, content_type = }`.
pub(crate) async fn parse(
    lua: &Lua,
    content_type: Option<&str>,
    body: &[u8],
    slot: &Slot,
) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("multipart/form-data") {
        let boundary = content_type
            .unwrap_or("")
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_string())
            .ok_or_else(|| mlua::Error::runtime("multipart body without a boundary"))?;
        for part in multipart(body, &boundary)? {
            match part.filename {
                None => t.set(part.name, lua.create_string(part.data)?)?,
                Some(filename) => {
                    let path = upload_path();
                    // Registered first: removed even if the request ends
                    // while the file is being written.
                    slot.add_upload(path.clone());
                    tokio::fs::write(&path, part.data)
                        .await
                        .map_err(|e| mlua::Error::runtime(format!("saving an upload: {e}")))?;
                    let file = lua.create_table()?;
                    file.set("filename", filename)?;
                    file.set("path", path.display().to_string())?;
                    file.set("size", part.data.len())?;
                    file.set("content_type", part.content_type)?;
                    t.set(part.name, file)?;
                }
            }
        }
    } else {
        for (k, v) in pairs(&String::from_utf8_lossy(body)) {
            t.set(k, v)?;
        }
    }
    Ok(t)
}

fn upload_path() -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "axkit-upload-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

struct Part<'a> {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split a multipart body into its parts.
fn multipart<'a>(body: &'a [u8], boundary: &str) -> mlua::Result<Vec<Part<'a>>> {
    let bad = |what: &str| mlua::Error::runtime(format!("malformed multipart body: {what}"));
    let delim = format!("--{boundary}");
    let mut rest = &body[find(body, delim.as_bytes()).ok_or_else(|| bad("no boundary"))?..];
    let next = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        rest = &rest[delim.len()..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| bad("boundary line"))?;
        let head_end = find(rest, b"\r\n\r\n").ok_or_else(|| bad("part head"))?;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let data_start = head_end + 4;
        let end =
            find(&rest[data_start..], next.as_bytes()).ok_or_else(|| bad("unterminated part"))?;
        let (mut name, mut filename, mut content_type) = (None, None, None);
        for line in head.split("\r\n") {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            if field.eq_ignore_ascii_case("content-disposition") {
                for param in value.split(';').skip(1) {
                    if let Some((k, v)) = param.trim().split_once('=') {
                        let v = v.trim_matches('"').to_string();
                        match k.to_ascii_lowercase().as_str() {
                            "name" => name = Some(v),
                            "filename" => filename = Some(v),
                            _ => {}
                        }
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
    }
}
