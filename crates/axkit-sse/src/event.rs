//! An event as `text/event-stream` frames it: `event:`, `id:` and
//! `retry:` lines, the data split into one `data:` line per line of it,
//! and a blank line to end it; comments. What a field cannot carry (a line
//! break in an event name or an id, a NUL in an id, which a browser would
//! ignore) is refused rather than sent in a way that would split the event
//! or forge another.

use std::io;
use std::time::Duration;

/// One event for [`EventStream::send`](crate::EventStream::send).
///
/// ```
/// use axkit_sse::Event;
///
/// let event = Event::new("line one\nline two").event("chat").id("7");
/// let mut out = Vec::new();
/// event.encode(&mut out).unwrap();
/// assert_eq!(out, b"event: chat\nid: 7\ndata: line one\ndata: line two\n\n");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    data: &'a [u8],
    event: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    retry: Option<Duration>,
}

impl<'a> Event<'a> {
    /// An event carrying `data` (text: the browser decodes it as UTF-8).
    /// Each of its lines (ended by LF, CR or CRLF) goes on a `data:` line
    /// of its own, and the browser joins them with LF.
    pub fn new(data: &'a (impl AsRef<[u8]> + ?Sized)) -> Event<'a> {
        Event {
            data: data.as_ref(),
            event: None,
            id: None,
            retry: None,
        }
    }

    /// The event's type (`addEventListener(name, …)` in the browser; the
    /// default is `message`). No CR or LF.
    pub fn event(mut self, name: &'a (impl AsRef<[u8]> + ?Sized)) -> Event<'a> {
        self.event = Some(name.as_ref());
        self
    }

    /// The event's id: a client that reconnects sends the last one it got
    /// as `Last-Event-ID` ([`last_event_id`](crate::last_event_id)). No
    /// CR, LF or NUL.
    pub fn id(mut self, id: &'a (impl AsRef<[u8]> + ?Sized)) -> Event<'a> {
        self.id = Some(id.as_ref());
        self
    }

    /// How long the client waits before it reconnects, from now on.
    pub fn retry(mut self, after: Duration) -> Event<'a> {
        self.retry = Some(after);
        self
    }

    /// Append the event as it goes on the wire to `out`. An
    /// `InvalidInput` error (and nothing appended) for a field that cannot
    /// be sent.
    pub fn encode(&self, out: &mut Vec<u8>) -> io::Result<()> {
        if let Some(name) = self.event {
            check(name, b"\r\n", "an event name")?;
        }
        if let Some(id) = self.id {
            check(id, b"\r\n\0", "an event id")?;
        }
        out.reserve(self.data.len() + 16);
        if let Some(name) = self.event {
            field(out, b"event", name);
        }
        if let Some(id) = self.id {
            field(out, b"id", id);
        }
        if let Some(retry) = self.retry {
            field(out, b"retry", retry.as_millis().to_string().as_bytes());
        }
        for line in lines(self.data) {
            field(out, b"data", line);
        }
        out.push(b'\n');
        Ok(())
    }
}

fn check(value: &[u8], refused: &[u8], what: &str) -> io::Result<()> {
    if value.iter().any(|b| refused.contains(b)) {
        let which = if refused.contains(&0) {
            "CR, LF or NUL"
        } else {
            "CR or LF"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} cannot contain {which}"),
        ));
    }
    Ok(())
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The lines of `text`, split at LF, CR and CRLF (what ends a line of an
/// event stream); an empty text is one empty line, and a text that ends
/// with a line break has an empty last line (so that the browser puts the
/// break back).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                rest = None;
                Some(text)
            }
            Some(i) => {
                let skip = if text[i..].starts_with(b"\r\n") { 2 } else { 1 };
                rest = Some(&text[i + skip..]);
                Some(&text[..i])
            }
        }
    })
}

/// `text` as comment lines (`: text`), one per line of it, ending the
/// frame with a blank line: a comment the browser ignores, which keeps
/// proxies from closing an idle stream.
pub(crate) fn comment(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 4);
    if text.is_empty() {
        out.extend_from_slice(b":\n\n");
        return out;
    }
    for line in lines(text) {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(e: Event) -> String {
        let mut out = Vec::new();
        e.encode(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn data_is_split_into_lines_at_every_kind_of_line_break() {
        assert_eq!(encoded(Event::new("one")), "data: one\n\n");
        assert_eq!(encoded(Event::new("")), "data: \n\n");
        assert_eq!(
            encoded(Event::new("a\nb\r\nc\rd")),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        // A trailing break is kept (an empty last line), and so is an
        // empty line in the middle.
        assert_eq!(
            encoded(Event::new("a\n\nb\n")),
            "data: a\ndata: \ndata: b\ndata: \n\n"
        );
        // What looks like another field stays data.
        assert_eq!(
            encoded(Event::new("x\nevent: forged\n\ndata: y")),
            "data: x\ndata: event: forged\ndata: \ndata: data: y\n\n"
        );
    }

    #[test]
    fn fields_come_before_the_data() {
        let e = Event::new("hi")
            .event("chat")
            .id("41")
            .retry(Duration::from_millis(2500));
        assert_eq!(encoded(e), "event: chat\nid: 41\nretry: 2500\ndata: hi\n\n");
        assert_eq!(encoded(Event::new("x").id("")), "id: \ndata: x\n\n");
    }

    #[test]
    fn line_breaks_in_names_and_ids_are_refused() {
        for bad in [
            Event::new("x").event("a\nb"),
            Event::new("x").event("a\r"),
            Event::new("x").id("1\n2"),
            Event::new("x").id("1\r"),
            Event::new("x").id("1\x002"),
        ] {
            let mut out = b"kept".to_vec();
            let e = bad.encode(&mut out).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(out, b"kept", "nothing appended");
        }
        // A NUL in an event name is only odd, not harmful.
        assert!(Event::new("x").event("a\0").encode(&mut Vec::new()).is_ok());
    }

    #[test]
    fn comments_are_one_line_each() {
        assert_eq!(comment(b""), b":\n\n");
        assert_eq!(comment(b"ping"), b": ping\n\n");
        assert_eq!(comment(b"a\nb"), b": a\n: b\n\n");
    }
}
