//! `serve_file`: answers GET and HEAD with the file `uri_translation`
//! mapped the request to (hook `response`).
//!
//! No directives of its own. 200 with Content-Type (from `mime_map`, else
//! `application/octet-stream`), Content-Length and Last-Modified; 404 when
//! the file does not exist, 403 for directories without an index and
//! anything that is not a regular file, 405 with `Allow` for other methods.
//!
//! ```text
//! Plugin uri_to_file
//! Plugin fast_mime_map
//! Plugin serve_file
//! ```

use std::rc::Rc;

use crate::config::Directive;
use crate::plugin::{
    Body, Context, Hook, HookFuture, Hooks, Level, OpenFile, Outcome, Plugin, PluginInit,
    PluginSpec,
};

/// Files up to this size are sent from memory in the same write as the head.
const SMALL_FILE: u64 = 32 * 1024;

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "serve_file",
        directives: Vec::<Directive>::new,
        create,
    }
}

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(ServeFile))
}

struct ServeFile;

impl Plugin for ServeFile {
    fn hooks(&self) -> Hooks {
        Hooks::of(&[Hook::Response])
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        serve(ctx).into()
    }
}

fn serve(ctx: &mut Context) -> Outcome {
    let Some(filename) = ctx.filename.clone() else {
        return Outcome::Declined;
    };
    let metadata = match ctx.metadata.take() {
        Some(md) => md,
        None => match std::fs::metadata(&filename) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Outcome::Status(403)
            }
            Err(_) => return Outcome::Status(404),
        },
    };
    if !metadata.is_file() {
        return Outcome::Status(if metadata.is_dir() { 403 } else { 404 });
    }
    match ctx.request.method() {
        "GET" | "HEAD" => {}
        _ => {
            ctx.response.headers.set("Allow", "GET, HEAD");
            return Outcome::Status(405);
        }
    }
    // A file that is also followed by path info is not a static resource.
    if !ctx.path_info.is_empty() {
        return Outcome::Status(404);
    }
    let open = match ctx.file.take() {
        Some(open) => open,
        None => match std::fs::File::open(&filename) {
            Ok(f) => Rc::new(OpenFile::new(f, metadata.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Outcome::Status(403)
            }
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", filename.display()));
                return Outcome::Status(404);
            }
        },
    };
    // Small files go out from memory in the same write as the head (and
    // stay in memory while an open-file cache keeps them); large ones with
    // sendfile.
    let body = if metadata.len() <= SMALL_FILE {
        match open.contents() {
            Ok(bytes) => Body::Bytes(bytes),
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", filename.display()));
                return Outcome::Status(500);
            }
        }
    } else {
        match open.file.try_clone() {
            Ok(file) => Body::File {
                file,
                offset: 0,
                len: metadata.len(),
            },
            Err(e) => {
                ctx.log(Level::Error, &format!("{}: {e}", filename.display()));
                return Outcome::Status(500);
            }
        }
    };
    if ctx.response.headers.get("Content-Type").is_none() {
        ctx.response
            .headers
            .set("Content-Type", "application/octet-stream");
    }
    if let Ok(modified) = metadata.modified() {
        ctx.response
            .headers
            .set("Last-Modified", axkit_http::fmt_http_date(modified));
    }
    ctx.response.status = 200;
    ctx.response.body = body;
    Outcome::Ok
}
