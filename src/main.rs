//! The stock `axkit` command: the server with every built-in plugin, Lua
//! script plugins found through `PluginDir`, the databases (`Database NAME
//! URL`), the templates of `TemplateDir`, the HTTP client's trust
//! (`HttpClientCAFile`), and the zones and broadcast shared by the workers
//! (`SharedZone`, `BroadcastBuffer`), and sessions (`SessionKey`,
//! `SessionStore`…).

fn main() -> std::process::ExitCode {
    axkit::Server::new()
        .plugins(axkit_plugins::builtin())
        .source(axkit_db::DbSource)
        .source(axkit_lua::LuaSource::new())
        .source(axkit_template::TemplateSource)
        .source(axkit_client::ClientSource)
        .source(axkit_shared::SharedSource::new())
        .source(axkit_session::SessionSource)
        .main()
}
