//! Forms and uploads in Lua plugins, through the stock `axkit` binary:
//! urlencoded and multipart forms, uploads saved only when asked for, in a
//! private directory under random names, never through a planted link,
//! removed after the request (an error too) and at exit, the limits of
//! forms (fields and parts) and malformed bodies.
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::*;
use lua::*;

#[test]
fn forms_urlencoded_and_multipart_uploads() {
    let srv = start(&conf("", "    Plugin api"), &[("api", API)]);
    let r = send(
        &srv,
        "POST",
        "/form?b=query",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"a=1%262&b=x+y",
    );
    let t = r.text();
    assert!(t.contains(r#""a":"1&2""#), "{t}");
    assert!(t.contains(r#""b":"x y""#), "{t}");
    // The query string wins for r:param, as with AxKit2's param().
    assert!(t.contains(r#""p":"query""#), "{t}");

    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield value\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"notes.txt\"\r\n\
Content-Type: text/plain\r\n\r\nline 1\r\nline 2\r\n--XyZ--\r\n";
    let r = send(
        &srv,
        "POST",
        "/form",
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        body,
    );
    let t = r.text();
    assert!(t.contains(r#""a":"field value""#), "{t}");
    assert!(t.contains(r#""name":"notes.txt""#), "{t}");
    assert!(t.contains(r#""size":14"#), "{t}");
    assert!(t.contains(r#""type":"text/plain""#), "{t}");
    assert!(t.contains(r#""data":"line 1\r\nline 2""#), "{t}");
    // The temporary file is gone once the request is over.
    let path = t
        .split(r#""path":""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    wait_gone(Path::new(path));
    stop(srv);
    // MaxRequestBody applies to scripts too.
    let srv2 = start(
        &conf("", "    Plugin api\n    MaxRequestBody 10"),
        &[("api", API)],
    );
    let r = send(&srv2, "POST", "/body", "", b"0123456789abcdef");
    assert_eq!(r.status, 413);
}

/// A script that saves uploads only where it asks for them.
const UPLOADS: &str = r#"
function hook_response(r)
  local p = r:path()
  if p == "/keep" then
    local f = r:form{ uploads = { "up" } }
    r:write(f.up.path, "\n", (file.read(f.up.path)))
    return OK
  elseif p == "/keep-then-fail" then
    local f = r:form{ uploads = true }
    r:log("warn", "upload at", f.up.path)
    error("the handler failed after an upload was saved")
  elseif p == "/keep-then-spin" then
    local f = r:form{ uploads = true }
    r:log("warn", "spinning with", f.up.path)
    while true do end
  elseif p == "/later" then
    local first = r:form()
    local again = r:form{ uploads = "up" }
    r:write(tostring(first == again), "|", (file.read(first.up.path)))
    return OK
  elseif p == "/misspelt" then
    r:form{ upload = true }
  elseif p == "/ignore" then
    local f = r:form()
    -- Hold the request open while the test looks at the disk.
    local s = tcp.connect("127.0.0.1", tonumber(r:param("port")))
    s:send("looking\n")
    s:receive("line")
    s:close()
    r:write(f.a, "|", f.up.filename, "|", f.up.size, "|", tostring(f.up.path), "|",
            tostring(r:param("up")))
    return OK
  end
end
"#;

/// Symbolic links planted for a test, removed when it ends.
struct Planted(Vec<std::path::PathBuf>);

impl Planted {
    fn link(&mut self, at: std::path::PathBuf, target: &Path) {
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, &at).unwrap();
        self.0.push(at);
    }
    fn all_point_to(&self, target: &Path) {
        for link in &self.0 {
            assert_eq!(std::fs::read_link(link).unwrap(), target, "{link:?}");
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// POST an upload to /keep: the saved file's path (it existed while the
/// handler ran, holding `data`).
fn keep_upload(srv: &Axkit, data: &str) -> std::path::PathBuf {
    let r = send(srv, "POST", "/keep", MULTIPART, &upload_body(data));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let (path, seen) = text.split_once('\n').unwrap();
    assert_eq!(seen, data);
    std::path::PathBuf::from(path)
}

/// A local user who plants symbolic links where uploads used to go
/// (`$TMPDIR/axkit-upload-<pid>-<n>`), or guesses at where they go now,
/// gets nothing written through them: uploads are created exclusively,
/// under random names, in a directory of the worker's own (0700).
#[test]
fn uploads_go_to_a_private_directory_under_random_names() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let srv = start(&conf("", "    Plugin uploads"), &[("uploads", UPLOADS)]);
    let target = srv.dir.write("precious.txt", "precious");
    let mut planted = Planted(Vec::new());
    for n in 0..8 {
        planted.link(
            std::env::temp_dir().join(format!("axkit-upload-{}-{n}", srv.pid())),
            &target,
        );
    }

    let first = keep_upload(&srv, "attacker bytes");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    planted.all_point_to(&target);
    let dir = first.parent().unwrap().to_path_buf();
    assert_ne!(dir, std::env::temp_dir(), "{first:?}");
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "{dir:?}");
    assert_eq!(meta.uid(), srv.dir.path().metadata().unwrap().uid());
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!name.contains(&srv.pid().to_string()), "{name}");
    wait_gone(&first);

    // A guess at the new place: the name just freed, planted as a link.
    planted.link(first.clone(), &target);
    let second = keep_upload(&srv, "more attacker bytes");
    assert_ne!(second, first);
    assert_eq!(second.parent(), Some(dir.as_path()));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    planted.all_point_to(&target);
    wait_gone(&second);

    // The directory removed (a temp cleaner) and another made at its name:
    // the next upload goes to a new private directory; the impostor is left
    // alone.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let third = keep_upload(&srv, "after the cleaner");
    let new_dir = third.parent().unwrap();
    assert_ne!(new_dir, dir);
    assert_eq!(
        std::fs::metadata(new_dir).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    std::fs::remove_dir(&dir).unwrap();
    stop(srv);
}

/// A file field the handler did not ask for is reported (name, size,
/// type) but never written to disk.
#[test]
fn form_file_fields_not_asked_for_are_not_saved() {
    let srv = start(&conf("", "    Plugin uploads"), &[("uploads", UPLOADS)]);
    // The worker's upload directory, from an upload it did ask for.
    let dir = keep_upload(&srv, "asked for")
        .parent()
        .unwrap()
        .to_path_buf();
    let is_empty = |dir: &Path| std::fs::read_dir(dir).unwrap().next().is_none();
    assert!(
        wait_until(Duration::from_secs(5), || is_empty(&dir)),
        "{dir:?} not emptied"
    );

    let look = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = look.local_addr().unwrap().port();
    let body = upload_body("NOT-ASKED-FOR");
    let mut client = srv.connect();
    write!(
        client,
        "POST /ignore?port={port} HTTP/1.1\r\nHost: x\r\n{MULTIPART}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(&body).unwrap();
    // The handler has parsed the form and now waits for us.
    let (peer, _) = look.accept().unwrap();
    let mut line = String::new();
    BufReader::new(peer.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "looking\n");
    assert!(is_empty(&dir), "{dir:?}");
    let old = std::env::temp_dir().join(format!("axkit-upload-{}-1", srv.pid()));
    assert!(std::fs::symlink_metadata(&old).is_err(), "{old:?}");
    (&peer).write_all(b"done\n").unwrap();
    let (bytes, _) = read_until_close(&mut client, Duration::from_secs(10));
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.text(), "field|a.txt|13|nil|nil");

    // Asked for later, the upload is saved into the same table.
    let r = send(&srv, "POST", "/later", MULTIPART, &upload_body("later"));
    assert_eq!(r.text(), "true|later");
    // A misspelt option is an error, not uploads silently dropped.
    let mut srv = srv;
    let r = send(&srv, "POST", "/misspelt", MULTIPART, &upload_body("x"));
    assert_eq!(r.status, 500);
    srv.wait_stderr("r:form: unknown option \"upload\"", Duration::from_secs(5));
    stop(srv);
}

/// Uploads are removed when the request ends, a failed one too, and the
/// worker's upload directory when the worker stops.
#[test]
fn uploads_are_removed_after_errors_and_their_directory_at_exit() {
    let mut srv = start(
        &conf("LuaTimeLimit 200ms", "    Plugin uploads"),
        &[("uploads", UPLOADS)],
    );
    let mut dir = None;
    for (path, said) in [
        ("/keep-then-fail", "upload at "),
        ("/keep-then-spin", "spinning with "),
    ] {
        let r = send(&srv, "POST", path, MULTIPART, &upload_body("x"));
        assert_eq!(r.status, 500);
        let line = srv.wait_stderr_line(&[said], Duration::from_secs(5));
        let upload = std::path::PathBuf::from(line.split(said).nth(1).unwrap().trim());
        wait_gone(&upload);
        dir = upload.parent().map(Path::to_path_buf);
    }
    let dir = dir.unwrap();
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    stop(srv);
    assert!(
        std::fs::symlink_metadata(&dir).is_err(),
        "{dir:?} left behind"
    );
}

/// The limits of multipart parsing: a malformed body is the client's
/// error (400), so are too many parts (413), an over-long boundary or part
/// head (400); quoted parameters may hold `;`.
#[test]
fn multipart_limits_and_malformed_bodies() {
    let script = r#"
function hook_response(r)
  local f = r:form()
  r:write(tostring(f.up and f.up.filename), "|", tostring(f.a), "|", tostring(r:param("up")))
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin form"), &[("form", script)]);
    let post =
        |ct: &str, body: &[u8]| send(&srv, "POST", "/", &format!("Content-Type: {ct}\r\n"), body);
    let r = post(
        "multipart/form-data; Boundary=\"XyZ\"",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a;b.txt\"\r\n\r\n\
x\r\n--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nplain\r\n--XyZ--\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "a;b.txt|plain|nil"));
    assert_eq!(
        post("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno end").status,
        400
    );
    assert_eq!(post("multipart/form-data", b"--XyZ--\r\n").status, 400);
    let long = "b".repeat(71);
    let body =
        format!("--{long}\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--{long}--\r\n");
    assert_eq!(
        post(
            &format!("multipart/form-data; boundary={long}"),
            body.as_bytes()
        )
        .status,
        400
    );
    let head = format!(
        "--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: {}\r\n\r\nx\r\n--b--\r\n",
        "p".repeat(9000)
    );
    assert_eq!(
        post("multipart/form-data; boundary=b", head.as_bytes()).status,
        400
    );
    let mut many = String::new();
    for i in 0..1001 {
        many.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=f{i}\r\n\r\nx\r\n"
        ));
    }
    many.push_str("--b--\r\n");
    assert_eq!(
        post("multipart/form-data; boundary=b", many.as_bytes()).status,
        413
    );
    // The worker is fine.
    assert_eq!(
        post("application/x-www-form-urlencoded", b"a=1").text(),
        "nil|1|nil"
    );
}

/// An urlencoded form has at most 1000 fields, as a multipart one has
/// parts: past that, 413 before any field is made (half a million empty
/// pairs in a megabyte once took a worker's memory to 90 MB), with a log
/// line that says why; the worker goes on.
#[test]
fn urlencoded_forms_have_at_most_1000_fields() {
    let script = r#"
function hook_response(r)
  local n = 0
  for _ in pairs(r:form()) do n = n + 1 end
  r:write(n)
  return OK
end
"#;
    let mut srv = start(&conf("", "    Plugin count"), &[("count", script)]);
    let post = |srv: &Axkit, body: &str| {
        send(
            srv,
            "POST",
            "/",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            body.as_bytes(),
        )
    };
    let fields = |n: usize| (0..n).map(|i| format!("f{i}=x")).collect::<Vec<_>>();
    let r = post(&srv, &fields(1000).join("&"));
    assert_eq!((r.status, r.text().as_str()), (200, "1000"));
    // Empty pairs are not fields.
    let r = post(&srv, &(fields(1000).join("&&") + "&"));
    assert_eq!((r.status, r.text().as_str()), (200, "1000"));
    assert_eq!(post(&srv, &fields(1001).join("&")).status, 413);
    assert_eq!(post(&srv, &"a&".repeat(100_000)).status, 413);
    srv.wait_stderr_line(
        &["[info]", "urlencoded form body of more than 1000 fields"],
        Duration::from_secs(10),
    );
    assert_eq!(post(&srv, "a=1&b=2").text(), "2");
}
