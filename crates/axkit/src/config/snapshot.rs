//! The config files exactly as the loader read them (and the directory
//! listings behind wildcard `Include`s), so that the master can hand its
//! workers the configuration it validated.
//!
//! Without it a worker re-read the files itself: a worker restarted after
//! a crash would pick up edits saved since the last SIGHUP and serve a
//! different configuration from its siblings, or fail to start at all.

use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    files: Vec<FileRead>,
    listings: Vec<Listing>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct FileRead {
    /// As the config named it (joined to the including file's directory).
    path: PathBuf,
    canonical: PathBuf,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Listing {
    dir: PathBuf,
    /// Names of the entries that are not directories, unsorted.
    names: Vec<String>,
}

/// Refuse to decode anything larger: a snapshot is a few config files.
const MAX_ENCODED: usize = 64 << 20;
/// Starts every encoding: a worker from another build fails with a clear
/// message instead of misreading the bytes.
const MAGIC: &[u8; 8] = b"AXKCONF1";

impl Snapshot {
    /// Every file read, in the order read (main file first).
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    pub(crate) fn record_file(&mut self, path: &Path, canonical: &Path, text: &str) {
        self.files.push(FileRead {
            path: path.to_path_buf(),
            canonical: canonical.to_path_buf(),
            text: text.to_string(),
        });
    }

    pub(crate) fn record_listing(&mut self, dir: &Path, names: &[String]) {
        self.listings.push(Listing {
            dir: dir.to_path_buf(),
            names: names.to_vec(),
        });
    }

    /// The canonical path and text of `path` as it was read.
    pub(crate) fn file(&self, path: &Path) -> io::Result<(PathBuf, String)> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .map(|f| (f.canonical.clone(), f.text.clone()))
            .ok_or_else(|| missing(path))
    }

    pub(crate) fn listing(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.listings
            .iter()
            .find(|l| l.dir == dir)
            .map(|l| l.names.clone())
            .ok_or_else(|| missing(dir))
    }

    /// A flat byte encoding: tagged records of length-prefixed fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let field = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        for f in &self.files {
            out.push(b'F');
            field(&mut out, f.path.as_os_str().as_bytes());
            field(&mut out, f.canonical.as_os_str().as_bytes());
            field(&mut out, f.text.as_bytes());
        }
        for l in &self.listings {
            out.push(b'D');
            field(&mut out, l.dir.as_os_str().as_bytes());
            field(&mut out, &(l.names.len() as u64).to_le_bytes());
            for n in &l.names {
                field(&mut out, n.as_bytes());
            }
        }
        out.push(b'E');
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&(out.len() as u64).to_le_bytes());
        framed.extend_from_slice(&out);
        framed
    }

    /// Read one encoded snapshot from `r`, consuming nothing after it.
    pub fn read_from(r: &mut impl io::Read) -> io::Result<Snapshot> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad(
                "not a configuration snapshot of this version (master and worker from different builds?)",
            ));
        }
        let mut len = [0u8; 8];
        r.read_exact(&mut len)?;
        let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
        if len > MAX_ENCODED {
            return Err(bad("snapshot too large"));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        Snapshot::decode(&body)
    }

    fn decode(mut b: &[u8]) -> io::Result<Snapshot> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
            if b.len() < n {
                return Err(bad("truncated snapshot"));
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn field<'a>(b: &mut &'a [u8]) -> io::Result<&'a [u8]> {
            let n = u64::from_le_bytes(take(b, 8)?.try_into().unwrap_or_default());
            take(b, usize::try_from(n).unwrap_or(usize::MAX))
        }
        fn path(b: &mut &[u8]) -> io::Result<PathBuf> {
            Ok(PathBuf::from(std::ffi::OsString::from_vec(
                field(b)?.to_vec(),
            )))
        }
        fn text(b: &mut &[u8]) -> io::Result<String> {
            String::from_utf8(field(b)?.to_vec()).map_err(|_| bad("snapshot text is not UTF-8"))
        }
        let mut s = Snapshot::default();
        loop {
            match take(&mut b, 1)?[0] {
                b'F' => s.files.push(FileRead {
                    path: path(&mut b)?,
                    canonical: path(&mut b)?,
                    text: text(&mut b)?,
                }),
                b'D' => {
                    let dir = path(&mut b)?;
                    let count = u64::from_le_bytes(field(&mut b)?.try_into().unwrap_or_default());
                    let mut names = Vec::new();
                    for _ in 0..count {
                        names.push(text(&mut b)?);
                    }
                    s.listings.push(Listing { dir, names });
                }
                b'E' if b.is_empty() => return Ok(s),
                _ => return Err(bad("malformed snapshot")),
            }
        }
    }
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{} is not in the configuration the master loaded",
            path.display()
        ),
    )
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut s = Snapshot::default();
        s.record_file(Path::new("a.conf"), Path::new("/etc/a.conf"), "Port 1\n");
        s.record_file(
            Path::new("conf.d/x.conf"),
            Path::new("/etc/conf.d/x.conf"),
            "é\n",
        );
        s.record_listing(Path::new("conf.d"), &["x.conf".into(), "y".into()]);
        let bytes = s.encode();
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"after");
        let mut r = &extra[..];
        assert_eq!(Snapshot::read_from(&mut r).unwrap(), s);
        assert_eq!(r, b"after", "reads exactly one snapshot");
        assert_eq!(
            s.file(Path::new("a.conf")).unwrap(),
            ("/etc/a.conf".into(), "Port 1\n".into())
        );
        assert!(s.file(Path::new("b.conf")).is_err());
        assert_eq!(s.listing(Path::new("conf.d")).unwrap().len(), 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = {
            let mut s = Snapshot::default();
            s.record_file(Path::new("a"), Path::new("/a"), "x");
            s.record_listing(Path::new("d"), &["n".into()]);
            s.encode()
        };
        for cut in 0..good.len() {
            assert!(
                Snapshot::read_from(&mut &good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut rng = 0x2545F4914F6CDD1Du64;
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng as usize) % bytes.len();
                bytes[i] = (rng >> 32) as u8;
            }
            let _ = Snapshot::read_from(&mut &bytes[..]);
        }
    }
}
