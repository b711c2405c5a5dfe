//! One call into the libraries, as the thread making it sees them: the
//! [`Policy`] its loads go through and the errors they report.
//!
//! libxml2 and libxslt report through channels that are not per call:
//! libxml2's error handlers are per thread (its global state is
//! thread-local when built with threads, as Debian's is), while libxslt's
//! generic error function, libxml2's external entity loader and libxslt's
//! document loader are process-wide. So the process-wide ones are set once
//! ([`init`](crate::init)) to functions that look up the calling thread's
//! [`Scope`], and each public call opens a scope for its duration: a
//! transform on one thread of the blocking pool never sees another's
//! policy or errors.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, OnceLock};

use crate::{dl, sys};
use crate::{Policy, XmlError};

/// Options of every parse: no network, entities replaced (only internal
/// ones can exist: the SAX filter refuses the rest as they are declared,
/// and bounds what the others expand to), CDATA as text and default
/// attributes from the internal subset, as xsltproc parses (its
/// `XSLT_PARSE_OPTIONS`, less the DTD loading).
pub(crate) const PARSE_OPTIONS: c_int =
    sys::XML_PARSE_NONET | sys::XML_PARSE_NOENT | sys::XML_PARSE_DTDATTR | sys::XML_PARSE_NOCDATA;

/// Error text kept per call at most: xsl:message output goes to the same
/// channel, and a stylesheet can print without end.
const MAX_TEXT: usize = 64 * 1024;

/// Errors kept per call at most: a large document can hold a non-fatal
/// error (an undeclared namespace prefix) on every element, and the first
/// few say what is wrong.
const MAX_DIAGS: usize = 50;

/// One thing a library reported.
struct Diag {
    file: Option<String>,
    line: u32,
    message: String,
}

pub(crate) struct Call {
    /// `None` for a call that loads nothing (serialising).
    policy: Option<Policy>,
    /// Errors (warnings are dropped), in the order reported.
    diags: Vec<Diag>,
    /// Generic error text not yet ended by a newline.
    pending: String,
    text_len: usize,
    /// Whether the last diagnostic is an XSLT context line still waiting
    /// for the message that follows it.
    awaiting: bool,
    /// Bytes of entity text expanded, and of attributes the DTD
    /// defaulted, so far.
    expanded: usize,
    /// A refusal by the policy or the entity rules: the call fails with
    /// it whatever the libraries made of the stopped parse.
    refused: Option<XmlError>,
    /// Whether XIncludes are being processed: their pointers are then
    /// checked (see [`plain_pointer`]).
    pub(crate) xinclude: bool,
    /// A compiling call: every file it read, in order.
    pub(crate) modules: Option<Vec<PathBuf>>,
    /// A transform's stylesheet: its own files, read through the policy
    /// it was compiled with (`document('')`).
    pub(crate) own: Option<Arc<Own>>,
}

/// The files a stylesheet was compiled from and the policy they were
/// read through. `document('')` names the stylesheet itself (a module's,
/// that module): it reads them as the compilation did, beneath the
/// stylesheet's own root, wherever the transform's policy may read.
pub(crate) struct Own {
    pub policy: Policy,
    pub files: Vec<PathBuf>,
}

