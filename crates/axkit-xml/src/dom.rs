//! [`Dom`]: a small editable view of a [`Document`] for code that builds
//! or changes XML (the Lua processors of the pipeline): element nodes,
//! their attributes and text, children, appending and removing elements,
//! and XPath queries that return elements.
//!
//! Why it is sound. A [`Node`] is a plain address plus the id of the
//! `Dom` that made it; every operation takes the `Dom` and first checks
//! that id, so a node is only ever dereferenced through the `Dom` it came
//! from while that `Dom` is alive. While alive, a `Dom` never frees an
//! element node: [`Dom::remove`] and [`Dom::set_text`] unlink the
//! elements they take out and keep them on a list that is freed only
//! when the `Dom` is dropped or turned back into a [`Document`] (which
//! consumes it, so its nodes can never match a `Dom` again: ids are never
//! reused). The only nodes it frees early are text, comment and PI nodes,
//! which no `Node` ever points to. A node that was removed (or lies in a
//! removed subtree) is still valid memory; operations on it are refused
//! with an error rather than acting on a tree nobody sees.
//!
//! XPath runs on a context made for the document alone
//! (`xmlXPathNewContext`): the core functions of XPath 1.0, no
//! `document()`, no variables, nothing loaded, and a bound on the
//! operations of one evaluation.
//!
//! The libxml2 functions used here are declared in this module, apart
//! from the engine's others in `sys.rs`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::call::Scope;
use crate::document::Document;
use crate::sys::{
    self, xmlAddChild, xmlDocSetRootElement, xmlFreeNode, xmlGetNoNsProp, xmlNewDoc, xmlNewDocNode,
    xmlNewDocText, xmlNodeGetContent, xmlSetProp, xmlUnlinkNode, xmlUnsetProp, xmlValidateNCName,
    xmlXPathFreeContext, xmlXPathFreeObject, xmlXPathNewContext, xmlXPathNodeEval,
    xmlXPathRegisterNs, XPathContext, XPathObject, XmlDoc, XmlNode, XmlNs,
};
use crate::XmlError;

const XML_DOCUMENT_NODE: c_int = 9;
/// A transform's result with `method="html"` is this kind of document.
const XML_HTML_DOCUMENT_NODE: c_int = 13;

/// Whether `node` is a document node (what a root element's parent is).
unsafe fn is_document(node: *mut XmlNode) -> bool {
    matches!(
        unsafe { sys::axkit_xml_node_type(node) },
        XML_DOCUMENT_NODE | XML_HTML_DOCUMENT_NODE
    )
}

// The shim's accessors for this module (the end of shim.c).
unsafe extern "C" {
    fn axkit_dom_children(node: *mut XmlNode) -> *mut XmlNode;
    fn axkit_dom_parent(node: *mut XmlNode) -> *mut XmlNode;
    fn axkit_dom_ns(node: *mut XmlNode) -> *mut XmlNs;
    fn axkit_dom_nodes(obj: *mut XPathObject, count: *mut c_int) -> *mut *mut XmlNode;
    fn axkit_dom_xpath_limit(ctxt: *mut XPathContext, limit: std::ffi::c_ulong);
}

/// The most operations one XPath evaluation may take (libxml2 counts
/// nodes visited and steps): far more than any query of a page needs,
/// and an end to `//*[count(//*[count(//*) > 0]) > 0]` on a large one,
/// which would otherwise run in C where no time limit reaches it.
const XPATH_MAX_OPS: std::ffi::c_ulong = 50_000_000;

/// The deepest an element may be nested, the root being 1: the parser's
/// own bound (libxml2's `xmlParserMaxDepth`), for trees a program
/// builds. libxslt walks a tree by recursion (its built-in templates are
/// not counted against its template depth), and 20,000 levels overflow a
/// thread's stack.
const MAX_DEPTH: usize = 256;

/// Ids of `Dom`s, never reused in a process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An element of a [`Dom`] (a handle: copying it copies the address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    ptr: NonNull<XmlNode>,
    dom: u64,
}

/// A document being read or edited (see the module doc for why handles
/// into it are safe).
pub struct Dom {
    doc: Document,
    id: u64,
    /// Elements unlinked from the tree: freed with the `Dom`.
    detached: Vec<NonNull<XmlNode>>,
}

