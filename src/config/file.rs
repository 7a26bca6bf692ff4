//! The TOML configuration file as written (serde, unknown keys refused), before validation.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::alerts::RuleSpec;

/// A number, or a string holding one (`speed = 60` or `speed = "max"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum NumberOrText {
    Number(f64),
    Text(String),
}

/// A `[[feeds]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFeed {
    pub(super) provider: String,
    pub(super) url: Option<String>,
    pub(super) symbols: Vec<String>,
    pub(super) channels: Option<Vec<String>>,
    /// The environment variable holding the API key (the provider's default otherwise).
    pub(super) key_env: Option<String>,
    /// The environment variable holding the API secret (the provider's default otherwise).
    pub(super) secret_env: Option<String>,
}

/// The TOML file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) record: Option<PathBuf>,
    pub(super) fsync: Option<String>,
    pub(super) rules_file: Option<PathBuf>,
    pub(super) recover: Option<PathBuf>,
    pub(super) feeds: Option<Vec<FileFeed>>,
    pub(super) replay: Option<Vec<PathBuf>>,
    pub(super) speed: Option<NumberOrText>,
    pub(super) replay_loop: Option<bool>,
    pub(super) ts_unit: Option<crate::replay::fields::EpochUnit>,
    pub(super) max_pause: Option<String>,
    pub(super) windows: Option<Vec<String>>,
    pub(super) lateness: Option<String>,
    pub(super) intervals: Option<Vec<String>>,
    pub(super) candle_history: Option<usize>,
    pub(super) dedup_ids: Option<usize>,
    pub(super) indicator_cache_capacity: Option<u64>,
    pub(super) indicator_cache_ttl: Option<String>,
    pub(super) alerts: Option<Vec<RuleSpec>>,
    pub(super) alerts_file: Option<PathBuf>,
    pub(super) alert_log: Option<bool>,
    pub(super) webhook_url: Option<String>,
    pub(super) webhook_timeout: Option<String>,
    pub(super) webhook_retries: Option<u32>,
    pub(super) stream_throttle: Option<String>,
    pub(super) max_requests_in_flight: Option<usize>,
    pub(super) request_timeout: Option<String>,
    pub(super) cors_origins: Option<Vec<String>>,
    pub(super) max_connections: Option<usize>,
    pub(super) history: Option<Vec<PathBuf>>,
    pub(super) header_timeout: Option<String>,
    pub(super) keep_alive_timeout: Option<String>,
    pub(super) stall_timeout: Option<String>,
    pub(super) stale_after: Option<String>,
    pub(super) backoff_max: Option<String>,
    pub(super) circuit_failures: Option<u32>,
    pub(super) circuit_open_for: Option<String>,
    pub(super) nats: Option<Vec<String>>,
    pub(super) node: Option<String>,
    pub(super) partitions: Option<u32>,
    pub(super) replicas: Option<usize>,
    pub(super) retention: Option<String>,
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(&text, path)
}

pub(super) fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}
