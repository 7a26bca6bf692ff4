//! Technical indicators over closed candles, with TA-Lib's definitions and warm-up conventions.
//!
//! Each indicator is a pure function over a slice of values in its own file ([`sma`], [`ema`],
//! [`rsi`], [`macd`], [`bbands`], [`atr`]), written from TA-Lib's published algorithms so that
//! TA-Lib run over the same candles gives the same values (the golden tests check every point,
//! warm-up included). [`Indicator`] names one indicator with its parameters (validated, with the
//! defaults), and [`Indicator::compute`] runs it over a candle series. [`cache`] memoizes the
//! results for readers. Nothing here knows about the HTTP API or the clock.

pub mod atr;
pub mod bbands;
pub mod cache;
pub mod ema;
pub mod macd;
pub mod rsi;
pub mod sma;

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::analytics::Candle;
use crate::model::Timestamp;

/// Longest period accepted (TA-Lib's own upper bound).
pub const MAX_PERIOD: usize = 100_000;
/// Largest band width multiplier accepted.
pub const MAX_DEVIATIONS: f64 = 100.0;

/// TA-Lib's default period of SMA and EMA.
pub const DEFAULT_MA_PERIOD: usize = 30;
/// TA-Lib's default RSI period.
pub const DEFAULT_RSI_PERIOD: usize = 14;
/// TA-Lib's default MACD periods: fast, slow, signal.
pub const DEFAULT_MACD: (usize, usize, usize) = (12, 26, 9);
/// Bollinger's own default: 20 periods, 2 standard deviations (TA-Lib's function defaults to a
/// period of 5; the design asks for 20).
pub const DEFAULT_BBANDS: (usize, f64) = (20, 2.0);
/// TA-Lib's default ATR period.
pub const DEFAULT_ATR_PERIOD: usize = 14;

/// The indicator names the API knows, in the order `/indicators` lists them.
pub const NAMES: [&str; 6] = ["sma", "ema", "rsi", "macd", "bbands", "atr"];

/// One indicator with its parameters.
#[derive(Debug, Clone, Copy)]
pub enum Indicator {
    /// Simple moving average of closes.
    Sma {
        /// Bars averaged (default 30, as TA-Lib).
        period: usize,
    },
    /// Exponential moving average of closes.
    Ema {
        /// Bars (default 30, as TA-Lib).
        period: usize,
    },
    /// Relative strength index of closes.
    Rsi {
        /// Changes averaged (default 14).
        period: usize,
    },
    /// MACD line, signal and histogram of closes.
    Macd {
        /// Fast EMA period (default 12).
        fast: usize,
        /// Slow EMA period (default 26).
        slow: usize,
        /// Signal EMA period (default 9).
        signal: usize,
    },
    /// Bollinger bands of closes.
    Bbands {
        /// Bars (default 20).
        period: usize,
        /// Standard deviations from the middle band (default 2).
        k: f64,
    },
    /// Average true range of high, low and close.
    Atr {
        /// Bars (default 14).
        period: usize,
    },
}