thread_local! {
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

/// How loading and initialising went, once per process.
static INIT: OnceLock<Result<(), String>> = OnceLock::new();

/// Load the libraries and initialise them, once per process (later calls
/// give the first one's outcome). The error names the library missing
/// and the Debian package that has it.
pub(crate) fn init() -> Result<(), XmlError> {
    INIT.get_or_init(|| unsafe {
        dl::open_all()?;
        sys::load()?;
        let missing = sys::axkit_xml_shim_load(dl::resolve);
        if let Some(name) = c_str(missing) {
            return Err(dl::missing(&name));
        }
        crate::alloc::install();
        sys::axkit_xml_init(
            on_text,
            on_entity_decl,
            on_entity_use,
            on_default_attrs,
            on_pointer,
            entity_loader,
            doc_loader,
        );
        Ok(())
    })
    .clone()
    .map_err(XmlError::new)
}

/// The calling thread's call, for its duration. A scope opened inside
/// another (a policy's loader calling back into the engine) stands alone
/// and restores the outer one when it ends.
pub(crate) struct Scope {
    outer: Option<Call>,
}

impl Scope {
    /// Fails only when the libraries could not be loaded.
    pub(crate) fn enter(policy: Option<&Policy>) -> Result<Scope, XmlError> {
        init()?;
        // Per thread in libxml2: set on every call, since pool threads come
        // and go.
        unsafe { sys::axkit_xml_thread_errors(on_structured) };
        let call = Call {
            policy: policy.cloned(),
            diags: Vec::new(),
            pending: String::new(),
            text_len: 0,
            awaiting: false,
            expanded: 0,
            refused: None,
            xinclude: false,
            modules: None,
            own: None,
        };
        let outer = CALL.with_borrow_mut(|c| c.replace(call));
        Ok(Scope { outer })
    }

    /// The call's error, `fallback` when nothing was reported.
    pub(crate) fn error(&self, fallback: &str) -> XmlError {
        with_call(|call| {
            flush(call);
            if let Some(e) = &call.refused {
                return e.clone();
            }
            let mut messages: Vec<&str> = Vec::new();
            let mut at = None;
            for d in &call.diags {
                if at.is_none() && d.file.is_some() {
                    at = Some((d.file.clone(), d.line));
                }
                let m = d.message.trim();
                if !m.is_empty() && !messages.contains(&m) {
                    messages.push(m);
                }
            }
            let (file, line) = at.unwrap_or((None, 0));
            let mut message = if messages.is_empty() {
                fallback.to_string()
            } else {
                messages.join("; ")
            };
            truncate(&mut message, 2000);
            XmlError {
                file,
                line,
                message,
            }
        })
        .unwrap_or_else(|| XmlError::new(fallback))
    }

    /// Set up the call's state (whether it processes XIncludes, records
    /// what it reads, or runs a stylesheet that may read its own files).
    pub(crate) fn with(&self, f: impl FnOnce(&mut Call)) {
        with_call(f);
    }

    /// Whether the policy or the entity rules refused something.
    pub(crate) fn refused(&self) -> bool {
        with_call(|call| call.refused.is_some()).unwrap_or(false)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        CALL.with_borrow_mut(|c| *c = outer);
    }
}

fn with_call<T>(f: impl FnOnce(&mut Call) -> T) -> Option<T> {
    // A callback never re-enters this while it holds the borrow (the
    // policy's loader runs with no borrow held), so try_borrow only fails
    // on a bug; then the report is dropped rather than a panic unwinding
    // into C.
    CALL.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => c.as_mut().map(f),
        Err(_) => None,
    })
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// Record a refusal (the first one wins: it is the cause).
pub(crate) fn refuse(file: Option<String>, line: u32, message: String) {
    with_call(|call| {
        if call.refused.is_none() {
            call.refused = Some(XmlError {
                file,
                line,
                message,
            });
        }
    });
}

unsafe fn c_str(p: *const c_char) -> Option<String> {
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

// ---- errors -------------------------------------------------------------

unsafe extern "C" fn on_structured(_data: *mut c_void, error: *const sys::XmlErrorRec) {
    let Some(e) = (unsafe { error.as_ref() }) else {
        return;
    };
    if e.level < sys::XML_ERR_ERROR {
        return;
    }
    let mut message = unsafe { c_str(e.message) }.unwrap_or_default();
    message = message.trim().to_string();
    if e.domain == sys::XML_FROM_XPATH {
        if let Some(expr) = unsafe { c_str(e.str1) } {
            message = format!("{message} in '{expr}'");
        }
    }
    let file = unsafe { c_str(e.file) };
    let line = u32::try_from(e.line).unwrap_or(0);
    with_call(|call| {
        call.awaiting = false;
        push(call, file, line, message);
    });
}

/// Keep a diagnostic, unless the call has enough; whether it was kept.
fn push(call: &mut Call, file: Option<String>, line: u32, message: String) -> bool {
    let keep = call.diags.len() < MAX_DIAGS;
    if keep {
        call.diags.push(Diag {
            file,
            line,
            message,
        });
    }
    keep
}

unsafe extern "C" fn on_text(text: *const c_char, len: usize) {
    let bytes = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
    let text = String::from_utf8_lossy(bytes);
    with_call(|call| {
        if call.text_len >= MAX_TEXT {
            return;
        }
        call.text_len += text.len();
        call.pending.push_str(&text);
        while let Some(nl) = call.pending.find('\n') {
            let line: String = call.pending.drain(..=nl).collect();
            text_line(call, line.trim_end());
        }
    });
}

fn flush(call: &mut Call) {
    if !call.pending.is_empty() {
        let line = std::mem::take(&mut call.pending);
        text_line(call, line.trim_end());
    }
}

/// One line of libxslt's error text. libxslt prefixes each error with a
/// context line, `runtime error: file F line N element E` (or
/// `compilation error: …`, or a bare `error` where it knows nothing), and
/// prints the message on the next.
fn text_line(call: &mut Call, line: &str) {
    if line.trim().is_empty() || is_stack_dump(line) {
        return;
    }
    for kind in ["runtime error", "compilation error", "error"] {
        let Some(rest) = line.strip_prefix(kind) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with(": file ") || rest.starts_with(": element ")) {
            continue;
        }
        let (file, n) = parse_context(rest);
        call.awaiting = push(call, file, n, String::new());
        return;
    }
    match call.diags.last_mut() {
        Some(last) if call.awaiting => {
            if !last.message.is_empty() {
                last.message.push(' ');
            }
            last.message.push_str(line.trim());
        }
        _ => {
            push(call, None, 0, line.trim().to_string());
        }
    }
}

