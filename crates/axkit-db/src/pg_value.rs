//! PostgreSQL values without a Rust type known in advance, for script
//! hosts: [`Param`], a parameter bound to whatever type the server says
//! the statement's placeholder has, and [`Cell`], one column of a row
//! decoded by its type.
//!
//! A parameter goes in the binary format where the value and the type
//! agree (an integer for an `integer` placeholder, bytes for `bytea`) and
//! in the text format otherwise, which the server parses as it would a
//! literal: a string bound to a `timestamptz`, `numeric`, `uuid` or
//! `integer` placeholder works. It is always a bound parameter, never
//! spliced into the statement.
//!
//! A column comes as a boolean, an integer (`smallint`, `integer`,
//! `bigint`, `oid`), a float (`real`, `double precision`), bytes that are
//! the value as stored (`text`, `varchar`, `char`, `name`, enums, `json`
//! and `jsonb` as their JSON text, `bytea`), or a string made here:
//! `numeric` in full precision, `uuid`, and dates and times in ISO 8601
//! (`2024-05-01`, `13:45:00.25`, `2024-05-01T13:45:00.25`, a
//! `timestamptz` in UTC with `Z`; `infinity` and `-infinity` as such).
//! Any other type is an error that says to cast it in SQL (`x::text`).

use std::error::Error as StdError;
use std::fmt::Write;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{to_sql_checked, Format, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::Row;

type BoxError = Box<dyn StdError + Sync + Send>;

// The built-in types' fixed OIDs (pg_type.dat).
const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const CHAR: u32 = 18;
const NAME: u32 = 19;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const JSON: u32 = 114;
const XML: u32 = 142;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const UNKNOWN: u32 = 705;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;
const VOID: u32 = 2278;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

/// A parameter of a statement, from a dynamically typed value.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string or bytes: as is for text types and `bytea`, parsed by the
    /// server for the others.
    Text(&'a [u8]),
}

/// The integer types, which take an integer in binary.
fn integer_type(oid: u32) -> bool {
    matches!(oid, INT2 | INT4 | INT8 | OID)
}

fn float_type(oid: u32) -> bool {
    matches!(oid, FLOAT4 | FLOAT8)
}

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let oid = ty.oid();
        match *self {
            Param::Null => return Ok(IsNull::Yes),
            Param::Bool(b) if oid == BOOL => out.put_u8(u8::from(b)),
            Param::Bool(b) => out.put_slice(if b { b"true" } else { b"false" }),
            Param::Int(i) if integer_type(oid) => put_int(i, oid, ty, out)?,
            Param::Int(i) if oid == FLOAT4 => out.put_f32(i as f32),
            Param::Int(i) if oid == FLOAT8 => out.put_f64(i as f64),
            Param::Int(i) => {
                let _ = write!(Text(out), "{i}");
            }
            Param::Float(f) if oid == FLOAT4 => out.put_f32(f as f32),
            Param::Float(f) if oid == FLOAT8 => out.put_f64(f),
            Param::Float(f) if integer_type(oid) => {
                // 3.0 is an integer to Lua 5.3+ only when made as one.
                // i64's range exactly: both ends are powers of two, which
                // a float holds as they are.
                if f.fract() != 0.0 || !(-9223372036854775808.0..9223372036854775808.0).contains(&f)
                {
                    return Err(
                        Unbindable(format!("{f} is not an integer, which {ty} takes")).into(),
                    );
                }
                put_int(f as i64, oid, ty, out)?;
            }
            Param::Float(f) if f.is_nan() => out.put_slice(b"NaN"),
            Param::Float(f) if f.is_infinite() => {
                out.put_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" })
            }
            Param::Float(f) => {
                let _ = write!(Text(out), "{f}");
            }
            Param::Text(bytes) => out.put_slice(bytes),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        let oid = ty.oid();
        let binary = match self {
            Param::Null => true,
            Param::Bool(_) => oid == BOOL,
            Param::Int(_) => integer_type(oid) || float_type(oid),
            Param::Float(_) => integer_type(oid) || float_type(oid),
            // Text and the text format are the same bytes for every text
            // type; only bytea's text format differs (it is escaped).
            Param::Text(_) => oid == BYTEA,
        };
        if binary {
            Format::Binary
        } else {
            Format::Text
        }
    }

    to_sql_checked!();
}

