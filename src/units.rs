//! Durations and labels as people write them (`250ms`, `1m`, `1h`), parsed once, with their own
//! error. A leaf: configuration, the API and the alert rules all parse with it, and it imports
//! nothing from the crate.

use std::time::Duration;

/// A value that is not a valid duration or label; names the option or field it was given for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {option}: {message}")]
pub struct UnitError {
    /// The option or field.
    pub option: &'static str,
    /// What is wrong.
    pub message: String,
}

impl UnitError {
    /// An error about `option`.
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        UnitError {
            option,
            message: message.into(),
        }
    }
}

/// Parses a human duration (`250ms`, `1m`, `1h 30m`) given for `option`.
pub fn parse_duration(option: &'static str, text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim())
        .map_err(|error| UnitError::new(option, format!("{text:?}: {error}")))
}

/// A duration in nanoseconds, refusing one that does not fit.
pub fn duration_nanos(option: &'static str, duration: Duration) -> Result<i64, UnitError> {
    i64::try_from(duration.as_nanos()).map_err(|_| UnitError::new(option, "too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_their_errors() {
        assert_eq!(
            parse_duration("window", " 1m "),
            Ok(Duration::from_secs(60))
        );
        let error = parse_duration("window", "soon").expect_err("not a duration");
        assert_eq!(error.option, "window");
        assert!(error.to_string().starts_with("invalid window: \"soon\""));
        assert!(duration_nanos("x", Duration::MAX).is_err());
    }
}
