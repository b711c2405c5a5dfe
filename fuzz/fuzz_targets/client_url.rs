//! Fuzz target: URLs through axkit-client: a request's URL (`Url::parse`,
//! from config and scripts) and a redirect's `Location`, which the server
//! sends, resolved against it (`Url::join`). Checks that nothing panics,
//! and:
//!
//! - a URL accepted has a host and a request-target starting with `/`
//!   without controls, spaces or `#` (it goes into the request line as it
//!   is), and reads back the same from its scheme, authority and target;
//! - a resolved `Location` holds to the same, and one that is a path
//!   (`/…` but not `//…`) or relative without a `:` stays on the origin,
//!   with no `.` or `..` segment left in a path it gave (RFC 3986 §5.2.4); a
//!   path without controls or spaces is always taken, and one without dot
//!   segments as its own target.
//!
//! Input layout: text, split at the first `\n`: the URL (a fixed one when
//! it is refused), then the `Location`.

#![no_main]

use axkit_client::fuzzing::Url;
use libfuzzer_sys::fuzz_target;

fn check(url: &Url) {
    let target = url.target();
    assert!(target.starts_with('/'), "{target:?}");
    assert!(
        !target
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'#'),
        "{target:?}"
    );
    assert!(!url.origin().host().is_empty());
    let again = Url::parse(&format!("{}{target}", url.origin())).unwrap();
    assert!(again.origin() == url.origin());
    assert_eq!(again.target(), target);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (url, location) = text.split_once('\n').unwrap_or((&text, ""));
    let base = match Url::parse(url) {
        Ok(u) => {
            check(&u);
            u
        }
        Err(_) => Url::parse("http://a.test:81/x/y?q=1").unwrap(),
    };
    let joined = base.join(location);
    if let Ok(u) = &joined {
        check(u);
    }
    let path = location.starts_with('/') && !location.starts_with("//");
    let relative = !location.starts_with('/') && !location.contains(':');
    if path || relative {
        if let Ok(u) = &joined {
            assert!(u.origin() == base.origin(), "{location:?} left the origin");
            // An empty path keeps the base's as it is (§5.2.2).
            let own = location.split(['?', '#']).next().unwrap();
            let path = u.target().split('?').next().unwrap();
            assert!(
                own.is_empty() || !path.split('/').any(|s| s == "." || s == ".."),
                "{location:?} -> {path:?}"
            );
        }
    }
    if path && !location.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        let u = joined.expect("a path refused");
        let written = location.split('#').next().unwrap();
        let written_path = written.split('?').next().unwrap();
        if !written_path.split('/').any(|s| s == "." || s == "..") {
            assert_eq!(u.target(), written);
        }
    }
});
