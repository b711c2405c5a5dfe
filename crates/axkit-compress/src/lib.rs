//! `compress`: gzip, brotli and zstd on the fly (hook `write_body_data`),
//! for every response of the scopes it is loaded in, whoever produced it
//! (files, CGI, Lua, a proxy). Its own crate for the weight of its codecs.
//!
//! Directives (global, Server or Location; the innermost wins):
//! - `Compress on|off` (default on): compress here.
//! - `CompressPrefer CODING…` (default `br zstd gzip`): the codings used,
//!   most preferred first. The client's `Accept-Encoding` weights decide
//!   (`q=0` refuses a coding, `*` stands for those it does not name, a
//!   coding weighted below `identity` is not used); among equal weights
//!   the earlier coding here wins. A coding not listed is never used.
//! - `CompressLevel gzip=N br=N zstd=N` (default `gzip=6 br=4 zstd=3`;
//!   any of the three): gzip 1–9, brotli 0–11, zstd 1–19.
//! - `CompressTypes TYPE…`: the media types compressed (`type/subtype` or
//!   `type/*`), replacing the default list of text, script, JSON, XML,
//!   SVG and font types. `text/event-stream` is not in it: an event stream
//!   gains little and each event would pay a flush.
//! - `CompressMinLength SIZE` (default 256): a body known to be shorter
//!   is sent as it is. A streamed body of unknown length is compressed.
//!
//! ```text
//! Plugin compress
//! <Server>
//!     CompressLevel gzip=5
//!     <Location /downloads>
//!         Compress off
//!     </Location>
//! </Server>
//! ```
//!
//! What is never compressed: a response with a `Content-Encoding` (a
//! precompressed sibling from `serve_file`'s `Precompressed`, a CGI that
//! encoded its output, a proxied encoded body), a `206` or anything with a
//! `Content-Range`, `1xx`/`204`/`205`/`304` (a `205` has no content, RFC
//! 9110 §15.3.6: compressing its empty body would give it some),
//! `Cache-Control: no-transform` (on any line of either field).
//! Such a response (and one of a type not listed, or known to be short)
//! takes the filter out of its way before the body starts
//! (`Context::skip_body_filter`), so that a file keeps sendfile.
//!
//! What a compressed response carries: `Content-Encoding`,
//! `Vary: Accept-Encoding` (merged into a `Vary` already there; also on
//! the uncompressed answers to clients that accept no coding, since the
//! choice depended on the field), no `Content-Length` (chunked, or the
//! compressed length for a body compressed whole), no `Accept-Ranges`
//! (ranges address the identity bytes), and a strong `ETag` made weak, as
//! nginx does: the weak tag still matches the file's strong one under
//! `If-None-Match`'s weak comparison, so revalidation still gives `304`,
//! and that `304` carries the weak tag back when the client's copy had it.
//! A `304` carries `Vary: Accept-Encoding` whenever its `200` would.
//!
//! `HEAD` answers with the headers a `GET` would have (RFC 9110 §9.3.2):
//! a body the filter sees whole is compressed for its `Content-Length`; a
//! streamed one is not compressed at all, as nothing of it is sent.
//!
//! Streaming: each chunk is compressed as it comes and flushed (gzip's
//! sync flush, brotli's and zstd's flush) so that what the producer wrote
//! reaches the client now: a CGI or Lua stream stays live, and memory is
//! the codec's window and one chunk's output, never the whole body. A body
//! seen whole in one call is compressed in one go.

use std::io::{self, Write};
use std::rc::Rc;

use axkit::config::{parse, Args, Directive, Key};
use axkit::plugin::{
    Body, BodyChunk, Context, Headers, HookFuture, Outcome, Plugin, PluginInit, PluginSpec,
};
use bytes::Bytes;

/// `Plugin compress`.
pub const COMPRESS: PluginSpec = PluginSpec {
    name: "compress",
    directives,
    create,
};

static ENABLED: Key<bool> = Key::new("Compress")
    .default("on")
    .doc("Compress responses here (gzip, brotli, zstd by Accept-Encoding)");

