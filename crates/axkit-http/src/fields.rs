//! The field lines of an HTTP/1.1 head in one pass: the line structure and
//! the size limits, each field's name and value, every byte looked at once.
//! The request parser's; public for the fuzz targets and for any other
//! head that must be read as strictly.
//!
//! Written by hand rather than with a general parser: a head is on the path
//! of every request, and one pass with our own strictness replaces a
//! structure check, a general parser and a re-check of its result over the
//! same bytes. Strict as the request parser must be: lines end in CRLF only (a bare CR or LF is refused, not taken
//! as a line end a peer may see differently), no obs-fold, names are
//! `tchar`s up to the colon (no space before it), values are field-vchar,
//! SP and HTAB, without their leading and trailing whitespace.

use crate::{ctl_or_del, is_field_value_byte, is_tchar};

/// Why the field lines of a head were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    /// A CR not followed by LF.
    BareCr,
    /// An LF without a CR before it.
    BareLf,
    /// A line starting with SP or HTAB (obs-fold, RFC 9112 §5.2).
    ObsFold,
    /// The field lines (with the final empty line) do not fit the budget.
    TooLarge,
    /// More field lines than allowed.
    TooMany,
    /// A name with a byte other than a `tchar` before the colon, an empty
    /// name or no colon.
    Name,
    /// A CTL other than HTAB, or DEL, in a value.
    Value,
}

impl FieldError {
    /// A short description for a log.
    pub fn reason(self) -> &'static str {
        match self {
            FieldError::BareCr => "bare CR",
            FieldError::BareLf => "bare LF",
            FieldError::ObsFold => "obsolete line folding",
            FieldError::TooLarge => "header section too large",
            FieldError::TooMany => "too many header fields",
            FieldError::Name => "invalid header field name",
            FieldError::Value => "invalid byte in header field value",
        }
    }
}

/// Scan the field lines of `head` from `from` (just past the start line)
/// through the empty line that ends them, calling `each` with every
/// field's name and value as offsets into `head`: `[name start, name end,
/// value start, value end]`. At most `max_fields` field lines and
/// `max_bytes` bytes from `from` (CRLFs and the final empty line
/// included); heads over 4 GiB are too large whatever the budget. Returns
/// the index just past the final LF, or `Ok(None)` when more input is
/// needed.
///
/// Errors come in a fixed order, which makes a prefix of the input answer
/// either `Ok(None)` or the whole input's error: the structure and limits
/// of each line as it comes, and only once the head is complete the first
/// bad name or value (`each` is not called from that field on).
pub fn scan_field_lines(
    head: &[u8],
    from: usize,
    max_bytes: usize,
    max_fields: usize,
    mut each: impl FnMut([u32; 4]),
) -> Result<Option<usize>, FieldError> {
    // The same for every line, so worked out once.
    let (window, cut) = budget(head, from, max_bytes);
    let mut pos = from;
    let mut count = 0usize;
    let mut bad = None;
    loop {
        // Wait for the first byte of a line before judging it, even if the
        // budget is already spent: which error we give must not depend on
        // where the input happened to be split.
        match head.get(pos) {
            None => return Ok(None),
            Some(b' ' | b'\t') => return Err(FieldError::ObsFold),
            Some(b'\r' | b'\n') => {
                let Some(end) = line_break(window, pos, cut)? else {
                    return Ok(None);
                };
                offset(end)?;
                return match bad {
                    Some(e) => Err(e),
                    None => Ok(Some(end)),
                };
            }
            Some(_) => {
                count += 1;
                if count > max_fields {
                    return Err(FieldError::TooMany);
                }
            }
        }
        if bad.is_some() {
            let Some(end) = line_break(window, pos, cut)? else {
                return Ok(None);
            };
            pos = end;
            continue;
        }
        let line = window.get(pos..).unwrap_or(&[]);
        let colon = pos + tchars(line);
        if colon == pos || window.get(colon) != Some(&b':') {
            bad = Some(FieldError::Name);
            let Some(end) = line_break(window, colon, cut)? else {
                return Ok(None);
            };
            pos = end;
            continue;
        }
        let mut start = colon + 1;
        while let Some(b' ' | b'\t') = window.get(start) {
            start += 1;
        }
        let stop = first_ctl(window, start);
        // A value that ends well ends at its CR: no search needed.
        let end = if window.get(stop..stop + 2) == Some(b"\r\n") {
            stop + 2
        } else {
            let Some(end) = line_break(window, stop, cut)? else {
                return Ok(None);
            };
            // The value stopped at a CTL or DEL before the CRLF.
            bad = Some(FieldError::Value);
            pos = end;
            continue;
        };
        // The line's end is its largest offset: if that fits, all do.
        offset(end)?;
        // The value holds no CTL but HTAB: only SP and HTAB are trimmed.
        let value = window.get(start..stop).unwrap_or(&[]);
        let value_end = start + value.trim_ascii_end().len();
        each([pos, colon, start, value_end].map(|i| i as u32));
        pos = end;
    }
}

