/*
 * The C side of axkit-xml: what stable Rust cannot write (the variadic
 * printf-style error callbacks of libxml2 and libxslt) and the struct
 * fields the Rust side reads, taken from the libraries' own headers so
 * that no layout is copied by hand. Every decision (what may be loaded,
 * which entity is allowed, how errors are collected) is made in Rust,
 * through the callbacks handed to axkit_xml_init.
 *
 * The libraries are loaded at run time (src/dl.rs), so nothing here may
 * refer to their symbols at link time: the headers give the types, and
 * every library function or variable used is called through `lib`, a
 * table filled by axkit_xml_shim_load from the Rust side's resolver. The
 * shim resolves its own rather than being handed pointers from Rust so
 * that each one's type comes from the library's header (checked by the
 * compiler) and adding one is one line in AXKIT_LIBRARY below.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <libxml/xmlIO.h>
#include <libxml/xmlerror.h>
#include <libxml/entities.h>
#include <libxml/xinclude.h>
#include <libxml/xpointer.h>
#include <libxml/uri.h>
#include <libxslt/xslt.h>
#include <libxslt/xsltInternals.h>
#include <libxslt/xsltutils.h>
#include <libxslt/security.h>
#include <libxslt/documents.h>
#include <libxslt/imports.h>
#include <libexslt/exslt.h>

/* Every library function (or variable: xmlFree) the shim uses. */
#define AXKIT_LIBRARY(X) \
    X(xmlStopParser) \
    X(xmlSAX2EntityDecl) \
    X(xmlSAX2GetEntity) \
    X(xmlSAX2StartElementNs) \
    X(xmlInitParser) \
    X(xsltInit) \
    X(exsltRegisterAll) \
    X(xsltSetGenericErrorFunc) \
    X(xmlSetExternalEntityLoader) \
    X(xsltSetLoaderFunc) \
    X(xsltNewSecurityPrefs) \
    X(xsltSetSecurityPrefs) \
    X(xsltSecurityForbid) \
    X(xsltSetDefaultSecurityPrefs) \
    X(xmlSetGenericErrorFunc) \
    X(xmlSetStructuredErrorFunc) \
    X(xmlNewParserCtxt) \
    X(xmlDictFree) \
    X(xmlDictReference) \
    X(xmlCtxtReadMemory) \
    X(xmlFreeParserCtxt) \
    X(xmlParserInputBufferCreateIO) \
    X(xmlNewIOInputStream) \
    X(xmlFreeParserInputBuffer) \
    X(xmlStrdup) \
    X(xmlFree) \
    X(xmlGetNoNsProp) \
    X(xmlGetNsProp) \
    X(xmlNodeGetBase) \
    X(xmlBuildURI) \
    X(xmlURIEscape) \
    X(xmlXPtrNewContext) \
    X(xmlXPtrEval) \
    X(xmlXPathFreeObject) \
    X(xmlXPathFreeContext) \
    X(xsltNextImport)

/* A pointer to each, of the type its header declares. */
#define AXKIT_FIELD(name) __typeof__(name) *name;
static struct {
    AXKIT_LIBRARY(AXKIT_FIELD)
} lib;

typedef void *(*axkit_resolve_fn)(const char *name);

/* Fill `lib` (once, before any other call): the name of the first
 * symbol `resolve` does not find, or NULL. */
