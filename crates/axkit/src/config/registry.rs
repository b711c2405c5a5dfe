//! The directive registry: every directive the loaded config may use, which
//! plugin declared it, and name lookup that ignores case, `_` and `-`.
//!
//! Lookup by name can happen at request time (a typed key's first read in
//! a worker, before it remembers its index; a script's `r:config(NAME)`),
//! so it must not allocate: names are normalised into a stack buffer
//! before hashing.

use std::sync::atomic::{AtomicU32, Ordering};

use super::core::core_directives;
use super::directive::Directive;
use crate::plugin::TrustedMap;

/// Index of a directive in a [`Registry`]; also the index into every
/// [`crate::config::LocationConfig`] built from that registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectiveId(pub u32);

/// Size of the per-thread cache of name lookups (see `Registry::lookup`).
const LOOKUP_CACHE_SLOTS: usize = 64;

thread_local! {
    /// (address of a name string, the id it was found as).
    static LOOKUP_CACHE: [std::cell::Cell<(usize, u32)>; LOOKUP_CACHE_SLOTS] =
        const { [const { std::cell::Cell::new((0, 0)) }; LOOKUP_CACHE_SLOTS] };
}

/// The owner recorded for the directives the core itself declares.
pub(crate) const CORE: &str = "core";

/// Normalised names longer than this fall back to an allocating lookup; no
/// sensible directive name comes close, so the fallback never runs for real
/// configs.
const STACK_NAME: usize = 64;

#[derive(Debug)]
struct Entry {
    directive: Directive,
    owner: String,
}

/// Every known directive and the plugin that owns it.
#[derive(Debug)]
pub struct Registry {
    /// Unique per registry made by this process: typed keys remember their
    /// index together with it (see `LocationConfig::get`).
    generation: u32,
    entries: Vec<Entry>,
    /// Normalised name -> id.
    /// Looked up on the request path by scripts' `r:config(NAME)`.
    by_name: TrustedMap<String, DirectiveId>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// A registry holding the core directives, owned by plugin `core`.
    pub fn new() -> Registry {
        static GENERATIONS: AtomicU32 = AtomicU32::new(1);
        let mut r = Registry {
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
            entries: Vec::new(),
            by_name: TrustedMap::default(),
        };
        for d in core_directives() {
            // The core list is fixed and conflict-free; a failure here would
            // be caught by the unit tests, so ignoring it is safe.
            let added = r.add(CORE, d);
            debug_assert!(added.is_ok(), "{added:?}");
        }
        r
    }

    /// Registers `d` as owned by `plugin`. Fails if a directive with the same
    /// normalised name exists (whoever owns it) or the name is unusable.
    pub fn add(&mut self, plugin: &str, d: Directive) -> Result<DirectiveId, String> {
        let norm = normalize(&d.name);
        if norm.is_empty()
            || d.name
                .chars()
                .any(|c| c.is_whitespace() || c == '<' || c == '>')
        {
            return Err(format!(
                "plugin `{plugin}` declares a directive with an invalid name `{}`",
                d.name
            ));
        }
        if let Some(&id) = self.by_name.get(&norm) {
            return Err(format!(
                "directive `{}` is declared by both `{}` and `{}`",
                d.name,
                self.owner(id),
                plugin
            ));
        }
        if let Some(key) = d.key {
            if d.default.is_none() && !key.0.has_unset() {
                return Err(format!(
                    "plugin `{plugin}`: directive `{}` needs a default (its type has no value for \"not written\"; use an Option)",
                    d.name
                ));
            }
        }
        let Ok(index) = u32::try_from(self.entries.len()) else {
            return Err("too many directives".to_string());
        };
        let id = DirectiveId(index);
        self.entries.push(Entry {
            directive: d,
            owner: plugin.to_string(),
        });
        self.by_name.insert(norm, id);
        Ok(id)
    }

