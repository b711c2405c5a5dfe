//! Typed keys through the real loader: values converted once with their
//! defaults, custom types' errors reported with file:line, lists across
//! scopes, secrets not quoted, reads by key that survive a second
//! registry, and what `0` means for a duration key that says.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use std::rc::Rc;

use crate::config::{load, Config, ConfigError, FileReader, Source};
use crate::plugin::{Catalog, Plugin, PluginInit, PluginSource};

static GREETING: Key<String> = Key::new("Greeting").default("Hello");
static ROOT: Key<Option<PathBuf>> = Key::new("Root").scopes(Scopes::SERVER.or(Scopes::LOCATION));
static MAX_THINGS: Key<usize> = Key::new("MaxThings").default("10");
static LIMIT: Key<u64> = Key::new("Limit").default("1M");
static WAIT: Key<Duration> = Key::new("Wait").default("30s");
static PATIENCE: Key<Duration> = Key::new("Patience").default("5s").nonzero();
static PROXY_WAIT: Key<Option<Duration>> = Key::new("ProxyWait").nonzero();
static BUDGET: Key<Duration> = Key::new("Budget").default("0").zero_is_no_limit();
static LOUD: Key<bool> = Key::new("Loud").default("off");
static QUIET: Key<bool> = Key::new("Quiet").flag();
static INDEX: Key<Vec<String>> = Key::new("Index").default("index.html index.htm");
static CODING: Key<Option<String>> = Key::new("Coding").one_of(&["gzip", "br"]);
static EXPIRY: Key<Option<u64>> = Key::parsed("Expiry", parse_expiry).default("off");
static RULES: List<(u16, String)> = List::parsed("Rule", parse_rule).args(Args::Range(2, 2));
static PASSWORD: Key<Option<String>> = Key::new("Password").secret();
/// Declared by nobody.
static STRAY: Key<String> = Key::new("Stray").default("x");

/// `off` or `plus+SECONDS`.
fn parse_expiry(args: &[&str]) -> Result<Option<u64>, String> {
    match args {
        ["off"] => Ok(None),
        [text] => text
            .strip_prefix("plus+")
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("expected off or plus+SECONDS, got {text:?}")),
        _ => Err("expected one argument".into()),
    }
}

fn parse_rule(args: &[&str]) -> Result<(u16, String), String> {
    let code = args[0]
        .parse()
        .map_err(|_| format!("expected a status, got {:?}", args[0]))?;
    Ok((code, args[1].to_string()))
}

/// A source of one plugin, `things`, declaring every key above.
struct Things;

impl PluginSource for Things {
    fn name(&self) -> &str {
        "test"
    }

    fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
        vec![(
            "things",
            vec![
                GREETING.declare(),
                ROOT.declare(),
                MAX_THINGS.declare(),
                LIMIT.declare(),
                WAIT.declare(),
                PATIENCE.declare(),
                PROXY_WAIT.declare(),
                BUDGET.declare(),
                LOUD.declare(),
                QUIET.declare(),
                INDEX.declare(),
                CODING.declare(),
                EXPIRY.declare(),
                RULES.declare(),
                PASSWORD.declare(),
            ],
        )]
    }

    fn find(
        &self,
        _: &str,
        _: &[PathBuf],
        _: &mut FileReader<'_>,
    ) -> Result<Option<Vec<Directive>>, String> {
        Ok(None)
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}

fn load_text(text: &str) -> Result<Config, Vec<ConfigError>> {
    let source = Source::Text {
        name: "t.conf".into(),
        text: format!("Plugin things\n{text}"),
    };
    load(&source, &Catalog::new(vec![Box::new(Things)]))
}

