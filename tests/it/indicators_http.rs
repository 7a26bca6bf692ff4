//! Candles and indicators over real HTTP: the service replays a recorded file at full speed on a
//! random loopback port; its bars are compared with polars' `group_by_dynamic`, its indicators
//! with TA-Lib's output in `data/golden`, and the indicator cache is shown computing once for
//! many concurrent readers.

use std::collections::HashMap;

use serde_json::Value;
use tickstream::config::ServeArgs;

use crate::support::*;

fn replay_args(name: &str) -> ServeArgs {
    ServeArgs {
        replay: vec![data_path(name)],
        speed: Some("max".into()),
        ..ServeArgs::default()
    }
}

fn bar_from_json(value: &Value) -> CandleRow {
    let f = |key: &str| {
        value[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {value}"))
    };
    let volume = f("volume");
    CandleRow {
        start_ms: value["start_ms"].as_i64().expect("start_ms"),
        open: f("open"),
        high: f("high"),
        low: f("low"),
        close: f("close"),
        volume,
        notional: f("vwap") * volume,
        count: value["count"].as_u64().expect("count"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_are_served_as_polars_groups_them() {
    let app = TestApp::spawn(replay_args(EQUITIES)).await;
    app.wait_for_feeds().await;
    let trades = load_trades(EQUITIES);
    let frame = trades_frame(&trades);
    let clock_ms = trades
        .iter()
        .map(|t| t.exchange_ts / 1_000_000)
        .max()
        .expect("trades");
    for (label, length_ms) in [("1s", 1_000i64), ("1m", 60_000), ("5m", 300_000)] {
        let expected = candle_oracle(&frame, length_ms * 1_000_000);
        for symbol in ["IBM", "AIG"] {
            let (status, body) = app
                .get(&format!(
                    "/v1/symbols/{symbol}/candles?interval={label}&limit=1001"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["symbol"], symbol);
            assert_eq!(body["interval"], label);
            assert_eq!(body["as_of_ms"], clock_ms);
            let served = body["candles"].as_array().expect("candles");
            let bars = &expected[symbol];
            let forming = bars[bars.len() - 1].start_ms + length_ms > clock_ms;
            // At most 1000 closed bars are kept, plus the forming one.
            let want = bars.len().min(1000 + usize::from(forming));
            assert_eq!(served.len(), want, "{symbol} {label}");
            let tail = &bars[bars.len() - want..];
            for (index, (bar, expected)) in served.iter().zip(tail).enumerate() {
                let context = format!("{symbol} {label} bar {index}");
                assert_candle_matches(&bar_from_json(bar), expected, &context);
                let last = index + 1 == served.len();
                assert_eq!(bar["closed"], !(last && forming), "{context}");
            }
        }
    }
    // `limit` counts the forming bar; the default is 100.
    let (_, body) = app.get("/v1/symbols/IBM/candles?interval=1m&limit=3").await;
    assert_eq!(body["candles"].as_array().map(Vec::len), Some(3));
    let (_, body) = app.get("/v1/symbols/IBM/candles?interval=1s").await;
    assert_eq!(body["candles"].as_array().map(Vec::len), Some(100));
    // Without an interval: 1m; another spelling of a configured one is that one.
    let (_, body) = app.get("/v1/symbols/IBM/candles").await;
    assert_eq!(body["interval"], "1m");
    let (_, other) = app.get("/v1/symbols/IBM/candles?interval=60s").await;
    assert_eq!(
        (other["interval"].clone(), other["candles"].clone()),
        (body["interval"].clone(), body["candles"].clone())
    );
    app.stop().await;
}

/// TA-Lib's outputs at one bar: output name (`value`, `macd`, `upper`, …) → value.
type Outputs = HashMap<String, f64>;

/// TA-Lib's values from the golden file for one series, by indicator name and params, as
/// `start_ms → output name → value`.
fn golden_for(symbol: &str, interval_ms: i64) -> Vec<(String, Value, HashMap<i64, Outputs>)> {
    let text = std::fs::read_to_string(data_path("golden/indicators.json")).expect("golden");
    let golden: Value = serde_json::from_str(&text).expect("json");
    let series = golden["series"]
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["symbol"] == symbol && s["interval_ms"] == interval_ms)
        .expect("golden series");
    let starts: Vec<i64> = series["candles"]
        .as_array()
        .expect("candles")
        .iter()
        .map(|c| c["start_ms"].as_i64().expect("start"))
        .collect();
    series["indicators"]
        .as_array()
        .expect("indicators")
        .iter()
        .map(|indicator| {
            let mut by_start: HashMap<i64, Outputs> = HashMap::new();
            for (output, values) in indicator["outputs"].as_object().expect("outputs") {
                for (start, value) in starts.iter().zip(values.as_array().expect("values")) {
                    if let Some(value) = value.as_f64() {
                        by_start
                            .entry(*start)
                            .or_default()
                            .insert(output.clone(), value);
                    }
                }
            }
            (
                indicator["name"].as_str().expect("name").to_string(),
                indicator["params"].clone(),
                by_start,
            )
        })
        .collect()
}

fn assert_value_matches(value: &Value, expected: &Outputs, context: &str) {
    for (output, want) in expected {
        let got = if output == "value" {
            value.as_f64()
        } else {
            value[output].as_f64()
        }
        .unwrap_or_else(|| panic!("{context}: no {output} in {value}"));
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "{context} {output}: {got} vs TA-Lib {want}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indicators_over_http_equal_talib() {
    let app = TestApp::spawn(replay_args(EQUITIES)).await;
    app.wait_for_feeds().await;
    let mut compared = 0;
    for symbol in ["IBM", "AIG"] {
        for (name, params, expected) in golden_for(symbol, 60_000) {
            let query: Vec<String> = params
                .as_object()
                .expect("params")
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            let path = format!(
                "/v1/symbols/{symbol}/indicators/{name}?interval=1m&{}&series=1000",
                query.join("&")
            );
            let (status, body) = app.get(&path).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(body["indicator"], name.as_str());
            assert_eq!(body["params"], params, "{path}");
            let series = body["series"].as_array().expect("series");
            assert!(!series.is_empty());
            // Every value TA-Lib has for a closed bar, and nothing before its warm-up.
            let served: Vec<i64> = series
                .iter()
                .map(|p| p["start_ms"].as_i64().expect("ms"))
                .collect();
            let mut want: Vec<i64> = expected
                .keys()
                .copied()
                .filter(|start| *start <= *served.last().expect("last"))
                .collect();
            want.sort_unstable();
            assert_eq!(served, want, "{path}: the bars with values");
            for point in series {
                let start = point["start_ms"].as_i64().expect("start");
                assert_value_matches(&point["value"], &expected[&start], &path);
                compared += 1;
            }
            let last = series.last().expect("last");
            assert_eq!(body["value"], last["value"]);
            assert_eq!(
                body["bar_ms"], last["start_ms"],
                "value of the last closed bar"
            );
            // `as_of_ms` is the stream clock, as in every response.
            let (_, symbols) = app.get("/v1/symbols").await;
            assert_eq!(body["as_of_ms"], symbols["as_of_ms"], "{path}");
        }
    }
    assert!(compared > 8_000, "{compared}");

    // All indicators at once, with their defaults, equal the single ones.
    let (status, all) = app.get("/v1/symbols/IBM/indicators?interval=1m").await;
    assert_eq!(status, 200, "{all}");
    let indicators = all["indicators"].as_object().expect("indicators");
    let names: Vec<&str> = indicators.keys().map(String::as_str).collect();
    assert_eq!(names.len(), 6);
    for (name, entry) in indicators {
        let (_, single) = app
            .get(&format!("/v1/symbols/IBM/indicators/{name}?interval=1m"))
            .await;
        assert_eq!(entry["params"], single["params"], "{name}");
        assert_eq!(entry["value"], single["value"], "{name}");
        assert!(!entry["value"].is_null(), "{name}");
    }
    assert_eq!(
        indicators["bbands"]["params"],
        serde_json::json!({"period": 20, "k": 2.0})
    );
    assert_eq!(
        indicators["macd"]["params"],
        serde_json::json!({"fast": 12, "slow": 26, "signal": 9})
    );
    assert_eq!(
        indicators["rsi"]["params"],
        serde_json::json!({"period": 14})
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_candles_give_null_with_the_number_needed() {
    let args = ServeArgs {
        intervals: Some(vec!["1m".into()]),
        ..replay_args(BTCUSDT)
    };
    let app = TestApp::spawn(args).await;
    app.wait_for_feeds().await;
    // 346 s of trades over 7 clock minutes: 6 closed bars and a forming one.
    let (status, body) = app
        .get("/v1/symbols/BTCUSDT/indicators/rsi?period=14")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["value"].is_null(), "{body}");
    assert_eq!(body["candles"], 6);
    assert_eq!(body["reason"], "RSI(14) needs 15 closed candles; 6 so far");
    let (_, body) = app
        .get("/v1/symbols/BTCUSDT/indicators/sma?period=5&series=10")
        .await;
    assert!(body["value"].is_number(), "{body}");
    assert_eq!(body["series"].as_array().map(Vec::len), Some(2));
    assert!(body.get("reason").is_none());
    app.stop().await;
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_requests_compute_once() {
    let app = TestApp::spawn(replay_args(EQUITIES)).await;
    app.wait_for_feeds().await;
    let before = app.metrics().await;
    let path = "/v1/symbols/IBM/indicators/macd?interval=1s&fast=7&slow=19&signal=5&series=50";
    let requests: Vec<_> = (0..32)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(path));
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("request");
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("json")
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for request in requests {
        bodies.push(request.await.expect("joined"));
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "one answer for all"
    );
    assert!(bodies[0]["value"]["macd"].is_number());
    let after = app.metrics().await;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    assert_eq!(
        delta("tickstream_indicator_computations_total"),
        1,
        "one computation"
    );
    assert_eq!(delta("tickstream_indicator_cache_misses_total"), 1);
    assert_eq!(delta("tickstream_indicator_cache_hits_total"), 31);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let app = TestApp::spawn(replay_args(BTCUSDT)).await;
    app.wait_for_feeds().await;
    let cases = [
        (
            "/v1/symbols/BTCUSDT/indicators/vwma",
            400,
            "unknown_indicator",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/rsi?period=0",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/rsi?period=1",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/rsi?period=abc",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/rsi?period=100001",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/rsi?k=2",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/macd?fast=26&slow=12",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/bbands?k=-1",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/bbands?k=NaN",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/sma?interval=2m",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/sma?series=0",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/sma?series=-5",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/indicators/sma?window=1m",
            400,
            "bad_parameter",
        ),
        ("/v1/symbols/NOPE/indicators/sma", 404, "unknown_symbol"),
        ("/v1/symbols/NOPE/indicators", 404, "unknown_symbol"),
        (
            "/v1/symbols/BTCUSDT/indicators?interval=7s",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/candles?interval=7s",
            400,
            "bad_parameter",
        ),
        ("/v1/symbols/BTCUSDT/candles?limit=0", 400, "bad_parameter"),
        ("/v1/symbols/BTCUSDT/candles?limit=-1", 400, "bad_parameter"),
        (
            "/v1/symbols/BTCUSDT/candles?limit=99999999999999999999",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/BTCUSDT/candles?limit=ten",
            400,
            "bad_parameter",
        ),
        ("/v1/symbols/BTCUSDT/candles?size=1", 400, "bad_parameter"),
        ("/v1/symbols/NOPE/candles", 404, "unknown_symbol"),
    ];
    app.assert_errors(&cases).await;
    let (_, body) = app.get("/v1/symbols/BTCUSDT/indicators/rsi?k=2").await;
    assert_eq!(
        body["error"]["message"],
        "rsi takes no parameter \"k\" (it takes: period)"
    );
    app.stop().await;
}
