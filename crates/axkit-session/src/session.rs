//! A request's session: how it is read from the cookie (and the store),
//! kept in the context's state while the plugins use it, and written back
//! once, just before the response head goes out; and the CSRF tokens
//! bound to it.
//!
//! What a session holds, its **record**: a version byte, when it began
//! and when it was last used (milliseconds since 1970, big-endian), its
//! 24-byte random id and its data (string keys, `axkit_shared::Value`s,
//! in `Value::to_bytes`'s encoding). The cookie's value, by store:
//!
//! - cookie, encrypted: `e.KEY.NONCE_AND_CIPHERTEXT`, XChaCha20-Poly1305
//!   of the record under KEY's encryption key, the cookie's name and
//!   `e.KEY` as associated data;
//! - cookie, signed: `s.KEY.RECORD.MAC`;
//! - on the server: `i.KEY.ID.MAC`, the record kept under ID; or
//!   `n.KEY.ID_AND_BEGAN.MAC` for a session without data, of which the
//!   store keeps no record (it lives in its cookie alone, and the store is
//!   not asked for one): its id, then when it began (milliseconds since
//!   1970, big-endian, for its maximum age). An `i` cookie whose record is
//!   gone names a session that ended (destroyed, regenerated away,
//!   expired): it is never taken up again under that id.
//!
//! An id that a cookie brought, of a session without data (an `n` cookie,
//! or a cookie session that only handed out a CSRF token), is never the id
//! of the session's first data: [`Session::set`] gives it a new one. Such
//! a cookie is what any visitor gets with a log-in form: an attacker who
//! plants one in a victim's browser (session fixation) would otherwise
//! share the session the victim logs in to, and know its CSRF token, when
//! the app forgets [`Session::regenerate`].
//!
//! (each part in base64url; MAC is the HMAC-SHA256, under KEY's signing
//! key, of the cookie's name, `=` and everything before `.MAC`, so that a
//! value cannot be moved to another cookie). KEY names the `SessionKey`
//! that wrote it: a cookie is read with that key if it is still
//! configured, and written again with the first one.
//!
//! The expiry is checked against the record's own times, which the client
//! cannot change, whatever the cookie's `Max-Age` or the store's TTL say.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axkit::plugin::Body;
use axkit::{Context, Level, Outcome};
use axkit_shared::Value;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::config::{CookieSpec, Secure, SessionKey, Store};
use crate::config::{SESSION_COOKIE, SESSION_ENCRYPT, SESSION_KEY, SESSION_MAX_AGE};
use crate::config::{SESSION_STORE, SESSION_TIMEOUT};
use crate::cookie::SetCookie;
use crate::crypto::{
    base64url, equal, fill_random, from_base64url, from_base64url_exact, hmac_sha256,
};
use crate::store::{Backend, Id, Put, Stored, ID_LEN};
use crate::Error;

/// The form field [`check_csrf`] reads the token from.
pub const CSRF_FIELD: &str = "csrf_token";
/// The request header [`check_csrf`] reads the token from first.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// The most bytes of a cookie value this writes: browsers keep at most
/// 4096 bytes of name, value and attributes.
const MAX_COOKIE: usize = 3800;

const RECORD_VERSION: u8 = 1;
/// Version, two times, the id.
const RECORD_HEAD: usize = 1 + 8 + 8 + ID_LEN;
const NONCE_LEN: usize = 24;

/// Milliseconds since 1970.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a session takes from the config of the request's Location.
pub(crate) struct Settings {
    keys: Vec<SessionKey>,
    store: Store,
    cookie: CookieSpec,
    timeout: Duration,
    max_age: Duration,
    encrypt: bool,
    /// `Secure` on the cookie (the attribute, or `auto` and HTTPS).
    secure: bool,
}

impl Settings {
    fn of(ctx: &Context) -> Result<Settings, Error> {
        let config = ctx.config();
        let Some(store) = config.try_get(&SESSION_STORE) else {
            return Err(Error::NotConfigured(
                "the server has no session directives (register axkit_session::SessionSource)"
                    .into(),
            ));
        };
        let keys = config.list(&SESSION_KEY).to_vec();
        if keys.is_empty() {
            return Err(Error::NotConfigured(
                "no SessionKey: write `SessionKey NAME FILE` (a file of at least 32 random bytes)"
                    .into(),
            ));
        }
        let cookie = config.get(&SESSION_COOKIE).clone();
        let secure = match cookie.secure {
            // The scheme the client used: TLS ends at a front proxy, whose
            // word (`TrustedProxy`) `client()` takes.
            Secure::Auto => ctx.client().https,
            Secure::Always => true,
            Secure::Never => false,
        };
        Ok(Settings {
            keys,
            store: store.clone(),
            cookie,
            timeout: *config.get(&SESSION_TIMEOUT),
            max_age: *config.get(&SESSION_MAX_AGE),
            encrypt: *config.get(&SESSION_ENCRYPT),
            secure,
        })
    }

