//! crates/axkit-xml: safe wrappers over libxml2, libxslt and libexslt
//! (hand-written FFI, no bindgen), for AxKit's XML pipeline.
//!
//! - [`Document`]: parse (no network, no external entities, entity
//!   expansion bounded), XInclude, the root element, the
//!   `<?xml-stylesheet?>` PIs, serialisation.
//! - [`Stylesheet`]: compile (with xsl:include/import), apply with string
//!   parameters (as `xsltproc --stringparam`), serialise by `xsl:output`
//!   byte for byte as xsltproc does. EXSLT is registered.
//! - [`Dom`]: read and edit a document's elements (attributes, text,
//!   children, append, remove, XPath), for processors that build or
//!   change XML.
//! - [`Policy`]: every file any of that loads (XInclude, `document()`,
//!   xsl:include/import) is read through `Policy::load`, which the caller
//!   backs with a beneath-the-root opener; URLs of any other scheme than
//!   `file:` are refused, and libxslt may write nothing.
//!
//! Loading: the libraries are not linked but loaded by [`init`] (`dl.rs`),
//! so a process that never needs XML never maps them.
//!
//! Thread safety: call [`init`] once (every entry point also does); then
//! documents and stylesheets may be used on any thread. Each call
//! collects its own errors and uses its own policy (see `call.rs` for how
//! the libraries' process-wide hooks are routed to the calling thread).
//! A call that reports an error is an `Err` ([`XmlError`], with the file
//! and line libxml2/libxslt gave), never a partial document.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axkit_xml::{Document, Policy, Stylesheet};
//!
//! let policy = Policy {
//!     load: Arc::new(|path| std::fs::read(path)),
//!     max_size: 10 << 20,
//! };
//! let style = Stylesheet::compile("/srv/www/style.xsl".as_ref(), &policy)?;
//! let bytes = std::fs::read("/srv/www/index.xml").unwrap();
//! let doc = Document::parse(&bytes, "/srv/www/index.xml", &policy)?;
//! let result = style.apply(&doc, &[("lang", "en")], &policy)?;
//! let out = style.output(&result)?;
//! assert_eq!(out.media_type, "text/html");
//! # Ok::<(), axkit_xml::XmlError>(())
//! ```

mod alloc;
mod call;
mod deadline;
mod dl;
mod document;
mod dom;
mod expansion;
mod stylesheet;
mod sys;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use document::{Document, StylesheetPi};
pub use dom::{Dom, Node};
pub use stylesheet::{Output, Stylesheet};

/// What [`Policy::load`] is: an absolute path in, the file's bytes out.
pub type Loader = dyn Fn(&Path) -> std::io::Result<Vec<u8>> + Send + Sync;

/// Where loaded files may come from. Every load the libraries make
/// (XInclude, `document()`, xsl:include/import) goes through `load`, which
/// the plugin backs with the core's beneath-the-root opener; network URLs
/// are always refused, and external DTDs and entities are never loaded.
///
/// `load` gets an absolute path (relative references are resolved against
/// the referring document's path first). An error of kind `NotFound` means
/// "no such file" (`document()` then gives an empty node-set, as in
/// xsltproc); any other error is a refusal and fails the whole call, so
/// a path that leads outside the root should not be reported as
/// `NotFound`.
#[derive(Clone)]
pub struct Policy {
    pub load: Arc<Loader>,
    /// Max bytes of one parsed document (refused beyond it); also the
    /// most that entity references in one call may expand to.
    pub max_size: usize,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// What went wrong, where libxml2 or libxslt said it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// The document or stylesheet (a path, or the URL given to parse).
    pub file: Option<String>,
    /// 0 when unknown.
    pub line: u32,
    /// The libraries' messages, trimmed, joined with `; `.
    pub message: String,
}

impl XmlError {
    pub(crate) fn new(message: impl Into<String>) -> XmlError {
        XmlError {
            file: None,
            line: 0,
            message: message.into(),
        }
    }

    /// Name `file` when the libraries could not say where (an empty
    /// document, a refused load).
    pub(crate) fn or_file(mut self, file: &str) -> XmlError {
        if self.file.is_none() {
            self.file = Some(file.to_string());
        }
        self
    }
}

impl fmt::Display for XmlError {
    /// `file:line: message` (parts that are unknown left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), 0) => write!(f, "{file}: {}", self.message),
            (Some(file), line) => write!(f, "{file}:{line}: {}", self.message),
            (None, 0) => write!(f, "{}", self.message),
            (None, line) => write!(f, "line {line}: {}", self.message),
        }
    }
}

impl std::error::Error for XmlError {}

/// Load libxml2, libxslt and libexslt (`dlopen`: the binary does not
/// link them) and initialise them, once per process. Call it where the
/// configuration is read, when constructing whatever needs XML, before
/// starting threads (`--check`, and each worker as it builds its plugins:
/// the master builds none, so only processes that use XML load them): a
/// missing library is then a configuration error, not a failed request
/// later. Every entry point calls it too (and fails with
/// its error).
///
/// The error says which library could not be loaded and why, e.g.
/// `libxslt.so.1 (Debian package libxslt1.1): libxslt.so.1: cannot open
/// shared object file: No such file or directory`; the caller says who
/// needed it ("the xslt plugin needs …").
pub fn init() -> Result<(), XmlError> {
    call::init()
}
