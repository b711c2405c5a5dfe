//! The directives: `SessionKey NAME FILE` (repeatable, global),
//! `SessionStore`, `SessionCookie`, `SessionTimeout`, `SessionMaxAge` and
//! `SessionEncrypt` (any scope), with their parsing. Everything that can
//! be checked without a request is checked when the config loads, so that
//! `axkit --check` reports it: a key file that cannot be read or is too
//! short, a store that names no database or zone (in
//! [`SessionSource::load_files`](crate::SessionSource)), cookie attributes
//! that contradict each other.
//!
//! A key is read from its file through the config's `FileReader`, like
//! `DatabaseFile`'s URL: the master records what it read in the config
//! snapshot, so a restarted worker uses the key the master loaded, and a
//! changed file takes effect on reload (SIGHUP). A relative FILE is taken
//! from `ServerRoot`. No message quotes a key.

use std::sync::Arc;
use std::time::Duration;

use axkit::config::{parse, Args, FileReader, Key, List, Scopes};
use hkdf::Hkdf;
use sha2::Sha256;

/// The fewest bytes a key file may hold (after trailing white space).
pub const MIN_KEY_LEN: usize = 32;

/// The most bytes of a key name, which every cookie carries.
const MAX_KEY_NAME: usize = 32;

/// `SessionKey NAME FILE`: a key for signing and encrypting, read from
/// FILE. Several may be written: the first signs and encrypts what is
/// written from now on, every one of them is tried on what comes in.
pub static SESSION_KEY: List<SessionKey> = List::parsed_with_files("SessionKey", parse_key)
    .args(Args::Range(2, 2))
    .scopes(Scopes::GLOBAL)
    .doc(
        "A session key: NAME, then a FILE holding at least 32 bytes of secret; the first \
         key signs and encrypts, every key verifies (write a new one first to rotate)",
    );

/// `SessionStore cookie|shared[:ZONE]|redis:NAME|sqlite:NAME`.
pub static SESSION_STORE: Key<Store> = Key::parsed("SessionStore", parse_store)
    .default("cookie")
    .doc(
        "Where session data lives: cookie (in the cookie itself), shared[:ZONE] (a shared \
         zone, `default` unless named), redis:NAME or sqlite:NAME (a Database)",
    );

/// `SessionCookie NAME [ATTRIBUTE=VALUE…]`.
pub static SESSION_COOKIE: Key<CookieSpec> = Key::parsed("SessionCookie", parse_cookie)
    .args(Args::Range(1, 7))
    .default("axkit_session")
    .doc(
        "The session cookie's name, then attributes: Path=/ Domain= SameSite=Lax|Strict|None \
         Secure=auto|on|off HttpOnly=on|off Persistent=off|on",
    );

/// `SessionTimeout DURATION`: idle time after which a session is over.
pub static SESSION_TIMEOUT: Key<Duration> = Key::new("SessionTimeout")
    .default("1h")
    .doc("A session unused this long is over (0: no idle limit)");

/// `SessionMaxAge DURATION`: a session's whole life, however busy.
pub static SESSION_MAX_AGE: Key<Duration> = Key::new("SessionMaxAge")
    .default("24h")
    .doc("A session is over this long after it began, used or not (0: no limit)");

/// `SessionEncrypt On|Off`: whether a cookie session's data is encrypted
/// (else only signed: the client can read it, not change it).
pub static SESSION_ENCRYPT: Key<bool> = Key::new("SessionEncrypt")
    .default("on")
    .doc("Encrypt cookie sessions (Off: signed only, so the client can read its session)");

/// One `SessionKey`: its name and the keys derived from its secret (with
/// HKDF-SHA256, one per use, so that a signature cannot be replayed as a
/// CSRF token, say). Its `Debug` shows the name alone.
#[derive(Clone)]
pub struct SessionKey(Arc<KeyMaterial>);

pub(crate) struct KeyMaterial {
    pub name: String,
    /// HMAC-SHA256 key for signed cookies and session ids.
    pub sign: [u8; 32],
    /// XChaCha20-Poly1305 key for encrypted cookies.
    pub encrypt: [u8; 32],
    /// HMAC-SHA256 key for CSRF tokens.
    pub csrf: [u8; 32],
}

impl SessionKey {
    /// A key from its name and secret (at least [`MIN_KEY_LEN`] bytes),
    /// for a program that keeps its secrets elsewhere than in files.
    pub fn new(name: &str, secret: &[u8]) -> Result<SessionKey, String> {
        check_key_name(name)?;
        if secret.len() < MIN_KEY_LEN {
            return Err(format!(
                "a session key needs at least {MIN_KEY_LEN} bytes of secret, got {}; make one \
                 with `head -c 32 /dev/urandom | base64 > FILE`",
                secret.len()
            ));
        }
        let hk = Hkdf::<Sha256>::new(Some(b"axkit-session"), secret);
        let derive = |info: &[u8]| {
            let mut out = [0u8; 32];
            hk.expand(info, &mut out)
                .expect("32 bytes is a valid HKDF-SHA256 length");
            out
        };
        Ok(SessionKey(Arc::new(KeyMaterial {
            name: name.to_string(),
            sign: derive(b"sign v1"),
            encrypt: derive(b"encrypt v1"),
            csrf: derive(b"csrf v1"),
        })))
    }

