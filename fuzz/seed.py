#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora from the recorded data in ../data.

- binance, coinbase_exchange: real frames received from the venues (the raw-frame recordings).
- the other providers: real BTCUSDT and IBM/AIG trades written in each provider's documented
  trade format (FEEDS.md), plus the JSON examples in each provider module's documentation.
- replay_csv / replay_jsonl / replay_frames: slices of the recorded files, in each format.

Deterministic: running it again writes the same files.
"""
import csv
import json
import os
import re
import sys
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
SRC = os.path.join(HERE, "..", "src", "feeds")
OUT = os.path.join(HERE, "corpus")


def write(target, name, text):
    folder = os.path.join(OUT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(text)


def trades(path, limit):
    with open(os.path.join(DATA, path), newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    return [(int(r["ts"]), r["symbol"], r["price"], r["size"]) for i, r in enumerate(rows)]


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def doc_examples(module):
    """One-line JSON examples in a provider module's docs."""
    path = os.path.join(SRC, module, "mod.rs")
    examples = []
    for line in open(path, encoding="utf-8"):
        m = re.match(r"\s*//!\s*([\[{].*[\]}])\s*$", line)
        if m:
            try:
                json.loads(m.group(1))
                examples.append(m.group(1))
            except ValueError:
                pass
    return examples


def raw_frames(path, provider, limit):
    texts = []
    for line in open(os.path.join(DATA, path), encoding="utf-8"):
        record = json.loads(line)
        if record.get("dir") == "in" and record.get("provider") == provider and record.get("text"):
            texts.append(record["text"])
            if len(texts) == limit:
                break
    return texts


def render(provider, i, ts, symbol, price, size):
    tid = 1000 + i
    if provider == "coinbase":
        return json.dumps({"channel": "market_trades", "client_id": "", "timestamp": rfc3339(ts),
                           "sequence_num": i, "events": [{"type": "update", "trades": [{
                               "trade_id": str(tid), "product_id": symbol, "price": price,
                               "size": size, "side": "BUY", "time": rfc3339(ts)}]}]})
    if provider == "kraken":
        return json.dumps({"channel": "trade", "type": "update", "data": [{
            "symbol": symbol, "side": "buy", "price": float(price), "qty": float(size),
            "ord_type": "limit", "trade_id": tid, "timestamp": rfc3339(ts)}]})
    if provider == "finnhub":
        return json.dumps({"type": "trade", "data": [{"s": symbol, "p": float(price),
                                                      "v": float(size), "t": ts, "c": ["1"]}]})
    if provider == "alpaca":
        return json.dumps([{"T": "t", "i": tid, "S": symbol, "x": "V", "p": float(price),
                            "s": float(size), "t": rfc3339(ts), "c": ["@"], "z": "C"}])
    if provider == "polygon":
        return json.dumps([{"ev": "T", "sym": symbol, "x": 4, "i": str(tid), "z": 3,
                            "p": float(price), "s": float(size), "c": [0], "t": ts, "q": tid}])
    raise ValueError(provider)


def main():
    crypto = trades("btcusdt_20240808_trades.csv", 200)
    equities = trades("ibm_aig_20131007_trades.csv", 200)
    for target, recording, provider in [
        ("provider_binance", "binance_btcusdt_20240808.frames.jsonl", "binance"),
        ("provider_coinbase_exchange", "coinbase_exchange_20210417.frames.jsonl", "coinbase-exchange"),
    ]:
        frames = raw_frames(recording, provider, 400)
        for n in range(0, len(frames), 8):
            write(target, f"recorded-{n // 8:03}", "\n".join(frames[n:n + 8]))
        module = "binance" if provider == "binance" else "coinbase"
        for n, example in enumerate(doc_examples(module)):
            write(target, f"doc-{n:03}", example)
    for provider, module in [("coinbase", "coinbase"), ("kraken", "kraken"), ("finnhub", "finnhub"),
                             ("alpaca", "alpaca"), ("polygon", "polygon")]:
        target = f"provider_{provider}"
        source = crypto if provider in ("coinbase", "kraken") else equities
        lines = [render(provider, i, *t) for i, t in enumerate(source)]
        for n in range(0, len(lines), 8):
            write(target, f"trades-{n // 8:03}", "\n".join(lines[n:n + 8]))
        for n, example in enumerate(doc_examples(module)):
            write(target, f"doc-{n:03}", example)
    for name, rows in [("btcusdt", crypto), ("equities", equities)]:
        for n in range(0, len(rows), 50):
            chunk = rows[n:n + 50]
            write("replay_csv", f"{name}-{n // 50:02}",
                  "ts,symbol,price,size\n" + "".join(f"{t},{s},{p},{q}\n" for t, s, p, q in chunk))
            write("replay_jsonl", f"{name}-{n // 50:02}", "".join(
                json.dumps({"ts": t, "symbol": s, "price": float(p), "size": float(q)}) + "\n"
                for t, s, p, q in chunk))
    for recording in ["binance_btcusdt_20240808.frames.jsonl", "coinbase_exchange_20210417.frames.jsonl"]:
        lines = open(os.path.join(DATA, recording), encoding="utf-8").read().splitlines()[:400]
        for n in range(0, len(lines), 40):
            write("replay_frames", f"{recording.split('_')[0]}-{n // 40:02}", "\n".join(lines[n:n + 40]) + "\n")
    print(f"corpora written under {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
