//! What a hook sees of one request: the parsed request, the response being
//! built, facts about the connection, the merged config of the matched
//! `<Location>`, string notes shared between plugins and typed per-plugin
//! state, and the I/O a hook may do (reading the request body, streaming
//! the response). The server's side of a request (its connection, the
//! matched Location's runtime, the walk's own state) is one crate-private
//! field, [`RequestRt`], that plugins cannot reach.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use axkit_http::{same_field, FieldSpan, HttpError, Limits, RequestHead, Version};
use bytes::{Bytes, BytesMut};

use super::Outcome;
use crate::config::{LocationConfig, ServerConfig};
pub use crate::server::response::Upgraded;
use crate::server::{response, LogRoute, RequestRt};

use super::client::Client;
use super::doc_root::DocRoot;
use super::form::{Form, FormError};
use super::log::Level;
use super::reclaim::{Listed, Reclaim};
use super::spare::SpareVecs;
use super::worker::Worker;

/// Facts about the connection a request came on. Behind a proxy these are
/// the proxy's: who the client is, is [`Context::client`].
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Per-worker connection number, for log correlation.
    pub id: u64,
    /// The socket's peer (a front proxy, when there is one).
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Whether the socket speaks TLS: never, as the core leaves TLS to a
    /// front proxy (see [`https`](Self::https)).
    pub tls: bool,
    /// What the PROXY protocol header said, on a listener with
    /// `proxy-protocol`.
    pub proxied: Option<axkit_http::ProxyHeader>,
    /// The worker made this connection itself, for a
    /// [`Context::background_request`]: no client waits on its response.
    pub background: bool,
    /// Which of the config's listeners accepted it (a background request
    /// is taken as if by its parent's), to pick the `<Server>` by Host.
    pub(crate) listener: u16,
}

impl ConnInfo {
    /// The connection's client: the source a PROXY protocol header gave,
    /// else the socket's peer. (A request's client may be further away,
    /// behind trusted proxies: see [`Context::client`].)
    pub fn client(&self) -> SocketAddr {
        match self.proxied {
            Some(axkit_http::ProxyHeader::Tcp { source, .. }) => source,
            _ => self.peer,
        }
    }

    /// Whether the connection's client used TLS: what a PROXY protocol
    /// header said (its SSL TLV), else whether the socket does. (A
    /// request's client may be further away: see [`Context::client`].)
    pub fn https(&self) -> bool {
        match self.proxied {
            Some(axkit_http::ProxyHeader::Tcp { tls, .. }) => tls,
            _ => self.tls,
        }
    }
}

/// The request as received. The head is kept as the bytes read from the
/// wire; accessors hand out slices of it.
#[derive(Debug)]
pub struct Request {
    pub(crate) head: RequestHead,
    /// `None` when the path as sent is already normal (the usual case).
    decoded_path: Option<String>,
    pub(crate) started: SystemTime,
}

/// `head`'s path as a `&str`, without checking its bytes again: the path
/// is read several times per request (the Location, the file, logs), and a
/// UTF-8 check costs more than the rest of such an access.
fn ascii_path(head: &RequestHead) -> &str {
    let path = head.path_bytes();
    // Always true (the parser admits only visible ASCII in a
    // request-target, `unparsed` replaces every other byte), but checked
    // here so that safety does not hang on another crate's parser; an
    // ASCII check of a short path is a few word compares.
    if path.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        unsafe { std::str::from_utf8_unchecked(path) }
    } else {
        head.path()
    }
}

thread_local! {
    /// The field lists of finished requests (a head's positions of its
    /// fields), for the next heads this worker parses: a list taken here
    /// costs less than the `malloc` and `free` each head's would.
    static FIELD_SPANS: SpareVecs<FieldSpan> = const { SpareVecs::new(64, 64) };
}

impl Request {
    /// [`axkit_http::parse_request_head`], into the field list of a
    /// finished request when this worker has one spare.
    pub(crate) fn parse_head(
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<RequestHead>, HttpError> {
        let mut spare = SpareVecs::take(&FIELD_SPANS, 0);
        let parsed = axkit_http::parse_request_head_reusing(buf, limits, &mut spare);
        // Still there unless a head took it.
        SpareVecs::give(&FIELD_SPANS, spare);
        parsed
    }

    /// The request for `head`, or the head back (boxed: the rare path) if
    /// its path cannot be normalised (see
    /// [`normalize_path`](axkit_http::normalize_path)).
    pub(crate) fn new(head: RequestHead, started: SystemTime) -> Result<Request, Box<RequestHead>> {
        let decoded_path = match axkit_http::normalize_path(ascii_path(&head)) {
            Some(Cow::Borrowed(_)) => None,
            Some(Cow::Owned(p)) => Some(p),
            None => return Err(Box::new(head)),
        };
        Ok(Request {
            head,
            decoded_path,
            started,
        })
    }

    /// A request whose path is taken as it is (refused ones, for the log).
    pub(crate) fn unchecked(head: RequestHead, started: SystemTime) -> Request {
        Request {
            head,
            decoded_path: None,
            started,
        }
    }

    pub fn method(&self) -> &str {
        self.head.method()
    }
    /// The request-target exactly as sent (`/a%20b?x=1`).
    pub fn uri(&self) -> &str {
        self.head.target()
    }
    /// The path, still percent-encoded, without the query.
    pub fn path(&self) -> &str {
        ascii_path(&self.head)
    }
    pub fn query(&self) -> Option<&str> {
        self.head.query()
    }
    /// The path percent-decoded once and normalised (`.`/`..` resolved,
    /// `//` collapsed); an encoded `/` stays as `%2F` so that it cannot
    /// create a path segment. This is what `<Location>` matching uses.
    pub fn decoded_path(&self) -> &str {
        self.decoded_path
            .as_deref()
            .unwrap_or_else(|| ascii_path(&self.head))
    }
    /// When the request head was complete.
    pub fn start_time(&self) -> SystemTime {
        self.started
    }
    pub fn version(&self) -> Version {
        self.head.version()
    }
    /// First header of that name (case-insensitive), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header_str(name)
    }
    /// First header of that name (case-insensitive), as sent: any bytes
    /// (escape them for logs, see [`escape_log_field`](crate::plugin::escape_log_field)).
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers()
    }
    /// The header fields in order, names as sent, both as bytes (names
    /// are ASCII tokens): for a pass over the names that compares them
    /// as bytes anyway, without the UTF-8 check [`headers`](Self::headers)
    /// makes of each.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.fields()
    }
    /// The host the client asked for, without the port.
    pub fn host(&self) -> Option<&str> {
        self.head.host()
    }
    pub fn is_head(&self) -> bool {
        self.method_is("HEAD")
    }
    /// Whether the method is `method` (case-sensitive): cheaper than
    /// comparing [`method`](Self::method), which makes a `&str` first.
    pub fn method_is(&self, method: &str) -> bool {
        self.head.method_is(method)
    }
    /// The query parameters, in order, decoded (`+` and `%XX`; bytes that
    /// are not UTF-8 become U+FFFD). Nothing is allocated for plain pairs.
    pub fn query_params(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        super::form::query_pairs(self.query().unwrap_or(""))
    }
    /// The first value of query parameter `name`, decoded.
    pub fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        super::form::query_param(self.query()?, name)
    }
    /// The value of cookie `name` (from every `Cookie` header), as sent.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .find_map(|h| super::form::cookie(h, name))
    }
    /// The request line, for logs (`GET /x HTTP/1.1`).
    pub fn request_line(&self) -> String {
        String::from_utf8_lossy(self.request_line_bytes()).into_owned()
    }
    /// The request line exactly as the client sent it, any bytes: for a
    /// request refused as malformed, the first line of what it sent, whole
    /// (at most 8 KiB), where `method` and `uri` show only its first words.
    pub fn request_line_bytes(&self) -> &[u8] {
        self.head.request_line()
    }

    /// Replace every header field `name` with one of `value` (Apache's
    /// `RequestHeader set`): every later hook, CGI and scripts see it.
    /// Refused, with why, for an invalid name or value and for the
    /// framing fields (`Content-Length`, `Transfer-Encoding`), which the
    /// server has already read the body by.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.edit_headers(name, Some(value), true)
    }

    /// Add a header field, keeping others of the same name.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        self.edit_headers(name, Some(value), false)
    }

    /// Remove every header field `name`.
    pub fn remove_header(&mut self, name: &str) -> Result<(), String> {
        if self.header_bytes(name).is_none() {
            return Ok(());
        }
        self.edit_headers(name, None, true)
    }

    fn edit_headers(
        &mut self,
        name: &str,
        value: Option<&str>,
        replace: bool,
    ) -> Result<(), String> {
        check_request_header(name, value.unwrap_or(""))?;
        let kept = self
            .headers()
            .filter(|(n, _)| !(replace && n.eq_ignore_ascii_case(name)));
        let added = value.map(|v| (name, v.as_bytes()));
        let edited = self
            .rebuilt(self.method(), self.uri(), kept.chain(added))
            .ok_or_else(|| format!("the request would not parse with this change to {name}"))?;
        *self = edited;
        Ok(())
    }

    /// This request with another method and target and these header
    /// fields, parsed and normalised again like a request from the wire
    /// (so nothing a plugin puts in can be read otherwise by a later
    /// hook); `None` if it does not parse or its path cannot be normalised.
    pub(crate) fn rebuilt<'a>(
        &self,
        method: &str,
        target: &str,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> Option<Request> {
        let mut raw = Vec::with_capacity(self.head.head_bytes().len() + target.len() + 64);
        raw.extend_from_slice(method.as_bytes());
        raw.push(b' ');
        raw.extend_from_slice(target.as_bytes());
        raw.push(b' ');
        raw.extend_from_slice(self.version().as_str().as_bytes());
        raw.extend_from_slice(b"\r\n");
        let mut count = 0;
        for (name, value) in headers {
            axkit_http::write_header(&mut raw, name, value);
            count += 1;
        }
        raw.extend_from_slice(b"\r\n");
        let limits = axkit_http::Limits {
            max_request_line: raw.len(),
            max_header_bytes: raw.len(),
            max_headers: count + 1,
        };
        let head =
            axkit_http::parse_request_head(&mut BytesMut::from(&raw[..]), &limits).ok()??;
        Request::new(head, self.started).ok()
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        SpareVecs::give(&FIELD_SPANS, self.head.take_field_spans());
    }
}

