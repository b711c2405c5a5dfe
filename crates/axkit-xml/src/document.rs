//! [`Document`]: a parsed XML document (an owned `xmlDoc`), and what the
//! pipeline asks of one before choosing stylesheets: its root element and
//! its `<?xml-stylesheet?>` processing instructions.

use std::ffi::{c_char, c_int, CStr};
use std::ptr::{self, NonNull};

use crate::call::{self, Scope};
use crate::expansion;
use crate::sys;
use crate::{Policy, XmlError};

/// A parsed document (owns an `xmlDoc`). `Send` (used by one thread at a
/// time), not `Sync`: a transform may change its source (xsl:strip-space
/// strips it in place).
pub struct Document {
    ptr: NonNull<sys::XmlDoc>,
}

// SAFETY: an xmlDoc belongs to no thread; its dictionary is reference
// counted under libxml2's lock. Not Sync: see above.
unsafe impl Send for Document {}

impl Drop for Document {
    fn drop(&mut self) {
        unsafe { sys::xmlFreeDoc(self.ptr.as_ptr()) };
    }
}

/// One `<?xml-stylesheet?>` PI (its pseudo-attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StylesheetPi {
    pub href: String,
    pub media: Option<String>,
    /// `type`, e.g. `text/xsl`.
    pub kind: Option<String>,
    pub title: Option<String>,
    /// `alternate="yes"`.
    pub alternate: bool,
}

