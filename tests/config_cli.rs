//! The `axkit` command line and configuration errors, end to end: each test
//! writes a config file, runs the real binary (`axkit --check -c FILE`, or
//! plain `axkit -c FILE`) and checks the exit status and the exact lines on
//! stderr (`FILE:LINE: DIRECTIVE (plugin P): message`). Also `--directives`,
//! `--help`, `--version`, name normalisation (`document_root`), the sample
//! `etc/axkit.conf` (and README.md's example of a typo in it), and a
//! robustness check: randomly mutated configs never make `--check` panic or
//! exit with anything but 0 or 1.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// What one run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

/// Run `axkit ARGS` in `cwd` (the crate root by default) and wait for it,
/// killing it after 20 s: none of these commands serves anything.
fn axkit_in(args: &[&str], cwd: Option<&Path>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd.unwrap_or(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn axkit");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("axkit {args:?} did not exit within 20 s");
    };
    let stdout = String::from_utf8_lossy(&out_thread.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_thread.join().unwrap()).into_owned();
    Run {
        code: status.code(),
        stdout,
        stderr,
    }
}

fn axkit(args: &[&str]) -> Run {
    axkit_in(args, None)
}

/// Write `text` as `t.conf` in a fresh directory and run `axkit --check -c`
/// on it. Returns the directory (kept alive), the file's path as shown in
/// messages, and the run.
fn check(text: &str) -> (TempDir, String, Run) {
    let dir = TempDir::new("cfg");
    let path = dir.write("t.conf", config_text(&dir, text));
    let shown = path.display().to_string();
    let run = axkit(&["--check", "-c", &shown]);
    (dir, shown, run)
}

/// `--check` fails with exactly `expected` (each prefixed by `axkit: FILE`)
/// followed by the summary line; plain `axkit -c FILE` (which would serve)
/// fails the same way, without the summary.
fn assert_errors(text: &str, expected: &[&str]) {
    let (_dir, file, run) = check(text);
    let mut want: Vec<String> = expected
        .iter()
        .map(|e| format!("axkit: {file}{e}"))
        .collect();
    want.push(format!(
        "axkit: configuration {file} has {} error(s)",
        expected.len()
    ));
    assert_eq!(
        run.code,
        Some(1),
        "--check exit status for:\n{text}\nstderr:\n{}",
        run.stderr
    );
    assert_eq!(run.stderr_lines(), want, "--check stderr for:\n{text}");
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);

    let serve = axkit(&["-c", &file]);
    want.pop();
    assert_eq!(
        serve.code,
        Some(1),
        "axkit -c exit status for:\n{text}\nstderr:\n{}",
        serve.stderr
    );
    assert_eq!(serve.stderr_lines(), want, "axkit -c stderr for:\n{text}");
    assert!(!serve.stdout.contains("listening"), "{}", serve.stdout);
}

#[test]
fn unknown_directive_suggests_the_nearest_name() {
    assert_errors(
        "Plugin uri_to_file\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRot /srv\n</Server>\n",
        &[":4: DocumentRot: unknown directive; did you mean `DocumentRoot`?"],
    );
    assert_errors(
        "Wrokers 2\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
        &[":1: Wrokers: unknown directive; did you mean `Workers`?"],
    );
    // Nothing close: no suggestion.
    assert_errors(
        "<Server>\n    Listen 127.0.0.1:0\n    Zebra 1\n</Server>\n",
        &[":3: Zebra: unknown directive"],
    );
}

#[test]
fn directive_in_the_wrong_scope() {
    assert_errors(
        "<Server>\n    Listen 127.0.0.1:0\n    <Location /a>\n        Workers 4\n    </Location>\n</Server>\n",
        &[":4: Workers (plugin core): not allowed in <Location>; allowed in: global"],
    );
    assert_errors(
        "Port 80\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
        &[":1: Port (plugin core): not allowed in global; allowed in: <Server>"],
    );
    assert_errors(
        "<Server>\n    Listen 127.0.0.1:0\n    <Location /a>\n        KeepAlive off\n    </Location>\n</Server>\n",
        &[":4: KeepAlive (plugin core): not allowed in <Location>; allowed in: global, <Server>"],
    );
}