impl Drop for Dom {
    fn drop(&mut self) {
        self.free_detached();
    }
}

impl From<Document> for Dom {
    fn from(doc: Document) -> Dom {
        Dom {
            doc,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            detached: Vec::new(),
        }
    }
}

impl Dom {
    /// A new document with an empty root element `root`.
    pub fn new(root: &str) -> Result<Dom, XmlError> {
        crate::init()?;
        let name = nc_name(root)?;
        let doc = unsafe { xmlNewDoc(c"1.0".as_ptr().cast()) };
        let doc = Document::from_raw(doc).ok_or_else(|| XmlError::new("out of memory"))?;
        let node = unsafe {
            xmlNewDocNode(
                doc.as_ptr(),
                ptr::null_mut(),
                name.as_ptr().cast(),
                ptr::null(),
            )
        };
        if node.is_null() {
            return Err(XmlError::new("out of memory"));
        }
        unsafe { xmlDocSetRootElement(doc.as_ptr(), node) };
        Ok(Dom::from(doc))
    }

    /// The document, the removed elements freed first.
    pub fn into_document(mut self) -> Document {
        self.free_detached();
        drop(std::mem::take(&mut self.detached));
        // The Dom's Drop would free nothing more; the document moves out.
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again.
        unsafe { ptr::read(&this.doc) }
    }

    /// The document as it stands (to serialise, say).
    pub fn document(&self) -> &Document {
        &self.doc
    }

    fn free_detached(&mut self) {
        for node in self.detached.drain(..) {
            // SAFETY: unlinked by this Dom, owned by nothing else, and
            // disjoint from the others (an element removed from inside a
            // removed subtree was unlinked from it first).
            unsafe { xmlFreeNode(node.as_ptr()) };
        }
    }

    fn node(&self, ptr: *mut XmlNode) -> Option<Node> {
        NonNull::new(ptr).map(|ptr| Node { ptr, dom: self.id })
    }

    /// The node's address, if it is this Dom's and still in its tree.
    fn check(&self, node: Node) -> Result<*mut XmlNode, XmlError> {
        self.locate(node).map(|(p, _)| p)
    }

    /// The node's address and its depth (the root element's is 1), if it
    /// is this Dom's and still in its tree.
    fn locate(&self, node: Node) -> Result<(*mut XmlNode, usize), XmlError> {
        if node.dom != self.id {
            return Err(XmlError::new("the node belongs to another document"));
        }
        // Attached when its ancestors lead to the document node.
        let mut cur = node.ptr.as_ptr();
        let mut depth = 1;
        loop {
            let parent = unsafe { axkit_dom_parent(cur) };
            if parent.is_null() {
                return Err(XmlError::new("the node was removed from its document"));
            }
            if unsafe { is_document(parent) } {
                return Ok((node.ptr.as_ptr(), depth));
            }
            cur = parent;
            depth += 1;
        }
    }

    /// The root element.
    pub fn root(&self) -> Option<Node> {
        self.node(unsafe { sys::xmlDocGetRootElement(self.doc.as_ptr()) })
    }

    /// The element's local name.
    pub fn name(&self, node: Node) -> Result<String, XmlError> {
        let p = self.check(node)?;
        Ok(unsafe { owned_str(sys::axkit_xml_node_name(p)) }.unwrap_or_default())
    }

    /// The value of the attribute `name` (no namespace), if there is one.
    pub fn attr(&self, node: Node, name: &str) -> Result<Option<String>, XmlError> {
        let p = self.check(node)?;
        let name = c_string(name)?;
        Ok(unsafe { take_str(xmlGetNoNsProp(p, name.as_ptr().cast())) })
    }

    /// Set the attribute `name` to `value` (stored as text: serialising
    /// escapes it), or remove it with `None`.
    pub fn set_attr(
        &mut self,
        node: Node,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), XmlError> {
        let p = self.check(node)?;
        let name = nc_name(name)?;
        let _scope = Scope::enter(None)?;
        match value {
            Some(value) => {
                let value = c_string(value)?;
                let attr = unsafe { xmlSetProp(p, name.as_ptr().cast(), value.as_ptr().cast()) };
                if attr.is_null() {
                    return Err(XmlError::new("out of memory"));
                }
            }
            None => {
                unsafe { xmlUnsetProp(p, name.as_ptr().cast()) };
            }
        }
        Ok(())
    }

