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
