#!/usr/bin/env python3
"""Generates data/golden/alerts.json: the alerts a set of rules of every kind must fire over the
IBM and AIG trades of data/ibm_aig_20131007_trades.csv, computed independently of tickstream.

The semantics are DESIGN.md's, written out here from scratch:
- trades are applied in file order (the file is sorted by time); the stream clock T is the
  largest event time so far;
- a window W at T holds the symbol's trades with time in (T - W, T]; change_pct is
  (close / open - 1) * 100 with open the earliest and close the latest trade (ties: file order);
  vwap is notional / volume; vwap_deviation is (last price / vwap - 1) * 100;
- an indicator rule reads TA-Lib (the `ta-lib` package) over the symbol's closed 1-minute
  candles at T (bars [start, start + 1m) with start + 1m <= T);
- after each trade, each rule watching the trade's symbol is evaluated (in rule order); then
  every `stale` rule (in rule order) for every symbol that has traded (in name order):
  silent = T - last trade time, condition silent > after; a trade of the symbol re-arms it;
- per rule and symbol: armed at first; fires when armed, the condition holds and the event
  time is at least the cooldown past its last firing; firing disarms; a false condition re-arms.
  Event time: the trade's time (stale: T).

Run from the repository root (see talib_indicators.py for the environment):
    /tmp/talib/bin/python data/golden/alerts.py
"""

import bisect
import csv
import json
import math
from pathlib import Path

import numpy as np
import talib

DATA = Path(__file__).resolve().parent.parent
MS = 1_000_000  # ns per ms
S = 1000 * MS

RULES = [
    {"id": "ibm-above", "kind": "price_above", "symbol": "IBM", "threshold": 182.9, "cooldown": "60s"},
    {"id": "aig-below", "kind": "price_below", "symbol": "AIG", "threshold": 48.8, "cooldown": "30s"},
    {"id": "move-1m", "kind": "change_pct", "symbol": "*", "window": "1m", "threshold": 0.15, "direction": "either"},
    {"id": "aig-drop-5m", "kind": "change_pct", "symbol": "AIG", "window": "5m", "threshold": 0.3, "direction": "down", "cooldown": "5m"},
    {"id": "ibm-volume", "kind": "volume", "symbol": "IBM", "window": "1m", "threshold": 40000},
    {"id": "vwap-dev", "kind": "vwap_deviation", "symbol": "*", "window": "5m", "threshold": 0.12},
    {"id": "ibm-rsi-high", "kind": "indicator", "symbol": "IBM", "indicator": "rsi", "interval": "1m", "params": {"period": 14}, "above": 70},
    {"id": "rsi-low", "kind": "indicator", "symbol": "*", "indicator": "rsi", "interval": "1m", "params": {"period": 14}, "below": 30, "cooldown": "10m"},
    {"id": "quiet", "kind": "stale", "symbol": "*", "after": "2m"},
]

UNITS = {"s": S, "m": 60 * S}


def duration(text: str) -> int:
    return int(float(text[:-1]) * UNITS[text[-1]])


class Symbol:
    def __init__(self):
        self.ts, self.price, self.size = [], [], []
        self.cum_volume, self.cum_notional = [0.0], [0.0]


def window_stats(sym: Symbol, now: int, length: int):
    first = bisect.bisect_right(sym.ts, now - length)
    last = len(sym.ts)
    if first >= last:
        return None
    volume = sym.cum_volume[last] - sym.cum_volume[first]
    notional = sym.cum_notional[last] - sym.cum_notional[first]
    return {
        "open": sym.price[first],
        "close": sym.price[last - 1],
        "volume": volume,
        "vwap": notional / volume if volume > 0 else None,
    }


def rsi_by_closed_count(trades, period):
    """RSI(period) over 1-minute bars: value after k closed bars, for every k."""
    bars = {}
    order = []
    for ts, price in trades:
        start = ts // (60 * S) * (60 * S)
        if start not in bars:
            order.append(start)
        bars[start] = price  # close: the latest
    closes = np.array([bars[s] for s in order], dtype=np.float64)
    rsi = talib.RSI(closes, timeperiod=period) if len(closes) else np.array([])
    return order, rsi