    /// The text of the element and its descendants, concatenated.
    pub fn text(&self, node: Node) -> Result<String, XmlError> {
        let p = self.check(node)?;
        Ok(unsafe { take_str(xmlNodeGetContent(p)) }.unwrap_or_default())
    }

    /// Replace the element's children with the text `text` (stored as
    /// text: `<`, `&` and `]]>` come out escaped).
    pub fn set_text(&mut self, node: Node, text: &str) -> Result<(), XmlError> {
        let p = self.check(node)?;
        let text = c_string(text)?;
        let _scope = Scope::enter(None)?;
        let mut child = unsafe { axkit_dom_children(p) };
        while !child.is_null() {
            let next = unsafe { sys::axkit_xml_node_next(child) };
            unsafe { xmlUnlinkNode(child) };
            if unsafe { sys::axkit_xml_node_type(child) } == sys::XML_ELEMENT_NODE {
                // A handle may point to it (or into it).
                self.detached.push(unsafe { NonNull::new_unchecked(child) });
            } else {
                unsafe { xmlFreeNode(child) };
            }
            child = next;
        }
        if !text.as_bytes().is_empty() {
            append_text(self.doc.as_ptr(), p, &text)?;
        }
        Ok(())
    }

    /// The element children, in order.
    pub fn children(&self, node: Node) -> Result<Vec<Node>, XmlError> {
        let p = self.check(node)?;
        let mut out = Vec::new();
        let mut child = unsafe { axkit_dom_children(p) };
        while !child.is_null() {
            if unsafe { sys::axkit_xml_node_type(child) } == sys::XML_ELEMENT_NODE {
                out.extend(self.node(child));
            }
            child = unsafe { sys::axkit_xml_node_next(child) };
        }
        Ok(out)
    }

    /// Append a new element `name` (in the parent's namespace) with the
    /// text `text`, as the last child of `node`.
    /// Refused deeper than the parser allows (256 levels).
    pub fn append(&mut self, node: Node, name: &str, text: Option<&str>) -> Result<Node, XmlError> {
        let (p, depth) = self.locate(node)?;
        if depth >= MAX_DEPTH {
            return Err(XmlError::new(format!(
                "elements nested deeper than {MAX_DEPTH}"
            )));
        }
        let name = nc_name(name)?;
        let text = text.map(c_string).transpose()?;
        let _scope = Scope::enter(None)?;
        let doc = self.doc.as_ptr();
        let child =
            unsafe { xmlNewDocNode(doc, axkit_dom_ns(p), name.as_ptr().cast(), ptr::null()) };
        if child.is_null() {
            return Err(XmlError::new("out of memory"));
        }
        // An element is never merged into a neighbour: it is `child`.
        unsafe { xmlAddChild(p, child) };
        if let Some(text) = text.filter(|t| !t.as_bytes().is_empty()) {
            append_text(doc, child, &text)?;
        }
        Ok(Node {
            ptr: unsafe { NonNull::new_unchecked(child) },
            dom: self.id,
        })
    }

    /// Take the element (and what it contains) out of the tree. The root
    /// element stays: replace the document instead.
    pub fn remove(&mut self, node: Node) -> Result<(), XmlError> {
        let p = self.check(node)?;
        if unsafe { is_document(axkit_dom_parent(p)) } {
            return Err(XmlError::new("the root element cannot be removed"));
        }
        unsafe { xmlUnlinkNode(p) };
        self.detached.push(node.ptr);
        Ok(())
    }