static PREFER: Key<Vec<Coding>> = Key::parsed("CompressPrefer", parse_prefer)
    .args(Args::Range(1, 3))
    .default("br zstd gzip")
    .doc("The codings used, most preferred first (br, zstd, gzip)");

static LEVELS: Key<Levels> = Key::parsed("CompressLevel", parse_levels)
    .args(Args::Range(1, 3))
    .default("gzip=6 br=4 zstd=3")
    .doc("Compression levels: gzip=1-9 br=0-11 zstd=1-19");

static TYPES: Key<Vec<MediaRange>> = Key::parsed("CompressTypes", parse_types)
    .args(Args::Many)
    .default(
        "text/html text/css text/plain text/xml text/javascript text/markdown text/csv \
         application/javascript application/json application/ld+json application/manifest+json \
         application/xml application/xhtml+xml application/rss+xml application/atom+xml \
         application/wasm image/svg+xml image/x-icon font/ttf font/otf",
    )
    .doc("Media types compressed (type/subtype or type/*)");

static MIN_LENGTH: Key<u64> = Key::new("CompressMinLength")
    .default("256")
    .doc("Bodies known to be shorter are sent uncompressed");

fn directives() -> Vec<Directive> {
    vec![
        ENABLED.declare(),
        PREFER.declare(),
        LEVELS.declare(),
        TYPES.declare(),
        MIN_LENGTH.declare(),
    ]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(Compress))
}

/// A content coding this plugin produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Br,
    Zstd,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }
}

fn parse_prefer(args: &[&str]) -> Result<Vec<Coding>, String> {
    let mut codings = Vec::new();
    for arg in args {
        let coding = [Coding::Br, Coding::Zstd, Coding::Gzip]
            .into_iter()
            .find(|c| arg.eq_ignore_ascii_case(c.token()))
            .ok_or_else(|| format!("unknown coding {arg:?}: expected br, zstd or gzip"))?;
        if codings.contains(&coding) {
            return Err(format!("{arg} is listed twice"));
        }
        codings.push(coding);
    }
    Ok(codings)
}

/// `CompressLevel`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Levels {
    gzip: u32,
    br: u32,
    zstd: i32,
}

fn parse_levels(args: &[&str]) -> Result<Levels, String> {
    let mut levels = Levels {
        gzip: 6,
        br: 4,
        zstd: 3,
    };
    for arg in args {
        let usage = || format!("expected CODING=LEVEL (gzip=1-9, br=0-11, zstd=1-19), got {arg:?}");
        let (coding, level) = arg.split_once('=').ok_or_else(usage)?;
        let level = parse::integer(level).map_err(|_| usage())?;
        let in_range = |lo: i64, hi: i64| {
            (lo..=hi)
                .contains(&level)
                .then_some(level)
                .ok_or_else(usage)
        };
        match coding.to_ascii_lowercase().as_str() {
            "gzip" => levels.gzip = in_range(1, 9)? as u32,
            "br" => levels.br = in_range(0, 11)? as u32,
            "zstd" => levels.zstd = in_range(1, 19)? as i32,
            _ => return Err(usage()),
        }
    }
    Ok(levels)
}

/// One `CompressTypes` entry, lower case: `type/subtype`, or `type/` for
/// `type/*`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MediaRange(String);

impl MediaRange {
    fn matches(&self, essence: &str) -> bool {
        if self.0.ends_with('/') {
            // Bytes, not a `str` slice: a producer's type may hold a
            // multibyte character where the prefix ends.
            let (range, essence) = (self.0.as_bytes(), essence.as_bytes());
            essence.len() > range.len() && essence[..range.len()].eq_ignore_ascii_case(range)
        } else {
            essence.eq_ignore_ascii_case(&self.0)
        }
    }
}

fn parse_types(args: &[&str]) -> Result<Vec<MediaRange>, String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    args.iter()
        .map(|arg| match arg.split_once('/') {
            Some((t, "*")) if token(t) => Ok(MediaRange(format!("{}/", t.to_ascii_lowercase()))),
            Some((t, s)) if token(t) && token(s) => Ok(MediaRange(arg.to_ascii_lowercase())),
            _ => Err(format!(
                "expected a media type like text/html or text/*, got {arg:?}"
            )),
        })
        .collect()
}

