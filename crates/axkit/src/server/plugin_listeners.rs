//! Plugins' own listening sockets across the process model (see
//! `plugin/listen.rs` for what a plugin asks): the master binds those a
//! config's sources ask for, as root and before it starts the workers,
//! keeps them across a reload while their name and address are
//! unchanged (and across a binary upgrade, [`UPGRADE_PLUGIN_ENV`]), and
//! passes each to the workers it is for, named in [`PLUGIN_LISTEN_ENV`]
//! as the HTTP listeners are in `AXKIT_LISTEN_FDS`. The file of a unix
//! socket no longer used (a reload that moved it, a stop) is removed by
//! the master if it is still the one made there
//! ([`PluginListeners::remove_files`]). A process that serves by itself
//! (`--no-master`) binds them itself, and removes their files as it exits
//! ([`SocketFiles`]); `--check` binds nothing but checks where the unix
//! ones would be.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::plugin::{install_listeners, Catalog, ListenAddr, ListenSpec, Listener};
use crate::server::{master, privileges, shared_memory};

/// The plugins' sockets a worker inherits: `FD=KIND:NAME,…`, KIND being
/// `tcp` or `unix`.
pub(crate) const PLUGIN_LISTEN_ENV: &str = "AXKIT_PLUGIN_LISTEN_FDS";

/// The plugins' sockets a new master inherits from the one it replaces
/// (binary upgrade), as in [`PLUGIN_LISTEN_ENV`].
pub(crate) const UPGRADE_PLUGIN_ENV: &str = "AXKIT_UPGRADE_PLUGIN_FDS";

/// The plugins' sockets of one configuration, owned by the master.
#[derive(Default)]
pub(crate) struct PluginListeners(Vec<Bound>);

struct Bound {
    spec: ListenSpec,
    fd: OwnedFd,
    /// A unix socket's file, as made at its path: what may be removed
    /// once the socket is no longer used, and only while still there (not
    /// another file put at the path since).
    file: Option<FileId>,
}

/// A file's device and inode.
type FileId = (u64, u64);

/// The socket file at `path`, if a socket is there.
fn socket_file(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| (m.dev(), m.ino()))
}

impl Bound {
    fn unix(&self) -> bool {
        matches!(self.spec.addr, ListenAddr::Unix(_))
    }
}

/// What every source of `catalog` asks for, for `config`, checked: valid,
/// distinct names.
fn specs(config: &Config, catalog: &Catalog) -> Result<Vec<ListenSpec>, String> {
    shared_memory::named_specs(
        catalog,
        "listening socket",
        |source| source.listeners(config),
        |spec| &spec.name,
    )
}

/// What is wrong with where `config`'s plugins would listen, beyond what
/// binding says: a unix socket in a directory the workers' `User` may
/// write, where a worker (or a CGI script) could put a listener of its own
/// in its place and take whoever connects.
pub(crate) fn check(config: &Config, catalog: &Catalog) -> Vec<ConfigError> {
    let error = |message| ConfigError {
        file: String::new(),
        line: 0,
        directive: None,
        plugin: None,
        message,
    };
    let specs = match specs(config, catalog) {
        Ok(specs) => specs,
        Err(e) => return vec![error(e)],
    };
    specs
        .iter()
        .filter_map(|spec| match &spec.addr {
            ListenAddr::Unix(path) => privileges::user_may_replace(config, path)
                .map(|why| error(format!("`{}` listens on {}: {why}", spec.name, spec.addr))),
            ListenAddr::Tcp(_) => None,
        })
        .collect()
}

/// Bind `addr` for a plugin: TCP as the `Listen` addresses are; a unix
/// socket mode 0600 from the start, replacing a socket left at its path;
/// with the file it made, for a unix socket.
fn bind(addr: &ListenAddr) -> std::io::Result<(OwnedFd, Option<FileId>)> {
    let path = match addr {
        ListenAddr::Tcp(addr) => return Ok((master::bind(*addr)?.into(), None)),
        ListenAddr::Unix(path) => path,
    };
    // Anything but a socket at that path is not ours to remove.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ))
        }
        Err(_) => {}
    }
    // The umask applies at bind: a chmod after it would leave a window.
    // Of the master's threads only this one creates files.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let listener = bound?;
    listener.set_nonblocking(true)?;
    Ok((listener.into(), socket_file(path)))
}

impl PluginListeners {
    /// The sockets `config` needs: those of `keep` with the same name and
    /// address (the same socket, which the workers serving now share), the
    /// others bound afresh.
    pub fn create(
        config: &Config,
        catalog: &Catalog,
        keep: &PluginListeners,
    ) -> Result<PluginListeners, String> {
        let mut out = Vec::new();
        for spec in specs(config, catalog)? {
            let kept = keep.0.iter().find(|b| {
                b.spec.name == spec.name
                    && b.spec.addr == spec.addr
                    // A unix socket whose file was removed or replaced
                    // meanwhile is made again.
                    && match &spec.addr {
                        ListenAddr::Unix(path) => b.file.is_some() && socket_file(path) == b.file,
                        ListenAddr::Tcp(_) => true,
                    }
            });
            let (fd, file) = match kept {
                Some(b) => b.fd.try_clone().map(|fd| (fd, b.file)),
                None => bind(&spec.addr),
            }
            .map_err(|e| format!("cannot listen on {} for `{}`: {e}", spec.addr, spec.name))?;
            out.push(Bound { spec, fd, file });
        }
        Ok(PluginListeners(out))
    }

