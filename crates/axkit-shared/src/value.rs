//! What a zone stores: [`Value`] (bytes, integer, float, boolean, or a
//! table of them), and the small binary encoding a table is kept in.
//!
//! Scalars are kept as they are: bytes as bytes, an integer, a float or a
//! boolean in 8 bytes (so that `incr` changes a number in place). A table
//! is serialised, in a format of its own rather than JSON, because JSON
//! would lose what Lua tells apart (an integer from a float, a key `1`
//! from a key `"1"`) and cannot hold bytes that are not UTF-8:
//!
//! ```text
//! value := 0x01 (false) | 0x02 (true)
//!        | 0x03 i64 (little-endian) | 0x04 f64 (little-endian bits)
//!        | 0x05 len bytes             (len: LEB128)
//!        | 0x06 count (key value)*    (count: LEB128)
//! ```
//!
//! A table nests at most [`MAX_DEPTH`] deep (which also refuses a table
//! that contains itself); its keys are bytes, numbers or booleans.

use std::fmt;

/// How deep tables may nest.
pub const MAX_DEPTH: usize = 64;

/// A value in a zone.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string (any bytes; Lua strings are bytes).
    Bytes(Vec<u8>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A table's pairs, in no particular order (Lua's `pairs` order when
    /// it came from Lua).
    Table(Vec<(Value, Value)>),
}

/// A number, for `incr`: integers stay integers (until a float is added).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// `self + other`: integer while both are, else float; None on
    /// integer overflow.
    pub fn checked_add(self, other: Number) -> Option<Number> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.checked_add(b).map(Number::Int),
            (a, b) => Some(Number::Float(a.as_f64() + b.as_f64())),
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl From<i64> for Number {
    fn from(i: i64) -> Number {
        Number::Int(i)
    }
}

impl From<i32> for Number {
    fn from(i: i32) -> Number {
        Number::Int(i.into())
    }
}

impl From<f64> for Number {
    fn from(f: f64) -> Number {
        Number::Float(f)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        match n {
            Number::Int(i) => Value::Int(i),
            Number::Float(f) => Value::Float(f),
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Value {
    /// The bytes of a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A string that is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A number, integer or float, as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }

    /// The value of `key` in a table (a string key).
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.as_table()?
            .iter()
            .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
            .map(|(_, v)| v)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Bytes(s.into_bytes())
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i.into())
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Vec<(Value, Value)>> for Value {
    fn from(pairs: Vec<(Value, Value)>) -> Value {
        Value::Table(pairs)
    }
}

/// The type of a stored value, as a zone entry records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Bytes = 1,
    Int = 2,
    Float = 3,
    Bool = 4,
    Table = 5,
}

impl Kind {
    pub fn from_u32(k: u32) -> Option<Kind> {
        Some(match k {
            1 => Kind::Bytes,
            2 => Kind::Int,
            3 => Kind::Float,
            4 => Kind::Bool,
            5 => Kind::Table,
            _ => return None,
        })
    }

    /// Kept in 8 bytes and changed in place.
    pub fn is_scalar(self) -> bool {
        matches!(self, Kind::Int | Kind::Float | Kind::Bool)
    }
}

/// A value ready to store: its kind and its bytes (borrowed for strings).
pub(crate) enum Stored<'a> {
    Scalar(Kind, u64),
    Bytes(Kind, std::borrow::Cow<'a, [u8]>),
}

impl Stored<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Stored::Scalar(k, _) | Stored::Bytes(k, _) => *k,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Stored::Scalar(..) => 8,
            Stored::Bytes(_, b) => b.len(),
        }
    }
}

/// Why a value cannot be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TooDeep;

impl Value {
    pub(crate) fn stored(&self) -> Result<Stored<'_>, TooDeep> {
        Ok(match self {
            Value::Bytes(b) => Stored::Bytes(Kind::Bytes, b.as_slice().into()),
            Value::Int(i) => Stored::Scalar(Kind::Int, *i as u64),
            Value::Float(f) => Stored::Scalar(Kind::Float, f.to_bits()),
            Value::Bool(b) => Stored::Scalar(Kind::Bool, u64::from(*b)),
            Value::Table(_) => {
                let mut out = Vec::new();
                encode(self, &mut out, 0)?;
                Stored::Bytes(Kind::Table, out.into())
            }
        })
    }

    /// The value a stored entry holds. None: the bytes are not a value
    /// this crate wrote.
    pub(crate) fn load(kind: Kind, bytes: Vec<u8>) -> Option<Value> {
        let scalar =
            || -> Option<u64> { Some(u64::from_ne_bytes(bytes.as_slice().try_into().ok()?)) };
        Some(match kind {
            Kind::Bytes => Value::Bytes(bytes),
            Kind::Int => Value::Int(scalar()? as i64),
            Kind::Float => Value::Float(f64::from_bits(scalar()?)),
            Kind::Bool => Value::Bool(scalar()? != 0),
            Kind::Table => Value::from_bytes(&bytes)?,
        })
    }
}

