//! Parquet replay files, read with polars: columns `ts` (Int64 epoch milliseconds, a Datetime of
//! any unit, or RFC 3339 strings), `symbol` (String), `price` and `size` (any numeric type or
//! decimal strings), optional `id`/`trade_id` (integer). A row with a null in a required column is
//! malformed: counted, logged with its row number, skipped.
//!
//! Prices and sizes may be any integer or float width, Decimal, or decimal strings; ids integers
//! or text. Any other column type is an error naming the column and its type. The file is decoded
//! on the reader's blocking thread a row group at a time (at most `SLICE_ROWS`, 262,144 rows),
//! only the columns above, so memory is bounded by a slice, not by the file.

use polars::prelude::*;

use super::fields::{
    EpochUnit, RawTrade, RowError, epoch_to_nanos, parse_number, parse_timestamp, parse_trade_id,
};
use super::{BatchSink, ReplayError, ReplayInput, ReplaySource, RowLocation, Stop};

/// A `ts` column in one of the accepted types, as nanoseconds per row.
enum TimeColumn {
    /// Integer epoch times, their unit told by magnitude.
    Integer(Int64Chunked),
    Scaled {
        values: Int64Chunked,
        to_nanos: i64,
    },
    Text(StringChunked),
}

impl TimeColumn {
    fn get(&self, row: usize) -> Result<(i64, Option<EpochUnit>), RowError> {
        match self {
            TimeColumn::Integer(values) => {
                epoch_to_nanos(values.get(row).ok_or(RowError::Missing("ts"))?)
                    .map(|(ts, unit)| (ts, Some(unit)))
            }
            TimeColumn::Scaled { values, to_nanos } => {
                let value = values.get(row).ok_or(RowError::Missing("ts"))?;
                value
                    .checked_mul(*to_nanos)
                    .map(|ts| (ts, None))
                    .ok_or_else(|| RowError::Timestamp(value.to_string()))
            }
            TimeColumn::Text(values) => {
                parse_timestamp(values.get(row).ok_or(RowError::Missing("ts"))?)
            }
        }
    }
}

/// A numeric column, as f64 or as decimal strings.
enum NumberColumn {
    Float(Float64Chunked),
    Text(StringChunked),
}

impl NumberColumn {
    fn get(&self, field: &'static str, row: usize) -> Result<f64, RowError> {
        match self {
            NumberColumn::Float(values) => values.get(row).ok_or(RowError::Missing(field)),
            NumberColumn::Text(values) => {
                parse_number(field, values.get(row).ok_or(RowError::Missing(field))?)
            }
        }
    }
}

fn column<'a>(
    frame: &'a DataFrame,
    names: &[&'static str],
    source_name: &str,
) -> Result<Option<&'a Column>, ReplayError> {
    let _ = source_name;
    Ok(names.iter().find_map(|name| frame.column(name).ok()))
}

fn required<'a>(
    frame: &'a DataFrame,
    name: &'static str,
    source_name: &str,
) -> Result<&'a Column, ReplayError> {
    column(frame, &[name], source_name)?.ok_or_else(|| ReplayError::MissingColumn {
        source_name: source_name.to_string(),
        column: name,
    })
}

fn type_error(source_name: &str, column: &'static str, dtype: &DataType) -> ReplayError {
    ReplayError::ColumnType {
        source_name: source_name.to_string(),
        column,
        dtype: dtype.to_string(),
    }
}

fn time_column(column: &Column, source_name: &str) -> Result<TimeColumn, ReplayError> {
    let dtype = column.dtype();
    let error = |_| type_error(source_name, "ts", dtype);
    match dtype {
        DataType::Datetime(unit, _) => {
            let to_nanos = match unit {
                TimeUnit::Nanoseconds => 1,
                TimeUnit::Microseconds => 1_000,
                TimeUnit::Milliseconds => 1_000_000,
            };
            let values = column.datetime().map_err(error)?.physical().clone();
            Ok(TimeColumn::Scaled { values, to_nanos })
        }
        DataType::String => Ok(TimeColumn::Text(column.str().map_err(error)?.clone())),
        dtype if dtype.is_integer() => {
            let cast = column.cast(&DataType::Int64).map_err(error)?;
            Ok(TimeColumn::Integer(cast.i64().map_err(error)?.clone()))
        }
        _ => Err(type_error(source_name, "ts", dtype)),
    }
}

