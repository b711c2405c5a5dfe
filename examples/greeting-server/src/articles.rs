//! `articles`: a Rust plugin that makes a request's XML document itself
//! and hands it to the XML pipeline as a parsed tree, the way a plugin
//! reading a database would: `ctx.document = Document::Tree(…)` holding
//! an `axkit_xml::Document`, which the `xslt` plugin after it transforms
//! without parsing text again.
//!
//! No directives. Hook `xmlresponse`, for `/articles/NAME`:
//! - `?title=T` (default: NAME) gives `<article><title>T</title>
//!   <para>NAME</para></article>`, the text escaped;
//! - NAME `foreign` hands a tree of another kind, which the `xslt`
//!   plugin leaves alone: the core sends its own serialisation at the end
//!   of the chain; NAME `unwritable`, one whose serialisation fails (a
//!   500).
//!
//! ```text
//! <Location /articles>
//!     Plugin articles
//!     Plugin xslt
//!     XSLTStyle style/article.xsl
//! </Location>
//! ```

use std::io;
use std::rc::Rc;
use std::sync::Arc;

use axkit::config::Directive;
use axkit::plugin::{html_escape, Document, Tree};
use axkit::{Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

pub const ARTICLES: PluginSpec = PluginSpec {
    name: "articles",
    directives: Vec::<Directive>::new,
    create,
};

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    // The XML libraries are loaded when a plugin that needs them is made
    // (the binary does not link them).
    axkit_xml::init().map_err(|e| format!("the articles plugin needs {e}"))?;
    Ok(Rc::new(Articles {
        // The tree is made from text this plugin writes: it loads nothing.
        policy: axkit_xml::Policy {
            load: Arc::new(|_| Err(io::Error::from(io::ErrorKind::PermissionDenied))),
            max_size: 1 << 20,
        },
    }))
}

struct Articles {
    policy: axkit_xml::Policy,
}

#[axkit::plugin]
impl Plugin for Articles {
    fn xmlresponse<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(name) = ctx.request.path().strip_prefix("/articles/") else {
            return Outcome::Declined.into();
        };
        if name == "foreign" || name == "unwritable" {
            let text = (name == "foreign").then(|| "<foreign>left alone</foreign>".to_string());
            ctx.document = Some(Document::Tree(Box::new(Foreign(text))));
            return Outcome::Ok.into();
        }
        let title = ctx
            .request
            .param("title")
            .map_or_else(|| name.to_string(), |t| t.into_owned());
        let text = format!(
            "<article><title>{}</title><para>{}</para></article>",
            html_escape(&title),
            html_escape(name)
        );
        match axkit_xml::Document::parse(text.as_bytes(), "articles.xml", &self.policy) {
            Ok(doc) => {
                ctx.document = Some(Document::Tree(Box::new(doc)));
                Outcome::Ok.into()
            }
            Err(e) => Outcome::Error(e.to_string()).into(),
        }
    }
}

/// A tree of a kind only this plugin knows: its text, or none.
struct Foreign(Option<String>);

impl Tree for Foreign {
    fn to_text(&self) -> Result<Vec<u8>, String> {
        self.0
            .clone()
            .map(String::into_bytes)
            .ok_or_else(|| "this tree has no text".to_string())
    }
}
