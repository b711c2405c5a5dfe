//! What a request carries besides its path: query parameters, cookies and
//! form bodies (`application/x-www-form-urlencoded` and
//! `multipart/form-data`, AxKit2's `parse_post_data`), decoded once here
//! for Rust plugins ([`Request::param`](super::Request::param),
//! [`Context::read_form`](super::Context::read_form)) and for script hosts
//! alike (the Lua host's `r:param`, `r:cookie` and `r:form` are these).
//!
//! Uploads: a file field is saved to disk only when the handler asks for
//! it ([`Form::save_uploads`]); otherwise it stays in the body's memory and
//! nothing of it reaches the disk. A saved file is created exclusively
//! (`O_CREAT|O_EXCL`, which refuses any existing name, a planted symbolic
//! link included) under a random name, inside a directory private to the
//! worker (mode 0700, itself made under a random name in `$TMPDIR`), and
//! removed when its [`Form`] drops, which for [`Context::read_form`](super::Context::read_form) is when
//! the request ends. The directory goes when the worker exits; a worker
//! that crashes leaves it behind, holding only the uploads of the requests
//! it was serving, readable by the server's user alone.
//!
//! A multipart body is refused with 400 when it is malformed (or its
//! boundary is over RFC 2046's 70 characters, or a part's head over
//! [`MAX_PART_HEAD`]); a form of either kind with 413 past [`MAX_PARTS`]
//! fields, before they are made (each costs a name and a value of its
//! own: without a limit, a megabyte of `a&a&…` was half a million of them
//! and about 90 MB). Its total size is bounded by `MaxRequestBody`, since
//! it is read whole first.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use memchr::memmem;
use percent_encoding::percent_decode;
use tempfile::{TempDir, TempPath};

/// The most fields a form body may have, parts of a multipart one or
/// pairs of an urlencoded one (413 beyond).
pub const MAX_PARTS: usize = 1000;

/// The most bytes of header lines one part of a multipart body may have
/// (400 beyond).
pub const MAX_PART_HEAD: usize = 8 * 1024;

/// RFC 2046's limit on a boundary's length.
const MAX_BOUNDARY: usize = 70;

/// Decode one `application/x-www-form-urlencoded` component: `+` is a
/// space, `%XX` a byte, and bytes that are not UTF-8 become U+FFFD.
/// Borrows `s` when there is nothing to decode.
pub fn url_decode(s: &str) -> Cow<'_, str> {
    if !has_escapes(s) {
        return Cow::Borrowed(s);
    }
    let plus = s.replace('+', " ");
    Cow::Owned(
        percent_decode(plus.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Every `name=value` pair of a query string or urlencoded body, in
/// order, decoded ([`url_decode`]); a pair without `=` has an empty value,
/// empty pairs (`a=1&&b=2`) are skipped. Nothing is allocated for plain
/// pairs.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (url_decode(k), url_decode(v))
    })
}

/// The first value of `name` in a query string, decoded as
/// [`query_pairs`] does.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    // One pass over the bytes rather than `split('&')` and `split_once('=')`,
    // whose searchers take longer to set up than a short query takes to
    // scan (a Lua handler's `r:param` runs this on every request). `&` and
    // `=` are ASCII, so the slices end on character boundaries. A name
    // without escapes is compared as it is; only the value asked for is
    // decoded.
    let mut rest = query;
    while !rest.is_empty() {
        let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
        let pair = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.bytes().position(|b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        let matches = if has_escapes(k) {
            url_decode(k) == name
        } else {
            k == name
        };
        if matches {
            return Some(url_decode(v));
        }
    }
    None
}

/// Whether [`url_decode`] would change `s`.
fn has_escapes(s: &str) -> bool {
    s.bytes().any(|b| b == b'%' || b == b'+')
}

/// The value of cookie `name` in a `Cookie` header (quotes around it
/// removed), as sent: a cookie value is not percent-decoded.
pub fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    })
}

/// Why a form could not be read: answer with `status` (400 malformed, 413
/// too large; or the body read's own 400/408/413) and log `reason`, which
/// [`Context::read_form`](super::Context::read_form) has already done (at
/// level info: it is the client's mistake).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormError {
    pub status: u16,
    pub reason: String,
}