impl Document {
    /// Take ownership of a tree the libraries made.
    pub(crate) fn from_raw(ptr: *mut sys::XmlDoc) -> Option<Document> {
        NonNull::new(ptr).map(|ptr| Document { ptr })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::XmlDoc {
        self.ptr.as_ptr()
    }

    /// Parse `bytes`; `url` names it in errors and resolves relative
    /// references (an absolute file path for files). No network, no
    /// external entities, entity declarations that would expand (XXE,
    /// billion laughs) refused, and entity references may expand to at
    /// most `policy.max_size` bytes in all.
    pub fn parse(bytes: &[u8], url: &str, policy: &Policy) -> Result<Document, XmlError> {
        if bytes.len() > policy.max_size {
            return Err(XmlError {
                file: Some(url.to_string()),
                line: 0,
                message: format!(
                    "{} bytes, over the size limit of {} bytes",
                    bytes.len(),
                    policy.max_size
                ),
            });
        }
        let scope = Scope::enter(Some(policy))?;
        match call::parse_raw(bytes, url, ptr::null_mut()).and_then(Document::from_raw) {
            Some(doc) => Ok(doc),
            None => Err(scope.error("not well-formed").or_file(url)),
        }
    }

    /// Process XInclude elements (loads through the policy, relative to
    /// this document's URL; included documents follow the same rules).
    /// Only pointers that need no XPath are followed (an ID, `element()`):
    /// libxml2 evaluates an XPath one with no bound on its work. What the
    /// includes expand to, nested ones multiplied, may be at most
    /// `policy.max_size` bytes, measured before anything is copied.
    pub fn xinclude(&mut self, policy: &Policy) -> Result<(), XmlError> {
        let scope = Scope::enter(Some(policy))?;
        // This document's own includes are checked here, those of the
        // documents they load as those are parsed.
        scope.with(|call| call.xinclude = true);
        if unsafe { sys::axkit_xml_xinclude_pointers(self.as_ptr()) } == 0 {
            return Err(scope.error("XInclude processing failed"));
        }
        let url = unsafe { text(sys::axkit_xml_doc_url(self.as_ptr())) }.unwrap_or_default();
        expansion::check(self.as_ptr(), &url, policy);
        if scope.refused() {
            return Err(scope.error("XInclude processing failed"));
        }
        let ret = unsafe { sys::xmlXIncludeProcessFlags(self.as_ptr(), call::PARSE_OPTIONS) };
        if ret < 0 || scope.refused() {
            return Err(scope.error("XInclude processing failed"));
        }
        Ok(())
    }

    /// (namespace URI or "", local name) of the root element.
    pub fn root(&self) -> Option<(String, String)> {
        let root = unsafe { sys::xmlDocGetRootElement(self.as_ptr()) };
        if root.is_null() {
            return None;
        }
        let name = unsafe { text(sys::axkit_xml_node_name(root)) }?;
        let ns = unsafe { text(sys::axkit_xml_node_ns_href(root)) }.unwrap_or_default();
        Some((ns, name))
    }

    /// The `<?xml-stylesheet?>` PIs before the root, in order (those
    /// without an `href` are skipped).
    pub fn stylesheet_pis(&self) -> Vec<StylesheetPi> {
        let mut pis = Vec::new();
        let mut node = unsafe { sys::axkit_xml_doc_children(self.as_ptr()) };
        while !node.is_null() {
            match unsafe { sys::axkit_xml_node_type(node) } {
                sys::XML_ELEMENT_NODE => break,
                sys::XML_PI_NODE => {
                    let name = unsafe { text(sys::axkit_xml_node_name(node)) };
                    if name.as_deref() == Some("xml-stylesheet") {
                        let content =
                            unsafe { text(sys::axkit_xml_node_content(node)) }.unwrap_or_default();
                        pis.extend(parse_pi(&content));
                    }
                }
                _ => {}
            }
            node = unsafe { sys::axkit_xml_node_next(node) };
        }
        pis
    }

    /// Serialise as XML (UTF-8, with declaration), like xmllint's output.
    pub fn to_xml(&self) -> Vec<u8> {
        let mut mem: *mut u8 = ptr::null_mut();
        let mut len: c_int = 0;
        // Cannot fail: a Document exists only once the libraries are
        // loaded.
        let _scope = Scope::enter(None).ok();
        unsafe {
            sys::xmlDocDumpMemoryEnc(
                self.as_ptr(),
                &mut mem,
                &mut len,
                c"UTF-8".as_ptr() as *const c_char,
            );
            take_bytes(mem, len)
        }
    }
}

/// A document left at the end of the server's `xmlresponse` chain goes
/// out as XML.
impl axkit::plugin::Tree for Document {
    fn to_text(&self) -> Result<Vec<u8>, String> {
        Ok(self.to_xml())
    }
}

/// Copy and free a buffer libxml2 allocated.
pub(crate) unsafe fn take_bytes(mem: *mut u8, len: c_int) -> Vec<u8> {
    if mem.is_null() {
        return Vec::new();
    }
    let len = usize::try_from(len).unwrap_or(0);
    let out = unsafe { std::slice::from_raw_parts(mem, len) }.to_vec();
    unsafe { sys::axkit_xml_free(mem.cast()) };
    out
}

/// A C string the libraries own, copied (`None` for null).
pub(crate) unsafe fn text(p: *const u8) -> Option<String> {
    (!p.is_null()).then(|| {
        unsafe { CStr::from_ptr(p as *const c_char) }
            .to_string_lossy()
            .into_owned()
    })
}

/// The pseudo-attributes of an xml-stylesheet PI (`name="value"` or
/// `name='value'`, the predefined entities and character references
/// decoded).
fn parse_pi(content: &str) -> Option<StylesheetPi> {
    let mut pi = StylesheetPi {
        href: String::new(),
        media: None,
        kind: None,
        title: None,
        alternate: false,
    };
    let mut href = None;
    let mut rest = content.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let end = after[1..].find(quote)? + 1;
        let value = decode(&after[1..end]);
        match name {
            "href" => href = Some(value),
            "media" => pi.media = Some(value),
            "type" => pi.kind = Some(value),
            "title" => pi.title = Some(value),
            "alternate" => pi.alternate = value == "yes",
            _ => {}
        }
        rest = after[end + 1..].trim_start();
    }
    pi.href = href?;
    Some(pi)
}

fn decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let c = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(|d| d.parse()))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_pseudo_attributes() {
        let pi = parse_pi(
            r#"href="a.xsl" type='text/xsl' media="screen" alternate="yes" title="A &amp; B""#,
        )
        .unwrap();
        assert_eq!(pi.href, "a.xsl");
        assert_eq!(pi.kind.as_deref(), Some("text/xsl"));
        assert_eq!(pi.media.as_deref(), Some("screen"));
        assert_eq!(pi.title.as_deref(), Some("A & B"));
        assert!(pi.alternate);
        assert!(parse_pi(r#"type="text/xsl""#).is_none());
        assert!(parse_pi(r#"href="a.xsl"#).is_none());
        assert_eq!(decode("&#x41;&#66;&bogus;x"), "AB&bogus;x");
    }
}
