//! The built-in plugins, one file each, built only on the public plugin API
//! (the same one third-party plugins use).

mod fast_mime_map;
mod logging_file;
mod logging_warn;
mod request_log;
mod serve_file;
mod sink;
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
    ]
}
