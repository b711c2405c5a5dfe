//! The configuration language: AxKit2's Apache-like syntax, plugin-declared
//! directives, scopes and merging.
//!
//! What a loaded config is lives in `model` ([`Config`], [`ServerConfig`],
//! [`LocationNode`], [`ConfigError`]). The building blocks: `syntax` turns
//! text into a tree of directive lines (comments, quoting, `\`
//! continuation, `<Block>` nesting), `value` parses typed arguments (sizes,
//! durations, regexes…), `registry` knows every directive and which plugin
//! owns it. [`load`] runs the stages, each in its own file: `include` reads
//! the files and expands `Include`, `plugins` finds the plugins the config
//! names and registers their directives, `validate` checks the tree against
//! the registry and freezes one merged [`LocationConfig`] per `<Location>`
//! so that a request only ever looks a value up, never merges.
//!
//! Why hand-written: the config language is part of the heart of the server
//! (error messages with file:line, owner plugin and a suggestion are its user
//! interface), and no crate speaks AxKit2's dialect.

mod cidr;
pub mod core;
mod directive;
mod include;
mod key;
mod load;
mod model;
pub(crate) mod plugins;
mod registry;
mod snapshot;
mod syntax;
#[cfg(test)]
mod test_support;
mod validate;
#[cfg(test)]
mod validate_tests;
mod value;

pub use self::core::core_directives;
pub use cidr::Cidr;
pub use directive::{Args, Directive, Merge, Scopes, ValueType, Words};
pub use key::{parse, ArgType, DurationType, FromConfig, Key, List};
pub use load::{load, load_from};
pub use model::{Config, ConfigError, LocationNode, ServerConfig, Source};
pub use registry::{DirectiveId, Registry};
pub use snapshot::{Expect, FileReader, PluginFile, Snapshot};
pub use syntax::{parse as parse_syntax, Node};
pub use value::{BlockLine, LocationConfig, Setting, Value, MAX_DURATION};
