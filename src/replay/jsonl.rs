//! JSON-lines replay files: one object per line with `ts`, `symbol`, `price`, `size` and an
//! optional `id` (or `trade_id`); other keys are ignored. Numbers may be JSON numbers or decimal
//! strings; `ts` is epoch milliseconds (number or string) or an RFC 3339 string. Blank lines are
//! skipped.
//!
//! ```text
//! {"ts":1381132800688,"symbol":"AIG","price":49.18,"size":300}
//! {"ts":"2013-10-07T08:00:30.270Z","symbol":"IBM","price":"181.52","size":"283","id":17}
//! ```

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::borrow::Cow;
use std::marker::PhantomData;

use super::fields::{
    EpochUnit, RawTrade, RowError, epoch_to_nanos, parse_number, parse_timestamp, parse_trade_id,
};
use super::{BatchSink, ReplaySource, Stop, for_each_line};

/// A JSON field that may be a number or a string, read in one pass: the visitor takes whichever
/// the parser finds (an untagged enum would buffer every value and try each variant in turn).
#[derive(Debug)]
enum Field<'a> {
    Int(i64),
    Unsigned(u64),
    Float(f64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

/// Accepts a JSON number or string.
struct FieldVisitor<'a>(PhantomData<Field<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a number or a string")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Field::Int(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Field::Unsigned(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Field::Float(value))
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(value.to_string())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(value)))
    }
}

#[derive(Debug, Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    ts: Option<Field<'a>>,
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    price: Option<Field<'a>>,
    #[serde(borrow)]
    size: Option<Field<'a>>,
    #[serde(borrow, alias = "trade_id")]
    id: Option<Field<'a>>,
}

fn number(field: &'static str, value: Option<Field<'_>>) -> Result<f64, RowError> {
    match value.ok_or(RowError::Missing(field))? {
        Field::Int(n) => Ok(n as f64),
        Field::Unsigned(n) => Ok(n as f64),
        Field::Float(x) => Ok(x),
        Field::Text(text) => parse_number(field, &text),
    }
}

fn timestamp(value: Option<Field<'_>>) -> Result<(i64, Option<EpochUnit>), RowError> {
    let integer = |value: i64| epoch_to_nanos(value).map(|(ts, unit)| (ts, Some(unit)));
    match value.ok_or(RowError::Missing("ts"))? {
        Field::Int(value) => integer(value),
        Field::Float(value) if value.fract() == 0.0 && value.abs() < 9.2e15 => {
            integer(value as i64)
        }
        Field::Unsigned(value) => i64::try_from(value)
            .map_err(|_| RowError::Timestamp(value.to_string()))
            .and_then(integer),
        Field::Float(value) => Err(RowError::Timestamp(value.to_string())),
        Field::Text(text) => parse_timestamp(&text),
    }
}

fn trade_id(value: Option<Field<'_>>) -> Result<Option<u64>, RowError> {
    match value {
        None => Ok(None),
        Some(Field::Int(n)) => u64::try_from(n).map(Some).map_err(|_| RowError::Number {
            field: "id",
            value: n.to_string(),
        }),
        Some(Field::Unsigned(n)) => Ok(Some(n)),
        Some(Field::Float(x)) => Err(RowError::Number {
            field: "id",
            value: x.to_string(),
        }),
        Some(Field::Text(text)) => parse_trade_id(&text),
    }
}

/// Parses one line.
pub fn parse_line(line: &str) -> Result<RawTrade<'_>, RowError> {
    let row: Row<'_> =
        serde_json::from_str(line).map_err(|error| RowError::Json(error.to_string()))?;
    let (ts, unit) = timestamp(row.ts)?;
    let symbol = row.symbol.ok_or(RowError::Missing("symbol"))?;
    let price = number("price", row.price)?;
    let size = number("size", row.size)?;
    let trade_id = trade_id(row.id)?;
    RawTrade::new(ts, symbol, price, size, trade_id).map(|raw| raw.in_unit(unit))
}

/// Reads one pass of a JSON-lines source into `sink`.
pub fn read(source: &ReplaySource, sink: &mut BatchSink) -> Result<(), Stop> {
    for_each_line(source, sink, |sink, location, line| {
        sink.row(location, parse_line(line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_or_strings() {
        let a = parse_line(r#"{"ts":1381132800688,"symbol":"AIG","price":49.18,"size":300}"#)
            .expect("valid");
        let b = parse_line(
            r#"{"ts":"2013-10-07T08:00:00.688Z","symbol":"AIG","price":"49.18","size":"300","x":1}"#,
        )
        .expect("valid");
        assert_eq!(a.ts_unit, Some(EpochUnit::Millis));
        assert_eq!(b.ts_unit, None);
        assert_eq!(a, b.in_unit(Some(EpochUnit::Millis)));
        assert_eq!(a.ts, 1_381_132_800_688_000_000);
        let with_id =
            parse_line(r#"{"ts":1,"symbol":"A","price":1,"size":1,"trade_id":"42"}"#).expect("ok");
        assert_eq!(with_id.trade_id, Some(42));
    }

    #[test]
    fn malformed_lines() {
        let cases = [
            (r#"{"ts":1,"symbol":"A","price":1}"#, "missing field `size`"),
            (r#"{"ts":1.5,"symbol":"A","price":1,"size":1}"#, "`ts`"),
            (r#"[1,2,3]"#, "not a trade object"),
            (r#"{"ts":1,"symbol":"A","price":"abc","size":1}"#, "`price`"),
            (
                r#"{"ts":1,"symbol":"A","price":1,"size":1"#,
                "not a trade object",
            ),
            (r#"{"ts":1,"symbol":null,"price":1,"size":1}"#, "`symbol`"),
        ];
        for (line, expected) in cases {
            let error = parse_line(line).expect_err("malformed");
            assert!(
                error.to_string().contains(expected),
                "{error} vs {expected}"
            );
        }
    }
}
