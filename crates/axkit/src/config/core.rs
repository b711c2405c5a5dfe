//! The core's own directives: the structure of a config (`<Server>`,
//! `<Location>`, `Include`, `Plugin`, listen addresses and names), which
//! the loader gives their meaning, and the typed keys of the process,
//! protocol and logging settings the server reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cidr::Cidr;
use super::directive::{Args, Directive, Scopes, ValueType};
use super::key::{Key, List};
use super::snapshot::Expect;
use crate::plugin::Level;

const GLOBAL: Scopes = Scopes::GLOBAL;
const GLOBAL_SERVER: Scopes = Scopes::GLOBAL.or(Scopes::SERVER);

/// Number of worker processes; 0 means one per CPU.
pub static WORKERS: Key<usize> = Key::new("Workers")
    .scopes(GLOBAL)
    .default("0")
    .doc("Number of worker processes; 0 means one per CPU");

/// Connections one worker serves at once; 0: seven eighths of the
/// open-file limit.
pub static MAX_CONNECTIONS: Key<usize> =
    Key::new("MaxConnections").scopes(GLOBAL).default("0").doc(
        "Connections one worker serves at once (nginx's worker_connections); at the \
         limit a new client takes the place of the longest-idle keep-alive connection \
         (or of one silent for 3s, else of the oldest event stream or long poll), else \
         waits for the other workers or for room. 0: \
         seven eighths of the open-file limit, the rest kept for files, pipes and logs",
    );

pub static SHUTDOWN_TIMEOUT: Key<Duration> = Key::new("ShutdownTimeout")
    .scopes(GLOBAL)
    .default("30s")
    .doc("How long a graceful shutdown waits for requests in flight (0: it closes them at once)");

/// `User NAME`: the account the workers (and so CGI scripts and every
/// process they start) run as; see `server/privileges.rs`.
pub static USER: Key<Option<Account>> = Key::parsed("User", |args| match args {
    [name] => crate::server::privileges::lookup_user(name).map(Some),
    _ => Err("expected one user name".into()),
})
.optional()
.scopes(GLOBAL)
.doc(
    "Run the workers (and the CGI scripts and programs they start) as this user, with its \
     supplementary groups; the master keeps root to bind, open logs and read the config. \
     Needs a master started as root",
);

/// `Group NAME`: the workers' group, instead of `User`'s primary group.
pub static GROUP: Key<Option<Group>> = Key::parsed("Group", |args| match args {
    [name] => crate::server::privileges::lookup_group(name).map(Some),
    _ => Err("expected one group name".into()),
})
.optional()
.scopes(GLOBAL)
.doc("The workers' group (default: User's primary group); needs User");

/// `PidFile FILE`: where the master writes its process id.
pub static PID_FILE: Key<Option<PathBuf>> = Key::new("PidFile")
    .scopes(GLOBAL)
    .expect(Expect::InDirectory)
    .doc(
        "File the master writes its process id to once its workers serve (removed at exit; \
     read at start only); a master refuses to start while another live one holds it",
    );

/// A user account, looked up when the config is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// A group, looked up when the config is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// `ServerRoot DIR`: what relative paths in the config are taken from
/// (through [`FileReader::path`](super::FileReader::path): the loader's for
/// path-valued directives, plugins' parse functions' for the paths inside
/// their arguments).
pub static SERVER_ROOT: Key<Option<PathBuf>> = Key::parsed("ServerRoot", |args| match args {
    [dir] if Path::new(dir).is_absolute() => Ok(Some(PathBuf::from(dir))),
    [dir] => Err(format!("expected an absolute directory, got {dir:?}")),
    _ => Err("expected one directory".into()),
})
.optional()
.scopes(GLOBAL)
.doc(
    "Absolute directory that every relative path in the config is taken from (DocumentRoot, \
     PluginDir, LogFile, RequestLog, PidFile, TemplateDir, ScriptAlias, SessionKey, sqlite: \
     URLs, AuthUserFile…); default: the working directory. `Include` stays relative to the \
     including file",
);

pub static PLUGIN_DIR: List<PathBuf> = List::new("PluginDir")
    .scopes(GLOBAL)
    .doc("Directory searched for script plugins named by `Plugin`");