/// Why a parameter could not be bound: found before the statement is
/// sent, so its connection is as it was.
#[derive(Debug)]
pub(crate) struct Unbindable(String);

impl std::fmt::Display for Unbindable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Unbindable {}

/// `i` in the binary format of integer type `oid`, if it fits.
fn put_int(i: i64, oid: u32, ty: &Type, out: &mut BytesMut) -> Result<(), BoxError> {
    let too_big = || -> BoxError { Unbindable(format!("{i} is out of range for {ty}")).into() };
    match oid {
        INT2 => out.put_i16(i16::try_from(i).map_err(|_| too_big())?),
        INT4 => out.put_i32(i32::try_from(i).map_err(|_| too_big())?),
        OID => out.put_u32(u32::try_from(i).map_err(|_| too_big())?),
        _ => out.put_i64(i),
    }
    Ok(())
}

/// `fmt::Write` into a `BytesMut`.
struct Text<'a>(&'a mut BytesMut);

impl Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// One column of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// The value as stored: text (of any text type, JSON included) or the
    /// bytes of a `bytea`.
    Bytes(&'a [u8]),
    /// A value formatted here (`numeric`, `uuid`, dates and times).
    Text(String),
}

/// A column's bytes as the server sent them (binary format).
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw<'a>, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Column `i` of `row`; an error names the column and its type when this
/// API does not convert that type.
pub fn cell(row: &Row, i: usize) -> Result<Cell<'_>, String> {
    let column = &row.columns()[i];
    let raw = row
        .try_get::<_, Option<Raw<'_>>>(i)
        .map_err(|e| format!("column `{}`: {e}", column.name()))?;
    let Some(Raw(raw)) = raw else {
        return Ok(Cell::Null);
    };
    decode(column.type_(), raw).ok_or_else(|| {
        format!(
            "column `{0}` has type {1}, which is not converted; cast it in SQL (`{0}::text`)",
            column.name(),
            column.type_()
        )
    })
}

/// `raw` as type `ty`; None for a type not converted, or bytes that are
/// not a value of it.
fn decode<'a>(ty: &Type, raw: &'a [u8]) -> Option<Cell<'a>> {
    let int = |n: usize| -> Option<i64> {
        let bytes: [u8; 8] = match n {
            2 => {
                let b: [u8; 2] = raw.try_into().ok()?;
                return Some(i16::from_be_bytes(b).into());
            }
            4 => {
                let b: [u8; 4] = raw.try_into().ok()?;
                return Some(i32::from_be_bytes(b).into());
            }
            _ => raw.try_into().ok()?,
        };
        Some(i64::from_be_bytes(bytes))
    };
    Some(match ty.oid() {
        BOOL => Cell::Bool(*raw.first()? != 0),
        INT2 => Cell::Int(int(2)?),
        INT4 => Cell::Int(int(4)?),
        INT8 => Cell::Int(int(8)?),
        OID => Cell::Int(u32::from_be_bytes(raw.try_into().ok()?).into()),
        FLOAT4 => Cell::Float(f32::from_be_bytes(raw.try_into().ok()?).into()),
        FLOAT8 => Cell::Float(f64::from_be_bytes(raw.try_into().ok()?)),
        TEXT | VARCHAR | BPCHAR | NAME | CHAR | UNKNOWN | JSON | XML | BYTEA => Cell::Bytes(raw),
        JSONB => match raw.split_first()? {
            (1, text) => Cell::Bytes(text),
            _ => return None,
        },
        NUMERIC => Cell::Text(numeric(raw)?),
        UUID => Cell::Text(uuid(raw.try_into().ok()?)),
        DATE => Cell::Text(date(i32::from_be_bytes(raw.try_into().ok()?))),
        TIME => Cell::Text(time(int(8)?)),
        TIMESTAMP => Cell::Text(timestamp(int(8)?, "")),
        TIMESTAMPTZ => Cell::Text(timestamp(int(8)?, "Z")),
        VOID => Cell::Null,
        _ => match ty.kind() {
            // An enum's binary format is its label; a domain's that of
            // the type beneath.
            Kind::Enum(_) => Cell::Bytes(raw),
            Kind::Domain(base) => return decode(base, raw),
            _ if ty.name() == "citext" => Cell::Bytes(raw),
            _ => return None,
        },
    })
}

