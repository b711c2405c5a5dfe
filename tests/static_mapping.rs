//! Which file a URL gets and as what, through the stock `axkit` binary:
//! directories (the slash redirect, DirectoryIndex, serve_dir listings),
//! typeless URIs, content sniffing, serve_file opening a file another
//! plugin named, and the same rules where `openat2` cannot be called.
//!
//! Every server runs as one process (`--no-master`); each test starts its
//! own so that they can run in parallel.

mod common;
#[path = "common/static_files.rs"]
mod static_files;

use common::*;
use static_files::*;

#[test]
fn directory_without_slash_redirects_with_query_kept() {
    let srv = files_server("");
    std::fs::create_dir_all(srv.dir.path().join("www/sub dir")).unwrap();
    let r = get(&srv, "/sub%20dir?a=1&b=2", "");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub%20dir/?a=1&b=2"));
}

#[test]
fn directory_index_first_existing_name_wins() {
    let conf = files_conf("").replace(
        "DirectoryIndex index.html",
        "DirectoryIndex index.htm default.txt index.html",
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/a/default.txt", "default");
        d.write("www/a/index.html", "html");
        d.write("www/b/index.html", "b-html");
        d.write("www/c/other.txt", "x");
    });
    assert_eq!(get(&srv, "/a/", "").text(), "default");
    assert_eq!(get(&srv, "/b/", "").text(), "b-html");
    // No index and no serve_dir: 403.
    assert_eq!(get(&srv, "/c/", "").status, 403);
}

const LISTING_CONF: &str = "\
Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_dir
    Plugin serve_file
    <Location /hidden>
        DirListHidden on
    </Location>
</Server>
";

#[test]
fn serve_dir_lists_sorted_escaped_with_sizes_and_dates() {
    let evil = "<img src=x onerror=alert(1)>";
    let srv = Axkit::start_single_with(LISTING_CONF, |d| {
        set_mtime(&d.write("www/list/b.txt", "12345"));
        set_mtime(&d.write("www/list/a.txt", "1"));
        set_mtime(&d.write(&format!("www/list/{evil}"), "x"));
        set_mtime(&d.write("www/list/q\"uote&amp.txt", "x"));
        d.write("www/list/.secret", "x");
        std::fs::create_dir_all(d.path().join("www/list/zdir")).unwrap();
        d.write("www/withindex/index.html", "index!");
        d.write("www/hidden/.dot", "x");
    });
    let r = get(&srv, "/list/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(
        html.contains("href=\"./%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\""),
        "{html}"
    );
    assert!(html.contains("q&quot;uote&amp;amp.txt"), "{html}");
    assert!(
        !html.contains(".secret"),
        "dotfiles hidden by default: {html}"
    );
    // Directories first, then names in order; sizes and dates shown.
    let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} in {html}"));
    assert!(pos("zdir/") < pos(">&lt;img") && pos(">&lt;img") < pos(">a.txt<"));
    assert!(pos(">a.txt<") < pos(">b.txt<"));
    assert!(html.contains("<td>5</td>"), "{html}");
    assert!(html.contains(LAST_MODIFIED), "{html}");
    assert!(html.contains("href=\"../\""));
    // An index file still wins; the listing only without one.
    assert_eq!(get(&srv, "/withindex/", "").text(), "index!");
    // Without the slash: the redirect, not a listing.
    assert_eq!(get(&srv, "/list", "").status, 301);
    // HEAD works, other methods do not.
    assert_eq!(request(&srv, "HEAD", "/list/", "").status, 200);
    assert_eq!(request(&srv, "DELETE", "/list/", "").status, 405);
    // DirListHidden on.
    assert!(get(&srv, "/hidden/", "").text().contains(".dot"));
    // The root has no parent link.
    assert!(!get(&srv, "/", "").text().contains("href=\"../\""));
}

