//! `#[axkit::plugin]`, the attribute every `impl Plugin for T` carries: it
//! derives the list of hooks the server calls from the hook methods the
//! impl writes, so that the two cannot disagree (a hook written but left
//! off a hand-kept list used to be skipped without a word). Use it through
//! `axkit`, which re-exports it; see `axkit::Plugin`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Error, ImplItem, ItemImpl};

/// The hook methods of `axkit::Plugin` and their `axkit::plugin::Hook`
/// variants.
const HOOKS: [(&str, &str); 18] = [
    ("logging", "Logging"),
    ("connect", "Connect"),
    ("pre_request", "PreRequest"),
    ("post_read_request", "PostReadRequest"),
    ("body_data", "BodyData"),
    ("uri_translation", "UriTranslation"),
    ("mime_map", "MimeMap"),
    ("access_control", "AccessControl"),
    ("authentication", "Authentication"),
    ("authorization", "Authorization"),
    ("fixup", "Fixup"),
    ("xmlresponse", "XmlResponse"),
    ("response", "Response"),
    ("before_head", "BeforeHead"),
    ("write_body_data", "WriteBodyData"),
    ("response_sent", "ResponseSent"),
    ("disconnect", "Disconnect"),
    ("error", "Error"),
];

/// Put on `impl Plugin for T`: the server then calls exactly the hooks
/// this impl writes. See `axkit::Plugin`.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    if !attr.is_empty() {
        return Error::new(attr.span(), "#[axkit::plugin] takes no arguments")
            .to_compile_error()
            .into();
    }
    let item = parse_macro_input!(item as ItemImpl);
    match expand(&item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(item: &ItemImpl) -> Result<proc_macro2::TokenStream, Error> {
    let is_plugin = item
        .trait_
        .as_ref()
        .and_then(|(path, _)| path.segments.last())
        .is_some_and(|last| last.ident == "Plugin");
    if !is_plugin {
        return Err(Error::new(
            Span::call_site(),
            "#[axkit::plugin] goes on an `impl Plugin for T` block",
        ));
    }
    let mut written = Vec::new();
    for member in &item.items {
        match member {
            ImplItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                if let Some((_, variant)) = HOOKS.iter().find(|(method, _)| *method == name) {
                    written.push(format_ident!("{}", variant));
                }
            }
            // Its expansion is not visible here: a hook written by a macro
            // would be missing from the list.
            ImplItem::Macro(m) => {
                return Err(Error::new(
                    m.span(),
                    "#[axkit::plugin] cannot see the methods a macro writes: \
                     write the hook methods out in the impl",
                ));
            }
            _ => {}
        }
    }
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    Ok(quote! {
        #item
        impl #impl_generics ::axkit::plugin::__private::WrittenHooks for #self_ty #where_clause {
            fn written_hooks(&self) -> ::axkit::plugin::Hooks {
                ::axkit::plugin::Hooks::of(&[#(::axkit::plugin::Hook::#written),*])
            }
        }
    })
}
