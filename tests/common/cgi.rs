//! Helpers for the `serve_cgi` tests (`cgi_*.rs`): the server config,
//! scripts written into the scratch directory with the real interpreters'
//! `#!` lines, requests, and what `/proc` says about the processes a
//! script leaves.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

/// A server with `serve_cgi` before `uri_to_file`/`serve_file`, docroot
/// `{dir}/www`, scripts under `{dir}/cgi-bin`; `extra` goes inside
/// `<Server>`, `global` before it.
pub fn conf(global: &str, extra: &str) -> String {
    format!(
        "Workers 1\n{global}\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {{dir}}/www\n    \
         DirectoryIndex index.html\n    Plugin serve_cgi\n    Plugin uri_to_file\n    \
         Plugin fast_mime_map\n    Plugin serve_file\n    CGI_Match \\.(cgi|pl|py)$\n    \
         ScriptAlias /cgi-bin/ {{dir}}/cgi-bin/\n{extra}\n</Server>\n"
    )
}

pub fn start(conf: &str, prepare: impl FnOnce(&TempDir)) -> Axkit {
    Axkit::start_single_with(conf, |d| {
        std::fs::create_dir_all(d.path().join("www")).unwrap();
        std::fs::create_dir_all(d.path().join("cgi-bin")).unwrap();
        prepare(d)
    })
}

/// Write an executable script.
pub fn script(d: &TempDir, rel: &str, text: &str) {
    let p = d.write(rel, text);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Write `cgi-bin/NAME`, a sh script running `body`.
pub fn sh(d: &TempDir, name: &str, body: &str) {
    script(
        d,
        &format!("cgi-bin/{name}"),
        &format!("#!/bin/sh\n{body}\n"),
    )
}

/// `#!` lines for the real interpreters on this machine.
pub fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    format!("#!{}\n", String::from_utf8_lossy(&out.stdout).trim())
}

pub fn perl() -> String {
    let out = Command::new("perl")
        .args(["-e", "print $^X"])
        .output()
        .expect("perl");
    format!("#!{}\n", String::from_utf8_lossy(&out.stdout).trim())
}

/// Send raw bytes, read the whole (Connection: close) response.
pub fn exchange(srv: &Axkit, raw: &[u8]) -> Response {
    let started = Instant::now();
    let (bytes, ended) = srv.exchange(raw);
    parse_response(&bytes).unwrap_or_else(|| srv.no_response("a request", &bytes, &ended, started))
}

pub fn post(srv: &Axkit, path: &str, ctype: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {ctype}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    exchange(srv, &req)
}

/// A chunked POST, in pieces of `piece` bytes.
pub fn post_chunked(srv: &Axkit, path: &str, body: &[u8], piece: usize) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for part in body.chunks(piece) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = srv.connect();
    // Write from a thread: the server may answer before reading it all.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(30));
    writer.join().unwrap();
    parse_response(&bytes).expect("a response")
}

/// Deterministic incompressible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every process whose process group is `pgid` (zombies included).
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may contain spaces.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        if fields[2].parse::<i32>() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

/// The pid a script logged to stderr as `pid=N`.
pub fn logged_pid(srv: &mut Axkit, tag: &str) -> i32 {
    let needle = format!("{tag} pid=");
    let log = srv.wait_stderr(&needle, Duration::from_secs(10));
    let at = log.find(&needle).unwrap() + needle.len();
    log[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Children of every thread of `pid` (scripts are spawned from a helper
/// thread), zombies included.
pub fn all_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid = task.file_name().to_string_lossy().parse().unwrap();
        out.extend(children_of_task(pid, tid));
    }
    out
}

pub fn children_of_task(pid: i32, tid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Bytes process `pid` has written so far (`wchar` in `/proc/PID/io`).
pub fn bytes_written(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    let line = io.lines().find(|l| l.starts_with("wchar:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

pub const ENV_PL: &str = r#"
print "Content-Type: text/plain\n\n";
print "$_=$ENV{$_}\n" for sort keys %ENV;
"#;

pub fn env_map(body: &str) -> std::collections::BTreeMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Kills a process the test left behind, whatever the test's outcome.
pub struct KillOnDrop(pub i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2); the pid is a process this test caused to exist.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}
