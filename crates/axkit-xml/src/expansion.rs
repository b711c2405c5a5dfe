//! What a document's XIncludes add to it, measured before libxml2 makes
//! a single copy. libxml2 copies what an include names already expanded,
//! and loads a document once however often it is named: a file that
//! includes another 10 times, which includes a third 10 times, and so on
//! (or one file by 10 IDs, each of whose elements includes the one before
//! 10 times) is 10^depth copies from a few small files, gigabytes before
//! any time limit can act, since XInclude processing cannot be stopped
//! half-way.
//!
//! So the documents the includes name are parsed first (through the same
//! policy and rules), the size of each thing included is computed once
//! per (file, pointer) and counted at each use, and the call is refused
//! when what the includes add, with the files loaded to make it, would
//! pass the policy's size limit: the bound entity expansion has. A node
//! counts about what libxml2 allocates for it (shim.c), its text by its
//! length.

use std::collections::HashMap;
use std::ffi::{c_int, c_void, CString};
use std::path::PathBuf;
use std::ptr;

use crate::call::{self, LoadError, Scope};
use crate::document::text;
use crate::{sys, Policy};

/// What a text include costs besides its bytes (shim.c's node cost).
const NODE_COST: i64 = 100;

/// libxml2's own bound on nested includes (`XINCLUDE_MAX_DEPTH`): past it
/// the processing fails on its own, and so does the measure.
const MAX_DEPTH: usize = 40;

/// Refuse the calling thread's call (an `Err` from its scope) when the
/// XIncludes of `doc`, which `url` names, would add more than
/// `policy.max_size`.
pub(crate) fn check(doc: *mut sys::XmlDoc, url: &str, policy: &Policy) {
    // What goes wrong while measuring (a pointer that selects nothing) is
    // reported when libxml2 meets it, if it matters then.
    let quiet = Scope::enter(Some(policy)).ok();
    let max = i64::try_from(policy.max_size).unwrap_or(i64::MAX);
    let mut measure = Measure {
        policy: policy.clone(),
        max,
        loaded: 0,
        docs: HashMap::new(),
        sizes: HashMap::new(),
        active: Vec::new(),
        at: None,
        stop: None,
    };
    let data = &mut measure as *mut Measure as *mut c_void;
    let children = unsafe { sys::axkit_xml_doc_children(doc) };
    let cost = unsafe { sys::axkit_xml_xinclude_cost(doc, children, 1, 0, max, on_include, data) };
    drop(quiet);
    if cost >= 0 && cost.saturating_add(measure.loaded) <= max {
        return;
    }
    let (line, what) = measure.at.take().unwrap_or_default();
    let why = measure.stop.take().unwrap_or_else(|| {
        format!(
            "XIncludes expand past the size limit of {} bytes",
            policy.max_size
        )
    });
    call::refuse(
        Some(url.to_string()),
        line,
        format!("XInclude of '{}': {why}", what.escape_default()),
    );
}

/// One included thing: a file (whole, by a pointer, or as text), or a
/// pointer into a document already parsed (its own).
#[derive(Hash, PartialEq, Eq, Clone)]
enum Target {
    File(PathBuf, Option<String>, bool),
    Local(usize, String),
}

struct Measure {
    policy: Policy,
    max: i64,
    /// Bytes of the files loaded so far: each is parsed (by libxml2 too).
    loaded: i64,
    /// The documents includes name, parsed once (`None`: not there, or
    /// not well-formed: its fallback counts).
    docs: HashMap<PathBuf, Option<*mut sys::XmlDoc>>,
    /// What each target expands to (-2: not there).
    sizes: HashMap<Target, i64>,
    /// The targets being measured (one inside another). A target met
    /// again among them (a loop) stops the measure, as nesting past
    /// `MAX_DEPTH` does: what libxml2 cuts there depends on where the
    /// outermost one is included from, so a size measured under the cut
    /// would be counted, once stored in `sizes`, for uses that libxml2
    /// expands in full (a file that includes the page including it,
    /// measured there, then included a thousand times elsewhere).
    /// XInclude makes a loop a fatal error.
    active: Vec<Target>,
    /// The line of the requested document's include being measured, and
    /// what it names: where the limit was passed.
    at: Option<(u32, String)>,
    /// Why the measure stopped short of the limit: the includes loop, or
    /// nest past `MAX_DEPTH`.
    stop: Option<String>,
}

impl Drop for Measure {
    fn drop(&mut self) {
        for doc in self.docs.values().flatten() {
            unsafe { sys::xmlFreeDoc(*doc) };
        }
    }
}

