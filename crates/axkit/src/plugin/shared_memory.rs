//! Memory shared by every worker process of a server: named regions that
//! the master creates before it starts its workers and that every worker
//! maps at the same size, so that state kept there (the `axkit-shared`
//! crate's zones and broadcast) is seen by all of them, survives a worker
//! that crashes and, when unchanged, a reload.
//!
//! A [`PluginSource`](super::PluginSource) says which regions a config
//! needs ([`PluginSource::shared_memory`](super::PluginSource::shared_memory),
//! a list of [`SharedMemorySpec`]). The master creates each one as a
//! `memfd` (zero-filled, sealed against resizing, so that no process can
//! shrink it under the others' feet), runs the spec's `init` on it once,
//! and hands the descriptor to each worker it starts, as it hands over the
//! listening sockets (an inherited descriptor named in the environment).
//! The worker maps every region before it builds its plugins, and a plugin
//! finds its region by name with [`SharedMemory::get`]. Workers are
//! re-executed, not forked, so an anonymous mapping of the master's could
//! not be passed on: a descriptor is what survives `exec`.
//!
//! On SIGHUP a region whose name and size are unchanged is kept: the new
//! generation maps the same memory while the old one drains. A region whose
//! size changed is made anew (empty) and one no longer asked for is dropped
//! once the old generation is gone. A worker restarted after a crash maps
//! the regions of its generation again; the master owns them, so nothing
//! in them is lost with a worker.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// A region of shared memory that a [`PluginSource`](super::PluginSource)
/// asks the master for.
#[derive(Clone, Debug)]
pub struct SharedMemorySpec {
    /// Unique in the server: 1 to 64 of `A-Z a-z 0-9 _ - . : /`. A source
    /// whose memory layout depends on more than the size puts that in the
    /// name, so that a reload that changes it gets a fresh region.
    pub name: String,
    /// In bytes, rounded up to whole pages.
    pub size: usize,
    /// Formats a fresh, zero-filled region, once, in the process that
    /// creates it (the master): never while a worker uses it.
    pub init: fn(&mut [u8]),
}

impl SharedMemorySpec {
    /// Whether `name` may name a region.
    pub fn valid_name(name: &str) -> bool {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b))
    }
}

/// A region of shared memory mapped into this process, for the life of
/// the process (it is never unmapped, so the pointer stays valid). Every
/// process that maps it sees the same bytes: what is kept there must be
/// laid out without pointers (offsets instead) and changed only under a
/// lock that lives in the region itself.
#[derive(Clone, Copy, Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory mapped for the life of the process;
// synchronising access to it is up to whoever uses it.
unsafe impl Send for SharedMemory {}
unsafe impl Sync for SharedMemory {}

/// The regions this process mapped at start-up, by name.
static REGIONS: OnceLock<Vec<(String, SharedMemory)>> = OnceLock::new();

impl SharedMemory {
    /// The region named `name` in this process: in a worker (or a
    /// `--no-master` or `--check` run), every region the config's sources
    /// asked for. None when no source asked for it, and in a process that
    /// is not a server.
    pub fn get(name: &str) -> Option<SharedMemory> {
        REGIONS
            .get()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, region)| *region)
    }

    /// Create the region `spec` describes: a sealed `memfd` of its size,
    /// formatted by its `init`. The descriptor is close-on-exec; [`map`]
    /// it to use it here. This is what the master does for each region;
    /// tests and tools use it to share a region with processes they start.
    ///
    /// [`map`]: SharedMemory::map
    pub fn create(spec: &SharedMemorySpec) -> io::Result<OwnedFd> {
        let size = round_to_pages(spec.size)?;
        let name = std::ffi::CString::new(format!("axkit:{}", spec.name))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a region name"))?;
        // SAFETY: memfd_create with a valid C string; the descriptor is ours.
        let fd = unsafe {
            let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let len = libc::off_t::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
        // SAFETY: plain calls on the descriptor we own.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), len) < 0 {
                return Err(io::Error::last_os_error());
            }
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Mapped only for `init`: the creator (the master) does not use it.
        let ptr = mmap(fd.as_raw_fd(), size)?;
        // SAFETY: a fresh mapping of `size` bytes that nothing else uses yet.
        (spec.init)(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), size) });
        // SAFETY: unmapping exactly what we mapped.
        unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
        Ok(fd)
    }

    /// Map the region behind `fd` (made by [`create`](SharedMemory::create))
    /// into this process, at its whole size, for the life of the process.
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<SharedMemory> {
        // SAFETY: fstat only writes the struct it is given.
        let size = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd.as_raw_fd(), &mut st) < 0 {
                return Err(io::Error::last_os_error());
            }
            usize::try_from(st.st_size).unwrap_or(0)
        };
        if size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        }
        let ptr = mmap(fd.as_raw_fd(), size)?;
        Ok(SharedMemory { ptr, len: size })
    }

    /// The first byte of the region.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The region's size in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Record the regions of this process (once: a worker's regions do not
/// change while it runs).
pub(crate) fn install(regions: Vec<(String, SharedMemory)>) {
    let _ = REGIONS.set(regions);
}

pub(crate) fn round_to_pages(size: usize) -> io::Result<usize> {
    // SAFETY: sysconf has no memory effects.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    size.max(1)
        .checked_next_multiple_of(page)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))
}

fn mmap(fd: i32, size: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a new shared mapping of the descriptor; nothing is aliased.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(region: &mut [u8]) {
        region[0] = 7;
        let last = region.len() - 1;
        region[last] = 9;
    }

    #[test]
    fn a_region_is_created_formatted_and_shared_between_mappings() {
        let spec = SharedMemorySpec {
            name: "test:one".into(),
            size: 5000,
            init: mark,
        };
        let fd = SharedMemory::create(&spec).unwrap();
        let a = SharedMemory::map(std::os::fd::AsFd::as_fd(&fd)).unwrap();
        let b = SharedMemory::map(std::os::fd::AsFd::as_fd(&fd)).unwrap();
        assert_eq!(a.len() % 4096, 0);
        assert!(a.len() >= 5000);
        // SAFETY: both mappings are ours and at least a.len() long.
        unsafe {
            assert_eq!(*a.as_ptr(), 7);
            assert_eq!(*a.as_ptr().add(a.len() - 1), 9);
            *a.as_ptr().add(1) = 42;
            assert_eq!(*b.as_ptr().add(1), 42);
        }
        // Sealed: nobody can shrink it under another process's feet.
        // SAFETY: ftruncate on our descriptor.
        assert!(unsafe { libc::ftruncate(fd.as_raw_fd(), 0) } < 0);
    }

    #[test]
    fn names_are_checked() {
        assert!(SharedMemorySpec::valid_name("shared/zone:sessions-1.x"));
        for bad in ["", "a,b", "a=b", "a b", &"x".repeat(65)] {
            assert!(!SharedMemorySpec::valid_name(bad), "{bad:?}");
        }
    }
}
