//! What the cache stores: a response (status, headers, body and the times
//! its age and freshness are computed from, RFC 9111 §4.2.3), or, under a
//! URL whose responses vary, the names of the request headers they vary
//! by. Both encode to bytes for the tiers that are not in the worker's
//! own memory.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// A stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// Shared by every hit that answers from it (the worker's memory tier
    /// hands out the same `Rc`): nothing of it is copied per request but
    /// the headers written into the response.
    Response(Rc<Entry>),
    /// The response at this URL varies by these request headers
    /// (lowercase); each variant is stored under a secondary key that
    /// holds `generation`. A PURGE removes this object, and the next fill
    /// writes it back with a new generation: the variants stored before
    /// are then out of reach (left for their tier to expire), so no purged
    /// variant is served again.
    Variants { generation: u64, names: Vec<String> },
}

/// A stored response.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub status: u16,
    /// The headers to send, without the ones the server writes itself
    /// (Date, framing) and without Age and Cache-Status.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// When the cache got the response (`response_time`), in ms since
    /// the epoch.
    pub stored_ms: u64,
    /// Its age when stored (`corrected_initial_age`), in ms.
    pub initial_age_ms: u64,
    /// How long it is fresh for, in ms.
    pub fresh_ms: u64,
    /// How long past that it may be served while one request revalidates
    /// (`stale-while-revalidate`), in ms.
    pub swr_ms: u64,
    /// How long past freshness it may be served when the origin fails
    /// (`stale-if-error`), in ms.
    pub sie_ms: u64,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
}

pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Entry {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `current_age` at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = epoch_ms(now).saturating_sub(self.stored_ms);
        // Saturating: the times may come from a shared tier's bytes.
        Duration::from_millis(self.initial_age_ms.saturating_add(resident))
    }

    /// How far past its freshness it is at `now` (zero while fresh).
    pub fn staleness(&self, now: SystemTime) -> Option<Duration> {
        let age = self.age(now);
        let fresh = Duration::from_millis(self.fresh_ms);
        age.checked_sub(fresh)
            .filter(|d| !d.is_zero() || fresh.is_zero())
    }

    pub fn has_validators(&self) -> bool {
        self.header("ETag").is_some() || self.header("Last-Modified").is_some()
    }

    /// How long a tier should keep it: its freshness, the stale windows,
    /// and, when it can be revalidated, an hour more to do that in.
    pub fn keep_for(&self) -> Duration {
        let extra = self.swr_ms.max(self.sie_ms);
        let revalidate = if self.has_validators() { 3_600_000 } else { 0 };
        Duration::from_millis(
            self.fresh_ms
                .saturating_sub(self.initial_age_ms)
                .saturating_add(extra.max(revalidate)),
        )
    }

    /// Roughly what it costs in memory.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 48)
                .sum::<usize>()
            + 128
    }
}

const MAGIC: &[u8; 4] = b"AXC1";

impl Object {
    pub fn size(&self) -> usize {
        match self {
            Object::Response(e) => e.size(),
            Object::Variants { names, .. } => {
                names.iter().map(|n| n.len() + 24).sum::<usize>() + 72
            }
        }
    }