/// shim.c's `axkit_include_fn`: what one include element adds.
unsafe extern "C" fn on_include(
    data: *mut c_void,
    doc: *mut sys::XmlDoc,
    node: *mut sys::XmlNode,
    url: *const u8,
    pointer: *const u8,
    is_text: c_int,
    budget: i64,
) -> i64 {
    let this = data as *mut Measure;
    let url = unsafe { text(url) };
    let pointer = unsafe { text(pointer) };
    let target = match url {
        Some(url) => {
            let (file, fragment) = match url.split_once('#') {
                Some((file, fragment)) => (file.to_string(), Some(fragment.to_string())),
                None => (url, None),
            };
            let Ok(path) = call::url_to_path(&file) else {
                // Refused when libxml2 asks for it.
                return 0;
            };
            Target::File(path, pointer.or(fragment), is_text != 0)
        }
        // A local include needs a pointer, or libxml2 refuses it.
        None => match pointer {
            Some(pointer) => Target::Local(doc as usize, pointer),
            None => return 0,
        },
    };
    {
        let measure = unsafe { &mut *this };
        if measure.active.is_empty() {
            let line = unsafe { sys::axkit_xml_node_line(node) };
            measure.at = Some((u32::try_from(line).unwrap_or(0), describe(&target)));
        }
        if let Some(&size) = measure.sizes.get(&target) {
            return if size > budget { -1 } else { size };
        }
        if measure.active.contains(&target) {
            measure.stop = Some(format!(
                "'{}' includes itself",
                describe(&target).escape_default()
            ));
            return -1;
        }
        if measure.active.len() >= MAX_DEPTH {
            measure.stop = Some(format!("XIncludes nest more than {MAX_DEPTH} deep"));
            return -1;
        }
        measure.active.push(target.clone());
    }
    let size = unsafe { measure_target(this, doc, &target, budget) };
    let measure = unsafe { &mut *this };
    measure.active.pop();
    if size != -1 {
        measure.sizes.insert(target, size);
    }
    size
}

/// A target as an error message names it.
fn describe(target: &Target) -> String {
    match target {
        Target::File(path, _, _) => path.display().to_string(),
        Target::Local(_, pointer) => format!("#{pointer}"),
    }
}

/// The size of `target` (named in `doc`), -1 past `budget` or the load
/// limit, -2 when it is not there.
unsafe fn measure_target(
    this: *mut Measure,
    doc: *mut sys::XmlDoc,
    target: &Target,
    budget: i64,
) -> i64 {
    let (doc, pointer) = match target {
        Target::Local(_, pointer) => (doc, Some(pointer)),
        Target::File(path, pointer, is_text) => {
            let loaded = match unsafe { &mut *this }.docs.get(path) {
                Some(loaded) if !is_text => *loaded,
                _ => {
                    let measure = unsafe { &mut *this };
                    let bytes = match call::read(&measure.policy, path) {
                        Ok((_, bytes)) => bytes,
                        // Not there: the fallback. Refused: so is libxml2's
                        // load, which fails the call.
                        Err(LoadError::Missing(_)) => return -2,
                        Err(LoadError::Refused(_)) => return 0,
                    };
                    let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
                    if *is_text {
                        return NODE_COST.saturating_add(len);
                    }
                    measure.loaded = measure.loaded.saturating_add(len);
                    if measure.loaded > measure.max {
                        return -1;
                    }
                    let parsed = parse(&measure.policy, &bytes, path);
                    measure.docs.insert(path.clone(), parsed);
                    parsed
                }
            };
            match loaded {
                Some(doc) => (doc, pointer.as_ref()),
                None => return -2,
            }
        }
    };
    let data = this as *mut c_void;
    match pointer {
        None => unsafe {
            let children = sys::axkit_xml_doc_children(doc);
            sys::axkit_xml_xinclude_cost(doc, children, 1, 1, budget, on_include, data)
        },
        Some(pointer) => {
            let Ok(pointer) = CString::new(pointer.as_str()) else {
                return -2;
            };
            unsafe {
                sys::axkit_xml_xinclude_target(
                    doc,
                    pointer.as_ptr() as *const u8,
                    budget,
                    on_include,
                    data,
                )
            }
        }
    }
}

/// A document an include names, parsed as libxml2 will parse it (its
/// pointers checked too), in a call of its own: what goes wrong is
/// reported when libxml2 loads it.
fn parse(policy: &Policy, bytes: &[u8], path: &std::path::Path) -> Option<*mut sys::XmlDoc> {
    let scope = Scope::enter(Some(policy)).ok()?;
    scope.with(|call| call.xinclude = true);
    call::parse_raw(bytes, &path.to_string_lossy(), ptr::null_mut())
}
