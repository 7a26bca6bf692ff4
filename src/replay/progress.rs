//! Progress of long replays: on a terminal a bar per source (rows, rows/s, ETA), in logs a
//! progress line per source every few seconds. The summary of each file at its end is logged by
//! the analytics task once its trades are all applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::health::{FeedState, FeedStatus};

/// How often a progress line is logged per running source.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// How often the bars are redrawn.
const DRAW_EVERY: Duration = Duration::from_millis(250);

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressOutput {
    /// Bars on standard error (a terminal).
    Bars,
    /// A log line per source every [`LOG_EVERY`].
    Log,
}

/// One source's last sample.
struct Sample {
    at: Instant,
    rows: u64,
    done: u64,
}

/// Reports the progress of `feeds` until each has ended or `cancel` fires.
pub async fn report(
    feeds: Vec<Arc<FeedStatus>>,
    output: ProgressOutput,
    cancel: CancellationToken,
) {
    let bars = (output == ProgressOutput::Bars).then(|| {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{prefix:>24.bold} [{bar:30}] {percent:>3}% {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        feeds
            .iter()
            .map(|feed| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(short(feed.name()));
                bar
            })
            .collect::<Vec<_>>()
    });
    let mut samples: Vec<Sample> = feeds
        .iter()
        .map(|_| Sample {
            at: Instant::now(),
            rows: 0,
            done: 0,
        })
        .collect();
    let every = if bars.is_some() {
        DRAW_EVERY
    } else {
        LOG_EVERY
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let mut running = false;
        for (index, feed) in feeds.iter().enumerate() {
            let view = feed.view();
            let ended = matches!(view.state, FeedState::Finished | FeedState::Failed);
            running |= !ended;
            // The reader runs ahead of the core by a few batches: what counts is what the core
            // has taken (applied, late, duplicate) and what was malformed, as a share of the
            // file read so far.
            let consumed = view.trades + view.late + view.duplicates + view.malformed;
            let (read, total) = view.progress.as_ref().map_or((0, 0), |p| (p.done, p.total));
            let done = if ended || view.rows_read == 0 {
                read
            } else {
                (read as f64 * (consumed.min(view.rows_read) as f64 / view.rows_read as f64)) as u64
            };
            let now = Instant::now();
            let sample = &mut samples[index];
            let elapsed = now.duration_since(sample.at).as_secs_f64().max(1e-3);
            let rows_per_s = (consumed.saturating_sub(sample.rows)) as f64 / elapsed;
            let done_per_s = (done.saturating_sub(sample.done)) as f64 / elapsed;
            *sample = Sample {
                at: now,
                rows: consumed,
                done,
            };
            if let Some(bars) = &bars {
                let bar = &bars[index];
                if ended {
                    if !bar.is_finished() {
                        bar.set_length(total.max(done));
                        bar.set_position(total.max(done));
                        bar.finish_with_message(format!(
                            "{} rows, {}",
                            view.rows_read,
                            state_word(view.state)
                        ));
                    }
                    continue;
                }
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(format!("{consumed} rows, {rows_per_s:.0} rows/s"));
            } else if view.state == FeedState::Running && view.rows_read > 0 {
                let eta = (total > done && done_per_s > 0.0)
                    .then(|| format!("{:.0}s", (total - done) as f64 / done_per_s));
                let percent = if total > 0 {
                    done as f64 / total as f64 * 100.0
                } else {
                    0.0
                };
                tracing::info!(
                    source = feed.name(),
                    rows = consumed,
                    rows_per_s = rows_per_s.round(),
                    percent = format!("{percent:.1}"),
                    eta = eta.as_deref().unwrap_or("unknown"),
                    "replay progress"
                );
            }
        }
        if !running {
            break;
        }
    }
}

fn state_word(state: FeedState) -> &'static str {
    match state {
        FeedState::Failed => "failed",
        _ => "done",
    }
}

/// The last part of a source's name, for a bar's label.
fn short(name: &str) -> String {
    let name = name.rsplit('/').next().unwrap_or(name);
    let count = name.chars().count();
    if count <= 24 {
        name.to_string()
    } else {
        name.chars().skip(count - 24).collect()
    }
}
