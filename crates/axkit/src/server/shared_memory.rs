//! Shared memory across the process model (see `plugin/shared_memory.rs`
//! for what a region is): the master creates the regions a config's
//! sources ask for, keeps them across a reload when unchanged, and passes
//! their descriptors to each worker it starts, named in
//! [`SHARED_MEMORY_ENV`] (`FD=NAME,…`) as the listening sockets are in
//! `AXKIT_LISTEN_FDS`; a worker maps them all and closes the descriptors.
//! A process that serves by itself (`--no-master`) or builds the plugins
//! once (`--check`) creates and maps them itself.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::config::Config;
use crate::plugin::{
    install_shared_memory, round_to_pages, Catalog, PluginSource, SharedMemory, SharedMemorySpec,
};

/// The regions a worker inherits: `FD=NAME,FD=NAME`.
pub(crate) const SHARED_MEMORY_ENV: &str = "AXKIT_SHARED_MEMORY";

/// The regions of one configuration, owned by the master.
#[derive(Default)]
pub(crate) struct Regions(Vec<Region>);

struct Region {
    name: String,
    size: usize,
    fd: OwnedFd,
}

/// What every source of `catalog` asks for, for `config`, checked: valid,
/// distinct names.
fn specs(config: &Config, catalog: &Catalog) -> Result<Vec<SharedMemorySpec>, String> {
    named_specs(
        catalog,
        "shared memory region",
        |source| source.shared_memory(config),
        |spec| &spec.name,
    )
}

/// What `ask` gets from every source of `catalog` (each a `what` named by
/// `name`), checked: valid names (as a region's), each asked for once.
pub(crate) fn named_specs<S>(
    catalog: &Catalog,
    what: &str,
    ask: impl Fn(&dyn PluginSource) -> Vec<S>,
    name: impl Fn(&S) -> &str,
) -> Result<Vec<S>, String> {
    let mut out: Vec<S> = Vec::new();
    for source in catalog.sources() {
        for spec in ask(source) {
            if !SharedMemorySpec::valid_name(name(&spec)) {
                return Err(format!(
                    "{what} {:?} (asked for by `{}`): not a valid name",
                    name(&spec),
                    source.name()
                ));
            }
            if out.iter().any(|s| name(s) == name(&spec)) {
                return Err(format!("{what} `{}` is asked for twice", name(&spec)));
            }
            out.push(spec);
        }
    }
    Ok(out)
}

impl Regions {
    /// The regions `config` needs: those of `keep` with the same name and
    /// size (the same memory, shared with the workers that use it now),
    /// the others created afresh.
    pub fn create(config: &Config, catalog: &Catalog, keep: &Regions) -> Result<Regions, String> {
        let mut out = Vec::new();
        for spec in specs(config, catalog)? {
            let size = round_to_pages(spec.size)
                .map_err(|e| format!("shared memory region `{}`: {e}", spec.name))?;
            let kept = keep
                .0
                .iter()
                .find(|r| r.name == spec.name && r.size == size);
            let fd = match kept {
                Some(r) => r.fd.try_clone(),
                None => SharedMemory::create(&spec),
            }
            .map_err(|e| format!("cannot create shared memory region `{}`: {e}", spec.name))?;
            out.push(Region {
                name: spec.name,
                size,
                fd,
            });
        }
        Ok(Regions(out))
    }

    /// For a worker's environment: `FD=NAME,…`.
    pub fn env(&self) -> String {
        self.0
            .iter()
            .map(|r| format!("{}={}", r.fd.as_raw_fd(), r.name))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The descriptors to make inheritable while a worker starts.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.0.iter().map(|r| r.fd.as_raw_fd())
    }

    /// Map every region into this process and record them, for a process
    /// that runs the plugins itself (`--no-master`, `--check`).
    pub fn map_here(&self) -> Result<(), String> {
        let mut mapped = Vec::new();
        for r in &self.0 {
            let region = SharedMemory::map(r.fd.as_fd())
                .map_err(|e| format!("cannot map shared memory region `{}`: {e}", r.name))?;
            mapped.push((r.name.clone(), region));
        }
        install_shared_memory(mapped);
        Ok(())
    }
}

/// Worker side: map the regions the master handed over (named in
/// [`SHARED_MEMORY_ENV`]), record them, and close the descriptors (the
/// mappings stay; a CGI process started later inherits nothing).
pub(crate) fn map_inherited() -> Result<(), String> {
    let spec = std::env::var(SHARED_MEMORY_ENV).unwrap_or_default();
    let mut mapped = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (fd, name) = item
            .split_once('=')
            .ok_or_else(|| format!("bad {SHARED_MEMORY_ENV} entry {item:?}"))?;
        let fd: RawFd = fd
            .parse()
            .map_err(|_| format!("bad descriptor in {SHARED_MEMORY_ENV}: {fd:?}"))?;
        // SAFETY: the master passed this descriptor to us for exactly this;
        // it is closed when `owned` drops.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let region = SharedMemory::map(owned.as_fd())
            .map_err(|e| format!("cannot map shared memory region `{name}`: {e}"))?;
        mapped.push((name.to_string(), region));
    }
    install_shared_memory(mapped);
    Ok(())
}