impl PartialEq for Indicator {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Indicator {}

impl Hash for Indicator {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// Parameters as the request gives them (already split from the query), before validation.
#[derive(Debug, Clone, Default)]
pub struct RawParams<'a> {
    /// `period`.
    pub period: Option<&'a str>,
    /// `fast`.
    pub fast: Option<&'a str>,
    /// `slow`.
    pub slow: Option<&'a str>,
    /// `signal`.
    pub signal: Option<&'a str>,
    /// `k`.
    pub k: Option<&'a str>,
}

/// Why an indicator request is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndicatorError {
    /// No indicator of that name.
    #[error("unknown indicator {0:?}; known: sma, ema, rsi, macd, bbands, atr")]
    Unknown(String),
    /// A parameter this indicator does not take.
    #[error("{indicator} takes no parameter {parameter:?} (it takes: {takes})")]
    NotApplicable {
        /// The indicator.
        indicator: &'static str,
        /// The parameter given.
        parameter: &'static str,
        /// The parameters it takes.
        takes: &'static str,
    },
    /// A parameter's value is out of range or not a number.
    #[error("invalid {parameter}: {message}")]
    Invalid {
        /// The parameter.
        parameter: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn integer(
    parameter: &'static str,
    text: Option<&str>,
    default: usize,
    min: usize,
) -> Result<usize, IndicatorError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.trim().parse::<usize>() {
        Ok(value) if (min..=MAX_PERIOD).contains(&value) => Ok(value),
        _ => Err(IndicatorError::Invalid {
            parameter,
            message: format!("expected an integer from {min} to {MAX_PERIOD}, got {text:?}"),
        }),
    }
}

impl Indicator {
    /// The indicator `name` with `params`, TA-Lib's defaults for those absent (Bollinger's own
    /// 20 and 2 for BBANDS, as the design says).
    pub fn parse(name: &str, params: &RawParams<'_>) -> Result<Self, IndicatorError> {
        let name = name.to_ascii_lowercase();
        let (indicator, takes): (&'static str, &'static str) = match name.as_str() {
            "sma" => ("sma", "period"),
            "ema" => ("ema", "period"),
            "rsi" => ("rsi", "period"),
            "macd" => ("macd", "fast, slow, signal"),
            "bbands" => ("bbands", "period, k"),
            "atr" => ("atr", "period"),
            _ => return Err(IndicatorError::Unknown(name)),
        };
        let given = [
            ("period", params.period),
            ("fast", params.fast),
            ("slow", params.slow),
            ("signal", params.signal),
            ("k", params.k),
        ];
        for (parameter, value) in given {
            if value.is_some() && !takes.split(", ").any(|t| t == parameter) {
                return Err(IndicatorError::NotApplicable {
                    indicator,
                    parameter,
                    takes,
                });
            }
        }
        let parsed = match indicator {
            "sma" => Indicator::Sma {
                period: integer("period", params.period, DEFAULT_MA_PERIOD, 2)?,
            },
            "ema" => Indicator::Ema {
                period: integer("period", params.period, DEFAULT_MA_PERIOD, 2)?,
            },
            "rsi" => Indicator::Rsi {
                period: integer("period", params.period, DEFAULT_RSI_PERIOD, 2)?,
            },
            "macd" => {
                let fast = integer("fast", params.fast, DEFAULT_MACD.0, 2)?;
                let slow = integer("slow", params.slow, DEFAULT_MACD.1, 2)?;
                let signal = integer("signal", params.signal, DEFAULT_MACD.2, 1)?;
                if fast >= slow {
                    return Err(IndicatorError::Invalid {
                        parameter: "fast",
                        message: format!("fast ({fast}) must be below slow ({slow})"),
                    });
                }
                Indicator::Macd { fast, slow, signal }
            }
            "bbands" => {
                let period = integer("period", params.period, DEFAULT_BBANDS.0, 2)?;
                let k = match params.k {
                    None => DEFAULT_BBANDS.1,
                    Some(text) => match text.trim().parse::<f64>() {
                        Ok(k) if k > 0.0 && k <= MAX_DEVIATIONS => k,
                        _ => {
                            return Err(IndicatorError::Invalid {
                                parameter: "k",
                                message: format!(
                                    "expected a number above 0 and at most {MAX_DEVIATIONS}, got {text:?}"
                                ),
                            });
                        }
                    },
                };
                Indicator::Bbands { period, k }
            }
            _ => Indicator::Atr {
                period: integer("period", params.period, DEFAULT_ATR_PERIOD, 1)?,
            },
        };
        Ok(parsed)
    }

    /// Every indicator with its default parameters, in [`NAMES`] order.
    pub fn defaults() -> [Indicator; 6] {
        [
            Indicator::Sma {
                period: DEFAULT_MA_PERIOD,
            },
            Indicator::Ema {
                period: DEFAULT_MA_PERIOD,
            },
            Indicator::Rsi {
                period: DEFAULT_RSI_PERIOD,
            },
            Indicator::Macd {
                fast: DEFAULT_MACD.0,
                slow: DEFAULT_MACD.1,
                signal: DEFAULT_MACD.2,
            },
            Indicator::Bbands {
                period: DEFAULT_BBANDS.0,
                k: DEFAULT_BBANDS.1,
            },
            Indicator::Atr {
                period: DEFAULT_ATR_PERIOD,
            },
        ]
    }