/// A listing shows at most `DirListMax` entries, the first by name, and
/// says that it was cut; the page is streamed, and a HEAD reads nothing of
/// the directory (no length: no page was built).
#[test]
fn serve_dir_lists_at_most_dir_list_max_entries() {
    let conf = LISTING_CONF.replace(
        "    <Location /hidden>",
        "    <Location /many>\n        DirListMax 5\n    </Location>\n    <Location /hidden>",
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        for i in 0..12 {
            d.write(&format!("www/many/f{i:02}"), "x");
        }
        std::fs::create_dir_all(d.path().join("www/many/a-dir")).unwrap();
        std::fs::create_dir_all(d.path().join("www/many/zz-dir")).unwrap();
        d.write("www/list/a.txt", "x");
    });
    let r = get(&srv, "/many/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    let html = r.text();
    for shown in [">a-dir/<", ">f00<", ">f01<", ">f02<", ">f03<"] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    for cut in [">f04<", ">f11<", "zz-dir"] {
        assert!(!html.contains(cut), "{cut} in {html}");
    }
    assert!(
        html.contains("Listing cut: the first 5 of 14 entries by name are shown."),
        "{html}"
    );
    assert!(html.ends_with("</body></html>\n"), "{html}");
    // Under the limit, nothing is said.
    let html = get(&srv, "/list/", "").text();
    assert!(
        html.contains(">a.txt<") && !html.contains("Listing cut"),
        "{html}"
    );
    let head = request(&srv, "HEAD", "/many/", "");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(head.header("Content-Length"), None);
}

/// A symlink in a listing is shown as what it would serve under the
/// root's rule: a link to a directory inside the root as a directory, a
/// link out of the root without the size or date of what it points to.
#[test]
fn serve_dir_shows_symlinks_as_the_root_serves_them() {
    let srv = Axkit::start_single_with(LISTING_CONF, |d| {
        std::fs::create_dir_all(d.path().join("www/links/sub")).unwrap();
        d.write("outside.bin", vec![b'x'; 7777]);
        let links = d.path().join("www/links");
        std::os::unix::fs::symlink("sub", links.join("to-sub")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside.bin"), links.join("to-out")).unwrap();
    });
    let html = get(&srv, "/links/", "").text();
    assert!(html.contains(">to-sub/<"), "{html}");
    assert!(html.contains(">to-out<"), "{html}");
    assert!(!html.contains("7777"), "{html}");
    assert_eq!(get(&srv, "/links/to-out", "").status, 403);
    assert_eq!(get(&srv, "/links/to-sub/", "").status, 200);
}

#[test]
fn typeless_uri_serves_the_first_existing_extension_with_its_validators() {
    typeless_checks("");
}

#[test]
fn typeless_uri_with_the_open_file_cache_off() {
    typeless_checks("OpenFileCache Off");
}

fn typeless_checks(extra: &str) {
    let srv = Axkit::start_single_with(
        &format!(
            "Workers 1
{extra}
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {{dir}}/www
    Plugin uri_to_file
    Plugin typeless_uri
    Plugin fast_mime_map
    Plugin serve_file
    <Location /docs>
        TypelessExtensions txt html
    </Location>
</Server>
"
        ),
        |d| {
            set_mtime(&d.write("www/about.html", "<p>about</p>"));
            d.write("www/about.txt", "about text");
            d.write("www/feed.xml", "<feed/>");
            d.write("www/docs/x.html", "html");
            d.write("www/docs/x.txt", "txt");
            d.write("secret.html", "SECRET");
            std::os::unix::fs::symlink(d.path().join("secret.html"), d.path().join("www/s.html"))
                .unwrap();
        },
    );
    let r = get(&srv, "/about", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<p>about</p>");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    let etag = r.header("ETag").unwrap().to_string();
    assert_eq!(
        get(&srv, "/about", &format!("If-None-Match: {etag}\r\n")).status,
        304
    );
    assert_eq!(get(&srv, "/feed", "").text(), "<feed/>");
    assert_eq!(get(&srv, "/docs/x", "").text(), "txt");
    assert_eq!(get(&srv, "/nothing", "").status, 404);
    // A symlink out of the tree is not followed.
    assert_eq!(get(&srv, "/s", "").status, 404);
    // The explicit name still works.
    assert_eq!(get(&srv, "/about.txt", "").text(), "about text");
}

/// The first bytes of a PNG image.
const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
];

/// A server that sniffs types with `magic_mime_map`, after
/// `fast_mime_map`, over the files `prepare` writes under `www/`.
fn magic_server(prepare: impl FnOnce(&TempDir)) -> Axkit {
    Axkit::start_single_with(
        "Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin magic_mime_map
    Plugin serve_file
</Server>
",
        prepare,
    )
}

#[test]
fn magic_mime_map_sniffs_files_without_a_useful_extension() {
    let srv = magic_server(|d| {
        d.write("www/picture", PNG);
        d.write("www/archive.dat1", b"PK\x03\x04rest of a zip file");
        d.write("www/page.html", "<p>named</p>");
        d.write("www/unknown", "just text");
    });
    for (path, ty) in [
        ("/picture", "image/png"),
        ("/archive.dat1", "application/zip"),
        ("/page.html", "text/html; charset=utf-8"),
        ("/unknown", "application/octet-stream"),
    ] {
        assert_eq!(
            get(&srv, path, "").header("Content-Type"),
            Some(ty),
            "{path}"
        );
    }
}

/// Sniffing never yields a type a browser would run: an upload that
/// starts like HTML or XML (here with a script) is served as
/// application/octet-stream, not text/html or text/xml (stored XSS); a
/// PDF likewise. An image next to them is still recognised.
#[test]
fn magic_mime_map_never_sniffs_markup_or_pdf() {
    let srv = magic_server(|d| {
        d.write(
            "www/up/page",
            "<!DOCTYPE html><html><script>alert(document.cookie)</script>",
        );
        d.write("www/up/lower", "<html><body onload=alert(1)>");
        d.write(
            "www/up/svg",
            "<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
        );
        d.write(
            "www/up/doc",
            "%PDF-1.7\n1 0 obj << /OpenAction << /JS (app.alert(1)) >> >>",
        );
        d.write("www/up/avatar", PNG);
    });
    for name in ["page", "lower", "svg", "doc"] {
        let r = get(&srv, &format!("/up/{name}"), "");
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/octet-stream"),
            "{name}"
        );
    }
    assert_eq!(
        get(&srv, "/up/avatar", "").header("Content-Type"),
        Some("image/png")
    );
}

