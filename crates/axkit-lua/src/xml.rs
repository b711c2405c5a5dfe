//! The `xml` global and the DOM objects of scripts: `xml.parse(text)`,
//! `xml.new(root)`, and what `r:dom()` returns, over `axkit_xml::Dom`
//! (docs/lua.md "XML"). A Lua processor of the `xmlresponse` chain gets
//! the chain's document as a DOM, changes it, and hands it on with
//! `r:set_document(dom)` as a parsed tree, never serialised in between.
//!
//! Ownership: a DOM object and its node objects share one
//! `Rc` of a `RefCell<Option<Dom>>`. Handing the document on
//! (`r:set_document(dom)`, or the end of the hook for a tree `r:dom()`
//! took from the chain) moves the `Dom` out and leaves `None`, so any later
//! use of the old objects is a Lua error, and the tree (which may go on
//! to a thread of the XSLT pool) is never reachable from Lua again. While
//! the `Dom` is there, node handles are safe by `axkit_xml::Dom`'s own
//! rules (a node is only dereferenced through the `Dom` that made it,
//! which frees no element while it lives). Lua values never leave the
//! worker's thread.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use axkit::plugin::Document;
use axkit::Context;
use axkit_xml::{Dom, Node, Policy, XmlError};
use bytes::Bytes;
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataMethods, Value};

use crate::request::Slot;

/// The most a parsed document may be, and its entities expand to; also
/// the most a script may add to one document (libxml2's memory, which
/// `LuaMemoryLimit` does not see).
const MAX_DOCUMENT: usize = 64 << 20;

/// What one element, text or attribute added costs besides its bytes
/// (libxml2's node structures, roughly).
const NODE_COST: usize = 128;

/// A DOM and its nodes' shared document (`None` once handed on).
struct Held {
    dom: RefCell<Option<Dom>>,
    /// What the script added so far (see `grow`).
    added: Cell<usize>,
}

type Shared = Rc<Held>;

/// A document (what `xml.parse`, `xml.new` and `r:dom()` return).
pub(crate) struct LuaDom(Shared);

/// An element of a document.
struct LuaNode {
    dom: Shared,
    node: Node,
}

/// Run `f` on the document of `dom`, its errors as Lua errors named after
/// the method.
fn with<R>(
    dom: &Shared,
    method: &str,
    f: impl FnOnce(&mut Dom) -> Result<R, XmlError>,
) -> mlua::Result<R> {
    // Nothing here calls back into Lua while the borrow is held.
    let mut cell = dom
        .dom
        .try_borrow_mut()
        .map_err(|_| mlua::Error::runtime(format!("{method}: the document is in use")))?;
    let dom = cell.as_mut().ok_or_else(|| {
        mlua::Error::runtime(format!(
            "{method}: the document was handed on (r:set_document, or the end of the hook \
             that took it with r:dom()): this DOM and its nodes can no longer be used"
        ))
    })?;
    f(dom).map_err(|e| mlua::Error::runtime(format!("{method}: {e}")))
}

/// Count `bytes` more added to the document by the script: an error past
/// `MAX_DOCUMENT`, so a loop cannot grow a tree without bound.
fn grow(dom: &Shared, method: &str, bytes: usize) -> mlua::Result<()> {
    let added = dom.added.get().saturating_add(NODE_COST + bytes);
    if added > MAX_DOCUMENT {
        return Err(mlua::Error::runtime(format!(
            "{method}: more than {} MiB added to one document",
            MAX_DOCUMENT >> 20
        )));
    }
    dom.added.set(added);
    Ok(())
}

fn nodes(lua: &Lua, dom: &Shared, list: Vec<Node>) -> mlua::Result<Table> {
    lua.create_sequence_from(list.into_iter().map(|node| LuaNode {
        dom: dom.clone(),
        node,
    }))
}

/// The `{prefix = uri}` table of `find`.
fn namespaces(ns: Option<Table>) -> mlua::Result<Vec<(String, String)>> {
    let Some(ns) = ns else {
        return Ok(Vec::new());
    };
    ns.pairs::<String, String>().collect()
}

