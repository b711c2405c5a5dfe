//! Test helpers shared by the loading stages' unit tests: a catalog with a
//! few plugins of every kind, and shorthands to load config text.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{load, Args, Config, ConfigError, Directive, FileReader, Scopes, Source, ValueType};
use crate::plugin::{Catalog, Plugin, PluginInit, PluginSource};

/// A source with a few compiled-in plugins, some script plugins found by
/// name and a directive of its own; it only declares, never creates.
struct Cat;

/// A catalog of [`Cat`] alone.
pub(super) fn catalog() -> Catalog {
    Catalog::new(vec![Box::new(Cat)])
}

impl PluginSource for Cat {
    fn name(&self) -> &str {
        "cat"
    }

    fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
        let sl = Scopes::SERVER | Scopes::LOCATION;
        vec![
            (
                "serve_file",
                vec![
                    Directive::new("DocumentRoot", ValueType::Path).scopes(sl),
                    Directive::new("DirectoryIndex", ValueType::String)
                        .args(Args::Many)
                        .append()
                        .default("index.html"),
                ],
            ),
            (
                "serve_cgi",
                vec![Directive::new("CGI_Match", ValueType::Regex)],
            ),
            ("uri_to_file", vec![]),
            (
                "hello",
                vec![
                    Directive::new("Greeting", ValueType::String).default("Hello"),
                    Directive::new("Perl", ValueType::String).args(Args::Block),
                    Directive::new("Verbose", ValueType::String).args(Args::Flag),
                    Directive::new("Pair", ValueType::Integer).args(Args::Range(2, 3)),
                ],
            ),
        ]
    }

    fn directives(&self) -> Vec<Directive> {
        vec![Directive::new("ScriptLimit", ValueType::Duration).default("5s")]
    }

    fn find(
        &self,
        name: &str,
        dirs: &[PathBuf],
        _files: &mut FileReader<'_>,
    ) -> Result<Option<Vec<Directive>>, String> {
        match name {
            "script" if dirs.iter().any(|d| d == Path::new("lua")) => {
                Ok(Some(vec![Directive::new("ScriptOpt", ValueType::Integer)]))
            }
            "broken" => Err("syntax error at line 3".into()),
            "clash" => Ok(Some(vec![Directive::new("greeting", ValueType::String)])),
            "baddefault" => Ok(Some(vec![
                Directive::new("Bd", ValueType::Size).default("lots")
            ])),
            _ => Ok(None),
        }
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}

pub(super) fn load_text(text: &str) -> Result<Config, Vec<ConfigError>> {
    let source = Source::Text {
        name: "t.conf".into(),
        text: text.into(),
    };
    load(&source, &catalog())
}

pub(super) fn errors(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(_) => panic!("config loaded:\n{text}"),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

/// A config that is valid except for the line(s) under test.
pub(super) fn with_server(lines: &str) -> String {
    format!("<Server>\nPort 8000\n{lines}\n</Server>\n")
}

pub(super) fn error_strings(r: Result<Config, Vec<ConfigError>>) -> Vec<String> {
    r.err().unwrap().iter().map(ToString::to_string).collect()
}
