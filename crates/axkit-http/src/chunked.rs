//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! Framing bytes (size lines, extensions, CRLFs, trailers) are consumed one
//! at a time into a small state machine, so the caller never has to keep a
//! partial line around; chunk data is handed back as a sub-slice of the input,
//! so the body is never copied here.

use crate::{is_field_value_byte, is_tchar, HttpError};

/// Longest chunk-size line (size, whitespace and extensions, without CRLF).
const MAX_SIZE_LINE: usize = 4096;
/// Extension bytes allowed over the whole body, with the size lines' padding
/// (leading zeros, whitespace before `;`). Without a total bound a client
/// can send one data byte per 4 KiB of extension or padding and keep us busy
/// parsing framing while staying under any body-size limit.
const MAX_EXTENSIONS_TOTAL: usize = 16 * 1024;
/// Significant hex digits of a chunk size: 16 fill a u64.
const MAX_SIZE_DIGITS: u32 = 16;

const E_SIZE: HttpError = HttpError::new(400, "invalid chunk size");
const E_SIZE_EMPTY: HttpError = HttpError::new(400, "empty chunk size");
const E_SIZE_OVERFLOW: HttpError = HttpError::new(400, "chunk size too large");
const E_SIZE_LINE: HttpError = HttpError::new(400, "chunk size line too long");
const E_EXT_TOTAL: HttpError = HttpError::new(400, "too many chunk extension or padding bytes");
const E_EXT: HttpError = HttpError::new(400, "invalid byte in chunk extension");
const E_BARE_CR: HttpError = HttpError::new(400, "bare CR in chunked framing");
const E_BARE_LF: HttpError = HttpError::new(400, "bare LF in chunked framing");
const E_DATA_END: HttpError = HttpError::new(400, "chunk data not followed by CRLF");
const E_TRAILER: HttpError = HttpError::new(400, "malformed trailer field");
const E_TRAILER_FOLD: HttpError = HttpError::new(400, "obsolete line folding in trailer");
const E_TRAILER_SIZE: HttpError = HttpError::new(431, "trailer section too large");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size. `digits` counts significant ones
    /// (leading zeros are free but count against the line length).
    Size {
        value: u64,
        digits: u32,
        any: bool,
    },
    /// Whitespace after the size; only a `;` may follow (BWS before an
    /// extension). Trailing whitespace before CRLF is refused: it is not in
    /// the grammar and parsers disagree about it.
    SizeWs {
        value: u64,
    },
    /// Inside chunk extensions: checked against the grammar, their content
    /// not interpreted.
    Ext {
        value: u64,
        at: ExtAt,
    },
    /// Saw the CR ending a size line.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
    Failed(HttpError),
}

/// Where in `*( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`
/// the decoder is. The grammar is held to exactly (a name is a token, a
/// value a token or a quoted-string that never holds a CR or LF): a proxy
/// that reads a malformed extension differently from its origin, say one
/// that ends a line at a CRLF inside quotes, is a request-smuggling gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExtAt {
    /// After `;`, before the name (BWS allowed).
    NameStart,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    AfterName,
    /// After `=`, before the value (BWS allowed).
    ValueStart,
    Token,
    Quoted,
    /// After a backslash in a quoted-string.
    Escape,
    /// Just after a quoted-string's closing quote.
    Closed,
    /// Whitespace after a value: `;` must follow.
    AfterValue,
}

impl ExtAt {
    /// Whether the size line may end (CRLF) here.
    fn may_end(self) -> bool {
        matches!(self, ExtAt::Name | ExtAt::Token | ExtAt::Closed)
    }

    /// The state after `b`, or None when `b` breaks the grammar.
    fn next(self, b: u8) -> Option<ExtAt> {
        use ExtAt::*;
        let ws = b == b' ' || b == b'\t';
        Some(match self {
            NameStart if ws => NameStart,
            NameStart | Name if is_tchar(b) => Name,
            Name | AfterName if ws => AfterName,
            Name | AfterName | Token | Closed | AfterValue if b == b';' => NameStart,
            Name | AfterName if b == b'=' => ValueStart,
            ValueStart if ws => ValueStart,
            ValueStart if b == b'"' => Quoted,
            ValueStart | Token if is_tchar(b) => Token,
            Token | Closed | AfterValue if ws => AfterValue,
            Quoted if b == b'"' => Closed,
            Quoted if b == b'\\' => Escape,
            // qdtext, and what a quoted-pair may quote: no CTL but HTAB.
            Quoted if ws || (b >= 0x21 && b != 0x7f) => Quoted,
            Escape if ws || (b >= 0x21 && b != 0x7f) => Quoted,
            _ => return None,
        })
    }
}

/// Incremental chunked-body decoder (RFC 9112 §7.1).
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    line_len: usize,
    ext_total: usize,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
}

/// The result of one [`ChunkedDecoder::decode`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkStep<'a> {
    /// Input bytes used; the caller advances its buffer by this much.
    pub consumed: usize,
    /// Body data: a sub-slice of the input, possibly empty.
    pub data: &'a [u8],
    /// The body, trailers and final CRLF are complete. Input after
    /// `consumed` belongs to the next request.
    pub done: bool,
}