const char *axkit_xml_shim_load(axkit_resolve_fn resolve) {
#define AXKIT_RESOLVE(name) \
    if ((lib.name = resolve(#name)) == NULL) \
        return #name;
    AXKIT_LIBRARY(AXKIT_RESOLVE)
#undef AXKIT_RESOLVE
    return NULL;
}

/* Formatted error text, appended to the calling thread's collector. */
typedef void (*axkit_text_fn)(const char *text, size_t len);
/* Whether an entity declaration may stand (1) or stops the parse (0). */
typedef int (*axkit_entity_decl_fn)(xmlParserCtxtPtr ctxt, const xmlChar *name, int type,
                                    const xmlChar *system_id, const xmlChar *content);
/* Whether expanding `len` more bytes of entity text stays in bounds. */
typedef int (*axkit_entity_use_fn)(xmlParserCtxtPtr ctxt, const xmlChar *name, int len);
/* Whether `count` attributes of `bytes` in all, which the DTD adds to an
 * element `name`, stay in bounds. */
typedef int (*axkit_default_attrs_fn)(xmlParserCtxtPtr ctxt, const xmlChar *name, int count,
                                      size_t bytes);
/* Whether an XInclude element's pointer (`len` bytes of its `xpointer`
 * attribute, or of its `href`, kind 0 or 1) may be resolved; `file` and
 * `line` say where the element is. */
typedef int (*axkit_pointer_fn)(const char *file, int line, int kind, const xmlChar *value,
                                int len);

static axkit_text_fn text_fn;
static axkit_entity_decl_fn entity_decl_fn;
static axkit_entity_use_fn entity_use_fn;
static axkit_default_attrs_fn default_attrs_fn;
static axkit_pointer_fn pointer_fn;

/* The generic error channel of both libraries: format, hand to Rust. */
static void axkit_generic_error(void *ctx, const char *msg, ...) {
    char stack[1024];
    va_list ap;
    int n;
    (void) ctx;
    va_start(ap, msg);
    n = vsnprintf(stack, sizeof stack, msg, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t) n < sizeof stack) {
        text_fn(stack, (size_t) n);
        return;
    }
    {
        char *heap = malloc((size_t) n + 1);
        if (heap == NULL) {
            text_fn(stack, sizeof stack - 1);
            return;
        }
        va_start(ap, msg);
        vsnprintf(heap, (size_t) n + 1, msg, ap);
        va_end(ap);
        text_fn(heap, (size_t) n);
        free(heap);
    }
}

/* Ends a parse the policy refused: stopped, and not well-formed, so that
 * whoever called the parser (libxml2's XInclude, libxslt) drops the tree. */
static void axkit_refuse(xmlParserCtxtPtr ctxt) {
    lib.xmlStopParser(ctxt);
    ctxt->wellFormed = 0;
}

static void axkit_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
                              const xmlChar *system_id, xmlChar *content) {
    xmlParserCtxtPtr ctxt = (xmlParserCtxtPtr) ctx;
    if (!entity_decl_fn(ctxt, name, type, system_id, content)) {
        axkit_refuse(ctxt);
        return;
    }
    lib.xmlSAX2EntityDecl(ctx, name, type, public_id, system_id, content);
}

/* Uses inside the internal subset count too: an ATTLIST default value
 * expands its references there, once, and each element then copies it. */
static xmlEntityPtr axkit_get_entity(void *ctx, const xmlChar *name) {
    xmlParserCtxtPtr ctxt = (xmlParserCtxtPtr) ctx;
    xmlEntityPtr ent = lib.xmlSAX2GetEntity(ctx, name);
    if ((ent != NULL) && (ent->etype == XML_INTERNAL_GENERAL_ENTITY) &&
        !entity_use_fn(ctxt, name, ent->length)) {
        axkit_refuse(ctxt);
        return NULL;
    }
    return ent;
}

/* Either namespace libxml2 processes XInclude in. */
static int axkit_xinclude_ns(const xmlChar *uri) {
    return (uri != NULL) && ((strcmp((const char *) uri, (const char *) XINCLUDE_NS) == 0) ||
                             (strcmp((const char *) uri, (const char *) XINCLUDE_OLD_NS) == 0));
}

/* An XInclude element. */
static int axkit_is_xinclude(const xmlChar *localname, const xmlChar *uri) {
    return axkit_xinclude_ns(uri) &&
           (strcmp((const char *) localname, (const char *) XINCLUDE_NODE) == 0);
}

/* Which pointer-bearing attribute `name` in namespace `uri` is: 0
 * xpointer, 1 href (its fragment is the pointer in the 2001 namespace), -1
 * neither. libxml2 reads them in no namespace and in the XInclude ones
 * (`xi:xpointer`). */
static int axkit_pointer_kind(const xmlChar *name, const xmlChar *uri) {
    if ((uri != NULL) && !axkit_xinclude_ns(uri))
        return -1;
    if (strcmp((const char *) name, (const char *) XINCLUDE_PARSE_XPOINTER) == 0)
        return 0;
    if (strcmp((const char *) name, (const char *) XINCLUDE_HREF) == 0)
        return 1;
    return -1;
}

/* The attributes the DTD defaults (the last nb_defaulted, when the parse
 * completes attributes) are copied onto every element that lacks them: a
 * large default on many small elements is entity expansion by another
 * name, and is counted against the same bound. */
static void axkit_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                                const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                                int nb_attributes, int nb_defaulted, const xmlChar **attributes) {
    xmlParserCtxtPtr ctxt = (xmlParserCtxtPtr) ctx;
    int i;
    /* A document XInclude loads is only in the tree once this returns:
     * its pointers are checked as it is parsed (Rust decides whether an
     * XInclude is under way). */
    if (axkit_is_xinclude(localname, uri)) {
        for (i = 0; i < nb_attributes; i++) {
            int kind = axkit_pointer_kind(attributes[i * 5], attributes[i * 5 + 2]);
            if ((kind >= 0) &&
                !pointer_fn(ctxt->input == NULL ? NULL : ctxt->input->filename,
                            ctxt->input == NULL ? 0 : ctxt->input->line, kind,
                            attributes[i * 5 + 3],
                            (int) (attributes[i * 5 + 4] - attributes[i * 5 + 3]))) {
                axkit_refuse(ctxt);
                return;
            }
        }
    }
    if ((nb_defaulted > 0) && (ctxt->loadsubset & XML_COMPLETE_ATTRS)) {
        size_t bytes = 0;
        /* Five pointers each: local name, prefix, URI, value, value end. */
        for (i = nb_attributes - nb_defaulted; i < nb_attributes; i++)
            bytes += (size_t) (attributes[i * 5 + 4] - attributes[i * 5 + 3]);
        if (!default_attrs_fn(ctxt, localname, nb_defaulted, bytes)) {
            axkit_refuse(ctxt);
            return;
        }
    }
    lib.xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces,
                              nb_attributes, nb_defaulted, attributes);
}

