//! Memory: resident set size of the analytics core with 10,000 symbols, the default windows and
//! the default candles, fed a steady generated stream; sampled every 30 minutes of event time to
//! show it stops growing once the longest window (1 h) and the candle histories are full.
//!
//! Three scenarios: 6 and 60 trades per symbol per minute for 5 hours with the default candle
//! history (1,000 bars per interval; the two give bytes per held trade and per symbol), and 6 a
//! minute for 14 hours with 100 bars, so that everything bounded fills within the run — the
//! 5-minute bars' history after 500 minutes, the duplicate filter's 4,096 ids per symbol after
//! 683 — and the flat line after it shows.
//!
//! Then quiet symbols, counted to the byte (the bench's global allocator counts every live
//! allocation): 10,000 symbols trade 1, 10 or 100 times within ten minutes, then stay quiet for
//! two hours while one other symbol trades every second, and what the engine plus the
//! published snapshots hold per symbol is printed at the busiest point and once no trade is left
//! in the longest window — beside how much of it is closed candle bars, the history a user asked
//! to keep (96 bytes a bar).
//!
//! Each scenario runs in a fresh process (this binary re-executed), so allocator reuse between
//! scenarios does not blur the figures. Run with `cargo bench --bench memory` (`-- quiet` for the
//! quiet symbols alone).

use std::process::Command;
use std::sync::Arc;

use cap::Cap;
use tickstream::analytics::snapshot::{SnapshotPublisher, SnapshotStore};
use tickstream::analytics::{DEFAULT_CANDLE_HISTORY, Engine};
use tickstream::config::{DEFAULT_INTERVALS, DEFAULT_WINDOWS, parse_intervals, parse_windows};
use tickstream::model::{FeedId, Symbol, Trade};

/// Counts the bytes allocated and not yet freed.
#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

const SYMBOLS: usize = 10_000;
/// Trades per symbol in the quiet-symbols scenarios.
const QUIET: [u64; 3] = [1, 10, 100];
/// `trades per symbol` of the quiet-symbols scenario a child process runs.
const QUIET_SCENARIO: &str = "TICKSTREAM_MEMORY_QUIET";
/// `per_minute,hours,history` of the scenario a child process runs.
const SCENARIO: &str = "TICKSTREAM_MEMORY_SCENARIO";
/// (trades per symbol per minute, hours of event time, candle history).
const SCENARIOS: [(i64, i64, usize); 3] = [
    (6, 5, DEFAULT_CANDLE_HISTORY),
    (60, 5, DEFAULT_CANDLE_HISTORY),
    (6, 14, 100),
];

/// Resident set size of this process, bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Feeds `SYMBOLS` symbols `per_minute` trades each, evenly spread, for `hours` of event time,
/// keeping `history` closed candles per interval; prints `sample <minutes> <rss> <held trades>`
/// every 30 minutes.
fn run(per_minute: i64, hours: i64, history: usize) {
    let windows = parse_windows(&DEFAULT_WINDOWS.map(String::from)).expect("windows");
    let intervals = parse_intervals(&DEFAULT_INTERVALS.map(String::from)).expect("intervals");
    let names: Vec<Symbol> = (0..SYMBOLS)
        .map(|i| Symbol::new(&format!("S{i:05}")))
        .collect();
    let baseline = rss_bytes();
    let mut engine =
        Engine::new(Arc::from(windows), 1_000_000_000).with_candles(Arc::from(intervals), history);
    let start = 1_700_000_000_000_000_000i64;
    let step = 60_000_000_000 / per_minute;
    let spacing = step / SYMBOLS as i64;
    let mut price = 100.0;
    for slot in 0..hours * 60 * per_minute {
        for (s, symbol) in names.iter().enumerate() {
            let ts = start + slot * step + s as i64 * spacing;
            price = if price > 101.0 { 99.0 } else { price + 0.01 };
            engine.apply(&Trade {
                symbol: symbol.clone(),
                price,
                size: 1.0 + (s % 7) as f64,
                exchange_ts: ts,
                receive_ts: ts,
                feed: FeedId(0),
                trade_id: Some(slot as u64 * SYMBOLS as u64 + s as u64),
                side: None,
            });
        }
        if (slot + 1) % (30 * per_minute) == 0 {
            let (held, _) = engine.held_entries();
            println!(
                "sample {} {} {}",
                (slot + 1) / per_minute,
                rss_bytes().saturating_sub(baseline),
                held
            );
        }
    }
}

