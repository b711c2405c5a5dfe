//! The stock `axkit` command: the server with every built-in plugin.

fn main() -> std::process::ExitCode {
    axkit::Server::new().main()
}