/* Every parser the engine runs (its own, XInclude's) declares and expands
 * entities, and defaults attributes, through these checks. */
void axkit_xml_filter(xmlParserCtxtPtr ctxt) {
    ctxt->sax->entityDecl = axkit_entity_decl;
    ctxt->sax->getEntity = axkit_get_entity;
    ctxt->sax->startElementNs = axkit_start_element;
}

void axkit_xml_init(axkit_text_fn text, axkit_entity_decl_fn decl, axkit_entity_use_fn use,
                    axkit_default_attrs_fn attrs, axkit_pointer_fn pointer,
                    xmlExternalEntityLoader loader, xsltDocLoaderFunc doc_loader) {
    xsltSecurityPrefsPtr sec;

    text_fn = text;
    entity_decl_fn = decl;
    entity_use_fn = use;
    default_attrs_fn = attrs;
    pointer_fn = pointer;
    lib.xmlInitParser();
    lib.xsltInit();
    lib.exsltRegisterAll();
    /* Process-wide in libxslt: one function for every thread, which hands
     * the text to the calling thread's collector. */
    lib.xsltSetGenericErrorFunc(NULL, axkit_generic_error);
    lib.xmlSetExternalEntityLoader(loader);
    lib.xsltSetLoaderFunc(doc_loader);
    /* Reads are checked by the loaders (files through the policy, nothing
     * else); a stylesheet writes nothing anywhere. */
    sec = lib.xsltNewSecurityPrefs();
    lib.xsltSetSecurityPrefs(sec, XSLT_SECPREF_WRITE_FILE, lib.xsltSecurityForbid);
    lib.xsltSetSecurityPrefs(sec, XSLT_SECPREF_CREATE_DIRECTORY, lib.xsltSecurityForbid);
    lib.xsltSetSecurityPrefs(sec, XSLT_SECPREF_WRITE_NETWORK, lib.xsltSecurityForbid);
    lib.xsltSetSecurityPrefs(sec, XSLT_SECPREF_READ_NETWORK, lib.xsltSecurityForbid);
    lib.xsltSetDefaultSecurityPrefs(sec);
}