/// Why `name: value` may not be put into a request by a plugin, if so.
fn check_request_header(name: &str, value: &str) -> Result<(), String> {
    if !axkit_http::valid_header_name(name) {
        return Err(format!("invalid header name {name:?}"));
    }
    if !axkit_http::valid_header_value(value.as_bytes()) {
        return Err(format!(
            "invalid value for header {name}: control characters"
        ));
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(format!(
            "{name} cannot be changed: the request body is framed by it"
        ));
    }
    Ok(())
}

/// Response headers, in the order they will be sent. Names compare
/// case-insensitively. A name that is not a token, or a value with CR, LF,
/// NUL or another control character but HTAB, is refused when it is set
/// or added (the header is left out, so a plugin cannot split the
/// response); the head is then written without looking at them again.
/// A `&'static str` name or value is the plugin's own literal and is taken
/// as it is, as is a value checked when it was made or parsed from a head
/// ([`HeaderValue::checked`], [`HeaderValue::parsed`]).
#[derive(Debug, Default)]
pub struct Headers {
    list: Vec<(Cow<'static, str>, HeaderValue)>,
}

/// A response header's value: a literal, a string of its own, a string
/// shared with whatever made it once for many responses (an open file's
/// validators, a configured value), or a slice of bytes read for this
/// response (an upstream's head, passed on), which cost a reference count
/// where a copy would cost an allocation and a free on every response.
/// A shared string that was checked when it was made
/// ([`HeaderValue::checked`]), or a slice of a head checked when it was
/// taken ([`HeaderValue::parsed`]), is not checked again as it is set.
#[derive(Debug, Clone)]
pub enum HeaderValue {
    Static(&'static str),
    Owned(String),
    Shared(Arc<str>),
    Bytes(bytestring::ByteString),
    /// Made by [`HeaderValue::checked`].
    Checked(CheckedValue),
    /// Made by [`HeaderValue::parsed`].
    Parsed(ParsedValue),
}

/// A shared value found sendable once, when it was made (see
/// [`HeaderValue::checked`]); only this module makes one.
#[derive(Debug, Clone)]
pub struct CheckedValue(Arc<str>);

/// A value of a head, found sendable when it was made (see
/// [`HeaderValue::parsed`]); only this module makes one.
#[derive(Debug, Clone)]
pub struct ParsedValue(bytestring::ByteString);

impl HeaderValue {
    /// `value` checked now (no CR, LF, NUL or other control character but
    /// HTAB), for a value made once and set on many responses (a
    /// configured value, an open file's validators): setting it then costs
    /// a reference count and no second look at its bytes. An error (to
    /// report, say, as a config error) if it would be refused.
    pub fn checked(value: impl Into<Arc<str>>) -> Result<HeaderValue, String> {
        let value = value.into();
        match axkit_http::valid_header_value(value.as_bytes()) {
            true => Ok(HeaderValue::Checked(CheckedValue(value))),
            false => Err(format!(
                "not a header value (control characters): {value:?}"
            )),
        }
    }

    /// `value` as a parser of HTTP heads gave it: a slice of the head,
    /// passed on for a reference count instead of a copy (the proxy passes
    /// an upstream's values on so, through
    /// `axkit_client::Response::header_value`). Its bytes are checked here,
    /// once, eight at a time, so that setting it needs no second look. A
    /// value with a byte no parser should have accepted (CR, LF, NUL or
    /// another control character but HTAB) comes back as a `Bytes`, which
    /// setting refuses like any other such value: the name says where a
    /// value should come from, but a caller passing anything else cannot
    /// split a response with it.
    pub fn parsed(value: bytestring::ByteString) -> HeaderValue {
        match axkit_http::valid_header_value(value.as_bytes()) {
            true => HeaderValue::Parsed(ParsedValue(value)),
            false => HeaderValue::Bytes(value),
        }
    }

    /// Whether the value is sent without a look at its bytes: a plugin's
    /// literal, or one checked or parsed when it was made.
    #[inline(always)]
    fn vouched_for(&self) -> bool {
        matches!(
            self,
            HeaderValue::Static(_) | HeaderValue::Checked(_) | HeaderValue::Parsed(_)
        )
    }
}

impl std::ops::Deref for HeaderValue {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            HeaderValue::Static(s) => s,
            HeaderValue::Owned(s) => s,
            HeaderValue::Shared(s) => s,
            HeaderValue::Bytes(s) => s,
            HeaderValue::Checked(CheckedValue(s)) => s,
            HeaderValue::Parsed(ParsedValue(s)) => s,
        }
    }
}

impl From<&'static str> for HeaderValue {
    fn from(s: &'static str) -> Self {
        HeaderValue::Static(s)
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> Self {
        HeaderValue::Owned(s)
    }
}

