//! Where a head whose lines may end in a bare LF stops: its first empty
//! line. An upstream's response head and a CGI script's header block both
//! end so, and both arrive in pieces: each search goes on where the last
//! one stopped, so that a head sent a byte at a time is searched once in
//! all, not once per read from its first byte.

/// The first empty line in `buf` whose line break before it has its LF at
/// or after `from`: the first `\n\n` or `\n\r\n` from `from` on. `Ok` with
/// the index just past it, or `Err` with the `from` for the search once
/// more bytes have come (an end that begins before it would have been
/// whole in `buf`). A head's own start (an empty line before any other)
/// is the caller's to look at: what it means differs.
pub fn blank_line_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let Some(rest) = buf.get(from..) else {
        return Err(from);
    };
    for i in memchr::memchr_iter(b'\n', rest) {
        match &rest[i + 1..] {
            [b'\n', ..] => return Ok(from + i + 2),
            [b'\r', b'\n', ..] => return Ok(from + i + 3),
            _ => {}
        }
    }
    Err(buf.len().saturating_sub(2).max(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_empty_line_from_the_position_given() {
        assert_eq!(blank_line_end(b"A: b\n\nbody", 0), Ok(6));
        assert_eq!(blank_line_end(b"A: b\r\n\r\nbody", 0), Ok(8));
        assert_eq!(blank_line_end(b"A: b\r\n\nbody", 0), Ok(7));
        assert_eq!(blank_line_end(b"\n\nA\n\n", 1), Ok(5));
        assert_eq!(blank_line_end(b"A: b\r\nB: c", 0), Err(8));
        assert_eq!(blank_line_end(b"A", 5), Err(5));
    }

    /// Searched in pieces, each search going on where the last stopped,
    /// every split of a head finds the end the whole finds, and no byte
    /// is looked at more than a few times.
    #[test]
    fn a_search_in_pieces_finds_what_the_whole_finds() {
        let heads: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody",
            b"HTTP/1.1 200 OK\nA: b\n\nbody",
            b"HTTP/1.1 200 OK\r\nA: b\n\r\n",
            b"A: \r\r\n\r\r\n\n",
            b"A: b\r\nB: c\r\n",
        ];
        for head in heads {
            let whole = blank_line_end(head, 0).ok();
            for step in 1..=4 {
                let (mut from, mut found) = (0, None);
                for len in (step..head.len() + step).step_by(step) {
                    let len = len.min(head.len());
                    match blank_line_end(&head[..len], from) {
                        Ok(end) => {
                            found = Some(end);
                            break;
                        }
                        Err(next) => {
                            assert!(next + 2 >= len, "searched again from {next} of {len}");
                            from = next;
                        }
                    }
                }
                assert_eq!(found, whole, "{head:?} in pieces of {step}");
            }
        }
    }
}