/// The coding to send, by the client's weights, then by `prefer`: none
/// when it accepts none of them, or weighs each below `identity`.
fn negotiate(accept: &str, prefer: &[Coding]) -> Option<Coding> {
    let identity = axkit_http::coding_quality(accept, "identity").unwrap_or(0);
    let mut best: Option<(Coding, u16)> = None;
    for &coding in prefer {
        let Some(q) = axkit_http::coding_quality(accept, coding.token()) else {
            continue;
        };
        if q > 0 && q >= identity && best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(coding, _)| coding)
}

/// Every `Accept-Encoding` line of the request, joined.
fn accept_encoding(ctx: &Context) -> Option<String> {
    let mut joined: Option<String> = None;
    for (name, value) in ctx.request.headers() {
        if !name.eq_ignore_ascii_case("accept-encoding") {
            continue;
        }
        let value = String::from_utf8_lossy(value);
        match &mut joined {
            Some(all) => {
                all.push(',');
                all.push_str(&value);
            }
            None => joined = Some(value.into_owned()),
        }
    }
    joined
}

/// Add `Accept-Encoding` to `Vary` unless it is there (or `*`).
fn vary_accept_encoding(headers: &mut Headers) {
    let present: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        .map(|(_, v)| v)
        .collect();
    let covered = present.iter().flat_map(|v| v.split(',')).any(|t| {
        let t = t.trim();
        t == "*" || t.eq_ignore_ascii_case("accept-encoding")
    });
    if covered {
        return;
    }
    let value = if present.is_empty() {
        "Accept-Encoding".to_string()
    } else {
        format!("{}, Accept-Encoding", present.join(", "))
    };
    headers.set("Vary", value);
}

/// A strong `ETag` made weak: the compressed bytes are not the bytes it
/// was made for.
fn weaken_etag(headers: &mut Headers) {
    if let Some(tag) = headers.get("ETag").filter(|t| t.starts_with('"')) {
        let weak = format!("W/{tag}");
        headers.set("ETag", weak);
    }
}

/// One response's compression, kept in the request's state from the
/// first chunk on.
enum State {
    /// Sent as it is.
    Pass,
    /// A `HEAD` with a streamed body: headers as for a `GET`, no work.
    HeadOnly,
    Encoding(Box<Encoder>),
    Finished,
}

struct Compress;

#[axkit::plugin]
impl Plugin for Compress {
    /// Just before the head goes out, with the response built: a `304`
    /// (which has no body, so the filter never sees it) gets the `Vary`
    /// and tag its `200` would have had; and a response this filter will
    /// not touch (an image, a range, a body already encoded, too short)
    /// takes the filter out of its way (`Context::skip_body_filter`), so
    /// that a file keeps sendfile.
    fn fixup<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if !*ctx.config().get(&ENABLED) {
            return Outcome::Declined.into();
        }
        // The type is judged now, while the mime map's Content-Type is
        // there: a 304 goes out without one (serve_file drops it).
        let conditional = ctx.request.headers().any(|(n, _)| {
            n.eq_ignore_ascii_case("if-none-match") || n.eq_ignore_ascii_case("if-modified-since")
        });
        let listed = conditional && listed_type(ctx);
        ctx.before_head(move |ctx| {
            Box::pin(async move {
                if ctx.response.status == 304 {
                    answer_not_modified(ctx, listed);
                }
                if untouched(ctx, None) {
                    ctx.skip_body_filter(COMPRESS.name);
                }
            })
        });
        Outcome::Declined.into()
    }

    fn write_body_data<'a>(
        &'a self,
        ctx: &'a mut Context,
        chunk: &'a mut BodyChunk,
    ) -> HookFuture<'a> {
        if ctx.state::<State>().is_none() {
            let state = decide(ctx, chunk);
            ctx.set_state(state);
        }
        let Some(state) = ctx.state_mut::<State>() else {
            return Outcome::Declined.into();
        };
        let result = match state {
            State::Pass | State::Finished => return Outcome::Declined.into(),
            State::HeadOnly => {
                chunk.data = Bytes::new();
                return Outcome::Ok.into();
            }
            State::Encoding(_) if chunk.last => match std::mem::replace(state, State::Finished) {
                State::Encoding(encoder) => encoder.finish(&chunk.data),
                _ => unreachable!("matched as Encoding"),
            },
            State::Encoding(encoder) => encoder.push(&chunk.data),
        };
        match result {
            Ok(data) => {
                chunk.data = Bytes::from(data);
                Outcome::Ok.into()
            }
            Err(e) => Outcome::Error(format!("compressing the response: {e}")).into(),
        }
    }
}

