//! The hand-written FFI: only the functions of libxml2, libxslt and the C
//! shim (`shim.c`) that the engine calls, with opaque pointers for every
//! library type. The libraries' functions are resolved when they are
//! loaded (`dl.rs`); the shim is linked in. The one struct read from Rust, `xmlError`, is part of
//! libxml2's stable public API.

use std::ffi::{c_char, c_int, c_void};

/// Opaque library types: only ever handled through pointers.
macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}

opaque!(
    XmlDoc,
    XmlNode,
    XmlDict,
    XmlParserCtxt,
    XmlParserInput,
    XsltStylesheet,
    XsltTransformContext,
    XmlNs,
    XPathContext,
    XPathObject
);

/// `xmlError` (libxml2's xmlerror.h).
#[repr(C)]
pub struct XmlErrorRec {
    pub domain: c_int,
    pub code: c_int,
    pub message: *const c_char,
    pub level: c_int,
    pub file: *const c_char,
    pub line: c_int,
    pub str1: *const c_char,
    pub str2: *const c_char,
    pub str3: *const c_char,
    pub int1: c_int,
    pub int2: c_int,
    pub ctxt: *mut c_void,
    pub node: *mut c_void,
}

pub const XML_FROM_XPATH: c_int = 12;
pub const XML_ERR_ERROR: c_int = 2;

pub const XML_ELEMENT_NODE: c_int = 1;
pub const XML_PI_NODE: c_int = 7;

// xmlParserOption
pub const XML_PARSE_NOENT: c_int = 1 << 1;
pub const XML_PARSE_DTDATTR: c_int = 1 << 3;
pub const XML_PARSE_NONET: c_int = 1 << 11;
pub const XML_PARSE_NOCDATA: c_int = 1 << 14;

// xmlEntityType
pub const XML_INTERNAL_GENERAL_ENTITY: c_int = 1;

// xsltTransformState
pub const XSLT_STATE_OK: c_int = 0;

pub type TextFn = unsafe extern "C" fn(text: *const c_char, len: usize);
pub type EntityDeclFn = unsafe extern "C" fn(
    ctxt: *mut XmlParserCtxt,
    name: *const u8,
    kind: c_int,
    system_id: *const u8,
    content: *const u8,
) -> c_int;
pub type EntityUseFn =
    unsafe extern "C" fn(ctxt: *mut XmlParserCtxt, name: *const u8, len: c_int) -> c_int;
pub type DefaultAttrsFn = unsafe extern "C" fn(
    ctxt: *mut XmlParserCtxt,
    name: *const u8,
    count: c_int,
    bytes: usize,
) -> c_int;
pub type PointerFn = unsafe extern "C" fn(
    file: *const c_char,
    line: c_int,
    kind: c_int,
    value: *const u8,
    len: c_int,
) -> c_int;
pub type EntityLoaderFn = unsafe extern "C" fn(
    url: *const c_char,
    id: *const c_char,
    ctxt: *mut XmlParserCtxt,
) -> *mut XmlParserInput;
pub type DocLoaderFn = unsafe extern "C" fn(
    uri: *const u8,
    dict: *mut XmlDict,
    options: c_int,
    ctxt: *mut c_void,
    kind: c_int,
) -> *mut XmlDoc;
/// What one XInclude element adds (shim.c `axkit_include_fn`).
pub type IncludeFn = unsafe extern "C" fn(
    data: *mut c_void,
    doc: *mut XmlDoc,
    node: *mut XmlNode,
    url: *const u8,
    pointer: *const u8,
    text: c_int,
    budget: i64,
) -> i64;
pub type StructuredErrorFn = unsafe extern "C" fn(data: *mut c_void, error: *const XmlErrorRec);

pub type ResolveFn = extern "C" fn(name: *const c_char) -> *mut c_void;

pub type FreeFn = unsafe extern "C" fn(p: *mut c_void);
pub type MallocFn = unsafe extern "C" fn(size: usize) -> *mut c_void;
pub type ReallocFn = unsafe extern "C" fn(p: *mut c_void, size: usize) -> *mut c_void;
pub type StrdupFn = unsafe extern "C" fn(s: *const c_char) -> *mut c_char;

