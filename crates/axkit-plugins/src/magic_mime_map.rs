//! `magic_mime_map`: sets Content-Type from a file's first bytes (hook
//! `mime_map`) when its name says nothing, using the `infer` crate's
//! magic-number signatures. List it after `fast_mime_map`, which declines
//! for unknown or missing extensions.
//!
//! Only inert types are ever sniffed: images, audio, video, fonts,
//! archives and office documents, which a browser displays or downloads
//! without running anything of theirs in the site's origin. The files
//! whose names say nothing are typically uploads, whose bytes an attacker
//! chose: `<script>` sniffed as `text/html` (or XML, which a browser runs
//! as XHTML or SVG) would be stored XSS. So HTML, XML and scripts, and
//! also PDF (a PDF viewer may run the document's JavaScript, and older
//! browser plugins let it make requests as the site), Flash and
//! executables, are left unrecognised: they get `serve_file`'s
//! `application/octet-stream`, which browsers download. For upload areas,
//! add `Header set X-Content-Type-Options nosniff` (plugin `headers`) too,
//! so that the browser does not sniff them itself.
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

/// The inert type `infer` recognises in a file's first bytes, if any.
fn set_type(ctx: &mut Context, head: &[u8]) -> Outcome {
    match infer::get(head).filter(inert) {
        Some(kind) => {
            ctx.response.headers.set("Content-Type", kind.mime_type());
            Outcome::Ok
        }
        None => Outcome::Declined,
    }
}

/// Whether a browser given this type runs nothing of the file's in the
/// site's origin (see the module's doc). Kinds are allowed by family, so
/// that what a newer `infer` adds to the text or application families
/// stays unrecognised until it is looked at.
fn inert(kind: &infer::Type) -> bool {
    use infer::MatcherType::*;
    const ACTIVE: [&str; 2] = ["application/pdf", "application/x-shockwave-flash"];
    matches!(
        kind.matcher_type(),
        Image | Audio | Video | Font | Archive | Doc | Book
    ) && !ACTIVE.contains(&kind.mime_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup and scripts are never sniffed, whatever they start with;
    /// nor are PDF, Flash or executables. Media and archives are.
    #[test]
    fn only_inert_kinds_are_recognised() {
        let kind = |bytes: &[u8]| infer::get(bytes).filter(inert).map(|k| k.mime_type());
        for active in [
            &b"<!DOCTYPE html><script>alert(1)</script>"[..],
            b"<html><body onload=alert(1)>",
            b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"#!/bin/sh\necho hi\n",
            b"%PDF-1.7\n1 0 obj",
            b"FWS\x0a\x00\x00\x00\x00",
            b"MZ\x90\x00\x03\x00\x00\x00",
        ] {
            assert!(
                infer::get(active).is_some(),
                "{active:?} not recognised at all"
            );
            assert_eq!(kind(active), None, "{:?}", String::from_utf8_lossy(active));
        }
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR";
        assert_eq!(kind(png), Some("image/png"));
        assert_eq!(kind(b"PK\x03\x04rest of a zip"), Some("application/zip"));
        assert_eq!(kind(b"ID3\x03\x00\x00\x00"), Some("audio/mpeg"));
    }
}
