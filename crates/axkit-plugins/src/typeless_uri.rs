//! `typeless_uri` (AxKit2's name; Apache calls it MultiViews): `/about`
//! serves `about.html`, or the first of `TypelessExtensions` that exists,
//! so URLs need not name a file type (hook `mime_map`, before the type is
//! chosen).
//!
//! Directives:
//! - `TypelessExtensions EXT…` (default `html xml txt`): the extensions
//!   tried, in order.
//!
//! ```text
//! Plugin uri_to_file
//! Plugin typeless_uri
//! Plugin fast_mime_map
//! Plugin serve_file
//! ```
//!
//! The file found is served under its own URI's `<Location>` (`/about` +
//! `.html`): when that is another Location than the request's, the
//! request goes on as that URI (method, body and query kept) so that its
//! access rules apply (`Context::internal_redirect_same_request`).
//!
//! It runs in `mime_map` because that is the first phase after
//! `uri_to_file` has found that the path does not exist: it swaps in the
//! file it found and declines, so the next `mime_map` plugin types the
//! real file and `serve_file` gives it the real file's validators. The
//! candidates are opened beneath the root `uri_to_file` resolved the
//! request under, under its `FollowSymlinks` rule, the way the file the
//! URL names would have been (`DocRoot::for_file`), never by full path.
//! They go through the open-file cache (`OpenFileCache`), found or
//! missing, and are opened without ever waiting for a disk on the event
//! loop (see `open_file_cache.rs`).

use std::path::PathBuf;
use std::rc::Rc;

use crate::open_file_cache;
use crate::uri_to_file::uri_elsewhere;
use axkit::config::{Args, Directive, Key};
use axkit::plugin::{
    hook, Context, DocRoot, HookFuture, OpenFile, Outcome, Plugin, PluginInit, PluginSpec, Worker,
};

/// Extensions without their dot, checked when the config loads.
static TYPELESS_EXTENSIONS: Key<Vec<String>> = Key::parsed("TypelessExtensions", |args| {
    args.iter()
        .map(|e| match e.trim_start_matches('.') {
            "" => Err("expected an extension, got an empty one".to_string()),
            e if e.contains('/') => Err(format!("expected an extension without `/`, got {e:?}")),
            e => Ok(e.to_string()),
        })
        .collect()
})
.args(Args::Many)
.default("html xml txt")
.doc("Extensions tried, in order, for a URI naming no existing file");

pub fn spec() -> PluginSpec {
    PluginSpec {
        name: "typeless_uri",
        directives,
        create,
    }
}

fn directives() -> Vec<Directive> {
    vec![TYPELESS_EXTENSIONS.declare()]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    open_file_cache::fit_descriptors(init);
    Ok(Rc::new(TypelessUri))
}

struct TypelessUri;

#[axkit::plugin]
impl Plugin for TypelessUri {
    /// The open-file cache's sweep (see `open_file_cache`).
    fn worker_start(&self, worker: &Worker) {
        open_file_cache::start_sweep(worker);
    }

    fn mime_map<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        // Only a path that names nothing: no open file, no metadata, and
        // not a directory URL.
        let Some(missing) = ctx.filename.clone() else {
            return Outcome::Declined.into();
        };
        if ctx.file.is_some()
            || ctx.metadata.is_some()
            || ctx.request.decoded_path().ends_with('/')
            || missing.file_name().is_none()
        {
            return Outcome::Declined.into();
        }
        let candidates: Vec<PathBuf> = ctx
            .config()
            .get(&TYPELESS_EXTENSIONS)
            .iter()
            .map(|ext| {
                let mut name = missing.as_os_str().to_owned();
                name.push(".");
                name.push(ext);
                PathBuf::from(name)
            })
            .collect();
        let root = DocRoot::for_file(ctx, &missing);
        let policy = open_file_cache::policy(ctx.config());
        let small = open_file_cache::small_file_size(ctx.config());
        let now = ctx.request.start_time();
        if let Some(found) = open_file_cache::sibling_now(&root, &candidates, policy, small, now) {
            return use_found(ctx, candidates, found).into();
        }
        hook(async move {
            let tried = candidates.clone();
            let found = open_file_cache::first_sibling(root, tried, policy, small, now).await;
            use_found(ctx, candidates, found)
        })
    }
}

/// Swap in the file found, and decline so the next `mime_map` plugin
/// types it; or, when the name found is a URI of another `<Location>`,
/// go on as that URI so that its rules apply.
fn use_found(
    ctx: &mut Context,
    mut candidates: Vec<PathBuf>,
    found: Option<(usize, Rc<OpenFile>)>,
) -> Outcome {
    if let Some((i, open)) = found {
        let ext = &ctx.config().get(&TYPELESS_EXTENSIONS)[i];
        if let Some(uri) = uri_elsewhere(ctx, [".", ext]) {
            ctx.internal_redirect_same_request(&uri);
            return Outcome::Done;
        }
        ctx.metadata = Some(open.metadata.clone());
        ctx.file = Some(open);
        ctx.filename = Some(candidates.swap_remove(i).into());
    }
    Outcome::Declined
}
