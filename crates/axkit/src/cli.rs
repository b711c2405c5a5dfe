//! The `axkit` command line: run the master (default), one worker in the
//! foreground (`--no-master`), check a config (`--check`, like `nginx -t`),
//! say what a request would meet (`--explain URL`), or list every
//! directive (`--directives`).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::config::Source;
use crate::plugin::log_to_stderr;
use crate::plugin::Catalog;
use crate::server::plugin_listeners::{self, PluginListeners};
use crate::server::shared_memory::{self, Regions};
use crate::server::{load_config, log_warnings, master, report_errors, run_worker};

#[derive(Parser, Debug)]
#[command(
    name = "axkit",
    version,
    about = "AxKit: a pluggable, event-driven HTTP application server",
    after_help = "Without -c, runs the built-in config (the demo on http://127.0.0.1:8000)."
)]
struct Cli {
    /// Configuration file to run.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit: 0 if it is valid (printing any warnings), 1 with every error found.
    #[arg(short = 't', long)]
    check: bool,
    /// Print every directive known (core and plugins) with its plugin, scopes, arguments and doc.
    #[arg(long)]
    directives: bool,
    /// Say what a request for URL (/PATH or http://HOST[:PORT]/PATH) meets: its Server and Location, every directive in effect there with its file:line, and the plugins of each hook in the order they run.
    #[arg(long, value_name = "URL")]
    explain: Option<String>,
    /// With --explain: the Host the request names (instead of the URL's).
    #[arg(long, value_name = "H", requires = "explain")]
    host: Option<String>,
    /// Run a single worker in this process, without a master (for debugging).
    #[arg(long)]
    no_master: bool,
    /// Internal: run as a worker started by the master.
    #[arg(long, hide = true)]
    worker: bool,
}

/// The config run without `-c` when the binary names none (see
/// [`Server::builtin_config`](crate::Server::builtin_config)): demo/ on
/// 127.0.0.1:8000, with the request log on stdout.
pub(crate) fn default_builtin_config() -> String {
    let demo = if Path::new("demo").is_dir() {
        PathBuf::from("demo")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demo")
    };
    format!(
        "# Built-in configuration: serve demo/ on 127.0.0.1:8000.\n\
         Plugin logging/warn\n\
         LogLevel LOGINFO\n\
         Plugin request_log\n\
         RequestLog -\n\
         <Server>\n\
         \x20   Listen 127.0.0.1:8000\n\
         \x20   DocumentRoot \"{}\"\n\
         \x20   DirectoryIndex index.html\n\
         \x20   Plugin uri_to_file\n\
         \x20   Plugin fast_mime_map\n\
         \x20   Plugin serve_file\n\
         </Server>\n",
        demo.display()
    )
}

pub(crate) fn main(catalog: Catalog, builtin_config: fn() -> String) -> ExitCode {
    let cli = Cli::parse();
    let source = match &cli.config {
        Some(path) => Source::File(path.clone()),
        None => Source::Text {
            name: "<built-in>".into(),
            text: builtin_config(),
        },
    };
    let _ = crate::server::CONFIG_NAME.set(source_name(&source));
    if cli.directives {
        return print_directives(&catalog, cli.config.is_some().then_some(&source));
    }
    if cli.check {
        return check(&catalog, &source);
    }
    if let Some(url) = &cli.explain {
        return explain(&catalog, &source, url, cli.host.as_deref());
    }
    if cli.worker {
        return worker_main(&catalog, &source);
    }
    if cli.no_master {
        let config = match load_config(&source, &catalog) {
            Ok(c) => c,
            Err(errors) => {
                report_errors(&errors);
                return ExitCode::FAILURE;
            }
        };
        log_warnings(&config);
        if let Some(w) = crate::server::privileges::warning(&config) {
            log_to_stderr(crate::plugin::Level::Warn, &w);
        }
        let mut listeners = Vec::new();
        for addr in config.listen_addrs() {
            match master::bind(addr) {
                Ok(l) => listeners.push((addr, l)),
                Err(e) => {
                    eprintln!("axkit: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if let Err(e) = map_regions_here(&config, &catalog) {
            eprintln!("axkit: {e}");
            return ExitCode::FAILURE;
        }
        let files = match PluginListeners::create(&config, &catalog, &PluginListeners::default()) {
            Ok(bound) => bound.install_here(),
            Err(e) => {
                eprintln!("axkit: {e}");
                return ExitCode::FAILURE;
            }
        };
        master::announce(&listeners, 1);
        let code = run_worker(config, &catalog, listeners, || {});
        for e in files.remove() {
            log_to_stderr(crate::plugin::Level::Warn, &e);
        }
        return code;
    }
    let worker_args: Vec<OsString> = match &cli.config {
        Some(path) => vec!["-c".into(), path.clone().into_os_string()],
        None => Vec::new(),
    };
    master::run(&catalog, source, worker_args)
}

/// `--check`: load the config, printing its errors or its warnings (every
/// directive's value is converted and checked there); then build every
/// plugin once, as a worker would: a constructor may refuse what goes
/// beyond one value (a `LogFile` it cannot open, `serve_cgi` loaded after
/// `serve_file`), and the plugins built say which hooks each one has, for
/// the warnings about plugins that can never be called.
fn check(catalog: &Catalog, source: &Source) -> ExitCode {
    let loaded = load_config(source, catalog).and_then(|config| {
        let missing = unmet_paths(&config);
        if missing.is_empty() {
            Ok(config)
        } else {
            Err(missing)
        }
    });
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            report_errors(&errors);
            eprintln!(
                "axkit: configuration {} has {} error(s)",
                source_name(source),
                errors.len()
            );
            return ExitCode::FAILURE;
        }
    };
    {
        let mut err = std::io::stderr().lock();
        for w in &config.warnings {
            let _ = writeln!(err, "axkit: warning: {w}");
        }
    }
    if let Err(e) = map_regions_here(&config, catalog) {
        eprintln!("axkit: {e}");
        eprintln!("axkit: configuration {} has errors", source_name(source));
        return ExitCode::FAILURE;
    }
    match crate::server::build_plugins(config, catalog) {
        Ok(unreachable) => {
            for w in unreachable {
                eprintln!("axkit: warning: {w}");
            }
            println!("axkit: configuration {} is OK", source_name(source));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("axkit: {e}");
            }
            eprintln!("axkit: configuration {} has errors", source_name(source));
            ExitCode::FAILURE
        }
    }
}

