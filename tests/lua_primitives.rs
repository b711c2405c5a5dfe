//! The non-blocking primitives Lua scripts get, through the stock `axkit`
//! binary: the HTTP client, TCP sockets, subprocesses and files, also
//! under stress.
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use common::*;
use lua::*;

/// A backend on an ephemeral port answering its n-th connection with
/// `replies[n]`, after reading the request (`{line}` and `{body}` in the
/// reply are replaced by the request line and body).
fn backend(replies: &[&'static str]) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let replies = replies.to_vec();
    let handle = std::thread::spawn(move || {
        for reply in replies {
            let (s, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut line = String::new();
            let mut len = 0;
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let text = reply
                .replace("{line}", first.trim())
                .replace("{body}", &lossy(&body));
            let mut s = s;
            s.write_all(text.as_bytes()).unwrap();
        }
    });
    (port, handle)
}

#[test]
fn http_client_tcp_socket_subprocess_and_files() {
    let script = r#"
function hook_response(r)
  local p = r:path()
  if p == "/http" then
    local res = http.request{ url = "http://127.0.0.1:" .. r:param("port") .. "/up?x=1",
                              method = "POST", body = "payload",
                              headers = { ["X-From"] = "lua" } }
    r:write(res.status, " ", res.headers["x-backend"], " ", res.body)
    return OK
  elseif p == "/tcp" then
    local s = tcp.connect("127.0.0.1", tonumber(r:param("port")))
    s:send("hello\n")
    local line = s:receive("line")
    s:close()
    r:write("tcp:", line)
    return OK
  elseif p == "/refused" then
    local ok, err = pcall(tcp.connect, "127.0.0.1", tonumber(r:param("port")))
    r:write(tostring(ok), " ", tostring(err):match("tcp.connect") or err)
    return OK
  elseif p == "/proc" then
    local out = process.run{ "sh", "-c", "read x; echo out:$x; echo err >&2; exit 3",
                             stdin = "in\n" }
    r:write(out.status, "|", out.stdout, "|", out.stderr)
    return OK
  elseif p == "/proc-group" then
    -- A program whose own child outlives the timeout: both are killed.
    local ok, e = pcall(process.run, { "sh", "-c", "sleep 60 & echo $! > " .. r:param("pidfile") .. "; wait",
                                       timeout = 0.5 })
    r:write(tostring(ok), " ", tostring(e):match("timed out") or e)
    return OK
  elseif p == "/proc-left" then
    -- The program exits at once, leaving a child that holds its output:
    -- the call waits for the timeout, then the child is killed too.
    local ok, e = pcall(process.run, { "sh", "-c", "sleep 60 & echo $! > " .. r:param("pidfile"),
                                       timeout = 0.5 })
    r:write(tostring(ok), " ", tostring(e):match("process.run: timed out") or e)
    return OK
  elseif p == "/proc-detached" then
    -- A child that closed its output is not waited for, nor killed.
    local out = process.run{ "sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & echo $!" }
    r:write(out.status, " ", out.stdout)
    return OK
  elseif p == "/proc-env" then
    -- Only PATH (and TZ) of the worker's environment, and what `env` gives.
    local out = process.run{ "sh", "-c", "echo ${HOME:-none} ${GREETING:-none}",
                             env = { GREETING = "hi" } }
    local ok, e = pcall(process.run, { "true", env = { ["A=B"] = "x" } })
    r:write(out.stdout, tostring(ok), " ", tostring(e):match("not a variable") or e)
    return OK
  elseif p == "/files" then
    local dir = r:param("dir")
    file.write(dir .. "/a.txt", "written by lua")
    local data = file.read(dir .. "/a.txt")
    local missing, err = file.read(dir .. "/nope.txt")
    r:write(data, "|", tostring(missing), "|", tostring(err ~= nil), "|",
            tostring(file.exists(dir .. "/a.txt")), "|", table.concat(file.list(dir), ","))
    return OK
  elseif p == "/blocked" then
    r:write(type(io), type(os.execute), type(dofile), type(require), type(os.time))
    return OK
  elseif p == "/load" then
    -- Loaded text gets the environment given, else the caller's: never
    -- one with the state's os, dofile or load; bytecode is refused.
    local out = {}
    for _, code in ipairs({ "return os and os.execute", "return dofile", "return load and load('return os.execute')()",
                            "return collectgarbage" }) do
      out[#out + 1] = tostring(load(code, "=x", "t", {})())
      out[#out + 1] = tostring(load(code)())
    end
    load("loaded_global = 42")()
    out[#out + 1] = tostring(loaded_global)
    out[#out + 1] = tostring(load("return os.time ~= nil")())
    local ok, err = pcall(load, string.dump(function() return 1 end), "=b", "b")
    out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("only text chunks")
    r:write(table.concat(out, " "))
    return OK
  end
end
"#;
    let srv = start(
        &conf("LuaFileRoot {dir}\nLuaProcess on", "    Plugin tools"),
        &[("tools", script)],
    );
    let (port, handle) = backend(&[
        "HTTP/1.1 200 OK\r\nX-Backend: yes\r\nConnection: close\r\n\r\n{line} {body}",
        "HTTP/1.1 200 OK\r\nX-Backend: chunked\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ]);
    let r = srv.get(&format!("/http?port={port}"));
    assert_eq!(r.text(), "200 yes POST /up?x=1 HTTP/1.1 payload");
    let r = srv.get(&format!("/http?port={port}"));
    assert_eq!(r.text(), "200 chunked abcde");
    handle.join().unwrap();

    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let echo_thread = std::thread::spawn(move || {
        let (s, _) = echo.accept().unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut s = s;
        s.write_all(format!("echo {line}").as_bytes()).unwrap();
    });
    assert_eq!(
        srv.get(&format!("/tcp?port={echo_port}")).text(),
        "tcp:echo hello"
    );
    echo_thread.join().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        srv.get(&format!("/refused?port={closed_port}")).text(),
        "false tcp.connect"
    );

    assert_eq!(srv.get("/proc").text(), "3|out:in\n|err\n");
    let pidfile = srv.dir.path().join("grandchild.pid");
    let r = srv.get(&format!("/proc-group?pidfile={}", pidfile.display()));
    assert_eq!(r.text(), "false timed out");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let gone = wait_until(std::time::Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
    });
    assert!(gone, "the program's own child outlived the timeout");
    let pidfile = srv.dir.path().join("left.pid");
    let r = srv.get(&format!("/proc-left?pidfile={}", pidfile.display()));
    assert_eq!(r.text(), "false process.run: timed out");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let gone = wait_until(std::time::Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
    });
    assert!(
        gone,
        "the child left holding the program's output outlived the timeout"
    );
    let r = srv.get("/proc-detached").text();
    let pid: i32 = r.strip_prefix("0 ").unwrap().trim().parse().unwrap();
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    // SAFETY: kill(2); the pid is the child this test had started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(
        alive,
        "a child that closed its output was killed with the call"
    );
    assert_eq!(srv.get("/proc-env").text(), "none hi\nfalse not a variable");

    let files = srv.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    assert_eq!(
        srv.get(&format!("/files?dir={}", files.display())).text(),
        "written by lua|nil|true|true|a.txt"
    );
    assert_eq!(srv.get("/blocked").text(), "nilnilnilfunctionfunction");
    assert_eq!(
        srv.get("/load").text(),
        "nil nil nil nil nil nil nil nil 42 true false only text chunks"
    );
}

/// A failed file.write leaves no temporary file; a new file gets the
/// usual permissions (0666 less the umask); file.read refuses what is not
/// a regular file (a FIFO would block it for good); process.run feeds a
/// big stdin while it reads the output, and bounds that output.
#[test]
fn file_and_process_primitives_under_stress() {
    use std::os::unix::fs::PermissionsExt;
    let script = r#"
function hook_response(r)
  local p, dir = r:path(), r:param("dir")
  if p == "/write" then
    local ok, err = file.write(dir .. "/" .. r:param("name"), "data")
    r:write(tostring(ok), "|", tostring(err))
  elseif p == "/read" then
    local data, err = file.read(dir .. "/" .. r:param("name"))
    r:write(tostring(data), "|", tostring(err))
  elseif p == "/cat" then
    local input = string.rep("0123456789abcdef", 65536)
    local out = process.run{ "cat", stdin = input, timeout = 5 }
    r:write(tostring(out.stdout == input), "|", #out.stdout)
  elseif p == "/flood" then
    local ok, err = pcall(process.run, { "head", "-c", "17000000", "/dev/zero" })
    r:write(tostring(ok), "|", tostring(err))
  end
  return OK
end
"#;
    let srv = start_with(
        &conf("LuaFileRoot {dir}/data\nLuaProcess on", "    Plugin files"),
        &[("files", script)],
        |d| std::fs::create_dir_all(d.path().join("data/sub")).unwrap(),
    );
    let dir = srv.dir.path().join("data");
    let d = dir.display();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    // Renaming onto a directory fails after the data was written.
    let t = srv.get(&format!("/write?dir={d}&name=sub")).text();
    assert!(t.starts_with("nil|"), "{t}");
    assert_eq!(listing(), ["sub"]);
    let long = "n".repeat(300);
    let t = srv.get(&format!("/write?dir={d}&name={long}")).text();
    assert!(t.contains("File name too long"), "{t}");
    assert_eq!(listing(), ["sub"]);

    let t = srv.get(&format!("/write?dir={d}&name=new.txt")).text();
    assert_eq!(t, "true|nil");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        .unwrap();
    let mode = std::fs::metadata(dir.join("new.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666 & !umask);
    assert_eq!(listing(), ["new.txt", "sub"]);

    let fifo = std::ffi::CString::new(format!("{d}/fifo")).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let t = srv.get(&format!("/read?dir={d}&name=fifo")).text();
    assert!(
        t.starts_with("nil|") && t.contains("not a regular file"),
        "{t}"
    );
    assert_eq!(
        srv.get(&format!("/read?dir={d}&name=new.txt")).text(),
        "data|nil"
    );

    assert_eq!(srv.get("/cat").text(), "true|1048576");
    let t = srv.get("/flood").text();
    assert!(t.starts_with("false|") && t.contains("more than"), "{t}");
}

/// A program started by a script runs with the server's rights, whatever
/// the file API's roots: `process.run` is off unless `LuaProcess on`.
#[test]
fn process_run_is_off_unless_configured() {
    let script = r#"
function hook_response(r)
  local ok, err = pcall(process.run, { "cat", "/etc/shadow" })
  r:write(tostring(ok), "|", tostring(err):match("LuaProcess off") or tostring(err))
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin runner"), &[("runner", script)]);
    assert_eq!(srv.get("/").text(), "false|LuaProcess off");
}

/// What `socket:receive` reads is held in the worker before it becomes a
/// Lua string, outside LuaMemoryLimit: a line or the rest of the stream
/// is bounded at 16 MiB, as a byte count is. LuaSocket's `"*l"` and `"*a"`
/// name `"line"` and `"all"`; any other pattern is an error, not taken
/// for a line.
#[test]
fn socket_receive_is_bounded_and_knows_its_patterns() {
    const CAP: usize = 16 << 20;
    let script = r#"
function hook_response(r)
  local s = tcp.connect("127.0.0.1", tonumber(r:param("port")))
  s:send(r:param("n") .. "\n")
  local ok, v = pcall(s.receive, s, r:param("pattern"))
  s:close()
  r:write(ok and "ok " .. #v or "error " .. tostring(v))
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin sock"), &[("sock", script)]);
    // Each connection: N times `x`, a newline and `tail`, then close.
    let cases: &[(&str, usize, &str)] = &[
        ("*l", 2, "ok 2"),
        ("*a", 2, "ok 7"),
        ("line", CAP, &format!("ok {CAP}")),
        ("line", CAP + 1, "more than 16 MiB without a newline"),
        ("all", CAP, "more than 16 MiB before the peer closed"),
        (
            "*x",
            2,
            r#"socket:receive: "*x": not "line", "all" or a byte count"#,
        ),
    ];
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = peer.local_addr().unwrap().port();
    let connections = cases.len();
    let peer = std::thread::spawn(move || {
        for _ in 0..connections {
            let (s, _) = peer.accept().unwrap();
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            let mut data = vec![b'x'; line.trim().parse().unwrap()];
            data.extend_from_slice(b"\ntail");
            // The server may stop reading, and close, before the end.
            let _ = (&s).write_all(&data);
        }
    });
    for (pattern, n, expected) in cases {
        let t = srv
            .get(&format!(
                "/?port={port}&n={n}&pattern={}",
                pattern.replace('*', "%2A")
            ))
            .text();
        match expected.starts_with("ok") {
            true => assert_eq!(&t, expected, "{pattern} {n}"),
            false => assert!(
                t.starts_with("error ") && t.contains(expected),
                "{pattern} {n}: {t}"
            ),
        }
    }
    peer.join().unwrap();
}

/// A descriptor the server inherited from whatever started it (here fd 7,
/// open on a file, not close-on-exec) never reaches a program a script
/// runs: every worker marks what it inherited close-on-exec as it starts,
/// whichever plugins it loads (only `serve_cgi` did, so a worker without it
/// passed them to `process.run`).
#[test]
fn inherited_descriptors_never_reach_programs_scripts_run() {
    use std::os::unix::process::CommandExt;
    let script = r#"
function hook_response(r)
  local out = process.run{ "sh", "-c", "ls /proc/self/fd" }
  r:write(out.stdout)
  return OK
end
"#;
    let dir = TempDir::new("fds");
    dir.write("plugins/fds.lua", script);
    let secret = dir.write("secret", "s");
    let text = conf("LuaProcess on", "    Plugin fds");
    let conf_path = dir.write("axkit.conf", config_text(&dir, &text));
    let mut command = std::process::Command::new(BIN);
    command.args(["--no-master", "-c"]).arg(&conf_path);
    let file = std::fs::File::open(&secret).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: between fork and exec, dup2 (async-signal-safe) on a
    // descriptor the closure's file keeps open.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let srv = Axkit::launch(command, dir, conf_path);
    drop(file);
    let fds = srv.get("/").text();
    let listed: Vec<&str> = fds.split_whitespace().collect();
    assert!(
        !listed.contains(&"7"),
        "fd 7 reached the program: {listed:?}"
    );
    assert!(listed.contains(&"1"), "{listed:?}");
}