    /// This registry's generation (see the field).
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// Finds a directive by name, ignoring case, `_` and `-`.
    pub fn lookup(&self, name: &str) -> Option<DirectiveId> {
        // Callers ask for the same literal names again and again: a
        // per-thread cache keyed by the name's address answers those
        // without normalising or hashing. A hit is only trusted when the
        // directive at that id is spelled exactly `name` in this registry,
        // so a reused address or another registry can never give a wrong
        // answer.
        let slot = (name.as_ptr() as usize >> 3) % LOOKUP_CACHE_SLOTS;
        let cached = LOOKUP_CACHE.with(|c| c[slot].get());
        if cached.0 == name.as_ptr() as usize {
            if let Some(entry) = self.entries.get(cached.1 as usize) {
                if entry.directive.name == name {
                    return Some(DirectiveId(cached.1));
                }
            }
        }
        let found = self.lookup_slow(name)?;
        if self.entries[found.0 as usize].directive.name == name {
            LOOKUP_CACHE.with(|c| c[slot].set((name.as_ptr() as usize, found.0)));
        }
        Some(found)
    }

    fn lookup_slow(&self, name: &str) -> Option<DirectiveId> {
        let mut buf = [0u8; STACK_NAME];
        let mut len = 0;
        // Names may be looked up on the request path, and are ASCII in
        // practice: normalise byte by byte without Unicode case tables.
        if name.is_ascii() && name.len() <= STACK_NAME {
            for b in name.bytes().filter(|b| *b != b'_' && *b != b'-') {
                buf[len] = b.to_ascii_lowercase();
                len += 1;
            }
            let key = std::str::from_utf8(&buf[..len]).ok()?;
            return self.by_name.get(key).copied();
        }
        for c in norm_chars(name) {
            let n = c.len_utf8();
            let Some(slot) = buf.get_mut(len..len + n) else {
                return self.by_name.get(&normalize(name)).copied();
            };
            c.encode_utf8(slot);
            len += n;
        }
        // Always valid UTF-8 (built from whole chars); `ok()?` keeps this
        // free of any panic path.
        let key = std::str::from_utf8(&buf[..len]).ok()?;
        self.by_name.get(key).copied()
    }

    /// The declaration of `id`.
    ///
    /// # Panics
    /// If `id` comes from another registry and is out of range.
    pub fn directive(&self, id: DirectiveId) -> &Directive {
        &self.entries[id.0 as usize].directive
    }

    /// The plugin that declared `id` (`core` for the core directives).
    ///
    /// # Panics
    /// If `id` comes from another registry and is out of range.
    pub fn owner(&self, id: DirectiveId) -> &str {
        &self.entries[id.0 as usize].owner
    }

    /// Number of directives.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true in practice: the core directives are always there.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every directive in registration order (core first).
    pub fn iter(&self) -> impl Iterator<Item = (DirectiveId, &Directive, &str)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (DirectiveId(i as u32), &e.directive, e.owner.as_str()))
    }

    /// The canonical name nearest to `name`, if it is close enough to be a
    /// plausible typo.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        nearest(name, self.entries.iter().map(|e| &*e.directive.name))
    }
}

/// Lower-cases and drops `_` and `-`: the form directive names are compared
/// in, so `DocumentRoot`, `document_root` and `document-root` are one name.
pub fn normalize(name: &str) -> String {
    norm_chars(name).collect()
}

fn norm_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars()
        .filter(|&c| c != '_' && c != '-')
        .flat_map(char::to_lowercase)
}

/// Whether two names are the same directive name, without allocating.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    norm_chars(a).eq(norm_chars(b))
}

/// The candidate nearest to `name` by edit distance on normalised names,
/// accepted only within max(2, len/3) edits so that wild guesses are not
/// offered as suggestions.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let target: Vec<char> = norm_chars(name).collect();
    let limit = (target.len() / 3).max(2);
    let mut best: Option<(usize, &'a str)> = None;
    for cand in candidates {
        let c: Vec<char> = norm_chars(cand).collect();
        // Length difference is a lower bound on the distance: skipping here
        // keeps a hostile 1 MB "name" from costing a full quadratic scan.
        if c.len().abs_diff(target.len()) > limit {
            continue;
        }
        let d = levenshtein(&target, &c);
        let better = match best {
            Some((bd, _)) => d < bd,
            None => true,
        };
        if d <= limit && better {
            best = Some((d, cand));
        }
    }
    best.map(|(_, c)| c)
}

