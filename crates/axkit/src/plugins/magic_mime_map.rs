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
//! It looks at the open file `uri_to_file` handed over (a small file's
//! contents are read once and kept by the open-file cache anyway); files
//! it cannot recognise are left to `serve_file`'s
//! `application/octet-stream`.

use std::os::unix::fs::FileExt;
use std::rc::Rc;

use crate::config::Directive;
use crate::plugin::{Context, Hook, HookFuture, Hooks, Outcome, Plugin, PluginInit, PluginSpec};

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

impl Plugin for MagicMimeMap {
    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::MimeMap])
    }

    fn mime_map<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(open) = ctx.file.as_ref().filter(|f| f.metadata.is_file()) else {
            return Outcome::Declined.into();
        };
        let mut head = vec![0u8; SNIFF.min(open.metadata.len() as usize)];
        let n = match open.file.read_at(&mut head, 0) {
            Ok(n) => n,
            Err(_) => return Outcome::Declined.into(),
        };
        match infer::get(&head[..n]) {
            Some(kind) => {
                ctx.response.headers.set("Content-Type", kind.mime_type());
                Outcome::Ok.into()
            }
            None => Outcome::Declined.into(),
        }
    }
}
