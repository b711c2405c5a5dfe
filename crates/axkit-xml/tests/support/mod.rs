//! Shared by the engine's tests: a [`Policy`] over a directory, opening
//! files beneath it with the core's `DocRoot` (as the xslt plugin does
//! with the DocumentRoot), so that `..`, absolute paths elsewhere and
//! symlinks leading out are refused, not reported missing.
#![allow(dead_code)]

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axkit::plugin::{is_escape, DocRoot, Rule};
use axkit_xml::Policy;

/// Where the corpus and the security fixtures live.
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Loads beneath `root` only, documents of at most `max_size` bytes.
pub fn policy_sized(root: &Path, max_size: usize) -> Policy {
    let root = DocRoot::new(root, Rule::Beneath);
    Policy {
        load: Arc::new(move |path: &Path| {
            if !root.contains(path) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{} is outside {}", path.display(), root.path().display()),
                ));
            }
            let mut file = match root.open(path) {
                Ok(file) => file,
                Err(e) if is_escape(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "it leads outside the root",
                    ))
                }
                Err(e) => return Err(e),
            };
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(bytes)
        }),
        max_size,
    }
}

pub fn policy(root: &Path) -> Policy {
    policy_sized(root, 1 << 20)
}