    /// The elements the XPath expression `expr` selects, in document
    /// order, evaluated with `node` (the root element when `None`) as
    /// context node; `ns` binds prefixes to namespace URIs for it. An
    /// expression whose value is not a node-set is an error; nodes other
    /// than elements are left out.
    pub fn find(
        &self,
        node: Option<Node>,
        expr: &str,
        ns: &[(String, String)],
    ) -> Result<Vec<Node>, XmlError> {
        let context = match node {
            Some(n) => self.check(n)?,
            None => self.doc.as_ptr().cast(),
        };
        let c_expr = c_string(expr)?;
        let scope = Scope::enter(None)?;
        let ctxt = unsafe { xmlXPathNewContext(self.doc.as_ptr()) };
        if ctxt.is_null() {
            return Err(XmlError::new("out of memory"));
        }
        struct Ctxt(*mut XPathContext);
        impl Drop for Ctxt {
            fn drop(&mut self) {
                unsafe { xmlXPathFreeContext(self.0) };
            }
        }
        let ctxt = Ctxt(ctxt);
        unsafe { axkit_dom_xpath_limit(ctxt.0, XPATH_MAX_OPS) };
        for (prefix, uri) in ns {
            let prefix = nc_name(prefix)?;
            let uri = c_string(uri)?;
            unsafe { xmlXPathRegisterNs(ctxt.0, prefix.as_ptr().cast(), uri.as_ptr().cast()) };
        }
        let obj = unsafe { xmlXPathNodeEval(context, c_expr.as_ptr().cast(), ctxt.0) };
        if obj.is_null() {
            return Err(scope.error(&format!("invalid XPath expression '{expr}'")));
        }
        let mut count: c_int = 0;
        let nodes = unsafe { axkit_dom_nodes(obj, &mut count) };
        let out = if count < 0 {
            Err(XmlError::new(format!(
                "XPath expression '{expr}' does not select nodes"
            )))
        } else {
            let mut out = Vec::new();
            for i in 0..usize::try_from(count).unwrap_or(0) {
                let n = unsafe { *nodes.add(i) };
                if unsafe { sys::axkit_xml_node_type(n) } == sys::XML_ELEMENT_NODE {
                    out.extend(self.node(n));
                }
            }
            Ok(out)
        };
        unsafe { xmlXPathFreeObject(obj) };
        out
    }
}

/// Add `text` as a text node at the end of `parent` (raw text, not
/// parsed for entity references as xmlNodeSetContent would).
fn append_text(doc: *mut XmlDoc, parent: *mut XmlNode, text: &CStr) -> Result<(), XmlError> {
    let t = unsafe { xmlNewDocText(doc, text.as_ptr().cast()) };
    if t.is_null() {
        return Err(XmlError::new("out of memory"));
    }
    // May merge `t` into a text node before it (and free it): no handle
    // points to text nodes.
    unsafe { xmlAddChild(parent, t) };
    Ok(())
}

fn c_string(s: &str) -> Result<CString, XmlError> {
    CString::new(s).map_err(|_| XmlError::new("a NUL byte in XML text or a name"))
}

/// `s` if it is an XML name without a colon (a prefix would need a
/// namespace this API does not declare).
fn nc_name(s: &str) -> Result<CString, XmlError> {
    let c = c_string(s)?;
    if unsafe { xmlValidateNCName(c.as_ptr().cast(), 0) } != 0 {
        return Err(XmlError::new(format!(
            "not an XML name (without a prefix): {s:?}"
        )));
    }
    Ok(c)
}

unsafe fn owned_str(p: *const u8) -> Option<String> {
    (!p.is_null()).then(|| {
        unsafe { CStr::from_ptr(p as *const c_char) }
            .to_string_lossy()
            .into_owned()
    })
}

