//! The work of one request's pipeline that may run on a thread of the
//! blocking pool: parsing (a file's XIncludes included) and running the
//! chain. It
//! holds only `Send` things (the parsed document, the shared compiled
//! stylesheets, the load policy), never the request.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axkit::plugin::{is_escape, DocRoot};
use axkit_xml::{Document, Policy, Stylesheet, XmlError};
use bytes::Bytes;

/// The namespace of XInclude elements: a document that does not mention
/// it has none to process.
const XINCLUDE_NS: &[u8] = b"http://www.w3.org/2001/XInclude";

/// A load policy reading beneath `root` (every load refused without one).
pub(crate) fn policy(root: Option<DocRoot>, max_size: usize) -> Policy {
    Policy {
        load: Arc::new(move |path: &Path| match &root {
            Some(root) => read_beneath(root, path, max_size),
            None => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "no DocumentRoot to load files beneath",
            )),
        }),
        max_size,
    }
}

/// Files a [`recording`] policy loaded.
pub(crate) type Loaded = Arc<Mutex<Vec<PathBuf>>>;

/// `policy`, remembering the path of every file it loads.
pub(crate) fn recording(policy: Policy) -> (Policy, Loaded) {
    let loaded = Loaded::default();
    let record = loaded.clone();
    let inner = policy.load.clone();
    let policy = Policy {
        load: Arc::new(move |p: &Path| {
            if let Ok(mut list) = record.lock() {
                if !list.iter().any(|q| q == p) {
                    list.push(p.to_path_buf());
                }
            }
            inner(p)
        }),
        max_size: policy.max_size,
    };
    (policy, loaded)
}

/// What a recording policy has loaded so far.
pub(crate) fn loaded(loaded: &Loaded) -> Vec<PathBuf> {
    loaded.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Read `path` through the core's opener beneath `root`, at most
/// `max_size` bytes; a path outside it, or leading out of it through a
/// link or `..`, is refused with why.
pub(crate) fn read_beneath(root: &DocRoot, path: &Path, max_size: usize) -> io::Result<Vec<u8>> {
    let refused = |why: &str| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} {why} {}", path.display(), root.path().display()),
        )
    };
    // The libraries name files by absolute paths; a root configured
    // relative to the working directory names them relative to it.
    let path = match (root.path().is_absolute(), cwd()) {
        (false, Some(cwd)) => path.strip_prefix(cwd).unwrap_or(path),
        _ => path,
    };
    if !root.contains(path) {
        return Err(refused("is outside"));
    }
    let file = root.open(path).map_err(|e| {
        if is_escape(&e) {
            refused("leads out of")
        } else {
            e
        }
    })?;
    let mut bytes = Vec::new();
    file.take(max_size as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max_size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max_size} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

/// The working directory, which relative roots and files are under.
pub(crate) fn cwd() -> Option<&'static Path> {
    static CWD: OnceLock<Option<PathBuf>> = OnceLock::new();
    CWD.get_or_init(|| std::env::current_dir().ok()).as_deref()
}

/// `path` as the libraries want it: absolute.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    match cwd() {
        Some(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    }
}

/// The document a job starts from.
pub(crate) enum Input {
    /// The file the request maps to: its XIncludes are processed.
    File(Bytes),
    /// Text a plugin handed over, which may be made of the request: it
    /// is parsed as it is, never XIncluded (an include would read what
    /// the Location's access rules protect, as often as it is named).
    Text(Bytes),
    Tree(Document),
}

impl Input {
    /// Roughly how much work it is: its size as text (a tree built by a
    /// plugin counts as large).
    pub(crate) fn size(&self) -> usize {
        match self {
            Input::File(t) | Input::Text(t) => t.len(),
            Input::Tree(_) => usize::MAX,
        }
    }

    /// The document, parsed if it is text, named `url`; past the time
    /// limit's deadline, an error.
    pub(crate) fn parse(
        self,
        url: &str,
        policy: &Policy,
        limit: &Limit,
    ) -> Result<Document, XmlError> {
        let doc = self.parse_now(url, policy)?;
        match Instant::now() >= limit.deadline {
            true => Err(limit.passed(url, "parsing and XIncludes ran past their deadline")),
            false => Ok(doc),
        }
    }

    fn parse_now(self, url: &str, policy: &Policy) -> Result<Document, XmlError> {
        match self {
            Input::File(bytes) => {
                let mut doc = Document::parse(&bytes, url, policy)?;
                if memchr::memmem::find(&bytes, XINCLUDE_NS).is_some() {
                    doc.xinclude(policy)?;
                }
                Ok(doc)
            }
            Input::Text(bytes) => Document::parse(&bytes, url, policy),
            Input::Tree(doc) => Ok(doc),
        }
    }
}

/// A request's `XSLTTimeLimit`: parsing, XIncludes and the transforms
/// all count in it. A transform is stopped at the deadline; a parse is
/// bounded by the engine's limits (size, entities, pointers without
/// XPath) and is an error once done if it passed the deadline.
#[derive(Clone, Copy)]
pub(crate) struct Limit {
    pub limit: Duration,
    pub deadline: Instant,
}

impl Limit {
    /// `limit` from now.
    pub(crate) fn start(limit: Duration) -> Limit {
        let now = Instant::now();
        // A limit too large to add is no limit: a century is as good.
        let deadline = now
            .checked_add(limit)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        Limit { limit, deadline }
    }

    /// The error of `url`'s work past the deadline.
    fn passed(&self, url: &str, what: &str) -> XmlError {
        XmlError {
            file: Some(url.to_string()),
            line: 0,
            message: format!("{what} (XSLTTimeLimit {:?})", self.limit),
        }
    }
}

/// One run of a chain.
pub(crate) struct Job {
    pub input: Input,
    pub url: String,
    pub sheets: Vec<Arc<Stylesheet>>,
    pub params: Vec<(String, String)>,
    pub policy: Policy,
    /// How long parsing and the chain's transforms may take in all.
    pub limit: Limit,
}

/// What a chain produced.
pub(crate) struct Output {
    pub body: Vec<u8>,
    pub content_type: String,
}

impl Job {
    pub(crate) fn run(self) -> Result<Output, XmlError> {
        let mut doc = self.input.parse(&self.url, &self.policy, &self.limit)?;
        let params: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let Some((last, before)) = self.sheets.split_last() else {
            // No stylesheet: the document as XML.
            return Ok(Output {
                body: doc.to_xml(),
                content_type: "application/xml; charset=utf-8".into(),
            });
        };
        let deadline = self.limit.deadline;
        let apply = |sheet: &Stylesheet, doc: &Document| {
            sheet
                .apply_until(doc, &params, &self.policy, deadline)
                .map_err(|e| match Instant::now() >= deadline {
                    true => self.limit.passed(&self.url, &e.message),
                    false => e,
                })
        };
        for sheet in before {
            doc = apply(sheet, &doc)?;
        }
        let result = apply(last, &doc)?;
        let out = last.output(&result)?;
        let content_type = if out.encoding.is_empty() {
            out.media_type
        } else {
            format!("{}; charset={}", out.media_type, out.encoding)
        };
        Ok(Output {
            body: out.body,
            content_type,
        })
    }
}
