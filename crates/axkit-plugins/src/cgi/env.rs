//! The environment a CGI script runs with (RFC 3875 §4.1 and the usual
//! extensions): the meta-variables, `HTTP_*` for the request's header
//! fields, SetEnv/PassEnv and a fixed PATH, and nothing else of the
//! server's own environment. [`environment`] is a plain function of plain
//! inputs ([`EnvInput`], which [`EnvInput::of`] takes from the request), so
//! that what a script is told is tested here, without a server.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

use axkit::plugin::{Context, DOCUMENT_ROOT};

use super::map::Script;
use super::{CGI_PASS_AUTH, PASS_ENV, SET_ENV};

/// The PATH scripts get unless SetEnv/PassEnv say otherwise (Apache's
/// default, minus the sbin directories).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What a script's environment is made of, as plain values.
pub(super) struct EnvInput<'a> {
    pub(super) method: &'a str,
    /// SERVER_PROTOCOL (`HTTP/1.1`).
    pub(super) protocol: &'a str,
    /// The request-target the client sent: after an internal redirect,
    /// that of the request redirected from (Apache takes REQUEST_URI from
    /// the request line, and a front controller serving as an
    /// ErrorDocument routes on it).
    pub(super) request_uri: &'a str,
    pub(super) query: Option<&'a str>,
    /// The request's header fields as sent, in order.
    pub(super) headers: Vec<(&'a str, &'a [u8])>,
    /// The host the client asked for (behind a trusted proxy, the one it
    /// forwarded), else the `<Server>`'s first name (else SERVER_NAME is
    /// the local address).
    pub(super) server_name: Option<&'a str>,
    pub(super) local: SocketAddr,
    /// The client (`Context::client`: behind a trusted proxy, the one it
    /// forwarded for), its port 0 when unknown, and how it connected.
    pub(super) client: SocketAddr,
    pub(super) https: bool,
    /// The port the client connected to (SERVER_PORT).
    pub(super) server_port: u16,
    /// Who the authentication hook said the client is, and how.
    pub(super) user: Option<&'a str>,
    pub(super) auth_type: Option<&'a str>,
    /// The notes `redirect.status` and `redirect.uri` the core leaves for
    /// the walk after an internal redirect.
    pub(super) redirect_status: Option<&'a str>,
    pub(super) redirect_uri: Option<&'a str>,
    pub(super) document_root: Option<&'a Path>,
    /// `CGIPassAuth`.
    pub(super) pass_auth: bool,
    /// `PassEnv` names (a list per directive) and `SetEnv` pairs.
    pub(super) pass_env: &'a [Vec<String>],
    pub(super) set_env: &'a [(String, String)],
}

impl<'a> EnvInput<'a> {
    /// The request's and the scope's values.
    pub(super) fn of(ctx: &'a Context) -> EnvInput<'a> {
        let req = &ctx.request;
        let config = ctx.config();
        let first_name = ctx.server().names.first().map(String::as_str);
        let client = ctx.client();
        EnvInput {
            method: req.method(),
            protocol: req.version().as_str(),
            request_uri: ctx.original_request().uri(),
            query: req.query(),
            headers: req.headers().collect(),
            server_name: ctx.host().or(first_name),
            local: ctx.conn.local,
            client: client.addr,
            https: client.https,
            server_port: client.port,
            user: ctx.user.as_deref(),
            auth_type: ctx.auth_type.as_deref(),
            redirect_status: ctx.notes.get("redirect.status").map(String::as_str),
            redirect_uri: ctx.notes.get("redirect.uri").map(String::as_str),
            document_root: config.get(&DOCUMENT_ROOT).as_deref(),
            pass_auth: *config.get(&CGI_PASS_AUTH),
            pass_env: config.list(&PASS_ENV),
            set_env: config.list(&SET_ENV),
        }
    }

    /// The request's body framing, from its headers (the core has already
    /// refused ambiguous ones): Some(Some(n)) for Content-Length,
    /// Some(None) for chunked, None without a body.
    pub(super) fn body(&self) -> Option<Option<u64>> {
        if self.header("Transfer-Encoding").is_some() {
            return Some(None);
        }
        let length = self.header("Content-Length")?;
        Some(Some(axkit_http::parse_content_length(length.as_bytes())?))
    }

    /// The first field named `name` (case-insensitive), if it is UTF-8.
    fn header(&self, name: &str) -> Option<&'a str> {
        let (_, value) = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        std::str::from_utf8(value).ok()
    }
}