    /// The name the config gave it (written in every cookie it signs).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub(crate) fn material(&self) -> &KeyMaterial {
        &self.0
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SessionKey").field(&self.0.name).finish()
    }
}

fn check_key_name(name: &str) -> Result<(), String> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if name.is_empty() || name.len() > MAX_KEY_NAME || !name.bytes().all(plain) {
        return Err(format!(
            "a key name is 1 to {MAX_KEY_NAME} letters, digits, `_` or `-` (then the FILE)"
        ));
    }
    Ok(())
}

fn parse_key(args: &[&str], files: &mut FileReader<'_>) -> Result<SessionKey, String> {
    let [name, path] = args else {
        return Err("expected SessionKey NAME FILE".into());
    };
    check_key_name(name)?;
    let (path, bytes) = files.required_file(path)?;
    let shown = path.display();
    // A key written with `echo` or an editor ends with a line break,
    // which is not part of the secret.
    let secret = bytes.trim_ascii_end();
    SessionKey::new(name, secret).map_err(|e| format!("{shown}: {e}"))
}

/// Where a session's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// In the cookie itself, signed (and encrypted unless
    /// `SessionEncrypt Off`).
    Cookie,
    /// In the shared zone of that name.
    Shared(String),
    /// In the Redis database of that name.
    Redis(String),
    /// In the SQLite database of that name.
    Sqlite(String),
}

impl Store {
    /// Whether the data lives on the server (the cookie holding only an
    /// id).
    pub fn is_server_side(&self) -> bool {
        !matches!(self, Store::Cookie)
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Cookie => f.write_str("cookie"),
            Store::Shared(zone) => write!(f, "shared:{zone}"),
            Store::Redis(name) => write!(f, "redis:{name}"),
            Store::Sqlite(name) => write!(f, "sqlite:{name}"),
        }
    }
}

fn parse_store(args: &[&str]) -> Result<Store, String> {
    let usage = "expected cookie, shared, shared:ZONE, redis:NAME or sqlite:NAME";
    let [word] = args else {
        return Err(usage.into());
    };
    let (kind, name) = match word.split_once(':') {
        Some((kind, name)) => (kind.to_ascii_lowercase(), Some(name)),
        None => (word.to_ascii_lowercase(), None),
    };
    let named = |name: Option<&str>| -> Result<String, String> {
        match name {
            Some(n) if !n.is_empty() => Ok(n.to_string()),
            _ => Err(format!("{kind}: name the database ({kind}:NAME)")),
        }
    };
    match (kind.as_str(), name) {
        ("cookie", None) => Ok(Store::Cookie),
        ("shared", None) => Ok(Store::Shared(axkit_shared::DEFAULT_ZONE.into())),
        ("shared", zone) => Ok(Store::Shared(named(zone)?)),
        ("redis", name) => Ok(Store::Redis(named(name)?)),
        ("sqlite", name) => Ok(Store::Sqlite(named(name)?)),
        _ => Err(usage.into()),
    }
}

/// `SameSite`: whether a browser sends the cookie with requests another
/// site starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// When the cookie gets `Secure`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secure {
    /// When the client used HTTPS ([`axkit::Context::client`]: behind a
    /// `TrustedProxy`, the scheme it says).
    Auto,
    Always,
    Never,
}

/// The session cookie: its name and attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSpec {
    pub name: String,
    pub path: String,
    pub domain: Option<String>,
    pub same_site: SameSite,
    pub secure: Secure,
    pub http_only: bool,
    /// Give the cookie a `Max-Age` (the idle timeout, renewed as the
    /// session is used) so that it outlives the browser's session.
    pub persistent: bool,
}

impl CookieSpec {
    /// A cookie called `name` with the defaults: `Path=/`, `HttpOnly`,
    /// `SameSite=Lax`, `Secure` over HTTPS, gone with the browser's session.
    pub(crate) fn named(name: &str) -> CookieSpec {
        CookieSpec {
            name: name.to_string(),
            path: "/".into(),
            domain: None,
            same_site: SameSite::Lax,
            secure: Secure::Auto,
            http_only: true,
            persistent: false,
        }
    }
}