    fn key(&self, name: &str) -> Option<(usize, &SessionKey)> {
        self.keys.iter().enumerate().find(|(_, k)| k.name() == name)
    }

    /// Whether a session that began at `created` and was last used at
    /// `touched` is over at `now`.
    fn expired(&self, created: u64, touched: u64, now: u64) -> bool {
        let past =
            |since: u64, limit: Duration| !limit.is_zero() && now.saturating_sub(since) > ms(limit);
        past(touched, self.timeout) || past(created, self.max_age)
    }

    /// How long a session that began at `created` may live from `now`
    /// (None: no limit).
    fn life_left(&self, created: u64, now: u64) -> Option<Duration> {
        let idle = (!self.timeout.is_zero()).then_some(self.timeout);
        let whole = (!self.max_age.is_zero()).then(|| {
            Duration::from_millis(ms(self.max_age).saturating_sub(now.saturating_sub(created)))
        });
        // At least a millisecond: a store reads a TTL of 0 as none.
        let left = match (idle, whole) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        left.map(|d| d.max(Duration::from_millis(1)))
    }
}

/// A request's session: string keys, each with a [`Value`] (a string,
/// number, boolean or table, kept as it was given).
pub struct Session {
    settings: Settings,
    id: Id,
    created: u64,
    touched: u64,
    data: Vec<(String, Value)>,
    /// It came from the request's cookie (and the store).
    loaded: bool,
    /// The request's cookie named this session, live: what
    /// [`is_new`](Self::is_new) answers (false again once destroyed).
    carried: bool,
    /// The request carried the session cookie, valid or not.
    had_cookie: bool,
    /// It must be written: changed, regenerated, read with an older key
    /// or format, or due for its idle timeout to be pushed back.
    dirty: bool,
    /// A CSRF token was handed out: keep the session (its id) even when
    /// it holds nothing.
    pinned: bool,
    /// The request's cookie names this id, of which a server store held
    /// no record: a session without data, kept by its cookie alone (see
    /// [`write`]).
    named: bool,
    /// The id came with the request's cookie, of a session without data:
    /// its first data gets a new one (see [`set`](Self::set)).
    bare: bool,
    /// Ids to delete from the store (regenerated or destroyed).
    stale: Vec<Id>,
    /// Its data changed in this request (not only its idle time).
    changed: bool,
    /// The server store's record as this request read (or last wrote)
    /// it, and its id: a later write finds it there or does not write
    /// (see [`Put`]).
    read: Option<(Id, Vec<u8>)>,
}

fn new_id() -> Id {
    let mut id = [0u8; ID_LEN];
    fill_random(&mut id);
    id
}

