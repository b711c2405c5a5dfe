//! The `file` global through the stock `axkit` binary: no file access
//! without a `LuaFileRoot`; within the roots read, write, append, mkdir,
//! exists, stat, list, rename and delete, each returning its value or
//! `nil, "PATH: reason"`; paths and symbolic links that would leave a root
//! (`/etc/shadow`, `..`, a link to `/etc` or out of the root) refused for
//! every call; the roots checked at start-up; and the files a request hook
//! names (`r:send_file`, `r:set_filename`) held to the DocumentRoot or a
//! LuaFileRoot, and served from where they were checked; `file.read`
//! bounded at 16 MiB; and many writes of one file at once, none torn.
//!
//! Each test starts its own server (`--no-master`) with real scripts
//! written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::time::Duration;

use common::*;
use lua::*;

/// `GET /?op=NAME&a=PATH&b=PATH|DATA` calls `file.NAME(a, b)` and answers
/// `value|message`; tables come back as JSON.
const CALLER: &str = r#"
local at_load, at_load_err = file.read("/etc/hostname")
function hook_response(r)
  if r:path() == "/load" then
    r:write(tostring(at_load), "|", tostring(at_load_err))
    return OK
  end
  local op, a, b = r:param("op"), r:param("a"), r:param("b")
  if op == "mkdir" then b = b == "parents" end
  local v, err = file[op](a, b)
  if type(v) == "table" then v = json.encode(v) end
  r:write(tostring(v), "|", tostring(err))
  return OK
end
"#;

fn call(srv: &Axkit, op: &str, a: &str, b: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|c| match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' => {
                    (c as char).to_string()
                }
                _ => format!("%{c:02X}"),
            })
            .collect::<String>()
    };
    srv.get(&format!("/?op={op}&a={}&b={}", enc(a), enc(b)))
        .text()
}

#[test]
fn without_a_root_scripts_have_no_file_access() {
    let srv = start(&conf("", "    Plugin f"), &[("f", CALLER)]);
    let dir = srv.dir.path().display().to_string();
    assert_eq!(
        call(&srv, "read", "/etc/passwd", ""),
        "nil|/etc/passwd: file access is off (no LuaFileRoot is configured)"
    );
    let target = format!("{dir}/new.txt");
    assert_eq!(
        call(&srv, "write", &target, "data"),
        format!("nil|{target}: file access is off (no LuaFileRoot is configured)")
    );
    assert!(!srv.dir.path().join("new.txt").exists());
    assert!(call(&srv, "exists", &target, "").starts_with("nil|"));
}