impl Value {
    /// The value in the encoding above (a table's, for any value), for a
    /// plugin that keeps values elsewhere (a session in a cookie or a
    /// database) and wants them back as they were: an integer stays an
    /// integer, bytes stay bytes. Fails only for a table nested deeper
    /// than [`MAX_DEPTH`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, crate::Error> {
        let mut out = Vec::new();
        encode(self, &mut out, 0).map_err(|TooDeep| crate::Error::TooDeep)?;
        Ok(out)
    }

    /// The value [`to_bytes`](Value::to_bytes) made; None for bytes it
    /// did not make (nothing else, however corrupt: no panic, no huge
    /// allocation).
    pub fn from_bytes(bytes: &[u8]) -> Option<Value> {
        let mut at = 0;
        let v = decode(bytes, &mut at, 0)?;
        (at == bytes.len()).then_some(v)
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_len(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n: usize = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        n |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn encode(v: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), TooDeep> {
    match v {
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(i) => {
            out.push(3);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Bytes(b) => {
            out.push(5);
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
        Value::Table(pairs) => {
            if depth >= MAX_DEPTH {
                return Err(TooDeep);
            }
            out.push(6);
            put_len(out, pairs.len());
            for (k, v) in pairs {
                encode(k, out, depth + 1)?;
                encode(v, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

fn decode(bytes: &[u8], at: &mut usize, depth: usize) -> Option<Value> {
    let tag = *bytes.get(*at)?;
    *at += 1;
    let mut eight = || {
        let b: [u8; 8] = bytes.get(*at..*at + 8)?.try_into().ok()?;
        *at += 8;
        Some(b)
    };
    Some(match tag {
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Int(i64::from_le_bytes(eight()?)),
        4 => Value::Float(f64::from_bits(u64::from_le_bytes(eight()?))),
        5 => {
            let len = get_len(bytes, at)?;
            let b = bytes.get(*at..at.checked_add(len)?)?.to_vec();
            *at += len;
            Value::Bytes(b)
        }
        6 if depth < MAX_DEPTH => {
            let count = get_len(bytes, at)?;
            // Each pair takes at least two bytes: a count beyond that is
            // corrupt, and must not reserve memory for it.
            if count > (bytes.len() - *at) / 2 {
                return None;
            }
            let mut pairs = Vec::with_capacity(count);
            for _ in 0..count {
                let k = decode(bytes, at, depth + 1)?;
                let v = decode(bytes, at, depth + 1)?;
                pairs.push((k, v));
            }
            Value::Table(pairs)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Value) -> Value {
        let stored = v.stored().unwrap();
        let (kind, bytes) = match stored {
            Stored::Scalar(k, bits) => (k, bits.to_ne_bytes().to_vec()),
            Stored::Bytes(k, b) => (k, b.into_owned()),
        };
        Value::load(kind, bytes).unwrap()
    }

    #[test]
    fn values_round_trip() {
        let nested = Value::Table(vec![
            (Value::Int(1), Value::from("one")),
            (Value::from("x"), Value::Float(1.5)),
            (Value::Bool(true), Value::Bool(false)),
            (Value::from("bytes"), Value::Bytes(vec![0, 255, 10])),
            (
                Value::from("inner"),
                Value::Table(vec![(Value::Int(-7), Value::Int(i64::MIN))]),
            ),
            (Value::from("empty"), Value::Table(vec![])),
            (Value::from("long"), Value::Bytes(vec![7; 300])),
        ]);
        for v in [
            Value::from("plain"),
            Value::Bytes(vec![]),
            Value::Int(-3),
            Value::Float(-0.25),
            Value::Bool(true),
            nested,
        ] {
            assert_eq!(round_trip(&v), v);
        }
    }

    #[test]
    fn depth_is_bounded_both_ways() {
        let mut v = Value::Int(1);
        for _ in 0..MAX_DEPTH {
            v = Value::Table(vec![(Value::Int(1), v)]);
        }
        assert!(v.stored().is_ok());
        let deeper = Value::Table(vec![(Value::Int(1), v)]);
        assert!(deeper.stored().is_err());
        // A hand-made encoding nested too deeply does not decode.
        let mut bytes = Vec::new();
        for _ in 0..=MAX_DEPTH {
            bytes.extend_from_slice(&[6, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0]);
        }
        bytes.push(1);
        assert_eq!(Value::load(Kind::Table, bytes), None);
    }

    #[test]
    fn corrupt_encodings_are_refused() {
        for bad in [
            &[][..],
            &[9],
            &[3, 1, 2],
            &[5, 10, 1],
            &[6, 0xff, 0xff, 0xff, 0xff, 0x0f],
            &[
                5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[2, 2],
        ] {
            assert_eq!(Value::load(Kind::Table, bad.to_vec()), None, "{bad:?}");
        }
    }

    #[test]
    fn public_encoding_round_trips() {
        let v = Value::Table(vec![
            (Value::from("user"), Value::from("ada")),
            (Value::from("n"), Value::Int(3)),
        ]);
        assert_eq!(Value::from_bytes(&v.to_bytes().unwrap()), Some(v));
        assert_eq!(Value::from_bytes(&[3, 1]), None);
        assert_eq!(Value::from_bytes(&[1, 1]), None);
    }

    #[test]
    fn numbers_add() {
        assert_eq!(Number::Int(2).checked_add(3.into()), Some(Number::Int(5)));
        assert_eq!(
            Number::Int(2).checked_add(0.5.into()),
            Some(Number::Float(2.5))
        );
        assert_eq!(Number::Int(i64::MAX).checked_add(1.into()), None);
    }
}