impl std::fmt::Display for FormError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for FormError {}

impl From<super::BodyError> for FormError {
    fn from(e: super::BodyError) -> FormError {
        FormError {
            status: e.status,
            reason: e.reason.to_string(),
        }
    }
}

impl From<FormError> for super::Outcome {
    fn from(e: FormError) -> super::Outcome {
        super::Outcome::Status(e.status)
    }
}

/// A field of a [`Form`].
#[derive(Debug)]
pub enum Field {
    /// A plain field: its value, decoded for a urlencoded body, as sent
    /// (any bytes) for a multipart one.
    Text(Bytes),
    /// A file field of a multipart body.
    File(Upload),
}

/// A file sent in a multipart form. Its content stays in memory
/// ([`bytes`](Self::bytes)) unless the handler saves it to disk
/// ([`Form::save_uploads`]).
#[derive(Debug)]
pub struct Upload {
    filename: String,
    content_type: Option<String>,
    data: Bytes,
    saved: Option<TempPath>,
}

impl Upload {
    /// The file name the client sent. Never trust it as a path.
    pub fn filename(&self) -> &str {
        &self.filename
    }
    /// The part's `Content-Type`, if it had one.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    /// Its length in bytes.
    pub fn size(&self) -> usize {
        self.data.len()
    }
    /// Its content (a slice of the request body: no copy).
    pub fn bytes(&self) -> &Bytes {
        &self.data
    }
    /// The temporary file holding it, once saved; removed with the form.
    pub fn path(&self) -> Option<&Path> {
        self.saved.as_deref()
    }
}

/// Which file fields [`Form::save_uploads`] saves.
#[derive(Clone, Copy, Debug)]
pub enum Uploads<'a> {
    /// None: they stay in memory only.
    None,
    /// Every file field.
    All,
    /// The file fields of these names.
    Fields(&'a [&'a str]),
}

impl Uploads<'_> {
    fn wants(&self, field: &str) -> bool {
        match self {
            Uploads::None => false,
            Uploads::All => true,
            Uploads::Fields(names) => names.contains(&field),
        }
    }
}

/// A parsed form body: its fields in the order sent. Where a name repeats,
/// the last field of that name is the one [`field`](Self::field),
/// [`get`](Self::get) and [`file`](Self::file) find (and the only one
/// [`save_uploads`](Self::save_uploads) saves).
#[derive(Debug)]
pub struct Form {
    fields: Vec<(String, Field)>,
}

impl Form {
    /// Parse `body` as a form of `content_type`: `multipart/form-data`, or
    /// else `application/x-www-form-urlencoded`. The fields and uploads are
    /// slices of `body`, not copies (but for urlencoded values that had to
    /// be decoded). Nothing is logged.
    pub fn parse(content_type: Option<&str>, body: Bytes) -> Result<Form, FormError> {
        let ct = content_type.unwrap_or("");
        let media_type = ct.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("multipart/form-data") {
            return urlencoded(&body);
        }
        let boundary = params(ct)
            .into_iter()
            .find_map(|(k, v)| (k == "boundary").then_some(v))
            .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
            .ok_or_else(|| FormError {
                status: 400,
                reason: format!(
                    "multipart body without a boundary of 1 to {MAX_BOUNDARY} characters"
                ),
            })?;
        let parts =
            multipart(&body, &boundary).map_err(|(status, reason)| FormError { status, reason })?;
        let fields = parts
            .into_iter()
            .map(|part| {
                let data = body.slice_ref(part.data);
                let field = match part.filename {
                    Some(filename) => Field::File(Upload {
                        filename,
                        content_type: part.content_type,
                        data,
                        saved: None,
                    }),
                    None => Field::Text(data),
                };
                (part.name, field)
            })
            .collect();
        Ok(Form { fields })
    }