impl UserData for LuaDom {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("root", |_, d, ()| {
            let root = with(&d.0, "dom:root", |dom| Ok(dom.root()))?;
            Ok(root.map(|node| LuaNode {
                dom: d.0.clone(),
                node,
            }))
        });
        m.add_method("find", |lua, d, (expr, ns): (String, Option<Table>)| {
            let ns = namespaces(ns)?;
            let found = with(&d.0, "dom:find", |dom| dom.find(None, &expr, &ns))?;
            nodes(lua, &d.0, found)
        });
        m.add_method("to_string", |lua, d, ()| {
            let text = with(&d.0, "dom:to_string", |dom| Ok(dom.document().to_xml()))?;
            lua.create_string(text)
        });
    }
}

impl UserData for LuaNode {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("name", |_, n, ()| {
            with(&n.dom, "node:name", |dom| dom.name(n.node))
        });
        m.add_method("attr", |_, n, name: String| {
            with(&n.dom, "node:attr", |dom| dom.attr(n.node, &name))
        });
        m.add_method(
            "set_attr",
            |_, n, (name, value): (String, Option<String>)| {
                let len = name.len() + value.as_ref().map_or(0, String::len);
                grow(&n.dom, "node:set_attr", len)?;
                with(&n.dom, "node:set_attr", |dom| {
                    dom.set_attr(n.node, &name, value.as_deref())
                })
            },
        );
        m.add_method("text", |_, n, ()| {
            with(&n.dom, "node:text", |dom| dom.text(n.node))
        });
        m.add_method("set_text", |_, n, text: String| {
            grow(&n.dom, "node:set_text", text.len())?;
            with(&n.dom, "node:set_text", |dom| dom.set_text(n.node, &text))
        });
        m.add_method("children", |lua, n, ()| {
            let list = with(&n.dom, "node:children", |dom| dom.children(n.node))?;
            nodes(lua, &n.dom, list)
        });
        m.add_method("append", |_, n, (name, text): (String, Option<String>)| {
            let len = name.len() + text.as_ref().map_or(0, String::len);
            grow(&n.dom, "node:append", len)?;
            let node = with(&n.dom, "node:append", |dom| {
                dom.append(n.node, &name, text.as_deref())
            })?;
            Ok(LuaNode {
                dom: n.dom.clone(),
                node,
            })
        });
        m.add_method("remove", |_, n, ()| {
            with(&n.dom, "node:remove", |dom| dom.remove(n.node))
        });
        m.add_method("find", |lua, n, (expr, ns): (String, Option<Table>)| {
            let ns = namespaces(ns)?;
            let found = with(&n.dom, "node:find", |dom| {
                dom.find(Some(n.node), &expr, &ns)
            })?;
            nodes(lua, &n.dom, found)
        });
        m.add_meta_method(MetaMethod::Eq, |_, n, other: AnyUserData| {
            Ok(other.borrow::<LuaNode>().is_ok_and(|o| o.node == n.node))
        });
    }
}

fn new_dom(lua: &Lua, dom: Dom) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LuaDom(Rc::new(Held {
        dom: RefCell::new(Some(dom)),
        added: Cell::new(0),
    })))
}

/// Parse `bytes` as the pipeline does (no network, no external
/// entities, entity expansion bounded, nothing loaded: XIncludes stay).
fn parse(bytes: &[u8], url: &str) -> Result<Dom, XmlError> {
    let policy = Policy {
        load: Arc::new(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "a script's document loads nothing",
            ))
        }),
        max_size: MAX_DOCUMENT,
    };
    axkit_xml::Document::parse(bytes, url, &policy).map(Dom::from)
}

/// Install `xml` into the scripts' base environment.
pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    let xml = lua.create_table()?;
    xml.raw_set(
        "parse",
        lua.create_function(|lua, text: mlua::LuaString| {
            let dom = parse(&text.as_bytes(), "xml.parse")
                .map_err(|e| mlua::Error::runtime(format!("xml.parse: {e}")))?;
            new_dom(lua, dom)
        })?,
    )?;
    xml.raw_set(
        "new",
        lua.create_function(|lua, root: String| {
            let dom = Dom::new(&root).map_err(|e| mlua::Error::runtime(format!("xml.new: {e}")))?;
            new_dom(lua, dom)
        })?,
    )?;
    base.raw_set("xml", xml)
}

