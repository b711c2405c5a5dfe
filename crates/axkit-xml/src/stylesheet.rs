//! [`Stylesheet`]: a compiled XSLT stylesheet (an owned
//! `xsltStylesheet`), applied to [`Document`]s and serialising their
//! results exactly as xsltproc does (`xsltSaveResultToString`, the same
//! serialiser as its `xsltSaveResultToFile`).

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::Instant;

use crate::call::{self, Own, Scope};
use crate::deadline::Watched;
use crate::document::{take_bytes, Document};
use crate::sys;
use crate::{Policy, XmlError};

/// A compiled stylesheet (owns an `xsltStylesheet`). `Send + Sync`:
/// libxslt only reads it during transforms, which may run on several
/// threads at once.
pub struct Stylesheet {
    ptr: NonNull<sys::XsltStylesheet>,
    /// What it was compiled from, which its transforms may read again.
    own: Arc<Own>,
}

// SAFETY: a compiled stylesheet is read-only to libxslt's transforms (each
// has its own context and a sub-dictionary of the stylesheet's), which is
// what makes sharing it between threads supported by libxslt.
unsafe impl Send for Stylesheet {}
unsafe impl Sync for Stylesheet {}

impl Drop for Stylesheet {
    fn drop(&mut self) {
        unsafe { sys::xsltFreeStylesheet(self.ptr.as_ptr()) };
    }
}

/// A serialised result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub body: Vec<u8>,
    /// xsl:output's media-type, else the method's (text/xml, text/html,
    /// text/plain).
    pub media_type: String,
    /// The encoding the body is in (xsl:output's, else UTF-8).
    pub encoding: String,
}

/// Which xsl:output attribute `axkit_xslt_output` reads.
const METHOD: c_int = 0;
const MEDIA_TYPE: c_int = 1;
const ENCODING: c_int = 2;

impl Stylesheet {
    /// Compile the file at `path` (absolute), loading it and its
    /// includes/imports through the policy. Its transforms may read those
    /// files again through the same policy, wherever theirs may read
    /// (`document('')`: the stylesheet itself).
    pub fn compile(path: &Path, policy: &Policy) -> Result<Stylesheet, XmlError> {
        let scope = Scope::enter(Some(policy))?;
        scope.with(|call| call.modules = Some(vec![path.to_path_buf()]));
        let name = path.to_string_lossy().into_owned();
        let (_, bytes) = call::read(policy, path).map_err(|e| {
            let message = e.message();
            XmlError {
                message: message
                    .strip_prefix(&format!("{name}: "))
                    .unwrap_or(&message)
                    .to_string(),
                file: Some(name.clone()),
                line: 0,
            }
        })?;
        let Some(doc) = call::parse_raw(&bytes, &name, ptr::null_mut()) else {
            return Err(scope.error("not well-formed").or_file(&name));
        };
        let style = unsafe { sys::xsltParseStylesheetDoc(doc) };
        let Some(style) = NonNull::new(style) else {
            // On failure the document stays the caller's.
            unsafe { sys::xmlFreeDoc(doc) };
            return Err(scope.error("not a stylesheet").or_file(&name));
        };
        let mut files = Vec::new();
        scope.with(|call| files = call.modules.take().unwrap_or_default());
        // From here the stylesheet owns the document.
        let style = Stylesheet {
            ptr: style,
            own: Arc::new(Own {
                policy: policy.clone(),
                files,
            }),
        };
        if unsafe { sys::axkit_xslt_errors(style.ptr.as_ptr()) } > 0 || scope.refused() {
            return Err(scope.error("stylesheet compilation failed").or_file(&name));
        }
        Ok(style)
    }

    /// Transform; `params` are string parameters (like xsltproc
    /// `--stringparam`). `document()` loads through the policy. An error
    /// reported during the transform (xsl:message terminate="yes", a bad
    /// XPath, a refused load) is an `Err`, never a partial result.
    pub fn apply(
        &self,
        doc: &Document,
        params: &[(&str, &str)],
        policy: &Policy,
    ) -> Result<Document, XmlError> {
        self.transform(doc, params, policy, None)
    }

    /// [`apply`](Self::apply), stopped when it runs past `deadline` (an
    /// `Err` saying so): from another thread, so a transform running on
    /// the caller's own event loop is stopped too.
    pub fn apply_until(
        &self,
        doc: &Document,
        params: &[(&str, &str)],
        policy: &Policy,
        deadline: Instant,
    ) -> Result<Document, XmlError> {
        self.transform(doc, params, policy, Some(deadline))
    }