fn number_column(
    column: &Column,
    name: &'static str,
    source_name: &str,
) -> Result<NumberColumn, ReplayError> {
    let dtype = column.dtype();
    let error = |_| type_error(source_name, name, dtype);
    match dtype {
        DataType::String => Ok(NumberColumn::Text(column.str().map_err(error)?.clone())),
        dtype if dtype.is_primitive_numeric() || dtype.is_decimal() => {
            let cast = column.cast(&DataType::Float64).map_err(error)?;
            Ok(NumberColumn::Float(cast.f64().map_err(error)?.clone()))
        }
        _ => Err(type_error(source_name, name, dtype)),
    }
}

/// Most rows decoded at a time: the file is read a row group at a time (what its writer chose as
/// a unit), and a row group larger than this a slice of it at a time, so memory is bounded by
/// one slice whatever the file's layout.
const SLICE_ROWS: usize = 262_144;

/// The columns replay reads; any other column of the file is never decoded.
const COLUMNS: [&str; 6] = ["ts", "symbol", "price", "size", "id", "trade_id"];

/// Reads one pass of a Parquet source into `sink`, a row group (or a slice of one) at a time.
pub fn read(source: &ReplaySource, sink: &mut BatchSink) -> Result<(), Stop> {
    let source_name = sink.source_name().to_string();
    let ReplayInput::File(path) = &source.input else {
        return Err(Stop::Failed(ReplayError::EmbeddedParquet { source_name }));
    };
    let open = || {
        std::fs::File::open(path).map_err(|error| ReplayError::Open {
            path: path.clone(),
            source: error,
        })
    };
    let mut reader = ParquetReader::new(open()?);
    let schema = reader.schema().map_err(|error| sink.read_error(error))?;
    let columns: Vec<String> = COLUMNS
        .iter()
        .filter(|name| schema.contains(name))
        .map(|name| name.to_string())
        .collect();
    let metadata = reader
        .get_metadata()
        .map_err(|error| sink.read_error(error))?
        .clone();
    sink.set_progress_total(metadata.num_rows as u64);
    let mut offset = 0;
    for group in &metadata.row_groups {
        let group_end = offset + group.num_rows();
        while offset < group_end {
            let rows = (group_end - offset).min(SLICE_ROWS);
            let mut reader = ParquetReader::new(open()?)
                .with_columns(Some(columns.clone()))
                .with_slice(Some((offset, rows)));
            reader.set_metadata(metadata.clone());
            let frame = reader.finish().map_err(|error| sink.read_error(error))?;
            read_frame(&frame, offset, &source_name, sink)?;
            offset += rows;
            sink.set_progress(offset as u64);
        }
    }
    Ok(())
}

/// Hands the rows of one decoded slice, the first of them row `first_row` of the file, to `sink`.
fn read_frame(
    frame: &DataFrame,
    first_row: usize,
    source_name: &str,
    sink: &mut BatchSink,
) -> Result<(), Stop> {
    let source_name = source_name.to_string();
    let rows = frame.height();
    let ts = time_column(required(frame, "ts", &source_name)?, &source_name)?;
    let symbol_column = required(frame, "symbol", &source_name)?;
    let symbols = symbol_column
        .str()
        .map_err(|_| type_error(&source_name, "symbol", symbol_column.dtype()))?
        .clone();
    let price = number_column(
        required(frame, "price", &source_name)?,
        "price",
        &source_name,
    )?;
    let size = number_column(required(frame, "size", &source_name)?, "size", &source_name)?;
    let ids: Option<Vec<Option<u64>>> = match column(frame, &["id", "trade_id"], &source_name)? {
        Some(ids) if ids.dtype().is_integer() => Some(
            ids.cast(&DataType::UInt64)
                .map_err(|_| type_error(&source_name, "id", ids.dtype()))?
                .u64()
                .map_err(|_| type_error(&source_name, "id", ids.dtype()))?
                .iter()
                .collect(),
        ),
        Some(ids) if ids.dtype() == &DataType::String => Some(
            ids.str()
                .map_err(|_| type_error(&source_name, "id", ids.dtype()))?
                .iter()
                .map(|id| id.and_then(|text| parse_trade_id(text).ok().flatten()))
                .collect(),
        ),
        Some(ids) => return Err(Stop::Failed(type_error(&source_name, "id", ids.dtype()))),
        None => None,
    };
    for row in 0..rows {
        let parsed = (|| {
            let (ts, unit) = ts.get(row)?;
            let symbol = symbols.get(row).ok_or(RowError::Missing("symbol"))?;
            let price = price.get("price", row)?;
            let size = size.get("size", row)?;
            let trade_id = ids.as_ref().and_then(|ids| ids.get(row).copied().flatten());
            RawTrade::new(ts, symbol.into(), price, size, trade_id).map(|raw| raw.in_unit(unit))
        })();
        sink.row(RowLocation::Row((first_row + row) as u64 + 1), parsed)?;
    }
    Ok(())
}