#[test]
fn wrong_argument_count() {
    assert_errors(
        "Plugin uri_to_file\nWorkers 2 3\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot a b\n    \
         KeepAliveTimeout\n    DirectoryIndex\n</Server>\n",
        &[
            ":2: Workers (plugin core): expected 1 argument, got 2; usage: Workers <integer>",
            ":5: DocumentRoot (plugin uri_to_file): expected 1 argument, got 2; usage: DocumentRoot <path>",
            ":6: KeepAliveTimeout (plugin core): expected 1 argument, got 0; usage: KeepAliveTimeout <duration>",
            ":7: DirectoryIndex (plugin uri_to_file): expected at least 1 argument, got 0; \
             usage: DirectoryIndex <string>...",
        ],
    );
}

#[test]
fn bad_typed_values() {
    assert_errors(
        "ShutdownTimeout 5x\nKeepAlive maybe\nMaxHeaders lots\nWorkers -1\n<Server>\n    Listen 127.0.0.1:0\n    \
         MaxRequestBody 10Q\n    StackTrace sometimes\n    Port 70000\n</Server>\n",
        &[
            ":1: ShutdownTimeout (plugin core): expected a duration like 30, 30s, 500ms, 5m, 1h or 1m30s, got \"5x\"",
            ":2: KeepAlive (plugin core): expected On or Off, got \"maybe\"",
            ":3: MaxHeaders (plugin core): expected an integer, got \"lots\"",
            ":4: Workers (plugin core): expected a non-negative integer, got -1",
            ":7: MaxRequestBody (plugin core): expected a size like 512, 10K, 10M or 1G, got \"10Q\"",
            ":8: StackTrace (plugin core): expected On or Off, got \"sometimes\"",
            ":9: Port (plugin core): expected a port number from 0 to 65535, got 70000",
        ],
    );
}

/// A regex value that does not compile (`CGI_Match`, serve_cgi's one
/// directive of that type) is a config error with its position.
#[test]
fn bad_regex_value() {
    assert_errors(
        "Plugin serve_cgi\n<Server>\n    Listen 127.0.0.1:0\n    CGI_Match \"a(b\"\n</Server>\n",
        &[":4: CGI_Match (plugin serve_cgi): invalid regular expression \"a(b\": unclosed group"],
    );
}

#[test]
fn plugin_errors() {
    assert_errors(
        "Plugin serve_fil\nPlugin nothing_like_it\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
        &[
            ":1: Plugin (plugin core): unknown plugin `serve_fil`; did you mean `serve_file`?",
            ":2: Plugin (plugin core): unknown plugin `nothing_like_it`",
        ],
    );
}

/// The duplicate-plugin message names the first occurrence by file; checked
/// separately because the expected text contains the path twice.
fn assert_errors_with_file(text: &str, expected: &[&str]) {
    let (_dir, file, run) = check(text);
    let want: Vec<String> = expected
        .iter()
        .map(|e| format!("axkit: {file}{}", e.replace("FILE", &file)))
        .chain([format!(
            "axkit: configuration {file} has {} error(s)",
            expected.len()
        )])
        .collect();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.stderr_lines(), want);
}