impl From<Cow<'static, str>> for HeaderValue {
    fn from(s: Cow<'static, str>) -> Self {
        match s {
            Cow::Borrowed(s) => HeaderValue::Static(s),
            Cow::Owned(s) => HeaderValue::Owned(s),
        }
    }
}

impl From<Arc<str>> for HeaderValue {
    fn from(s: Arc<str>) -> Self {
        HeaderValue::Shared(s)
    }
}

impl From<&Arc<str>> for HeaderValue {
    fn from(s: &Arc<str>) -> Self {
        HeaderValue::Shared(s.clone())
    }
}

/// Whether a header may go on the wire as `name: value` (see [`Headers`]).
/// A plugin's literal name with a literal, checked or parsed value (what
/// a file's answer sets, an upstream's usual fields) is answered here,
/// inline, without the call for the rest.
#[inline(always)]
fn sendable(header: &(Cow<'static, str>, HeaderValue)) -> bool {
    (matches!(header.0, Cow::Borrowed(_)) && header.1.vouched_for()) || checked_sendable(header)
}

/// [`sendable`] for the rest: the bytes of a name or value made at run
/// time are checked.
fn checked_sendable((name, value): &(Cow<'static, str>, HeaderValue)) -> bool {
    let name_ok = match name {
        Cow::Borrowed(_) => true,
        Cow::Owned(name) => axkit_http::valid_header_name(name),
    };
    let value_ok = value.vouched_for() || axkit_http::valid_header_value(value.as_bytes());
    name_ok && value_ok
}

/// Room for a typical response's headers (Content-Type, validators,
/// Accept-Ranges, caching…) in one allocation.
const LIST_ROOM: usize = 8;

thread_local! {
    /// Emptied lists of finished responses, for the next ones (64 at
    /// most; a list that grew past twice the room is freed instead).
    static SPARE: SpareVecs<(Cow<'static, str>, HeaderValue)> =
        const { SpareVecs::new(64, 2 * LIST_ROOM) };
}

impl Drop for Headers {
    fn drop(&mut self) {
        SpareVecs::give(&SPARE, std::mem::take(&mut self.list));
    }
}

impl Headers {
    /// An empty list with [`LIST_ROOM`], a spare one if there is one.
    fn with_room() -> Headers {
        Headers {
            list: SpareVecs::take(&SPARE, LIST_ROOM),
        }
    }

    /// Replace every header of this name with one value (with none, if
    /// the name or value is refused).
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<HeaderValue>) {
        let name = name.into();
        if self.list.iter().any(|(n, _)| same_field(n, &name)) {
            self.remove(&name);
        }
        let header = (name, value.into());
        if sendable(&header) {
            self.list.push(header);
        }
    }
    /// Add a header, keeping others of the same name (Set-Cookie); a
    /// refused name or value adds nothing.
    pub fn add(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<HeaderValue>) {
        let header = (name.into(), value.into());
        if sendable(&header) {
            self.list.push(header);
        }
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(n, _)| same_field(n, name))
            .map(|(_, v)| v.as_ref())
    }
    pub fn remove(&mut self, name: &str) {
        self.list.retain(|(n, _)| !same_field(n, name));
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.list.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Keep only the fields named in `names`.
    pub(crate) fn retain_named(&mut self, names: &[&str]) {
        self.list
            .retain(|(n, _)| names.iter().any(|name| same_field(n, name)));
    }

    /// Add every field of `other` after these.
    pub(crate) fn append(&mut self, mut other: Headers) {
        self.list.append(&mut other.list);
    }
}

/// A file opened by the plugin that translated the URI. It may live in an
/// open-file cache and serve many requests, so what every response needs
/// is worked out once, when the file is opened: its validators as HTTP
/// sends them and, for small files, the contents.
#[derive(Debug)]
pub struct OpenFile {
    pub file: std::fs::File,
    pub metadata: std::fs::Metadata,
    /// The whole file, read when it was opened (see [`OpenFile::load`]).
    contents: Option<Bytes>,
    /// Made here of digits, dashes and quotes, and HTTP-dates: sendable
    /// by construction, so set on responses without a check.
    etag: CheckedValue,
    /// Whole seconds, and the same as an HTTP-date.
    last_modified: Option<(SystemTime, CheckedValue)>,
}

impl OpenFile {
    /// Wrap a file and the metadata of that open descriptor.
    pub fn new(file: std::fs::File, metadata: std::fs::Metadata) -> OpenFile {
        let etag = CheckedValue(etag(&metadata).into());
        let last_modified = last_modified(&metadata)
            .map(|t| (t, CheckedValue(axkit_http::fmt_http_date(t).into())));
        OpenFile {
            file,
            metadata,
            contents: None,
            etag,
            last_modified,
        }
    }

    /// Like [`OpenFile::new`], and when the file is at most `small` bytes
    /// long also read it whole, so that responses are sent from memory.
    /// This reads the disk: call it where blocking is fine (the blocking
    /// pool), never on the event loop.
    ///
    /// The contents are a snapshot that matches the metadata (and so the
    /// validators): the file is stat'ed again after the read and read anew
    /// if it changed meanwhile. A file that keeps changing is kept without
    /// contents, and is then sent with sendfile, which stops at a shrunken
    /// end.
    pub fn load(file: std::fs::File, metadata: std::fs::Metadata, small: u64) -> OpenFile {
        OpenFile::load_with(file, metadata, small, false).0
    }

    /// [`OpenFile::load`] for the event loop: the contents are read only
    /// from the page cache (`preadv2` with `RWF_NOWAIT`), never from the
    /// disk. `None` when that is not possible: load it on the blocking
    /// pool instead.
    pub fn load_nowait(
        file: std::fs::File,
        metadata: std::fs::Metadata,
        small: u64,
    ) -> Option<OpenFile> {
        let (open, waited) = OpenFile::load_with(file, metadata, small, true);
        (!waited).then_some(open)
    }

    /// The file, and whether (only with `nowait`) the read would have
    /// waited, leaving it without contents.
    fn load_with(
        file: std::fs::File,
        metadata: std::fs::Metadata,
        small: u64,
        nowait: bool,
    ) -> (OpenFile, bool) {
        use std::os::unix::fs::MetadataExt;
        let mut metadata = metadata;
        let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
            (
                a.ino(),
                a.size(),
                a.mtime(),
                a.mtime_nsec(),
                a.ctime(),
                a.ctime_nsec(),
            ) == (
                b.ino(),
                b.size(),
                b.mtime(),
                b.mtime_nsec(),
                b.ctime(),
                b.ctime_nsec(),
            )
        };
        for _ in 0..3 {
            if !metadata.is_file() || metadata.len() > small {
                break;
            }
            let read = read_exactly(&file, metadata.len(), nowait);
            if read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return (OpenFile::new(file, metadata), true);
            }
            let Ok(after) = file.metadata() else { break };
            match read {
                Ok(bytes) if same(&metadata, &after) => {
                    let mut open = OpenFile::new(file, after);
                    open.contents = Some(bytes);
                    return (open, false);
                }
                _ => metadata = after,
            }
        }
        (OpenFile::new(file, metadata), false)
    }

    /// The whole file, when it was read at open (small files).
    pub fn contents(&self) -> Option<&Bytes> {
        self.contents.as_ref()
    }

    /// A strong entity tag from inode, size and modification time (what
    /// Apache's `FileETag INode MTime Size` gives): any change to the
    /// file, or a different file put in its place, changes it.
    pub fn etag(&self) -> &Arc<str> {
        &self.etag.0
    }

    /// The modification time truncated to whole seconds, as HTTP dates
    /// carry it, and formatted as one.
    pub fn last_modified(&self) -> Option<(SystemTime, &Arc<str>)> {
        self.last_modified.as_ref().map(|(t, s)| (*t, &s.0))
    }

    /// [`etag`](Self::etag) as a header value that is set without being
    /// checked again (see [`HeaderValue::checked`]).
    pub fn etag_header(&self) -> HeaderValue {
        HeaderValue::Checked(self.etag.clone())
    }

    /// [`last_modified`](Self::last_modified)'s date as a header value
    /// that is set without being checked again.
    pub fn last_modified_header(&self) -> Option<HeaderValue> {
        let (_, date) = self.last_modified.as_ref()?;
        Some(HeaderValue::Checked(date.clone()))
    }
}

