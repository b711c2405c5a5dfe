//! Static files and caching, through the stock `axkit` binary: caching
//! headers per Location (`Expires`), precompressed siblings, the open-file
//! cache (on by default; misses and hits kept for their validity, its
//! directive's syntax, its share of the descriptors, entries closed once
//! expired), and files that change or shrink while cached or
//! being sent.
//!
//! Every server runs as one process (`--no-master`); each test starts its
//! own so that they can run in parallel.

mod common;
#[path = "common/static_files.rs"]
mod static_files;

use std::time::Duration;

use common::*;
use static_files::*;

#[test]
fn cache_control_and_expires_per_location() {
    let srv = Axkit::start_single_with(
        &files_conf(
            "    <Location /assets>
        CacheControl \"public, max-age=3600\"
        Expires access+1h
    </Location>
    <Location /mod>
        Expires modification+1d
    </Location>",
        ),
        |d| {
            set_mtime(&d.write("www/assets/a.css", "p{}"));
            set_mtime(&d.write("www/mod/m.txt", "m"));
            set_mtime(&d.write("www/plain.txt", "p"));
        },
    );
    let r = get(&srv, "/assets/a.css", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Cache-Control"), Some("public, max-age=3600"));
    let expires = httpdate::parse_http_date(r.header("Expires").unwrap()).unwrap();
    let date = httpdate::parse_http_date(r.header("Date").unwrap()).unwrap();
    let ahead = expires.duration_since(date).unwrap().as_secs();
    assert!((3599..=3601).contains(&ahead), "{ahead}");
    let r = get(&srv, "/mod/m.txt", "");
    assert_eq!(r.header("Expires"), Some("Mon, 07 Nov 1994 08:49:37 GMT"));
    assert_eq!(r.header("Cache-Control"), None);
    let r = get(&srv, "/plain.txt", "");
    assert_eq!(r.header("Expires"), None);
    assert_eq!(r.header("Cache-Control"), None);
}

#[test]
fn bad_expires_is_a_config_error() {
    let dir = TempDir::new("expires");
    let conf = dir.write(
        "axkit.conf",
        config_text(&dir, &files_conf("Expires tomorrow")),
    );
    let err = refused_at_start(&conf);
    assert!(err.contains("Expires"), "{err}");
}

#[test]
fn precompressed_siblings_by_accept_encoding() {
    precompressed_checks("");
}

#[test]
fn precompressed_siblings_with_the_open_file_cache_off() {
    precompressed_checks("OpenFileCache Off");
}

fn precompressed_checks(extra: &str) {
    let srv = Axkit::start_single_with(
        &files_conf(&format!("Precompressed br gzip\n{extra}")),
        |d| {
            set_mtime(&d.write("www/app.js", "plain javascript"));
            d.write("www/app.js.gz", "GZ-BYTES");
            d.write("www/app.js.br", "BR-BYTES!");
            d.write("www/only.css", "css");
            d.write("www/only.css.gz", "GZCSS");
        },
    );
    let r = get(&srv, "/app.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "BR-BYTES!");
    assert_eq!(r.header("Content-Encoding"), Some("br"));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(
        r.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let br_etag = r.header("ETag").unwrap().to_string();
    let r = get(&srv, "/app.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.text(), "GZ-BYTES");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_ne!(r.header("ETag"), Some(br_etag.as_str()));
    let r = get(&srv, "/app.js", "Accept-Encoding: br;q=0, gzip\r\n");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    let r = get(&srv, "/app.js", "");
    assert_eq!(r.text(), "plain javascript");
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    let r = get(&srv, "/only.css", "Accept-Encoding: br\r\n");
    assert_eq!(r.text(), "css");
    // Ranges apply to the encoded bytes.
    let r = get(
        &srv,
        "/app.js",
        "Accept-Encoding: gzip\r\nRange: bytes=0-1\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.text(), "GZ");
    assert_eq!(r.header("Content-Range"), Some("bytes 0-1/8"));
    // Conditional on the encoded file's validator.
    let r = get(
        &srv,
        "/app.js",
        &format!("Accept-Encoding: br\r\nIf-None-Match: {br_etag}\r\n"),
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
}

#[test]
fn precompressed_sibling_symlink_is_not_followed() {
    let srv = Axkit::start_single_with(&files_conf("Precompressed gzip"), |d| {
        d.write("secret.txt", "SECRET");
        d.write("www/a.txt", "plain");
        std::os::unix::fs::symlink(d.path().join("secret.txt"), d.path().join("www/a.txt.gz"))
            .unwrap();
    });
    let r = get(&srv, "/a.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "plain");
}

/// Precompressed siblings go through the open-file cache: one found stays
/// served after it is deleted, and one missing stays unsent after it is
/// created, until the entries expire.
#[test]
fn precompressed_siblings_found_and_missing_are_cached() {
    let srv = Axkit::start_single_with(&files_conf("Precompressed br gzip"), |d| {
        d.write("www/app.js", "plain javascript");
        d.write("www/app.js.gz", "GZ-BYTES");
        d.write("www/big.js", big_content());
    });
    let www = srv.dir.path().join("www");
    let enc = "Accept-Encoding: br, gzip\r\n";
    assert_eq!(get(&srv, "/app.js", enc).text(), "GZ-BYTES");
    assert_eq!(get(&srv, "/big.js", enc).body, big_content());
    std::fs::remove_file(www.join("app.js.gz")).unwrap();
    std::fs::write(www.join("app.js.br"), "BR-BYTES").unwrap();
    std::fs::write(www.join("big.js.gz"), "BIG-GZ").unwrap();
    let r = get(&srv, "/app.js", enc);
    assert_eq!(r.text(), "GZ-BYTES", "a cached sibling and a cached miss");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    let r = get(&srv, "/big.js", enc);
    assert_eq!(r.header("Content-Encoding"), None, "cached misses");
    assert_eq!(r.body, big_content());
    // Past the entries' validity (1 s): the time passing is what is
    // tested.
    std::thread::sleep(Duration::from_millis(1100));
    let r = get(&srv, "/app.js", enc);
    assert_eq!(r.text(), "BR-BYTES");
    assert_eq!(r.header("Content-Encoding"), Some("br"));
    let r = get(&srv, "/big.js", enc);
    assert_eq!(r.text(), "BIG-GZ");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
}

#[test]
fn open_file_cache_keeps_misses_and_hits_for_its_validity() {
    let srv = Axkit::start_single_with(&files_conf("OpenFileCache 100 1s"), |d| {
        d.write("www/a.txt", "v1");
        std::fs::create_dir_all(d.path().join("www/dir")).unwrap();
        d.write("www/dir/index.html", "index");
    });
    let www = srv.dir.path().join("www");
    assert_eq!(get(&srv, "/late.txt", "").status, 404);
    assert_eq!(get(&srv, "/a.txt", "").text(), "v1");
    assert_eq!(get(&srv, "/dir/", "").text(), "index");
    // Cached: a new file and a vanished one are seen only when the entry
    // expires.
    std::fs::write(www.join("late.txt"), "late").unwrap();
    std::fs::remove_file(www.join("a.txt")).unwrap();
    assert_eq!(get(&srv, "/late.txt", "").status, 404, "cached miss");
    assert_eq!(get(&srv, "/a.txt", "").text(), "v1", "cached open file");
    // A cached directory index never hides the slash redirect.
    assert_eq!(get(&srv, "/dir", "").status, 301);
    // Past the entries' validity (1 s): the time passing is what is
    // tested.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(&srv, "/late.txt", "").text(), "late");
    assert_eq!(get(&srv, "/a.txt", "").status, 404);
    // Path info and escapes behave as without the cache.
    assert_eq!(get(&srv, "/dir/index.html/extra", "").status, 404);
}

/// `OpenFileCache` written wrong: `--check` names file, line and what was
/// expected; the old two-directive form is gone.
#[test]
fn open_file_cache_directive_syntax_and_errors() {
    let check = |line: &str| {
        let dir = TempDir::new("ofc");
        // A DocumentRoot that does not exist is a --check error of its own.
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        let conf = dir.write("axkit.conf", config_text(&dir, &files_conf(line)));
        let out = std::process::Command::new(BIN)
            .args(["--check", "-c"])
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err, conf.display().to_string())
    };
    for ok in [
        "OpenFileCache 10 1s",
        "OpenFileCache 5000 500ms",
        "OpenFileCache Off",
        "OpenFileCache off",
    ] {
        let (code, err, _) = check(ok);
        assert_eq!(code, Some(0), "{ok}: {err}");
    }
    // files_conf puts the extra line on line 9.
    for (bad, why) in [
        (
            "OpenFileCache 1000",
            "expected OpenFileCache SIZE TTL (like 1000 1s) or Off, got \"1000\"",
        ),
        ("OpenFileCache 0 1s", "SIZE must be a positive number"),
        ("OpenFileCache many 1s", "SIZE must be a positive number"),
        ("OpenFileCache 10 soon", "TTL: expected a duration"),
        ("OpenFileCache On", "got \"On\""),
    ] {
        let (code, err, file) = check(bad);
        assert_eq!(code, Some(1), "{bad}: {err}");
        assert!(
            err.contains(&format!("{file}:9: OpenFileCache (plugin uri_to_file): ")),
            "{bad}: {err}"
        );
        assert!(err.contains(why), "{bad}: {err}");
    }
    let (code, err, file) = check("OpenFileCache 10 1s 1s");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{file}:9: OpenFileCache")), "{err}");
    let (code, err, file) = check("OpenFileCacheValid 1s");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{file}:9: OpenFileCacheValid: unknown directive")),
        "{err}"
    );
}

/// With no `OpenFileCache` line the cache is on (1000 entries, 1 s): a
/// file changed on disk is served as it was, with matching validators,
/// until the entry expires; then the new contents and validators. With
/// `Off` the change is seen at once.
#[test]
fn open_file_cache_is_on_by_default_and_changes_show_after_its_ttl() {
    for (extra, cached) in [("", true), ("OpenFileCache Off", false)] {
        let srv = Axkit::start_single_with(&files_conf(extra), |d| {
            d.write("www/small.txt", "version one");
            d.write("www/big.bin", big_content());
        });
        let www = srv.dir.path().join("www");
        let first = get(&srv, "/small.txt", "");
        assert_eq!(first.text(), "version one");
        let etag = first.header("ETag").unwrap().to_string();
        let big_etag = get(&srv, "/big.bin", "")
            .header("ETag")
            .unwrap()
            .to_string();
        assert_eq!(get(&srv, "/gone-later.txt", "").status, 404);
        std::fs::write(www.join("small.txt"), "version two!").unwrap();
        std::fs::write(www.join("gone-later.txt"), "here now").unwrap();
        let mut bigger = big_content();
        bigger.extend_from_slice(b"more");
        std::fs::write(www.join("big.bin"), &bigger).unwrap();
        let r = get(&srv, "/small.txt", "");
        let late = get(&srv, "/gone-later.txt", "");
        let big = get(&srv, "/big.bin", "");
        if cached {
            // The snapshot and its own validators, never a mix.
            assert_eq!(r.text(), "version one", "cached contents");
            assert_eq!(r.header("ETag"), Some(etag.as_str()));
            assert_eq!(late.status, 404, "cached miss");
            // A large file is sent from the open descriptor: the file was
            // rewritten in place, so the announced (old) length is sent.
            assert_eq!(big.header("ETag"), Some(big_etag.as_str()));
            // Past the entries' validity (1 s): the time passing is what
            // is tested.
            std::thread::sleep(Duration::from_millis(1100));
        }
        let r = get(&srv, "/small.txt", "");
        assert_eq!(r.text(), "version two!");
        assert_ne!(r.header("ETag"), Some(etag.as_str()));
        assert_eq!(get(&srv, "/gone-later.txt", "").text(), "here now");
        let big = get(&srv, "/big.bin", "");
        assert_eq!(big.body, bigger);
        assert_ne!(big.header("ETag"), Some(big_etag.as_str()));
    }
}

/// The descriptors of `pid` that are files beneath `dir`.
fn files_open_under(pid: i32, dir: &std::path::Path) -> usize {
    let dir = dir.to_str().unwrap();
    fd_targets(pid)
        .iter()
        .filter(|t| t.starts_with(dir))
        .count()
}

/// The cache's files are part of the worker's descriptors: with an
/// open-file limit of 256 and the default MaxConnections (224), it keeps
/// at most 16 files open, whatever its SIZE, so that a worker that served
/// 200 files and holds 210 silent connections still accepts the next
/// client at once instead of failing with EMFILE below MaxConnections
/// (where nothing made room).
#[test]
fn the_open_file_cache_keeps_within_the_descriptors_connections_leave() {
    let conf =
        files_conf("OpenFileCache 1000 60s").replace("Workers 1", "Workers 1\nLogLevel LOGINFO");
    let mut srv = Axkit::start_single_with_open_files(&conf, 256, |d| {
        d.write("www/d.txt", digits100());
        for i in 0..200 {
            d.write(&format!("www/many/f{i}"), "x");
        }
    });
    let many = srv.dir.path().join("www/many");
    for i in 0..200 {
        assert_eq!(get(&srv, &format!("/many/f{i}"), "").status, 200, "f{i}");
    }
    let held = files_open_under(srv.pid(), &many);
    assert!(held <= 16, "{held} files held open");
    let silent: Vec<_> = (0..210).map(|_| srv.connect()).collect();
    let probe = get(&srv, "/d.txt", "");
    assert_eq!(probe.status, 200);
    assert_eq!(probe.text(), digits100());
    let log = srv.sync_stderr();
    assert!(!log.contains("out of file descriptors"), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
    drop(silent);
}

/// An entry past its TTL is closed even if nothing looks the path up
/// again: a big file served once and then deleted does not stay open
/// (holding its disk space) in the worker.
#[test]
fn an_expired_entry_closes_its_file() {
    let srv = files_server("OpenFileCache 100 1s");
    let big = srv.dir.path().join("www/big.bin");
    assert_eq!(get(&srv, "/big.bin", "").body, big_content());
    let holds = || {
        fd_targets(srv.pid())
            .iter()
            .any(|t| t.starts_with(big.to_str().unwrap()))
    };
    assert!(holds(), "the cache keeps the file open");
    std::fs::remove_file(&big).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !holds()),
        "still open: {:?}",
        fd_targets(srv.pid())
    );
}

#[test]
fn a_file_that_shrinks_while_sent_closes_the_connection() {
    // Larger than what the loopback socket buffers can hold, so the
    // server is still sending when the file is cut.
    const LEN: usize = 32 << 20;
    let srv = files_server("");
    let path = srv.dir.path().join("www/huge.bin");
    std::fs::write(&path, vec![7u8; LEN]).unwrap();
    let mut s = srv.connect();
    use std::io::Write;
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Do not read yet: the server fills the socket and waits. The file is
    // cut once the response is under way: its head has come, announcing
    // the whole length (peeked, so that it is read again below).
    let mut peeked = [0u8; 4096];
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = s.peek(&mut peeked).unwrap_or(0);
            peeked[..n].windows(4).any(|w| w == b"\r\n\r\n")
        }),
        "no response head"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (all, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection closes");
    let head_end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(String::from_utf8_lossy(&all[..head_end]).contains(&format!("Content-Length: {LEN}")));
    let body = &all[head_end..];
    // Nothing is sent after the cut: what arrives is what was already
    // queued (those bytes may read as zeros: truncation zeroes the page
    // cache pages the socket still references, as with any sendfile
    // server).
    assert!(body.len() < LEN, "stopped short: {}", body.len());
    // And the worker still serves.
    assert_eq!(get(&srv, "/d.txt", "").status, 200);
}

/// A large file kept open by the open-file cache and cut short between
/// two requests: the second response announces the length the cache knew,
/// sends the bytes that still exist and closes the connection, never
/// anything past the new end. (Should the cache entry have expired in
/// between, the new length is announced instead; the bytes are the same.)
#[test]
fn a_cached_file_that_shrank_is_never_sent_past_its_end() {
    let srv = files_server("");
    let big = big_content();
    assert_eq!(get(&srv, "/big.bin", "").body, big);
    std::fs::OpenOptions::new()
        .write(true)
        .open(srv.dir.path().join("www/big.bin"))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let (bytes, closed) = srv.raw(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let announced_old = head.contains("Content-Length: 200000\r\n");
    assert!(
        announced_old || head.contains("Content-Length: 1000\r\n"),
        "{head}"
    );
    assert!(closed || !announced_old, "the connection closes");
    assert!(
        bytes[head_end..] == big[..1000],
        "only the bytes that exist"
    );
    assert_eq!(
        get(&srv, "/d.txt", "").status,
        200,
        "the worker still serves"
    );
}

/// A directory mapped by two Locations with different `DirectoryIndex`
/// names: each gets its own index, whichever filled the open-file cache
/// first (a directory's entry is kept with the names it was picked among).
#[test]
fn open_file_cache_keeps_each_locations_directory_index() {
    let srv = Axkit::start_single_with(
        &files_conf(
            "    <Location /mirror>
        DocumentRoot {dir}/www
        DirectoryIndex default.txt
    </Location>",
        ),
        |d| {
            d.write("www/m/index.html", "INDEX");
            d.write("www/m/default.txt", "DEFAULT");
        },
    );
    for _ in 0..2 {
        assert_eq!(get(&srv, "/m/", "").text(), "INDEX");
        assert_eq!(get(&srv, "/mirror/m/", "").text(), "DEFAULT");
    }
}