/// `r:dom()`: the chain's document as a DOM. Text is parsed (the text
/// stays the chain's document until `r:set_document`); an
/// `axkit_xml::Document` tree is taken as it is, and goes back to the
/// chain at the end of the hook unless the script set another document.
pub(crate) fn request_dom(lua: &Lua, slot: &Slot, c: &mut Context) -> mlua::Result<Value> {
    if c.document.is_none() {
        if let Some(lent) = slot.dom.borrow().as_ref() {
            let held = lent.borrow::<LuaDom>()?.0.dom.borrow().is_some();
            if held {
                return Ok(Value::UserData(lent.clone()));
            }
        }
    }
    match c.document.take() {
        None => Ok(Value::Nil),
        Some(Document::Text(text)) => {
            let url = c.filename.as_ref().map_or_else(
                || c.request.decoded_path().to_string(),
                |p| p.display().to_string(),
            );
            let parsed = parse(&text, &url);
            c.document = Some(Document::Text(text));
            let dom = parsed.map_err(|e| mlua::Error::runtime(format!("r:dom: {e}")))?;
            Ok(Value::UserData(new_dom(lua, dom)?))
        }
        Some(Document::Tree(tree)) => match tree.downcast::<axkit_xml::Document>() {
            Ok(doc) => {
                let ud = new_dom(lua, Dom::from(*doc))?;
                *slot.dom.borrow_mut() = Some(ud.clone());
                Ok(Value::UserData(ud))
            }
            Err(other) => {
                c.document = Some(Document::Tree(other));
                Err(mlua::Error::runtime(
                    "r:dom: the document is a tree of a kind scripts cannot read",
                ))
            }
        },
    }
}

/// `r:document()`: the chain's document as text (a tree serialised).
pub(crate) fn request_text(lua: &Lua, c: &Context) -> mlua::Result<Value> {
    match &c.document {
        None => Ok(Value::Nil),
        Some(Document::Text(text)) => Ok(Value::String(lua.create_string(text)?)),
        Some(Document::Tree(tree)) => match tree.downcast_ref::<axkit_xml::Document>() {
            Some(doc) => Ok(Value::String(lua.create_string(doc.to_xml())?)),
            None => Err(mlua::Error::runtime(
                "r:document: the document is a tree of a kind scripts cannot read",
            )),
        },
    }
}

/// `r:set_document(text | dom)`: text as it is, a DOM as a parsed tree
/// (moved out of the DOM, whose objects can no longer be used).
pub(crate) fn set_document(c: &mut Context, value: Value) -> mlua::Result<()> {
    let doc = match value {
        Value::String(s) => Document::Text(Bytes::copy_from_slice(&s.as_bytes())),
        Value::UserData(ud) if ud.is::<LuaDom>() => {
            let dom = ud.borrow::<LuaDom>()?;
            let taken = dom
                .0
                .dom
                .try_borrow_mut()
                .map_err(|_| mlua::Error::runtime("r:set_document: the document is in use"))?
                .take()
                .ok_or_else(|| {
                    mlua::Error::runtime("r:set_document: that DOM was already handed on")
                })?;
            Document::Tree(Box::new(taken.into_document()))
        }
        _ => {
            return Err(mlua::Error::runtime(
                "r:set_document: expected XML text or a DOM",
            ))
        }
    };
    c.document = Some(doc);
    Ok(())
}

/// The end of a hook: a tree `r:dom()` took from the chain goes back to
/// it, unless the script set another document.
pub(crate) fn give_back(slot: &Slot, c: &mut Context) {
    let Some(lent) = slot.dom.borrow_mut().take() else {
        return;
    };
    if c.document.is_some() {
        return;
    }
    let Ok(dom) = lent.borrow::<LuaDom>() else {
        return;
    };
    let taken = dom.0.dom.try_borrow_mut().ok().and_then(|mut d| d.take());
    if let Some(dom) = taken {
        c.document = Some(Document::Tree(Box::new(dom.into_document())));
    }
}
