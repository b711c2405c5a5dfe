//! `fast_mime_map`: sets Content-Type from the file name's extension
//! (hook `mime_map`), from a built-in table plus `MimeType` lines.
//!
//! Directives:
//! - `MimeType EXT TYPE` (repeatable, any scope): map an extension (without
//!   the dot, case-insensitive) to a type; overrides the built-in table.
//!
//! ```text
//! Plugin fast_mime_map
//! MimeType md text/markdown
//! ```
//!
//! The built-in table is `mime_guess`'s; text types get `charset=utf-8`
//! the way browsers expect for modern files.

use std::borrow::Cow;
use std::cell::RefCell;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use axkit::config::{Args, Directive, List};
use axkit::plugin::{Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec, TrustedMap};

/// `MimeType EXT TYPE`: the extension lower-cased and without its dot.
static MIME_TYPE: List<(String, String)> = List::parsed("MimeType", |args| match args {
    [ext, ty] => Ok((
        ext.trim_start_matches('.').to_ascii_lowercase(),
        ty.to_string(),
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
        let Some(ext) = ctx.filename.as_deref().and_then(extension) else {
            return Outcome::Declined.into();
        };
        let ext: Cow<[u8]> = if ext.iter().any(u8::is_ascii_uppercase) {
            Cow::Owned(ext.to_ascii_lowercase())
        } else {
            Cow::Borrowed(ext)
        };
        // The innermost mapping of the extension wins.
        let configured = ctx
            .config()
            .list(&MIME_TYPE)
            .iter()
            .rev()
            .find(|(e, _)| e.as_bytes() == &*ext)
            .map(|(_, t)| t.clone());
        let content_type: Cow<'static, str> = match configured {
            Some(t) => Cow::Owned(t),
            None => match self.builtin_type(&ext) {
                Some(t) => Cow::Borrowed(t),
                None => return Outcome::Declined.into(),
            },
        };
        ctx.response.headers.set("Content-Type", content_type);
        Outcome::Ok.into()
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