/* libxml2's error handlers are per thread: set on each call. */
void axkit_xml_thread_errors(xmlStructuredErrorFunc structured) {
    lib.xmlSetGenericErrorFunc(NULL, axkit_generic_error);
    lib.xmlSetStructuredErrorFunc(NULL, structured);
}

/* Parse `len` bytes named `url` with `options`, sharing `dict` when given
 * (as libxslt's own loader does for stylesheets and documents). */
xmlDocPtr axkit_xml_parse(const char *buf, int len, const char *url, int options, xmlDictPtr dict) {
    xmlDocPtr doc;
    xmlParserCtxtPtr ctxt = lib.xmlNewParserCtxt();
    if (ctxt == NULL)
        return NULL;
    if (dict != NULL) {
        if (ctxt->dict != NULL)
            lib.xmlDictFree(ctxt->dict);
        ctxt->dict = dict;
        lib.xmlDictReference(dict);
    }
    axkit_xml_filter(ctxt);
    doc = lib.xmlCtxtReadMemory(ctxt, buf, len, url, NULL, options);
    lib.xmlFreeParserCtxt(ctxt);
    return doc;
}

/* Whether every XInclude element of an already parsed `doc` has pointers
 * `pointer_fn` allows (1), else 0, the refusal recorded by it. */
int axkit_xml_xinclude_pointers(xmlDocPtr doc) {
    xmlNodePtr node = doc->children;
    while (node != NULL) {
        if ((node->type == XML_ELEMENT_NODE) &&
            axkit_is_xinclude(node->name, node->ns == NULL ? NULL : node->ns->href)) {
            xmlAttrPtr attr;
            for (attr = node->properties; attr != NULL; attr = attr->next) {
                int kind = axkit_pointer_kind(attr->name, attr->ns == NULL ? NULL : attr->ns->href);
                /* A parsed attribute's value is one text node, or none
                 * when empty; anything else goes as NULL (refused). */
                xmlNodePtr text = attr->children;
                const xmlChar *value = (const xmlChar *) "";
                if (kind < 0)
                    continue;
                if ((text != NULL) && ((text->type != XML_TEXT_NODE) || (text->next != NULL)))
                    value = NULL;
                else if (text != NULL)
                    value = text->content;
                if (!pointer_fn((const char *) doc->URL, node->line, kind, value,
                                value == NULL ? 0 : (int) strlen((const char *) value)))
                    return 0;
            }
        }
        /* Depth first, without recursion (a document may nest deep). */
        if ((node->type == XML_ELEMENT_NODE) && (node->children != NULL)) {
            node = node->children;
            continue;
        }
        while ((node != NULL) && (node->next == NULL))
            node = node->parent == (xmlNodePtr) doc ? NULL : node->parent;
        if (node != NULL)
            node = node->next;
    }
    return 1;
}

/* What one XInclude element adds to its document once processed
 * (axkit_xml_xinclude_cost): `url` is its href resolved against its base
 * (NULL for the document itself, or when it cannot be resolved),
 * `pointer` its xpointer attribute (NULL when none), `text` whether
 * parse="text". The answer is a cost, -1 to stop (past the budget), or -2
 * when what it names is not there (its fallback is counted instead). */
typedef long long (*axkit_include_fn)(void *data, xmlDocPtr doc, xmlNodePtr node,
                                      const xmlChar *url, const xmlChar *pointer, int text,
                                      long long budget);

/* What a node costs in a tree, about what libxml2 allocates for it: a
 * node, and its name or text. */
#define AXKIT_NODE_COST 100

static long long axkit_own_cost(xmlNodePtr node) {
    long long cost = AXKIT_NODE_COST;
    xmlAttrPtr attr;
    if (node->type != XML_ELEMENT_NODE)
        return cost + (node->content == NULL ? 0 : (long long) strlen((const char *) node->content));
    cost += (long long) strlen((const char *) node->name);
    for (attr = node->properties; attr != NULL; attr = attr->next) {
        xmlNodePtr text;
        cost += AXKIT_NODE_COST;
        for (text = attr->children; text != NULL; text = text->next)
            cost += axkit_own_cost(text);
    }
    return cost;
}

