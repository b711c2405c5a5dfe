//! `magic_mime_map`: sets Content-Type from a file's first bytes (hook
//! `mime_map`) when its name says nothing, using the `infer` crate's
//! magic-number signatures (images, archives, audio, video, fonts,
//! documents…). List it after `fast_mime_map`, which declines for unknown
//! or missing extensions.
//!
//! No directives.
//!
//! ```text
//! Plugin fast_mime_map
//! Plugin magic_mime_map
//! ```
//!
//! It looks at the open file `uri_to_file` handed over: a small file's
//! contents, read when it was opened and kept by the open-file cache, or
//! else the file's first bytes, read on the blocking pool (never on the
//! event loop). Files
//! it cannot recognise are left to `serve_file`'s
//! `application/octet-stream`.

use std::os::unix::fs::FileExt;
use std::rc::Rc;

use axkit::config::Directive;
use axkit::plugin::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

/// Bytes read to sniff: every signature `infer` knows fits in this.
const SNIFF: usize = 8192;

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "magic_mime_map",
        directives: Vec::<Directive>::new,
        create,
    }
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(MagicMimeMap))
}

struct MagicMimeMap;

#[axkit::plugin]
impl Plugin for MagicMimeMap {
    fn mime_map<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(open) = ctx.file.as_ref().filter(|f| f.metadata.is_file()) else {
            return Outcome::Declined.into();
        };
        if let Some(bytes) = open.contents() {
            let head = bytes.slice(..bytes.len().min(SNIFF));
            return set_type(ctx, &head).into();
        }
        let (file, len) = (open.file.try_clone(), open.metadata.len());
        hook(async move {
            let Ok(file) = file else {
                return Outcome::Declined;
            };
            let read = tokio::task::spawn_blocking(move || {
                let mut head = vec![0u8; SNIFF.min(len as usize)];
                let n = file.read_at(&mut head, 0)?;
                head.truncate(n);
                Ok::<_, std::io::Error>(head)
            });
            match read.await {
                Ok(Ok(head)) => set_type(ctx, &head),
                _ => Outcome::Declined,
            }
        })
    }
}

/// The type `infer` recognises in a file's first bytes, if any.
fn set_type(ctx: &mut Context, head: &[u8]) -> Outcome {
    match infer::get(head) {
        Some(kind) => {
            ctx.response.headers.set("Content-Type", kind.mime_type());
            Outcome::Ok
        }
        None => Outcome::Declined,
    }
}