def main():
    rows = list(csv.DictReader(open(DATA / "ibm_aig_20131007_trades.csv")))
    trades = [(int(r["ts"]) * MS, r["symbol"], float(r["price"]), float(r["size"])) for r in rows]
    per_symbol = {}
    for ts, symbol, price, _ in trades:
        per_symbol.setdefault(symbol, []).append((ts, price))
    rsi_tables = {s: rsi_by_closed_count(t, 14) for s, t in per_symbol.items()}

    symbols = {}
    state = {}  # (rule id, symbol) -> [armed, last fired]
    alerts = []
    clock = None

    def decide(rule, symbol, holds, value, threshold, ts):
        entry = state.setdefault((rule["id"], symbol), [True, None])
        if not holds:
            entry[0] = True
            return
        cooldown = duration(rule.get("cooldown", "60s"))
        if entry[0] and (entry[1] is None or ts - entry[1] >= cooldown):
            entry[0] = False
            entry[1] = ts
            alerts.append({
                "id": len(alerts) + 1, "rule_id": rule["id"], "symbol": symbol,
                "kind": rule["kind"], "value": value, "threshold": threshold, "ts_ms": ts // MS,
            })

    for ts, symbol, price, size in trades:
        sym = symbols.setdefault(symbol, Symbol())
        sym.ts.append(ts)
        sym.price.append(price)
        sym.size.append(size)
        sym.cum_volume.append(sym.cum_volume[-1] + size)
        sym.cum_notional.append(sym.cum_notional[-1] + price * size)
        clock = ts if clock is None else max(clock, ts)
        for rule in RULES:
            if rule["symbol"] not in ("*", symbol):
                continue
            kind = rule["kind"]
            if kind == "stale":
                state.setdefault((rule["id"], symbol), [True, None])[0] = True
                continue
            if kind == "price_above":
                decide(rule, symbol, price > rule["threshold"], price, rule["threshold"], ts)
            elif kind == "price_below":
                decide(rule, symbol, price < rule["threshold"], price, rule["threshold"], ts)
            elif kind in ("change_pct", "volume", "vwap_deviation"):
                stats = window_stats(sym, clock, duration(rule["window"]))
                t = rule["threshold"]
                if kind == "change_pct":
                    change = (stats["close"] / stats["open"] - 1.0) * 100.0
                    holds = {"up": change > t, "down": change < -t, "either": abs(change) > t}[rule.get("direction", "either")]
                    decide(rule, symbol, holds, change, t, ts)
                elif kind == "volume":
                    decide(rule, symbol, stats["volume"] > t, stats["volume"], t, ts)
                else:
                    deviation = (price / stats["vwap"] - 1.0) * 100.0
                    decide(rule, symbol, abs(deviation) > t, deviation, t, ts)
            elif kind == "indicator":
                order, rsi = rsi_tables[symbol]
                closed = bisect.bisect_right(order, clock - 60 * S)
                value = rsi[closed - 1] if closed > 0 else math.nan
                if math.isnan(value):
                    decide(rule, symbol, False, None, None, ts)
                elif "above" in rule:
                    decide(rule, symbol, value > rule["above"], float(value), rule["above"], ts)
                else:
                    decide(rule, symbol, value < rule["below"], float(value), rule["below"], ts)
        for rule in RULES:
            if rule["kind"] != "stale":
                continue
            after = duration(rule["after"])
            for name in sorted(symbols):
                if rule["symbol"] not in ("*", name):
                    continue
                silent = clock - symbols[name].ts[-1]
                decide(rule, name, silent > after, silent / 1e9, after / 1e9, clock)

    out = {
        "generator": "data/golden/alerts.py",
        "file": "ibm_aig_20131007_trades.csv",
        "talib": talib.__ta_version__.decode().split(" ")[0],
        "rules": RULES,
        "alerts": alerts,
    }
    path = Path(__file__).resolve().parent / "alerts.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    counts = {}
    for a in alerts:
        counts[a["rule_id"]] = counts.get(a["rule_id"], 0) + 1
    print(f"wrote {path}: {len(alerts)} alerts: {counts}")


if __name__ == "__main__":
    main()