/// The template and variable stack libxslt lists after a recursion error
/// (`Templates:`, `#0 name r`, …): thousands of lines that say nothing
/// the message does not.
fn is_stack_dump(line: &str) -> bool {
    line == "Templates:"
        || line == "Variables:"
        || line
            .strip_prefix('#')
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// `: file F line N element E` → (F, N).
fn parse_context(rest: &str) -> (Option<String>, u32) {
    let Some(rest) = rest.strip_prefix(": file ") else {
        return (None, 0);
    };
    let Some(at) = rest.rfind(" line ") else {
        return (Some(rest.to_string()), 0);
    };
    let file = &rest[..at];
    let n = rest[at + 6..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (Some(file.to_string()), n)
}

// ---- entities -----------------------------------------------------------

/// Refuse the call with `why`, at the place `ctxt` (the parser context
/// libxml2 passed to the callback) is parsing.
unsafe fn refuse_at(ctxt: *mut sys::XmlParserCtxt, why: String) {
    let file = unsafe { c_str(sys::axkit_xml_ctxt_file(ctxt)) };
    let line = unsafe { sys::axkit_xml_ctxt_line(ctxt) };
    refuse(file, u32::try_from(line).unwrap_or(0), why);
}

/// An entity declaration may stand only if it is internal, general, and
/// its text refers to no other entity: nothing is ever loaded for an
/// entity, and no entity expands into more references (billion laughs).
unsafe extern "C" fn on_entity_decl(
    ctxt: *mut sys::XmlParserCtxt,
    name: *const u8,
    kind: c_int,
    system_id: *const u8,
    content: *const u8,
) -> c_int {
    let name = unsafe { c_str(name as *const c_char) }.unwrap_or_default();
    let why = if kind != sys::XML_INTERNAL_GENERAL_ENTITY {
        match unsafe { c_str(system_id as *const c_char) } {
            Some(sys) => format!("external entity '{name}' (\"{sys}\") refused"),
            None => format!("parameter entity '{name}' refused"),
        }
    } else {
        let content = unsafe { c_str(content as *const c_char) }.unwrap_or_default();
        if refers_to_entities(&content) {
            format!("entity '{name}' refers to other entities: refused (entity expansion)")
        } else {
            return 1;
        }
    };
    unsafe { refuse_at(ctxt, why) };
    0
}

/// Whether an entity's text refers to an entity that could expand:
/// character references (a `&#` left is one that `&#38;` spelled out) and
/// the five predefined entities stay one character each; any other `&`
/// starts a reference to a declared entity.
fn refers_to_entities(content: &str) -> bool {
    const PLAIN: [&str; 6] = ["#", "lt;", "gt;", "amp;", "apos;", "quot;"];
    content
        .match_indices('&')
        .any(|(i, _)| !PLAIN.iter().any(|p| content[i + 1..].starts_with(p)))
}

/// Every use of an internal entity adds its length to the call's total,
/// which may not pass the policy's size limit (quadratic blowup: one big
/// entity used many times).
unsafe extern "C" fn on_entity_use(
    ctxt: *mut sys::XmlParserCtxt,
    name: *const u8,
    len: c_int,
) -> c_int {
    let Some(max) = spend(usize::try_from(len).unwrap_or(0)) else {
        return 1;
    };
    let name = unsafe { c_str(name as *const c_char) }.unwrap_or_default();
    let why = format!("entity '{name}': expanded entities exceed the size limit of {max} bytes");
    unsafe { refuse_at(ctxt, why) };
    0
}

/// What libxml2 spends on an attribute besides its value (the attribute
/// and its text node): counted for each one the DTD adds, so that many
/// empty defaults on many elements are bounded too.
const ATTR_COST: usize = 100;

/// The attributes an internal subset's ATTLIST defaults, copied onto each
/// element that lacks them, add to the same total as entities: a 60 KB
/// default on 20,000 `<e/>` is 1.2 GB from a document of 140 KB.
unsafe extern "C" fn on_default_attrs(
    ctxt: *mut sys::XmlParserCtxt,
    name: *const u8,
    count: c_int,
    bytes: usize,
) -> c_int {
    let count = usize::try_from(count).unwrap_or(0);
    let Some(max) = spend(count.saturating_mul(ATTR_COST).saturating_add(bytes)) else {
        return 1;
    };
    let name = unsafe { c_str(name as *const c_char) }.unwrap_or_default();
    let why = format!(
        "element '{name}': attributes defaulted by the DTD and expanded entities exceed the \
         size limit of {max} bytes"
    );
    unsafe { refuse_at(ctxt, why) };
    0
}

/// Add `len` to the call's expanded total: the limit when that passes it.
fn spend(len: usize) -> Option<usize> {
    with_call(|call| {
        let max = call.policy.as_ref().map_or(0, |p| p.max_size);
        call.expanded = call.expanded.saturating_add(len);
        (call.expanded > max).then_some(max)
    })
    .flatten()
}

// ---- XInclude pointers --------------------------------------------------

/// libxml2 resolves an XInclude's XPointer in an XPath context of its
/// own, with no operation limit and out of reach of the deadline's
/// watcher: a `xpointer(…)` expression cubic in the document would run
/// for hours. Only pointers resolved without XPath are followed (see
/// [`plain_pointer`]); the others refuse the call. `kind` 0 is an
/// `xpointer` attribute, 1 an `href`, whose fragment is a pointer in the
/// 2001 namespace.
unsafe extern "C" fn on_pointer(
    file: *const c_char,
    line: c_int,
    kind: c_int,
    value: *const u8,
    len: c_int,
) -> c_int {
    if !with_call(|call| call.xinclude).unwrap_or(false) {
        return 1;
    }
    let value = (!value.is_null()).then(|| {
        let bytes = unsafe { std::slice::from_raw_parts(value, usize::try_from(len).unwrap_or(0)) };
        String::from_utf8_lossy(bytes).into_owned()
    });
    let pointer = match (kind, &value) {
        (1, Some(href)) => match href.split_once('#') {
            Some((_, fragment)) => {
                Some(String::from_utf8_lossy(&percent_decode(fragment.as_bytes())).into_owned())
            }
            None => return 1,
        },
        _ => value,
    };
    if pointer.as_deref().is_some_and(plain_pointer) {
        return 1;
    }
    let shown = pointer.unwrap_or_default();
    refuse(
        unsafe { c_str(file) },
        u32::try_from(line).unwrap_or(0),
        format!(
            "XInclude pointer '{}' refused: only an ID or element() is followed, never an \
             XPath expression",
            shown.escape_default()
        ),
    );
    0
}

/// Whether an XPointer is resolved without XPath: a shorthand (an ID,
/// or a child sequence such as `intro/2`), or parts of the `element()`
/// and `xmlns()` schemes only (their data within balanced parentheses,
/// `^` escaping the next character, as libxml2 reads them).
fn plain_pointer(pointer: &str) -> bool {
    let mut rest = pointer.trim();
    if !rest.contains('(') {
        return true;
    }
    while !rest.is_empty() {
        let Some(open) = rest.find('(') else {
            return false;
        };
        if !matches!(&rest[..open], "element" | "xmlns") {
            return false;
        }
        let (mut depth, mut escaped, mut end) = (0usize, false, None);
        for (i, c) in rest[open..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '^' => escaped = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return false;
        };
        rest = rest[end + 1..].trim_start();
    }
    true
}

// ---- loading ------------------------------------------------------------

/// The file a URL the libraries resolved names: `file:` URLs and absolute
/// paths only (percent-decoded); any other scheme is the network.
pub(crate) fn url_to_path(url: &str) -> Result<PathBuf, String> {
    let path = if let Some(rest) = url.strip_prefix("file://") {
        rest.strip_prefix("localhost").unwrap_or(rest)
    } else if let Some(rest) = url.strip_prefix("file:") {
        rest
    } else {
        let scheme = url.split_once(':').map(|(s, _)| s).filter(|s| {
            s.len() > 1
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if let Some(scheme) = scheme {
            return Err(format!("{url}: {scheme} URLs are refused (no network)"));
        }
        url
    };
    if !path.starts_with('/') {
        return Err(format!("{url}: not an absolute path"));
    }
    let bytes = percent_decode(path.as_bytes());
    if bytes.contains(&0) {
        return Err(format!("{url}: NUL in path"));
    }
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Why a load gave no bytes.
pub(crate) enum LoadError {
    /// The policy found no such file: for document() an empty node-set
    /// (as in xsltproc), for an include whatever the library makes of it.
    Missing(String),
    /// The policy or the engine refused: the whole call fails.
    Refused(String),
}

impl LoadError {
    pub(crate) fn message(self) -> String {
        match self {
            LoadError::Missing(m) | LoadError::Refused(m) => m,
        }
    }
}

/// Read `url` through the calling thread's policy.
fn load(url: &str) -> Result<(PathBuf, Vec<u8>), LoadError> {
    let path = url_to_path(url).map_err(LoadError::Refused)?;
    let policy = with_call(|call| match &call.own {
        Some(own) if own.files.contains(&path) => Some(own.policy.clone()),
        _ => call.policy.clone(),
    })
    .flatten()
    .ok_or_else(|| LoadError::Refused(format!("{url}: nothing may be loaded here")))?;
    let read = read(&policy, &path)?;
    with_call(|call| {
        if let Some(modules) = &mut call.modules {
            modules.push(path);
        }
    });
    Ok(read)
}

/// Note a failed load: a refusal fails the call, a missing file is only
/// reported (the library decides whether that is an error).
fn load_failed(e: LoadError) {
    match e {
        LoadError::Refused(why) => refuse(None, 0, why),
        LoadError::Missing(why) => {
            with_call(|call| {
                call.awaiting = false;
                push(call, None, 0, why);
            });
        }
    }
}

/// `path` through `policy.load`, within its size limit. A loader that
/// panics is an error here, never an unwind into C.
pub(crate) fn read(policy: &Policy, path: &Path) -> Result<(PathBuf, Vec<u8>), LoadError> {
    let result = catch_unwind(AssertUnwindSafe(|| (policy.load)(path)));
    let bytes = match result {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::Missing(format!("{}: not found", path.display())));
        }
        Ok(Err(e)) => {
            return Err(LoadError::Refused(format!(
                "{}: refused: {e}",
                path.display()
            )));
        }
        Err(_) => {
            return Err(LoadError::Refused(format!(
                "{}: the loader failed",
                path.display()
            )));
        }
    };
    if bytes.len() > policy.max_size {
        return Err(LoadError::Refused(format!(
            "{}: {} bytes, over the size limit of {} bytes",
            path.display(),
            bytes.len(),
            policy.max_size
        )));
    }
    Ok((path.to_path_buf(), bytes))
}

/// What a loader callback was asked for, read through the policy; a
/// failure is noted in the call (see [`load_failed`]).
unsafe fn load_url(url: *const c_char) -> Option<(PathBuf, Vec<u8>)> {
    let url = unsafe { c_str(url) }?;
    load(&url).map_err(load_failed).ok()
}

/// libxml2's external entity loader, process-wide. A load that starts a
/// document (XInclude) goes through the calling thread's policy, and its
/// parser gets the same entity rules; a load inside a document (an
/// external DTD or entity) is never made.
unsafe extern "C" fn entity_loader(
    url: *const c_char,
    _id: *const c_char,
    ctxt: *mut sys::XmlParserCtxt,
) -> *mut sys::XmlParserInput {
    if ctxt.is_null() || unsafe { sys::axkit_xml_ctxt_depth(ctxt) } > 0 {
        return ptr::null_mut();
    }
    let Some((path, bytes)) = (unsafe { load_url(url) }) else {
        return ptr::null_mut();
    };
    let Ok(len) = c_int::try_from(bytes.len()) else {
        return ptr::null_mut();
    };
    let Ok(name) = CString::new(path.to_string_lossy().into_owned()) else {
        return ptr::null_mut();
    };
    unsafe {
        sys::axkit_xml_filter(ctxt);
        sys::axkit_xml_new_input(ctxt, bytes.as_ptr() as *const c_char, len, name.as_ptr())
    }
}

/// libxslt's document loader, process-wide: xsl:include and xsl:import
/// (after libxslt's security check) and document(), through the calling
/// thread's policy, parsed like any document.
unsafe extern "C" fn doc_loader(
    uri: *const u8,
    dict: *mut sys::XmlDict,
    _options: c_int,
    _ctxt: *mut c_void,
    _kind: c_int,
) -> *mut sys::XmlDoc {
    let Some((path, bytes)) = (unsafe { load_url(uri as *const c_char) }) else {
        return ptr::null_mut();
    };
    parse_raw(&bytes, &path.to_string_lossy(), dict).unwrap_or(ptr::null_mut())
}

/// Parse with the engine's options and entity rules; `None` when the
/// document is not well-formed, too large, or was refused (the scope
/// says why). The caller owns the tree.
pub(crate) fn parse_raw(
    bytes: &[u8],
    url: &str,
    dict: *mut sys::XmlDict,
) -> Option<*mut sys::XmlDoc> {
    let len = c_int::try_from(bytes.len()).ok()?;
    let url = CString::new(url).ok()?;
    let doc = unsafe {
        sys::axkit_xml_parse(
            bytes.as_ptr() as *const c_char,
            len,
            url.as_ptr(),
            PARSE_OPTIONS,
            dict,
        )
    };
    if doc.is_null() {
        return None;
    }
    let refused = with_call(|call| call.refused.is_some()).unwrap_or(false);
    if refused {
        unsafe { sys::xmlFreeDoc(doc) };
        return None;
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_text_that_expands() {
        assert!(!refers_to_entities("plain text <b>markup</b>"));
        assert!(!refers_to_entities(
            "A &amp; B &lt;&gt;&apos;&quot; &#38;#60; &#x41;"
        ));
        assert!(refers_to_entities("&lol;&lol;"));
        assert!(refers_to_entities("&ampx;"));
        assert!(refers_to_entities("trailing &"));
    }

    #[test]
    fn pointers_without_xpath() {
        for plain in [
            "intro",
            "intro/2",
            " element(/1/2) ",
            "element(intro/1)",
            "xmlns(a=http://e/^(x^)) element(/1)",
        ] {
            assert!(plain_pointer(plain), "{plain}");
        }
        for xpath in [
            "xpointer(//p)",
            "element(/1) xpointer(//p)",
            "xpath1(//p)",
            "element(/1",
            "element (/1)",
        ] {
            assert!(!plain_pointer(xpath), "{xpath}");
        }
    }

    #[test]
    fn urls_to_paths() {
        assert_eq!(
            url_to_path("/a/b%20c.xml").unwrap(),
            PathBuf::from("/a/b c.xml")
        );
        assert_eq!(
            url_to_path("file:///a/b.xml").unwrap(),
            PathBuf::from("/a/b.xml")
        );
        assert_eq!(
            url_to_path("file://localhost/a").unwrap(),
            PathBuf::from("/a")
        );
        assert!(url_to_path("http://x/a.xml")
            .unwrap_err()
            .contains("no network"));
        assert!(url_to_path("HTTPS://x/a.xml").is_err());
        assert!(url_to_path("ftp://x/a.xml").is_err());
        assert!(url_to_path("relative/a.xml").is_err());
        assert!(url_to_path("/a%00b").is_err());
        assert!(url_to_path("file://other-host/a").is_err());
    }
}