fn parse_cookie(args: &[&str]) -> Result<CookieSpec, String> {
    let [name, attributes @ ..] = args else {
        return Err("expected SessionCookie NAME [ATTRIBUTE=VALUE…]".into());
    };
    if !crate::cookie::valid_name(name) {
        return Err(format!(
            "{name:?} is not a cookie name (letters, digits and !#$&'*+-.^_`|~)"
        ));
    }
    let mut spec = CookieSpec::named(name);
    for attribute in attributes {
        let Some((key, value)) = attribute.split_once('=') else {
            return Err(format!("{attribute:?}: expected ATTRIBUTE=VALUE"));
        };
        let onoff = || parse::on_off(value).map_err(|e| format!("{key}: {e}"));
        match key.to_ascii_lowercase().as_str() {
            "path" => {
                if !value.starts_with('/') || !crate::cookie::valid_attribute(value) {
                    return Err(format!("Path={value:?}: expected a path starting with /"));
                }
                spec.path = value.to_string();
            }
            "domain" => {
                if value.is_empty() || !crate::cookie::valid_attribute(value) {
                    return Err(format!("Domain={value:?}: expected a domain name"));
                }
                spec.domain = Some(value.to_string());
            }
            "samesite" => {
                spec.same_site = match value.to_ascii_lowercase().as_str() {
                    "strict" => SameSite::Strict,
                    "lax" => SameSite::Lax,
                    "none" => SameSite::None,
                    _ => return Err(format!("SameSite={value:?}: expected Strict, Lax or None")),
                }
            }
            "secure" => {
                spec.secure = if value.eq_ignore_ascii_case("auto") {
                    Secure::Auto
                } else if onoff()? {
                    Secure::Always
                } else {
                    Secure::Never
                }
            }
            "httponly" => spec.http_only = onoff()?,
            "persistent" => spec.persistent = onoff()?,
            _ => {
                return Err(format!(
                    "unknown attribute {key:?}; expected Path, Domain, SameSite, Secure, \
                     HttpOnly or Persistent"
                ))
            }
        }
    }
    // Browsers drop a SameSite=None cookie that is not Secure.
    if spec.same_site == SameSite::None && spec.secure != Secure::Always {
        return Err("SameSite=None needs Secure=on (browsers refuse it otherwise)".into());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_parse() {
        assert_eq!(parse_store(&["cookie"]), Ok(Store::Cookie));
        assert_eq!(
            parse_store(&["shared"]),
            Ok(Store::Shared("default".into()))
        );
        assert_eq!(parse_store(&["shared:s"]), Ok(Store::Shared("s".into())));
        assert_eq!(
            parse_store(&["Redis:cache"]),
            Ok(Store::Redis("cache".into()))
        );
        assert_eq!(
            parse_store(&["sqlite:local"]),
            Ok(Store::Sqlite("local".into()))
        );
        assert!(parse_store(&["redis"]).is_err());
        assert!(parse_store(&["sqlite:"]).is_err());
        assert!(parse_store(&["memcached:x"]).is_err());
    }

    #[test]
    fn cookies_parse_with_secure_defaults() {
        let c = parse_cookie(&["sid"]).unwrap();
        assert_eq!(
            (
                c.path.as_str(),
                c.same_site,
                c.secure,
                c.http_only,
                c.persistent
            ),
            ("/", SameSite::Lax, Secure::Auto, true, false)
        );
        let c = parse_cookie(&[
            "sid",
            "Path=/app",
            "SameSite=Strict",
            "Secure=on",
            "HttpOnly=off",
            "Persistent=on",
            "Domain=example.com",
        ])
        .unwrap();
        assert_eq!(c.path, "/app");
        assert_eq!(c.domain.as_deref(), Some("example.com"));
        assert_eq!(
            (c.same_site, c.secure, c.http_only, c.persistent),
            (SameSite::Strict, Secure::Always, false, true)
        );
        assert!(parse_cookie(&["bad name"]).is_err());
        assert!(parse_cookie(&["sid", "Path=app"]).is_err());
        assert!(parse_cookie(&["sid", "Path=/a;b"]).is_err());
        assert!(parse_cookie(&["sid", "SameSite=None"]).is_err());
        assert!(parse_cookie(&["sid", "SameSite=None", "Secure=on"]).is_ok());
        assert!(parse_cookie(&["sid", "Colour=blue"]).is_err());
    }

    #[test]
    fn keys_need_enough_secret_and_derive_apart() {
        assert!(SessionKey::new("k", &[7; 31]).is_err());
        assert!(SessionKey::new("bad.name", &[7; 32]).is_err());
        let k = SessionKey::new("k1", &[7; 32]).unwrap();
        let m = k.material();
        assert_ne!(m.sign, m.encrypt);
        assert_ne!(m.sign, m.csrf);
        assert_eq!(format!("{k:?}"), "SessionKey(\"k1\")");
    }
}
