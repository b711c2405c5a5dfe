//! The stock `axkit` command: the server with every built-in plugin, Lua
//! script plugins found through `PluginDir`, the databases (`Database NAME
//! URL`), the templates of `TemplateDir`, the HTTP client's trust
//! (`HttpClientCAFile`), and the zones and broadcast shared by the workers
//! (`SharedZone`, `BroadcastBuffer`), sessions (`SessionKey`,
//! `SessionStore`…), and the status page, metrics and console (`stats`,
//! `console`), on-the-fly compression (`compress`),
//! the response cache (`cache`), the reverse proxy (`proxy`) and the XML
//! pipeline (`xslt`). Without `-c` it runs the demo: the static site of
//! `demo/` and the wiki application of `plugins/`.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

fn main() -> std::process::ExitCode {
    axkit::Server::new()
        .plugins(axkit_plugins::builtin())
        .plugin(axkit_compress::COMPRESS)
        .plugin(axkit_cache::CACHE)
        .plugin(axkit_proxy::PROXY)
        .plugin(axkit_xslt::XSLT)
        .source(axkit_plugins::StatsSource)
        .source(axkit_db::DbSource)
        .source(axkit_lua::LuaSource::new())
        .source(axkit_template::TemplateSource)
        .source(axkit_client::ClientSource)
        .source(axkit_proxy::ProxySource)
        .source(axkit_shared::SharedSource::new())
        .source(axkit_session::SessionSource)
        .builtin_config(demo_config)
        .main()
}

/// The config `axkit` runs without `-c` (`cargo run`): `demo/` as static
/// files, the XML site of `demo/xml/` through its stylesheets (with a
/// page built in Lua, `plugins/xml_hello.lua`, at /xml/hello), and the wiki (`plugins/wiki.lua`, its templates in
/// `demo/templates`) on 127.0.0.1:8000. The wiki's data lives in `var/`:
/// an SQLite database, made when the wiki is first used, and the key that
/// signs the session cookies, made here the first time. Sessions are kept
/// in the shared zone, so that logging out ends one for good.
/// Paths are those of the checkout when the working directory is not one.
fn demo_config() -> String {
    let root = if Path::new("demo").is_dir() {
        PathBuf::new()
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    };
    let path = |rel: &str| root.join(rel).display().to_string();
    let key = root.join("var/session.key");
    if let Err(e) = make_key(&key) {
        eprintln!("axkit: cannot make {}: {e}", key.display());
    }
    format!(
        "# Built-in configuration: demo/ and the wiki on 127.0.0.1:8000.\n\
         Plugin logging/warn\n\
         LogLevel LOGINFO\n\
         Plugin request_log\n\
         RequestLog -\n\
         PluginDir \"{plugins}\"\n\
         TemplateDir \"{templates}\"\n\
         Database wiki \"sqlite:{db}\"\n\
         SessionKey demo \"{key}\"\n\
         SessionStore shared\n\
         <Server>\n\
         \x20   Listen 127.0.0.1:8000\n\
         \x20   DocumentRoot \"{demo}\"\n\
         \x20   DirectoryIndex index.html\n\
         \x20   Plugin uri_to_file\n\
         \x20   Plugin fast_mime_map\n\
         \x20   Plugin serve_file\n\
         \x20   <Location /wiki>\n\
         \x20       Plugin wiki\n\
         \x20   </Location>\n\
         \x20   <Location /xml>\n\
         \x20       Plugin xslt\n\
         \x20       XSLTStyle xml/style/article.xsl\n\
         \x20       XSLTStyle xml/style/page.xsl\n\
         \x20       <Style rss>\n\
         \x20           XSLTStyle xml/style/rss.xsl\n\
         \x20       </Style>\n\
         \x20   </Location>\n\
         \x20   <Location /xml/hello>\n\
         \x20       Plugin xml_hello\n\
         \x20       Plugin xslt\n\
         \x20       XSLTStyle xml/style/article.xsl\n\
         \x20       XSLTStyle xml/style/page.xsl\n\
         \x20   </Location>\n\
         </Server>\n",
        plugins = path("plugins"),
        templates = path("demo/templates"),
        db = path("var/wiki.db"),
        key = key.display(),
        demo = path("demo"),
    )
}

/// Write 32 random bytes (as hex) to a new file `key`, readable by its
/// owner only, unless it exists. Created exclusively: a file or a link
/// someone put there first is never written through.
fn make_key(key: &Path) -> std::io::Result<()> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(hex.as_bytes())?;
    file.sync_all()
}
