//! CSV replay files: a header row naming `ts,symbol,price,size` (any order, optional `id` or
//! `trade_id`), one trade per row. `ts` is epoch milliseconds or an RFC 3339 time.
//!
//! ```text
//! ts,symbol,price,size
//! 1381132800688,AIG,49.18,300
//! ```

use super::fields::{RawTrade, RowError, parse_number, parse_timestamp, parse_trade_id};
use super::{BatchSink, ReplayError, ReplaySource, RowLocation, Stop, open_text};

/// Column positions found in the header.
pub(super) struct Columns {
    ts: usize,
    symbol: usize,
    price: usize,
    size: usize,
    id: Option<usize>,
    count: usize,
}

impl Columns {
    /// The positions of the columns `header` names; a required one missing is an error.
    pub(super) fn from_header(
        header: &csv::ByteRecord,
        source_name: &str,
    ) -> Result<Self, ReplayError> {
        let find = |names: &[&str]| {
            header.iter().position(|field| {
                let field = String::from_utf8_lossy(field);
                let field = field.trim().trim_start_matches('\u{feff}');
                names.iter().any(|name| field.eq_ignore_ascii_case(name))
            })
        };
        let require = |column: &'static str| {
            find(&[column]).ok_or_else(|| ReplayError::MissingColumn {
                source_name: source_name.to_string(),
                column,
            })
        };
        Ok(Columns {
            ts: require("ts")?,
            symbol: require("symbol")?,
            price: require("price")?,
            size: require("size")?,
            id: find(&["id", "trade_id"]),
            count: header.len(),
        })
    }

    fn parse<'r>(&self, record: &'r csv::ByteRecord) -> Result<RawTrade<'r>, RowError> {
        if record.len() != self.count {
            return Err(RowError::FieldCount {
                expected: self.count,
                found: record.len(),
            });
        }
        let text = |index: usize, name: &'static str| {
            let bytes = record.get(index).ok_or(RowError::Missing(name))?;
            std::str::from_utf8(bytes).map_err(|_| RowError::Utf8(name))
        };
        let (ts, unit) = parse_timestamp(text(self.ts, "ts")?)?;
        let symbol = text(self.symbol, "symbol")?.trim();
        let price = parse_number("price", text(self.price, "price")?)?;
        let size = parse_number("size", text(self.size, "size")?)?;
        let trade_id = match self.id {
            Some(index) => parse_trade_id(text(index, "id")?)?,
            None => None,
        };
        RawTrade::new(ts, symbol.into(), price, size, trade_id).map(|raw| raw.in_unit(unit))
    }
}

/// Reads one pass of a CSV source into `sink`.
pub fn read(source: &ReplaySource, sink: &mut BatchSink) -> Result<(), Stop> {
    sink.set_progress_total(source.check()?);
    let input = open_text(source)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let header = reader
        .byte_headers()
        .map_err(|error| sink.read_error(error))?
        .clone();
    let columns = Columns::from_header(&header, sink.source_name())?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                sink.row(RowLocation::Line(line), columns.parse(&record))?;
            }
            Err(error) if error.is_io_error() => return Err(sink.read_error(error)),
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                sink.row(
                    RowLocation::Line(line),
                    Err(RowError::Unreadable(error.to_string())),
                )?;
            }
        }
        rows += 1;
        if rows.is_multiple_of(4096) {
            sink.set_progress(reader.position().byte());
        }
    }
    sink.set_progress(reader.position().byte());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn header_in_any_order_with_optional_id() {
        let columns = Columns::from_header(&record(&["size", "Symbol", "ts", "price", "id"]), "t")
            .expect("valid header");
        let row = record(&["300", "AIG", "1381132800688", "49.18", "7"]);
        let trade = columns.parse(&row).expect("valid row");
        assert_eq!(trade.symbol, "AIG");
        assert_eq!(trade.price, 49.18);
        assert_eq!(trade.size, 300.0);
        assert_eq!(trade.trade_id, Some(7));
    }

    #[test]
    fn missing_column_is_an_error() {
        let error = Columns::from_header(&record(&["ts", "symbol", "price"]), "t")
            .err()
            .expect("size is missing");
        assert!(error.to_string().contains("`size`"), "{error}");
    }

    #[test]
    fn malformed_rows() {
        let columns =
            Columns::from_header(&record(&["ts", "symbol", "price", "size"]), "t").expect("valid");
        let cases: &[(&[&str], &str)] = &[
            (&["1", "A", "x", "1"], "`price`"),
            (&["1", "A", "1"], "expected 4 fields"),
            (&["soon", "A", "1", "1"], "`ts`"),
            (&["1", "", "1", "1"], "`symbol` is empty"),
            (&["1", "A", "1", "-3"], "size -3"),
        ];
        for (fields, expected) in cases {
            let error = columns.parse(&record(fields)).expect_err("malformed");
            assert!(
                error.to_string().contains(expected),
                "{error} vs {expected}"
            );
        }
    }
}
