//! Unit tests for the validation stage: every kind of error with its exact
//! text, merging across scopes, defaults, and what the frozen config holds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::test_support::{errors, load_text, with_server};
use super::Value;

#[test]
fn unknown_directive_suggests() {
    assert_eq!(
        errors(&with_server("Plugin serve_file\nDocumentRot x")),
        ["t.conf:4: DocumentRot: unknown directive; did you mean `DocumentRoot`?"]
    );
    assert_eq!(
        errors(&with_server("Zebra 1")),
        ["t.conf:3: Zebra: unknown directive"]
    );
    assert_eq!(
        errors(&with_server("<Zebra>\n</Zebra>")),
        ["t.conf:3: Zebra: unknown directive"]
    );
}

#[test]
fn bad_value() {
    assert_eq!(
        errors(&format!("Workers four\n{}", with_server(""))),
        ["t.conf:1: Workers (plugin core): expected an integer, got \"four\""]
    );
    assert_eq!(
        errors(&format!("Workers -1\n{}", with_server(""))),
        ["t.conf:1: Workers (plugin core): expected a non-negative integer, got -1"]
    );
    assert_eq!(
        errors(&with_server("MaxRequestBody 10Q")),
        ["t.conf:3: MaxRequestBody (plugin core): expected a size like 512, 10K, 10M or 1G, got \"10Q\""]
    );
}

#[test]
fn wrong_scope() {
    assert_eq!(
        errors(&with_server("<Location /a>\nWorkers 4\n</Location>")),
        ["t.conf:4: Workers (plugin core): not allowed in <Location>; allowed in: global"]
    );
    assert_eq!(
        errors(&format!("Port 80\n{}", with_server(""))),
        ["t.conf:1: Port (plugin core): not allowed in global; allowed in: <Server>"]
    );
    assert_eq!(
        errors(&format!("<Location /x>\n</Location>\n{}", with_server(""))),
        ["t.conf:1: Location (plugin core): not allowed in global; allowed in: <Server>, <Location>"]
    );
    assert_eq!(
        errors(&with_server("<Server>\n</Server>")),
        ["t.conf:3: Server (plugin core): not allowed in <Server>; allowed in: global"]
    );
}

#[test]
fn plugin_not_loaded() {
    assert_eq!(
        errors(&with_server("CGI_Match \\.cgi$")),
        ["t.conf:3: CGI_Match (plugin serve_cgi): plugin `serve_cgi` is not loaded; add `Plugin serve_cgi`"]
    );
    // Loaded anywhere is enough.
    let text =
        "<Server>\nPort 1\nCGI_Match x\n</Server>\n<Server>\nPort 2\nPlugin serve_cgi\n</Server>";
    assert!(load_text(text).is_ok());
}

#[test]
fn duplicate_plugins_in_a_chain() {
    assert_eq!(
        errors(&format!("Plugin hello\n{}", with_server("Plugin hello"))),
        ["t.conf:4: Plugin (plugin core): plugin `hello` is already loaded in this scope (t.conf:1)"]
    );
    assert_eq!(
        errors(&with_server("<Location /a>\nPlugin hello\nPlugin hello\n</Location>")),
        ["t.conf:5: Plugin (plugin core): plugin `hello` is already loaded in this scope (t.conf:4)"]
    );
    // The same plugin in two sibling scopes is fine.
    let cfg = load_text(&with_server(
        "<Location /a>\nPlugin hello\n</Location>\n<Location /b>\nPlugin hello\n</Location>",
    ))
    .unwrap();
    assert_eq!(cfg.servers[0].locations[1].plugins, ["hello"]);
    assert_eq!(cfg.servers[0].locations[2].plugins, ["hello"]);
}

