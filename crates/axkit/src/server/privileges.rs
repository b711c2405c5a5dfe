//! Running the workers as an unprivileged user (`User`, `Group`): the
//! account lookups behind those directives, the checks the master makes
//! when it loads a config, and the switch a worker makes before it serves.
//!
//! The master keeps root: it binds the listening sockets, reads the config
//! and opens its own log. A worker builds its plugins as root too (their
//! constructors open the log files and what else the config names, as
//! Apache's modules do when its parent starts), then gives up root for
//! good before it starts any plugin's background work or accepts a
//! connection: supplementary groups (the user's, from the group database),
//! then the group, then the user. It checks that the change cannot be
//! undone (`setuid(0)` must fail) and stops if it can. Everything the
//! worker starts from then on (CGI scripts, Lua's `process.run`) and every
//! file it creates (uploads, SQLite databases) is the user's.

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::core::{self, Account, Group};
use crate::config::{Config, ConfigError};

/// Look a user up in the password database (files, LDAP: what NSS says).
pub(crate) fn lookup_user(name: &str) -> Result<Account, String> {
    let cname = CString::new(name).map_err(|_| format!("no such user {name:?}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: getpwnam_r writes into `pwd` and `buf` (of the length
        // passed), and points `result` at `pwd` or sets it to null.
        let (rc, found) = unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, (!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
        };
        match (rc, found) {
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            (_, Some((uid, gid))) => {
                return Ok(Account {
                    name: name.to_string(),
                    uid,
                    gid,
                })
            }
            (0, None) => return Err(format!("no such user {name:?}")),
            (rc, None) => {
                let e = std::io::Error::from_raw_os_error(rc);
                return Err(format!("cannot look up user {name:?}: {e}"));
            }
        }
    }
}

/// Look a group up in the group database.
pub(crate) fn lookup_group(name: &str) -> Result<Group, String> {
    let cname = CString::new(name).map_err(|_| format!("no such group {name:?}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: as for getpwnam_r above.
        let (rc, found) = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, (!result.is_null()).then_some(grp.gr_gid))
        };
        match (rc, found) {
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            (_, Some(gid)) => {
                return Ok(Group {
                    name: name.to_string(),
                    gid,
                })
            }
            (0, None) => return Err(format!("no such group {name:?}")),
            (rc, None) => {
                let e = std::io::Error::from_raw_os_error(rc);
                return Err(format!("cannot look up group {name:?}: {e}"));
            }
        }
    }
}

/// What `User` and `Group` ask of a worker.
struct Target<'a> {
    user: &'a Account,
    gid: u32,
}

fn target(config: &Config) -> Option<Target<'_>> {
    let user = config.global.get(&core::USER).as_ref()?;
    let gid = match config.global.get(&core::GROUP) {
        Some(group) => group.gid,
        None => user.gid,
    };
    Some(Target { user, gid })
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// What the loader cannot see in one directive: `Group` without `User`.
pub(crate) fn check(config: &Config) -> Vec<ConfigError> {
    if config.global.get(&core::USER).is_some() {
        return Vec::new();
    }
    config
        .global
        .settings_of(&core::GROUP)
        .iter()
        .filter(|s| !s.is_default())
        .map(|s| ConfigError {
            file: s.file.to_string(),
            line: s.line,
            directive: Some("Group".into()),
            plugin: Some("core".into()),
            message: "Group needs User: the workers would keep root's user id".into(),
        })
        .collect()
}

/// The master's warning about the rights its workers will have, if any:
/// started as root without `User`, or with `User` but not as root.
pub(crate) fn warning(config: &Config) -> Option<String> {
    match (target(config), is_root()) {
        (None, true) => Some(
            "running as root without `User`: the workers, CGI scripts and Lua scripts have \
             root's rights (they can read any file); set `User` (and `Group`) to run them as an \
             unprivileged account"
                .into(),
        ),
        (Some(t), false) => {
            // SAFETY: getuid cannot fail and touches no memory.
            let uid = unsafe { libc::getuid() };
            (uid != t.user.uid).then(|| {
                format!(
                    "`User {}` ignored: the server was not started as root, and its workers keep \
                     the user id {uid}",
                    t.user.name
                )
            })
        }
        _ => None,
    }
}

/// Why the workers' `User` could put something of its own at `path`,
/// if it could: the directory `path` is in, or one above it, is that
/// user's, or writable by it (by group or by everyone) and not sticky (a
/// sticky directory's entries are their owners' to replace). None without
/// `User`, for `User root`, or when the directory does not exist (what
/// then uses `path` says so).
pub(crate) fn user_may_replace(config: &Config, path: &Path) -> Option<String> {
    let t = target(config).filter(|t| t.user.uid != 0)?;
    let groups = CString::new(t.user.name.as_str())
        .ok()
        .and_then(|name| supplementary_groups(&name, t.gid).ok())
        .unwrap_or_else(|| vec![t.gid]);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(parent).ok()?;
    dir.ancestors().find_map(|d| {
        let m = std::fs::metadata(d).ok()?;
        let open = m.mode() & 0o1000 == 0;
        let how = if m.uid() == t.user.uid {
            "is owned by"
        } else if open && m.mode() & 0o020 != 0 && groups.contains(&m.gid()) {
            "is writable by a group of"
        } else if open && m.mode() & 0o002 != 0 {
            "is writable by every user, as"
        } else {
            return None;
        };
        Some(format!(
            "{} {how} the workers' `User {}`, which could then put its own socket at {}: \
             use a directory only root (or whoever starts the server) may write",
            d.display(),
            t.user.name,
            path.display()
        ))
    })
}

fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// The user's supplementary groups, `gid` among them.
fn supplementary_groups(name: &CStr, gid: u32) -> Result<Vec<libc::gid_t>, String> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: getgrouplist writes at most `count` ids into `groups` and
        // sets `count` to how many there are.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count as usize);
            return Ok(groups);
        }
        if count as usize <= groups.len() || groups.len() >= 1 << 16 {
            return Err("cannot list the user's groups".into());
        }
        groups.resize(count as usize, 0);
    }
}

/// Give up root for the account `User`/`Group` name, for good; nothing
/// to do without `User`, or when not running as root (the master has
/// warned). Called by a worker after its plugins are built and before it
/// serves. Must run before the process starts any thread of its own that
/// it does not know about: glibc applies each change to every thread.
pub(crate) fn drop_privileges(config: &Config) -> Result<(), String> {
    let Some(t) = target(config) else {
        return Ok(());
    };
    if !is_root() {
        return Ok(());
    }
    let (uid, gid) = (t.user.uid, t.gid);
    let name = CString::new(t.user.name.as_str()).map_err(|_| "bad user name".to_string())?;
    let groups = supplementary_groups(&name, gid)?;
    // SAFETY: plain system calls on values we own; `groups` outlives the
    // call that reads it.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(last_error("setgroups"));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(last_error("setgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(last_error("setuid"));
        }
        // Root must be out of reach now, whatever the kernel or a
        // capability left behind.
        if uid != 0 && (libc::setuid(0) == 0 || libc::seteuid(0) == 0) {
            return Err("could regain root after dropping it".into());
        }
        let (mut r, mut e, mut s) = (0, 0, 0);
        libc::getresuid(&mut r, &mut e, &mut s);
        let (mut rg, mut eg, mut sg) = (0, 0, 0);
        libc::getresgid(&mut rg, &mut eg, &mut sg);
        if [r, e, s] != [uid; 3] || [rg, eg, sg] != [gid; 3] {
            return Err("the user and group ids did not all change".into());
        }
    }
    Ok(())
}