    /// Every field, in the order sent, repeated names included.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Field)> {
        self.fields.iter().map(|(n, f)| (n.as_str(), f))
    }

    /// The fields that count: the last of each name, in the order sent.
    pub fn last_fields(&self) -> impl Iterator<Item = (&str, &Field)> {
        let last = self.last_indexes();
        self.fields
            .iter()
            .enumerate()
            .filter(move |(i, (name, _))| last.get(name.as_str()) == Some(i))
            .map(|(_, (n, f))| (n.as_str(), f))
    }

    /// Where the last field of each name is.
    fn last_indexes(&self) -> std::collections::HashMap<&str, usize> {
        self.fields
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.as_str(), i))
            .collect()
    }

    /// The last field named `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .rev()
            .find_map(|(n, f)| (n == name).then_some(f))
    }

    /// The value of plain field `name` as UTF-8 text; None if the field is
    /// missing, a file, or not UTF-8 (see [`get_bytes`](Self::get_bytes)).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The value of plain field `name`, any bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        match self.field(name)? {
            Field::Text(v) => Some(v),
            Field::File(_) => None,
        }
    }

    /// File field `name`.
    pub fn file(&self, name: &str) -> Option<&Upload> {
        match self.field(name)? {
            Field::File(u) => Some(u),
            Field::Text(_) => None,
        }
    }

    /// Save the file fields `which` names (the last of each name) that are
    /// not saved yet, each to a new file in the worker's private upload
    /// directory, on the blocking pool; [`Upload::path`] then names it.
    /// The files are removed when the form drops.
    pub async fn save_uploads(&mut self, which: Uploads<'_>) -> std::io::Result<()> {
        let mut last: Vec<usize> = self.last_indexes().into_values().collect();
        last.sort_unstable();
        for i in last {
            let (name, field) = &self.fields[i];
            let Field::File(upload) = field else { continue };
            if upload.saved.is_some() || !which.wants(name) {
                continue;
            }
            let data = upload.data.clone();
            let saved = tokio::task::spawn_blocking(move || save_upload(&data))
                .await
                .map_err(std::io::Error::other)??;
            if let (_, Field::File(upload)) = &mut self.fields[i] {
                upload.saved = Some(saved);
            }
        }
        Ok(())
    }
}

/// The fields of an urlencoded body, at most [`MAX_PARTS`].
fn urlencoded(body: &Bytes) -> Result<Form, FormError> {
    let text = String::from_utf8_lossy(body);
    let mut fields = Vec::new();
    for (name, value) in query_pairs(&text) {
        if fields.len() == MAX_PARTS {
            return Err(FormError {
                status: 413,
                reason: format!("urlencoded form body of more than {MAX_PARTS} fields"),
            });
        }
        let value = match (&text, value) {
            (Cow::Borrowed(_), Cow::Borrowed(value)) => body.slice_ref(value.as_bytes()),
            (_, value) => Bytes::from(value.into_owned()),
        };
        fields.push((name.into_owned(), Field::Text(value)));
    }
    Ok(Form { fields })
}

/// The worker's private directory for uploads, made on first use and
/// removed when the worker ends ([`remove_upload_dir`]). Checked before
/// each use: if it is gone, or what is at its name is not a directory of
/// ours closed to everyone else (a temp cleaner removed it while it sat
/// empty, and someone made another), a new one is made and whatever is at
/// the old name is left alone.
static UPLOAD_DIR: Mutex<Option<TempDir>> = Mutex::new(None);

/// Copy an upload into a new file of the worker's upload directory.
fn save_upload(data: &[u8]) -> std::io::Result<TempPath> {
    let dir = upload_dir()?;
    let mut file = tempfile::Builder::new()
        .prefix("upload-")
        .rand_bytes(16)
        .tempfile_in(dir)?;
    file.write_all(data)?;
    Ok(file.into_temp_path())
}

fn upload_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Only this user (or root) can have made such a directory, and no one
    // else can add anything to it.
    let private = |path: &Path| {
        std::fs::symlink_metadata(path).is_ok_and(|m| {
            // SAFETY: geteuid cannot fail and touches no memory.
            m.is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o077 == 0
        })
    };
    let mut current = UPLOAD_DIR.lock().unwrap_or_else(PoisonError::into_inner);
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