/// A file named by another translating plugin (a Lua `uri_translation`
/// hook) is opened by `serve_file` itself: found, missing, a directory.
/// It is opened beneath a root like any other: the Location's
/// DocumentRoot when the file lies under it (links inside it followed,
/// links out refused unless `FollowSymlinks on`), else the LuaFileRoot it
/// lies under, as the `file` API opens files (links inside it followed,
/// links out refused).
#[test]
fn serve_file_opens_a_file_another_plugin_named() {
    let mapper_conf = |extra: &str| {
        format!(
            "PluginDir {{dir}}/plugins
LuaFileRoot {{dir}}/files
Workers 1
<Server>
    Listen 127.0.0.1:0
    Plugin mapper
{extra}
    Plugin fast_mime_map
    Plugin serve_file
</Server>
"
        )
    };
    let prepare = |d: &TempDir| {
        let root = d.path().join("files");
        d.write(
            "plugins/mapper.lua",
            format!(
                "function hook_uri_translation(r)\n  r:set_filename(\"{}\" .. r:path())\n  return OK\nend\n",
                root.display()
            ),
        );
        set_mtime(&d.write("files/a.txt", "from lua"));
        d.write("files/big.bin", big_content());
        std::fs::create_dir_all(root.join("sub")).unwrap();
        d.write("outside/secret.txt", "SECRET");
        std::os::unix::fs::symlink("a.txt", root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), root.join("out")).unwrap();
    };
    let srv = Axkit::start_single_with(&mapper_conf(""), prepare);
    let r = get(&srv, "/a.txt", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "from lua");
    assert_eq!(r.header("Last-Modified"), Some(LAST_MODIFIED));
    assert_eq!(get(&srv, "/big.bin", "").body, big_content());
    assert_eq!(get(&srv, "/nothing.txt", "").status, 404);
    assert_eq!(get(&srv, "/sub", "").status, 403);
    // No DocumentRoot: beneath the LuaFileRoot.
    assert_eq!(get(&srv, "/link.txt", "").text(), "from lua");
    assert_eq!(get(&srv, "/out/secret.txt", "").status, 403);

    // Under the Location's DocumentRoot: its rule.
    let with_root = "    Plugin uri_to_file\n    DocumentRoot {dir}/files";
    let srv = Axkit::start_single_with(&mapper_conf(with_root), prepare);
    assert_eq!(get(&srv, "/link.txt", "").text(), "from lua");
    let r = get(&srv, "/out/secret.txt", "");
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("SECRET"));
    let follow = format!("{with_root}\n    FollowSymlinks on");
    let srv = Axkit::start_single_with(&mapper_conf(&follow), prepare);
    assert_eq!(get(&srv, "/out/secret.txt", "").text(), "SECRET");
}

