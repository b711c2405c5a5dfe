//! Whom the proxy trusts for `https://` upstreams: the worker's HTTP
//! client's trust (the system's roots, the `HttpClientCAFile`s), plus
//! `ProxyTrustedCA` files for the proxy alone, and `ProxyVerify Off` to
//! take any certificate (only when written).
//!
//! Directives (global):
//! - `ProxyTrustedCA FILE`, repeatable: PEM certificates trusted for
//!   upstreams (a private CA), read when the config loads through the
//!   config's `FileReader`, as `HttpClientCAFile` is (`ProxySource`).
//! - `ProxyVerify On|Off` (default On): Off takes any certificate from an
//!   upstream (still encrypted, not authenticated).
//!
//! The name checked, and sent as SNI, is the host of the upstream's URL
//! (or `<Upstream>` `Server` line), not the client's `Host`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use axkit::config::{Config, ConfigError, Directive, FileReader, Key, List, Scopes};
use axkit::plugin::InUse;
use axkit::{Plugin, PluginInit, PluginSource};
use axkit_client::{Client, Roots};

pub(crate) static TRUSTED_CA: List<PathBuf> = List::new("ProxyTrustedCA")
    .scopes(Scopes::GLOBAL)
    .doc("A PEM file of certificates the proxy trusts for https:// upstreams, besides the system's and the HttpClientCAFiles");

pub(crate) static VERIFY: Key<bool> = Key::new("ProxyVerify")
    .scopes(Scopes::GLOBAL)
    .default("on")
    .doc("Check https:// upstreams' certificates (Off: take any, encrypted but not authenticated)");

thread_local! {
    /// The `ProxyTrustedCA` certificates of the config this worker loaded,
    /// once `ProxySource` has read them.
    static ROOTS: RefCell<Option<Roots>> = const { RefCell::new(None) };
}

/// The proxy's client: the worker's trust, the `ProxyTrustedCA`s, and
/// `ProxyVerify`, with a pool of its own. A binary that has the plugin
/// without its source would drop the `ProxyTrustedCA`s silently: refused.
pub(crate) fn client(
    config: &Config,
    idle: usize,
    timeout: std::time::Duration,
) -> Result<Client, String> {
    let roots = ROOTS.with(|r| r.borrow().clone());
    let roots = match roots {
        Some(roots) => roots,
        None if config.global.list(&TRUSTED_CA).is_empty() => Roots::default(),
        None => {
            return Err(
                "ProxyTrustedCA needs axkit_proxy::ProxySource in this binary (Server::source)"
                    .into(),
            )
        }
    };
    Ok(axkit_client::client()
        .derive()
        .add_roots(roots)
        .verify(*config.global.get(&VERIFY))
        .keep_alive(idle, timeout)
        .build())
}

/// Reads the `ProxyTrustedCA` files when a config loads (a source, as
/// only a source reads files through the config's `FileReader`).
pub struct ProxySource;

impl PluginSource for ProxySource {
    fn name(&self) -> &str {
        "proxy"
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn directives(&self) -> Vec<Directive> {
        Vec::new()
    }

    fn load_files(
        &self,
        config: &Config,
        files: &mut FileReader<'_>,
    ) -> Result<(), Vec<ConfigError>> {
        let roots = axkit_client::read_ca_files(config, files, &TRUSTED_CA, self.name())?;
        ROOTS.with(|r| *r.borrow_mut() = Some(roots));
        Ok(())
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}