/// The least severe level the logging plugins write.
pub static LOG_LEVEL: Key<Level> = Key::parsed("LogLevel", |args| match args {
    [word] => Level::parse(word).ok_or_else(|| {
        format!(
            "expected a log level (LOGDEBUG, LOGINFO, LOGNOTICE, LOGWARN, LOGERROR, LOGCRIT, \
             LOGALERT, LOGEMERG, or debug…emerg), got {word:?}"
        )
    }),
    _ => Err("expected one log level".into()),
})
.one_of(&[
    "LOGDEBUG",
    "LOGINFO",
    "LOGNOTICE",
    "LOGWARN",
    "LOGERROR",
    "LOGCRIT",
    "LOGALERT",
    "LOGEMERG",
    "debug",
    "info",
    "notice",
    "warn",
    "warning",
    "error",
    "err",
    "crit",
    "alert",
    "emerg",
])
.scopes(GLOBAL)
.default("LOGWARN")
.doc("Least severe log level written by the logging plugins (AxKit2 names or plain ones)");

/// `Trace On`: log every hook call of the requests of this scope (see
/// `server/hooks.rs`).
pub static TRACE: Key<bool> = Key::new("Trace").default("off").doc(
    "Log, for every request here, each plugin called at each hook with its outcome and time \
     (lines `trace …` at level notice, written whatever LogLevel says)",
);

pub static STACK_TRACE: Key<bool> = Key::new("StackTrace")
    .default("off")
    .doc("Put the failing plugin, hook and message on 500 pages (never in production)");

/// The `Server` response header's value; `None` for `Off` (no header).
pub static SERVER_TOKEN: Key<Option<String>> = Key::parsed("ServerToken", |args| match args {
    [off] if off.eq_ignore_ascii_case("off") || off.is_empty() => Ok(None),
    [token] => Ok(Some(token.to_string())),
    _ => Err("expected one word".into()),
})
.scopes(GLOBAL_SERVER)
.default("AxKit")
.doc("Value of the Server response header; `Off` sends no header");

pub static MAX_REQUEST_LINE: Key<u64> = Key::new("MaxRequestLine")
    .scopes(GLOBAL_SERVER)
    .default("8K")
    .doc("Longest request line accepted (414 beyond)");

pub static MAX_HEADER_SIZE: Key<u64> = Key::new("MaxHeaderSize")
    .scopes(GLOBAL_SERVER)
    .default("16K")
    .doc("Largest total size of the request headers (431 beyond)");

pub static MAX_HEADERS: Key<usize> = Key::new("MaxHeaders")
    .scopes(GLOBAL_SERVER)
    .default("100")
    .doc("Most request header lines accepted (431 beyond)");

pub static HEADER_TIMEOUT: Key<Duration> = Key::new("HeaderTimeout")
    .scopes(GLOBAL_SERVER)
    .default("30s")
    .nonzero()
    .doc("Time allowed to receive the request line and headers (above 0)");

pub static KEEPALIVE_TIMEOUT: Key<Duration> = Key::new("KeepAliveTimeout")
    .scopes(GLOBAL_SERVER)
    .default("60s")
    .doc(
        "How long an idle keep-alive connection is kept open (0: no keep-alive, as KeepAlive off)",
    );

pub static KEEPALIVE: Key<bool> = Key::new("KeepAlive")
    .scopes(GLOBAL_SERVER)
    .default("on")
    .doc("Whether connections are kept open between requests");

pub static MAX_KEEPALIVE_REQUESTS: Key<usize> = Key::new("MaxKeepAliveRequests")
    .scopes(GLOBAL_SERVER)
    .default("1000")
    .doc("Requests served on one connection before closing it; 0 = unlimited");

pub static MAX_REQUEST_BODY: Key<u64> = Key::new("MaxRequestBody")
    .default("1M")
    .doc("Largest request body accepted (413 beyond)");

pub static BODY_TIMEOUT: Key<Duration> = Key::new("BodyTimeout")
    .default("60s")
    .nonzero()
    .doc("Time allowed between two reads of the request body (above 0)");

pub static SEND_TIMEOUT: Key<Duration> = Key::new("SendTimeout")
    .default("60s")
    .nonzero()
    .doc("Time allowed for the client to accept each write of the response (above 0)");

/// The front proxies whose word about the client is taken (see
/// `Context::client`); every line adds to the list.
pub static TRUSTED_PROXY: List<Vec<Cidr>> = List::new("TrustedProxy").scopes(GLOBAL_SERVER).doc(
    "Addresses (ADDR or ADDR/BITS, IPv4 or IPv6) of front proxies whose forwarding headers \
         (TrustedProxyHeader) give the client's address, scheme and host; from any other peer \
         those headers are ignored",
);