impl Session {
    pub(crate) fn fresh(settings: Settings, had_cookie: bool) -> Session {
        let now = now_ms();
        Session {
            settings,
            id: new_id(),
            created: now,
            touched: now,
            data: Vec::new(),
            loaded: false,
            carried: false,
            had_cookie,
            dirty: false,
            pinned: false,
            named: false,
            bare: false,
            stale: Vec::new(),
            changed: false,
            read: None,
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.data.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Set `key` (saved with the response). The first data of a session
    /// that the request's cookie brought empty gets a new id, as with
    /// [`regenerate`](Self::regenerate): an id that went out without data
    /// (with a log-in form's CSRF token, to anyone who asked) is never the
    /// id of a session that holds something, such as a login.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        if self.bare {
            self.regenerate();
        }
        let key = key.into();
        let value = value.into();
        self.dirty = true;
        self.changed = true;
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.data.push((key, value)),
        }
    }

    /// Remove `key`, returning what it held.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self.data.iter().position(|(k, _)| k == key)?;
        self.dirty = true;
        self.changed = true;
        Some(self.data.remove(at).1)
    }

    /// The keys and values, in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.data.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Whether the session began in this request: the request carried no
    /// valid cookie of a live session (none, or one forged, expired, or
    /// naming a session that ended), or it was [`destroy`](Self::destroy)ed.
    /// A session kept by its cookie alone (one that only handed out a CSRF
    /// token) is not new on the requests that carry its cookie, though a
    /// server store holds no record of it.
    pub fn is_new(&self) -> bool {
        !self.carried
    }

    /// Give the session a new id, keeping its data: call it when the user
    /// logs in (or their rights change), so that an id planted or seen
    /// before that point is worthless (session fixation). The old id is
    /// deleted from the store; CSRF tokens handed out before no longer
    /// match. Only a session without data gets a new id by itself, with
    /// its first data ([`set`](Self::set)): one that held something
    /// before the login (a cart) keeps its id unless this is called.
    pub fn regenerate(&mut self) {
        if self.loaded {
            self.stale.push(self.id);
        }
        // A session without data had only an id (and its CSRF token): its
        // life begins with the new one, not when a log-in form was shown.
        if self.data.is_empty() {
            self.created = now_ms();
        }
        self.id = new_id();
        self.named = false;
        self.bare = false;
        self.dirty = true;
    }

    /// End the session: its data is gone, its store entry deleted and the
    /// cookie removed from the browser. What is set afterwards starts a
    /// new session, with a new id.
    pub fn destroy(&mut self) {
        self.regenerate();
        self.data.clear();
        self.loaded = false;
        self.carried = false;
        self.pinned = false;
        self.created = now_ms();
    }

    /// The CSRF token of this session, for the forms of the page (a
    /// hidden field [`CSRF_FIELD`]) or for scripts (the header
    /// [`CSRF_HEADER`]): the HMAC of the session's id, so it stays the
    /// same for the session's life and changes with
    /// [`regenerate`](Self::regenerate). A new session is kept for it,
    /// even if nothing else is set: by its cookie, which carries the id
    /// (a server store holds no record of a session without data).
    pub fn csrf_token(&mut self) -> String {
        if !self.pinned && !self.loaded && !self.named {
            self.dirty = true;
        }
        self.pinned = true;
        base64url(&self.csrf_with(&self.settings.keys[0]))
    }

    fn csrf_with(&self, key: &SessionKey) -> [u8; 32] {
        hmac_sha256(&key.material().csrf, &[b"csrf", &self.id])
    }

    /// Whether `token` is this session's CSRF token, made with any of the
    /// configured keys; compared in constant time.
    pub fn csrf_valid(&self, token: &str) -> bool {
        let Some(sent) = from_base64url(token.trim()) else {
            return false;
        };
        // Not the `any` short cut: every key is tried, whichever matches.
        let mut valid = false;
        for key in &self.settings.keys {
            valid |= equal(&sent, &self.csrf_with(key));
        }
        valid
    }

    fn record(&self) -> Result<Vec<u8>, Error> {
        encode_record(self.created, self.touched, &self.id, &self.data)
    }

    /// Take the record `bytes` if it is one, has the expected id (for a
    /// store's) and has not expired.
    fn take_record(&mut self, bytes: &[u8], id: Option<&Id>, now: u64) -> bool {
        let Some(record) = parse_record(bytes) else {
            return false;
        };
        if id.is_some_and(|id| *id != record.id)
            || self.settings.expired(record.created, record.touched, now)
        {
            return false;
        }
        self.id = record.id;
        self.created = record.created;
        self.touched = record.touched;
        self.data = record.data;
        self.loaded = true;
        self.carried = true;
        self.bare = self.data.is_empty();
        // Push the idle timeout back once an eighth of it has passed,
        // not on every request.
        let timeout = ms(self.settings.timeout);
        if timeout > 0 && now.saturating_sub(record.touched) >= timeout / 8 {
            self.dirty = true;
        }
        true
    }

    /// The signed part of a cookie value: HMAC of the cookie's name and
    /// the value's text before the MAC.
    fn mac(&self, key: &SessionKey, text: &str) -> [u8; 32] {
        let name = self.settings.cookie.name.as_bytes();
        hmac_sha256(&key.material().sign, &[name, b"=", text.as_bytes()])
    }

    fn aead_data(&self, head: &str) -> Vec<u8> {
        let mut aad = self.settings.cookie.name.as_bytes().to_vec();
        aad.push(b'=');
        aad.extend_from_slice(head.as_bytes());
        aad
    }

    /// Read the cookie's value. For a session on the server, the id it
    /// names (the record is still to be fetched) and whether the cookie
    /// says there is one (`i`, not `n`); for a cookie session, the record,
    /// taken. Anything but a valid value leaves the session fresh: a value
    /// is valid only as it was written, its parts in base64url without
    /// padding, not another spelling of the same bytes.
    pub(crate) fn read_cookie(&mut self, value: &str, now: u64) -> Option<(Id, bool)> {
        let mut parts = value.split('.');
        let (kind, key_name) = (parts.next()?, parts.next()?);
        let (index, key) = self.settings.key(key_name)?;
        let key = key.clone();
        let parts: Vec<&str> = parts.collect();
        let head_len = kind.len() + 1 + key_name.len();
        let found = match (kind, parts.as_slice(), self.settings.store.is_server_side()) {
            ("e", [sealed], false) => {
                let sealed = from_base64url_exact(sealed)?;
                if sealed.len() < NONCE_LEN {
                    return None;
                }
                let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
                let nonce = XNonce::try_from(nonce).ok()?;
                let aad = self.aead_data(&value[..head_len]);
                let record = XChaCha20Poly1305::new((&key.material().encrypt).into())
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: ciphertext,
                            aad: &aad,
                        },
                    )
                    .ok()?;
                if !self.take_record(&record, None, now) {
                    return None;
                }
                // Written as the config now says.
                self.dirty |= !self.settings.encrypt;
                None
            }
            ("s" | "i" | "n", [body, mac], server_side) if (kind != "s") == server_side => {
                let signed = &value[..value.len() - mac.len() - 1];
                if !equal(&from_base64url_exact(mac)?, &self.mac(&key, signed)) {
                    return None;
                }
                let body = from_base64url_exact(body)?;
                if server_side {
                    let (id, began) = body.split_at_checked(ID_LEN)?;
                    let id = Id::try_from(id).ok()?;
                    match (kind, <[u8; 8]>::try_from(began)) {
                        ("i", _) if began.is_empty() => Some((id, true)),
                        // No record: its maximum age is checked against
                        // the time in its cookie. (Not its idle timeout:
                        // the cookie is sent once, so nothing pushes it
                        // back.)
                        ("n", Ok(began)) => {
                            let created = u64::from_be_bytes(began);
                            if self.settings.expired(created, now, now) {
                                return None;
                            }
                            self.created = created;
                            Some((id, false))
                        }
                        _ => return None,
                    }
                } else {
                    if !self.take_record(&body, None, now) {
                        return None;
                    }
                    self.dirty |= self.settings.encrypt;
                    None
                }
            }
            _ => return None,
        };
        // Read with an older key: written again with the first.
        if index > 0 {
            self.dirty = true;
        }
        found
    }

    /// The cookie's value for this session (on a server store, whose
    /// record is written when it holds data and only then).
    pub(crate) fn cookie_value(&self) -> Result<String, Error> {
        let key = &self.settings.keys[0];
        let value = if self.settings.store.is_server_side() {
            let text = if self.data.is_empty() {
                let mut body = self.id.to_vec();
                body.extend_from_slice(&self.created.to_be_bytes());
                format!("n.{}.{}", key.name(), base64url(&body))
            } else {
                format!("i.{}.{}", key.name(), base64url(&self.id))
            };
            let mac = base64url(&self.mac(key, &text));
            format!("{text}.{mac}")
        } else if self.settings.encrypt {
            let head = format!("e.{}", key.name());
            let mut nonce = [0u8; NONCE_LEN];
            fill_random(&mut nonce);
            let record = self.record()?;
            let ciphertext = XChaCha20Poly1305::new((&key.material().encrypt).into())
                .encrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &record,
                        aad: &self.aead_data(&head),
                    },
                )
                .map_err(|_| Error::Value("cannot encrypt the session".into()))?;
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(&ciphertext);
            format!("{head}.{}", base64url(&sealed))
        } else {
            let text = format!("s.{}.{}", key.name(), base64url(&self.record()?));
            let mac = base64url(&self.mac(key, &text));
            format!("{text}.{mac}")
        };
        if value.len() > MAX_COOKIE {
            return Err(Error::TooLarge {
                size: value.len(),
                limit: MAX_COOKIE,
            });
        }
        Ok(value)
    }

    fn set_cookie(&self, value: &str, max_age: Option<i64>) -> SetCookie {
        let spec = &self.settings.cookie;
        let mut c = SetCookie::new(spec.name.as_str(), value)
            .path(spec.path.as_str())
            .same_site(spec.same_site)
            .secure(self.settings.secure)
            .http_only(spec.http_only);
        if let Some(domain) = &spec.domain {
            c = c.domain(domain.as_str());
        }
        if let Some(age) = max_age {
            c = c.max_age(age);
        }
        c
    }
}

