//! Parsing the fields of a recorded trade row, shared by every replay format.

use std::borrow::Cow;

use chrono::DateTime;

use crate::model::{NANOS_PER_MILLI, Timestamp, TradeValueError, check_trade_values};

/// Why one row could not become a trade. The row is counted and skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    /// A required field is absent or null.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// The timestamp is neither an integer epoch time nor RFC 3339.
    #[error("`ts` value {0:?} is neither an integer epoch time nor an RFC 3339 time")]
    Timestamp(String),
    /// A number does not parse.
    #[error("`{field}` value {value:?} is not a number")]
    Number {
        /// The field's name.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// The symbol is empty.
    #[error("`symbol` is empty")]
    EmptySymbol,
    /// Price or size out of range.
    #[error(transparent)]
    Value(#[from] TradeValueError),
    /// The row does not have the header's number of fields.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A field is not UTF-8.
    #[error("field `{0}` is not valid UTF-8")]
    Utf8(&'static str),
    /// A JSON line that is not a trade object.
    #[error("not a trade object: {0}")]
    Json(String),
    /// The file's own reader rejected the row.
    #[error("unreadable row: {0}")]
    Unreadable(String),
}

/// A parsed row, before the symbol is interned.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTrade<'a> {
    /// Event time, nanoseconds.
    pub ts: Timestamp,
    /// Symbol text.
    pub symbol: Cow<'a, str>,
    /// Price.
    pub price: f64,
    /// Size.
    pub size: f64,
    /// Optional trade id.
    pub trade_id: Option<u64>,
    /// The unit of an integer timestamp (`None` for a time with its own unit).
    pub ts_unit: Option<EpochUnit>,
}

impl<'a> RawTrade<'a> {
    /// Checks the values and builds the row.
    pub fn new(
        ts: Timestamp,
        symbol: Cow<'a, str>,
        price: f64,
        size: f64,
        trade_id: Option<u64>,
    ) -> Result<Self, RowError> {
        if symbol.trim().is_empty() {
            return Err(RowError::EmptySymbol);
        }
        check_trade_values(price, size)?;
        Ok(RawTrade {
            ts,
            symbol,
            price,
            size,
            trade_id,
            ts_unit: None,
        })
    }

    /// Records the unit the integer timestamp was read in.
    pub fn in_unit(mut self, unit: Option<EpochUnit>) -> Self {
        self.ts_unit = unit;
        self
    }
}

/// Epoch milliseconds to nanoseconds, refusing values that overflow.
pub fn millis_to_nanos(millis: i64) -> Result<Timestamp, RowError> {
    millis
        .checked_mul(NANOS_PER_MILLI)
        .ok_or_else(|| RowError::Timestamp(millis.to_string()))
}

/// The unit of an integer epoch timestamp, told from its magnitude: below 10^11 seconds (up to
/// the year 5138), below 10^14 milliseconds, below 10^17 microseconds, nanoseconds beyond. Each
/// range holds the dates from 1973 on of its own unit only, so a file's unit is unambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
pub enum EpochUnit {
    /// Seconds.
    #[value(name = "s")]
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds.
    #[value(name = "ms")]
    #[serde(rename = "ms")]
    Millis,
    /// Microseconds.
    #[value(name = "us")]
    #[serde(rename = "us")]
    Micros,
    /// Nanoseconds.
    #[value(name = "ns")]
    #[serde(rename = "ns")]
    Nanos,
}

impl EpochUnit {
    /// The unit a value of this magnitude is in.
    pub fn of(value: i64) -> Self {
        match value.unsigned_abs() {
            v if v < 100_000_000_000 => EpochUnit::Seconds,
            v if v < 100_000_000_000_000 => EpochUnit::Millis,
            v if v < 100_000_000_000_000_000 => EpochUnit::Micros,
            _ => EpochUnit::Nanos,
        }
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        match self {
            EpochUnit::Seconds => 1_000_000_000,
            EpochUnit::Millis => 1_000_000,
            EpochUnit::Micros => 1_000,
            EpochUnit::Nanos => 1,
        }
    }

    /// The unit's name, as logged.
    pub fn name(self) -> &'static str {
        match self {
            EpochUnit::Seconds => "seconds",
            EpochUnit::Millis => "milliseconds",
            EpochUnit::Micros => "microseconds",
            EpochUnit::Nanos => "nanoseconds",
        }
    }

    /// `value` in this unit as nanoseconds, refusing values that overflow.
    pub fn to_nanos(self, value: i64) -> Result<Timestamp, RowError> {
        value
            .checked_mul(self.nanos())
            .ok_or_else(|| RowError::Timestamp(value.to_string()))
    }
}