/// `numeric`'s binary format (base-10000 digits) as decimal text, in full.
fn numeric(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(
            raw.get(i * 2..i * 2 + 2)?.try_into().ok()?,
        ))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    let dscale = usize::try_from(word(3)?).ok()?;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digits: Vec<i16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    if digits.iter().any(|d| !(0..10000).contains(d)) {
        return None;
    }
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(out, "{}", digit(i));
            } else {
                let _ = write!(out, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::new();
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Some(out)
}

fn uuid(b: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
const DAY_MICROS: i64 = 86_400_000_000;

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_date(out: &mut String, days_since_2000: i64) {
    let (y, m, d) = civil(days_since_2000 + PG_EPOCH_DAYS);
    // Astronomical years: 0 is 1 BC, as ISO 8601 counts them.
    if (0..=9999).contains(&y) {
        let _ = write!(out, "{y:04}-{m:02}-{d:02}");
    } else {
        let _ = write!(out, "{y:+05}-{m:02}-{d:02}");
    }
}

/// `micros` since midnight as `HH:MM:SS[.ffffff]`, trailing zeros dropped.
fn push_time(out: &mut String, micros: i64) {
    let secs = micros / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let frac = micros % 1_000_000;
    if frac != 0 {
        let digits = format!("{frac:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        days => {
            let mut out = String::with_capacity(10);
            push_date(&mut out, days.into());
            out
        }
    }
}

fn time(micros: i64) -> String {
    let mut out = String::with_capacity(15);
    push_time(&mut out, micros);
    out
}

fn timestamp(micros: i64, zone: &str) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        micros => {
            let mut out = String::with_capacity(27);
            push_date(&mut out, micros.div_euclid(DAY_MICROS));
            out.push('T');
            push_time(&mut out, micros.rem_euclid(DAY_MICROS));
            out.push_str(zone);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as i16, weight, sign as i16, dscale as i16] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_in_full() {
        let n = |w, s, d, digits: &[i16]| numeric(&numeric_bytes(w, s, d, digits)).unwrap();
        assert_eq!(n(0, 0, 2, &[123, 4500]), "123.45");
        assert_eq!(n(-1, 0, 3, &[10]), "0.001");
        assert_eq!(n(1, 0, 0, &[1]), "10000");
        assert_eq!(n(1, 0x4000, 1, &[12, 3456, 7000]), "-123456.7");
        assert_eq!(n(0, 0, 0, &[]), "0");
        assert_eq!(n(-3, 0, 12, &[5]), "0.000000000005");
        assert_eq!(
            n(4, 0, 0, &[9, 9999, 9999, 9999, 9999]),
            "99999999999999999"
        );
        assert_eq!(n(0, 0xC000, 0, &[]), "NaN");
        assert_eq!(numeric(&numeric_bytes(0, 0x1234, 0, &[])), None);
        assert_eq!(numeric(&[0, 1]), None);
    }

    #[test]
    fn dates_and_times_in_iso_8601() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(9190), "2025-02-28");
        assert_eq!(date(9191), "2025-03-01");
        assert_eq!(date(i32::MAX), "infinity");
        assert_eq!(time(0), "00:00:00");
        assert_eq!(time(49_500_250_000), "13:45:00.25");
        let t = 9190 * DAY_MICROS + 49_500_000_001;
        assert_eq!(timestamp(t, ""), "2025-02-28T13:45:00.000001");
        assert_eq!(timestamp(t, "Z"), "2025-02-28T13:45:00.000001Z");
        assert_eq!(timestamp(-1, "Z"), "1999-12-31T23:59:59.999999Z");
        assert_eq!(timestamp(i64::MIN, "Z"), "-infinity");
        // Year 1 BC is the astronomical year 0, and the one before -1.
        assert_eq!(date(-730_485), "0000-01-01");
        assert_eq!(date(-730_850), "-0001-01-01");
    }

    #[test]
    fn uuids() {
        let b: [u8; 16] = core::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(uuid(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn parameters_in_the_format_of_their_placeholder() {
        let encode = |p: Param<'_>, ty: &Type| {
            let mut out = BytesMut::new();
            let written = p.to_sql(ty, &mut out).map_err(|e| e.to_string());
            (
                format!("{:?}", p.encode_format(ty)),
                written.map(|_| out.to_vec()),
            )
        };
        assert_eq!(
            encode(Param::Int(7), &Type::INT4),
            ("Binary".into(), Ok(vec![0, 0, 0, 7]))
        );
        assert_eq!(
            encode(Param::Int(7), &Type::NUMERIC),
            ("Text".into(), Ok(b"7".to_vec()))
        );
        assert_eq!(
            encode(Param::Float(2.0), &Type::INT2),
            ("Binary".into(), Ok(vec![0, 2]))
        );
        assert!(encode(Param::Float(2.5), &Type::INT2).1.is_err());
        // Past i64::MAX (2^63 - 1): refused, not saturated.
        assert!(encode(Param::Float(9.25e18), &Type::INT8).1.is_err());
        assert!(encode(Param::Float(9223372036854775808.0), &Type::INT8)
            .1
            .is_err());
        assert_eq!(
            encode(Param::Float(-9223372036854775808.0), &Type::INT8).1,
            Ok(i64::MIN.to_be_bytes().to_vec())
        );
        assert!(encode(Param::Int(1 << 40), &Type::INT4).1.is_err());
        assert_eq!(
            encode(Param::Float(f64::INFINITY), &Type::NUMERIC).1,
            Ok(b"Infinity".to_vec())
        );
        assert_eq!(
            encode(Param::Bool(true), &Type::BOOL),
            ("Binary".into(), Ok(vec![1]))
        );
        assert_eq!(
            encode(Param::Bool(true), &Type::TEXT),
            ("Text".into(), Ok(b"true".to_vec()))
        );
        assert_eq!(
            encode(Param::Text(b"2024-05-01"), &Type::TIMESTAMPTZ),
            ("Text".into(), Ok(b"2024-05-01".to_vec()))
        );
        assert_eq!(
            encode(Param::Text(b"\0\x01"), &Type::BYTEA),
            ("Binary".into(), Ok(vec![0, 1]))
        );
    }

    #[test]
    fn columns_by_type() {
        assert_eq!(decode(&Type::INT2, &[0xff, 0xfe]), Some(Cell::Int(-2)));
        assert_eq!(decode(&Type::INT8, &[0; 4]), None);
        assert_eq!(decode(&Type::JSONB, b"\x01{}"), Some(Cell::Bytes(b"{}")));
        assert_eq!(
            decode(&Type::FLOAT4, &1.5f32.to_be_bytes()),
            Some(Cell::Float(1.5))
        );
        assert_eq!(decode(&Type::VOID, &[]), Some(Cell::Null));
        assert_eq!(decode(&Type::INTERVAL, &[0; 16]), None);
    }
}