fn etag(md: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime_ns = (md.mtime() as i128) * 1_000_000_000 + md.mtime_nsec() as i128;
    format!("\"{:x}-{:x}-{:x}\"", md.ino(), md.size(), mtime_ns.max(0))
}

fn last_modified(md: &std::fs::Metadata) -> Option<SystemTime> {
    use std::time::{Duration, UNIX_EPOCH};
    let secs = md
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Exactly `len` bytes from the start of `file`; a file that ends sooner
/// is an `UnexpectedEof` error (never a short body under a longer
/// Content-Length). With `nowait`, only from the page cache: anything that
/// would need the disk (or a filesystem without `RWF_NOWAIT`) is a
/// `WouldBlock` error.
fn read_exactly(file: &std::fs::File, len: u64, nowait: bool) -> std::io::Result<Bytes> {
    use std::io::{Error, ErrorKind};
    use std::os::fd::AsRawFd;
    let len = usize::try_from(len).map_err(Error::other)?;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let rest = &mut buf[filled..];
        let iov = libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        };
        let flags = if nowait { libc::RWF_NOWAIT } else { 0 };
        // SAFETY: one iovec over a live buffer of that length; the file
        // is open for the duration of the call.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, filled as libc::off_t, flags) };
        match n {
            0 => return Err(ErrorKind::UnexpectedEof.into()),
            // Part of it is in the page cache, the rest is not.
            n if n > 0 && nowait && (n as usize) < rest.len() => {
                return Err(ErrorKind::WouldBlock.into())
            }
            n if n > 0 => filled += n as usize,
            _ => {
                let e = Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN | libc::EOPNOTSUPP) if nowait => {
                        return Err(ErrorKind::WouldBlock.into())
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(Bytes::from(buf))
}

/// A response body that the server sends after the `response` hook.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    Bytes(Bytes),
    /// `len` bytes of an open file from `offset`: sent with sendfile when no
    /// body filter is in the chain.
    File {
        file: std::fs::File,
        offset: u64,
        len: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The response being built.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Body,
}

impl Default for Response {
    fn default() -> Self {
        Response {
            status: 200,
            headers: Headers::with_room(),
            body: Body::Empty,
        }
    }
}

/// One outgoing body chunk on its way through `write_body_data` filters.
#[derive(Debug)]
pub struct BodyChunk {
    pub data: Bytes,
    /// This is the end of the body.
    pub last: bool,
}

/// The note that names the backend this request goes to: a plugin that
/// routes sets it in any hook before `response` (a Lua script with
/// `r:note("upstream", "pool-b")`) to the name of an upstream group or a
/// URL, and a proxying plugin sends the request there instead of its
/// configured default. A note, not an API of its own, so that Rust and
/// Lua plugins route alike.
pub const UPSTREAM_NOTE: &str = "upstream";

/// The note a plugin sets when it answers with a response it stored
/// earlier (a cache hit): that head went through the `before_head` hooks
/// when it was first made, and a plugin whose work there is not
/// idempotent (the `headers` plugin's `add`) leaves it alone, as Apache's
/// mod_headers does not run again on what mod_cache's quick handler
/// serves.
pub const STORED_RESPONSE_NOTE: &str = "response.stored";

/// A document on its way through the `xmlresponse` chain (AxKit's
/// pipeline): the plugin that produces it puts it in `ctx.document`, each
/// processor after it in the chain transforms it in place, and what is
/// left when the chain ends is the response body, unless a processor
/// wrote the response itself.
pub enum Document {
    /// Serialised text (XML, or whatever the processors agree on). Left at
    /// the end of the chain, it is sent with `Content-Type:
    /// application/xml; charset=utf-8` unless one is set.
    Text(Bytes),
    /// A parsed tree (a DOM, say), which processors of its kind take as
    /// it is, without serialising and parsing again. Left at the end of
    /// the chain it is serialised ([`Tree::to_text`]) and sent as text.
    Tree(Box<dyn Tree>),
}

/// A parsed document in the `xmlresponse` chain ([`Document::Tree`]):
/// `axkit_xml::Document` is one. A processor takes the kind it knows with
/// `tree.downcast::<T>()` and leaves others alone.
pub trait Tree: Any {
    /// The document as text, for when the chain ends with it (sent as
    /// `application/xml; charset=utf-8` unless a type is set); Err: why it
    /// cannot be, which makes the response a 500.
    fn to_text(&self) -> Result<Vec<u8>, String>;
}

impl dyn Tree {
    /// The tree as a `T`, or itself back when it is another kind.
    pub fn downcast<T: Tree>(self: Box<Self>) -> Result<Box<T>, Box<dyn Tree>> {
        if (&*self as &dyn Any).is::<T>() {
            let any: Box<dyn Any> = self;
            Ok(any.downcast().expect("checked just before"))
        } else {
            Err(self)
        }
    }

    /// The tree as a `T`, if it is one.
    pub fn downcast_ref<T: Tree>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref()
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Document::Text(t) => write!(f, "Document::Text({} bytes)", t.len()),
            Document::Tree(_) => f.write_str("Document::Tree"),
        }
    }
}

/// Why the error path was taken.
#[derive(Clone, Debug)]
pub struct Failure {
    pub plugin: String,
    pub hook: &'static str,
    pub message: String,
}

/// Why reading the request body failed: answer with `status` (400 framing,
/// 408 timeout, 413 too large) and close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError {
    pub status: u16,
    pub reason: &'static str,
}