    fn transform(
        &self,
        doc: &Document,
        params: &[(&str, &str)],
        policy: &Policy,
        deadline: Option<Instant>,
    ) -> Result<Document, XmlError> {
        let scope = Scope::enter(Some(policy))?;
        scope.with(|call| call.own = Some(self.own.clone()));
        let mut strings = Vec::with_capacity(params.len() * 2);
        for (name, value) in params {
            for s in [name, value] {
                strings.push(CString::new(*s).map_err(|_| {
                    XmlError::new(format!("stylesheet parameter {name}: NUL in its text"))
                })?);
            }
        }
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(ptr::null());
        let ctxt = unsafe { sys::xsltNewTransformContext(self.ptr.as_ptr(), doc.as_ptr()) };
        if ctxt.is_null() {
            return Err(scope.error("could not start the transform"));
        }
        if unsafe { sys::xsltQuoteUserParams(ctxt, pointers.as_ptr()) } < 0 {
            unsafe { sys::xsltFreeTransformContext(ctxt) };
            return Err(scope.error("bad stylesheet parameters"));
        }
        let watched = match deadline.map(|at| Watched::start(ctxt, at)).transpose() {
            Ok(watched) => watched,
            Err(e) => {
                unsafe { sys::xsltFreeTransformContext(ctxt) };
                return Err(e);
            }
        };
        let (result, state, stopped) = unsafe {
            let result = sys::xsltApplyStylesheetUser(
                self.ptr.as_ptr(),
                doc.as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null_mut(),
                ctxt,
            );
            // Unwatched before the context is freed.
            let stopped = watched.is_some_and(Watched::finish);
            let state = sys::axkit_xslt_state(ctxt);
            sys::xsltFreeTransformContext(ctxt);
            (Document::from_raw(result), state, stopped)
        };
        match result {
            _ if stopped => Err(XmlError::new(
                "the transform ran past its deadline and was stopped",
            )),
            Some(result) if state == sys::XSLT_STATE_OK && !scope.refused() => Ok(result),
            // A partial result is dropped (freed) here.
            _ => Err(scope.error("the transform failed")),
        }
    }

    /// Serialise a result of this stylesheet by its xsl:output,
    /// byte-identical to xsltproc's output.
    pub fn output(&self, result: &Document) -> Result<Output, XmlError> {
        let scope = Scope::enter(None)?;
        let mut mem: *mut u8 = ptr::null_mut();
        let mut len: c_int = 0;
        let ret = unsafe {
            sys::xsltSaveResultToString(&mut mem, &mut len, result.as_ptr(), self.ptr.as_ptr())
        };
        let body = unsafe { take_bytes(mem, len) };
        if ret < 0 {
            return Err(scope.error("could not serialise the result"));
        }
        let html = unsafe { sys::axkit_xml_doc_is_html(result.as_ptr()) } != 0;
        let media_type = self
            .media_type()
            .unwrap_or_else(|| if html { "text/html" } else { "text/xml" }.to_string());
        Ok(Output {
            body,
            media_type,
            encoding: self.encoding().unwrap_or_else(|| "UTF-8".to_string()),
        })
    }

    /// The media type its xsl:output gives: `media-type` if set, else the
    /// one of an explicit `method` (text/xml, text/html, text/plain).
    /// `None` when neither is set: the result decides (libxslt outputs a
    /// result whose root is `<html>` as HTML), which [`output`](Self::output)
    /// reports.
    pub fn media_type(&self) -> Option<String> {
        if let Some(media) = self.attribute(MEDIA_TYPE) {
            return Some(media);
        }
        let media = match self.method()?.as_str() {
            "html" => "text/html",
            "text" => "text/plain",
            "xhtml" => "application/xhtml+xml",
            _ => "text/xml",
        };
        Some(media.to_string())
    }

    /// xsl:output's `method` (xml, html, text), if set.
    pub fn method(&self) -> Option<String> {
        self.attribute(METHOD)
    }

    /// xsl:output's `encoding`, if set.
    pub fn encoding(&self) -> Option<String> {
        self.attribute(ENCODING)
    }

    fn attribute(&self, which: c_int) -> Option<String> {
        let p = unsafe { sys::axkit_xslt_output(self.ptr.as_ptr(), which) };
        (!p.is_null()).then(|| {
            unsafe { CStr::from_ptr(p as *const c_char) }
                .to_string_lossy()
                .into_owned()
        })
    }
}
