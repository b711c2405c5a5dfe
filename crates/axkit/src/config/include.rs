//! The first loading stage: read the main config and every file it
//! `Include`s (a path, or `*`/`?` wildcards in its last component, sorted
//! by name), parse each with [`syntax`](super::syntax), and splice the
//! included nodes in place of their `Include` line. Cycles, nesting depth
//! (of includes, and of blocks across files) and unreadable files are
//! errors at the `Include` line.
//!
//! Every file is read through a [`FileReader`], so a worker replays the
//! files its master read instead of the disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::{ConfigError, Source};
use super::registry::{same_name, CORE};
use super::snapshot::{FileReader, Snapshot};
use super::syntax::{parse, Node, MAX_DEPTH};
use super::value::quote;

/// `Include` inside included files may nest this deep.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads a config's files; [`read_main`](Self::read_main) does the whole
/// stage.
pub(super) struct Reader<'a> {
    pub(super) errors: Vec<ConfigError>,
    /// From the disk (recording) or from the snapshot being replayed.
    pub(super) files: FileReader<'a>,
    /// Canonical paths of the files being read, outermost first: a file
    /// already on it is an include cycle.
    include_stack: Vec<PathBuf>,
}

/// Where an `Include` is, for its errors.
struct At<'a> {
    file: &'a Arc<str>,
    line: u32,
}

impl At<'_> {
    fn error(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line,
            directive: Some("Include".to_string()),
            plugin: Some(CORE.to_string()),
            message,
        }
    }
}

impl<'a> Reader<'a> {
    /// Files from the disk, or from `replay` when it is given.
    pub(super) fn new(replay: Option<&'a Snapshot>) -> Reader<'a> {
        Reader {
            errors: Vec::new(),
            files: FileReader::new(replay),
            include_stack: Vec::new(),
        }
    }

    /// The main file's name as errors show it, and its nodes with every
    /// `Include` expanded; None if it cannot be read or parsed (the
    /// errors say why).
    pub(super) fn read_main(&mut self, source: &Source) -> Option<(String, Vec<Node>)> {
        match source {
            Source::File(path) => {
                let name = path.display().to_string();
                let (canon, text) = match self.files.config_file(path) {
                    Ok(read) => read,
                    Err(e) => {
                        self.errors.push(ConfigError {
                            file: name,
                            line: 0,
                            directive: None,
                            plugin: None,
                            message: format!("cannot read: {e}"),
                        });
                        return None;
                    }
                };
                self.include_stack.push(canon);
                let nodes = self.parse_text(&text, &name)?;
                let dir = path.parent().unwrap_or(Path::new(""));
                let nodes = self.expand(nodes, dir, 0, 0);
                Some((name, nodes))
            }
            Source::Text { name, text } => {
                let nodes = self.parse_text(text, name)?;
                let nodes = self.expand(nodes, Path::new(""), 0, 0);
                Some((name.clone(), nodes))
            }
        }
    }

    fn parse_text(&mut self, text: &str, name: &str) -> Option<Vec<Node>> {
        match parse(text, name) {
            Ok(nodes) => Some(nodes),
            Err(errs) => {
                self.errors.extend(errs);
                None
            }
        }
    }

    /// Replaces `Include` lines by the nodes of the files they name, at any
    /// depth. `dir` is the directory of the file `nodes` came from;
    /// `block_depth` counts the blocks around `nodes`, across files, so that
    /// includes cannot be used to nest blocks deeper than the parser allows.
    fn expand(
        &mut self,
        nodes: Vec<Node>,
        dir: &Path,
        includes: usize,
        block_depth: usize,
    ) -> Vec<Node> {
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            match node {
                Node::Directive {
                    name,
                    args,
                    file,
                    line,
                } if same_name(&name, "Include") => {
                    let at = At { file: &file, line };
                    if args.len() != 1 {
                        let msg = format!(
                            "expected 1 argument, got {}; usage: Include <path>",
                            args.len()
                        );
                        self.errors.push(at.error(msg));
                        continue;
                    }
                    for path in self.resolve(&at, dir, &args[0]) {
                        out.extend(self.include(&at, &path, includes + 1, block_depth));
                    }
                }
                Node::Block {
                    ref name,
                    ref file,
                    line,
                    ..
                } if same_name(name, "Include") => {
                    let at = At { file, line };
                    let msg =
                        "is not a block; write it as a single line: `Include <path>`".to_string();
                    self.errors.push(at.error(msg));
                }
                Node::Block {
                    name,
                    args,
                    children,
                    file,
                    line,
                } => {
                    if block_depth >= MAX_DEPTH {
                        self.errors.push(ConfigError {
                            file: file.to_string(),
                            line,
                            directive: None,
                            plugin: None,
                            message: format!(
                                "blocks nested deeper than {MAX_DEPTH} (through Include)"
                            ),
                        });
                        continue;
                    }
                    let children = self.expand(children, dir, includes, block_depth + 1);
                    out.push(Node::Block {
                        name,
                        args,
                        children,
                        file,
                        line,
                    });
                }
                other => out.push(other),
            }
        }
        out
    }

