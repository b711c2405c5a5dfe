//! The `http` global: `http.request{ … }` on the worker's HTTP client
//! (`axkit-client`): keep-alive pools, HTTPS, timeouts, a limit on the
//! response body, and streaming both ways. A failed request (refused,
//! timed out, too large, an untrusted certificate) raises a Lua error.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use axkit_client::{Body, Request};
use bytes::Bytes;
use mlua::{Function, Lua, LuaString, Table, Value};

fn err(e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("http.request: {e}"))
}

fn seconds(v: Option<f64>, what: &str) -> mlua::Result<Option<Duration>> {
    v.map(|s| Duration::try_from_secs_f64(s).map_err(|e| err(format!("{what}: {e}"))))
        .transpose()
}

pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    let http = lua.create_table()?;
    http.raw_set("request", lua.create_async_function(request)?)?;
    base.raw_set("http", http)
}

/// `http.request{ url =, method =, headers =, body =, timeout =,
/// connect_timeout =, read_timeout =, max_size =, redirects =, stream = }`
/// → `{ status =, headers =, body = }` (with `stream = true`, no `body` but
/// `res:read()`).
async fn request(lua: Lua, spec: Table) -> mlua::Result<Table> {
    let url: String = spec.get("url")?;
    let method: Option<String> = spec.get("method")?;
    let mut req = Request::new(method.as_deref().unwrap_or("GET"), &url).map_err(err)?;
    if let Some(headers) = spec.get::<Option<Table>>("headers")? {
        for pair in headers.pairs::<String, String>() {
            let (name, value) = pair?;
            req = req.header(name, value);
        }
    }
    match spec.get::<Value>("body")? {
        Value::Nil => {}
        Value::String(s) => req = req.body(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Function(next) => req = req.body(producer(next)),
        other => {
            return Err(err(format!(
                "body must be a string or a function, not a {}",
                other.type_name()
            )))
        }
    }
    if let Some(t) = seconds(spec.get("timeout")?, "timeout")? {
        req = req.timeout(t);
    }
    if let Some(t) = seconds(spec.get("connect_timeout")?, "connect_timeout")? {
        req = req.connect_timeout(t);
    }
    if let Some(t) = seconds(spec.get("read_timeout")?, "read_timeout")? {
        req = req.read_timeout(t);
    }
    if let Some(max) = spec.get::<Option<u64>>("max_size")? {
        req = req.max_size(Some(max));
    }
    if let Some(n) = spec.get::<Option<u32>>("redirects")? {
        req = req.redirects(n);
    }
    let stream = spec.get::<Option<bool>>("stream")?.unwrap_or(false);
    let response = axkit_client::client().send(req).await.map_err(err)?;
    let t = lua.create_table()?;
    t.set("status", response.status)?;
    let headers = lua.create_table()?;
    for (name, value) in response.headers() {
        let name = name.to_ascii_lowercase();
        let joined = match headers.raw_get::<Option<String>>(name.as_str())? {
            Some(prev) => format!("{prev}, {value}"),
            None => value.to_string(),
        };
        headers.raw_set(name, joined)?;
    }
    t.set("headers", headers)?;
    if stream {
        // Taken out while a read waits, so that two coroutines cannot
        // read it at once.
        let body = Rc::new(RefCell::new(Some(response)));
        // `res:read()`: the next piece of the body, nil at its end.
        let read = lua.create_async_function(move |lua, _: Value| {
            let body = body.clone();
            async move {
                let taken = body.borrow_mut().take();
                let Some(mut response) = taken else {
                    return Err(err("the response is being read by another call, or failed"));
                };
                let chunk = response.chunk().await;
                if matches!(chunk, Ok(Some(_))) {
                    *body.borrow_mut() = Some(response);
                }
                match chunk.map_err(err)? {
                    Some(bytes) => Ok(Some(lua.create_string(bytes)?)),
                    None => Ok(None),
                }
            }
        })?;
        t.set("read", read)?;
    } else {
        let body = response.bytes().await.map_err(err)?;
        t.set("body", lua.create_string(body)?)?;
    }
    Ok(t)
}

/// A request body produced by a Lua function: each call gives the next
/// piece (a string), nil at the end. It may wait (`r:read()`, `sleep`).
fn producer(next: Function) -> Body {
    Body::from_fn(move || {
        let call = next.call_async::<Option<LuaString>>(());
        async move {
            match call.await {
                Ok(Some(s)) => Ok(Some(Bytes::copy_from_slice(&s.as_bytes()))),
                Ok(None) => Ok(None),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        }
    })
}