impl ChunkedDecoder {
    /// A decoder that allows at most `max_trailer_bytes` of trailer field lines
    /// (CRLFs included, the final empty line not) and answers 431 beyond.
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size {
                value: 0,
                digits: 0,
                any: false,
            },
            line_len: 0,
            ext_total: 0,
            trailer_bytes: 0,
            max_trailer_bytes,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`. Returns how many input bytes were consumed, a
    /// slice of `input` that is body data (may be empty), and whether the body
    /// (including trailers and final CRLF) is complete. The caller advances by
    /// `consumed` and calls again; `consumed == 0 && !done` means "need more
    /// input". At most one data slice is returned per call. Once an error is
    /// returned, every later call returns it again.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<ChunkStep<'a>, HttpError> {
        let mut i = 0;
        loop {
            match self.state {
                State::Done => {
                    return Ok(ChunkStep {
                        consumed: i,
                        data: &[],
                        done: true,
                    })
                }
                State::Failed(e) => return Err(e),
                State::Data { remaining } => {
                    let avail = input.get(i..).unwrap_or(&[]);
                    if avail.is_empty() {
                        break;
                    }
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(avail.len());
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(ChunkStep {
                        consumed: i + n,
                        data: &avail[..n],
                        done: false,
                    });
                }
                _ => {
                    let Some(&b) = input.get(i) else { break };
                    i += 1;
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
            }
        }
        Ok(ChunkStep {
            consumed: i,
            data: &[],
            done: false,
        })
    }

    fn size_line_byte(&mut self) -> Result<(), HttpError> {
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(E_SIZE_LINE);
        }
        Ok(())
    }

    /// A size-line byte that carries nothing (an extension's, a leading
    /// zero past the first, whitespace): it counts toward the body's total.
    fn overhead_byte(&mut self) -> Result<(), HttpError> {
        self.ext_total += 1;
        if self.ext_total > MAX_EXTENSIONS_TOTAL {
            return Err(E_EXT_TOTAL);
        }
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), HttpError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > self.max_trailer_bytes {
            return Err(E_TRAILER_SIZE);
        }
        Ok(())
    }

    /// Advance the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), HttpError> {
        self.state = match self.state {
            State::Size { value, digits, any } => {
                if let Some(d) = hex_value(b) {
                    self.size_line_byte()?;
                    let digits = if value == 0 && d == 0 {
                        if any {
                            self.overhead_byte()?;
                        }
                        digits
                    } else {
                        digits + 1
                    };
                    if digits > MAX_SIZE_DIGITS {
                        return Err(E_SIZE_OVERFLOW);
                    }
                    let value = value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(d)))
                        .ok_or(E_SIZE_OVERFLOW)?;
                    State::Size {
                        value,
                        digits,
                        any: true,
                    }
                } else if !any {
                    return Err(match b {
                        b'\r' | b';' | b' ' | b'\t' => E_SIZE_EMPTY,
                        b'\n' => E_BARE_LF,
                        _ => E_SIZE,
                    });
                } else {
                    match b {
                        b'\r' => State::SizeLf { value },
                        b';' => {
                            self.size_line_byte()?;
                            State::Ext {
                                value,
                                at: ExtAt::NameStart,
                            }
                        }
                        b' ' | b'\t' => {
                            self.size_line_byte()?;
                            self.overhead_byte()?;
                            State::SizeWs { value }
                        }
                        b'\n' => return Err(E_BARE_LF),
                        _ => return Err(E_SIZE),
                    }
                }
            }
            State::SizeWs { value } => {
                self.size_line_byte()?;
                match b {
                    b' ' | b'\t' => {
                        self.overhead_byte()?;
                        State::SizeWs { value }
                    }
                    b';' => State::Ext {
                        value,
                        at: ExtAt::NameStart,
                    },
                    _ => return Err(E_SIZE),
                }
            }
            State::Ext { value, at } => match b {
                b'\r' if at.may_end() => State::SizeLf { value },
                b'\n' => return Err(E_BARE_LF),
                _ => {
                    self.size_line_byte()?;
                    self.overhead_byte()?;
                    State::Ext {
                        value,
                        at: at.next(b).ok_or(E_EXT)?,
                    }
                }
            },
            State::SizeLf { value } => {
                if b != b'\n' {
                    return Err(E_BARE_CR);
                }
                self.line_len = 0;
                if value == 0 {
                    State::TrailerStart
                } else {
                    State::Data { remaining: value }
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(E_DATA_END);
                }
                State::DataLf
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(E_DATA_END);
                }
                State::Size {
                    value: 0,
                    digits: 0,
                    any: false,
                }
            }
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err(E_BARE_LF),
                b' ' | b'\t' => return Err(E_TRAILER_FOLD),
                _ if is_tchar(b) => {
                    self.trailer_byte()?;
                    State::TrailerName
                }
                _ => return Err(E_TRAILER),
            },
            State::TrailerName => {
                self.trailer_byte()?;
                match b {
                    b':' => State::TrailerValue,
                    _ if is_tchar(b) => State::TrailerName,
                    // Includes whitespace before the colon and a line
                    // without one.
                    _ => return Err(E_TRAILER),
                }
            }
            State::TrailerValue => {
                self.trailer_byte()?;
                match b {
                    b'\r' => State::TrailerLf,
                    b'\n' => return Err(E_BARE_LF),
                    _ if is_field_value_byte(b) => State::TrailerValue,
                    _ => return Err(E_TRAILER),
                }
            }
            State::TrailerLf => {
                self.trailer_byte()?;
                if b != b'\n' {
                    return Err(E_BARE_CR);
                }
                State::TrailerStart
            }
            State::EndLf => {
                if b != b'\n' {
                    return Err(E_BARE_CR);
                }
                State::Done
            }
            // decode() never calls step() in these states.
            s @ (State::Data { .. } | State::Done | State::Failed(_)) => s,
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
