//! `stats`: a status page and a Prometheus `/metrics` endpoint for the
//! whole server, summed over every worker process from the core's metrics
//! in shared memory (`axkit::plugin::metrics`): requests by `<Server>`,
//! `<Location>`, status class and the plugin that answered, latency
//! histograms, bytes sent, connections by state, worker restarts, reloads,
//! and the gauges plugins register (CGI processes, Lua memory).
//!
//! Directives (global or Server scope):
//! - `StatsPath PATH`: the status page, HTML; JSON with
//!   `Accept: application/json` or `?format=json`.
//! - `MetricsPath PATH`: the Prometheus text exposition format 0.0.4.
//! - `StatsAllow RANGE…` (repeatable; default `127.0.0.0/8 ::1`): the
//!   clients (`Context::client`: behind a `TrustedProxy`, the one it
//!   forwarded for) that may see either; others get 403.
//!
//! ```text
//! Plugin     stats
//! StatsPath  /status
//! MetricsPath /metrics
//! StatsAllow 127.0.0.1 10.1.2.0/24
//! ```
//!
//! The plugin answers in `fixup`: after the access, authentication and
//! authorization hooks, so that a `<Location>` covering either path
//! (`Require valid-user`, `Deny from all`) protects it on top of
//! `StatsAllow`, and before the content hooks (`xmlresponse`,
//! `response`), so that an application loaded for `/` cannot shadow it.
//!
//! [`StatsSource`] is where `stats` and `console` come from: a plugin
//! source (registered by the stock `axkit`) whose plugins need the metrics
//! region, which it asks the master for when the config loads either, and
//! the console its socket.

mod render;

use std::rc::Rc;

use axkit::config::{Cidr, Config, Directive, Key, List, Scopes};
use axkit::plugin::{
    metrics, Body, Context, HookFuture, ListenSpec, Outcome, Plugin, PluginInit, PluginSource,
    SharedMemorySpec,
};

static STATS_PATH: Key<Option<String>> = Key::new("StatsPath")
    .scopes(Scopes::GLOBAL.or(Scopes::SERVER))
    .doc("Path of the status page (HTML; JSON with Accept: application/json or ?format=json)");

static METRICS_PATH: Key<Option<String>> = Key::new("MetricsPath")
    .scopes(Scopes::GLOBAL.or(Scopes::SERVER))
    .doc("Path of the Prometheus metrics (text exposition format 0.0.4)");

static STATS_ALLOW: List<Vec<Cidr>> = List::new("StatsAllow")
    .scopes(Scopes::GLOBAL.or(Scopes::SERVER))
    .doc(
        "Clients (ADDR or ADDR/BITS) that may see StatsPath and MetricsPath; default loopback only",
    );

/// The source of the `stats` and `console` plugins: both read the core's
/// metrics, so the source asks for its region when a config loads either;
/// and the master binds the console's socket.
pub struct StatsSource;

impl PluginSource for StatsSource {
    fn name(&self) -> &str {
        "stats"
    }

    fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
        vec![
            ("stats", directives()),
            ("console", crate::console::directives()),
        ]
    }

    fn shared_memory(&self, config: &Config) -> Vec<SharedMemorySpec> {
        let used = config
            .plugins
            .iter()
            .any(|p| p == "stats" || p == "console");
        if used {
            vec![metrics::spec(config)]
        } else {
            Vec::new()
        }
    }

    fn listeners(&self, config: &Config) -> Vec<ListenSpec> {
        crate::console::listeners(config)
    }

    fn create(&self, name: &str, init: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        match name {
            "stats" => Ok(Some(Rc::new(Stats))),
            "console" => crate::console::create(init).map(Some),
            _ => Ok(None),
        }
    }
}

fn directives() -> Vec<Directive> {
    vec![
        STATS_PATH.declare(),
        METRICS_PATH.declare(),
        STATS_ALLOW.declare(),
    ]
}

struct Stats;

/// What a request asked the plugin for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Html,
    Json,
    Metrics,
}

impl Stats {
    fn page(ctx: &Context) -> Option<Page> {
        let path = ctx.request.decoded_path();
        let config = ctx.config();
        if config.get(&METRICS_PATH).as_deref() == Some(path) {
            return Some(Page::Metrics);
        }
        if config.get(&STATS_PATH).as_deref() != Some(path) {
            return None;
        }
        let json = ctx.request.param("format").as_deref() == Some("json")
            || ctx
                .request
                .header("Accept")
                .is_some_and(|a| a.contains("application/json"));
        Some(if json { Page::Json } else { Page::Html })
    }

    fn allowed(ctx: &Context) -> bool {
        let ip = ctx.client().addr.ip();
        let lists = ctx.config().list(&STATS_ALLOW);
        if lists.is_empty() {
            return ip.to_canonical().is_loopback();
        }
        lists.iter().flatten().any(|range| range.contains(ip))
    }
}

#[axkit::plugin]
impl Plugin for Stats {
    fn fixup<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(page) = Stats::page(ctx) else {
            return Outcome::Declined.into();
        };
        if !Stats::allowed(ctx) {
            let msg = format!(
                "stats: {} may not see {} (StatsAllow)",
                ctx.client().addr.ip(),
                ctx.request.decoded_path()
            );
            ctx.log(axkit::plugin::Level::Info, &msg);
            return Outcome::Status(403).into();
        }
        if !matches!(ctx.request.method(), "GET" | "HEAD") {
            ctx.response.headers.set("Allow", "GET, HEAD");
            return Outcome::Status(405).into();
        }
        let Some(snapshot) = metrics::snapshot() else {
            return Outcome::Error("the metrics region is not mapped".into()).into();
        };
        let (content_type, body) = match page {
            Page::Metrics => (
                "text/plain; version=0.0.4; charset=utf-8",
                render::prometheus(&snapshot),
            ),
            Page::Json => ("application/json", render::json(&snapshot)),
            Page::Html => ("text/html; charset=utf-8", render::html(&snapshot)),
        };
        ctx.response.headers.set("Content-Type", content_type);
        ctx.response.headers.set("Cache-Control", "no-store");
        ctx.response.body = Body::Bytes(body.into());
        Outcome::Done.into()
    }
}
