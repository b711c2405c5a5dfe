//! `fast_mime_map`: sets Content-Type from the file name's extension
//! (hook `mime_map`), from a built-in table plus `MimeType` lines.
//!
//! Directives:
//! - `MimeType EXT TYPE` (repeatable, any scope): map an extension (without
//!   the dot, case-insensitive) to a type; overrides the built-in table.
//!   A type with control characters is a config error.
//!
//! ```text
//! Plugin fast_mime_map
//! MimeType md text/markdown
//! ```
//!
//! The built-in table is `mime_guess`'s; text types get `charset=utf-8`
//! the way browsers expect for modern files.

use std::cell::RefCell;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use axkit::config::{Args, Directive, List, LocationConfig};
use axkit::plugin::{
    Context, HeaderValue, HookFuture, Outcome, Plugin, PluginInit, PluginSpec, TrustedMap,
};

/// `MimeType EXT TYPE`: the extension lower-cased and without its dot,
/// and the type checked once as a header value, shared by the responses.
static MIME_TYPE: List<(String, HeaderValue)> = List::parsed("MimeType", |args| match args {
    [ext, ty] => Ok((
        ext.trim_start_matches('.').to_ascii_lowercase(),
        HeaderValue::checked(*ty)?,
    )),
    _ => Err("expected MimeType EXT TYPE".into()),
})
.args(Args::Range(2, 2))
.doc("Map a file extension to a Content-Type: MimeType EXT TYPE");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "fast_mime_map",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![MIME_TYPE.declare()]
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(FastMimeMap {
        builtin: RefCell::default(),
        last: RefCell::default(),
    }))
}

struct FastMimeMap {
    /// Built-in table lookups already made, with the charset added, so
    /// the hot path neither searches the table nor allocates. Only
    /// extensions the table knows are kept: at most one entry per known
    /// extension, each interned once per worker: a trusted map, since a
    /// request can only look up, never add, a key the table lacks. Keyed
    /// by bytes, so a hit makes no `&str` of the file name.
    builtin: RefCell<TrustedMap<Box<[u8]>, &'static str>>,
    /// The file typed last. A hot file's requests share one name, the
    /// open-file cache entry's, so a request for the file typed last is
    /// answered by comparing two addresses.
    last: RefCell<Option<Typed>>,
}

/// A file name, the Location's config it was typed in (by address) and
/// its type (None: declined). Holding the name keeps its address from
/// being reused for another.
struct Typed {
    name: Arc<Path>,
    config: usize,
    content_type: Option<HeaderValue>,
}

impl FastMimeMap {
    fn builtin_type(&self, ext: &[u8]) -> Option<&'static str> {
        if let Some(t) = self.builtin.borrow().get(ext) {
            return Some(t);
        }
        let t = mime_guess::from_ext(std::str::from_utf8(ext).ok()?).first_raw()?;
        let t: &'static str = if t.starts_with("text/") || t == "application/javascript" {
            Box::leak(format!("{t}; charset=utf-8").into_boxed_str())
        } else {
            t
        };
        self.builtin.borrow_mut().insert(ext.into(), t);
        Some(t)
    }

    /// The type of `path` in `config`, if any.
    fn type_of(&self, path: &Path, config: &LocationConfig) -> Option<HeaderValue> {
        let ext = extension(path)?;
        let lower;
        let ext = if ext.iter().any(u8::is_ascii_uppercase) {
            lower = ext.to_ascii_lowercase();
            &lower[..]
        } else {
            ext
        };
        // The innermost mapping of the extension wins.
        let configured = config
            .list(&MIME_TYPE)
            .iter()
            .rev()
            .find(|(e, _)| e.as_bytes() == ext);
        match configured {
            Some((_, t)) => Some(t.clone()),
            None => self.builtin_type(ext).map(HeaderValue::Static),
        }
    }
}

/// What `Path::extension` gives, found from the end of the path's bytes
/// rather than by splitting it into components: the part of the last name
/// after its last dot, unless that dot starts the name.
fn extension(path: &Path) -> Option<&[u8]> {
    let bytes = path.as_os_str().as_bytes();
    let end = bytes.iter().rposition(|&b| b != b'/')? + 1;
    let bytes = &bytes[..end];
    let name = &bytes[bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
    if name == b".." {
        return None;
    }
    let dot = name.iter().rposition(|&b| b == b'.').filter(|&i| i > 0)?;
    Some(&name[dot + 1..])
}

#[axkit::plugin]
impl Plugin for FastMimeMap {
    fn mime_map<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(filename) = &ctx.filename else {
            return Outcome::Declined.into();
        };
        let config = ctx.config() as *const LocationConfig as usize;
        let known = self.last.borrow().as_ref().and_then(|last| {
            (Arc::ptr_eq(&last.name, filename) && last.config == config)
                .then(|| last.content_type.clone())
        });
        let found = match known {
            Some(found) => found,
            None => {
                let found = self.type_of(filename, ctx.config());
                *self.last.borrow_mut() = Some(Typed {
                    name: filename.clone(),
                    config,
                    content_type: found.clone(),
                });
                found
            }
        };
        match found {
            Some(content_type) => {
                ctx.response.headers.set("Content-Type", content_type);
                Outcome::Ok.into()
            }
            None => Outcome::Declined.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scan finds what `Path::extension` finds.
    #[test]
    fn extension_agrees_with_path() {
        for p in [
            "/srv/www/a.html",
            "/srv/www/a.tar.gz",
            "/srv/www/.hidden",
            "/srv/www/.hidden.txt",
            "/srv/www/noext",
            "/srv/www/trailing.",
            "/srv/www/dir.d/",
            "/srv/www/dir.d//",
            "/srv/www/..",
            "/srv/www/.",
            "a.b",
            ".",
            "/",
            "",
            "x.d/y",
            "/srv/www/A.HTML",
        ] {
            let path = Path::new(p);
            assert_eq!(
                extension(path),
                path.extension().map(|e| e.as_bytes()),
                "{p:?}"
            );
        }
    }
}