// libxml2, libxslt and libexslt, resolved when they are loaded (`dl.rs`).
// To add one: declare it here as in an `extern "C"` block.
crate::dl::library_functions! {
    pub fn xmlMemSetup(
        free: FreeFn,
        malloc: MallocFn,
        realloc: ReallocFn,
        strdup: StrdupFn,
    ) -> c_int;
    pub fn xmlFreeDoc(doc: *mut XmlDoc);
    pub fn xmlDocGetRootElement(doc: *const XmlDoc) -> *mut XmlNode;
    pub fn xmlDocDumpMemoryEnc(
        doc: *mut XmlDoc,
        mem: *mut *mut u8,
        size: *mut c_int,
        encoding: *const c_char,
    );
    pub fn xmlXIncludeProcessFlags(doc: *mut XmlDoc, flags: c_int) -> c_int;
    pub fn xsltParseStylesheetDoc(doc: *mut XmlDoc) -> *mut XsltStylesheet;
    pub fn xsltFreeStylesheet(style: *mut XsltStylesheet);
    pub fn xsltNewTransformContext(
        style: *mut XsltStylesheet,
        doc: *mut XmlDoc,
    ) -> *mut XsltTransformContext;
    pub fn xsltFreeTransformContext(ctxt: *mut XsltTransformContext);
    pub fn xsltQuoteUserParams(
        ctxt: *mut XsltTransformContext,
        params: *const *const c_char,
    ) -> c_int;
    pub fn xsltApplyStylesheetUser(
        style: *mut XsltStylesheet,
        doc: *mut XmlDoc,
        params: *const *const c_char,
        output: *const c_char,
        profile: *mut c_void,
        ctxt: *mut XsltTransformContext,
    ) -> *mut XmlDoc;
    pub fn xsltSaveResultToString(
        out: *mut *mut u8,
        len: *mut c_int,
        result: *mut XmlDoc,
        style: *mut XsltStylesheet,
    ) -> c_int;
    // The DOM scripts edit (`dom.rs`).
    pub fn xmlNewDoc(version: *const u8) -> *mut XmlDoc;
    pub fn xmlNewDocNode(
        doc: *mut XmlDoc,
        ns: *mut XmlNs,
        name: *const u8,
        content: *const u8,
    ) -> *mut XmlNode;
    pub fn xmlNewDocText(doc: *const XmlDoc, content: *const u8) -> *mut XmlNode;
    pub fn xmlDocSetRootElement(doc: *mut XmlDoc, root: *mut XmlNode) -> *mut XmlNode;
    pub fn xmlAddChild(parent: *mut XmlNode, cur: *mut XmlNode) -> *mut XmlNode;
    pub fn xmlUnlinkNode(cur: *mut XmlNode);
    pub fn xmlFreeNode(cur: *mut XmlNode);
    pub fn xmlValidateNCName(value: *const u8, space: c_int) -> c_int;
    pub fn xmlGetNoNsProp(node: *const XmlNode, name: *const u8) -> *mut u8;
    pub fn xmlSetProp(node: *mut XmlNode, name: *const u8, value: *const u8) -> *mut c_void;
    pub fn xmlUnsetProp(node: *mut XmlNode, name: *const u8) -> c_int;
    pub fn xmlNodeGetContent(cur: *const XmlNode) -> *mut u8;
    pub fn xmlXPathNewContext(doc: *mut XmlDoc) -> *mut XPathContext;
    pub fn xmlXPathFreeContext(ctxt: *mut XPathContext);
    pub fn xmlXPathRegisterNs(ctxt: *mut XPathContext, prefix: *const u8, uri: *const u8) -> c_int;
    pub fn xmlXPathNodeEval(
        node: *mut XmlNode,
        expr: *const u8,
        ctxt: *mut XPathContext,
    ) -> *mut XPathObject;
    pub fn xmlXPathFreeObject(obj: *mut XPathObject);
}

// The shim (src/shim.c, compiled and linked statically by build.rs).
unsafe extern "C" {
    /// Resolve the shim's own library functions through `resolve`: the
    /// name of the first one missing, or null.
    pub fn axkit_xml_shim_load(resolve: ResolveFn) -> *const c_char;
    pub fn axkit_xml_init(
        text: TextFn,
        decl: EntityDeclFn,
        entity_use: EntityUseFn,
        default_attrs: DefaultAttrsFn,
        pointer: PointerFn,
        loader: EntityLoaderFn,
        doc_loader: DocLoaderFn,
    );
    pub fn axkit_xml_thread_errors(structured: StructuredErrorFn);
    pub fn axkit_xml_filter(ctxt: *mut XmlParserCtxt);
    pub fn axkit_xml_xinclude_pointers(doc: *mut XmlDoc) -> c_int;
    pub fn axkit_xml_xinclude_cost(
        doc: *mut XmlDoc,
        top: *mut XmlNode,
        siblings: c_int,
        own: c_int,
        budget: i64,
        include: IncludeFn,
        data: *mut c_void,
    ) -> i64;
    pub fn axkit_xml_xinclude_target(
        doc: *mut XmlDoc,
        pointer: *const u8,
        budget: i64,
        include: IncludeFn,
        data: *mut c_void,
    ) -> i64;
    pub fn axkit_xml_parse(
        buf: *const c_char,
        len: c_int,
        url: *const c_char,
        options: c_int,
        dict: *mut XmlDict,
    ) -> *mut XmlDoc;
    pub fn axkit_xml_ctxt_depth(ctxt: *mut XmlParserCtxt) -> c_int;
    pub fn axkit_xml_ctxt_file(ctxt: *mut XmlParserCtxt) -> *const c_char;
    pub fn axkit_xml_ctxt_line(ctxt: *mut XmlParserCtxt) -> c_int;
    pub fn axkit_xml_new_input(
        ctxt: *mut XmlParserCtxt,
        bytes: *const c_char,
        len: c_int,
        url: *const c_char,
    ) -> *mut XmlParserInput;
    pub fn axkit_xml_free(p: *mut c_void);
    pub fn axkit_xml_doc_children(doc: *mut XmlDoc) -> *mut XmlNode;
    pub fn axkit_xml_doc_url(doc: *mut XmlDoc) -> *const u8;
    pub fn axkit_xml_doc_is_html(doc: *mut XmlDoc) -> c_int;
    pub fn axkit_xml_node_type(node: *mut XmlNode) -> c_int;
    pub fn axkit_xml_node_line(node: *mut XmlNode) -> c_int;
    pub fn axkit_xml_node_next(node: *mut XmlNode) -> *mut XmlNode;
    pub fn axkit_xml_node_name(node: *mut XmlNode) -> *const u8;
    pub fn axkit_xml_node_content(node: *mut XmlNode) -> *const u8;
    pub fn axkit_xml_node_ns_href(node: *mut XmlNode) -> *const u8;
    pub fn axkit_xslt_errors(style: *mut XsltStylesheet) -> c_int;
    pub fn axkit_xslt_state(ctxt: *mut XsltTransformContext) -> c_int;
    pub fn axkit_xslt_stop(ctxt: *mut XsltTransformContext);
    pub fn axkit_xslt_output(style: *mut XsltStylesheet, which: c_int) -> *const u8;
}