    /// The indicator's lowercase name.
    pub fn name(&self) -> &'static str {
        match self {
            Indicator::Sma { .. } => "sma",
            Indicator::Ema { .. } => "ema",
            Indicator::Rsi { .. } => "rsi",
            Indicator::Macd { .. } => "macd",
            Indicator::Bbands { .. } => "bbands",
            Indicator::Atr { .. } => "atr",
        }
    }

    /// Closed candles needed for the first value.
    pub fn candles_needed(&self) -> usize {
        1 + match *self {
            Indicator::Sma { period } => sma::lookback(period),
            Indicator::Ema { period } => ema::lookback(period),
            Indicator::Rsi { period } => rsi::lookback(period),
            Indicator::Macd { slow, signal, .. } => macd::lookback(slow, signal),
            Indicator::Bbands { period, .. } => bbands::lookback(period),
            Indicator::Atr { period } => atr::lookback(period),
        }
    }

    /// A hashable identity (the band multiplier by its bits; it is validated finite).
    fn key(&self) -> (u8, usize, usize, usize, u64) {
        match *self {
            Indicator::Sma { period } => (0, period, 0, 0, 0),
            Indicator::Ema { period } => (1, period, 0, 0, 0),
            Indicator::Rsi { period } => (2, period, 0, 0, 0),
            Indicator::Macd { fast, slow, signal } => (3, fast, slow, signal, 0),
            Indicator::Bbands { period, k } => (4, period, 0, 0, k.to_bits()),
            Indicator::Atr { period } => (5, period, 0, 0, 0),
        }
    }

    /// Runs the indicator over `candles` (closed, oldest first).
    pub fn compute(&self, candles: &[Candle]) -> IndicatorSeries {
        let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
        let values: Vec<IndicatorValue> = match *self {
            Indicator::Sma { period } => single(sma::sma(&closes, period)),
            Indicator::Ema { period } => single(ema::ema(&closes, period)),
            Indicator::Rsi { period } => single(rsi::rsi(&closes, period)),
            Indicator::Macd { fast, slow, signal } => {
                let out = macd::macd(&closes, fast, slow, signal);
                (0..out.macd.len())
                    .map(|i| IndicatorValue::Macd {
                        macd: out.macd[i],
                        signal: out.signal[i],
                        hist: out.hist[i],
                    })
                    .collect()
            }
            Indicator::Bbands { period, k } => {
                let out = bbands::bbands(&closes, period, k);
                (0..out.middle.len())
                    .map(|i| IndicatorValue::Bands {
                        upper: out.upper[i],
                        middle: out.middle[i],
                        lower: out.lower[i],
                    })
                    .collect()
            }
            Indicator::Atr { period } => {
                let high: Vec<f64> = candles.iter().map(|c| c.high).collect();
                let low: Vec<f64> = candles.iter().map(|c| c.low).collect();
                single(atr::atr(&high, &low, &closes, period))
            }
        };
        let first = self.candles_needed() - 1;
        let points = values
            .into_iter()
            .zip(candles.iter().skip(first))
            .map(|(value, candle)| Point {
                start: candle.start,
                value,
            })
            .collect();
        IndicatorSeries {
            indicator: *self,
            candles: candles.len(),
            points,
        }
    }
}

fn single(values: Vec<f64>) -> Vec<IndicatorValue> {
    values.into_iter().map(IndicatorValue::Single).collect()
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Indicator::Sma { period } => write!(f, "SMA({period})"),
            Indicator::Ema { period } => write!(f, "EMA({period})"),
            Indicator::Rsi { period } => write!(f, "RSI({period})"),
            Indicator::Macd { fast, slow, signal } => write!(f, "MACD({fast}, {slow}, {signal})"),
            Indicator::Bbands { period, k } => write!(f, "BBANDS({period}, {k})"),
            Indicator::Atr { period } => write!(f, "ATR({period})"),
        }
    }
}

/// The parameters as JSON: `{"period":14}`, `{"fast":12,"slow":26,"signal":9}`, ….
impl Serialize for Indicator {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match *self {
            Indicator::Sma { period }
            | Indicator::Ema { period }
            | Indicator::Rsi { period }
            | Indicator::Atr { period } => map.serialize_entry("period", &period)?,
            Indicator::Macd { fast, slow, signal } => {
                map.serialize_entry("fast", &fast)?;
                map.serialize_entry("slow", &slow)?;
                map.serialize_entry("signal", &signal)?;
            }
            Indicator::Bbands { period, k } => {
                map.serialize_entry("period", &period)?;
                map.serialize_entry("k", &k)?;
            }
        }
        map.end()
    }
}