impl From<BodyError> for Outcome {
    fn from(e: BodyError) -> Outcome {
        Outcome::Status(e.status)
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

/// Logs through the `logging` hooks of one request's chain, after the
/// request is over (see [`Context::logger`]).
pub struct Logger {
    route: LogRoute,
    peer: SocketAddr,
}

impl Logger {
    pub fn log(&self, level: Level, message: &str) {
        self.route.log(level, message, self.peer);
    }
}

/// What a request's plugins read once and share: the whole body, and the
/// form parsed from it.
#[derive(Default)]
struct Kept {
    body: Option<Bytes>,
    form: Option<Form>,
}

/// Work registered with [`Context::before_head`]: given the context, a
/// future that finishes it.
pub type BeforeHead =
    Box<dyn for<'a> FnOnce(&'a mut Context) -> Pin<Box<dyn Future<Output = ()> + 'a>>>;

/// Everything a hook sees of one request.
pub struct Context {
    pub request: Request,
    pub response: Response,
    pub conn: Rc<ConnInfo>,
    /// Resolved on first use (see [`Context::client`]).
    client: OnceCell<Client>,
    /// Set by `uri_translation`: the file the URI maps to (shared, not
    /// copied, with an open-file cache entry that found it)…
    pub filename: Option<Arc<Path>>,
    /// …and what is left of the path after it (decoded), as CGI's PATH_INFO.
    pub path_info: String,
    /// The file's metadata, when the translating plugin already looked.
    pub metadata: Option<std::fs::Metadata>,
    /// `filename` already opened (read-only) by the translating plugin,
    /// possibly shared with other requests through an open-file cache.
    pub file: Option<Rc<OpenFile>>,
    /// The root `filename` was resolved beneath, and how (set by
    /// `uri_to_file`, or by the plugin that named `filename`, as a Lua
    /// `r:set_filename`): every other file opened for this request goes
    /// through it (see [`DocRoot::for_file`]).
    pub doc_root: Option<DocRoot>,
    /// Set by `authentication`.
    pub user: Option<String>,
    pub auth_type: Option<String>,
    /// Strings shared between plugins (and scripts) for this request. Some
    /// names have a meaning every plugin agrees on: `redirect.uri` and
    /// `redirect.status` (set by the core on an internal redirect),
    /// [`UPSTREAM_NOTE`] and [`STORED_RESPONSE_NOTE`].
    pub notes: HashMap<String, String>,
    /// Set when the error path runs.
    pub failure: Option<Failure>,
    /// The document the `xmlresponse` chain passes along (see [`Document`]).
    pub document: Option<Document>,
    state: HashMap<TypeId, Box<dyn Any>>,
    /// The body as `read_body_all` read it, and the form parsed from it
    /// (one pointer, for the many requests that have neither).
    kept: Option<Box<Kept>>,
    /// See [`Context::before_head`]; kept across internal redirects.
    before_head: Vec<BeforeHead>,
    /// The `write_body_data` filters that stepped aside for this response
    /// ([`Context::skip_body_filter`]), by their place in the chain.
    skipped_filters: u64,
    /// The server's side of the request.
    pub(crate) rt: RequestRt,
}

impl Context {
    #[inline]
    pub(crate) fn new(request: Request, conn: Rc<ConnInfo>, rt: RequestRt) -> Context {
        Context {
            request,
            response: Response::default(),
            conn,
            client: OnceCell::new(),
            filename: None,
            path_info: String::new(),
            metadata: None,
            file: None,
            doc_root: None,
            user: None,
            auth_type: None,
            notes: HashMap::new(),
            failure: None,
            document: None,
            state: HashMap::new(),
            kept: None,
            before_head: Vec::new(),
            skipped_filters: 0,
            rt,
        }
    }

    /// Forget what the walk so far produced, before an internal redirect
    /// walks the new URI: only the request headers, notes and connection
    /// carry over; for the same request going on under another URI
    /// ([`internal_redirect_same_request`](Self::internal_redirect_same_request)),
    /// the body a hook read too, and who the user is is left to the new
    /// Location's authentication.
    pub(crate) fn reset_for_redirect(&mut self, same_request: bool) {
        self.response = Response::default();
        self.document = None;
        self.filename = None;
        self.path_info.clear();
        self.metadata = None;
        self.file = None;
        self.doc_root = None;
        self.failure = None;
        self.state.clear();
        if same_request {
            self.user = None;
            self.auth_type = None;
        } else {
            // `rt.moved` keeps only where the plugins took up their
            // `post_read_request` lines (`RequestRt::calls_so_far`).
            self.kept = None;
        }
        self.skipped_filters = 0;
        self.rt.head_hook_ran = false;
        self.rt.after_fixup = None;
    }

    /// Answer with `answer` once the access phases and `fixup` have run,
    /// unless a hook answers or refuses first (the later call wins): for
    /// an answer a hook before the access phases knows, that says
    /// something only a client the Location lets in may learn (a
    /// directory's slash redirect says the directory exists), and that a
    /// plugin answering in `fixup` (the cache's `PURGE`, a hit) overrides.
    /// The hook that calls it returns `Outcome::Ok` or `Declined` and the
    /// walk goes on. A plain function, not a closure: it costs a request
    /// that never calls it one test, and what `answer` needs is in `ctx`.
    pub fn answer_after_fixup(&mut self, answer: fn(&mut Context) -> Outcome) {
        self.rt.after_fixup = Some(answer);
    }

    /// Serve `uri` (a local path, with an optional query) instead of this
    /// request, once the current hook returns (return `Outcome::Done`): the
    /// core runs it as a fresh GET through the whole walk in the same
    /// `<Server>`, keeping the request headers and notes and dropping the
    /// request body. Notes `redirect.uri` and `redirect.status` tell the
    /// new walk where it came from. At most 10 hops, then 500.
    pub fn internal_redirect(&mut self, uri: &str) {
        self.rt.redirect_to(uri, None, false);
    }

    /// Like [`Context::internal_redirect`], but the final response carries
    /// `status` (an error page served with the original error's status),
    /// and the fields of the error response that still hold for the page
    /// go out with it: `WWW-Authenticate`, `Proxy-Authenticate`, `Allow`,
    /// `Content-Range`, `Retry-After`, and `Set-Cookie` below 500 (what
    /// Apache keeps in `err_headers_out`), whatever the page's own walk
    /// does.
    pub fn internal_redirect_with_status(&mut self, uri: &str, status: u16) {
        self.rt.redirect_to(uri, Some(status), false);
    }

    /// Go on with this very request as a request for `uri` (a local path,
    /// %-encoded, with its query), once the current hook returns
    /// `Outcome::Done`: the method, headers and body stay, and so do the
    /// notes and whatever an earlier internal redirect set (an error
    /// page's status); the `<Location>` is picked again for the new path
    /// and the walk starts over from `post_read_request` in it (a plugin
    /// whose `post_read_request` or `body_data` already ran for the
    /// request does not run again; one whose lines differ by Location
    /// takes up the new Location's in
    /// [`Plugin::post_read_request_handed_over`](crate::plugin::Plugin::post_read_request_handed_over)),
    /// with no user until its authentication says who. A body that `body_data` hooks read is
    /// not kept: when the new Location runs no `body_data` hook, or one
    /// that has not seen it, the hand-off is refused (500, logged)
    /// rather than the body lost. It is what a plugin does when the file
    /// it found has a URI of its own in another Location
    /// ([`in_same_location`](Self::in_same_location)): a directory's
    /// index, a typeless name, whose Location's rules must apply (nginx's
    /// index module redirects so). It counts toward the 10 internal
    /// redirects a request may make.
    pub fn internal_redirect_same_request(&mut self, uri: &str) {
        self.rt.redirect_to(uri, None, true);
    }

    /// Whether the path that `parts` make joined (decoded and normalised,
    /// as [`Request::decoded_path`] is) falls in this request's
    /// `<Location>`, as Location matching would pick it for a request of
    /// that path. A plugin that serves a file under another URI than the
    /// request's (`/dir/` + `index.html`) asks this, and when it does not,
    /// hands the request over to that URI with
    /// [`internal_redirect_same_request`](Self::internal_redirect_same_request).
    /// It allocates nothing, and with no `<Location>` in the Server it
    /// looks at nothing.
    pub fn in_same_location(&self, parts: &[&str]) -> bool {
        let server = self.server();
        if server.locations.len() == 1 {
            return true;
        }
        let node = server.location_for_parts(parts);
        Arc::ptr_eq(&node.config, &self.rt.location.config)
    }