/// The script's environment, for `input` and `script`; `server_env` looks
/// up the server's own variables (for PassEnv). `Err` names a variable
/// that would hold a NUL byte, which no environment can carry: nothing
/// from the wire can (the core refuses NUL in a request head, encoded or
/// not), but a plugin's REMOTE_USER could.
pub(super) fn environment(
    input: &EnvInput,
    script: &Script,
    server_env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<(OsString, OsString)>, String> {
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(40);
    let mut nul = None;
    let mut set = |name: &str, value: &[u8]| {
        if name.contains('\0') || value.contains(&0) {
            nul.get_or_insert_with(|| name.to_string());
        } else {
            env.push((name.into(), OsString::from_vec(value.to_vec())));
        }
    };
    set("GATEWAY_INTERFACE", b"CGI/1.1");
    set("SERVER_PROTOCOL", input.protocol.as_bytes());
    set(
        "SERVER_SOFTWARE",
        concat!("AxKit/", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    let local_ip = input.local.ip().to_string();
    set(
        "SERVER_NAME",
        input.server_name.unwrap_or(&local_ip).as_bytes(),
    );
    set("SERVER_ADDR", local_ip.as_bytes());
    set("SERVER_PORT", input.server_port.to_string().as_bytes());
    set("REMOTE_ADDR", input.client.ip().to_string().as_bytes());
    if input.client.port() != 0 {
        set("REMOTE_PORT", input.client.port().to_string().as_bytes());
    }
    set("REQUEST_METHOD", input.method.as_bytes());
    set("REQUEST_URI", input.request_uri.as_bytes());
    set("QUERY_STRING", input.query.unwrap_or("").as_bytes());
    set(
        "REQUEST_SCHEME",
        if input.https { b"https" } else { b"http" },
    );
    if input.https {
        set("HTTPS", b"on");
    }
    redirect_variables(input, &mut set);
    set("SCRIPT_NAME", script.script_name.as_bytes());
    set("SCRIPT_FILENAME", script.path.as_os_str().as_bytes());
    let root = input.document_root;
    set(
        "DOCUMENT_ROOT",
        root.map_or(&b""[..], |r| r.as_os_str().as_bytes()),
    );
    if !script.path_info.is_empty() {
        set("PATH_INFO", script.path_info.as_bytes());
        if let Some(root) = root {
            // Normal components only: never let a path replace the root.
            let mut translated = root.to_path_buf();
            for c in Path::new(&script.path_info).components() {
                if let Component::Normal(part) = c {
                    translated.push(part);
                }
            }
            set("PATH_TRANSLATED", translated.as_os_str().as_bytes());
        }
    }
    if let Some(length) = input.body() {
        if let Some(n) = length {
            set("CONTENT_LENGTH", n.to_string().as_bytes());
        }
        if let Some(t) = input.header("Content-Type") {
            set("CONTENT_TYPE", t.as_bytes());
        }
    }
    if let Some(user) = input.user {
        set("REMOTE_USER", user.as_bytes());
        if let Some(auth) = input.auth_type {
            set("AUTH_TYPE", auth.as_bytes());
        }
    }
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for &(name, value) in &input.headers {
        // `Proxy` would be HTTP_PROXY, which many HTTP clients take for
        // their proxy (httpoxy); a name with `_` would collide with its
        // `-` twin, which a proxy in front may have vetted.
        let skip = name.contains('_')
            || name.eq_ignore_ascii_case("proxy")
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || (!input.pass_auth
                && (name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("proxy-authorization")));
        if skip {
            continue;
        }
        let var = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        match headers.iter_mut().find(|(n, _)| *n == var) {
            Some((n, joined)) => {
                // Cookies are joined with `; ` (RFC 6265), the rest with `, `.
                joined.extend_from_slice(if n == "HTTP_COOKIE" { b"; " } else { b", " });
                joined.extend_from_slice(value);
            }
            None => headers.push((var, value.to_vec())),
        }
    }
    for (name, value) in &headers {
        set(name, value);
    }
    let mut path_set = false;
    for name in input.pass_env.iter().flatten() {
        if let Some(value) = server_env(name) {
            path_set |= name == "PATH";
            set(name, value.as_bytes());
        }
    }
    for (name, value) in input.set_env {
        path_set |= name == "PATH";
        set(name, value.as_bytes());
    }
    if !path_set {
        set("PATH", DEFAULT_PATH.as_bytes());
    }
    match nul {
        Some(name) => Err(name),
        None => Ok(env),
    }
}

/// REDIRECT_STATUS, and after an internal redirect (an ErrorDocument, a
/// script's `Location: /path`) REDIRECT_URL and REDIRECT_QUERY_STRING, as
/// Apache sets them: the status, decoded path and query of the request
/// redirected from, taken from the notes the core leaves for the new walk.
/// Without a redirect REDIRECT_STATUS is 200: PHP's CGI refuses to run
/// without it (its force-cgi-redirect check), and Apache and lighttpd set it.
fn redirect_variables(input: &EnvInput, set: &mut impl FnMut(&str, &[u8])) {
    let status = input.redirect_status;
    let status = status.and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
    set("REDIRECT_STATUS", status.to_string().as_bytes());
    // Notes are plugins' to write: a NUL could not be passed anyway.
    let Some(uri) = input.redirect_uri.filter(|u| !u.contains('\0')) else {
        return;
    };
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    let decoded = axkit_http::normalize_path(path);
    set(
        "REDIRECT_URL",
        decoded.as_deref().unwrap_or(path).as_bytes(),
    );
    if let Some(query) = query {
        set("REDIRECT_QUERY_STRING", query.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axkit::plugin::Rule;

    use super::super::map::{alias_script, matched_script_name};
    use super::*;

    /// A GET for `/cgi-bin/env?x=1` with these header fields, on a server
    /// whose DocumentRoot is /srv/www.
    fn input<'a>(headers: &[(&'a str, &'a [u8])]) -> EnvInput<'a> {
        EnvInput {
            method: "GET",
            protocol: "HTTP/1.1",
            request_uri: "/cgi-bin/env?x=1",
            query: Some("x=1"),
            headers: headers.to_vec(),
            server_name: Some("example.org"),
            local: "127.0.0.1:8080".parse().unwrap(),
            client: "192.0.2.7:40000".parse().unwrap(),
            https: false,
            server_port: 8080,
            user: None,
            auth_type: None,
            redirect_status: None,
            redirect_uri: None,
            document_root: Some(Path::new("/srv/www")),
            pass_auth: false,
            pass_env: &[],
            set_env: &[],
        }
    }

    fn script(script_name: &str, path_info: &str) -> Script {
        Script {
            path: PathBuf::from("/srv/cgi-bin/env"),
            root: None,
            script_name: script_name.to_string(),
            path_info: path_info.to_string(),
        }
    }

    /// The server's own environment, for PassEnv.
    fn server_env(name: &str) -> Option<OsString> {
        match name {
            "HOME" => Some("/home/axkit".into()),
            "PATH" => Some("/opt/bin:/usr/bin".into()),
            "SECRET" => Some("hunter2".into()),
            _ => None,
        }
    }

    /// The environment as text, in order; a name set twice (SetEnv over a
    /// meta-variable) shows twice, the last one winning as in `execve`.
    fn env_of(input: &EnvInput, script: &Script) -> Vec<(String, String)> {
        let env = environment(input, script, server_env).expect("no NUL");
        env.into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    fn var<'e>(env: &'e [(String, String)], name: &str) -> Option<&'e str> {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn names(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn a_plain_get_has_the_meta_variables_and_nothing_else() {
        let env = env_of(
            &input(&[("Host", b"example.org")]),
            &script("/cgi-bin/env", ""),
        );
        let software = concat!("AxKit/", env!("CARGO_PKG_VERSION"));
        let want = [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", software),
            ("SERVER_NAME", "example.org"),
            ("SERVER_ADDR", "127.0.0.1"),
            ("SERVER_PORT", "8080"),
            ("REMOTE_ADDR", "192.0.2.7"),
            ("REMOTE_PORT", "40000"),
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/cgi-bin/env?x=1"),
            ("QUERY_STRING", "x=1"),
            ("REQUEST_SCHEME", "http"),
            ("REDIRECT_STATUS", "200"),
            ("SCRIPT_NAME", "/cgi-bin/env"),
            ("SCRIPT_FILENAME", "/srv/cgi-bin/env"),
            ("DOCUMENT_ROOT", "/srv/www"),
            ("HTTP_HOST", "example.org"),
            ("PATH", DEFAULT_PATH),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(env, want);

        // TLS; no Host and no server name: the local address.
        let mut tls = input(&[]);
        tls.https = true;
        tls.server_name = None;
        let env = env_of(&tls, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "REQUEST_SCHEME"), Some("https"));
        assert_eq!(var(&env, "HTTPS"), Some("on"));
        assert_eq!(var(&env, "SERVER_NAME"), Some("127.0.0.1"));
    }

    #[test]
    fn httpoxy_no_proxy_header_becomes_http_proxy() {
        for pass_auth in [false, true] {
            let mut req = input(&[
                ("Proxy", b"http://evil.example:3128/"),
                ("PROXY", b"http://evil.example:3129/"),
                ("proxy", b"http://evil.example:3130/"),
                ("Proxy_", b"http://evil.example:3131/"),
                ("Proxy-Connection", b"keep-alive"),
            ]);
            req.pass_auth = pass_auth;
            let env = env_of(&req, &script("/cgi-bin/env", ""));
            assert!(
                !names(&env)
                    .iter()
                    .any(|n| *n == "HTTP_PROXY" || *n == "HTTP_PROXY_"),
                "{env:?}"
            );
            // Only the bare name is refused.
            assert_eq!(var(&env, "HTTP_PROXY_CONNECTION"), Some("keep-alive"));
        }
    }

    #[test]
    fn header_names_with_underscores_are_dropped_and_their_dash_twin_kept() {
        for headers in [
            [
                ("X_Forwarded_User", &b"forged"[..]),
                ("X-Forwarded-User", b"alice"),
            ],
            [
                ("X-Forwarded-User", b"alice"),
                ("x_forwarded_user", b"forged"),
            ],
        ] {
            let env = env_of(&input(&headers), &script("/cgi-bin/env", ""));
            assert_eq!(var(&env, "HTTP_X_FORWARDED_USER"), Some("alice"));
            let count = names(&env)
                .iter()
                .filter(|n| **n == "HTTP_X_FORWARDED_USER")
                .count();
            assert_eq!(count, 1, "{env:?}");
        }
        // Alone, too: `_` headers never reach the script.
        let env = env_of(&input(&[("Content_Length", b"5")]), &script("/s", ""));
        assert!(
            !names(&env).iter().any(|n| n.contains("CONTENT_LENGTH")),
            "{env:?}"
        );
    }

    #[test]
    fn credentials_are_passed_only_with_cgi_pass_auth() {
        let headers: [(&str, &[u8]); 2] = [
            ("Authorization", b"Basic dTpw"),
            ("proxy-authorization", b"Basic cDpx"),
        ];
        let env = env_of(&input(&headers), &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "HTTP_AUTHORIZATION"), None);
        assert_eq!(var(&env, "HTTP_PROXY_AUTHORIZATION"), None);

        let mut on = input(&headers);
        on.pass_auth = true;
        let env = env_of(&on, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "HTTP_AUTHORIZATION"), Some("Basic dTpw"));
        assert_eq!(var(&env, "HTTP_PROXY_AUTHORIZATION"), Some("Basic cDpx"));

        // What the authentication hook said, whatever CGIPassAuth says;
        // AUTH_TYPE only with a user.
        let mut authed = input(&[]);
        authed.user = Some("alice");
        authed.auth_type = Some("Basic");
        let env = env_of(&authed, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "REMOTE_USER"), Some("alice"));
        assert_eq!(var(&env, "AUTH_TYPE"), Some("Basic"));
        authed.user = None;
        let env = env_of(&authed, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "AUTH_TYPE"), None);
    }

    #[test]
    fn repeated_headers_are_joined_cookies_with_a_semicolon() {
        let env = env_of(
            &input(&[
                ("X-Foo", b"1"),
                ("Cookie", b"a=1"),
                ("x-foo", b"2"),
                ("cookie", b"b=2"),
                ("X-FOO", b"3"),
            ]),
            &script("/cgi-bin/env", ""),
        );
        assert_eq!(var(&env, "HTTP_X_FOO"), Some("1, 2, 3"));
        assert_eq!(var(&env, "HTTP_COOKIE"), Some("a=1; b=2"));
        assert_eq!(
            names(&env).iter().filter(|n| **n == "HTTP_X_FOO").count(),
            1
        );
    }

    #[test]
    fn body_variables_come_from_the_framing_never_as_http_fields() {
        let ctype: (&str, &[u8]) = ("Content-Type", b"application/x-www-form-urlencoded");
        let length = env_of(
            &input(&[("Content-Length", b"3"), ctype]),
            &script("/cgi-bin/env", ""),
        );
        assert_eq!(var(&length, "CONTENT_LENGTH"), Some("3"));
        assert_eq!(
            var(&length, "CONTENT_TYPE"),
            Some("application/x-www-form-urlencoded")
        );
        // Chunked: streamed to EOF, no length.
        let chunked = env_of(
            &input(&[("Transfer-Encoding", b"chunked"), ctype]),
            &script("/cgi-bin/env", ""),
        );
        assert_eq!(var(&chunked, "CONTENT_LENGTH"), None);
        assert!(var(&chunked, "CONTENT_TYPE").is_some());
        // No body: no CONTENT_*, even with a Content-Type.
        let none = env_of(&input(&[ctype]), &script("/cgi-bin/env", ""));
        assert_eq!(var(&none, "CONTENT_TYPE"), None);
        for env in [&length, &chunked, &none] {
            for field in [
                "HTTP_CONTENT_LENGTH",
                "HTTP_CONTENT_TYPE",
                "HTTP_TRANSFER_ENCODING",
            ] {
                assert_eq!(var(env, field), None, "{env:?}");
            }
        }
    }

    #[test]
    fn redirect_status_is_200_unless_an_internal_redirect_says_otherwise() {
        let env = env_of(&input(&[]), &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "REDIRECT_STATUS"), Some("200"));
        assert_eq!(var(&env, "REDIRECT_URL"), None);
        assert_eq!(var(&env, "REDIRECT_QUERY_STRING"), None);

        // An ErrorDocument for a 404 on `/no%20such?x=1`: the page runs as
        // a GET of its own URI, but REQUEST_URI stays what the client sent.
        let mut redirected = input(&[]);
        redirected.request_uri = "/no%20such?x=1";
        redirected.query = None;
        redirected.redirect_status = Some("404");
        redirected.redirect_uri = Some("/no%20such?x=1");
        let env = env_of(&redirected, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "REDIRECT_STATUS"), Some("404"));
        assert_eq!(var(&env, "REDIRECT_URL"), Some("/no such"));
        assert_eq!(var(&env, "REDIRECT_QUERY_STRING"), Some("x=1"));
        assert_eq!(var(&env, "REQUEST_URI"), Some("/no%20such?x=1"));
        assert_eq!(var(&env, "QUERY_STRING"), Some(""));

        // Without a query, no REDIRECT_QUERY_STRING; a status note that is
        // not a number is no status.
        redirected.redirect_status = Some("404; rm -rf /");
        redirected.redirect_uri = Some("/file.txt");
        let env = env_of(&redirected, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "REDIRECT_STATUS"), Some("200"));
        assert_eq!(var(&env, "REDIRECT_URL"), Some("/file.txt"));
        assert_eq!(var(&env, "REDIRECT_QUERY_STRING"), None);
    }

    #[test]
    fn set_env_and_pass_env_and_the_default_path() {
        let pass = [vec!["HOME".to_string(), "AXKIT_NOT_SET".to_string()]];
        let set = [("FOO".to_string(), "bar baz".to_string())];
        let mut req = input(&[]);
        req.pass_env = &pass;
        req.set_env = &set;
        let env = env_of(&req, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "HOME"), Some("/home/axkit"));
        assert_eq!(var(&env, "FOO"), Some("bar baz"));
        assert_eq!(var(&env, "PATH"), Some(DEFAULT_PATH));
        // Nothing of the server's own environment but what PassEnv names.
        assert_eq!(var(&env, "AXKIT_NOT_SET"), None);
        assert_eq!(var(&env, "SECRET"), None);

        // PassEnv PATH: the server's, and no default after it.
        let pass = [vec!["PATH".to_string()]];
        let mut req = input(&[]);
        req.pass_env = &pass;
        let env = env_of(&req, &script("/cgi-bin/env", ""));
        assert_eq!(names(&env).iter().filter(|n| **n == "PATH").count(), 1);
        assert_eq!(var(&env, "PATH"), Some("/opt/bin:/usr/bin"));

        // SetEnv PATH wins over PassEnv PATH (it comes later).
        let set = [("PATH".to_string(), "/only/here".to_string())];
        req.set_env = &set;
        let env = env_of(&req, &script("/cgi-bin/env", ""));
        assert_eq!(var(&env, "PATH"), Some("/only/here"));
        assert!(!env.iter().any(|(_, v)| v == DEFAULT_PATH), "{env:?}");
    }

    #[test]
    fn no_nul_byte_reaches_a_variable() {
        let user = |user| {
            let mut req = input(&[]);
            req.user = Some(user);
            environment(&req, &script("/cgi-bin/env", ""), server_env)
        };
        assert_eq!(user("al\0ice").unwrap_err(), "REMOTE_USER");
        assert!(user("alice").is_ok());
        let mut req = input(&[]);
        req.user = Some("alice");
        req.auth_type = Some("Basic\0");
        assert_eq!(
            environment(&req, &script("/s", ""), server_env).unwrap_err(),
            "AUTH_TYPE"
        );
        // The core refuses a NUL in a request head; were one to get here,
        // the script would still not run with it.
        let req = input(&[("X-A", b"a\0b")]);
        assert_eq!(
            environment(&req, &script("/s", ""), server_env).unwrap_err(),
            "HTTP_X_A"
        );
        let set = [("FOO".to_string(), "a\0b".to_string())];
        let mut req = input(&[]);
        req.set_env = &set;
        assert_eq!(
            environment(&req, &script("/s", ""), server_env).unwrap_err(),
            "FOO"
        );
        // A note is a plugin's to write: one with a NUL is left out, as
        // if there had been no redirect.
        let mut req = input(&[]);
        req.redirect_status = Some("404");
        req.redirect_uri = Some("/a\0b");
        let env = env_of(&req, &script("/s", ""));
        assert_eq!(var(&env, "REDIRECT_URL"), None);
        assert_eq!(var(&env, "REDIRECT_STATUS"), Some("404"));
    }

    /// The paths a ScriptAlias makes of a URL, through the real mapping
    /// (a directory of scripts, one program) into the environment.
    #[test]
    fn script_name_path_info_and_path_translated_for_script_alias() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("cgi-bin");
        std::fs::create_dir_all(bin.join("sub")).unwrap();
        std::fs::write(bin.join("env"), "").unwrap();
        std::fs::write(bin.join("sub/deep"), "").unwrap();
        std::fs::write(dir.path().join("backend"), "").unwrap();
        let aliases = [
            ("/cgi-bin/".to_string(), bin.clone()),
            ("/git".to_string(), dir.path().join("backend")),
        ];
        let mapped = |path: &str| {
            let (script, _) = alias_script(&aliases, path, Rule::Beneath)
                .expect("an alias matches")
                .expect("a script");
            let env = env_of(&input(&[]), &script);
            let get = |name| var(&env, name).map(str::to_string);
            (get("SCRIPT_NAME"), get("PATH_INFO"), get("PATH_TRANSLATED"))
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(mapped("/cgi-bin/env"), (some("/cgi-bin/env"), None, None));
        assert_eq!(
            mapped("/cgi-bin/env/a b/c"),
            (some("/cgi-bin/env"), some("/a b/c"), some("/srv/www/a b/c"))
        );
        assert_eq!(
            mapped("/cgi-bin/env/x/"),
            (some("/cgi-bin/env"), some("/x/"), some("/srv/www/x"))
        );
        assert_eq!(
            mapped("/cgi-bin/sub/deep/more"),
            (
                some("/cgi-bin/sub/deep"),
                some("/more"),
                some("/srv/www/more")
            )
        );
        // An alias naming one program: the rest of the URL is PATH_INFO.
        assert_eq!(
            mapped("/git/repo.git/info/refs"),
            (
                some("/git"),
                some("/repo.git/info/refs"),
                some("/srv/www/repo.git/info/refs")
            )
        );
        assert_eq!(mapped("/git"), (some("/git"), None, None));
        // What the URL names that is no script: 404; a directory: 403.
        assert_eq!(
            alias_script(&aliases, "/cgi-bin/nope", Rule::Beneath).map(|r| r.err()),
            Some(Some(404))
        );
        assert_eq!(
            alias_script(&aliases, "/cgi-bin/sub/", Rule::Beneath).map(|r| r.err()),
            Some(Some(403))
        );
        // Whole segments for a prefix without a trailing `/`.
        assert!(alias_script(&aliases, "/github", Rule::Beneath).is_none());
    }

    #[test]
    fn script_name_path_info_and_path_translated_for_cgi_match() {
        let file = Path::new("/srv/www/app/index.cgi");
        let env = |path: &str, path_info: &str| {
            let script = script(&matched_script_name(path, path_info, file), path_info);
            let env = env_of(&input(&[]), &script);
            let get = |name| var(&env, name).map(str::to_string);
            (get("SCRIPT_NAME"), get("PATH_INFO"), get("PATH_TRANSLATED"))
        };
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            env("/app/index.cgi", ""),
            (some("/app/index.cgi"), None, None)
        );
        assert_eq!(
            env("/app/index.cgi/x/y", "/x/y"),
            (some("/app/index.cgi"), some("/x/y"), some("/srv/www/x/y"))
        );
        // A directory index: the directory's URL plus the file's name.
        assert_eq!(env("/app/", ""), (some("/app/index.cgi"), None, None));
    }

    #[test]
    fn path_translated_stays_beneath_the_document_root() {
        let env = env_of(&input(&[]), &script("/s", "/../../etc/passwd"));
        assert_eq!(var(&env, "PATH_INFO"), Some("/../../etc/passwd"));
        assert_eq!(var(&env, "PATH_TRANSLATED"), Some("/srv/www/etc/passwd"));
        // Without a DocumentRoot there is nothing to translate to.
        let mut req = input(&[]);
        req.document_root = None;
        let env = env_of(&req, &script("/s", "/x"));
        assert_eq!(var(&env, "PATH_INFO"), Some("/x"));
        assert_eq!(var(&env, "PATH_TRANSLATED"), None);
        assert_eq!(var(&env, "DOCUMENT_ROOT"), Some(""));
    }
}