/// What is neither a file nor a directory is never served nor kept open:
/// a FIFO (the worker would hold its read end), a socket (an open that
/// fails with ENXIO, once a 500 and an error line per request), a device
/// reached through a symlink: each answers 404 with its reason logged at
/// info, and none is taken for a typeless name, a directory's index or a
/// precompressed sibling.
#[test]
fn fifos_sockets_and_devices_are_not_found() {
    let conf = "Workers 1
LogLevel info
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    FollowSymlinks on
    Precompressed gzip
    Plugin uri_to_file
    Plugin typeless_uri
    Plugin fast_mime_map
    Plugin serve_file
</Server>
";
    // Kept open so that the socket stays one while the server runs.
    let mut _listener = None;
    let mut srv = Axkit::start_single_with(conf, |d| {
        let www = d.path().join("www");
        std::fs::create_dir_all(www.join("dir")).unwrap();
        for fifo in ["fifo", "typeless.html", "dir/index.html", "p.txt.gz"] {
            let path = std::ffi::CString::new(www.join(fifo).into_os_string().into_encoded_bytes());
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(path.unwrap().as_ptr(), 0o644) }, 0);
        }
        d.write("www/p.txt", "plain");
        _listener = Some(std::os::unix::net::UnixListener::bind(www.join("sock")).unwrap());
        std::os::unix::fs::symlink("/dev/zero", www.join("zero")).unwrap();
    });
    let pid = srv.pid();
    let zeros = || fd_targets(pid).iter().filter(|t| *t == "/dev/zero").count();
    let zeros_before = zeros();
    for path in ["/fifo", "/sock", "/zero", "/typeless"] {
        assert_eq!(get(&srv, path, "").status, 404, "{path}");
    }
    // A FIFO is no index: a directory without one.
    assert_eq!(get(&srv, "/dir/", "").status, 403);
    // A FIFO beside a file is no precompressed copy of it.
    let r = get(&srv, "/p.txt", "Accept-Encoding: gzip\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    for why in [
        "/fifo\" is a FIFO, not a regular file or a directory",
        "/sock\" is a socket or a device without its driver, not a regular file or a directory",
        "/zero\" is a character device, not a regular file or a directory",
    ] {
        srv.wait_stderr_line(
            &["[info]", "404: ", why],
            std::time::Duration::from_secs(10),
        );
    }
    // Nothing of them is kept open by the worker.
    let www = srv.dir.path().join("www");
    let open = fd_targets(pid);
    for name in [
        "fifo",
        "typeless.html",
        "dir/index.html",
        "p.txt.gz",
        "sock",
    ] {
        let target = www.join(name).display().to_string();
        assert!(
            !open.iter().any(|t| t.contains(&target)),
            "{target} open: {open:?}"
        );
    }
    assert_eq!(zeros(), zeros_before, "{open:?}");
    let stderr = srv.stop();
    assert!(!stderr.contains("[error]"), "{stderr}");
}

/// Where the kernel refuses `openat2` (before Linux 5.6, or a seccomp
/// profile that does not know it), files are still opened beneath their
/// root under its rule, by the walk that stands in for it: in the workers
/// a master starts too, which inherit the filter. Before the walk, every
/// file was a 500 ("Function not implemented").
#[test]
fn files_keep_their_rules_where_openat2_is_refused() {
    let prepare = |d: &TempDir| {
        let www = d.path().join("www");
        d.write("www/a.txt", "inside");
        d.write("www/sub/index.html", "index");
        d.write("outside/secret.txt", "SECRET");
        std::os::unix::fs::symlink("a.txt", www.join("link.txt")).unwrap();
        std::os::unix::fs::symlink("../a.txt", www.join("sub/up.txt")).unwrap();
        std::os::unix::fs::symlink("../outside", www.join("out")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside/secret.txt"), www.join("abs.txt"))
            .unwrap();
    };
    let mut srv = Axkit::start_without_openat2(&files_conf(""), prepare);
    for _ in 0..2 {
        // Twice: the second time through the open-file cache.
        assert_eq!(get(&srv, "/a.txt", "").text(), "inside");
        assert_eq!(get(&srv, "/link.txt", "").text(), "inside");
        assert_eq!(get(&srv, "/sub/up.txt", "").text(), "inside");
        assert_eq!(get(&srv, "/sub/", "").text(), "index");
        assert_eq!(get(&srv, "/sub", "").status, 301);
        assert_eq!(get(&srv, "/missing", "").status, 404);
        for out in ["/out/secret.txt", "/abs.txt"] {
            let r = get(&srv, out, "");
            assert_eq!(r.status, 403, "{out}");
            assert!(!r.text().contains("SECRET"));
        }
    }
    assert!(!srv.stop().contains("not implemented"));
    let srv = Axkit::start_without_openat2(&files_conf("    FollowSymlinks on"), prepare);
    assert_eq!(get(&srv, "/out/secret.txt", "").text(), "SECRET");
    assert_eq!(get(&srv, "/abs.txt", "").text(), "SECRET");
}
