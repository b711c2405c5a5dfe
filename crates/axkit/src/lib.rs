//! AxKit: a pluggable, event-driven HTTP application server.
//!
//! The core owns sockets, the HTTP/1.1 wire, timers, the process model, the
//! config language and running hooks; everything else (mapping URIs to
//! files, serving them, logging…) is a plugin built on the same public API
//! that third-party plugins use. See `docs/plugins.md` for writing one, and
//! [`Server`] for building a binary that includes it.

mod cli;
pub mod config;
pub mod plugin;
pub mod plugins;
pub mod server;

pub use plugin::{
    hook, Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin, PluginInit, PluginSource,
    PluginSpec,
};
pub use server::Server;