    /// Remove the files of our unix sockets that `kept` does not hold
    /// (the next configuration's, or none when stopping), each only if it
    /// is still the file made at its path: what failed, to be logged.
    /// The caller makes sure no other master uses them.
    pub fn remove_files(&self, kept: &PluginListeners) -> Vec<String> {
        let held = |file| kept.0.iter().any(|k| k.file == Some(file));
        self.0
            .iter()
            .filter_map(|b| {
                let file = b.file.filter(|&file| !held(file))?;
                remove_file(&b.spec.addr, file)
            })
            .collect()
    }

    /// Those meant for worker `slot`.
    fn for_worker(&self, slot: usize) -> impl Iterator<Item = &Bound> {
        self.0
            .iter()
            .filter(move |b| b.spec.worker.is_none_or(|w| w == slot))
    }

    /// For worker `slot`'s environment ([`PLUGIN_LISTEN_ENV`]).
    pub fn env(&self, slot: usize) -> String {
        encode(self.for_worker(slot))
    }

    /// For a new master's environment ([`UPGRADE_PLUGIN_ENV`]): all of them.
    pub fn upgrade_env(&self) -> String {
        encode(self.0.iter())
    }

    /// The descriptors to make inheritable while worker `slot` starts.
    pub fn fds(&self, slot: usize) -> Vec<RawFd> {
        self.for_worker(slot).map(|b| b.fd.as_raw_fd()).collect()
    }

    /// Every descriptor, for a binary upgrade's new master.
    pub fn all_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.0.iter().map(|b| b.fd.as_raw_fd())
    }

    /// Hand worker 0's sockets to this process's plugins, for a process
    /// that runs them itself (`--no-master`): the files of the unix ones,
    /// which it removes when it exits.
    pub fn install_here(self) -> SocketFiles {
        let files = self
            .0
            .iter()
            .filter_map(|b| Some((b.spec.addr.clone(), b.file?)))
            .collect();
        let here = self
            .0
            .into_iter()
            .filter(|b| b.spec.worker.is_none_or(|w| w == 0));
        install_listeners(
            here.map(|b| {
                let unix = b.unix();
                (b.spec.name, Listener::from_fd(unix, b.fd))
            })
            .collect(),
        );
        SocketFiles(files)
    }

    /// The sockets the master this one replaces passed (binary upgrade),
    /// each under the address it is bound to, so that [`create`] keeps
    /// those the config still asks for; a unix socket's file is the one at
    /// its path now (the old master's, in a directory only root or the
    /// user who started the server may write).
    ///
    /// [`create`]: PluginListeners::create
    pub fn from_upgrade() -> Result<PluginListeners, String> {
        let spec = std::env::var(UPGRADE_PLUGIN_ENV).unwrap_or_default();
        let mut out = Vec::new();
        for (name, listener) in decode(UPGRADE_PLUGIN_ENV, &spec)? {
            let addr = listener
                .addr()
                .map_err(|e| format!("{UPGRADE_PLUGIN_ENV}: socket `{name}`: {e}"))?;
            let file = match &addr {
                ListenAddr::Unix(path) => socket_file(path),
                ListenAddr::Tcp(_) => None,
            };
            let spec = ListenSpec {
                name,
                addr,
                worker: None,
            };
            out.push(Bound {
                spec,
                fd: listener.into(),
                file,
            });
        }
        Ok(PluginListeners(out))
    }
}

/// The files of the unix sockets a process serving by itself
/// (`--no-master`) made, each as made at its path.
pub(crate) struct SocketFiles(Vec<(ListenAddr, FileId)>);

impl SocketFiles {
    /// Remove each while it is still the file made at its path, as the
    /// master removes its own at stop: what failed, to be logged.
    pub fn remove(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(addr, file)| remove_file(addr, *file))
            .collect()
    }
}

/// Remove the unix socket file of `addr` if it is still `file` (not
/// another put at the path since): why it could not be, if so.
fn remove_file(addr: &ListenAddr, file: FileId) -> Option<String> {
    let ListenAddr::Unix(path) = addr else {
        return None;
    };
    if socket_file(path) != Some(file) {
        return None;
    }
    std::fs::remove_file(path)
        .err()
        .map(|e| format!("cannot remove the socket {addr}: {e}"))
}

fn encode<'a>(bound: impl Iterator<Item = &'a Bound>) -> String {
    bound
        .map(|b| {
            let kind = if b.unix() { "unix" } else { "tcp" };
            format!("{}={kind}:{}", b.fd.as_raw_fd(), b.spec.name)
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The sockets named by `spec` (`FD=KIND:NAME,…`), the value of `var`,
/// close-on-exec: a CGI process started later inherits none.
fn decode(var: &str, spec: &str) -> Result<Vec<(String, Listener)>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let bad = || format!("bad {var} entry {item:?}");
        let (fd, named) = item.split_once('=').ok_or_else(bad)?;
        let (kind, name) = named.split_once(':').ok_or_else(bad)?;
        let fd: RawFd = fd.parse().map_err(|_| bad())?;
        let unix = match kind {
            "unix" => true,
            "tcp" => false,
            _ => return Err(bad()),
        };
        // SAFETY: the master passed this descriptor to us for exactly this;
        // fcntl only changes its flags.
        let owned = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
                return Err(format!(
                    "{var}: descriptor {fd}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            OwnedFd::from_raw_fd(fd)
        };
        out.push((name.to_string(), Listener::from_fd(unix, owned)));
    }
    Ok(out)
}

/// Worker side: keep the sockets the master handed over (named in
/// [`PLUGIN_LISTEN_ENV`]) for the plugins to take.
pub(crate) fn take_inherited() -> Result<(), String> {
    let spec = std::env::var(PLUGIN_LISTEN_ENV).unwrap_or_default();
    install_listeners(decode(PLUGIN_LISTEN_ENV, &spec)?);
    Ok(())
}