/// The worker's upload directory, if it has made one: where the uploads
/// of its requests are while those requests run (a script host lets
/// scripts read them there).
pub fn upload_dir_path() -> Option<PathBuf> {
    let current = UPLOAD_DIR.lock().unwrap_or_else(PoisonError::into_inner);
    current.as_ref().map(|d| d.path().to_path_buf())
}

/// Remove the worker's upload directory (at the end of a worker).
pub(crate) fn remove_upload_dir() {
    drop(
        UPLOAD_DIR
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(),
    );
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
        let pairs: Vec<(String, String)> = query_pairs("a=1+2&b=%41%26&c&&d=")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a".into(), "1 2".into()),
                ("b".into(), "A&".into()),
                ("c".into(), String::new()),
                ("d".into(), String::new())
            ]
        );
        assert_eq!(
            query_param("x=1&na%6De=Ada+L&name=second", "name"),
            Some("Ada L".into())
        );
        assert_eq!(query_param("x=1", "name"), None);
        assert_eq!(query_param("c&name=Ada&x", "name"), Some("Ada".into()));
        assert_eq!(query_param("c&name=Ada&x", "c"), Some("".into()));
        // Empty pairs, a trailing `&`, an escaped name that reads as
        // another, a name containing what would be an escape.
        assert_eq!(query_param("&&name=&", "name"), Some("".into()));
        assert_eq!(query_param("a=1&", "a"), Some("1".into()));
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("a%2Bb=1&a+b=2", "a+b"), Some("1".into()));
        assert_eq!(query_param("a+b=2", "a+b"), None);
        assert_eq!(
            query_param("\u{e9}=\u{e8}&x=1", "\u{e9}"),
            Some("\u{e8}".into())
        );
        assert!(matches!(url_decode("plain"), Cow::Borrowed("plain")));
        assert_eq!(url_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie("a=1; sid=\"xyz\"; b=2", "sid"), Some("xyz"));
        assert_eq!(cookie("a=1;b=2", "b"), Some("2"));
        assert_eq!(cookie("a=1", "sid"), None);
        assert_eq!(cookie("xsid=1; sid=2", "sid"), Some("2"));
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

    #[test]
    fn forms_keep_the_last_field_of_a_name() {
        let form = Form::parse(None, Bytes::from_static(b"a=1&b=x+y&a=2")).unwrap();
        assert_eq!(form.get("a"), Some("2"));
        assert_eq!(form.get("b"), Some("x y"));
        assert_eq!(form.fields().count(), 3);
        assert_eq!(
            form.last_fields().map(|(n, _)| n).collect::<Vec<_>>(),
            ["b", "a"]
        );
        let body = Bytes::from_static(
            b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n\
\xff\r\n--b\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n\xfe\r\n--b--",
        );
        let form = Form::parse(Some("multipart/form-data; boundary=b"), body).unwrap();
        assert_eq!(form.file("f").unwrap().bytes().as_ref(), b"\xff");
        assert_eq!(form.get("f"), None, "a file is no text field");
        assert_eq!(form.get("t"), None, "not UTF-8");
        assert_eq!(form.get_bytes("t"), Some(&b"\xfe"[..]));
        let err = Form::parse(Some("multipart/form-data"), Bytes::new()).unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn urlencoded_forms_have_at_most_max_parts_fields() {
        let enough = Bytes::from("a&".repeat(MAX_PARTS) + "&&");
        let form = Form::parse(None, enough.clone()).unwrap();
        assert_eq!(form.fields().count(), MAX_PARTS);
        // Plain values are the body's bytes, decoded ones copies.
        let body = Bytes::from_static(b"a=plain&b=x+y");
        let form = Form::parse(None, body.clone()).unwrap();
        let Some(Field::Text(plain)) = form.field("a") else {
            panic!("no field a");
        };
        assert_eq!(plain.as_ptr(), body[2..].as_ptr());
        assert_eq!(form.get("b"), Some("x y"));
        let more = Bytes::from("a&".repeat(MAX_PARTS + 1));
        assert_eq!(Form::parse(None, more).unwrap_err().status, 413);
    }
}
