//! AxKit's built-in plugins, one file each (CGI a folder, `cgi/`), a
//! plugin's directives at its top: mapping URLs to files, serving files and
//! directories, CGI, MIME types, error pages, the error and access logs,
//! access control by address and Basic authentication; and, from
//! [`StatsSource`], the status page and metrics (`stats`) and the
//! operator's `console`.
//! They are written only against the `axkit` crate's public API, the one a
//! third-party plugin uses: this crate cannot reach anything else, so the
//! compiler keeps that API honest.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     axkit::Server::new().plugins(axkit_plugins::builtin()).main()
//! }
//! ```

mod access;
mod auth_basic;
mod cgi;
mod console;
mod error_doc;
mod fast_mime_map;
pub mod file_http;
mod headers;
mod logging_file;
mod logging_warn;
mod magic_mime_map;
mod open_file_cache;
mod per_location;
mod request_log;
mod rewrite;
mod serve_dir;
mod serve_file;
mod sink;
mod stats;
mod typeless_uri;
mod uri_to_file;

/// `docs/plugins.md`: its Rust examples are compiled as doctests of this
/// crate, which has both `axkit` and the built-in plugins they use.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/plugins.md")]
pub struct PluginsGuide;

use axkit::plugin::PluginSpec;

pub use stats::StatsSource;

/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
/// the parsers of what a client or a CGI program sends, unchanged, with
/// their private types turned into plain ones.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use std::time::SystemTime;

    use crate::file_http::{self, Ranges};

    /// `file_http::parse_ranges`: None to send the whole file, an empty
    /// list for 416, else the ranges (`start..end`) in request order.
    pub fn parse_ranges(value: &str, len: u64, max_ranges: usize) -> Option<Vec<(u64, u64)>> {
        match file_http::parse_ranges(value, len, max_ranges) {
            Ranges::Whole => None,
            Ranges::Unsatisfiable => Some(Vec::new()),
            Ranges::Some(ranges) => Some(ranges),
        }
    }

    /// Whether an `If-Match` (`strong`) or `If-None-Match` list matches
    /// `etag`.
    pub fn matches_any(list: &str, etag: Option<&str>, strong: bool) -> bool {
        file_http::matches_any(list, etag, strong)
    }

    /// `(weak, opaque)` of an entity tag.
    pub fn parse_etag(tag: &str) -> Option<(bool, &str)> {
        file_http::parse_etag(tag)
    }

    /// Whether an `If-Range` value lets the `Range` through.
    pub fn if_range_matches(value: &str, etag: Option<&str>, modified: Option<SystemTime>) -> bool {
        file_http::if_range_matches(value, etag, modified)
    }

    /// Where a CGI program's header block ends: `Ok` with that, or `Err`
    /// with where the search goes on once more output has come.
    pub fn cgi_header_end(buf: &[u8], from: usize) -> Result<usize, usize> {
        crate::cgi::output::header_end(buf, from)
    }

    /// A CGI program's header block: its `Status`, its `Location` and
    /// its other fields, in order.
    pub type CgiHead = (Option<u16>, Option<String>, Vec<(String, String)>);

    /// A CGI program's header block, parsed.
    pub fn cgi_parse_head(block: &[u8]) -> Result<CgiHead, String> {
        crate::cgi::output::parse_head(block).map(|h| (h.status, h.location, h.headers))
    }

    /// A field value without its leading and trailing spaces and tabs.
    pub fn trim_ows(v: &[u8]) -> &[u8] {
        crate::cgi::output::trim_ows(v)
    }

    /// The user and password of an `Authorization: Basic` value.
    pub fn basic_credentials(value: &[u8]) -> Option<Result<(String, String), &'static str>> {
        crate::auth_basic::credentials(value)
    }

    /// The pattern [`rewrite_expand`] matches: a name and the rest.
    pub const REWRITE_PATTERN: &str = r"^/(?P<name>[^/]*)/?(.*)$";

    /// A `Rewrite`/`RedirectMatch` target: `template` expanded with
    /// the captures of [`REWRITE_PATTERN`] in `path` (None when it does
    /// not match).
    pub fn rewrite_expand(template: &str, path: &str) -> Option<String> {
        static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let pattern = PATTERN.get_or_init(|| regex::Regex::new(REWRITE_PATTERN).unwrap());
        Some(crate::rewrite::expand(template, &pattern.captures(path)?))
    }

    /// A rule's local target, normalised.
    pub fn rewrite_local_target(target: &str) -> Option<String> {
        crate::rewrite::local_target(target)
    }
}

/// Every built-in plugin, by the name used in `Plugin NAME`.
pub fn builtin() -> Vec<PluginSpec> {
    vec![
        uri_to_file::spec(),
        serve_file::spec(),
        fast_mime_map::spec(),
        logging_warn::spec(),
        logging_file::spec(),
        request_log::spec(),
        serve_dir::spec(),
        error_doc::spec(),
        typeless_uri::spec(),
        magic_mime_map::spec(),
        cgi::spec(),
        access::spec(),
        auth_basic::spec(),
        headers::spec(),
        rewrite::spec(),
    ]
}
