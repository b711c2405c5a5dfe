//! A fast hasher for maps whose keys are trusted: names from plugin code,
//! paths and extensions from the config or from a bounded, fixed table.
//! Such maps are looked up on every request (directive names, document
//! roots, MIME types), where SipHash's protection against chosen
//! collisions buys nothing and costs more than the rest of the lookup.
//! Never key one of these by request data an attacker can vary freely:
//! std's `RandomState` is for those.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// FxHash (rustc's), a word at a time: a byte-at-a-time hash of a
/// document root's path showed on every cached file request.
pub type TrustedHasher = rustc_hash::FxHasher;

/// A `HashMap` with trusted keys (see the module doc).
pub type TrustedMap<K, V> = HashMap<K, V, BuildHasherDefault<TrustedHasher>>;