#[test]
fn argument_counts_and_shapes() {
    let text = with_server(
        "Plugin hello\nPlugin serve_file\nDocumentRoot a b\nDirectoryIndex\nPair 1\nVerbose yes\n\
         Perl x\n<Greeting>\n</Greeting>\nPair 1 2 3 4",
    );
    assert_eq!(
        errors(&text),
        [
            "t.conf:5: DocumentRoot (plugin serve_file): expected 1 argument, got 2; usage: DocumentRoot <path>",
            "t.conf:6: DirectoryIndex (plugin serve_file): expected at least 1 argument, got 0; \
             usage: DirectoryIndex <string>...",
            "t.conf:7: Pair (plugin hello): expected 2 to 3 arguments, got 1; usage: Pair <integer>{2,3}",
            "t.conf:8: Verbose (plugin hello): takes no arguments, got 1; usage: Verbose",
            "t.conf:9: Perl (plugin hello): must be written as a block: `<Perl ...> ... </Perl>`",
            "t.conf:10: Greeting (plugin hello): is not a block; write it as a single line: `Greeting <string>`",
            "t.conf:12: Pair (plugin hello): expected 2 to 3 arguments, got 4; usage: Pair <integer>{2,3}",
        ]
    );
}

#[test]
fn server_errors() {
    assert_eq!(
        errors("Workers 2\n"),
        ["t.conf: no <Server> block: nothing to serve"]
    );
    assert_eq!(
        errors("<Server>\nServerName a\n</Server>"),
        ["t.conf:1: Server (plugin core): no listen address; add `Port 8000`, `Listen ADDR:PORT` \
          or `<Server ADDR:PORT>`"]
    );
    assert_eq!(
        errors("<Server nowhere>\nPort 1\n</Server>"),
        ["t.conf:1: Server (plugin core): expected ADDR:PORT, [IPV6]:PORT or PORT, got \"nowhere\""]
    );
    assert_eq!(
        errors(&with_server("Port 70000\nListen 1.2.3.4:80 x:1")),
        [
            "t.conf:3: Port (plugin core): expected a port number from 0 to 65535, got 70000",
            "t.conf:4: Listen (plugin core): expected ADDR:PORT, [IPV6]:PORT or PORT, got \"x:1\"",
        ]
    );
    let dup = "<Server>\nPort 80\nServerName A.com\n</Server>\n\
               <Server>\nListen 80 8080\nServerName b.com\nServerAlias a.com\n</Server>";
    assert_eq!(
        errors(dup),
        ["t.conf:8: ServerAlias (plugin core): server name `a.com` is already used by the <Server> \
          at t.conf:1, which also listens on 0.0.0.0:80"]
    );
    // Same names on different addresses are fine.
    assert!(load_text(&dup.replace("Listen 80 8080", "Listen 8080")).is_ok());
}

#[test]
fn location_errors() {
    assert_eq!(
        errors(&with_server(
            "<Location icons>\n</Location>\n<Location>\n</Location>"
        )),
        [
            "t.conf:3: Location (plugin core): expected exactly one URL prefix starting with `/`, \
             e.g. <Location /icons>",
            "t.conf:5: Location (plugin core): expected exactly one URL prefix starting with `/`, \
             e.g. <Location /icons>",
        ]
    );
    assert_eq!(
        errors(&with_server("<Location /a>\n<Location /ab>\n</Location>\n</Location>")),
        ["t.conf:4: Location (plugin core): prefix `/ab` is not inside the enclosing <Location /a> (t.conf:3)"]
    );
    assert_eq!(
        errors(&with_server(
            "<Location /a>\n</Location>\n<Location /a>\n</Location>"
        )),
        ["t.conf:5: Location (plugin core): <Location /a> is already defined at t.conf:3"]
    );
}