/// A session's record (see the module documentation).
pub(crate) fn encode_record(
    created: u64,
    touched: u64,
    id: &Id,
    data: &[(String, Value)],
) -> Result<Vec<u8>, Error> {
    let pairs = data
        .iter()
        .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
        .collect();
    let data = Value::Table(pairs)
        .to_bytes()
        .map_err(|e| Error::Value(e.to_string()))?;
    let mut out = Vec::with_capacity(RECORD_HEAD + data.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&created.to_be_bytes());
    out.extend_from_slice(&touched.to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&data);
    Ok(out)
}

/// A session's record, read back ([`parse_record`]).
pub(crate) struct Record {
    pub(crate) created: u64,
    pub(crate) touched: u64,
    pub(crate) id: Id,
    pub(crate) data: Vec<(String, Value)>,
}

pub(crate) fn parse_record(bytes: &[u8]) -> Option<Record> {
    if bytes.len() < RECORD_HEAD || bytes[0] != RECORD_VERSION {
        return None;
    }
    let u64_at = |at: usize| Some(u64::from_be_bytes(bytes[at..at + 8].try_into().ok()?));
    let id = Id::try_from(&bytes[17..RECORD_HEAD]).ok()?;
    let Value::Table(pairs) = Value::from_bytes(&bytes[RECORD_HEAD..])? else {
        return None;
    };
    let data = pairs
        .into_iter()
        .map(|(k, v)| match k {
            Value::Bytes(k) => Some((String::from_utf8(k).ok()?, v)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Record {
        created: u64_at(1)?,
        touched: u64_at(9)?,
        id,
        data,
    })
}

/// The session kept in the context's state.
struct Slot(Option<Session>);

/// A session being read (see [`start`]): nothing of the context is held.
pub struct Loading {
    session: Session,
    /// The id of a session on the server whose cookie says the store
    /// holds its record, still to be fetched.
    fetch: Option<(Backend, Id)>,
}

/// A session read (see [`start`]), to put in its request's context.
pub struct Loaded {
    session: Session,
    /// Why the store could not be read, for the log.
    warning: Option<String>,
}

/// The first half of [`session`], for a host that cannot hold the
/// context across an await (the Lua host): `Ok(None)` when the request's
/// session is read already; else what to [`finish`](Loading::finish) and
/// [`install`](Loaded::install).
pub fn start(ctx: &mut Context) -> Result<Option<Loading>, Error> {
    if ctx.state::<Slot>().is_some_and(|s| s.0.is_some()) {
        return Ok(None);
    }
    let settings = Settings::of(ctx)?;
    let backend = Backend::of(&settings.store)?;
    let cookie = ctx
        .request
        .cookie(&settings.cookie.name)
        .map(str::to_string);
    let mut session = Session::fresh(settings, cookie.is_some());
    let now = session.created;
    let fetch = match cookie.and_then(|value| session.read_cookie(&value, now)) {
        Some((id, true)) => backend.map(|backend| (backend, id)),
        // A session without data has no record, only its signed id in the
        // cookie: it goes on under that id, so that the CSRF token handed
        // out with it still verifies (and its first data gets a new one).
        Some((id, false)) => {
            session.id = id;
            session.named = true;
            session.carried = true;
            session.bare = true;
            session.dirty = false;
            None
        }
        None => None,
    };
    Ok(Some(Loading { session, fetch }))
}

impl Loading {
    /// Fetch the record of a session kept on the server.
    pub async fn finish(self) -> Loaded {
        let Loading { mut session, fetch } = self;
        let mut warning = None;
        if let Some((backend, id)) = fetch {
            match backend.get(&id).await {
                Ok(Some(record)) if session.take_record(&record, Some(&id), now_ms()) => {
                    session.read = Some((id, record));
                }
                // A record that was there is gone: the session ended
                // (logged out, regenerated away, expired, evicted). Its id
                // is not taken up again: whoever knows it (planted or
                // seen) would share the session that follows.
                Ok(_) => session.dirty = false,
                Err(e) => {
                    session.dirty = false;
                    warning = Some(format!("{e}; the request goes on with a new session"));
                }
            }
        }
        Loaded { session, warning }
    }
}

impl Loaded {
    /// Put the session in the request's context, where [`session`] finds
    /// it and from where it is saved before the response head.
    pub fn install(self, ctx: &mut Context) {
        if let Some(warning) = self.warning {
            ctx.log_request(Level::Warn, format_args!("{warning}"));
        }
        ctx.set_state(Slot(Some(self.session)));
        ctx.before_head(|ctx| Box::pin(save_or_fail(ctx)));
    }
}

/// The request's session, read from its cookie on the first call (and
/// from the store for a session kept on the server). A cookie that is not
/// valid, or a store that cannot be read (logged), gives a fresh session.
/// An error only when sessions are not configured (no `SessionKey`), a
/// store named by the config cannot be opened, or for a Redis or SQLite
/// store without `Database`.
pub async fn session(ctx: &mut Context) -> Result<&mut Session, Error> {
    if let Some(loading) = start(ctx)? {
        loading.finish().await.install(ctx);
    }
    Ok(ctx
        .state_mut::<Slot>()
        .and_then(|s| s.0.as_mut())
        .expect("installed above"))
}

/// The request's session if [`session`] (or [`start`]) read it already:
/// for code that cannot wait.
pub fn current(ctx: &mut Context) -> Option<&mut Session> {
    ctx.state_mut::<Slot>()?.0.as_mut()
}

/// Write the request's session now, if it changed: to its store, and the
/// `Set-Cookie` to the response. Done anyway just before the response
/// head; call it to handle a store's failure yourself (a streamed
/// response, whose head goes with its first write, cannot be turned into a
/// 503 any more). Nothing to do when no session was read.
pub async fn save(ctx: &mut Context) -> Result<(), Error> {
    let Some(mut s) = ctx.state_mut::<Slot>().and_then(|s| s.0.take()) else {
        return Ok(());
    };
    let result = if ctx.head_sent() && (s.dirty || !s.stale.is_empty()) {
        Err(Error::HeadSent)
    } else {
        write(&mut s).await
    };
    let put_back = match result {
        Ok(Some(cookie)) => cookie.add_to(&mut ctx.response).map_err(Error::Value),
        Ok(None) => Ok(()),
        Err(Error::Ended) => {
            ctx.log_request(Level::Info, format_args!("{}", Error::Ended));
            Ok(())
        }
        Err(e) => Err(e),
    };
    ctx.set_state(Slot(Some(s)));
    put_back
}

/// The store writes of `s` and its `Set-Cookie`, if it has any to do.
async fn write(s: &mut Session) -> Result<Option<SetCookie>, Error> {
    let backend = Backend::of(&s.settings.store)?;
    if let Some(backend) = &backend {
        while let Some(id) = s.stale.last() {
            backend.delete(id).await?;
            s.stale.pop();
        }
    }
    s.stale.clear();
    if !s.dirty {
        return Ok(None);
    }
    s.dirty = false;
    let now = now_ms();
    s.touched = now;
    let life = s.settings.life_left(s.created, now);
    if s.data.is_empty() && (!s.pinned || backend.is_some()) {
        // Nothing for a store to keep: a session without data is never
        // written there (a flood of visitors to a form would fill it and
        // evict the sessions that matter), and one emptied loses its
        // record.
        if let Some(backend) = &backend {
            if s.loaded {
                backend.delete(&s.id).await?;
            }
        }
        s.loaded = false;
        s.read = None;
        if !s.pinned {
            // The browser forgets its cookie, if it has one.
            return Ok(s.had_cookie.then(|| s.set_cookie("", Some(0))));
        }
        // Its CSRF token needs only the id, which the signed cookie
        // keeps: sent once.
        if s.named {
            return Ok(None);
        }
        s.named = true;
    } else {
        if let Some(backend) = &backend {
            put(backend, s, life).await?;
        }
        s.loaded = true;
    }
    let value = s.cookie_value()?;
    s.had_cookie = true;
    let max_age = life
        .filter(|_| s.settings.cookie.persistent)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Ok(Some(s.set_cookie(&value, max_age)))
}

/// Write the record of `s`, which holds data, to `backend`.
async fn put(backend: &Backend, s: &mut Session, life: Option<Duration>) -> Result<(), Error> {
    let how = match &s.read {
        Some((id, _)) if *id != s.id => Put::Create,
        None => Put::Create,
        Some(_) if s.changed => Put::Update,
        Some((_, read)) => Put::Touch(read),
    };
    let record = s.record()?;
    match backend.put(&s.id, record.clone(), life, how).await? {
        Stored::Yes => s.read = Some((s.id, record)),
        // Another request wrote it, and pushed the timeout back.
        Stored::Changed => {}
        Stored::Gone => {
            // Ended meanwhile: the end stands, and the browser's cookie is
            // left as that request set it.
            s.loaded = false;
            s.read = None;
            s.changed = false;
            return Err(Error::Ended);
        }
    }
    s.changed = false;
    Ok(())
}

/// [`save`] before the head: a store that cannot take the write answers
/// 503, anything else 500, with a log line.
async fn save_or_fail(ctx: &mut Context) {
    let Err(e) = save(ctx).await else {
        return;
    };
    ctx.log_request(Level::Error, format_args!("{e}"));
    let status = if e.is_unavailable() { 503 } else { 500 };
    ctx.response.status = status;
    ctx.response.headers.remove("Content-Length");
    ctx.response
        .headers
        .set("Content-Type", "text/plain; charset=utf-8");
    ctx.response.body = Body::Bytes(if status == 503 {
        "503 Service Unavailable: the session could not be saved\n".into()
    } else {
        "500 Internal Server Error: the session could not be saved\n".into()
    });
}

/// Check the request's CSRF token against its session: from the
/// [`CSRF_HEADER`] header, else the [`CSRF_FIELD`] field of its form
/// (read with [`Context::read_form`], so the form stays there for the
/// handler). `Err` is the hook's outcome: 403 with a log line saying why
/// (see [`csrf_failure`]), or the status of a form that cannot be read.
///
/// ```no_run
/// # async fn handler(ctx: &mut axkit::Context) -> axkit::Outcome {
/// if let Err(outcome) = axkit_session::check_csrf(ctx).await {
///     return outcome;
/// }
/// # axkit::Outcome::Done }
/// ```
pub async fn check_csrf(ctx: &mut Context) -> Result<(), Outcome> {
    let token = match ctx.request.header(CSRF_HEADER) {
        Some(token) => Some(token.to_string()),
        None => match ctx.read_form().await {
            Ok(form) => form.get(CSRF_FIELD).map(str::to_string),
            Err(e) => return Err(Outcome::Status(e.status)),
        },
    };
    let valid = match session(ctx).await {
        Ok(s) => token.as_deref().map(|t| s.csrf_valid(t)),
        Err(e) => return Err(e.outcome(ctx)),
    };
    match valid {
        Some(true) => Ok(()),
        other => Err(csrf_failure(ctx, other.is_none())),
    }
}

/// Log a failed CSRF check (`missing`: no token was sent, else it was
/// not the session's) and give its outcome, 403.
pub fn csrf_failure(ctx: &mut Context, missing: bool) -> Outcome {
    let why = if missing {
        "no CSRF token (the X-CSRF-Token header or the csrf_token form field)"
    } else {
        "the CSRF token is not the session's (an old page, an expired session or a forgery)"
    };
    ctx.log_request(Level::Warn, format_args!("403: {why}"));
    Outcome::Status(403)
}

/// Settings for the unit tests and the fuzz targets: a cookie named
/// `sid`, an hour's idle timeout, a day's maximum age, `store`, and keys
/// named `keys`, each with its name's first byte 32 times as its secret.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn fixed_settings(store: Store, encrypt: bool, keys: &[&str]) -> Settings {
    Settings {
        keys: keys
            .iter()
            .map(|k| SessionKey::new(k, &[k.as_bytes()[0]; 32]).unwrap())
            .collect(),
        store,
        cookie: CookieSpec::named("sid"),
        timeout: Duration::from_secs(3600),
        max_age: Duration::from_secs(86400),
        encrypt,
        secure: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(encrypt: bool) {
        let mut s = Session::fresh(fixed_settings(Store::Cookie, encrypt, &["a"]), false);
        s.set("user", "ada");
        s.set("n", 3);
        let value = s.cookie_value().unwrap();
        assert!(!value.contains("ada"));
        let mut back = Session::fresh(fixed_settings(Store::Cookie, encrypt, &["a"]), true);
        assert_eq!(back.read_cookie(&value, now_ms()), None);
        assert!(back.loaded);
        assert!(!back.dirty);
        assert_eq!(back.get("user").and_then(Value::as_str), Some("ada"));
        assert_eq!(back.get("n").and_then(Value::as_int), Some(3));
        assert_eq!(back.id, s.id);
        // Any change to the value: a fresh session.
        for at in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).unwrap();
            let mut s = Session::fresh(fixed_settings(Store::Cookie, encrypt, &["a"]), true);
            s.read_cookie(&forged, now_ms());
            assert!(!s.loaded, "{forged}");
        }
    }

    #[test]
    fn cookie_sessions_round_trip_and_refuse_changes() {
        round_trip(true);
        round_trip(false);
    }

    #[test]
    fn cookie_values_have_one_spelling() {
        for (store, encrypt) in [
            (Store::Cookie, true),
            (Store::Cookie, false),
            (Store::Shared("default".into()), true),
        ] {
            let mut s = Session::fresh(fixed_settings(store.clone(), encrypt, &["a"]), false);
            s.set("k", "v");
            let value = s.cookie_value().unwrap();
            for padded in [format!("{value}="), format!("{value}==")] {
                let mut back = Session::fresh(fixed_settings(store.clone(), encrypt, &["a"]), true);
                assert_eq!(back.read_cookie(&padded, now_ms()), None, "{padded}");
                assert!(!back.loaded, "{padded}");
            }
        }
    }

    #[test]
    fn older_keys_are_read_and_newer_written() {
        let mut s = Session::fresh(fixed_settings(Store::Cookie, true, &["old"]), false);
        s.set("k", "v");
        let value = s.cookie_value().unwrap();
        let mut back = Session::fresh(fixed_settings(Store::Cookie, true, &["new", "old"]), true);
        back.read_cookie(&value, now_ms());
        assert!(back.loaded && back.dirty);
        assert!(back.cookie_value().unwrap().starts_with("e.new."));
        let mut gone = Session::fresh(fixed_settings(Store::Cookie, true, &["new"]), true);
        gone.read_cookie(&value, now_ms());
        assert!(!gone.loaded);
    }

    #[test]
    fn expiry_is_in_the_record() {
        let mut s = Session::fresh(fixed_settings(Store::Cookie, false, &["a"]), false);
        s.set("k", "v");
        let value = s.cookie_value().unwrap();
        let later = now_ms() + 3601 * 1000;
        let mut back = Session::fresh(fixed_settings(Store::Cookie, false, &["a"]), true);
        back.read_cookie(&value, later);
        assert!(!back.loaded);
    }

    #[test]
    fn server_side_cookies_name_a_signed_id() {
        let shared = || fixed_settings(Store::Shared("default".into()), true, &["a"]);
        let mut s = Session::fresh(shared(), false);
        // Without data: no record, and the cookie says so.
        let bare = s.cookie_value().unwrap();
        assert!(bare.starts_with("n.a."));
        let mut back = Session::fresh(shared(), true);
        assert_eq!(back.read_cookie(&bare, now_ms()), Some((s.id, false)));
        // Its maximum age is in the cookie: no record keeps it.
        let mut back = Session::fresh(shared(), true);
        assert_eq!(back.read_cookie(&bare, now_ms() + 86_401_000), None);
        s.set("k", "v");
        let value = s.cookie_value().unwrap();
        assert!(value.starts_with("i.a."));
        let mut back = Session::fresh(shared(), true);
        assert_eq!(back.read_cookie(&value, now_ms()), Some((s.id, true)));
        // The kind is signed: an `i` cookie cannot be passed off as `n`.
        let mut back = Session::fresh(shared(), true);
        assert_eq!(
            back.read_cookie(&format!("n{}", &value[1..]), now_ms()),
            None
        );
        // A cookie session's value is not an id, nor the reverse.
        let mut cookie = Session::fresh(fixed_settings(Store::Cookie, false, &["a"]), true);
        assert_eq!(cookie.read_cookie(&value, now_ms()), None);
        assert!(!cookie.loaded);
    }

    #[test]
    fn the_first_data_of_a_session_a_cookie_brought_empty_gets_a_new_id() {
        let mut s = Session::fresh(fixed_settings(Store::Cookie, true, &["a"]), false);
        let token = s.csrf_token();
        let value = s.cookie_value().unwrap();
        let mut back = Session::fresh(fixed_settings(Store::Cookie, true, &["a"]), true);
        back.read_cookie(&value, now_ms());
        assert!(back.csrf_valid(&token));
        back.set("user", "ada");
        assert_ne!(back.id, s.id);
        assert!(!back.csrf_valid(&token));
        // Once: later data keeps the new id.
        let id = back.id;
        back.set("n", 1);
        assert_eq!(back.id, id);
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let mut s = Session::fresh(fixed_settings(Store::Cookie, true, &["a", "b"]), false);
        let token = s.csrf_token();
        assert!(s.csrf_valid(&token));
        assert!(!s.csrf_valid("x"));
        let other = Session::fresh(fixed_settings(Store::Cookie, true, &["a"]), false);
        assert!(!other.csrf_valid(&token));
        s.regenerate();
        assert!(!s.csrf_valid(&token));
    }

    #[test]
    fn a_session_at_its_maximum_age_has_a_ttl_that_ends() {
        // A store reads a TTL of 0 as none: the session would never end.
        let settings = fixed_settings(Store::Shared("default".into()), true, &["a"]);
        let created = now_ms();
        let at_max_age = created + 86_400_000;
        assert_eq!(
            settings.life_left(created, at_max_age),
            Some(Duration::from_millis(1))
        );
    }
}