/// A string libxml2 allocated, copied and freed.
unsafe fn take_str(p: *mut u8) -> Option<String> {
    let s = unsafe { owned_str(p) };
    if !p.is_null() {
        unsafe { sys::axkit_xml_free(p.cast()) };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use std::sync::Arc;

    fn parse(text: &str) -> Dom {
        let policy = Policy {
            load: Arc::new(|_| Err(std::io::ErrorKind::PermissionDenied.into())),
            max_size: 1 << 20,
        };
        Dom::from(Document::parse(text.as_bytes(), "t.xml", &policy).unwrap())
    }

    fn xml(dom: &Dom) -> String {
        String::from_utf8(dom.document().to_xml()).unwrap()
    }

    #[test]
    fn builds_and_escapes() {
        let mut dom = Dom::new("page").unwrap();
        let root = dom.root().unwrap();
        let hostile = "a < b & c ]]> &amp; \"q\"";
        let t = dom.append(root, "title", Some(hostile)).unwrap();
        dom.set_attr(t, "lang", Some(hostile)).unwrap();
        assert_eq!(dom.text(t).unwrap(), hostile);
        assert_eq!(dom.attr(t, "lang").unwrap().as_deref(), Some(hostile));
        assert_eq!(
            xml(&dom),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<page><title lang=\"a &lt; b &amp; c ]]&gt; &amp;amp; &quot;q&quot;\">a &lt; b &amp; c ]]&gt; &amp;amp; \"q\"</title></page>\n"
        );
        dom.set_attr(t, "lang", None).unwrap();
        assert_eq!(dom.attr(t, "lang").unwrap(), None);
        assert!(dom.append(root, "a:b", None).is_err());
        assert!(dom.append(root, "1x", None).is_err());
        assert!(Dom::new("no good").is_err());
    }

    #[test]
    fn edits_a_parsed_tree() {
        let mut dom = parse("<a xmlns='urn:x'><b>1</b><c>2<d/></c>tail</a>");
        let root = dom.root().unwrap();
        let kids = dom.children(root).unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(dom.name(kids[1]).unwrap(), "c");
        let e = dom.append(root, "e", Some("3")).unwrap();
        // In the parent's namespace: no xmlns="" on it.
        assert!(xml(&dom).contains("tail<e>3</e></a>"), "{}", xml(&dom));
        dom.remove(kids[0]).unwrap();
        assert_eq!(dom.text(root).unwrap(), "2tail3");
        // A removed node is valid memory but refused.
        assert!(dom.name(kids[0]).unwrap_err().message.contains("removed"));
        assert!(dom.remove(kids[0]).is_err());
        assert!(dom.remove(root).is_err());
        // set_text detaches element children (a handle into them stays safe).
        let d = dom.find(Some(kids[1]), "*", &[]).unwrap()[0];
        dom.set_text(kids[1], "x<y").unwrap();
        assert!(dom.name(d).is_err());
        assert!(
            xml(&dom).contains("<c>x&lt;y</c>tail<e>3</e>"),
            "{}",
            xml(&dom)
        );
        assert_eq!(dom.name(e).unwrap(), "e");
        let doc = dom.into_document();
        assert!(doc.to_xml().starts_with(b"<?xml"));
    }

    #[test]
    fn xpath_selects_elements() {
        let other = parse("<z/>");
        let dom = parse("<r xmlns:p='urn:p'><i n='1'/><i n='2'><p:j/></i>text</r>");
        let found = dom.find(None, "//i[@n='2']", &[]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(dom.attr(found[0], "n").unwrap().as_deref(), Some("2"));
        assert_eq!(dom.find(None, "/r/node()", &[]).unwrap().len(), 2);
        let ns = [("q".to_string(), "urn:p".to_string())];
        assert_eq!(dom.find(Some(found[0]), "q:j", &ns).unwrap().len(), 1);
        let e = dom.find(None, "//i[", &[]).unwrap_err();
        assert!(e.message.contains("//i["), "{e}");
        assert!(dom.find(None, "count(//i)", &[]).is_err());
        assert!(dom.find(None, "document('/etc/passwd')", &[]).is_err());
        // Runaway expressions stop.
        let mut big = Dom::new("r").unwrap();
        let root = big.root().unwrap();
        for _ in 0..1000 {
            big.append(root, "i", None).unwrap();
        }
        let e = big
            .find(None, "//*[count(//*[count(//*) > 0]) > 0]", &[])
            .unwrap_err();
        assert!(e.message.contains("limit"), "{e}");
        // A node of another document is refused.
        assert!(dom.name(other.root().unwrap()).is_err());
    }

    #[test]
    fn a_built_tree_is_no_deeper_than_a_parsed_one() {
        let mut dom = Dom::new("a").unwrap();
        let mut node = dom.root().unwrap();
        for _ in 1..MAX_DEPTH {
            node = dom.append(node, "a", None).unwrap();
        }
        let e = dom.append(node, "a", None).unwrap_err();
        assert!(e.message.contains("nested deeper than 256"), "{e}");
    }
}