    /// Go on with `uri` (a local path with an optional query) as the
    /// request's target, from `post_read_request` (a rewrite rule): the
    /// method, headers and body stay, the `<Location>` is picked again for
    /// the new path, and every later hook runs in it. The rest of this
    /// `post_read_request` chain runs in the first one, then the
    /// `post_read_request` hooks of the new Location's chain that have not
    /// run for the request (a plugin of both runs once: the one that
    /// rewrote sees to the new Location's lines itself, as `rewrite`'s
    /// rounds do; one called before it is called
    /// [`post_read_request_handed_over`](crate::plugin::Plugin::post_read_request_handed_over)
    /// there).
    /// [`original_request`](Self::original_request) keeps what the client
    /// sent, as CGI's `REQUEST_URI` does in Apache. Refused, with why, for
    /// a target that is not a path or whose path cannot be normalised
    /// (`..` above the root, an encoded NUL).
    pub fn rewrite_uri(&mut self, uri: &str) -> Result<(), String> {
        if !uri.starts_with('/') {
            return Err(format!("{uri:?} is not a local path"));
        }
        let request = self
            .request
            .rebuilt(self.request.method(), uri, self.request.headers())
            .ok_or_else(|| format!("{uri:?} is not a valid request target"))?;
        if self.rt.post_read_in().is_empty() {
            // The first Location the request leaves: its chain is the one
            // running (later ones are noted by the walk as it runs them).
            let here = self.rt.location.clone();
            self.rt.moved_mut().post_read_in.push(here);
        }
        self.rt.location = self.rt.worker.pick_location(self.rt.server, &request);
        let replaced = std::mem::replace(&mut self.request, request);
        self.rt.original.get_or_insert(Box::new(replaced));
        Ok(())
    }