/// Each of `SYMBOLS` symbols trades `trades` times within ten minutes; then two quiet hours
/// (another symbol trades every second). Prints
/// `quiet <bytes per symbol at the busiest> <bytes per symbol when quiet> <closed bars per
/// symbol>`, counting the engine and the published snapshots.
fn quiet(trades: u64) {
    let windows = parse_windows(&DEFAULT_WINDOWS.map(String::from)).expect("windows");
    let intervals = parse_intervals(&DEFAULT_INTERVALS.map(String::from)).expect("intervals");
    let names: Vec<Symbol> = (0..SYMBOLS)
        .map(|i| Symbol::new(&format!("S{i:05}")))
        .collect();
    let baseline = ALLOCATOR.allocated();
    let store = Arc::new(SnapshotStore::new());
    let mut publisher = SnapshotPublisher::new(Arc::clone(&store));
    let mut engine = Engine::new(Arc::from(windows), 1_000_000_000)
        .with_candles(Arc::from(intervals), DEFAULT_CANDLE_HISTORY);
    let start = 1_700_000_000_000_000_000i64;
    let spacing = 600_000_000_000 / trades as i64;
    for k in 0..trades {
        for (s, symbol) in names.iter().enumerate() {
            let ts = start + k as i64 * spacing + s as i64;
            engine.apply(&Trade {
                symbol: symbol.clone(),
                price: 100.0 + (k % 7) as f64 * 0.01,
                size: 1.0,
                exchange_ts: ts,
                receive_ts: ts,
                feed: FeedId(0),
                trade_id: Some(k),
                side: None,
            });
        }
        publisher.publish(engine.take_changed(), engine.now());
    }
    let busiest = ALLOCATOR.allocated() - baseline;
    // Two quiet hours: one other symbol trades every second, the rest do not.
    let busy = Symbol::new("BUSY");
    let last = start + trades as i64 * spacing;
    for second in 1..=7_200 {
        let ts = last + second * 1_000_000_000;
        engine.apply(&Trade {
            symbol: busy.clone(),
            price: 100.0,
            size: 1.0,
            exchange_ts: ts,
            receive_ts: ts,
            feed: FeedId(0),
            trade_id: Some(second as u64),
            side: None,
        });
        publisher.publish(engine.take_changed(), engine.now());
    }
    let quiet = ALLOCATOR.allocated() - baseline;
    let bars: usize = store
        .all()
        .0
        .iter()
        .flat_map(|s| s.candles.iter())
        .map(|c| c.closed_count(0))
        .sum();
    println!(
        "quiet {} {} {}",
        busiest / SYMBOLS,
        quiet / SYMBOLS,
        bars / SYMBOLS
    );
}

fn main() {
    if let Ok(trades) = std::env::var(QUIET_SCENARIO) {
        quiet(trades.parse().expect("trades per symbol"));
        return;
    }
    if let Ok(scenario) = std::env::var(SCENARIO) {
        let fields: Vec<&str> = scenario.split(',').collect();
        let [per_minute, hours, history] = fields[..] else {
            panic!("{SCENARIO}: per_minute,hours,history");
        };
        run(
            per_minute.parse().expect("trades per minute"),
            hours.parse().expect("hours"),
            history.parse().expect("history"),
        );
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    if std::env::args().skip(1).any(|a| a == "quiet") {
        print_quiet(&exe);
        return;
    }
    println!("{SYMBOLS} symbols, default windows and candle intervals");
    let mut finals = Vec::new();
    for (per_minute, hours, history) in SCENARIOS {
        let output = Command::new(&exe)
            .env(SCENARIO, format!("{per_minute},{hours},{history}"))
            .output()
            .expect("scenario runs");
        let text = String::from_utf8_lossy(&output.stdout);
        println!(
            "\n{per_minute} trades per symbol per minute, {hours} h, {history} closed candles per \
             interval:"
        );
        println!(
            "{:>8} {:>12} {:>14} {:>14}",
            "minutes", "RSS MiB", "held trades", "bytes/symbol"
        );
        let mut last = (0u64, 0u64);
        for line in text.lines().filter_map(|l| l.strip_prefix("sample ")) {
            let fields: Vec<u64> = line.split(' ').filter_map(|f| f.parse().ok()).collect();
            let [minutes, rss, held] = fields[..] else {
                continue;
            };
            println!(
                "{minutes:>8} {:>12.1} {held:>14} {:>14}",
                rss as f64 / (1 << 20) as f64,
                rss / SYMBOLS as u64
            );
            last = (rss, held);
        }
        finals.push(last);
    }
    if let [(rss_a, held_a), (rss_b, held_b), _] = finals[..] {
        let per_trade = (rss_b as f64 - rss_a as f64) / (held_b as f64 - held_a as f64);
        let per_symbol = (rss_a as f64 - per_trade * held_a as f64) / SYMBOLS as f64;
        println!(
            "\nper trade held in the longest window: {per_trade:.0} bytes; per symbol otherwise \
             (windows, candles, dedup ids): {per_symbol:.0} bytes"
        );
    }
    print_quiet(&exe);
}

/// Runs the quiet-symbols scenarios, each in a fresh process, and prints their table.
fn print_quiet(exe: &std::path::Path) {
    println!(
        "\n{SYMBOLS} quiet symbols: each trades N times within 10 minutes, then 2 quiet hours \
         (bytes allocated, engine + published snapshots)"
    );
    println!(
        "| N | per symbol, busiest | per symbol, quiet | closed bars | of which bars (96 B each) | the rest |"
    );
    println!("|---|---|---|---|---|---|");
    for trades in QUIET {
        let output = Command::new(exe)
            .env(QUIET_SCENARIO, trades.to_string())
            .output()
            .expect("scenario runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("quiet ")) else {
            println!(
                "| {trades} | failed: {} |",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        };
        let fields: Vec<usize> = line.split(' ').filter_map(|f| f.parse().ok()).collect();
        let [busiest, quiet, bars] = fields[..] else {
            continue;
        };
        let bar_bytes = bars * std::mem::size_of::<tickstream::analytics::Candle>();
        println!(
            "| {trades} | {busiest} B | {quiet} B | {bars} | {bar_bytes} B | {} B |",
            quiet.saturating_sub(bar_bytes)
        );
    }
}