    /// The files an `Include` argument names: itself, or every regular file
    /// matching a `*`/`?` pattern in its last component, sorted by name.
    fn resolve(&mut self, at: &At<'_>, dir: &Path, arg: &str) -> Vec<PathBuf> {
        let path = dir.join(arg);
        let pattern = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !pattern.contains(['*', '?']) {
            return vec![path];
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        if parent.to_string_lossy().contains(['*', '?']) {
            self.errors.push(at.error(format!(
                "wildcards are only allowed in the last path component: {}",
                quote(arg)
            )));
            return Vec::new();
        }
        let entries = match self.files.list_dir(parent) {
            Ok(e) => e,
            Err(e) => {
                self.errors
                    .push(at.error(format!("cannot read directory {}: {e}", parent.display())));
                return Vec::new();
            }
        };
        let pat: Vec<char> = pattern.chars().collect();
        let mut names: Vec<String> = entries
            .into_iter()
            // Like a shell, `*` does not pick up hidden files (editor swap
            // files, `.#locks`) unless the pattern asks for a dot.
            .filter(|n| !n.starts_with('.') || pattern.starts_with('.'))
            .filter(|n| glob_match(&pat, &n.chars().collect::<Vec<_>>()))
            .collect();
        names.sort();
        names.into_iter().map(|n| parent.join(n)).collect()
    }

    fn include(
        &mut self,
        at: &At<'_>,
        path: &Path,
        includes: usize,
        block_depth: usize,
    ) -> Vec<Node> {
        if includes > MAX_INCLUDE_DEPTH {
            self.errors
                .push(at.error(format!("includes nested deeper than {MAX_INCLUDE_DEPTH}")));
            return Vec::new();
        }
        let shown = path.display().to_string();
        let (canon, text) = match self.files.config_file(path) {
            Ok(read) => read,
            Err(e) => {
                self.errors
                    .push(at.error(format!("cannot read {shown}: {e}")));
                return Vec::new();
            }
        };
        if self.include_stack.contains(&canon) {
            self.errors
                .push(at.error(format!("include cycle: {shown} is already being read")));
            return Vec::new();
        }
        let Some(nodes) = self.parse_text(&text, &shown) else {
            return Vec::new();
        };
        self.include_stack.push(canon);
        let dir = path.parent().unwrap_or(Path::new(""));
        let out = self.expand(nodes, dir, includes, block_depth);
        self.include_stack.pop();
        out
    }
}

/// `*` and `?` matching with single-star backtracking: linear-ish, no
/// recursion, so a pattern like `*a*a*a*b` can't blow up.
fn glob_match(pat: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::config::test_support::{catalog, error_strings};

    #[test]
    fn missing_file() {
        let path = std::env::temp_dir().join("axkit-config-test-does-not-exist/x.conf");
        let errs = load(&Source::File(path.clone()), &catalog()).unwrap_err();
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!(
                "{}: cannot read: No such file or directory (os error 2)",
                path.display()
            )]
        );
    }

    /// A fresh directory with a random name, removed on drop, to write
    /// config files into.
    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Files {
            Files(tempfile::tempdir().unwrap())
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.path().join(name)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.path(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    #[test]
    fn include_files_and_wildcards() {
        let t = Files::new();
        t.write("conf.d/20-b.conf", "Greeting from-b\n");
        t.write("conf.d/10-a.conf", "Plugin hello\nGreeting from-a\n");
        t.write("conf.d/.hidden.conf", "Zebra 1\n");
        t.write("conf.d/notes.txt", "Zebra 1\n");
        t.write("server.conf", "Port 80\nInclude conf.d/*.conf\n");
        let main = t.write(
            "main.conf",
            "<Server>\n  Include server.conf\n  Include conf.d/*.none\n</Server>\n",
        );
        let cfg = load(&Source::File(main.clone()), &catalog()).unwrap();
        let root = &cfg.servers[0].locations[0];
        assert_eq!(root.config.str("Greeting"), Some("from-b"));
        assert_eq!(root.plugins, ["hello"]);
        let g = &root.config.settings("Greeting")[0];
        assert!(g.file.ends_with("20-b.conf"), "{}", g.file);
        assert_eq!(g.line, 1);
        let names: Vec<String> = cfg
            .snapshot
            .files()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["main.conf", "server.conf", "10-a.conf", "20-b.conf"]
        );

        // A plain missing include is an error at the Include line.
        let bad = t.write("bad.conf", "Include missing.conf\n<Server 80>\n</Server>\n");
        let missing = t.path("missing.conf");
        assert_eq!(
            error_strings(load(&Source::File(bad.clone()), &catalog())),
            [format!(
                "{}:1: Include (plugin core): cannot read {}: No such file or directory (os error 2)",
                bad.display(),
                missing.display()
            )]
        );
        // Errors inside included files name the included file.
        t.write("typo.conf", "Wrokers 2\n");
        let inc = t.write("inc.conf", "Include typo.conf\n<Server 80>\n</Server>\n");
        assert_eq!(
            error_strings(load(&Source::File(inc), &catalog())),
            [format!(
                "{}:1: Wrokers: unknown directive; did you mean `Workers`?",
                t.path("typo.conf").display()
            )]
        );
        let args = t.write(
            "args.conf",
            "Include\n<Include x>\n</Include>\n<Server 80>\n</Server>\n",
        );
        assert_eq!(
            error_strings(load(&Source::File(args.clone()), &catalog())),
            [
                format!("{}:1: Include (plugin core): expected 1 argument, got 0; usage: Include <path>", args.display()),
                format!(
                    "{}:2: Include (plugin core): is not a block; write it as a single line: `Include <path>`",
                    args.display()
                ),
            ]
        );
    }

    #[test]
    fn include_cycles_and_depth() {
        let t = Files::new();
        let a = t.write("a.conf", "Include b.conf\n<Server 80>\n</Server>\n");
        let b = t.write("b.conf", "Include a.conf\n");
        assert_eq!(
            error_strings(load(&Source::File(a.clone()), &catalog())),
            [format!(
                "{}:1: Include (plugin core): include cycle: {} is already being read",
                b.display(),
                t.path("a.conf").display()
            )]
        );
        // A chain of 17 nested includes is one too many.
        for i in 0..17 {
            t.write(&format!("d{i}.conf"), &format!("Include d{}.conf\n", i + 1));
        }
        t.write("d17.conf", "Workers 1\n");
        let main = t.write("deep.conf", "Include d0.conf\n<Server 80>\n</Server>\n");
        assert_eq!(
            error_strings(load(&Source::File(main), &catalog())),
            [format!(
                "{}:1: Include (plugin core): includes nested deeper than 16",
                t.path("d15.conf").display()
            )]
        );
        t.write("d15.conf", "Workers 1\n");
        assert!(load(&Source::File(t.path("deep.conf")), &catalog()).is_ok());
        // Includes cannot be used to nest blocks past the parser's limit.
        t.write("nest.conf", "<Perl>\nInclude nest2.conf\n</Perl>\n");
        t.write("nest2.conf", &("<A>\n".repeat(32) + &"</A>\n".repeat(32)));
        let m = t.write(
            "nestmain.conf",
            "Plugin hello\nInclude nest.conf\n<Server 80>\n</Server>\n",
        );
        let errs = error_strings(load(&Source::File(m), &catalog()));
        assert!(
            errs[0].ends_with("blocks nested deeper than 32 (through Include)"),
            "{errs:?}"
        );
    }

    #[test]
    fn glob() {
        let g = |p: &str, n: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*.conf", "a.conf"));
        assert!(g("*.conf", ".conf"));
        assert!(!g("*.conf", "a.confx"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*", ""));
        assert!(g("**a*", "bab"));
        assert!(!g(&"*a".repeat(50), &"a".repeat(40)));
    }
}