/// Classic two-row dynamic programme.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ValueType;

    /// The per-thread lookup cache must never answer for another registry
    /// or another spelling.
    #[test]
    fn lookup_cache_is_per_registry_and_spelling() {
        const NAME: &str = "Greeting";
        let mut a = Registry::new();
        let mut b = Registry::new();
        b.add("other", Directive::new("Padding", ValueType::String))
            .unwrap();
        let ia = a.add("x", Directive::new(NAME, ValueType::String)).unwrap();
        let ib = b.add("x", Directive::new(NAME, ValueType::String)).unwrap();
        assert_ne!(ia, ib);
        for _ in 0..3 {
            assert_eq!(a.lookup(NAME), Some(ia));
            assert_eq!(b.lookup(NAME), Some(ib));
            assert_eq!(a.lookup("greeting"), Some(ia));
            assert_eq!(Registry::new().lookup(NAME), None);
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("DocumentRoot"), "documentroot");
        assert_eq!(normalize("document_root"), "documentroot");
        assert_eq!(normalize("document-root"), "documentroot");
        assert!(same_name("Document_Root", "documentroot"));
        assert!(!same_name("Document", "documentroot"));

        let mut r = Registry::new();
        let id = r
            .add("files", Directive::new("DocumentRoot", ValueType::Path))
            .unwrap();
        for spelling in [
            "DocumentRoot",
            "document_root",
            "document-root",
            "DOCUMENTROOT",
        ] {
            assert_eq!(r.lookup(spelling), Some(id), "{spelling}");
        }
        assert_eq!(r.lookup("DocumentRoo"), None);
        assert_eq!(r.owner(id), "files");
        assert_eq!(r.directive(id).name, "DocumentRoot");
        // Long names take the allocating path and still work.
        let long = "x".repeat(200);
        let lid = r
            .add("p", Directive::new(long.clone(), ValueType::String))
            .unwrap();
        assert_eq!(r.lookup(&long.to_uppercase()), Some(lid));
        // Non-ASCII names don't break the stack buffer.
        assert_eq!(r.lookup("ÄÖÜ_ß"), None);
    }

    #[test]
    fn conflicts_name_both_plugins() {
        let mut r = Registry::new();
        r.add("hello", Directive::new("Greeting", ValueType::String))
            .unwrap();
        let err = r
            .add("greet", Directive::new("greeting", ValueType::String))
            .unwrap_err();
        assert_eq!(
            err,
            "directive `greeting` is declared by both `hello` and `greet`"
        );
        let err = r
            .add("x", Directive::new("work-ers", ValueType::String))
            .unwrap_err();
        assert_eq!(
            err,
            "directive `work-ers` is declared by both `core` and `x`"
        );
        assert!(r.add("x", Directive::new("_-", ValueType::String)).is_err());
        assert!(r
            .add("x", Directive::new("a b", ValueType::String))
            .is_err());
    }

    #[test]
    fn suggestions() {
        let r = Registry::new();
        assert_eq!(r.suggest("Wokers"), Some("Workers"));
        assert_eq!(r.suggest("keep_alive_timout"), Some("KeepAliveTimeout"));
        assert_eq!(r.suggest("Zebra"), None);
        assert_eq!(r.suggest(""), None);
        assert_eq!(r.suggest(&"q".repeat(100_000)), None);
        assert_eq!(levenshtein(&['a', 'b'], &[]), 2);
        assert_eq!(levenshtein(&['k', 'i', 't'], &['s', 'i', 't', 'x']), 2);
    }

    #[test]
    fn core_is_consistent() {
        let r = Registry::new();
        assert_eq!(r.len(), core_directives().len());
        for (id, d, owner) in r.iter() {
            assert_eq!(owner, "core");
            assert!(!d.doc.is_empty(), "{} has no doc", d.name);
            assert_eq!(r.lookup(&d.name), Some(id));
        }
    }
}