    /// Run `GET target` (a local path with an optional query) through this
    /// `<Server>`'s walk in the background, detached from this request: the
    /// worker serves it on a connection of its own, made as this one's
    /// (same client address, listener, TLS and PROXY facts) and marked
    /// [`ConnInfo::background`], with `headers` as its request fields (the
    /// core writes `Host`, this request's, and the framing; it drops
    /// hop-by-hop fields). It runs every request hook, but no connection
    /// hook and no `response_sent` (no access log line: no client asked for
    /// it). Its response is read and dropped; the future ends with its
    /// status, or Err when it could not run (the worker is stopping or at
    /// `MaxConnections`). It borrows nothing: spawn it
    /// (`tokio::task::spawn_local`); until it is polled nothing happens.
    /// Err at once for a target that is not a local path or an invalid
    /// header field. What it is for: refreshing a cache
    /// (`stale-while-revalidate`), warming one.
    pub fn background_request<'h>(
        &self,
        target: &str,
        headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    ) -> Result<impl Future<Output = std::io::Result<u16>> + 'static, String> {
        crate::server::background::start(self, target, headers)
    }

    /// The request as the client sent it: `request` itself, or after an
    /// internal redirect (an ErrorDocument, say) the one that started it,
    /// which is what an access log records (Apache's `%r`).
    pub fn original_request(&self) -> &Request {
        self.rt.original().unwrap_or(&self.request)
    }

    /// The status this walk's response goes out with whatever it sets,
    /// when an internal redirect imposed one
    /// ([`Context::internal_redirect_with_status`]: an ErrorDocument's
    /// page, served with the error's status). Such a page is not the
    /// resource the client asked for: its validators and caching fields
    /// are not the resource's, and the request's conditionals and ranges
    /// are not for it (RFC 9110 §13.2.1: they apply only to a 2xx).
    pub fn imposed_status(&self) -> Option<u16> {
        self.rt.status_override
    }

    /// The merged configuration of the matched `<Location>` (or Server).
    pub fn config(&self) -> &LocationConfig {
        self.rt.config()
    }

    /// [`config`](Self::config) with the request and the response,
    /// borrowed apart: a hook that applies configured lines to them reads
    /// the lines where they are instead of copying them out first.
    pub fn config_and_messages(&mut self) -> (&LocationConfig, &mut Request, &mut Response) {
        (self.rt.config(), &mut self.request, &mut self.response)
    }

    /// The prefix of the matched `<Location>` (`/` for the Server itself).
    pub fn location_prefix(&self) -> &str {
        self.rt.prefix()
    }

    /// The `<Server>` that took this request.
    pub fn server(&self) -> &ServerConfig {
        self.rt.server_config()
    }

    /// The worker process serving this request: its place in the
    /// generation, and whether it is draining, so that a hook that waits
    /// for long (a server-sent event stream, a long poll) can end when a
    /// reload or shutdown begins instead of holding it up until
    /// `ShutdownTimeout` (`ctx.worker().stopping().await`).
    pub fn worker(&self) -> Worker {
        self.rt.worker.view()
    }

    /// Per-plugin typed state for this request.
    pub fn state<T: 'static>(&self) -> Option<&T> {
        self.state
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }
    pub fn state_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.state
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut())
    }
    pub fn set_state<T: 'static>(&mut self, value: T) {
        self.state.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// Run `f` just before the response head is committed, whichever way
    /// it goes out: a whole response, the first [`write`](Self::write) or
    /// [`write_file`](Self::write_file) of a streamed one, an error page,
    /// a `101` of [`upgrade`](Self::upgrade). It is for what must travel in
    /// the head but is known only at the end (a session's `Set-Cookie`,
    /// written once whatever the plugins did to the session), and may
    /// wait (on a store, say) and change `ctx.response`'s status and
    /// headers. The functions run once each, in the order registered,
    /// after the plugins' `before_head` hook (see
    /// [`Plugin::before_head`](crate::Plugin::before_head)) and before
    /// the `write_body_data` filters see the first chunk; one
    /// registered while they run runs too. They survive an internal
    /// redirect (the work was asked for by the same client request), and
    /// do not run for [`write_raw`](Self::write_raw), which sends no head
    /// of the server's, nor when registered after the head went out.
    ///
    /// ```no_run
    /// # fn hook(ctx: &mut axkit::Context) {
    /// ctx.before_head(|ctx| {
    ///     Box::pin(async move {
    ///         let took = ctx.request.start_time().elapsed().unwrap_or_default();
    ///         ctx.response.headers.set("Server-Timing", format!("app;dur={}", took.as_millis()));
    ///     })
    /// });
    /// # }
    /// ```
    pub fn before_head(
        &mut self,
        f: impl for<'a> FnOnce(&'a mut Context) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'static,
    ) {
        if !self.head_sent() {
            self.before_head.push(Box::new(f));
        }
    }

    /// Take the `write_body_data` filter of the plugin named `plugin` (as
    /// its `Plugin` line names it) out of this response: it will not see
    /// the body. A filter that knows before the body starts that it will
    /// not touch it (a compressor before an image, a range, a body already
    /// encoded) says so from its [`before_head`](Self::before_head) work,
    /// and when no filter is left in the chain a file body keeps sendfile
    /// instead of going through memory. Too late once the body has
    /// started (the filter has then seen part of it): ignored.
    pub fn skip_body_filter(&mut self, plugin: &str) {
        if self.rt.io.head_sent {
            return;
        }
        let chain = self.rt.location.chain(crate::plugin::Hook::WriteBodyData);
        for (i, (name, _, _)) in chain.iter().enumerate().take(64) {
            if &**name == plugin {
                self.skipped_filters |= 1 << i;
            }
        }
    }

    /// Whether the `write_body_data` filter at `index` of the chain
    /// stepped aside ([`skip_body_filter`](Self::skip_body_filter)).
    #[inline]
    pub(crate) fn body_filter_skipped(&self, index: usize) -> bool {
        index < 64 && self.skipped_filters & (1 << index) != 0
    }

    /// Whether any `write_body_data` filter of the chain will see the
    /// body: one test for the many chains that have none.
    #[inline]
    pub(crate) fn body_filtered(&self) -> bool {
        let n = self
            .rt
            .location
            .chain(crate::plugin::Hook::WriteBodyData)
            .len();
        n > 0 && (n > 64 || self.skipped_filters.count_ones() < n as u32)
    }

    /// Whether [`before_head`](Self::before_head) work is waiting (one
    /// test on the way to every head, for the requests that have none).
    #[inline]
    pub(crate) fn before_head_pending(&self) -> bool {
        !self.before_head.is_empty()
    }

    /// The head could not be made (work on it failed): instead of the
    /// half-made response, the built-in 500 page, which no filter sees
    /// (the work may have been a filter's own).
    pub(crate) fn fail_head(&mut self) {
        self.skipped_filters = u64::MAX;
        self.response = Response {
            status: 500,
            ..Response::default()
        };
        self.response
            .headers
            .set("Content-Type", "text/html; charset=utf-8");
        self.response.body = Body::Bytes(super::default_error_page(500, None).into());
    }

    /// Run what [`before_head`](Self::before_head) registered (the core,
    /// as it commits the head). A panic in it, as in a hook, costs the
    /// response and never the worker: the rest of the work is dropped, and
    /// the panic's message is the error.
    pub(crate) async fn run_before_head(&mut self) -> Result<(), String> {
        while !self.before_head.is_empty() {
            let f = self.before_head.remove(0);
            let done = match crate::server::catching(|| f(self)) {
                Ok(work) => work.await,
                Err(message) => Err(message),
            };
            if done.is_err() {
                self.before_head.clear();
                return done;
            }
        }
        Ok(())
    }

    /// Who sent this request and how they addressed it: behind front
    /// proxies listed in `TrustedProxy`, what they said (see [`Client`]);
    /// otherwise the connection's peer. Resolved on first use, once per
    /// request: what logs, CGI, scripts and access control all use.
    pub fn client(&self) -> &Client {
        self.client
            .get_or_init(|| super::client::resolve(&self.conn, &self.request, self.rt.trust()))
    }

    /// The host the client asked for, without its port: a trusted proxy's
    /// word, else the request's own (see [`Request::host`]).
    pub fn host(&self) -> Option<&str> {
        match &self.client().host {
            Some(host) => Some(axkit_http::strip_port(host)),
            None => self.request.host(),
        }
    }

    /// The host and port the client asked for (`example.com:8443`): a
    /// trusted proxy's word, else the request's Host as sent.
    pub fn authority(&self) -> Option<&str> {
        match &self.client().host {
            Some(host) => Some(host),
            None => self.request.header("Host").filter(|h| !h.is_empty()),
        }
    }

    /// Say that this request now waits for something to send (a long
    /// poll, an event stream) rather than working: the metrics count its
    /// connection as `waiting` instead of `handler` until the response
    /// ends.
    pub fn set_waiting(&mut self) {
        self.rt.io.track.set(super::metrics::ConnState::Waiting);
    }

    /// Say that this request's response is a long-lived wait or stream
    /// that its client resumes by itself once it ends: an event stream
    /// (`EventSource` reconnects, sending `Last-Event-ID`), a long poll
    /// (the client polls again). A worker at `MaxConnections` that finds
    /// no idle connection to close asks the oldest such request to end,
    /// to make room for a new client: the returned [`Reclaim`] says so,
    /// and the handler then ends its response as it would on a drain (an
    /// event stream ends; a long poll answers as on its timeout). The
    /// connection closes after that response. Never for a response that
    /// loses data when cut short (a download, a tunnel). Marking costs a
    /// place in the worker's list until the request ends; calling it again
    /// returns the same mark. `axkit-sse` marks its streams and long polls.
    pub fn set_reclaimable(&mut self) -> Reclaim {
        if let Some(listed) = self.state::<Listed>() {
            return listed.reclaim.clone();
        }
        let listed = Listed::new(&self.rt.worker);
        let reclaim = listed.reclaim.clone();
        self.set_state(listed);
        // An answer made after the request was asked to end (a long
        // poll's) says that the connection closes; `finish_stream` sees
        // to a stream whose head went out before.
        let asked = reclaim.clone();
        self.before_head(move |ctx| {
            Box::pin(async move {
                if asked.is_asked() {
                    ctx.rt.io.close = true;
                }
            })
        });
        reclaim
    }

    /// The mark [`set_reclaimable`](Self::set_reclaimable) put on this
    /// request, if any: what a wait on its behalf watches.
    pub fn reclaim(&self) -> Option<&Reclaim> {
        self.state::<Listed>().map(|listed| &listed.reclaim)
    }

    /// Log through the `logging` hooks of this request's chain.
    pub fn log(&self, level: Level, message: &str) {
        self.rt.log(level, message, self.client().addr);
    }

    /// Say why this request is answered `status` (a 403, 404 or 405: what
    /// was looked for and why it failed), at level info, as
    /// `PEER REQUEST-LINE: STATUS: WHY`. `why` is only formatted when
    /// `LogLevel` writes info lines, so a flood of 404s costs nothing
    /// under the default (warn). Paths in it are best quoted with `{:?}`,
    /// which escapes what a client may have put in them.
    ///
    /// ```no_run
    /// # fn hook(ctx: &axkit::Context, path: &std::path::Path, e: std::io::Error) {
    /// ctx.log_reason(403, format_args!("open({path:?}) failed: {e}"));
    /// # }
    /// ```
    pub fn log_reason(&self, status: u16, why: std::fmt::Arguments<'_>) {
        if self.rt.worker.log_level() < Level::Info {
            return;
        }
        self.log_request(Level::Info, format_args!("{status}: {why}"));
    }

    /// A line about this request as the core's own 5xx lines have it:
    /// `CLIENT REQUEST-LINE: MESSAGE`, the client being the resolved one
    /// ([`Context::client`]: behind a `TrustedProxy`, the address it
    /// forwarded for, not the proxy's).
    pub fn log_request(&self, level: Level, message: std::fmt::Arguments<'_>) {
        let line = format!(
            "{} {}: {message}",
            self.client().addr_text(),
            self.request.request_line()
        );
        self.log(level, &line);
    }

    /// A handle that logs as [`Context::log`] does, for work a plugin
    /// finishes in a task of its own after the request is over (reaping a
    /// CGI process and logging what it still says).
    pub fn logger(&self) -> Logger {
        Logger {
            route: self.rt.log_route(),
            peer: self.client().addr,
        }
    }

    /// Whether the response head has gone out (headers can no longer change).
    pub fn head_sent(&self) -> bool {
        self.rt.head_sent()
    }

    /// Bytes of response body written so far.
    pub fn body_bytes_sent(&self) -> u64 {
        self.rt.body_bytes_sent()
    }

    /// The next piece of the request body, or `None` at its end. The first
    /// call answers `Expect: 100-continue`. On error the connection will be
    /// closed after the response; return the error as the hook's outcome.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>, BodyError> {
        response::read_body(self).await
    }

    /// The whole request body (bounded by MaxRequestBody), or what is left
    /// of it after [`read_body`](Self::read_body) calls. Kept: later calls,
    /// by any plugin of the request, and [`read_form`](Self::read_form) get
    /// the same bytes.
    pub async fn read_body_all(&mut self) -> Result<Bytes, BodyError> {
        if let Some(body) = self.kept.as_ref().and_then(|k| k.body.clone()) {
            return Ok(body);
        }
        let mut all = BytesMut::new();
        while let Some(chunk) = self.read_body().await? {
            all.extend_from_slice(&chunk);
        }
        let body = all.freeze();
        self.kept.get_or_insert_default().body = Some(body.clone());
        Ok(body)
    }

    /// The request body parsed as a form (`multipart/form-data` by its
    /// `Content-Type`, else `application/x-www-form-urlencoded`), read
    /// whole with [`read_body_all`](Self::read_body_all) and parsed on the
    /// first call; later calls, by any plugin of the request (a Lua
    /// script's `r:form` too), get the same form. File fields stay in
    /// memory unless saved with [`Form::save_uploads`]; saved ones are
    /// removed when the request ends. A body that cannot be read, or a
    /// malformed multipart body (logged at level info), is an error to
    /// return as the hook's outcome (400, 408 or 413).
    pub async fn read_form(&mut self) -> Result<&mut Form, FormError> {
        if self.form().is_none() {
            let body = self.read_body_all().await?;
            let content_type = self.request.header("Content-Type");
            let form = Form::parse(content_type, body).inspect_err(|e| {
                self.log(Level::Info, &e.reason);
            })?;
            self.kept.get_or_insert_default().form = Some(form);
        }
        Ok(self
            .kept
            .as_mut()
            .and_then(|k| k.form.as_mut())
            .expect("parsed above"))
    }

    /// The form [`read_form`](Self::read_form) parsed, if it was called.
    pub fn form(&self) -> Option<&Form> {
        self.kept.as_ref()?.form.as_ref()
    }

    /// Stream a piece of the response body. The first call sends the head
    /// (from `ctx.response`) with its piece, in one write: with the
    /// Content-Length the plugin set, or chunked ([`flush`](Self::flush)
    /// sends the head alone, before any piece). Waits while the client is
    /// slow (backpressure).
    pub async fn write(&mut self, data: impl Into<Bytes>) -> std::io::Result<()> {
        response::write(self, data.into()).await
    }

    /// Send the head now, where [`write`](Self::write) holds it back to
    /// leave in one write with the first piece of body: for a response
    /// whose body is slow to come (an upstream that has sent its head and
    /// thinks, an event stream), so that the client sees the head at once.
    /// The first call to `write` or `flush` commits to the head.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        response::flush(self).await
    }

    /// Stream `len` bytes of `file` from `offset` as the next piece of the
    /// response body, like [`Context::write`] (the first call sends the
    /// head). Without body filters the bytes go out with sendfile, capped
    /// per call, the head or chunk size held back with MSG_MORE to leave in
    /// the same segment; filters see bytes, so then the file goes through
    /// memory, 64 KiB at a time, read on the blocking pool (never on the
    /// event loop). A file that ends early is an `UnexpectedEof` error and
    /// the connection will close: nothing past the new end is ever sent.
    pub async fn write_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> std::io::Result<()> {
        response::write_file(self, file, offset, len).await
    }

    /// Send bytes exactly as given: no head is generated and nothing is
    /// framed or filtered, because the caller writes the whole response,
    /// status line included (an `nph-` CGI script). Only the sender knows
    /// where such a body ends, so the connection closes after it.
    pub async fn write_raw(&mut self, data: &[u8]) -> std::io::Result<()> {
        response::write_raw(self, data).await
    }

    /// Take the connection over for another protocol after an `Upgrade`
    /// request (a WebSocket, a tunnel): sends `101 Switching Protocols`
    /// with `Connection: Upgrade`, `Upgrade: protocol` and the headers set
    /// in `ctx.response.headers` (`Sec-WebSocket-Accept`, say), then hands
    /// over the connection to read and write as a byte stream for as long
    /// as the hook likes (a slow or idle tunnel suspends only this hook).
    /// When the hook returns, the server closes the connection and writes
    /// nothing more on it; `response_sent` hooks see status 101.
    ///
    /// Fails, leaving the response to be made as usual, when the response
    /// has started, the request has a body, or it did not ask to upgrade
    /// (HTTP/1.1 with `Connection: upgrade` and `Upgrade`): which protocols
    /// to accept is the plugin's choice (426 for the others).
    pub async fn upgrade(&mut self, protocol: &str) -> std::io::Result<Upgraded<'_>> {
        response::upgrade(self, protocol).await
    }

    /// Resolves when the client closes its connection (or it fails), so
    /// that a handler waiting on slow work can give up. Call it once the
    /// request body has been read: it stays pending when the client has
    /// sent more bytes (a pipelined request says nothing about leaving).
    pub async fn client_closed(&self) {
        response::client_closed(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Request {
        let head = axkit_http::parse_request_head(&mut BytesMut::from(raw), &Default::default())
            .unwrap()
            .unwrap();
        Request::new(head, SystemTime::UNIX_EPOCH).unwrap()
    }

    /// Response headers that could split the response are refused as
    /// they are set or added, whatever kind of value carries them; a
    /// refused `set` still removes the old value.
    #[test]
    fn response_headers_refuse_names_and_values_that_could_split_a_response() {
        let mut h = Headers::default();
        h.set("X-Kept", String::from("a\tb \u{e9}, and more"));
        h.set("X-Gone", "ok");
        h.set("X-Gone", String::from("a\r\nInjected: 1"));
        h.add("X-Shared", Arc::<str>::from("x\ny"));
        h.add("X-Nul", String::from("a\0b"));
        h.add("X-Del", String::from("abcdefgh\x7f"));
        h.add(String::from("Bad Name"), "v");
        h.add(String::from("Bad:Name"), "v");
        h.add(
            String::from("x-owned-name"),
            Arc::<str>::from("fine, long enough"),
        );
        // A "parsed" value is checked as it is made, whoever made it.
        h.add(
            "X-Parsed-Bad",
            HeaderValue::parsed("a\r\nInjected: 1".into()),
        );
        h.add("X-Parsed", HeaderValue::parsed("from a head, fine".into()));
        let all: Vec<_> = h.iter().collect();
        assert_eq!(
            all,
            [
                ("X-Kept", "a\tb \u{e9}, and more"),
                ("x-owned-name", "fine, long enough"),
                ("X-Parsed", "from a head, fine")
            ]
        );
        assert_eq!(h.get("x-kept"), Some("a\tb \u{e9}, and more"));
        assert_eq!(h.get("X-OWNED-NAME"), Some("fine, long enough"));
        assert_eq!(h.get("X-Gone"), None);
    }

    #[test]
    fn header_edits_keep_the_rest_and_refuse_what_would_mislead() {
        let mut r = request(
            "POST /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\n",
        );
        r.add_header("X-B", "b").unwrap();
        r.set_header("X-A", "only").unwrap();
        r.remove_header("X-Missing").unwrap();
        // HTTP/1.1 needs a Host: refused, the request unchanged.
        let refused = r.remove_header("Host").unwrap_err();
        assert_eq!(
            refused,
            "the request would not parse with this change to Host"
        );
        let all: Vec<_> = r
            .headers()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        assert_eq!(
            all,
            [
                ("Host".to_string(), b"h".to_vec()),
                ("Content-Length".to_string(), b"3".to_vec()),
                ("X-B".to_string(), b"b".to_vec()),
                ("X-A".to_string(), b"only".to_vec()),
            ]
        );
        assert_eq!(
            (r.method(), r.uri(), r.decoded_path()),
            ("POST", "/a%20b?x=1", "/a b")
        );
        assert!(r.set_header("X-C", "a\r\nX-D: 1").is_err());
        assert!(r.set_header("X C", "1").is_err());
        assert!(r.set_header("content-length", "9").is_err());
        assert!(r.remove_header("Transfer-Encoding").is_ok()); // absent: nothing to do
        assert!(r.add_header("Transfer-Encoding", "chunked").is_err());
        assert_eq!(r.header("content-length"), Some("3"));
    }
}