/// An offset into the head as the field positions hold it; heads over
/// 4 GiB are too large.
fn offset(i: usize) -> Result<u32, FieldError> {
    u32::try_from(i).map_err(|_| FieldError::TooLarge)
}

/// How many bytes `s` starts with that are `tchar`s: a field name's.
fn tchars(s: &[u8]) -> usize {
    s.iter().position(|&b| !is_tchar(b)).unwrap_or(s.len())
}

/// The end of the line that starts at `start` in `head`, which may be at
/// most `max_bytes` long, CRLF included: the index just past its LF,
/// `Ok(None)` if it is incomplete but may still fit, or an error for a
/// bare CR, a bare LF or a line that cannot fit (`TooLarge`). For a start
/// line; only bytes inside the limit are looked at, so the answer never
/// changes as more input arrives.
pub fn line_end(head: &[u8], start: usize, max_bytes: usize) -> Result<Option<usize>, FieldError> {
    let (window, cut) = budget(head, start, max_bytes);
    line_break(window, start, cut)
}

/// The part of `head` that `max_bytes` from `start` may take (up to the
/// budget, or what has come), and whether the budget cut it short: a line
/// that reaches the end of the part then can never fit.
fn budget(head: &[u8], start: usize, max_bytes: usize) -> (&[u8], bool) {
    let window = head
        .get(..start.saturating_add(max_bytes).min(head.len()))
        .unwrap_or(&[]);
    (window, head.len().saturating_sub(start) >= max_bytes)
}

/// Index of the first byte from `from` on that is a CTL other than HTAB
/// (CR and LF among them) or DEL, or `s.len()`: where a field value ends,
/// well or badly. Eight bytes at a time (see [`ctl_or_del`]); HTAB, allowed
/// in values but a CTL, is stepped over.
fn first_ctl(s: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(Ok(word)) = s.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let found = ctl_or_del(word);
        if found == 0 {
            i += 8;
            continue;
        }
        // The lowest flagged byte is exact (no borrow reaches it).
        i += (found.trailing_zeros() / 8) as usize;
        if s.get(i) != Some(&b'\t') {
            return i;
        }
        i += 1;
    }
    while let Some(&b) = s.get(i) {
        if !is_field_value_byte(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// [`line_end`] of a line in `window`, given that its bytes before `from`
/// hold no CR or LF; `cut` says that `window` ends where the line's budget
/// does (rather than where the input does), so that a line reaching its
/// end cannot fit.
fn line_break(window: &[u8], from: usize, cut: bool) -> Result<Option<usize>, FieldError> {
    let tail = window.get(from..).unwrap_or(&[]);
    // Where a value ends well, `from` is its CR: no search needed.
    if let [b'\r', b'\n', ..] = tail {
        return Ok(Some(from + 2));
    }
    match memchr::memchr2(b'\r', b'\n', tail) {
        Some(i) if tail.get(i) == Some(&b'\n') => Err(FieldError::BareLf),
        Some(cr) => match tail.get(cr + 1) {
            Some(b'\n') => Ok(Some(from + cr + 2)),
            Some(_) => Err(FieldError::BareCr),
            None if cut => Err(FieldError::TooLarge),
            None => Ok(None),
        },
        None if cut => Err(FieldError::TooLarge),
        None => Ok(None),
    }
}