    /// The bytes a shared tier keeps.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.extend_from_slice(MAGIC);
        match self {
            Object::Variants { generation, names } => {
                out.push(b'V');
                out.extend_from_slice(&generation.to_le_bytes());
                put_u32(&mut out, names.len() as u32);
                for n in names {
                    put_bytes(&mut out, n.as_bytes());
                }
            }
            Object::Response(e) => {
                out.push(b'R');
                out.extend_from_slice(&e.status.to_le_bytes());
                for n in [
                    e.stored_ms,
                    e.initial_age_ms,
                    e.fresh_ms,
                    e.swr_ms,
                    e.sie_ms,
                ] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                out.push(e.must_revalidate as u8);
                put_u32(&mut out, e.headers.len() as u32);
                for (n, v) in &e.headers {
                    put_bytes(&mut out, n.as_bytes());
                    put_bytes(&mut out, v.as_bytes());
                }
                put_bytes(&mut out, &e.body);
            }
        }
        out
    }

    /// What [`encode`](Self::encode) wrote, or None for anything else
    /// (another version's format, a value someone else put in the zone).
    pub fn decode(bytes: &[u8]) -> Option<Object> {
        let mut r = Reader(bytes.strip_prefix(MAGIC)?);
        match r.take(1)?[0] {
            b'V' => {
                let generation = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
                let n = r.u32()?;
                let mut names = Vec::new();
                for _ in 0..n {
                    names.push(r.string()?);
                }
                r.0.is_empty()
                    .then_some(Object::Variants { generation, names })
            }
            b'R' => {
                let status = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
                let mut n = [0u64; 5];
                for v in &mut n {
                    *v = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
                }
                let must_revalidate = match r.take(1)?[0] {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let count = r.u32()?;
                let mut headers = Vec::new();
                for _ in 0..count {
                    headers.push((r.string()?, r.string()?));
                }
                let body = Bytes::copy_from_slice(r.bytes()?);
                r.0.is_empty().then(|| {
                    Object::Response(Rc::new(Entry {
                        status,
                        headers,
                        body,
                        stored_ms: n[0],
                        initial_age_ms: n[1],
                        fresh_ms: n[2],
                        swr_ms: n[3],
                        sie_ms: n[4],
                        must_revalidate,
                    }))
                })
            }
            _ => None,
        }
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let e = Object::Response(Rc::new(Entry {
            status: 200,
            headers: vec![("ETag".into(), "\"1\"".into())],
            body: Bytes::from_static(b"hello"),
            stored_ms: 1,
            initial_age_ms: 2,
            fresh_ms: 3,
            swr_ms: 4,
            sie_ms: 5,
            must_revalidate: true,
        }));
        assert_eq!(Object::decode(&e.encode()), Some(e.clone()));
        let v = Object::Variants {
            generation: 7,
            names: vec!["accept-language".into()],
        };
        assert_eq!(Object::decode(&v.encode()), Some(v));
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            assert_eq!(Object::decode(&bytes[..cut]), None);
        }
        assert_eq!(Object::decode(b"hello"), None);
    }

    /// Seen writing the `cache_entry` fuzz target (its seeds hold such
    /// bytes): bytes that `encode` never writes (a `must-revalidate` flag
    /// other than 0 or 1) were taken, and times near `u64::MAX` from a
    /// shared tier overflowed `age` and `keep_for`.
    #[test]
    fn only_what_encode_writes_and_no_overflow() {
        let e = Entry {
            status: 200,
            headers: vec![("ETag".into(), "\"1\"".into())],
            body: Bytes::new(),
            stored_ms: 0,
            initial_age_ms: u64::MAX,
            fresh_ms: u64::MAX,
            swr_ms: u64::MAX,
            sie_ms: 0,
            must_revalidate: true,
        };
        let mut bytes = Object::Response(Rc::new(e.clone())).encode();
        // The flag follows the magic, the kind, the status and five times.
        assert_eq!(bytes[4 + 1 + 2 + 40], 1);
        bytes[4 + 1 + 2 + 40] = 2;
        assert_eq!(Object::decode(&bytes), None);
        assert_eq!(e.age(SystemTime::now()), Duration::from_millis(u64::MAX));
        assert_eq!(e.staleness(SystemTime::now()), None);
        let e = Entry {
            initial_age_ms: 0,
            ..e
        };
        assert_eq!(e.keep_for(), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn age_and_staleness() {
        let now = SystemTime::now();
        let e = Entry {
            status: 200,
            headers: vec![],
            body: Bytes::new(),
            stored_ms: epoch_ms(now) - 5_000,
            initial_age_ms: 1_000,
            fresh_ms: 10_000,
            swr_ms: 0,
            sie_ms: 0,
            must_revalidate: false,
        };
        assert_eq!(e.age(now).as_secs(), 6);
        assert_eq!(e.staleness(now), None);
        assert_eq!(
            e.staleness(now + Duration::from_secs(5))
                .map(|d| d.as_secs()),
            Some(1)
        );
    }
}
