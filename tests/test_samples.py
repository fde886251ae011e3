"""Checks of the committed real sample datasets in data/samples (built by scripts/build_samples.py).

Offline and polars-only: every manifest entry must exist, match its sha256, follow the bars
contract exactly and agree with the manifest; es_1m must be exactly the 1-minute aggregation
of the committed raw ticks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import polars as pl
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
MANIFEST = SAMPLES / "MANIFEST.json"
CONTRACT = {
    "timestamp": pl.Datetime("us", "UTC"),
    "symbol": pl.String,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}
FREQS = {"1m": 1, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "1D": 1440}
CALENDARS = {"XNYS", "CMES", "24/7", "24/5", "FX"}
LICENSES = {"MIT", "BSD-3-Clause", "Apache-2.0", "NCSA"}
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_BYTES = 40 * 1024 * 1024


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


DATASETS = _manifest()["datasets"] if MANIFEST.exists() else []
RAW = _manifest()["raw"] if MANIFEST.exists() else []


def _by_name(name: str) -> dict:
    return next(d for d in DATASETS if d["name"] == name)


def test_manifest_shape():
    m = _manifest()
    assert m["format"] == 1
    assert m["built_by"] == "scripts/build_samples.py"
    assert len(m["datasets"]) >= 8
    names = [d["name"] for d in m["datasets"]] + [r["name"] for r in m["raw"]]
    assert len(names) == len(set(names))
    keys = {"name", "file", "freq", "calendar", "close_only", "symbols", "rows", "start", "end",
            "sha256", "license", "origin", "source", "source_tz", "notes"}
    for d in m["datasets"]:
        assert set(d) == keys, d["name"]
        assert d["freq"] in FREQS
        assert d["calendar"] in CALENDARS
        assert d["license"] in LICENSES
        assert HEX64.match(d["sha256"])
        assert d["origin"] and d["notes"] and d["source_tz"]
        src = d["source"]
        assert set(src) == {"package", "version", "file", "sha256"}
        shas = src["sha256"] if isinstance(src["sha256"], list) else [src["sha256"]]
        files = src["file"] if isinstance(src["file"], list) else [src["file"]]
        assert len(shas) == len(files) and all(HEX64.match(s) for s in shas)
        assert re.match(r"^\d+(\.\d+)+$", src["version"])
    for r in m["raw"]:
        assert {"name", "file", "rows", "sha256", "license", "source", "notes"} <= set(r)
        assert r["license"] in LICENSES


def test_no_stray_files():
    listed = {d["file"] for d in DATASETS} | {r["file"] for r in RAW}
    present = {p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*.parquet")}
    assert present == listed
    assert not list(SAMPLES.rglob("*.tmp"))


def test_total_size_under_40mb():
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < MAX_BYTES, f"data/samples is {total / 1e6:.1f} MB"


@pytest.mark.parametrize("entry", DATASETS, ids=[d["name"] for d in DATASETS])
def test_dataset_contract(entry):
    path = SAMPLES / entry["file"]
    assert path.is_file(), path
    assert _sha256(path) == entry["sha256"], f"{entry['file']}: sha256 differs from MANIFEST.json"
    df = pl.read_parquet(path)

    # schema: the contract columns, in order, with exact dtypes; extra columns allowed after them
    assert list(df.columns[: len(CONTRACT)]) == list(CONTRACT)
    for col, dtype in CONTRACT.items():
        assert df.schema[col] == dtype, (col, df.schema[col])

    # sorted by (symbol, timestamp) and unique on that pair; no null keys or closes
    keys = df.select("symbol", "timestamp")
    assert keys.null_count().sum_horizontal().item() == 0
    assert not keys.is_duplicated().any()
    assert keys.equals(keys.sort(["symbol", "timestamp"]))
    assert df["close"].null_count() == 0

    # manifest agreement
    assert df.height == entry["rows"]
    assert sorted(df["symbol"].unique().to_list()) == entry["symbols"]
    assert df["timestamp"].min() == dt.datetime.fromisoformat(entry["start"])
    assert df["timestamp"].max() == dt.datetime.fromisoformat(entry["end"])

    # close-only sets: open/high/low/volume present but all null
    ohlv = ["open", "high", "low", "volume"]
    if entry["close_only"]:
        for c in ohlv:
            assert df[c].null_count() == df.height, c
    else:
        for c in ["open", "high", "low"]:
            assert df[c].null_count() < df.height, c

    # daily bars are labelled 00:00 UTC of the session date
    if entry["freq"] == "1D":
        assert (df["timestamp"].dt.time() == dt.time(0)).all()


def _es_ticks() -> pl.DataFrame:
    raw = next(r for r in RAW if r["name"] == "es_ticks")
    path = SAMPLES / raw["file"]
    assert _sha256(path) == raw["sha256"]
    ticks = pl.read_parquet(path)
    assert ticks.schema == pl.Schema(
        {"timestamp": pl.Datetime("us", "UTC"), "price": pl.Float64, "volume": pl.Float64})
    assert ticks.height == raw["rows"]
    assert ticks["timestamp"].is_sorted()
    return ticks


def _agg(ticks: pl.DataFrame, every: str) -> pl.DataFrame:
    return (ticks.group_by(pl.col("timestamp").dt.truncate(every), maintain_order=True)
            .agg(open=pl.col("price").first(), high=pl.col("price").max(), low=pl.col("price").min(),
                 close=pl.col("price").last(), volume=pl.col("volume").sum())
            .sort("timestamp", maintain_order=True))


def test_es_1m_is_exact_tick_aggregation():
    ticks = _es_ticks()
    bars = pl.read_parquet(SAMPLES / _by_name("es_1m")["file"])
    assert bars["symbol"].unique().to_list() == ["ES"]
    expected = _agg(ticks, "1m")
    assert bars.select("timestamp", "open", "high", "low", "close", "volume").equals(expected)
    assert bars["volume"].sum() == ticks["volume"].sum()

# Resampling these bars with yooptx against the ticks is tested in tests/test_resample.py.
