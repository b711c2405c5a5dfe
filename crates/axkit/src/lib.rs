//! AxKit: a pluggable, event-driven HTTP application server.
//!
//! The core owns sockets, the HTTP/1.1 wire, timers, the process model, the
//! config language ([`config`]) and running hooks; everything else (mapping
//! URIs to files, serving them, logging…) is a plugin built on the public
//! API in [`mod@plugin`]: the built-in ones live in the `axkit-plugins` crate,
//! which can use nothing else. See `docs/plugins.md` for writing one, and
//! [`Server`] for building a binary that includes it.

// `#[axkit::plugin]` generates paths from `::axkit`, also for the plugins
// of this crate's own unit tests.
extern crate self as axkit;

mod cli;
pub mod config;
pub mod plugin;
mod server;

pub use plugin::{
    hook, Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin, PluginInit, PluginSource,
    PluginSpec,
};
pub use server::Server;

/// `#[axkit::plugin]` on `impl Plugin for T`: the server calls exactly the
/// hooks that impl writes. See [`Plugin`].
///
/// Hook methods written by another macro inside the impl cannot be seen,
/// so the attribute refuses them rather than leave them out:
///
/// ```compile_fail
/// macro_rules! fixup {
///     () => {
///         fn fixup<'a>(&'a self, _: &'a mut axkit::Context) -> axkit::HookFuture<'a> {
///             axkit::Outcome::Declined.into()
///         }
///     };
/// }
///
/// struct Hidden;
///
/// #[axkit::plugin]
/// impl axkit::Plugin for Hidden {
///     fixup!();
/// }
/// ```
pub use axkit_macros::plugin;