#[test]
fn plugin_listed_twice_in_one_chain() {
    assert_errors_with_file(
        "Plugin uri_to_file\n<Server>\n    Listen 127.0.0.1:0\n    Plugin uri_to_file\n    <Location /a>\n        \
         Plugin serve_file\n        Plugin serve_file\n    </Location>\n</Server>\n",
        &[
            ":4: Plugin (plugin core): plugin `uri_to_file` is already loaded in this scope (FILE:1)",
            ":7: Plugin (plugin core): plugin `serve_file` is already loaded in this scope (FILE:6)",
        ],
    );
    // The same plugin in two sibling Locations is fine.
    let (_dir, _file, run) = check(
        "<Server>\n    Listen 127.0.0.1:0\n    <Location /a>\n        Plugin serve_file\n    </Location>\n    \
         <Location /b>\n        Plugin serve_file\n    </Location>\n</Server>\n",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn directive_of_a_plugin_not_loaded() {
    assert_errors(
        "<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot /srv\n    MimeType md text/markdown\n</Server>\n",
        &[
            ":3: DocumentRoot (plugin uri_to_file): plugin `uri_to_file` is not loaded; add `Plugin uri_to_file`",
            ":4: MimeType (plugin fast_mime_map): plugin `fast_mime_map` is not loaded; add `Plugin fast_mime_map`",
        ],
    );
}

#[test]
fn syntax_errors() {
    assert_errors(
        "<Server>\n    Listen 127.0.0.1:0\n    ServerName \"abc\n</Server>\n",
        &[":3: unterminated \"...\" quote"],
    );
    assert_errors(
        "Workers 1\n<Server>\n    Listen 127.0.0.1:0\n",
        &[":2: `<Server>` is never closed; expected `</Server>`"],
    );
    assert_errors(
        "<Server>\n    Listen 127.0.0.1:0\n</Server>\n</Server>\n",
        &[":4: `</Server>` without a matching `<Server>`"],
    );
    assert_errors("Workers 1\n", &[": no <Server> block: nothing to serve"]);
    assert_errors("", &[": no <Server> block: nothing to serve"]);
}

#[test]
fn missing_config_file() {
    let dir = TempDir::new("cfg");
    let path = dir.path().join("nope/axkit.conf");
    let shown = path.display().to_string();
    let line = format!("axkit: {shown}: cannot read: No such file or directory (os error 2)");
    let run = axkit(&["--check", "-c", &shown]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr_lines(),
        [
            line.clone(),
            format!("axkit: configuration {shown} has 1 error(s)")
        ]
    );
    assert!(!run.stderr.contains("panicked"));
    for mode in [&["-c"][..], &["--no-master", "-c"][..]] {
        let args: Vec<&str> = mode.iter().copied().chain([shown.as_str()]).collect();
        let run = axkit(&args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr_lines(), [line.as_str()], "{args:?}");
    }
}

#[test]
fn unreadable_include() {
    let dir = TempDir::new("cfg");
    std::fs::create_dir_all(dir.path().join("conf.d")).unwrap();
    let file = dir.write(
        "t.conf",
        "Include conf.d\nInclude missing.conf\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
    );
    let f = file.display().to_string();
    let d = dir.path().display();
    let run = axkit(&["--check", "-c", &f]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(
        run.stderr_lines(),
        [
            format!("axkit: {f}:1: Include (plugin core): cannot read {d}/conf.d: not a regular file"),
            format!(
                "axkit: {f}:2: Include (plugin core): cannot read {d}/missing.conf: No such file or directory (os error 2)"
            ),
            format!("axkit: configuration {f} has 2 error(s)"),
        ]
    );
    // No read permission (meaningless for root, who reads anything).
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let secret = dir.write("secret.conf", "Workers 1\n");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        let file = dir.write(
            "u.conf",
            "Include secret.conf\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
        );
        let u = file.display().to_string();
        let run = axkit(&["--check", "-c", &u]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert_eq!(
            run.stderr_lines()[0],
            format!("axkit: {u}:1: Include (plugin core): cannot read {d}/secret.conf: Permission denied (os error 13)")
        );
    }
}

#[test]
fn every_error_in_a_file_is_reported() {
    assert_errors(
        "Zebra 1\nPlugin uri_to_file\n<Server>\n    Listen 127.0.0.1:0\n    Workers 1\n    DocumentRot x\n    \
         <Location /a>\n        Port 1\n    </Location>\n</Server>\nKeepAlive maybe\nPlugin nope\n",
        &[
            // `Zebra 1` (no known directive near it) may be one of `nope`'s:
            // not reported while `nope` is unknown.
            ":5: Workers (plugin core): not allowed in <Server>; allowed in: global",
            ":6: DocumentRot: unknown directive; did you mean `DocumentRoot`?",
            ":8: Port (plugin core): not allowed in <Location>; allowed in: <Server>",
            ":11: KeepAlive (plugin core): expected On or Off, got \"maybe\"",
            ":12: Plugin (plugin core): unknown plugin `nope`",
        ],
    );
}

#[test]
fn sample_config_checks_ok() {
    let root = env!("CARGO_MANIFEST_DIR");
    let conf = format!("{root}/etc/axkit.conf");
    let run = axkit_in(&["--check", "-c", &conf], Some(Path::new(root)));
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    assert_eq!(
        run.stdout.trim(),
        format!("axkit: configuration {conf} is OK")
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // `-t` is the short spelling (as in nginx -t).
    let run = axkit_in(&["-t", "-c", "etc/axkit.conf"], Some(Path::new(root)));
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
}

/// The README's tour step "make a mistake on purpose" shows what `--check`
/// really prints for that typo in the sample config, line number and all.
#[test]
fn readme_typo_example_is_the_real_output() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let shown: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("etc/axkit.conf:") || l.starts_with("axkit: configuration"))
        .collect();
    assert!(!shown.is_empty(), "no --check output in README.md");

    let sample = std::fs::read_to_string(format!("{root}/etc/axkit.conf")).unwrap();
    let right = "\n    DocumentRoot   demo\n";
    assert!(
        sample.contains(right),
        "etc/axkit.conf no longer has {right:?}"
    );
    let dir = TempDir::new("readme");
    dir.write(
        "etc/axkit.conf",
        sample.replacen(right, "\n    DocumentRot demo\n", 1),
    );
    let run = axkit_in(&["--check", "-c", "etc/axkit.conf"], Some(dir.path()));
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert_eq!(run.stderr_lines(), shown, "README.md's --check example");
}

#[test]
fn directives_lists_core_and_plugin_directives() {
    let run = axkit(&["--directives"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    for section in [
        "[core]",
        "[uri_to_file]",
        "[request_log]",
        "[logging/file]",
        "[fast_mime_map]",
    ] {
        assert!(out.lines().any(|l| l == section), "no {section} in:\n{out}");
    }
    let core = out.split("\n[").find(|s| s.starts_with("core]")).unwrap();
    for usage in [
        "  Workers <integer>\n      scopes: global (default: 0)\n      Number of worker processes; 0 means one per CPU",
        "  MaxRequestBody <size>\n      scopes: global, <Server>, <Location> (default: 1M)\n      \
         Largest request body accepted (413 beyond)",
        "  KeepAlive <on|off>\n      scopes: global, <Server> (default: on)",
        "  ShutdownTimeout <duration>\n      scopes: global (default: 30s)",
        "  <Location ...> ... </Location>\n      scopes: <Server>, <Location>",
    ] {
        assert!(core.contains(usage), "no {usage:?} in [core]:\n{core}");
    }
    let files = out
        .split("\n[")
        .find(|s| s.starts_with("uri_to_file]"))
        .unwrap();
    assert!(
        files.contains("  DocumentRoot <path>\n      scopes: "),
        "{files}"
    );
    assert!(files.contains("  DirectoryIndex <string>..."), "{files}");
    // Every entry has a scope line and a doc line.
    let lines: Vec<&str> = out.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("  ") && !l.starts_with("   ") {
            assert!(lines[i + 1].starts_with("      scopes: "), "{l}");
            assert!(
                lines[i + 2].starts_with("      ") && lines[i + 2].trim().len() > 3,
                "{l}: no doc"
            );
        }
    }
}

#[test]
fn help_and_version() {
    let run = axkit(&["--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for flag in ["--config", "--check", "--directives", "--no-master"] {
        assert!(
            run.stdout.contains(flag),
            "{flag} not in --help:\n{}",
            run.stdout
        );
    }
    assert!(
        !run.stdout.contains("--worker "),
        "internal flag shown:\n{}",
        run.stdout
    );
    let run = axkit(&["--version"]);
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.stdout.trim(),
        format!("axkit {}", env!("CARGO_PKG_VERSION"))
    );
    let run = axkit(&["--no-such-flag"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn directive_names_ignore_case_underscores_and_dashes() {
    let text = "plugin uri_to_file\nPLUGIN fast_mime_map\nPlugin serve_file\nshutdown-timeout 5s\n<server>\n    \
                listen 127.0.0.1:0\n    document_root {dir}/www\n    directory-index index.html\n    \
                <location /alt>\n        document-root {dir}/alt\n    </LOCATION>\n</SERVER>\n";
    // The roots exist: `--check` refuses a missing one.
    let dir = TempDir::new("cfg");
    dir.write("www/index.html", "");
    dir.write("alt/a.txt", "");
    let path = dir.write("t.conf", config_text(&dir, text));
    let run = axkit(&["--check", "-c", &path.display().to_string()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let srv = Axkit::start_single_with(text, |dir| {
        dir.write("www/index.html", "main index\n");
        dir.write("www/a.txt", "main a\n");
        dir.write("alt/a.txt", "alt a\n");
    });
    let r = srv.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "main index\n"));
    let r = srv.get("/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "main a\n"));
    let r = srv.get("/alt/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "alt a\n"));
}

/// 200 random byte-level mutations of etc/axkit.conf: `--check` always
/// answers 0 or 1, never panics, never dies of a signal.
#[test]
fn mutated_sample_configs_never_crash_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let sample = std::fs::read(format!("{root}/etc/axkit.conf")).unwrap();
    let alphabet = b"<>/\"'\\# \n\r\t_-*?0123456789KMGmsxOnOff\0\xff";
    let dir = TempDir::new("mut");
    // Relative paths in the sample (`demo`) resolve against the crate root.
    let mut cases = Vec::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ 0xdead_beef);
    for i in 0..200 {
        let mut b = sample.clone();
        for _ in 0..1 + rng.below(6) {
            let pos = rng.below(b.len());
            match rng.below(5) {
                0 => b[pos] = alphabet[rng.below(alphabet.len())],
                1 => {
                    b.remove(pos);
                }
                2 => b.insert(pos, alphabet[rng.below(alphabet.len())]),
                3 => b[pos] = rng.next() as u8,
                _ => {
                    // Duplicate a slice: repeats lines and blocks.
                    let end = (pos + rng.below(80)).min(b.len());
                    let piece = b[pos..end].to_vec();
                    b.splice(pos..pos, piece);
                }
            }
        }
        let path = dir.path().join(format!("m{i}.conf"));
        std::fs::write(&path, &b).unwrap();
        cases.push(path);
    }
    // Two runners: the machine has two cores.
    let halves: Vec<Vec<_>> = vec![
        cases.iter().step_by(2).cloned().collect(),
        cases.iter().skip(1).step_by(2).cloned().collect(),
    ];
    let handles: Vec<_> = halves
        .into_iter()
        .map(|paths| {
            std::thread::spawn(move || {
                let mut ok = 0;
                for path in paths {
                    let p = path.display().to_string();
                    let run = axkit_in(
                        &["--check", "-c", &p],
                        Some(Path::new(env!("CARGO_MANIFEST_DIR"))),
                    );
                    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                    assert!(
                        matches!(run.code, Some(0) | Some(1)),
                        "exit {:?} for {p}:\n{text}\nstderr:\n{}",
                        run.code,
                        run.stderr
                    );
                    assert!(
                        !run.stderr.contains("panicked"),
                        "panic for {p}:\n{text}\nstderr:\n{}",
                        run.stderr
                    );
                    if run.code == Some(1) {
                        // Errors name the file; the summary comes last.
                        // An error a plugin finds when it is built (an
                        // uncommented `Plugin logging/file` without its
                        // LogFile) names the plugin first, as in
                        // `plugin_values_are_checked_by_check` below.
                        let lines = run.stderr_lines();
                        assert!(lines.len() >= 2, "{}", run.stderr);
                        let last = lines.last().unwrap();
                        let config_error = lines[0].starts_with(&format!("axkit: {p}"))
                            && last.ends_with("error(s)");
                        let build_error = lines[0].starts_with("axkit: plugin `")
                            && *last == format!("axkit: configuration {p} has errors");
                        assert!(config_error || build_error, "{}", run.stderr);
                    } else {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Some mutations land in comments: a mix of valid and invalid results.
    assert!(ok > 0 && ok < 200, "{ok} of 200 mutated configs were valid");
}

/// Values of a plugin's own type (here a log format) are checked when the
/// config loads, like any other value: `--check` reports them with file and
/// line, every one of them in one run, without starting a plugin.
#[test]
fn check_reports_every_bad_plugin_value() {
    assert_errors(
        "Plugin request_log\nPlugin uri_to_file\nPlugin serve_file\nPlugin error_doc\n\
         RequestLogFormat \"%{Referer\"\n<Server>\n    Listen 127.0.0.1:0\n    \
         OpenFileCache 10\n    Expires later+1h\n    ErrorDocument 200 /x\n</Server>\n",
        &[
            ":5: RequestLogFormat (plugin request_log): unclosed %{",
            ":8: OpenFileCache (plugin uri_to_file): expected OpenFileCache SIZE TTL (like 1000 1s) or Off, got \"10\"",
            ":9: Expires (plugin serve_file): expected access+DURATION, modification+DURATION or off, got \"later+1h\"",
            ":10: ErrorDocument (plugin error_doc): expected an error status 400-599, got \"200\"",
        ],
    );
}

/// An ErrorDocument that the internal redirect could never follow (its path
/// climbs above the root) is refused by `--check`, not discovered as a 500
/// on the first error.
#[test]
fn check_refuses_an_error_document_above_the_root() {
    assert_errors(
        "Plugin error_doc\n<Server>\n    Listen 127.0.0.1:0\n    ErrorDocument 404 /../../x\n</Server>\n",
        &[":4: ErrorDocument (plugin error_doc): \"/../../x\" does not name a path beneath the root (`..` above it, or a bad %-escape)"],
    );
}

/// What only a plugin can check when it is built is reported for every
/// plugin in one run too, not just the first that fails.
#[test]
fn check_reports_every_plugin_that_cannot_start() {
    let (_dir, file, run) = check(
        "Plugin logging/file\n<Server>\n    Listen 127.0.0.1:0\n    Plugin serve_file\n    \
         Plugin serve_cgi\n</Server>\n",
    );
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    assert!(
        lines[0].contains("plugin `logging/file`: LogFile is not set"),
        "{}",
        run.stderr
    );
    assert!(
        lines[1].contains(
            "plugin `serve_cgi`: `Plugin serve_cgi` must come before `Plugin serve_file`"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(lines[2], format!("axkit: configuration {file} has errors"));
}

/// `--explain URL`: the Server and Location a request meets, every
/// directive in effect there with the line it came from (a secret's value
/// left out), and each hook's plugins in the order the walk calls them
/// (content hooks innermost scope first); `--host` picks a name-based
/// Server; a URL may be a full one.
#[test]
fn explain_prints_scope_directives_and_chains() {
    let dir = TempDir::new("explain");
    let conf = dir.write(
        "t.conf",
        "Plugin logging/warn\nDatabase main redis://:hunter2@127.0.0.1:6379/0\n<Server>\n    \
         Listen 127.0.0.1:8080\n    DocumentRoot /srv/www\n    Plugin uri_to_file\n    \
         Plugin serve_file\n    MaxRequestBody 10M\n    <Location /app>\n        Trace On\n        \
         Plugin serve_dir\n        SendTimeout 90s\n    </Location>\n</Server>\n<Server>\n    \
         Listen 127.0.0.1:8080\n    ServerName b.example\n</Server>\n",
    );
    let f = conf.display().to_string();
    let run = axkit(&["--explain", "/app/x?q=1", "-c", &f]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!(
            "Server: {f}:3 (listen 127.0.0.1:8080)\n\
             Location: /app ({f}:9)\n\
             Directives:\n  \
             Plugin logging/warn    # {f}:1 (core)\n  \
             Database (secret, not shown)    # {f}:2 (databases)\n  \
             Listen 127.0.0.1:8080    # {f}:4 (core)\n  \
             DocumentRoot /srv/www    # {f}:5 (uri_to_file)\n  \
             Plugin uri_to_file    # {f}:6 (core)\n  \
             Plugin serve_file    # {f}:7 (core)\n  \
             MaxRequestBody 10M    # {f}:8 (core)\n  \
             Trace on    # {f}:10 (core)\n  \
             Plugin serve_dir    # {f}:11 (core)\n  \
             SendTimeout 90s    # {f}:12 (core)\n\
             Plugins, per hook, in the order they are called:\n  \
             logging: logging/warn\n  \
             uri_translation: uri_to_file\n  \
             response: serve_dir, serve_file (innermost scope first; the first that does not decline answers)\n"
        )
    );
    assert!(!run.stdout.contains("hunter2"));
    let run = axkit(&["--explain", "http://B.example:8080/app", "-c", &f]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let want = format!(
        "Server: {f}:15 (listen 127.0.0.1:8080; names b.example)\n\
         Location: none (the Server's own settings)\n\
         Directives:\n  \
         Plugin logging/warn    # {f}:1 (core)\n  \
         Database (secret, not shown)    # {f}:2 (databases)\n  \
         Listen 127.0.0.1:8080    # {f}:16 (core)\n  \
         ServerName b.example    # {f}:17 (core)\n\
         Plugins, per hook, in the order they are called:\n  \
         logging: logging/warn\n"
    );
    assert_eq!(run.stdout, want);
    let run = axkit(&["--explain", "/app", "--host", "b.example", "-c", &f]);
    assert_eq!(run.stdout, want);
    let run = axkit(&["--explain", "app", "-c", &f]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr_lines(),
        ["axkit: \"app\": expected a path (/PATH) or a URL (http://HOST/PATH)"]
    );
}
