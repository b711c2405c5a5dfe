//! `echo`: a plugin that takes over its connection after an `Upgrade`
//! request and echoes every byte back until the client stops sending, the
//! way a WebSocket or tunnel plugin uses `Context::upgrade`.
//!
//! No directives. Hook `response`: a request with `Connection: upgrade`
//! and `Upgrade: echo` gets `101 Switching Protocols` and then its bytes
//! back; any other request gets `426 Upgrade Required`.
//!
//! ```text
//! <Location /echo>
//!     Plugin echo
//! </Location>
//! ```

use std::rc::Rc;

use axkit::config::Directive;
use axkit::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ECHO: PluginSpec = PluginSpec {
    name: "echo",
    directives: Vec::<Directive>::new,
    create,
};

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(Echo))
}

struct Echo;

#[axkit::plugin]
impl Plugin for Echo {
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let wanted = ctx
            .request
            .header("Upgrade")
            .is_some_and(|p| p.eq_ignore_ascii_case("echo"));
        if !wanted {
            ctx.response.headers.set("Upgrade", "echo");
            return Outcome::Status(426).into();
        }
        hook(async move {
            let Ok(mut conn) = ctx.upgrade("echo").await else {
                return Outcome::Status(400);
            };
            let mut buf = [0u8; 4096];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            Outcome::Done
        })
    }
}