/// Whether this response goes out as it is whatever the client accepts:
/// compression off here, a status without a body to compress, a range, a
/// body already encoded or marked `no-transform`, a type not listed, or a
/// length known (from the header, `known`, or a whole body) to be short.
fn untouched(ctx: &Context, known: Option<u64>) -> bool {
    let config = ctx.config();
    if !*config.get(&ENABLED) || ctx.head_sent() {
        return true;
    }
    let status = ctx.response.status;
    let headers = &ctx.response.headers;
    if status < 200 || matches!(status, 204 | 205 | 206 | 304) {
        return true;
    }
    if headers.get("Content-Range").is_some() || transform_ruled_out(headers) {
        return true;
    }
    if !listed_type(ctx) {
        return true;
    }
    let known = known.or_else(|| {
        declared_length(headers).or(match &ctx.response.body {
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File { len, .. } => Some(*len),
            Body::Empty => None,
        })
    });
    known.is_some_and(|n| n < *config.get(&MIN_LENGTH))
}

/// Whether the headers forbid compressing: a coding already applied, or
/// `no-transform`. Every field line counts: a second line is as much a
/// part of the field as the first (RFC 9110 §5.3).
fn transform_ruled_out(headers: &Headers) -> bool {
    let tokens = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    tokens("Content-Encoding").any(|e| !e.eq_ignore_ascii_case("identity"))
        || tokens("Cache-Control").any(|d| d.eq_ignore_ascii_case("no-transform"))
}