fn errors(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(_) => panic!("loaded:\n{text}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_and_written_values_have_their_types() {
    let config = load_text(
        "Rule 404 /global\n<Server>\nListen 127.0.0.1:0\nRoot /srv\nMaxThings 3\nQuiet\n\
         Rule 500 /server\n<Location /x>\nLimit 10K\nWait 500ms\nLoud on\nIndex a b\n\
         Coding GZIP\nExpiry plus+60\nRule 403 /x\n</Location>\n</Server>\n",
    )
    .unwrap();
    let server = &config.servers[0];
    let top = &server.locations[0].config;
    let x = &server.location_for("/x/y").config;
    assert_eq!(top.get(&GREETING), "Hello");
    assert_eq!(top.get(&ROOT).as_deref(), Some(Path::new("/srv")));
    assert_eq!(config.global.get(&ROOT), &None);
    assert_eq!((*top.get(&MAX_THINGS), *top.get(&LIMIT)), (3, 1 << 20));
    assert_eq!(
        (*x.get(&LIMIT), *x.get(&WAIT)),
        (10 << 10, Duration::from_millis(500))
    );
    assert_eq!((*top.get(&LOUD), *x.get(&LOUD)), (false, true));
    assert!(*top.get(&QUIET) && !*config.global.get(&QUIET));
    assert_eq!(top.get(&INDEX), &["index.html", "index.htm"]);
    assert_eq!(x.get(&INDEX), &["a", "b"]);
    assert_eq!(x.get(&CODING).as_deref(), Some("gzip"));
    assert_eq!((top.get(&EXPIRY), x.get(&EXPIRY)), (&None, &Some(60)));
    let rules = |c: &crate::config::LocationConfig| {
        c.list(&RULES).iter().map(|(s, _)| *s).collect::<Vec<_>>()
    };
    assert_eq!(rules(&config.global), [404]);
    assert_eq!(rules(top), [404, 500]);
    assert_eq!(rules(x), [404, 500, 403]);
    assert!(x.is_written(&LIMIT) && !top.is_written(&LIMIT));
    assert_eq!(x.settings_of(&LIMIT)[0].line, 10);
    // A key nobody declared.
    assert_eq!(top.try_get(&STRAY), None);
    // Another registry: the keys find their place in it too.
    let again = load_text("<Server>\nListen 127.0.0.1:0\nMaxThings 7\n</Server>\n").unwrap();
    assert_eq!(*again.servers[0].locations[0].config.get(&MAX_THINGS), 7);
    assert_eq!(*top.get(&MAX_THINGS), 3);
}

#[test]
fn bad_values_are_load_errors_with_file_and_line() {
    let errs = errors(
        "MaxThings -1\nExpiry soon\nRule abc /x\nCoding zip\nLimit lots\nPassword\n\
         <Server>\nListen 127.0.0.1:0\n</Server>\n",
    );
    assert_eq!(
        errs,
        [
            "t.conf:2: MaxThings (plugin things): expected a non-negative integer, got -1",
            "t.conf:3: Expiry (plugin things): expected off or plus+SECONDS, got \"soon\"",
            "t.conf:4: Rule (plugin things): expected a status, got \"abc\"",
            "t.conf:5: Coding (plugin things): expected one of gzip|br, got \"zip\"",
            "t.conf:6: Limit (plugin things): expected a size like 512, 10K, 10M or 1G, got \"lots\"",
            "t.conf:7: Password (plugin things): expected 1 argument, got 0; usage: Password <string>",
        ]
    );
}

#[test]
fn a_secret_is_never_quoted_back() {
    static PIN: Key<Option<i64>> = Key::new("Pin").secret();
    struct Secrets;
    impl PluginSource for Secrets {
        fn name(&self) -> &str {
            "test"
        }
        fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
            vec![("vault", vec![PIN.declare()])]
        }
        fn find(
            &self,
            _: &str,
            _: &[PathBuf],
            _: &mut FileReader<'_>,
        ) -> Result<Option<Vec<Directive>>, String> {
            Ok(None)
        }
        fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
            Ok(None)
        }
    }
    let source = Source::Text {
        name: "t.conf".into(),
        text: "Plugin vault\nPin hunter2\n<Server>\nListen 127.0.0.1:0\n</Server>\n".into(),
    };
    let errs: Vec<String> = load(&source, &Catalog::new(vec![Box::new(Secrets)]))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        ["t.conf:2: Pin (plugin vault): invalid value (not shown: the directive is secret); usage: Pin <integer>"]
    );
}

/// `Token SCHEME:SECRET`; its errors name the scheme, never the secret,
/// except the one that (wrongly) quotes it.
fn parse_token(args: &[&str]) -> Result<String, String> {
    match args[0].split_once(':') {
        Some(("key", rest)) if !rest.is_empty() => Ok(rest.to_string()),
        Some(("leaky", _)) => Err(format!("cannot use {:?}", args[0])),
        Some((scheme, _)) => Err(format!("unknown scheme {scheme:?}; expected key:")),
        None => Err("expected SCHEME:SECRET".into()),
    }
}

/// A source of one plugin `vault` declaring `keys`.
struct Vault(fn() -> Vec<Directive>);

impl PluginSource for Vault {
    fn name(&self) -> &str {
        "test"
    }
    fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
        vec![("vault", (self.0)())]
    }
    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}

