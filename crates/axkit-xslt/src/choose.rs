//! AxKit's style choosers: which named chain and which medium a request
//! gets, and which of a document's `<?xml-stylesheet?>` PIs apply.

use std::path::{Component, Path, PathBuf};

use axkit::Context;

use crate::{Chooser, Style};

/// What the choosers picked.
pub(crate) struct Choice {
    /// A named style (`?style=NAME`, a `StyleUserAgent` match).
    pub style: Option<String>,
    /// The medium (`screen` unless the media chooser says otherwise).
    pub media: &'static str,
    /// Whether the User-Agent took part (the response then says `Vary:
    /// User-Agent`, so that no cache hands one agent's page to another).
    pub by_agent: bool,
}

pub(crate) fn choose(
    ctx: &Context,
    choosers: &[Chooser],
    user_agents: &[(regex::Regex, String)],
) -> Choice {
    let mut choice = Choice {
        style: None,
        media: "screen",
        by_agent: choosers.iter().any(|c| match c {
            Chooser::UserAgent => !user_agents.is_empty(),
            Chooser::Media => true,
            Chooser::QueryString => false,
        }),
    };
    // Looked up only by the choosers that read it.
    let agent = || ctx.request.header("User-Agent").unwrap_or("");
    for chooser in choosers {
        match chooser {
            Chooser::QueryString if choice.style.is_none() => {
                choice.style = ctx
                    .request
                    .param("style")
                    .filter(|s| !s.is_empty())
                    .map(|s| s.into_owned());
            }
            Chooser::UserAgent if choice.style.is_none() => {
                choice.style = user_agents
                    .iter()
                    .find(|(re, _)| re.is_match(agent()))
                    .map(|(_, name)| name.clone());
            }
            Chooser::Media => choice.media = media_of(agent()),
            _ => {}
        }
    }
    choice
}

/// The medium a User-Agent reads in, as AxKit's media choosers guessed it.
fn media_of(agent: &str) -> &'static str {
    let lower = agent.to_ascii_lowercase();
    if ["lynx", "w3m", "links", "elinks"]
        .iter()
        .any(|b| lower.contains(b))
    {
        "tty"
    } else if ["wap", "mobile", "opera mini", "phone"]
        .iter()
        .any(|b| lower.contains(b))
    {
        "handheld"
    } else {
        "screen"
    }
}

/// Whether a `media` list (`screen, print`, `all`) takes `media`.
fn media_takes(list: &str, media: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|m| m.eq_ignore_ascii_case(media) || m.eq_ignore_ascii_case("all"))
}

/// The stylesheets of `chain` for `media`: those for any medium and those
/// for this one.
pub(crate) fn for_media<'a>(chain: &'a [Style], media: &'a str) -> impl Iterator<Item = &'a Style> {
    chain
        .iter()
        .filter(move |s| s.media.as_deref().is_none_or(|m| media_takes(m, media)))
}

/// The stylesheets the document's XSLT PIs name for this choice: with a
/// style name, those titled so; else the ones that are not alternates.
/// An `href` starting with `/` is under the DocumentRoot, another is
/// relative to the document. A document names only stylesheets beneath
/// the DocumentRoot (a URL, or a path outside it, is an error).
pub(crate) fn from_pis(
    doc: &axkit_xml::Document,
    choice: &Choice,
    root: Option<&Path>,
    url: &Path,
) -> Result<Vec<PathBuf>, String> {
    let base = url.parent().unwrap_or(Path::new("/"));
    let refused = |href: &str| {
        format!(
            "{}: <?xml-stylesheet href=\"{href}\"?> names a stylesheet outside the DocumentRoot",
            url.display()
        )
    };
    doc.stylesheet_pis()
        .into_iter()
        .filter(|pi| {
            pi.kind.as_deref().is_none_or(|k| {
                matches!(
                    k,
                    "text/xsl" | "application/xslt+xml" | "text/xml" | "application/xml"
                )
            })
        })
        .filter(|pi| {
            pi.media
                .as_deref()
                .is_none_or(|m| media_takes(m, choice.media))
        })
        .filter(|pi| match &choice.style {
            Some(name) => pi.title.as_deref() == Some(name.as_str()),
            None => !pi.alternate,
        })
        .map(|pi| {
            let root = root.ok_or_else(|| refused(&pi.href))?;
            let path = lexical(&match pi.href.strip_prefix('/') {
                Some(rel) => root.join(rel),
                None => base.join(&pi.href),
            });
            if pi.href.contains("://") || !path.starts_with(root) {
                return Err(refused(&pi.href));
            }
            Ok(path)
        })
        .collect()
}

/// `path` with `.` and `..` taken out by its text (`a/b/../c.xsl` is
/// `a/c.xsl`), so that a PI may name `../style.xsl`: it is then opened
/// beneath the root like any other path, and one that leaves the root is
/// refused there.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
