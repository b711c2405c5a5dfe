//! Loading a config: read files (expanding `Include`, in
//! [`include`](super::include)), find the plugins it names
//! ([`plugins`](super::plugins)), validate every line against the
//! directives those plugins declare, and freeze one merged
//! [`LocationConfig`](super::LocationConfig) per `<Server>` and
//! `<Location>` ([`validate`](super::validate)); then each plugin source
//! reads the files its own directives name (`PluginSource::load_files`).
//!
//! Errors are collected, never fatal one by one: an operator fixing a config
//! wants every mistake in one run. The only early exits are when a later
//! stage would mostly report consequences of an earlier failure (a file that
//! cannot be read or parsed leaves the tree incomplete).

use std::sync::Arc;

use super::include::Reader;
use super::model::{Config, ConfigError, Source};
use super::plugins::{load_plugins, server_root};
use super::snapshot::Snapshot;
use super::validate::Validator;
use crate::plugin::Catalog;

/// Reads, validates and freezes a config. Returns every error found,
/// sorted by file and line.
pub fn load(source: &Source, catalog: &Catalog) -> Result<Config, Vec<ConfigError>> {
    load_from(source, catalog, None)
}

/// As [`load`], but with every file (and directory listing, and plugin
/// script) taken from `replay` instead of the disk when it is given: how a
/// worker loads the configuration its master validated.
pub fn load_from(
    source: &Source,
    catalog: &Catalog,
    replay: Option<&Snapshot>,
) -> Result<Config, Vec<ConfigError>> {
    let mut ld = Reader::new(replay);
    let (main_name, nodes) = match ld.read_main(source) {
        Some(x) => x,
        None => return Err(sorted(ld.errors)),
    };
    if !ld.errors.is_empty() {
        return Err(sorted(ld.errors));
    }
    // From here on, relative paths are taken from `ServerRoot`.
    ld.files.set_root(server_root(&nodes));
    let mut warnings = Vec::new();
    let plugins = load_plugins(
        &nodes,
        catalog,
        &mut ld.files,
        &main_name,
        &mut ld.errors,
        &mut warnings,
    );
    let mut v = Validator::new(plugins, ld.errors, ld.files);
    let (servers, global, global_plugins) = v.run(&nodes, &main_name);
    if !v.errors.is_empty() {
        return Err(sorted(v.errors));
    }
    // The validator read the files its keys name; the sources read theirs
    // through the same reader, so the snapshot holds them all.
    let mut files = v.files;
    let mut config = Config {
        registry: v.reg,
        global,
        servers,
        plugins: v.owners.loaded,
        global_plugins,
        snapshot: Arc::default(),
        warnings: sorted(warnings),
    };
    let mut errors = Vec::new();
    for source in catalog.sources() {
        if let Err(e) = source.load_files(&config, &mut files) {
            errors.extend(e);
        }
    }
    if !errors.is_empty() {
        return Err(sorted(errors));
    }
    config.snapshot = Arc::new(files.into_snapshot());
    Ok(config)
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by(|a, b| (a.file.as_str(), a.line).cmp(&(b.file.as_str(), b.line)));
    errors
}

#[cfg(test)]
mod tests {
    use crate::config::parse_syntax;
    use crate::config::test_support::{errors, load_text};

    #[test]
    fn all_errors_collected_and_sorted() {
        let text = "Zebra 1\n<Server>\nWorkers 1\n</Server>\nKeepAlive maybe\n";
        assert_eq!(
            errors(text),
            [
                "t.conf:1: Zebra: unknown directive",
                "t.conf:2: Server (plugin core): no listen address; add `Port 8000`, `Listen ADDR:PORT` \
                 or `<Server ADDR:PORT>`",
                "t.conf:3: Workers (plugin core): not allowed in <Server>; allowed in: global",
                "t.conf:5: KeepAlive (plugin core): expected On or Off, got \"maybe\"",
            ]
        );
    }

    /// xorshift64*: deterministic, dependency-free randomness for the
    /// robustness test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Never panics, whatever the input: random bytes, and random edits of a
    /// realistic config (which keeps most lines meaningful, so validation
    /// and merging are exercised, not just the tokenizer).
    #[test]
    fn random_input_never_panics() {
        let sample = "\u{feff}# sample\nPlugin hello\nPlugin serve_file\nPlugin serve_cgi\nWorkers 4 # four\n\
                      PluginDir lua\nKeepAlive off\n<Server [::1]:8080 8000>\n  Port 8001\n  ServerName a.com\n  \
                      ServerAlias *.a.com\n  CGI_Match \"\\.(cgi|pl)$\"\n  DirectoryIndex a 'b c' \\\n   d\n  \
                      Pair 1 2\n  <Perl x>\n    line \"q\"\n  </Perl>\n  <Location /icons>\n    Greeting 'hi'\n    \
                      Verbose\n    MaxRequestBody 10M\n    <Location /icons/s>\n      SendTimeout 1m30s\n    \
                      </Location>\n  </Location>\n</Server>\r\n<Server 9000>\n</Server>\n";
        assert!(load_text(sample).is_ok(), "{:?}", load_text(sample).err());
        let alphabet = b"<>/\"'\\# \n\r\tPlugServerLocation0123456789*?-_KMGms\0";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = rng.below(200);
                (0..len)
                    .map(|_| {
                        if rng.below(3) == 0 {
                            rng.next() as u8
                        } else {
                            alphabet[rng.below(alphabet.len())]
                        }
                    })
                    .collect()
            } else {
                let mut b = sample.as_bytes().to_vec();
                for _ in 0..1 + rng.below(4) {
                    let pos = rng.below(b.len());
                    match rng.below(4) {
                        0 => b[pos] = alphabet[rng.below(alphabet.len())],
                        1 => {
                            b.remove(pos);
                        }
                        2 => b.insert(pos, alphabet[rng.below(alphabet.len())]),
                        _ => {
                            // Duplicate a slice: repeats lines and blocks.
                            let end = (pos + rng.below(40)).min(b.len());
                            let piece = b[pos..end].to_vec();
                            b.splice(pos..pos, piece);
                        }
                    }
                }
                b
            };
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_syntax(&text, "fuzz.conf");
            if let Err(errs) = load_text(&text) {
                assert!(!errs.is_empty());
                for e in &errs {
                    let _ = e.to_string();
                }
            }
        }
    }
}
