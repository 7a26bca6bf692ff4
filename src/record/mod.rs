//! The recorder: writes what the live feeds delivered as raw-frame JSON lines
//! (`*.frames.jsonl`, the format [`crate::replay::frames`] replays through the real parsers), and
//! their normalized trades through the trade log ([`ticklog`]), compacted to Parquet by day
//! (`<UTC day>/trades-<UTC start>.parquet`, via polars, the columns `--replay` reads: `ts` as a
//! nanosecond Datetime, `symbol`, `price`, `size`, `id`, `feed`).
//!
//! Connectors hand every frame received, every frame sent (with credentials masked) and
//! `connect`/`close` markers to a bounded channel; one writer thread appends them to
//! `DIR/frames-<UTC start>.frames.jsonl`, rotating to a new file past [`ROTATE_BYTES`] or at the
//! top of each hour. The channel applies backpressure: a recording never silently loses a frame
//! (a slow disk slows the feeds instead). The file is flushed when the writer drains, which is
//! when every connector has stopped: shutdown loses nothing that was received.

pub mod ticklog;

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Frames queued for the writer: a few hundred milliseconds of a busy feed.
pub const RECORDER_CHANNEL_CAPACITY: usize = 4096;
/// A recording file is closed and a new one started past this size.
pub const ROTATE_BYTES: u64 = 256 * 1024 * 1024;

/// Which way a recorded frame went, or what happened to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A frame received.
    In,
    /// A frame sent.
    Out,
    /// The connection opened.
    Connect,
    /// The connection ended.
    Close,
    /// A marker this version does not know (read, never written).
    #[serde(other)]
    Other,
}

/// One line of a raw-frame recording (`*.frames.jsonl`): written by the recorder, read back by
/// the replay ([`crate::replay::frames`]) and served by the mock exchange. Borrowed when read,
/// owned when written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord<'a> {
    /// Receive (or send) time, nanoseconds since the epoch.
    pub recv_ns: i64,
    /// The connection: feed name and connection number.
    #[serde(borrow)]
    pub conn: Cow<'a, str>,
    /// The provider's name.
    #[serde(borrow)]
    pub provider: Cow<'a, str>,
    /// Direction or marker.
    pub dir: Direction,
    /// The frame's text (frames), or the reason (`close`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Cow<'a, str>>,
    /// The URL, without credentials (`connect`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Cow<'a, str>>,
}

/// Where connectors send frames to record.
pub type RecordSender = mpsc::Sender<FrameRecord<'static>>;

/// A recording failure: the recorder stops, the feeds go on.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The directory or a file cannot be written.
    #[error("recording to {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// An open recording file.
struct Output {
    path: PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
    bytes: u64,
    hour: DateTime<Utc>,
}

/// The files of `directory`, and of its day partitions (subdirectories named `YYYY-MM-DD`, where
/// the trade log compacts), whose names have one of the `(prefix, suffix)` pairs, in no order.
pub fn files_named(directory: &Path, kinds: &[(&str, &str)]) -> std::io::Result<Vec<PathBuf>> {
    let named = |path: &Path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| {
                kinds
                    .iter()
                    .any(|(prefix, suffix)| name.starts_with(prefix) && name.ends_with(suffix))
            })
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory)?.flatten() {
        let path = entry.path();
        if is_day_partition(&path) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            // A partition removed meanwhile (by the user) holds nothing.
            let Ok(inner) = std::fs::read_dir(&path) else {
                continue;
            };
            files.extend(
                inner
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| named(path)),
            );
        } else if named(&path) {
            files.push(path);
        }
    }
    Ok(files)
}

/// Whether `path` is named like a day partition (`YYYY-MM-DD`).
pub fn is_day_partition(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| {
            name.len() == 10 && chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").is_ok()
        })
}

/// The start of `time`'s hour: recordings rotate at the top of each hour.
fn hour_of(time: DateTime<Utc>) -> DateTime<Utc> {
    time.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(time)
}

