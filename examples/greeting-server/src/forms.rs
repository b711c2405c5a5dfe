//! `forms`: the request conveniences of the plugin API at work, for the
//! tests: decoded query parameters, cookies and forms (urlencoded and
//! multipart, with uploads saved only when asked for); and the template
//! and HTTP client crates from Rust.
//!
//! No directives. Hook `response`, by path:
//! - `/query`: every query parameter as `name=value` lines (decoded, in
//!   order), then `param(name)` of the parameter `which`;
//! - `/cookie?NAME`: the value of cookie NAME;
//! - `/form[?save=FIELD]`: reads the form (saving the upload FIELD, or
//!   every upload with `save=*`) and answers one line per field that
//!   counts: `name=value`, or for a file `name: filename size type` and
//!   the saved copy's path, if any;
//! - `/render?title=T`: template `page.html` of the `TemplateDir`, with the
//!   title and the query parameters as rows (a serde-serialisable struct);
//! - `/fetch?url=U&times=N`: GETs U N times with the worker's HTTP client
//!   and answers the bodies, then how many connections that took.
//!
//! Hook `access_control`: with a request header `X-Form-Token`, reads the
//! form and answers 403 unless its field `token` has that value (a CSRF
//! check before the handler; the handler then reads the same form).

use std::fmt::Write;
use std::rc::Rc;
use std::time::Duration;

use axkit::config::Directive;
use axkit::plugin::{Body, Field, Uploads};
use axkit::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

pub const FORMS: PluginSpec = PluginSpec {
    name: "forms",
    directives: Vec::<Directive>::new,
    create,
};

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(Forms))
}

struct Forms;

#[axkit::plugin]
impl Plugin for Forms {
    fn access_control<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(token) = ctx.request.header("X-Form-Token").map(str::to_string) else {
            return Outcome::Declined.into();
        };
        hook(async move {
            match ctx.read_form().await {
                Ok(form) if form.get("token") == Some(token.as_str()) => Outcome::Declined,
                Ok(_) => Outcome::Status(403),
                Err(e) => e.into(),
            }
        })
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        match ctx.request.path() {
            "/query" => {
                let mut out = String::new();
                for (name, value) in ctx.request.query_params() {
                    let _ = writeln!(out, "{name}={value}");
                }
                let which = ctx.request.param("which").unwrap_or_default();
                let _ = writeln!(out, "param: {:?}", ctx.request.param(&which));
                text(ctx, out).into()
            }
            "/cookie" => {
                let name = ctx.request.query().unwrap_or("");
                let out = format!("{:?}\n", ctx.request.cookie(name));
                text(ctx, out).into()
            }
            "/form" => hook(async move {
                let save = ctx.request.param("save").map(|s| s.into_owned());
                let form = match ctx.read_form().await {
                    Ok(form) => form,
                    Err(e) => return e.into(),
                };
                let saved = match save.as_deref() {
                    None => Ok(()),
                    Some("*") => form.save_uploads(Uploads::All).await,
                    Some(field) => form.save_uploads(Uploads::Fields(&[field])).await,
                };
                if let Err(e) = saved {
                    return Outcome::Error(format!("saving an upload: {e}"));
                }
                let mut out = String::new();
                for (name, field) in form.last_fields() {
                    let _ = match field {
                        Field::Text(value) => {
                            writeln!(out, "{name}={}", String::from_utf8_lossy(value))
                        }
                        Field::File(upload) => writeln!(
                            out,
                            "{name}: {} {} {} {}",
                            upload.filename(),
                            upload.size(),
                            upload.content_type().unwrap_or("-"),
                            upload
                                .path()
                                .map_or("-".into(), |p| p.display().to_string())
                        ),
                    };
                }
                text(ctx, out)
            }),
            "/render" => {
                let rows: Vec<(String, String)> = ctx
                    .request
                    .query_params()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let page = Page {
                    title: ctx.request.param("title").unwrap_or_default(),
                    rows,
                };
                match axkit_template::render(ctx.config(), "page.html", &page) {
                    Ok(html) => {
                        ctx.response
                            .headers
                            .set("Content-Type", axkit_template::content_type("page.html"));
                        ctx.response.body = Body::Bytes(html.into());
                        Outcome::Ok.into()
                    }
                    Err(e) => Outcome::Error(e.to_string()).into(),
                }
            }
            "/fetch" => hook(async move {
                let url = ctx.request.param("url").unwrap_or_default().into_owned();
                let times: u32 = ctx
                    .request
                    .param("times")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let client = axkit_client::client();
                let before = client.connections_opened();
                let mut out = String::new();
                for _ in 0..times {
                    let request = match axkit_client::Request::get(&url) {
                        Ok(r) => r.timeout(Duration::from_secs(10)),
                        Err(e) => return Outcome::Error(e.to_string()),
                    };
                    let body = match client.send(request).await {
                        Ok(response) => response.bytes().await,
                        Err(e) => Err(e),
                    };
                    match body {
                        Ok(body) => out.push_str(&String::from_utf8_lossy(&body)),
                        Err(e) => return Outcome::Error(format!("fetching {url}: {e}")),
                    }
                }
                let opened = client.connections_opened() - before;
                let _ = writeln!(out, "connections: {opened}");
                text(ctx, out)
            }),
            _ => Outcome::Declined.into(),
        }
    }
}

/// What `/render` gives its template.
#[derive(serde::Serialize)]
struct Page<'a> {
    title: std::borrow::Cow<'a, str>,
    rows: Vec<(String, String)>,
}

/// A plain-text response.
fn text(ctx: &mut Context, body: String) -> Outcome {
    ctx.response
        .headers
        .set("Content-Type", "text/plain; charset=utf-8");
    ctx.response.body = Body::Bytes(body.into());
    Outcome::Ok
}
