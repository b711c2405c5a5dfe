//! Which URLs run as which script, and how a script is started: a
//! `ScriptAlias` prefix maps to a directory of scripts or to one program,
//! `CGI_Match` picks files `uri_translation` already mapped, and [`Start`]
//! runs a script found beneath a root without looking its path up again.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use axkit::plugin::{is_escape, Context, DocRoot, Level, Rule};

use super::{CGI_MATCH, SCRIPT_ALIAS};

/// What a request runs, from ScriptAlias or CGI_Match (always a regular
/// file).
#[derive(Clone, Debug)]
pub(super) struct Script {
    pub(super) path: PathBuf,
    /// The root the script was found beneath (the DocumentRoot, or a
    /// ScriptAlias directory); `None` for a ScriptAlias naming one
    /// program, whose path is the configuration's.
    pub(super) root: Option<DocRoot>,
    /// The URL path of the script (SCRIPT_NAME)…
    pub(super) script_name: String,
    /// …and what follows it (PATH_INFO), decoded.
    pub(super) path_info: String,
}

/// The script a ScriptAlias maps this URL to, with its metadata: None when
/// no alias matches, `Err(status)` for a URL under an alias that names no
/// script.
pub(super) fn script_alias(ctx: &Context) -> Option<Result<(Script, std::fs::Metadata), u16>> {
    let config = ctx.config();
    let aliases = config.list(&SCRIPT_ALIAS);
    alias_script(aliases, ctx.request.decoded_path(), Rule::of(config))
}

/// [`script_alias`] for the decoded URL `path`, the `(prefix, target)`
/// pairs of `ScriptAlias` and the `FollowSymlinks` rule of the scope.
pub(super) fn alias_script(
    aliases: &[(String, PathBuf)],
    path: &str,
    rule: Rule,
) -> Option<Result<(Script, std::fs::Metadata), u16>> {
    let (prefix, target) = aliases
        .iter()
        .filter(|(prefix, _)| alias_matches(prefix, path))
        .max_by_key(|(prefix, _)| prefix.len())?;
    let rest = &path[prefix.len()..];
    // An encoded slash cannot be a path segment (as in uri_to_file).
    if rest.contains("%2F") {
        return Some(Err(404));
    }
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let trailing = path.ends_with('/') && !rest.is_empty();
    let mut file = target.clone();
    // A directory of scripts is a root: what the URL names inside it is
    // looked up beneath it, under FollowSymlinks (as a DocumentRoot). The
    // target itself is the configuration's (beneath ServerRoot if relative).
    let root = std::fs::metadata(&file)
        .is_ok_and(|md| md.is_dir())
        .then(|| DocRoot::new(&file, rule));
    let mut used = 0;
    let metadata = loop {
        let found = match &root {
            Some(root) => root.metadata(&file),
            None => std::fs::metadata(&file),
        };
        match found {
            Ok(md) if md.is_file() => break md,
            Ok(md) if md.is_dir() => match segments.get(used) {
                Some(segment) => {
                    file.push(segment);
                    used += 1;
                }
                // A directory of scripts is not listed.
                None => return Some(Err(403)),
            },
            Ok(_) => return Some(Err(403)),
            Err(e) if is_escape(&e) => return Some(Err(403)),
            Err(_) => return Some(Err(404)),
        }
    };
    let mut path_info = String::new();
    for s in &segments[used..] {
        path_info.push('/');
        path_info.push_str(s);
    }
    if trailing && (used < segments.len() || path_info.is_empty() && used > 0) {
        path_info.push('/');
    }
    let script_name = path
        .strip_suffix(path_info.as_str())
        .unwrap_or(path)
        .trim_end_matches('/')
        .to_string();
    let script = Script {
        path: file,
        root,
        script_name,
        path_info,
    };
    Some(Ok((script, metadata)))
}

