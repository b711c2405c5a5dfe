//! Listening sockets of a plugin's own (an operator's console, say) that
//! the master binds, as it binds the `Listen` addresses: as root, before
//! any worker runs, and once for as long as the config asks for them.
//!
//! A [`PluginSource`](super::PluginSource) says which sockets a config
//! needs ([`PluginSource::listeners`](super::PluginSource::listeners), a
//! list of [`ListenSpec`]). The master binds each one before it starts
//! the workers and hands its descriptor to the workers the spec names, as
//! it hands over the HTTP listeners; such a worker's plugin takes it with
//! [`PluginInit::listener`](super::PluginInit::listener). Across a reload
//! a socket whose name and address are unchanged is kept, so that no
//! other process can take its address between two generations; one no
//! longer asked for is closed once the old generation lets go of it. A
//! unix socket is made mode 0600, owned by the user who started the
//! server, in a directory the workers' `User` may not write (a config
//! that names one is refused): so that nothing running as that user can
//! put a listener of its own at the path.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where a plugin's socket listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address, bound without `SO_REUSEPORT`: no other process may
    /// listen beside it.
    Tcp(SocketAddr),
    /// A unix socket at this path (mode 0600). Whatever socket is at the
    /// path when the master binds it is replaced; anything else there is
    /// an error.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listening socket that a [`PluginSource`](super::PluginSource) asks
/// the master for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    /// Unique in the server, named as a region of shared memory is
    /// ([`SharedMemorySpec::valid_name`](super::SharedMemorySpec::valid_name)):
    /// what the plugin takes it by.
    pub name: String,
    pub addr: ListenAddr,
    /// The worker that gets it (its [`index`](super::Worker::index)), or
    /// every worker when None. A socket only worker 0 serves goes to worker
    /// 0 alone: another worker, whatever runs in it, cannot accept on it.
    pub worker: Option<usize>,
}

/// A socket the master bound for a plugin, as the plugin gets it.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Listener {
    /// The listening socket behind `fd`: a unix one if `unix`, else TCP.
    pub(crate) fn from_fd(unix: bool, fd: OwnedFd) -> Listener {
        match unix {
            true => Listener::Unix(fd.into()),
            false => Listener::Tcp(fd.into()),
        }
    }

    /// Where it listens, as the kernel says.
    pub(crate) fn addr(&self) -> std::io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr.as_pathname().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "an unnamed socket")
                })?;
                Ok(ListenAddr::Unix(path.to_path_buf()))
            }
        }
    }
}

impl From<Listener> for OwnedFd {
    fn from(l: Listener) -> OwnedFd {
        match l {
            Listener::Tcp(l) => l.into(),
            Listener::Unix(l) => l.into(),
        }
    }
}

/// The sockets handed to this process, by name, until a plugin takes them.
static HANDED: Mutex<Vec<(String, Listener)>> = Mutex::new(Vec::new());

/// Record the sockets this process was given (a worker: by the master;
/// `--no-master`: bound by itself).
pub(crate) fn install(listeners: Vec<(String, Listener)>) {
    if let Ok(mut handed) = HANDED.lock() {
        handed.extend(listeners);
    }
}

/// Take the socket named `name`: None in a worker it was not meant for,
/// under `--check`, or once taken.
pub(crate) fn take(name: &str) -> Option<Listener> {
    let mut handed = HANDED.lock().ok()?;
    let at = handed.iter().position(|(n, _)| n == name)?;
    Some(handed.swap_remove(at).1)
}
