//! Cookies that carry any value: a value is percent-encoded on its way out
//! ([`encode_value`], [`SetCookie`]) and decoded on its way in ([`get`],
//! [`decode_value`]), so `;`, `,`, spaces, quotes and text in any language
//! round-trip instead of being refused or cutting the header short. The
//! Lua host's `r:set_cookie` and `r:cookie` are these.
//!
//! What is encoded: every byte outside RFC 6265's `cookie-octet` (controls,
//! space, `"`, `,`, `;`, `\`, DEL and every non-ASCII byte), and `%`
//! itself, so that decoding gives back exactly what was encoded. A value
//! another program set without encoding decodes to itself unless it holds
//! a `%` followed by two hex digits. Names cannot be encoded (a server
//! matches them as sent): a name that is not an RFC 7230 token is an
//! error, as is an attribute (`Path`, `Domain`…) holding `;` or a control
//! character.

use std::borrow::Cow;

use axkit::plugin::{Request, Response};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

pub use crate::config::SameSite;

/// The bytes of a value that are encoded: all but RFC 6265's
/// `cookie-octet`, plus `%`.
const NOT_COOKIE_OCTET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// `value` as it may stand in a `Set-Cookie` header; borrowed when there
/// is nothing to encode.
pub fn encode_value(value: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(value) {
        Ok(text) => utf8_percent_encode(text, NOT_COOKIE_OCTET).into(),
        // Bytes that are not UTF-8: every non-ASCII byte is encoded anyway.
        Err(_) => Cow::Owned(percent_encoding::percent_encode(value, NOT_COOKIE_OCTET).to_string()),
    }
}

/// A cookie value as sent, decoded (`%XX` becomes the byte; anything else
/// stays as it is).
pub fn decode_value(value: &str) -> Cow<'_, [u8]> {
    percent_decode_str(value).into()
}

/// The value of cookie `name` in the request (from every `Cookie`
/// header), decoded; bytes that are not UTF-8 become U+FFFD (take
/// [`get_bytes`] for the bytes).
pub fn get(request: &Request, name: &str) -> Option<String> {
    let raw = request.cookie(name)?;
    Some(String::from_utf8_lossy(&decode_value(raw)).into_owned())
}

/// The value of cookie `name` in the request, decoded, as bytes.
pub fn get_bytes(request: &Request, name: &str) -> Option<Vec<u8>> {
    Some(decode_value(request.cookie(name)?).into_owned())
}

/// Whether `name` may be a cookie's name: an RFC 7230 token.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` may be an attribute's value (`Path`, `Domain`,
/// `Expires`): no `;` and no control character.
pub(crate) fn valid_attribute(value: &str) -> bool {
    !value.chars().any(|c| c.is_control() || c == ';')
}

/// A `Set-Cookie` header: the name, the value (encoded when the header is
/// made) and the attributes, written in the order
/// `Path`, `Domain`, `Expires`, `SameSite`, `Max-Age`, `Secure`, `HttpOnly`.
///
/// ```
/// use axkit_session::cookie::{SameSite, SetCookie};
///
/// let c = SetCookie::new("greeting", "hi; there")
///     .path("/")
///     .max_age(3600)
///     .same_site(SameSite::Lax)
///     .http_only(true);
/// assert_eq!(
///     c.header().unwrap(),
///     "greeting=hi%3B%20there; Path=/; SameSite=Lax; Max-Age=3600; HttpOnly"
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct SetCookie {
    name: String,
    value: Vec<u8>,
    path: Option<String>,
    domain: Option<String>,
    expires: Option<String>,
    same_site: Option<SameSite>,
    max_age: Option<i64>,
    secure: bool,
    http_only: bool,
}

impl SetCookie {
    /// Cookie `name` with `value` (any bytes) and no attributes.
    pub fn new(name: impl Into<String>, value: impl AsRef<[u8]>) -> SetCookie {
        SetCookie {
            name: name.into(),
            value: value.as_ref().to_vec(),
            ..SetCookie::default()
        }
    }

    pub fn path(mut self, path: impl Into<String>) -> SetCookie {
        self.path = Some(path.into());
        self
    }

    pub fn domain(mut self, domain: impl Into<String>) -> SetCookie {
        self.domain = Some(domain.into());
        self
    }

    /// An HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`).
    pub fn expires(mut self, date: impl Into<String>) -> SetCookie {
        self.expires = Some(date.into());
        self
    }

    pub fn same_site(mut self, same_site: SameSite) -> SetCookie {
        self.same_site = Some(same_site);
        self
    }

    /// Seconds the browser keeps it; 0 or less removes it now.
    pub fn max_age(mut self, seconds: i64) -> SetCookie {
        self.max_age = Some(seconds);
        self
    }

    pub fn secure(mut self, on: bool) -> SetCookie {
        self.secure = on;
        self
    }

    pub fn http_only(mut self, on: bool) -> SetCookie {
        self.http_only = on;
        self
    }

    /// The header's value, or why it cannot be made (a name that is not a
    /// token, an attribute with `;` or a control character).
    pub fn header(&self) -> Result<String, String> {
        if !valid_name(&self.name) {
            return Err(format!("invalid cookie name {:?}", self.name));
        }
        let mut out = format!("{}={}", self.name, encode_value(&self.value));
        let attributes = [
            ("Path", &self.path),
            ("Domain", &self.domain),
            ("Expires", &self.expires),
        ];
        for (attr, value) in attributes {
            if let Some(v) = value {
                if !valid_attribute(v) {
                    return Err(format!("invalid {attr} {v:?} for cookie {:?}", self.name));
                }
                out.push_str(&format!("; {attr}={v}"));
            }
        }
        if let Some(s) = self.same_site {
            out.push_str("; SameSite=");
            out.push_str(s.as_str());
        }
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        Ok(out)
    }

    /// Add the header to `response` (other cookies stay).
    pub fn add_to(&self, response: &mut Response) -> Result<(), String> {
        response.headers.add("Set-Cookie", self.header()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for value in [
            "plain",
            "a;b,c d",
            "quote\" back\\slash",
            "100%",
            "%41 stays",
            "grüße 日本 🍪",
            "",
            "tab\tnew\nline",
        ] {
            let encoded = encode_value(value.as_bytes());
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\')),
                "{encoded}"
            );
            assert_eq!(decode_value(&encoded), value.as_bytes(), "{value}");
        }
        let bytes = [0xff, 0x00, b'a'];
        assert_eq!(decode_value(&encode_value(&bytes)), &bytes[..]);
        assert!(matches!(encode_value(b"abc"), Cow::Borrowed("abc")));
        // A value someone else set is read as it is.
        assert_eq!(decode_value("abc=="), &b"abc=="[..]);
    }

    #[test]
    fn names_and_attributes_are_checked() {
        assert!(SetCookie::new("bad name", "v").header().is_err());
        assert!(SetCookie::new("a=b", "v").header().is_err());
        assert!(SetCookie::new("", "v").header().is_err());
        assert!(SetCookie::new("n", "v").path("/a;b").header().is_err());
        assert!(SetCookie::new("n", "v").domain("x\r\ny").header().is_err());
        assert_eq!(
            SetCookie::new("sid", "abc123")
                .path("/")
                .max_age(60)
                .http_only(true)
                .header()
                .unwrap(),
            "sid=abc123; Path=/; Max-Age=60; HttpOnly"
        );
        assert_eq!(
            SetCookie::new("n", "v;injected").header().unwrap(),
            "n=v%3Binjected"
        );
    }
}