/* An attribute of an XInclude element as libxml2 reads it: in either
 * XInclude namespace first, else in none. */
static xmlChar *axkit_xinclude_prop(xmlNodePtr node, const xmlChar *name) {
    xmlChar *value = lib.xmlGetNsProp(node, name, XINCLUDE_NS);
    if (value == NULL)
        value = lib.xmlGetNsProp(node, name, XINCLUDE_OLD_NS);
    if (value == NULL)
        value = lib.xmlGetNoNsProp(node, name);
    return value;
}

/* `href` resolved against `base` (else the document's URL), escaping
 * both when they are no URIs as they are, as libxml2 does. */
static xmlChar *axkit_include_url(xmlDocPtr doc, const xmlChar *href, const xmlChar *base) {
    xmlChar *url = lib.xmlBuildURI(href, base == NULL ? doc->URL : base);
    if (url == NULL) {
        xmlChar *escaped_base = lib.xmlURIEscape(base);
        xmlChar *escaped_href = lib.xmlURIEscape(href);
        url = lib.xmlBuildURI(escaped_href, escaped_base);
        (*lib.xmlFree)(escaped_base);
        (*lib.xmlFree)(escaped_href);
    }
    return url;
}

static long long axkit_include_cost(xmlDocPtr doc, xmlNodePtr node, long long budget,
                                    axkit_include_fn include, void *data) {
    xmlChar *href = axkit_xinclude_prop(node, XINCLUDE_HREF);
    xmlChar *parse = axkit_xinclude_prop(node, XINCLUDE_PARSE);
    xmlChar *pointer = axkit_xinclude_prop(node, XINCLUDE_PARSE_XPOINTER);
    xmlChar *base = lib.xmlNodeGetBase(doc, node);
    /* A reference to the document itself (libxml2's test): no URL. */
    int local = (href == NULL) || (href[0] == 0) || (href[0] == '#');
    xmlChar *url = local ? NULL : axkit_include_url(doc, href, base);
    int text = (parse != NULL) && (strcmp((const char *) parse, "text") == 0);
    long long cost = include(data, doc, node, url, pointer, text, budget);
    (*lib.xmlFree)(href);
    (*lib.xmlFree)(parse);
    (*lib.xmlFree)(pointer);
    (*lib.xmlFree)(base);
    (*lib.xmlFree)(url);
    return cost;
}

/* The size of the subtree at `top` (with its following siblings when
 * `siblings`) once its XIncludes are processed, each include costing what
 * `include` says: libxml2 copies what an include names, already
 * expanded, so nested includes multiply (10 of a file that includes 10 of
 * another...). Its own nodes count when `own` (not those of a document
 * already parsed, only what its includes add). -1 once past `budget`, or
 * when `include` says stop. */
long long axkit_xml_xinclude_cost(xmlDocPtr doc, xmlNodePtr top, int siblings, int own,
                                  long long budget, axkit_include_fn include, void *data) {
    long long cost = 0;
    xmlNodePtr node = top;
    while (node != NULL) {
        int descend = (node->type == XML_ELEMENT_NODE) && (node->children != NULL);
        if ((node->type == XML_ELEMENT_NODE) &&
            axkit_is_xinclude(node->name, node->ns == NULL ? NULL : node->ns->href)) {
            long long inc = axkit_include_cost(doc, node, budget - cost, include, data);
            if (inc == -1)
                return -1;
            /* Not there: the fallback, inside the element, is what stays. */
            if (inc >= 0) {
                cost += inc;
                descend = 0;
            }
        } else if (own && (node->type != XML_DTD_NODE)) {
            cost += axkit_own_cost(node);
        }
        if (cost > budget)
            return -1;
        /* Depth first, without recursion (a document may nest deep). */
        if (descend) {
            node = node->children;
            continue;
        }
        while ((node != top) && (node->next == NULL))
            node = node->parent;
        if (node != top)
            node = node->next;
        else if (siblings)
            top = node = node->next;
        else
            break;
    }
    return cost;
}

