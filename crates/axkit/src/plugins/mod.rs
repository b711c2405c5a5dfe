//! The built-in plugins, one file each, built only on the public plugin API
//! (the same one third-party plugins use).

mod cgi_output;
mod cgi_process;
mod error_doc;
mod fast_mime_map;
mod file_http;
mod logging_file;
mod logging_warn;
mod magic_mime_map;
mod open_file_cache;
mod request_log;
mod serve_cgi;
mod serve_dir;
mod serve_file;
mod sink;
mod typeless_uri;
mod uri_to_file;

use crate::plugin::PluginSpec;

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
        serve_cgi::spec(),
    ]
}
