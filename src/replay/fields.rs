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
    /// The timestamp is neither epoch milliseconds nor RFC 3339.
    #[error("`ts` value {0:?} is neither epoch milliseconds nor an RFC 3339 time")]
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
        })
    }
}

/// Epoch milliseconds to nanoseconds, refusing values that overflow.
pub fn millis_to_nanos(millis: i64) -> Result<Timestamp, RowError> {
    millis
        .checked_mul(NANOS_PER_MILLI)
        .ok_or_else(|| RowError::Timestamp(millis.to_string()))
}

/// Parses a `ts` field: integer epoch milliseconds, or an RFC 3339 time
/// (`2013-10-07T13:30:00.123Z`, any offset).
pub fn parse_timestamp(text: &str) -> Result<Timestamp, RowError> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<i64>() {
        return millis_to_nanos(millis);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|time| time.timestamp_nanos_opt())
        .ok_or_else(|| RowError::Timestamp(text.to_string()))
}

/// Parses a decimal number field.
pub fn parse_number(field: &'static str, text: &str) -> Result<f64, RowError> {
    text.trim().parse::<f64>().map_err(|_| RowError::Number {
        field,
        value: text.to_string(),
    })
}

/// Parses an optional trade id field (empty means none).
pub fn parse_trade_id(text: &str) -> Result<Option<u64>, RowError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|_| RowError::Number {
        field: "id",
        value: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_both_forms() {
        assert_eq!(
            parse_timestamp("1381132800688"),
            Ok(1_381_132_800_688_000_000)
        );
        assert_eq!(
            parse_timestamp("2013-10-07T08:00:00.688Z"),
            Ok(1_381_132_800_688_000_000)
        );
        assert_eq!(
            parse_timestamp("2013-10-07T04:00:00.688-04:00"),
            Ok(1_381_132_800_688_000_000)
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("9223372036854775807").is_err());
        assert!(parse_timestamp("").is_err());
    }

    #[test]
    fn numbers_and_ids() {
        assert_eq!(parse_number("price", " 167.76"), Ok(167.76));
        assert!(parse_number("price", "1,5").is_err());
        assert_eq!(parse_trade_id(""), Ok(None));
        assert_eq!(parse_trade_id("42"), Ok(Some(42)));
        assert!(parse_trade_id("-1").is_err());
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
}
