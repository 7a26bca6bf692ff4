#!/usr/bin/env python3
"""Generates data/golden/indicators.json: TA-Lib's own output over candles built from real trades.

Candles: polars `group_by_dynamic` over the trades of a file in `data/` (epoch-aligned,
[start, start + interval), no bar for an interval without trades). Indicators: the `ta-lib`
Python package (TA-Lib's C library) over the close (and high/low for ATR) of every bar, with
TA-Lib's default settings (classic compatibility, no unstable period). NaN (warm-up) is written
as null, so the Rust golden test checks the warm-up as well as the values.

Run from the repository root:
    python3 -m venv /tmp/talib && /tmp/talib/bin/pip install ta-lib numpy polars
    /tmp/talib/bin/python data/golden/talib_indicators.py
"""

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import talib

DATA = Path(__file__).resolve().parent.parent

# (file, symbol, interval as polars writes it, interval in ms)
SERIES = [
    ("ibm_aig_20131007_trades.csv", "IBM", "1m", 60_000),
    ("ibm_aig_20131007_trades.csv", "AIG", "1m", 60_000),
    ("ibm_aig_20131007_trades.csv", "AIG", "15s", 15_000),
    ("btcusdt_20240808_trades.csv", "BTCUSDT", "1s", 1_000),
]

# (name as the API spells it, parameters as the API spells them)
INDICATORS = [
    ("sma", {"period": 30}),
    ("sma", {"period": 5}),
    ("ema", {"period": 30}),
    ("ema", {"period": 5}),
    ("rsi", {"period": 14}),
    ("rsi", {"period": 3}),
    ("macd", {"fast": 12, "slow": 26, "signal": 9}),
    ("macd", {"fast": 5, "slow": 13, "signal": 4}),
    ("bbands", {"period": 20, "k": 2.0}),
    ("bbands", {"period": 5, "k": 1.5}),
    ("atr", {"period": 14}),
    ("atr", {"period": 3}),
]


def candles(file: str, symbol: str, every: str) -> pl.DataFrame:
    trades = (
        pl.read_csv(DATA / file)
        .filter(pl.col("symbol") == symbol)
        .with_columns(pl.from_epoch("ts", time_unit="ms").alias("time"))
        .sort("time", maintain_order=True)
    )
    return (
        trades.group_by_dynamic("time", every=every, closed="left", label="left")
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("size").sum().alias("volume"),
            (pl.col("price") * pl.col("size")).sum().alias("notional"),
            pl.len().alias("count"),
        )
        .with_columns(pl.col("time").dt.epoch("ms").alias("start_ms"))
    )


def clean(values) -> list:
    return [None if math.isnan(v) else float(v) for v in values]


def run(name: str, params: dict, high, low, close) -> dict:
    if name == "sma":
        return {"value": clean(talib.SMA(close, timeperiod=params["period"]))}
    if name == "ema":
        return {"value": clean(talib.EMA(close, timeperiod=params["period"]))}
    if name == "rsi":
        return {"value": clean(talib.RSI(close, timeperiod=params["period"]))}
    if name == "macd":
        macd, signal, hist = talib.MACD(
            close,
            fastperiod=params["fast"],
            slowperiod=params["slow"],
            signalperiod=params["signal"],
        )
        return {"macd": clean(macd), "signal": clean(signal), "hist": clean(hist)}
    if name == "bbands":
        upper, middle, lower = talib.BBANDS(
            close,
            timeperiod=params["period"],
            nbdevup=params["k"],
            nbdevdn=params["k"],
            matype=talib.MA_Type.SMA,
        )
        return {"upper": clean(upper), "middle": clean(middle), "lower": clean(lower)}
    if name == "atr":
        return {"value": clean(talib.ATR(high, low, close, timeperiod=params["period"]))}
    raise ValueError(name)


def main() -> None:
    out = {
        "generator": "data/golden/talib_indicators.py",
        "talib": talib.__ta_version__.decode().split(" ")[0],
        "ta_lib_python": talib.__version__,
        "polars": pl.__version__,
        "series": [],
    }
    for file, symbol, every, interval_ms in SERIES:
        bars = candles(file, symbol, every)
        high = bars["high"].to_numpy().astype(np.float64)
        low = bars["low"].to_numpy().astype(np.float64)
        close = bars["close"].to_numpy().astype(np.float64)
        out["series"].append(
            {
                "file": file,
                "symbol": symbol,
                "interval_ms": interval_ms,
                "candles": bars.select(
                    "start_ms", "open", "high", "low", "close", "volume", "notional", "count"
                ).to_dicts(),
                "indicators": [
                    {"name": name, "params": params, "outputs": run(name, params, high, low, close)}
                    for name, params in INDICATORS
                ],
            }
        )
    path = Path(__file__).resolve().parent / "indicators.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {path}: " + ", ".join(
        f"{s['symbol']} {s['interval_ms']} ms: {len(s['candles'])} candles" for s in out["series"]
    ))


if __name__ == "__main__":
    main()