#[test]
fn merging() {
    let text = "\
Plugin hello
Plugin serve_file
Greeting Hi
DirectoryIndex a.html
MaxRequestBody 2M
ShutdownTimeout 5s
<Server [::1]:8080 8000>
    Port 8000
    Listen 127.0.0.1:9000
    ServerName Example.COM
    ServerAlias *.example.com www.example.org
    Plugin serve_cgi
    DirectoryIndex b.html c.html
    Greeting Hey
    Greeting Howdy
    <Location /icons>
        Plugin uri_to_file
        DirectoryIndex d.html
        <Location /icons/small>
            Greeting Yo
            MaxRequestBody 10K
        </Location>
    </Location>
    <Location /docs/>
        Verbose
    </Location>
</Server>
";
    let cfg = load_text(text).unwrap();
    assert_eq!(
        cfg.plugins,
        ["hello", "serve_file", "serve_cgi", "uri_to_file"]
    );
    assert_eq!(cfg.snapshot.files().count(), 0);
    assert_eq!(
        cfg.global.duration("ShutdownTimeout"),
        Some(Duration::from_secs(5))
    );
    assert_eq!(cfg.global.int("Workers"), Some(0));
    assert!(!cfg.global.is_set("Workers"));
    assert!(cfg.global.is_set("shutdown_timeout"));

    let s = &cfg.servers[0];
    assert_eq!(s.index, 0);
    assert_eq!(
        s.listen,
        [
            "[::1]:8080".parse::<SocketAddr>().unwrap(),
            "0.0.0.0:8000".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        ]
    );
    assert_eq!(s.names, ["example.com", "*.example.com", "www.example.org"]);
    assert_eq!(s.locations.len(), 4);
    let prefixes: Vec<&str> = s.locations.iter().map(|l| l.prefix.as_str()).collect();
    assert_eq!(prefixes, ["/", "/icons", "/icons/small", "/docs/"]);

    let root = &s.locations[0];
    assert_eq!(root.plugins, ["hello", "serve_file", "serve_cgi"]);
    assert_eq!(root.config.str("Greeting"), Some("Howdy"));
    let idx: Vec<&str> = root
        .config
        .settings("DirectoryIndex")
        .iter()
        .flat_map(|s| s.args.iter().filter_map(Value::as_str))
        .collect();
    assert_eq!(idx, ["a.html", "b.html", "c.html"]);
    // values() is the last effective occurrence.
    assert_eq!(root.config.values("DirectoryIndex").len(), 2);
    assert_eq!(root.config.size("MaxRequestBody"), Some(2 << 20));
    assert_eq!(root.config.settings("Listen").len(), 2);
    assert!(!root.config.flag("Verbose"));

    let icons = &s.locations[1];
    assert_eq!(
        icons.plugins,
        ["hello", "serve_file", "serve_cgi", "uri_to_file"]
    );
    assert_eq!(icons.config.settings("DirectoryIndex").len(), 3);
    assert_eq!(icons.config.str("Greeting"), Some("Howdy"));

    let small = &s.locations[2];
    assert_eq!(small.plugins, icons.plugins);
    assert_eq!(small.config.str("Greeting"), Some("Yo"));
    assert_eq!(small.config.size("MaxRequestBody"), Some(10 << 10));
    let g = &small.config.settings("greeting")[0];
    assert_eq!((&*g.file, g.line), ("t.conf", 20));

    assert!(s.locations[3].config.flag("Verbose"));
    assert_eq!(cfg.global.str("Greeting"), Some("Hi"));
    // Defaults where nothing is written; an Append default is replaced,
    // not extended, by written values.
    let bare = load_text("Plugin serve_file\n<Server 80>\n</Server>").unwrap();
    let root = &bare.servers[0].locations[0].config;
    assert_eq!(
        root.values("DirectoryIndex")[0].as_str(),
        Some("index.html")
    );
    assert!(root.settings("DirectoryIndex")[0].is_default());
    assert_eq!(root.str("ServerToken"), Some("AxKit"));
    assert!(root.path("DocumentRoot").is_none());
}

#[test]
fn block_directives_keep_raw_lines() {
    let text = with_server(
        "Plugin hello\n<Perl a b>\n  my $x = 1\n  <Sub foo>\n    return\n  </Sub>\n</Perl>",
    );
    let cfg = load_text(&text).unwrap();
    let values = cfg.servers[0].locations[0].config.values("Perl");
    let lines = values[0].as_block().unwrap();
    assert_eq!(values[1].as_str(), Some("a"));
    assert_eq!(values[2].as_str(), Some("b"));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].name, "my");
    assert_eq!(lines[0].args, ["$x", "=", "1"]);
    assert_eq!(lines[1].name, "Sub");
    assert_eq!(lines[1].children[0].name, "return");
    assert_eq!(lines[1].children[0].line, 7);
}

#[test]
fn name_normalisation_in_configs() {
    let text =
        "plugin serve_file\n<server>\nport 80\ndocument_root /a\n<location /x>\ndocument-root /b\n\
                </LOCATION>\n</SERVER>";
    let cfg = load_text(text).unwrap();
    let s = &cfg.servers[0];
    assert_eq!(
        s.locations[0].config.path("DocumentRoot"),
        Some(Path::new("/a"))
    );
    assert_eq!(
        s.locations[1].config.path("documentroot"),
        Some(Path::new("/b"))
    );
}
