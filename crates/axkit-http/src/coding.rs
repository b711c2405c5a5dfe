//! Content-coding negotiation (RFC 9110 §12.5.3): what an
//! `Accept-Encoding` field says of one coding, for the plugins that pick
//! one (a precompressed sibling, on-the-fly compression).

/// The quality, in thousandths (0 to 1000), that `accept_encoding` gives
/// `coding`: its own entry, else that of `*`, else `None` (not mentioned).
/// `gzip` also answers to `x-gzip` (§12.5.3). Some(0) refuses the coding;
/// a malformed weight counts as 0, so a garbled field never widens what the
/// client accepts. Names compare without regard to case.
pub fn coding_quality(accept_encoding: &str, coding: &str) -> Option<u16> {
    let mut star = None;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let mut q = 1000;
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("q") {
                q = parse_qvalue(value.trim()).unwrap_or(0);
            }
        }
        if name.eq_ignore_ascii_case(coding)
            || (coding.eq_ignore_ascii_case("gzip") && name.eq_ignore_ascii_case("x-gzip"))
        {
            return Some(q);
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn parse_qvalue(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = frac.bytes().chain(std::iter::repeat(b'0')).take(3);
    let frac = thousandths.fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        "0" => Some(frac),
        "1" if frac == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualities() {
        assert_eq!(coding_quality("gzip, deflate, br", "br"), Some(1000));
        assert_eq!(coding_quality("x-gzip", "gzip"), Some(1000));
        assert_eq!(coding_quality("gzip;q=0, br", "gzip"), Some(0));
        assert_eq!(coding_quality("gzip ; Q=0.5", "GZIP"), Some(500));
        assert_eq!(coding_quality("br;q=0.25, *;q=0.1", "zstd"), Some(100));
        assert_eq!(coding_quality("*", "br"), Some(1000));
        assert_eq!(coding_quality("*;q=0", "br"), Some(0));
        assert_eq!(coding_quality("br;q=0, *", "br"), Some(0));
        assert_eq!(coding_quality("identity", "gzip"), None);
        assert_eq!(coding_quality("", "gzip"), None);
        assert_eq!(coding_quality("gzip;q=1.0", "gzip"), Some(1000));
        assert_eq!(coding_quality("gzip;q=0.001", "gzip"), Some(1));
        // Malformed weights refuse, never widen.
        for bad in ["2", "1.5", "0.1234", "-1", "", "x", "0.5x", "1.001"] {
            assert_eq!(
                coding_quality(&format!("gzip;q={bad}"), "gzip"),
                Some(0),
                "{bad}"
            );
        }
    }
}