/// Whether the response's `Content-Type` is one `CompressTypes` lists.
fn listed_type(ctx: &Context) -> bool {
    let essence = ctx
        .response
        .headers
        .get("Content-Type")
        .and_then(|t| t.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    ctx.config().get(&TYPES).iter().any(|r| r.matches(essence))
}

/// The body's length as its `Content-Length` says.
fn declared_length(headers: &Headers) -> Option<u64> {
    headers
        .get("Content-Length")
        .and_then(|v| axkit_http::parse_content_length(v.as_bytes()))
}

/// On the response's first chunk, while the head can change: whether and
/// how to compress it, with the headers that go with the answer.
///
/// The headers are set here, as the bytes start to change, and not in
/// `before_head`: a filter after this one in the chain (the cache)
/// takes the head together with the bytes it sees, so the coding's
/// headers must be there once this filter has compressed a chunk, and
/// not yet for a filter ahead of it, which still sees identity bytes.
fn decide(ctx: &mut Context, chunk: &BodyChunk) -> State {
    let whole = chunk.last.then_some(chunk.data.len() as u64);
    if untouched(ctx, whole) {
        return State::Pass;
    }
    let config = ctx.config();
    // From here the answer depends on Accept-Encoding, whichever it is.
    let prefer = config.get(&PREFER).clone();
    let levels = *config.get(&LEVELS);
    vary_accept_encoding(&mut ctx.response.headers);
    let Some(coding) = accept_encoding(ctx).and_then(|a| negotiate(&a, &prefer)) else {
        return State::Pass;
    };
    let headers = &mut ctx.response.headers;
    headers.set("Content-Encoding", coding.token());
    headers.remove("Content-Length");
    headers.remove("Accept-Ranges");
    weaken_etag(headers);
    if ctx.request.method() == "HEAD" && !chunk.last {
        return State::HeadOnly;
    }
    // zstd is promised the length only of a body seen whole: a
    // Content-Length may be stale, as a filter ahead of this one may have
    // changed the body, and a broken promise fails the stream.
    match Encoder::new(coding, levels, whole) {
        Ok(encoder) => State::Encoding(Box::new(encoder)),
        Err(e) => {
            // Nothing is sent yet: undo, and send it as it is.
            let headers = &mut ctx.response.headers;
            headers.remove("Content-Encoding");
            ctx.log(
                axkit::Level::Error,
                &format!("compress: cannot start {}: {e}", coding.token()),
            );
            State::Pass
        }
    }
}

/// A `304` carries the `Vary` its `200` would (RFC 9110 §15.4.5), so a
/// shared cache updating its copy keeps keying it by `Accept-Encoding`:
/// whenever the representation is of a listed type (the 304's own
/// `Content-Type`, else `listed_at_fixup`) that nothing keeps from being
/// compressed. A client whose copy is the compressed one (it revalidates
/// with the weak tag a compressed answer carried) also gets that tag
/// back, so that its cache recognises the copy it refreshes.
fn answer_not_modified(ctx: &mut Context, listed_at_fixup: bool) {
    let weak = ctx
        .response
        .headers
        .get("ETag")
        .filter(|t| t.starts_with('"'))
        .map(|tag| format!("W/{tag}"));
    let held = weak.as_ref().is_some_and(|weak| {
        ctx.request
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
            .any(|(_, v)| {
                String::from_utf8_lossy(v)
                    .split(',')
                    .any(|t| t.trim() == weak)
            })
    });
    let listed = if ctx.response.headers.get("Content-Type").is_some() {
        listed_type(ctx)
    } else {
        listed_at_fixup
    };
    let compressible = listed && !transform_ruled_out(&ctx.response.headers);
    if let Some(weak) = weak.filter(|_| held) {
        ctx.response.headers.set("ETag", weak);
    }
    if held || compressible {
        vary_accept_encoding(&mut ctx.response.headers);
    }
}

/// A coding's stream, writing into a buffer that each call empties: the
/// output of one chunk, never more.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// Brotli's window: 512 KiB, as nginx's brotli module, to bound a
/// response's memory.
const BR_LGWIN: u32 = 19;
/// Brotli's internal output buffer.
const BR_BUFFER: usize = 4096;
/// zstd's window for a body of unknown length, for the same reason.
const ZSTD_WINDOW_LOG: u32 = 19;

impl Encoder {
    fn new(coding: Coding, levels: Levels, length: Option<u64>) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BR_BUFFER,
                levels.br,
                BR_LGWIN,
            ))),
            Coding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?;
                match length {
                    Some(n) => encoder.set_pledged_src_size(Some(n))?,
                    None => encoder.window_log(ZSTD_WINDOW_LOG)?,
                }
                Encoder::Zstd(encoder)
            }
        })
    }

    /// Compress `data` and flush, so that what the producer wrote so far
    /// can be decoded by the client now.
    fn push(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        if data.is_empty() {
            // Everything before was flushed already.
            return Ok(Vec::new());
        }
        let writer: &mut dyn Write = match self {
            Encoder::Gzip(e) => e,
            Encoder::Br(e) => &mut **e,
            Encoder::Zstd(e) => e,
        };
        writer.write_all(data)?;
        writer.flush()?;
        Ok(self.take())
    }

    fn take(&mut self) -> Vec<u8> {
        std::mem::take(match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        })
    }

    /// Compress the last of the body and end the stream.
    fn finish(self, data: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(mut e) => {
                e.write_all(data)?;
                e.finish()
            }
            Encoder::Br(mut e) => {
                e.write_all(data)?;
                Ok(e.into_inner())
            }
            Encoder::Zstd(mut e) => {
                e.write_all(data)?;
                e.finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        use Coding::*;
        let prefer = [Br, Zstd, Gzip];
        assert_eq!(negotiate("gzip, deflate, br, zstd", &prefer), Some(Br));
        assert_eq!(negotiate("gzip, deflate", &prefer), Some(Gzip));
        assert_eq!(negotiate("gzip;q=1, br;q=0.5", &prefer), Some(Gzip));
        assert_eq!(negotiate("br;q=0, gzip", &prefer), Some(Gzip));
        assert_eq!(negotiate("*", &prefer), Some(Br));
        assert_eq!(negotiate("*;q=0.5, zstd", &prefer), Some(Zstd));
        assert_eq!(negotiate("br;q=0, zstd;q=0, *", &prefer), Some(Gzip));
        assert_eq!(negotiate("identity", &prefer), None);
        assert_eq!(negotiate("gzip;q=0.5, identity", &prefer), None);
        assert_eq!(negotiate("gzip;q=0", &prefer), None);
        assert_eq!(negotiate("*;q=0", &prefer), None);
        assert_eq!(negotiate("", &prefer), None);
        assert_eq!(negotiate("br, gzip", &[Gzip]), Some(Gzip));
        assert_eq!(negotiate("br", &[Gzip, Zstd]), None);
        assert_eq!(negotiate("br, gzip", &[Gzip, Br]), Some(Gzip));
    }

    #[test]
    fn directives_parse() {
        assert_eq!(
            parse_levels(&["gzip=9", "zstd=1"]),
            Ok(Levels {
                gzip: 9,
                br: 4,
                zstd: 1
            })
        );
        for bad in [
            "gzip=0", "gzip=10", "br=12", "zstd=0", "zstd=20", "lz4=1", "gzip", "gzip=x",
        ] {
            assert!(parse_levels(&[bad]).is_err(), "{bad}");
        }
        assert_eq!(
            parse_prefer(&["gzip", "BR"]),
            Ok(vec![Coding::Gzip, Coding::Br])
        );
        assert!(parse_prefer(&["gzip", "gzip"]).is_err());
        assert!(parse_prefer(&["deflate"]).is_err());
        let types = parse_types(&["Text/HTML", "text/*"]).unwrap();
        assert!(types[0].matches("text/html"));
        assert!(!types[0].matches("text/htmlx"));
        assert!(types[1].matches("text/event-stream"));
        assert!(!types[1].matches("text/"));
        assert!(!types[1].matches("textual/x"));
        for bad in ["text", "*/*", "text/", "te xt/html"] {
            assert!(parse_types(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn vary_merges() {
        let mut h = Headers::default();
        vary_accept_encoding(&mut h);
        assert_eq!(h.get("Vary"), Some("Accept-Encoding"));
        let mut h = Headers::default();
        h.set("Vary", "Cookie");
        vary_accept_encoding(&mut h);
        assert_eq!(h.get("Vary"), Some("Cookie, Accept-Encoding"));
        let mut h = Headers::default();
        h.set("Vary", "accept-encoding, Cookie");
        vary_accept_encoding(&mut h);
        assert_eq!(h.get("Vary"), Some("accept-encoding, Cookie"));
        let mut h = Headers::default();
        h.set("Vary", "*");
        vary_accept_encoding(&mut h);
        assert_eq!(h.get("Vary"), Some("*"));
    }

    /// Chunk by chunk, each flushed, the stream decodes to the input, and
    /// after each flush everything pushed so far decodes.
    #[test]
    fn streams_round_trip() {
        let levels = Levels {
            gzip: 6,
            br: 4,
            zstd: 3,
        };
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i} of the body\n").into_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let mut encoder = Encoder::new(coding, levels, None).unwrap();
            let mut out = Vec::new();
            for piece in text.chunks(7000) {
                out.extend(encoder.push(piece).unwrap());
            }
            out.extend(encoder.finish(b"end\n").unwrap());
            let mut expect = text.clone();
            expect.extend_from_slice(b"end\n");
            assert_eq!(decode(coding, &out), expect, "{coding:?}");
            assert!(out.len() < expect.len() / 4, "{coding:?}: {}", out.len());
        }
    }

    fn decode(coding: Coding, data: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        match coding {
            Coding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Br => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Coding::Zstd => out = zstd::decode_all(data).unwrap(),
        }
        out
    }
}