/* The cost of what a plain `pointer` (an ID, element(): checked before)
 * selects in `doc`, as axkit_xml_xinclude_cost counts it; -2 when it
 * selects nothing. */
long long axkit_xml_xinclude_target(xmlDocPtr doc, const xmlChar *pointer, long long budget,
                                    axkit_include_fn include, void *data) {
    long long cost = -2;
    xmlXPathContextPtr ctxt = lib.xmlXPtrNewContext(doc, NULL, NULL);
    xmlXPathObjectPtr obj;
    int i;
    if (ctxt == NULL)
        return -2;
    obj = lib.xmlXPtrEval(pointer, ctxt);
    if ((obj != NULL) && (obj->type == XPATH_NODESET) && (obj->nodesetval != NULL)) {
        for (i = 0; i < obj->nodesetval->nodeNr; i++) {
            long long one = axkit_xml_xinclude_cost(doc, obj->nodesetval->nodeTab[i], 0, 1,
                                                    budget - (cost < 0 ? 0 : cost), include, data);
            if (one == -1) {
                cost = -1;
                break;
            }
            cost = (cost < 0 ? 0 : cost) + one;
        }
    }
    if (obj != NULL)
        lib.xmlXPathFreeObject(obj);
    lib.xmlXPathFreeContext(ctxt);
    return cost;
}

/* How many inputs the parser has open: 0 when a load starts a document
 * (XInclude), more when it is an entity or DTD inside one. */
int axkit_xml_ctxt_depth(xmlParserCtxtPtr ctxt) {
    return ctxt == NULL ? 0 : ctxt->inputNr;
}

const char *axkit_xml_ctxt_file(xmlParserCtxtPtr ctxt) {
    if ((ctxt == NULL) || (ctxt->input == NULL))
        return NULL;
    return ctxt->input->filename;
}

int axkit_xml_ctxt_line(xmlParserCtxtPtr ctxt) {
    if ((ctxt == NULL) || (ctxt->input == NULL))
        return 0;
    return ctxt->input->line;
}

/* A copy of a loaded file, read through libxml2's I/O callbacks: an
 * input made with xmlParserInputBufferCreateMem has no read callback, and
 * XInclude's text inclusion reads through that callback only. */
struct axkit_mem {
    char *data;
    size_t len;
    size_t pos;
};

static int axkit_mem_read(void *ctx, char *buf, int len) {
    struct axkit_mem *m = ctx;
    size_t n = m->len - m->pos;
    if (len < 0)
        return -1;
    if (n > (size_t) len)
        n = (size_t) len;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (int) n;
}

static int axkit_mem_close(void *ctx) {
    struct axkit_mem *m = ctx;
    free(m->data);
    free(m);
    return 0;
}

/* An input over a copy of `len` bytes, named `url` (its base for
 * relative references, and the file its errors name). */
xmlParserInputPtr axkit_xml_new_input(xmlParserCtxtPtr ctxt, const char *bytes, int len,
                                      const char *url) {
    xmlParserInputPtr input;
    xmlParserInputBufferPtr buf;
    struct axkit_mem *m = malloc(sizeof *m);
    if (m == NULL)
        return NULL;
    m->data = malloc(len > 0 ? (size_t) len : 1);
    if (m->data == NULL) {
        free(m);
        return NULL;
    }
    memcpy(m->data, bytes, (size_t) len);
    m->len = (size_t) len;
    m->pos = 0;
    buf = lib.xmlParserInputBufferCreateIO(axkit_mem_read, axkit_mem_close, m, XML_CHAR_ENCODING_NONE);
    if (buf == NULL) {
        axkit_mem_close(m);
        return NULL;
    }
    input = lib.xmlNewIOInputStream(ctxt, buf, XML_CHAR_ENCODING_NONE);
    if (input == NULL) {
        /* Closes through axkit_mem_close. */
        lib.xmlFreeParserInputBuffer(buf);
        return NULL;
    }
    input->filename = (char *) lib.xmlStrdup((const xmlChar *) url);
    return input;
}

void axkit_xml_free(void *p) {
    (*lib.xmlFree)(p);
}

