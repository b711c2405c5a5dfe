//! The stock `axkit` command: the server with every built-in plugin, the
//! databases (`Database NAME URL`) and Lua script plugins found through
//! `PluginDir`.

fn main() -> std::process::ExitCode {
    axkit::Server::new()
        .plugins(axkit_plugins::builtin())
        .source(axkit_db::DbSource)
        .source(axkit_lua::LuaSource::new())
        .main()
}
