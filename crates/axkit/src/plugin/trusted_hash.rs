//! A fast hasher for maps whose keys are trusted: names from plugin code,
//! paths and extensions from the config or from a bounded, fixed table.
//! Such maps are looked up on every request (directive names, document
//! roots, MIME types), where SipHash's protection against chosen
//! collisions buys nothing and costs more than the rest of the lookup.
//! Never key one of these by request data an attacker can vary freely:
//! std's `RandomState` is for those.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a.
#[derive(Default)]
pub struct TrustedHasher(u64);

impl Hasher for TrustedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A `HashMap` with trusted keys (see the module doc).
pub type TrustedMap<K, V> = HashMap<K, V, BuildHasherDefault<TrustedHasher>>;