fn open(directory: &Path, now: DateTime<Utc>) -> Result<Output, RecordError> {
    let stamp = now.format("%Y%m%dT%H%M%S%.3fZ");
    let path = directory.join(format!("frames-{stamp}.frames.jsonl"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| RecordError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(Output {
        path,
        writer: std::io::BufWriter::with_capacity(1 << 16, file),
        bytes: 0,
        hour: hour_of(now),
    })
}

/// Creates `directory` and starts the writer thread; returns the sender for connectors and the
/// writer's handle (join it after every sender is dropped).
pub fn start(
    directory: PathBuf,
) -> Result<
    (
        RecordSender,
        std::thread::JoinHandle<Result<u64, RecordError>>,
    ),
    RecordError,
> {
    std::fs::create_dir_all(&directory).map_err(|source| RecordError::Io {
        path: directory.clone(),
        source,
    })?;
    let mut output = open(&directory, Utc::now())?;
    let (sender, mut receiver) = mpsc::channel::<FrameRecord<'static>>(RECORDER_CHANNEL_CAPACITY);
    let thread_directory = directory.clone();
    let handle = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let mut written = 0u64;
            let io_error = |path: &Path, source| RecordError::Io {
                path: path.to_path_buf(),
                source,
            };
            while let Some(record) = receiver.blocking_recv() {
                let now = Utc::now();
                if output.bytes >= ROTATE_BYTES || hour_of(now) != output.hour {
                    output
                        .writer
                        .flush()
                        .map_err(|e| io_error(&output.path, e))?;
                    output = open(&thread_directory, now)?;
                }
                let mut line = serde_json::to_vec(&record)
                    .map_err(|e| io_error(&output.path, std::io::Error::other(e)))?;
                line.push(b'\n');
                output
                    .writer
                    .write_all(&line)
                    .map_err(|e| io_error(&output.path, e))?;
                output.bytes += line.len() as u64;
                written += 1;
                // Keep what arrived in a burst in one write, but never hold a quiet feed's
                // frames back: flush whenever the queue is empty.
                if receiver.is_empty() {
                    output
                        .writer
                        .flush()
                        .map_err(|e| io_error(&output.path, e))?;
                }
            }
            output
                .writer
                .flush()
                .map_err(|e| io_error(&output.path, e))?;
            Ok(written)
        })
        .map_err(|source| RecordError::Io {
            path: directory.clone(),
            source,
        })?;
    Ok((sender, handle))
}

/// Replaces every occurrence of the `secrets` in `text` with `***`.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
}

/// Both recorders of a `--record` run: the raw frames (fed by the connectors) and the trade log
/// (fed by the analytics core).
pub struct Recorders {
    /// For the connectors.
    pub frames: RecordSender,
    /// For the analytics task.
    pub trades: ticklog::TickLogSender,
    /// The writer threads; wait for them with [`RecorderThreads::finish`].
    pub threads: RecorderThreads,
}

/// The recorders' writer threads.
pub struct RecorderThreads {
    frames: std::thread::JoinHandle<Result<u64, RecordError>>,
    trades: std::thread::JoinHandle<Result<u64, RecordError>>,
}

impl Recorders {
    /// Starts both recorders in `directory`; `feed_names` are the feeds the trade log names.
    pub fn start(
        directory: &Path,
        fsync: ticklog::FsyncPolicy,
        feed_names: Vec<String>,
    ) -> Result<Recorders, RecordError> {
        let (frames, frames_thread) = start(directory.to_path_buf())?;
        let (trades, trades_thread) = ticklog::start(ticklog::TickLogSettings {
            directory: directory.to_path_buf(),
            fsync,
            feed_names,
        })?;
        Ok(Recorders {
            frames,
            trades,
            threads: RecorderThreads {
                frames: frames_thread,
                trades: trades_thread,
            },
        })
    }
}

impl RecorderThreads {
    /// Once every sender is dropped: waits for both writers to drain and flush (the trade log
    /// compacts its last segment); returns the frames and trades written. A failure is logged.
    pub async fn finish(self) -> [u64; 2] {
        let mut recorded = [0u64; 2];
        let threads = [("frames", self.frames), ("trades", self.trades)];
        for (slot, (what, thread)) in threads.into_iter().enumerate() {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(Ok(count))) => {
                    recorded[slot] = count;
                    tracing::info!(what, count, "recording flushed");
                }
                Ok(Ok(Err(error))) => tracing::error!(what, %error, "recording failed"),
                _ => tracing::error!(what, "a recorder thread panicked"),
            }
        }
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lines_and_flushes_at_the_end() {
        let directory =
            std::env::temp_dir().join(format!("tickstream-record-{}", std::process::id()));
        let (sender, writer) = start(directory.clone()).expect("starts");
        for i in 0..3 {
            sender
                .blocking_send(FrameRecord {
                    recv_ns: i,
                    conn: "binance:X-1".into(),
                    provider: "binance".into(),
                    dir: Direction::In,
                    text: Some(format!("{{\"n\":{i}}}").into()),
                    url: None,
                })
                .expect("queued");
        }
        drop(sender);
        assert_eq!(writer.join().expect("joined").expect("written"), 3);
        let files: Vec<_> = std::fs::read_dir(&directory)
            .expect("dir")
            .flatten()
            .collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).expect("read");
        assert_eq!(text.lines().count(), 3);
        assert!(text.starts_with(r#"{"recv_ns":0,"conn":"binance:X-1","provider":"binance","dir":"in","text":"{\"n\":0}"}"#), "{text}");
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            mask(
                r#"{"action":"auth","key":"id","secret":"s3cr3t"}"#,
                &["s3cr3t", ""]
            ),
            r#"{"action":"auth","key":"id","secret":"***"}"#
        );
    }
}