xmlNodePtr axkit_xml_doc_children(xmlDocPtr doc) {
    return doc->children;
}

const xmlChar *axkit_xml_doc_url(xmlDocPtr doc) {
    return doc->URL;
}

int axkit_xml_doc_is_html(xmlDocPtr doc) {
    return doc->type == XML_HTML_DOCUMENT_NODE;
}

int axkit_xml_node_type(xmlNodePtr node) {
    return node->type;
}

int axkit_xml_node_line(xmlNodePtr node) {
    return node->line;
}

xmlNodePtr axkit_xml_node_next(xmlNodePtr node) {
    return node->next;
}

const xmlChar *axkit_xml_node_name(xmlNodePtr node) {
    return node->name;
}

const xmlChar *axkit_xml_node_content(xmlNodePtr node) {
    return node->content;
}

const xmlChar *axkit_xml_node_ns_href(xmlNodePtr node) {
    return node->ns == NULL ? NULL : node->ns->href;
}

int axkit_xslt_errors(xsltStylesheetPtr style) {
    return style->errors;
}

int axkit_xslt_state(xsltTransformContextPtr ctxt) {
    return ctxt->state;
}

/* Stop a transform running on another thread (deadline.rs): libxslt
 * leaves each sequence of instructions it is in once the state says
 * stopped, and libxml2 ends the XPath evaluation under way at its next
 * step once past the operation limit, 1 here (0 is none). Stored
 * atomically; the transform reads each at its next check. */
void axkit_xslt_stop(xsltTransformContextPtr ctxt) {
    __atomic_store_n(&ctxt->state, XSLT_STATE_STOPPED, __ATOMIC_SEQ_CST);
    if (ctxt->xpathCtxt != NULL)
        __atomic_store_n(&ctxt->xpathCtxt->opLimit, 1UL, __ATOMIC_SEQ_CST);
}

/* libxslt's XSLT_GET_IMPORT_PTR, through `lib`. */
#define AXKIT_IMPORT_PTR(res, style, name) \
    do { \
        xsltStylesheetPtr st = (style); \
        for ((res) = NULL; st != NULL; st = lib.xsltNextImport(st)) { \
            if (st->name != NULL) { \
                (res) = st->name; \
                break; \
            } \
        } \
    } while (0)

/* The xsl:output attributes in force (through imports, as the
 * serialiser finds them): 0 method, 1 media-type, 2 encoding. */
const xmlChar *axkit_xslt_output(xsltStylesheetPtr style, int which) {
    const xmlChar *res = NULL;
    switch (which) {
    case 0:
        AXKIT_IMPORT_PTR(res, style, method);
        break;
    case 1:
        AXKIT_IMPORT_PTR(res, style, mediaType);
        break;
    default:
        AXKIT_IMPORT_PTR(res, style, encoding);
        break;
    }
    return res;
}

/* ---- The DOM of dom.rs: tree links and XPath results ------------------- */

#include <libxml/xpath.h>

xmlNodePtr axkit_dom_children(xmlNodePtr node) {
    return node->children;
}

xmlNodePtr axkit_dom_parent(xmlNodePtr node) {
    return node->parent;
}

xmlNsPtr axkit_dom_ns(xmlNodePtr node) {
    return node->ns;
}

/* Bound the work of one evaluation: past `limit` operations it stops with
 * an error (XPATH_OP_LIMIT_EXCEEDED) instead of running on. */
void axkit_dom_xpath_limit(xmlXPathContextPtr ctxt, unsigned long limit) {
    ctxt->opLimit = limit;
    ctxt->opCount = 0;
}

/* The nodes of a node-set result and their number in *count (0 for an
 * empty set), or NULL and -1 when the result is not a node-set. */
xmlNodePtr *axkit_dom_nodes(xmlXPathObjectPtr obj, int *count) {
    if (obj->type != XPATH_NODESET) {
        *count = -1;
        return NULL;
    }
    if (obj->nodesetval == NULL) {
        *count = 0;
        return NULL;
    }
    *count = obj->nodesetval->nodeNr;
    return obj->nodesetval->nodeTab;
}