fn vault_errors(keys: fn() -> Vec<Directive>, text: &str) -> Vec<String> {
    let source = Source::Text {
        name: "t.conf".into(),
        text: format!("Plugin vault\n{text}<Server>\nListen 127.0.0.1:0\n</Server>\n"),
    };
    load(&source, &Catalog::new(vec![Box::new(Vault(keys))]))
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_secret_parse_error_says_why_without_the_value() {
    static TOKEN: Key<Option<String>> = Key::parsed("Token", |a| parse_token(a).map(Some))
        .optional()
        .secret();
    let errs = vault_errors(
        || vec![TOKEN.declare()],
        "Token ftp:hunter2\nToken leaky:hunter2\nToken key:fine\n",
    );
    assert_eq!(
        errs,
        [
            "t.conf:2: Token (plugin vault): invalid value (not shown: the directive is secret): \
             unknown scheme \"ftp\"; expected key:; usage: Token <string>",
            // The parse function quoted the value: nothing of what it said.
            "t.conf:3: Token (plugin vault): invalid value (not shown: the directive is secret); \
             usage: Token <string>",
        ]
    );
}

/// `Secret NAME FILE`: the file's first line.
static SECRET_FILE: List<(String, String)> =
    List::parsed_with_files("SecretFile", |args, files| {
        let [name, path] = args else {
            return Err("expected SecretFile NAME FILE".into());
        };
        let file = files
            .plugin_file(Path::new(path))
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .ok_or_else(|| format!("{path}: no such file"))?;
        let text = String::from_utf8_lossy(&file.bytes);
        Ok((
            name.to_string(),
            text.lines().next().unwrap_or("").to_string(),
        ))
    })
    .args(Args::Range(2, 2));

#[test]
fn a_key_reads_files_through_the_snapshot() {
    let dir = std::env::temp_dir().join(format!("axkit-key-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("pw");
    std::fs::write(&secret, "first\nsecond\n").unwrap();
    let text = format!(
        "Plugin vault\nSecretFile a {}\n<Server>\nListen 127.0.0.1:0\n</Server>\n",
        secret.display()
    );
    let source = Source::Text {
        name: "t.conf".into(),
        text,
    };
    let catalog = Catalog::new(vec![Box::new(Vault(|| vec![SECRET_FILE.declare()]))]);
    let config = load(&source, &catalog).unwrap();
    assert_eq!(
        config.global.list(&SECRET_FILE),
        [("a".to_string(), "first".to_string())]
    );

    // A worker replays what the master read, whatever the disk holds now.
    std::fs::write(&secret, "rotated\n").unwrap();
    let replayed = crate::config::load_from(&source, &catalog, Some(&config.snapshot)).unwrap();
    assert_eq!(
        replayed.global.list(&SECRET_FILE),
        [("a".to_string(), "first".to_string())]
    );

    std::fs::remove_dir_all(&dir).unwrap();
    let errs = vault_errors(
        || vec![SECRET_FILE.declare()],
        &format!("SecretFile a {}\n", secret.display()),
    );
    assert_eq!(
        errs,
        [format!(
            "t.conf:2: SecretFile (plugin vault): {}: no such file",
            secret.display()
        )]
    );
}

#[test]
fn a_key_without_a_value_for_unwritten_needs_a_default() {
    static BARE: Key<String> = Key::new("Bare");
    let mut registry = crate::config::Registry::new();
    let err = registry.add("p", BARE.declare()).unwrap_err();
    assert!(err.contains("needs a default"), "{err}");
}

#[test]
fn zero_durations_are_refused_or_no_limit_as_the_key_says() {
    let config = load_text(
        "Wait 0\n<Server>\nListen 127.0.0.1:0\n<Location /x>\nPatience 1ms\nProxyWait 2s\n\
         Budget 3s\n</Location>\n</Server>\n",
    )
    .unwrap();
    let top = &config.servers[0].locations[0].config;
    let x = &config.servers[0].location_for("/x/y").config;
    // Unmarked, 0 is taken as written.
    assert_eq!(*top.get(&WAIT), Duration::ZERO);
    assert_eq!(
        (
            *top.get(&PATIENCE),
            *top.get(&PROXY_WAIT),
            *top.get(&BUDGET)
        ),
        (Duration::from_secs(5), None, crate::config::MAX_DURATION)
    );
    assert_eq!(
        (*x.get(&PATIENCE), *x.get(&PROXY_WAIT), *x.get(&BUDGET)),
        (
            Duration::from_millis(1),
            Some(Duration::from_secs(2)),
            Duration::from_secs(3)
        )
    );
    assert_eq!(
        errors("Patience 0\nProxyWait 0ms\nBudget 36501d\n<Server>\nListen 127.0.0.1:0\n</Server>\n"),
        [
            "t.conf:2: Patience (plugin things): 0 would expire at once: expected a duration from 1ms to 36500d",
            "t.conf:3: ProxyWait (plugin things): 0 would expire at once: expected a duration from 1ms to 36500d",
            "t.conf:4: Budget (plugin things): duration \"36501d\" is too large (at most 36500d)",
        ]
    );
}