/// Who may ask for a request to be traced (`X-AxKit-Trace: 1`); every
/// line adds to the list.
pub static TRACE_FROM: List<Vec<Cidr>> = List::new("TraceFrom").scopes(GLOBAL_SERVER).doc(
    "Client addresses (ADDR or ADDR/BITS) whose requests with `X-AxKit-Trace: 1` are traced as \
     under `Trace On`; the header from any other client is ignored",
);

/// Who may connect to a `proxy-protocol` listener; every line adds to the
/// list.
pub static PROXY_PROTOCOL_FROM: List<Vec<Cidr>> =
    List::new("ProxyProtocolFrom").scopes(GLOBAL_SERVER).doc(
        "Peers (ADDR or ADDR/BITS) that may connect to a `proxy-protocol` listener (the settings \
         of the first <Server> on it); a connection from any other is closed before its header \
         is read, and logged. Not written: any peer, so listen where only the proxy reaches",
    );

/// Which forwarding headers a trusted proxy's word is read from.
pub static TRUSTED_PROXY_HEADER: Key<String> = Key::new("TrustedProxyHeader")
    .one_of(&["X-Forwarded-For", "Forwarded"])
    .scopes(GLOBAL_SERVER)
    .default("X-Forwarded-For")
    .doc(
        "X-Forwarded-For (with X-Forwarded-Proto, -Host, -Port) or Forwarded (RFC 7239): the \
         one header family the trusted proxies set; the other is ignored",
    );

/// The directives the core understands. `Server` and `Location` are listed
/// too (as blocks) so that scope errors, name clashes and `--directives`
/// treat them like everything else; the loader gives them, and the other
/// structural directives, their meaning.
pub fn core_directives() -> Vec<Directive> {
    use ValueType as T;
    let server = Scopes::SERVER;
    let all = Scopes::ALL;
    vec![
        // Structure.
        Directive::new("Server", T::String)
            .args(Args::Block)
            .scopes(GLOBAL)
            .doc("A virtual server; optional arguments are listen addresses, as for Listen"),
        Directive::new("Location", T::String)
            .args(Args::Block)
            .scopes(server | Scopes::LOCATION)
            .doc("Settings for URL paths under a prefix; the longest matching prefix wins"),
        Directive::new("Include", T::Path)
            .scopes(all)
            .doc("Read another config file here; `*` and `?` in the file name include every match, sorted"),
        Directive::new("Plugin", T::String)
            .scopes(all)
            .append()
            .doc("Load a plugin in this scope"),
        // Process.
        WORKERS.declare(),
        MAX_CONNECTIONS.declare(),
        SHUTDOWN_TIMEOUT.declare(),
        SERVER_ROOT.declare(),
        PLUGIN_DIR.declare(),
        USER.declare(),
        GROUP.declare(),
        PID_FILE.declare(),
        // Virtual servers.
        Directive::new("Port", T::Integer)
            .scopes(server)
            .append()
            .doc("Listen on 0.0.0.0:PORT"),
        Directive::new("Listen", T::String)
            .args(Args::Many)
            .scopes(server)
            .append()
            .doc(
                "Listen on ADDR:PORT, [IPV6]:PORT or PORT (= 0.0.0.0:PORT); a last word \
                 `proxy-protocol` makes every connection start with a PROXY protocol header",
            ),
        Directive::new("ServerName", T::String)
            .scopes(server)
            .doc("Host name this server answers to (name-based virtual hosting)"),
        Directive::new("ServerAlias", T::String)
            .args(Args::Many)
            .scopes(server)
            .append()
            .doc("More host names for this server; `*.example.com` matches any subdomain"),
        TRUSTED_PROXY.declare(),
        TRUSTED_PROXY_HEADER.declare(),
        TRACE_FROM.declare(),
        PROXY_PROTOCOL_FROM.declare(),
        // Logging and error pages.
        LOG_LEVEL.declare(),
        TRACE.declare(),
        STACK_TRACE.declare(),
        // Protocol limits.
        SERVER_TOKEN.declare(),
        MAX_REQUEST_LINE.declare(),
        MAX_HEADER_SIZE.declare(),
        MAX_HEADERS.declare(),
        HEADER_TIMEOUT.declare(),
        KEEPALIVE_TIMEOUT.declare(),
        KEEPALIVE.declare(),
        MAX_KEEPALIVE_REQUESTS.declare(),
        MAX_REQUEST_BODY.declare(),
        BODY_TIMEOUT.declare(),
        SEND_TIMEOUT.declare(),
    ]
}