/// Apache's ScriptAlias prefix test: a prefix ending in `/` matches by
/// plain prefix, otherwise by whole segments.
fn alias_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The script CGI_Match makes of the file `uri_translation` found.
pub(super) fn cgi_match(ctx: &Context) -> Option<Script> {
    let filename = ctx.filename.as_ref()?;
    let regex = ctx.config().get(&CGI_MATCH).as_ref()?;
    if !regex.is_match(&filename.to_string_lossy()) {
        return None;
    }
    if !ctx.metadata.as_ref().is_some_and(|md| md.is_file()) {
        return None;
    }
    let path = ctx.request.decoded_path();
    Some(Script {
        path: filename.to_path_buf(),
        root: Some(DocRoot::for_file(ctx, filename)),
        script_name: matched_script_name(path, &ctx.path_info, filename),
        path_info: ctx.path_info.clone(),
    })
}

/// The SCRIPT_NAME of a CGI_Match script: the decoded URL `path` without
/// the `path_info` that followed the file (`filename`) it maps to.
pub(super) fn matched_script_name(path: &str, path_info: &str, filename: &Path) -> String {
    match path.strip_suffix(path_info) {
        // A directory index: the script's URL is the directory's plus
        // the index file's name.
        Some(dir) if path_info.is_empty() && dir.ends_with('/') => {
            let name = filename.file_name().map(|n| n.to_string_lossy());
            format!("{dir}{}", name.unwrap_or_default())
        }
        Some(s) => s.to_string(),
        None => path.to_string(),
    }
}

/// How a script is started: the program to run and the directory to run
/// it in. A script found beneath a root runs as `./NAME` in a handle on
/// its directory opened beneath that root (`/proc/self/fd/N`, the handle
/// kept open until the script has started), so the path is never looked
/// up again by full name between the check and the exec: a directory
/// swapped for a symlink out of the root meanwhile cannot make it run
/// something else. (Execing the script's own descriptor would close the
/// last component too, but a `#!` script's interpreter then gets
/// `/dev/fd/N` for `$0`, which breaks `dirname "$0"`, FindBin and
/// `__file__`; whoever can replace a file in a script directory can write
/// a script there anyway.)
pub(super) struct Start {
    pub(super) program: PathBuf,
    pub(super) dir: PathBuf,
    /// The directory's handle, while the script starts.
    _handle: Option<std::os::fd::OwnedFd>,
}

impl Start {
    /// Where and how `script` starts; `Err` is the status to answer, the
    /// reason logged. The lookups here hit the caches `uri_translation`
    /// just warmed.
    pub(super) fn new(ctx: &Context, script: &Script) -> Result<Start, u16> {
        let refuse = |status, why: &dyn std::fmt::Display| {
            let msg = format!("serve_cgi: {}: {why}, refused", script.path.display());
            ctx.log(Level::Warn, &msg);
            Err(status)
        };
        let name = script.path.file_name().unwrap_or_default();
        let parent = script.path.parent().unwrap_or(Path::new("/"));
        let (program, dir, handle, dir_fd) = match &script.root {
            Some(root) => {
                let handle = match root.open_dir(parent) {
                    Ok(handle) => handle,
                    Err(e) if is_escape(&e) => return refuse(403, &"leads outside its root"),
                    Err(e) => return refuse(404, &e),
                };
                let fd = std::os::fd::AsRawFd::as_raw_fd(&handle);
                let program = Path::new(".").join(name);
                let dir = PathBuf::from(format!("/proc/self/fd/{fd}"));
                (program, dir, Some(handle), fd)
            }
            // Config paths may be relative to the server's directory, but
            // the script starts in its own.
            None => {
                let program = std::path::absolute(&script.path).unwrap_or(script.path.clone());
                let dir = program.parent().unwrap_or(Path::new("/")).to_path_buf();
                (program, dir, None, libc::AT_FDCWD)
            }
        };
        let Ok(c) = std::ffi::CString::new(program.as_os_str().as_bytes()) else {
            return refuse(404, &"NUL in its name");
        };
        // SAFETY: faccessat(2) with a directory descriptor we hold (or
        // AT_FDCWD) and a valid C string.
        if unsafe { libc::faccessat(dir_fd, c.as_ptr(), libc::X_OK, 0) } != 0 {
            return refuse(403, &"not an executable file");
        }
        Ok(Start {
            program,
            dir,
            _handle: handle,
        })
    }
}