/// An integer epoch timestamp in the unit its magnitude says; returns the unit too (the reader
/// refuses a file whose rows mix units).
pub fn epoch_to_nanos(value: i64) -> Result<(Timestamp, EpochUnit), RowError> {
    let unit = EpochUnit::of(value);
    Ok((unit.to_nanos(value)?, unit))
}

/// Parses a `ts` field: an integer epoch time (its unit told by its magnitude: see
/// [`EpochUnit::of`]), or an RFC 3339 time (`2013-10-07T13:30:00.123Z`, any offset).
pub fn parse_timestamp(text: &str) -> Result<(Timestamp, Option<EpochUnit>), RowError> {
    let text = text.trim();
    if let Ok(value) = text.parse::<i64>() {
        return epoch_to_nanos(value).map(|(ts, unit)| (ts, Some(unit)));
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|time| time.timestamp_nanos_opt())
        .map(|ts| (ts, None))
        .ok_or_else(|| RowError::Timestamp(text.to_string()))
}

/// Parses a decimal number field.
pub fn parse_number(field: &'static str, text: &str) -> Result<f64, RowError> {
    text.trim().parse::<f64>().map_err(|_| RowError::Number {
        field,
        value: text.to_string(),
    })
}

/// Parses an optional trade id field (empty means none). A whole number is the id itself; any
/// other text (`abc-1`, a UUID) is kept for duplicate detection as its [`text_trade_id`].
pub fn parse_trade_id(text: &str) -> Result<Option<u64>, RowError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        text.parse::<u64>().unwrap_or_else(|_| text_trade_id(text)),
    ))
}

/// The id under which a non-numeric trade id is remembered: its 64-bit FNV-1a hash with the top
/// bit set (the same text always gives the same id, across runs and files; numeric ids below
/// 2^63 never meet a hashed one). Two different texts share an id with probability 2^-63.
pub fn text_trade_id(text: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = text.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    hash | (1 << 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(
            parse_timestamp("1381132800688"),
            Ok((1_381_132_800_688_000_000, Some(EpochUnit::Millis)))
        );
        assert_eq!(
            parse_timestamp("2013-10-07T08:00:00.688Z"),
            Ok((1_381_132_800_688_000_000, None))
        );
        for (text, unit) in [
            ("1381132800", EpochUnit::Seconds),
            ("1381132800688000", EpochUnit::Micros),
            ("1381132800688000000", EpochUnit::Nanos),
        ] {
            let (ts, found) = parse_timestamp(text).expect(text);
            assert_eq!(found, Some(unit), "{text}");
            assert_eq!(ts / 1_000_000_000, 1_381_132_800, "{text}");
        }
        assert_eq!(
            parse_timestamp("2013-10-07T04:00:00.688-04:00"),
            Ok((1_381_132_800_688_000_000, None))
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert_eq!(
            parse_timestamp("9223372036854775807"),
            Ok((i64::MAX, Some(EpochUnit::Nanos)))
        );
        assert!(parse_timestamp("").is_err());
    }

    #[test]
    fn numbers_and_ids() {
        assert_eq!(parse_number("price", " 167.76"), Ok(167.76));
        assert!(parse_number("price", "1,5").is_err());
        assert_eq!(parse_trade_id(""), Ok(None));
        assert_eq!(parse_trade_id("42"), Ok(Some(42)));
        assert_eq!(parse_trade_id("-1"), Ok(Some(text_trade_id("-1"))));
    }

    #[test]
    fn values_are_checked() {
        assert!(RawTrade::new(0, "A".into(), 1.0, 1.0, None).is_ok());
        assert_eq!(
            RawTrade::new(0, " ".into(), 1.0, 1.0, None),
            Err(RowError::EmptySymbol)
        );
        assert!(RawTrade::new(0, "A".into(), -1.0, 1.0, None).is_err());
    }

    #[test]
    fn text_trade_ids_are_kept_as_stable_hashes() {
        assert_eq!(parse_trade_id(" 42 "), Ok(Some(42)));
        assert_eq!(parse_trade_id(""), Ok(None));
        let uuid = "0c6d6f1e-8a0b-4bb5-9d6c-3f3e7f8a9b10";
        let id = parse_trade_id(uuid).expect("kept").expect("an id");
        assert_eq!(parse_trade_id(uuid), Ok(Some(id)), "stable");
        assert!(id >= 1 << 63);
        assert_ne!(parse_trade_id("abc-1"), parse_trade_id("abc-2"));
        // FNV-1a of the empty input and of "a", top bit set (published test vectors).
        assert_eq!(text_trade_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(text_trade_id("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