#[test]
fn the_file_api_within_its_roots() {
    let srv = start_with(
        &conf(
            "LuaFileRoot {dir}/data\nLuaFileRoot {dir}/other",
            "    Plugin f",
        ),
        &[("f", CALLER)],
        |d| {
            std::fs::create_dir_all(d.path().join("data")).unwrap();
            std::fs::create_dir_all(d.path().join("other")).unwrap();
        },
    );
    let d = srv.dir.path().join("data").display().to_string();
    let o = srv.dir.path().join("other").display().to_string();
    let f = |op: &str, a: &str, b: &str| call(&srv, op, a, b);
    assert_eq!(
        srv.get("/load").text(),
        "nil|/etc/hostname: file access is not available while scripts load \
         (LuaFileRoot is known once the plugins are built)"
    );

    assert_eq!(f("write", &format!("{d}/a.txt"), "one"), "true|nil");
    assert_eq!(f("append", &format!("{d}/a.txt"), " two"), "true|nil");
    assert_eq!(f("read", &format!("{d}/a.txt"), ""), "one two|nil");
    assert_eq!(f("append", &format!("{d}/log.txt"), "x"), "true|nil");
    assert_eq!(f("read", &format!("{d}/log.txt"), ""), "x|nil");
    assert_eq!(
        std::fs::read_to_string(srv.dir.path().join("data/a.txt")).unwrap(),
        "one two"
    );

    assert_eq!(f("mkdir", &format!("{d}/dir"), ""), "true|nil");
    assert_eq!(
        f("mkdir", &format!("{d}/dir"), ""),
        format!("nil|{d}/dir: File exists")
    );
    assert_eq!(f("mkdir", &format!("{d}/p/q/r"), "parents"), "true|nil");
    assert_eq!(f("mkdir", &format!("{d}/p/q/r"), "parents"), "true|nil");
    assert!(srv.dir.path().join("data/p/q/r").is_dir());
    assert_eq!(
        f("mkdir", &format!("{d}/a.txt/sub"), "parents"),
        format!("nil|{d}/a.txt/sub: Not a directory")
    );

    assert_eq!(f("exists", &format!("{d}/p/q/r"), ""), "true|nil");
    assert_eq!(f("exists", &format!("{d}/nope"), ""), "false|nil");
    let stat = f("stat", &format!("{d}/a.txt"), "");
    assert!(stat.contains(r#""size":7"#), "{stat}");
    assert!(stat.contains(r#""type":"file""#), "{stat}");
    assert!(stat.contains(r#""modified":1"#), "{stat}");
    assert!(
        f("stat", &d, "").contains(r#""type":"directory""#),
        "the root itself"
    );
    assert_eq!(f("list", &d, ""), r#"["a.txt","dir","log.txt","p"]|nil"#);

    // Between roots.
    assert_eq!(
        f("rename", &format!("{d}/a.txt"), &format!("{o}/b.txt")),
        "true|nil"
    );
    assert_eq!(f("exists", &format!("{d}/a.txt"), ""), "false|nil");
    assert_eq!(f("read", &format!("{o}/b.txt"), ""), "one two|nil");

    assert_eq!(f("delete", &format!("{o}/b.txt"), ""), "true|nil");
    assert_eq!(f("delete", &format!("{d}/dir"), ""), "true|nil");
    assert_eq!(
        f("delete", &format!("{d}/p"), ""),
        format!("nil|{d}/p: Directory not empty")
    );
    assert_eq!(
        f("delete", &format!("{d}/missing"), ""),
        format!("nil|{d}/missing: No such file or directory")
    );
    assert_eq!(
        f("read", &format!("{d}/missing"), ""),
        format!("nil|{d}/missing: No such file or directory")
    );
    assert_eq!(
        f("read", &format!("{d}/p"), ""),
        format!("nil|{d}/p: not a regular file")
    );
    assert_eq!(
        f("write", &d, "x"),
        format!("nil|{d}: is a LuaFileRoot itself")
    );
    assert_eq!(f("list", &d, ""), r#"["log.txt","p"]|nil"#);
}

#[test]
fn paths_and_links_cannot_leave_the_roots() {
    let srv = start_with(
        &conf("LuaFileRoot {dir}/data", "    Plugin f"),
        &[("f", CALLER)],
        |d| {
            let data = d.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            d.write("secret.txt", "SECRET");
            d.write("outside/keep.txt", "KEEP");
            d.write("data/in.txt", "inside");
            symlink("in.txt", data.join("link.txt")).unwrap();
            symlink("../secret.txt", data.join("up")).unwrap();
            symlink(d.path().join("data/in.txt"), data.join("absolute")).unwrap();
            symlink("/etc", data.join("etc")).unwrap();
            symlink("../outside", data.join("outdir")).unwrap();
            for name in ["wlink", "alink", "dlink"] {
                symlink("../secret.txt", data.join(name)).unwrap();
            }
        },
    );
    let dir = srv.dir.path().display().to_string();
    let d = format!("{dir}/data");
    let f = |op: &str, a: &str, b: &str| call(&srv, op, a, b);

    // The server runs as root here: without the roots this would read it.
    assert_eq!(
        f("read", "/etc/shadow", ""),
        "nil|/etc/shadow: not beneath a LuaFileRoot"
    );
    assert_eq!(
        f("read", &format!("{d}/../secret.txt"), ""),
        format!("nil|{d}/../secret.txt: a path with `..` is refused")
    );
    assert_eq!(f("read", &format!("{d}/link.txt"), ""), "inside|nil");
    let escape = |path: &str| format!("nil|{path}: leads outside its LuaFileRoot");
    for rel in [
        "up",
        "absolute",
        "etc/shadow",
        "etc/passwd",
        "outdir/keep.txt",
    ] {
        let path = format!("{d}/{rel}");
        assert_eq!(f("read", &path, ""), escape(&path), "{rel}");
    }
    let inside_out = format!("{d}/outdir/new.txt");
    for (op, b) in [("write", "x"), ("append", "x"), ("mkdir", "")] {
        assert_eq!(f(op, &inside_out, b), escape(&inside_out), "{op}");
    }
    assert_eq!(
        f("mkdir", &format!("{d}/outdir/a/b"), "parents"),
        escape(&format!("{d}/outdir/a/b"))
    );
    let keep = format!("{d}/outdir/keep.txt");
    for op in ["delete", "exists", "stat"] {
        assert_eq!(f(op, &keep, ""), escape(&keep), "{op}");
    }
    assert_eq!(
        f("list", &format!("{d}/outdir"), ""),
        escape(&format!("{d}/outdir"))
    );
    assert_eq!(f("rename", &keep, &format!("{d}/k.txt")), escape(&keep));
    assert_eq!(
        f("rename", &format!("{d}/in.txt"), &inside_out),
        escape(&inside_out)
    );
    assert_eq!(
        f(
            "rename",
            &format!("{d}/in.txt"),
            &format!("{dir}/stolen.txt")
        ),
        format!("nil|{dir}/stolen.txt: not beneath a LuaFileRoot")
    );
    assert_eq!(
        std::fs::read_dir(srv.dir.path().join("outside"))
            .unwrap()
            .count(),
        1,
        "nothing was made outside"
    );
    assert_eq!(
        std::fs::read_to_string(srv.dir.path().join("outside/keep.txt")).unwrap(),
        "KEEP"
    );

    // A link at the name itself: written over, refused for append, removed
    // (not what it points to) by delete.
    assert_eq!(f("write", &format!("{d}/wlink"), "new"), "true|nil");
    assert!(std::fs::symlink_metadata(srv.dir.path().join("data/wlink"))
        .unwrap()
        .is_file());
    assert_eq!(
        f("append", &format!("{d}/alink"), "x"),
        format!("nil|{d}/alink: is a symbolic link")
    );
    assert_eq!(f("delete", &format!("{d}/dlink"), ""), "true|nil");
    assert!(std::fs::symlink_metadata(srv.dir.path().join("data/dlink")).is_err());
    assert_eq!(
        std::fs::read_to_string(srv.dir.path().join("secret.txt")).unwrap(),
        "SECRET"
    );
}

/// Under `ServerRoot`, a relative `LuaFileRoot` and a relative path in a
/// script are both taken from it, as every path in the config is, not
/// from the working directory.
#[test]
fn relative_paths_are_taken_from_the_server_root() {
    let srv = start_with(
        &conf("ServerRoot {dir}\nLuaFileRoot data", "    Plugin f"),
        &[("f", CALLER)],
        |d| {
            d.write("data/a.txt", "beneath the server root");
        },
    );
    assert_ne!(std::env::current_dir().unwrap(), srv.dir.path());
    assert_eq!(
        call(&srv, "read", "data/a.txt", ""),
        "beneath the server root|nil"
    );
    assert_eq!(call(&srv, "write", "data/b.txt", "new"), "true|nil");
    assert_eq!(
        std::fs::read_to_string(srv.dir.path().join("data/b.txt")).unwrap(),
        "new"
    );
}

#[test]
fn file_roots_are_checked_at_start() {
    let (ok, out) = check(
        &conf("LuaFileRoot {dir}/missing", "    Plugin f"),
        &[("f", "")],
    );
    assert!(!ok);
    assert!(out.contains("missing: No such file or directory"), "{out}");
    let (ok, out) = check(
        &conf("LuaFileRoot {dir}/plugins/f.lua", "    Plugin f"),
        &[("f", "")],
    );
    assert!(!ok);
    assert!(out.contains("f.lua: not a directory"), "{out}");
    let (ok, out) = check(
        &conf("", "    LuaFileRoot {dir}\n    Plugin f"),
        &[("f", "")],
    );
    assert!(!ok);
    assert!(out.contains("LuaFileRoot"), "{out}");
}

/// `r:send_file` and `r:set_filename` name files the server opens for the
/// request: beneath the Location's DocumentRoot (its rule) or a
/// LuaFileRoot, never anywhere else.
#[test]
fn request_files_stay_beneath_the_document_root_or_a_file_root() {
    let script = r#"
function hook_uri_translation(r)
  local name = r:param("name")
  if r:path() == "/named" and name then
    r:set_filename(name)
    return OK
  end
end
function hook_response(r)
  if r:path():match("/send$") then
    return r:send_file(r:param("path"), "text/plain")
  end
end
"#;
    let body = "    Plugin req\n    Plugin serve_file\n\
                <Location /site>\n        Plugin uri_to_file\n        DocumentRoot {dir}/www\n    </Location>";
    let mut srv = start_with(
        &conf("LuaFileRoot {dir}/data", body),
        &[("req", script)],
        |d| {
            d.write("data/in.txt", "from the file root");
            d.write("www/page.txt", "from the document root");
        },
    );
    let dir = srv.dir.path().display().to_string();
    let r = srv.get(&format!("/send?path={dir}/data/in.txt"));
    assert_eq!((r.status, r.text().as_str()), (200, "from the file root"));
    let r = srv.get(&format!("/site/send?path={dir}/www/page.txt"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "from the document root")
    );
    // The DocumentRoot of another Location is none of this one's.
    assert_eq!(
        srv.get(&format!("/send?path={dir}/www/page.txt")).status,
        500
    );
    assert_eq!(srv.get("/send?path=/etc/shadow").status, 500);
    srv.wait_stderr(
        "send_file /etc/shadow: not beneath the DocumentRoot or a LuaFileRoot",
        Duration::from_secs(5),
    );

    let r = srv.get(&format!("/named?name={dir}/data/in.txt"));
    assert_eq!((r.status, r.text().as_str()), (200, "from the file root"));
    let r = srv.get("/named?name=/etc/shadow");
    assert_eq!(r.status, 500);
    assert!(!r.text().contains("root:"));
    srv.wait_stderr(
        "r:set_filename /etc/shadow: not beneath the DocumentRoot or a LuaFileRoot",
        Duration::from_secs(5),
    );
}

/// The file `r:set_filename` names is served from where it was checked:
/// a relative path from ServerRoot, not from the working directory the
/// server was started in (it never changes it); and beneath its
/// LuaFileRoot under the `file` API's rule, so a link out of the root is
/// refused there even under `FollowSymlinks on`.
#[test]
fn set_filename_serves_the_file_it_checked() {
    let script = r#"
function hook_uri_translation(r)
  r:set_filename(r:param("name"))
  return OK
end
"#;
    let dir = TempDir::new("srv");
    let cwd = dir.path().join("cwd");
    dir.write("srv/data/a.txt", "beneath the server root");
    dir.write("cwd/data/a.txt", "beneath the working directory");
    dir.write("outside.txt", "outside the file root");
    symlink(
        dir.path().join("outside.txt"),
        dir.path().join("srv/data/link.txt"),
    )
    .unwrap();
    dir.write("plugins/req.lua", script);
    let body =
        "    Plugin req\n    Plugin uri_to_file\n    Plugin serve_file\n    FollowSymlinks on";
    let text = conf("ServerRoot {dir}/srv\nLuaFileRoot data", body);
    let conf = dir.write("axkit.conf", config_text(&dir, &text));
    let mut command = std::process::Command::new(BIN);
    command
        .args(["--no-master", "-c"])
        .arg(&conf)
        .current_dir(&cwd);
    let mut srv = Axkit::launch(command, dir, conf);

    let r = srv.get("/?name=data/a.txt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "beneath the server root")
    );
    // `file.read` refuses the link; so does serving the file it names.
    let link = srv.dir.path().join("srv/data/link.txt");
    let r = srv.get(&format!("/?name={}", link.display()));
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("outside"), "{}", r.text());
    srv.wait_stderr(
        &format!("{}: refused: leads outside its root", link.display()),
        Duration::from_secs(5),
    );
}

/// `file.read` holds a file in the worker before it becomes a Lua string,
/// outside LuaMemoryLimit: a file over 16 MiB is refused, not read.
#[test]
fn file_read_refuses_a_file_over_16_mib() {
    const CAP: u64 = 16 << 20;
    let srv = start_with(
        &conf("LuaFileRoot {dir}/data", "    Plugin f"),
        &[("f", CALLER)],
        |d| {
            // Sparse: no disk is written for the size.
            let big = d.write("data/big.bin", "");
            std::fs::File::options()
                .write(true)
                .open(big)
                .unwrap()
                .set_len(CAP + 1)
                .unwrap();
            d.write("data/small.txt", "small");
        },
    );
    let dir = srv.dir.path().display().to_string();
    let big = format!("{dir}/data/big.bin");
    // Not the contents in a failure message.
    let got = call(&srv, "read", &big, "");
    let shown: String = got.chars().take(200).collect();
    assert_eq!(got.len(), shown.len(), "{shown}…");
    assert_eq!(got, format!("nil|{big}: larger than 16 MiB"));
    let small = format!("{dir}/data/small.txt");
    assert_eq!(call(&srv, "read", &small, ""), "small|nil");
}

/// `POST /?to=PATH` writes the body to PATH with `file.write`.
const SAVER: &str = r#"
function hook_response(r)
  local ok, err = file.write(r:param("to"), r:body())
  if not ok then
    r:log("error", err)
    return 500
  end
  return 204
end
"#;

/// 200 `file.write`s of one file at once (20 clients, 10 each, every body
/// different): none fails, a reader never sees a torn file, the file ends
/// as exactly one of the bodies and no temporary file is left.
#[test]
fn concurrent_writes_of_one_file_are_whole() {
    const CLIENTS: usize = 20;
    const SAVES: usize = 10;
    let srv = start_with(
        &conf("LuaFileRoot {dir}/pages", "    Plugin save"),
        &[("save", SAVER)],
        |d| {
            d.write("pages/SandBox.txt", "initial");
        },
    );
    let body = |c: usize, i: usize| format!("client {c} save {i} ").repeat(400);
    let mut bodies: std::collections::HashSet<String> = (0..CLIENTS)
        .flat_map(|c| (0..SAVES).map(move |i| body(c, i)))
        .collect();
    bodies.insert("initial".into());
    let bodies = std::sync::Arc::new(bodies);
    let page = srv.dir.path().join("pages/SandBox.txt");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (page, done, bodies) = (page.clone(), done.clone(), bodies.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&page).unwrap();
                assert!(
                    bodies.contains(&text),
                    "torn page: {:?}…",
                    &text[..text.len().min(80)]
                );
                reads += 1;
            }
            reads
        })
    };
    let addr = srv.addr;
    let target = page.display().to_string();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let target = target.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..SAVES {
                    let form = body(c, i);
                    let req = format!(
                        "POST /?to={target} HTTP/1.1\r\nHost: x\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
                        form.len()
                    );
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(req.as_bytes()).unwrap();
                    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(30));
                    statuses.push(status_of(&bytes));
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let failed = statuses.iter().filter(|&&s| s != 204).count();
    assert_eq!(failed, 0, "statuses: {statuses:?}");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text != "initial" && bodies.contains(&text));
    let names: Vec<String> = std::fs::read_dir(page.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["SandBox.txt"]);
}
