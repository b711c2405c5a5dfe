//! Small cryptographic tools for plugins and scripts: secure random bytes
//! (the kernel's `getrandom`), HMAC (SHA-256, SHA-384, SHA-512), a
//! comparison that takes the same time wherever two strings differ, hex
//! and base64url text, and password hashing with argon2id (the Lua
//! global `crypto` is these).
//!
//! Password hashing is slow on purpose (about 50 ms of one core, and
//! 19 MiB of memory, with the parameters below), so it never runs on the
//! worker's event loop: [`password_hash`] and [`password_verify`] run on
//! tokio's blocking pool, at most as many at once as the machine has
//! cores (per worker, in turn with `auth_basic`'s checks:
//! `axkit::plugin::hashing`; the rest wait their turn without blocking
//! anything), so that a burst of logins can neither stall the worker nor
//! take the server's memory. Other requests go on meanwhile.
//!
//! The hash is a PHC string, `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`,
//! with a 16-byte random salt: argon2id, 19 MiB of memory (`m`), two
//! passes (`t`), one lane (`p`): OWASP's recommended minimum. A hash says
//! its own parameters, so a hash made with other ones (stronger ones in a
//! later version, or another program's) still verifies.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use axkit::plugin::hashing;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

/// Fill `buf` with bytes from the kernel's random source.
///
/// # Panics
/// If the kernel has none (`getrandom` failing: not on any Linux AxKit
/// runs on); a hook that panics answers 500.
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the system's random source failed");
}

/// `n` random bytes.
///
/// ```
/// let token = axkit_session::crypto::random(16);
/// assert_eq!(token.len(), 16);
/// ```
pub fn random(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fill_random(&mut buf);
    buf
}

/// The hash functions [`hmac()`] takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// By name: `sha256`, `sha384`, `sha512` (any case, with or without
    /// a dash).
    pub fn parse(name: &str) -> Option<Hash> {
        match name.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Some(Hash::Sha256),
            "sha384" => Some(Hash::Sha384),
            "sha512" => Some(Hash::Sha512),
            _ => None,
        }
    }
}

/// HMAC of `data` with `key`.
///
/// ```
/// use axkit_session::crypto::{hex, hmac, Hash};
///
/// // RFC 4231, test case 2.
/// let mac = hmac(Hash::Sha256, b"Jefe", b"what do ya want for nothing?");
/// assert_eq!(
///     hex(&mac),
///     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
/// );
/// ```
pub fn hmac(hash: Hash, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match hash {
        Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
        Hash::Sha384 => run::<Hmac<Sha384>>(key, data),
        Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
    }
}

/// HMAC-SHA256 of the parts of `data`, one after the other.
pub(crate) fn hmac_sha256(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    for part in data {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `a` and `b` are equal, in a time that depends on their length
/// only, not on where they differ: for comparing a secret (a MAC, a
/// token) with what a client sent.
///
/// ```
/// use axkit_session::crypto::equal;
/// assert!(equal(b"token", b"token"));
/// assert!(!equal(b"token", b"tokem"));
/// ```
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// URL-safe base64 without padding (RFC 4648 §5), as tokens and cookies
/// carry bytes.
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The bytes of URL-safe base64 text (padding optional); None when it is
/// not.
pub fn from_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// The bytes of base64url text exactly as [`base64url`] writes it (no
/// padding, no stray bits), None for anything else: for what must have
/// one spelling only, a signed cookie value.
pub(crate) fn from_base64url_exact(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// The argon2id parameters new hashes get: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(
        Params::DEFAULT_M_COST,
        Params::DEFAULT_T_COST,
        Params::DEFAULT_P_COST,
        None,
    )
    .expect("argon2's default parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash `password` for storing (argon2id, a new random salt): a PHC
/// string. Runs on the blocking pool (see the module documentation).
///
/// ```no_run
/// # async fn f() {
/// let stored = axkit_session::crypto::password_hash("correct horse").await;
/// assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
/// # }
/// ```
pub async fn password_hash(password: impl Into<Vec<u8>>) -> String {
    let password = password.into();
    hashing::run(move || {
        argon2()
            .hash_password(&password)
            .expect("argon2id hashes any password with valid parameters")
            .to_string()
    })
    .await
}

/// The most an argon2 hash may ask of [`password_verify`]: memory in KiB
/// (2 GiB, RFC 9106's first recommendation), passes and lanes.
const MAX_VERIFY: (u32, u32, u32) = (2 * 1024 * 1024, 64, 64);

/// Whether `password` is the one `hash` (a PHC string from
/// [`password_hash`], or any argon2 hash) was made from; an error when
/// `hash` is not an argon2 hash. Runs on the blocking pool.
///
/// ```no_run
/// # async fn f(stored: &str) -> Result<(), String> {
/// if axkit_session::crypto::password_verify("correct horse", stored).await? {
///     // logged in
/// }
/// # Ok(()) }
/// ```
pub async fn password_verify(password: impl Into<Vec<u8>>, hash: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a password hash: {e}"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "not an argon2 hash ({}), which is all this verifies",
            parsed.algorithm
        ));
    }
    // The hash says what verifying it costs: one from outside (an import,
    // a row an attacker could write) could ask for terabytes or years.
    let params =
        Params::try_from(&parsed).map_err(|e| format!("cannot verify with this hash: {e}"))?;
    if params.m_cost() > MAX_VERIFY.0
        || params.t_cost() > MAX_VERIFY.1
        || params.p_cost() > MAX_VERIFY.2
    {
        return Err(format!(
            "the hash asks for more work than this server verifies (m={}, t={}, p={}; at most \
             m={}, t={}, p={})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            MAX_VERIFY.0,
            MAX_VERIFY.1,
            MAX_VERIFY.2
        ));
    }
    let password = password.into();
    hashing::run(move || match argon2().verify_password(&password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(format!("cannot verify with this hash: {e}")),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_vectors() {
        // RFC 4231, test case 1.
        let key = [0x0b; 20];
        assert_eq!(
            hex(&hmac(Hash::Sha256, &key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac(Hash::Sha512, &key, b"Hi There")),
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
        );
        assert_eq!(hmac(Hash::Sha384, &key, b"Hi There").len(), 48);
        assert_eq!(
            hmac_sha256(&key, &[b"Hi ", b"There"]).to_vec(),
            hmac(Hash::Sha256, &key, b"Hi There")
        );
        assert_eq!(Hash::parse("SHA-512"), Some(Hash::Sha512));
        assert_eq!(Hash::parse("md5"), None);
    }

    #[test]
    fn text_encodings() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(from_base64url("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(from_base64url("-_8="), Some(vec![0xfb, 0xff]));
        assert_eq!(from_base64url("+/8"), None);
        let a = random(32);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random(32));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn passwords_hash_and_verify() {
        let h = password_hash("secret").await;
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_ne!(h, password_hash("secret").await);
        assert_eq!(password_verify("secret", &h).await, Ok(true));
        assert_eq!(password_verify("Secret", &h).await, Ok(false));
        assert!(password_verify("secret", "plain text").await.is_err());
        // A hash that asks for 4 TiB, or 4 billion passes, is refused
        // before anything is allocated or run.
        for costs in ["m=4294967295,t=2,p=1", "m=19456,t=4294967295,p=1"] {
            let e = password_verify("secret", &h.replace("m=19456,t=2,p=1", costs))
                .await
                .unwrap_err();
            assert!(e.contains("more work than this server verifies"), "{e}");
        }
        assert!(password_verify("x", "$pbkdf2$i=1$c2FsdA$aGFzaA")
            .await
            .is_err());
    }
}