/// One output of an indicator: a number, or the named outputs of a multi-output one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum IndicatorValue {
    /// SMA, EMA, RSI, ATR.
    Single(f64),
    /// MACD's three outputs.
    Macd {
        /// fast EMA − slow EMA.
        macd: f64,
        /// EMA of the line.
        signal: f64,
        /// line − signal.
        hist: f64,
    },
    /// Bollinger bands.
    Bands {
        /// middle + k·σ.
        upper: f64,
        /// SMA.
        middle: f64,
        /// middle − k·σ.
        lower: f64,
    },
}

/// An indicator's value at one closed candle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Start of the candle, nanoseconds.
    pub start: Timestamp,
    /// The value there.
    pub value: IndicatorValue,
}

/// An indicator run over a candle series: one point per candle from the first that has enough
/// history.
#[derive(Debug, Clone, PartialEq)]
pub struct IndicatorSeries {
    /// What was computed.
    pub indicator: Indicator,
    /// Closed candles it was computed over.
    pub candles: usize,
    /// Values, oldest first.
    pub points: Vec<Point>,
}

impl IndicatorSeries {
    /// The latest value, if there are enough candles.
    pub fn last(&self) -> Option<&Point> {
        self.points.last()
    }

    /// Why there is no value, when there is none.
    pub fn reason(&self) -> Option<String> {
        self.points.is_empty().then(|| {
            format!(
                "{} needs {} closed candles; {} so far",
                self.indicator,
                self.indicator.candles_needed(),
                self.candles
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(period: Option<&'a str>, k: Option<&'a str>) -> RawParams<'a> {
        RawParams {
            period,
            k,
            ..RawParams::default()
        }
    }

    #[test]
    fn parses_names_parameters_and_defaults() {
        let none = RawParams::default();
        assert_eq!(
            Indicator::parse("RSI", &none),
            Ok(Indicator::Rsi { period: 14 })
        );
        assert_eq!(
            Indicator::parse("bbands", &params(Some("10"), Some("1.5"))),
            Ok(Indicator::Bbands { period: 10, k: 1.5 })
        );
        assert!(matches!(
            Indicator::parse("vwma", &none),
            Err(IndicatorError::Unknown(_))
        ));
        assert!(matches!(
            Indicator::parse("rsi", &params(None, Some("2"))),
            Err(IndicatorError::NotApplicable { parameter: "k", .. })
        ));
        for bad in ["0", "1", "-3", "x", "100001", "2.5"] {
            assert!(
                Indicator::parse("sma", &params(Some(bad), None)).is_err(),
                "{bad}"
            );
        }
        for bad in ["0", "-1", "NaN", "inf", "101"] {
            assert!(
                Indicator::parse("bbands", &params(None, Some(bad))).is_err(),
                "{bad}"
            );
        }
        let inverted = RawParams {
            fast: Some("30"),
            ..RawParams::default()
        };
        assert!(Indicator::parse("macd", &inverted).is_err());
        assert_eq!(Indicator::Atr { period: 1 }.candles_needed(), 2);
        assert_eq!(
            Indicator::parse("macd", &none).map(|m| m.candles_needed()),
            Ok(34)
        );
    }

    #[test]
    fn defaults_are_what_parsing_without_parameters_gives() {
        for (name, default) in NAMES.iter().zip(Indicator::defaults()) {
            assert_eq!(Indicator::parse(name, &RawParams::default()), Ok(default));
            assert_eq!(default.name(), *name);
        }
    }

    #[test]
    fn too_few_candles_say_how_many_are_needed() {
        let series = Indicator::Rsi { period: 14 }.compute(&[]);
        assert_eq!(series.last(), None);
        assert_eq!(
            series.reason().as_deref(),
            Some("RSI(14) needs 15 closed candles; 0 so far")
        );
        let json = serde_json::to_string(&Indicator::Macd {
            fast: 12,
            slow: 26,
            signal: 9,
        })
        .expect("serializes");
        assert_eq!(json, r#"{"fast":12,"slow":26,"signal":9}"#);
    }
}