/// `--explain URL`: load the config as `--check` does, then print what a
/// request for URL meets (`server/explain.rs`).
fn explain(catalog: &Catalog, source: &Source, url: &str, host: Option<&str>) -> ExitCode {
    let config = match load_config(source, catalog) {
        Ok(config) => config,
        Err(errors) => {
            report_errors(&errors);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = map_regions_here(&config, catalog) {
        eprintln!("axkit: {e}");
        return ExitCode::FAILURE;
    }
    match crate::server::explain::explain(config, catalog, url, host) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("axkit: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Every path a directive names that is not what the directive needs
/// (a `DocumentRoot` that is not a directory, a `ScriptAlias` target that
/// is not there: see [`Expect`](crate::config::Expect)), each line once,
/// with the path as resolved: every request using it would fail. Only
/// `--check` refuses them; a server starts (a root may be mounted later).
fn unmet_paths(config: &crate::config::Config) -> Vec<crate::config::ConfigError> {
    let mut seen = std::collections::HashSet::new();
    let mut errors = Vec::new();
    for scope in config.scopes() {
        let settings = config
            .registry
            .iter()
            .flat_map(|(id, ..)| scope.settings_by_id(id).iter().map(move |s| (id, s)));
        for (id, setting) in settings {
            for (path, what) in &setting.expected {
                if !seen.insert((setting.file.clone(), setting.line, path.clone())) {
                    continue;
                }
                let Some(problem) = what.unmet(path) else {
                    continue;
                };
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                errors.push(crate::config::ConfigError {
                    file: setting.file.to_string(),
                    line: setting.line,
                    directive: Some(config.registry.directive(id).name.to_string()),
                    plugin: Some(config.registry.owner(id).to_string()),
                    message: format!("{}: {problem}", shown.display()),
                });
            }
        }
    }
    errors.sort_by(|a, b| (a.file.as_str(), a.line).cmp(&(b.file.as_str(), b.line)));
    errors
}

/// A process that runs the plugins itself (`--no-master`, `--check`)
/// creates the config's shared memory and maps it: it is its own master.
fn map_regions_here(config: &crate::config::Config, catalog: &Catalog) -> Result<(), String> {
    Regions::create(config, catalog, &Regions::default())?.map_here()
}

fn source_name(source: &Source) -> String {
    match source {
        Source::File(p) => p.display().to_string(),
        Source::Text { name, .. } => name.clone(),
    }
}

fn worker_main(catalog: &Catalog, source: &Source) -> ExitCode {
    let listeners = match master::inherited_listeners() {
        Ok(l) => l,
        Err(e) => {
            log_to_stderr(crate::plugin::Level::Crit, &e);
            return ExitCode::FAILURE;
        }
    };
    // The master writes the configuration it loaded to our stdin first.
    let snapshot = match crate::config::Snapshot::read_from(&mut std::io::stdin().lock()) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot read the configuration from the master: {e}");
            log_to_stderr(crate::plugin::Level::Crit, &msg);
            return ExitCode::FAILURE;
        }
    };
    let config = match crate::config::load_from(source, catalog, Some(&snapshot)) {
        Ok(c) => c,
        Err(errors) => {
            report_errors(&errors);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = shared_memory::map_inherited().and_then(|()| plugin_listeners::take_inherited())
    {
        log_to_stderr(crate::plugin::Level::Crit, &e);
        return ExitCode::FAILURE;
    }
    crate::server::adopt_control_fd();
    run_worker(config, catalog, listeners, || {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"ready\n");
        let _ = out.flush();
    })
}

/// Every directive of the binary's plugins; with `-c FILE`, also those that
/// the config's script plugins declare.
fn print_directives(catalog: &Catalog, config: Option<&Source>) -> ExitCode {
    let registry = match config {
        // The loaded config's registry has every directive: core, built-in
        // plugins and script plugins.
        Some(source) => match load_config(source, catalog) {
            Ok(config) => config.registry,
            Err(errors) => {
                report_errors(&errors);
                return ExitCode::FAILURE;
            }
        },
        None => {
            let known = crate::config::plugins::known(catalog);
            if !known.errors.is_empty() {
                for e in known.errors {
                    eprintln!("axkit: {e}");
                }
                return ExitCode::FAILURE;
            }
            std::sync::Arc::new(known.reg)
        }
    };
    let mut rows: Vec<_> = registry.iter().collect();
    rows.sort_by(|a, b| (a.2, a.1.name.to_lowercase()).cmp(&(b.2, b.1.name.to_lowercase())));
    let mut out = std::io::stdout().lock();
    let mut last_plugin = "";
    for (_, d, plugin) in rows {
        if plugin != last_plugin {
            let _ = writeln!(out, "\n[{plugin}]");
            last_plugin = plugin;
        }
        let default = d
            .default
            .as_deref()
            .map(|v| format!(" (default: {v})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}\n      scopes: {}{}\n      {}",
            d.usage(),
            d.scopes.describe(),
            default,
            d.doc
        );
    }
    ExitCode::SUCCESS
}
