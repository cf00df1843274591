"""Synthetic AML transactions in IBM AMLworld's exact file format, with laundering that can be learned.

Why: the real AMLworld files cannot be shipped, yet demos, tests and method comparisons need data
that goes through the same reader, the same (bank, account) keys and the same eight pattern
typologies, and whose labels a model can learn from the graph but not from a row's own cells.

The world (docs/aml-generator.md): a persistent population of launderers, organised in rings
that sit partly in a few banks, launders again and again over the whole period through the eight
AMLworld typologies (hops hours apart, mostly ACH) plus lone laundering rows; pattern accounts
also make ordinary payments. Ordinary accounts have their own regularities: employers pay fixed
salaries on fixed days, people pay fixed bills to utilities, shoppers pay merchants small card
amounts, accounts reinvest into themselves. Presets reproduce the headline statistics of IBM's
HI-Small and LI-Small files at any size. Generation is vectorised numpy: loops run over the
pattern types and behaviour kinds, never over rows, accounts or pattern instances.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from relssl.data.ibm_aml import COLUMNS, HEADER, TIME_FORMAT, read_ibm_rows
from relssl.errors import RelsslError

# The generator's release, bumped when a seed's output changes on purpose. The bundled default's
# folder carries it with a digest of this file (relssl.data.datasets), so no other file is reused.
GENERATOR_VERSION = 2

CURRENCIES = np.array([
    "US Dollar", "Euro", "Yuan", "Shekel", "Canadian Dollar", "UK Pound", "Ruble", "Australian Dollar",
    "Swiss Franc", "Yen", "Mexican Peso", "Rupee", "Brazil Real", "Saudi Riyal", "Bitcoin",
])
PER_USD = np.array([1.0, 0.85, 6.7, 3.4, 1.3, 0.77, 60.0, 1.4, 0.95, 135.0, 20.0, 80.0, 5.3, 3.75, 5e-5])
BITCOIN = 14  # index in CURRENCIES

FORMATS = np.array(["Reinvestment", "Cheque", "Credit Card", "ACH", "Cash", "Wire", "Bitcoin"])
REINVESTMENT, CHEQUE, CREDIT_CARD, ACH, CASH, WIRE, BITCOIN_FORMAT = range(len(FORMATS))

# IBM AMLworld HI-Small_Trans.csv and LI-Small_Trans.csv, as published (sources in docs/aml-generator.md).
HI_SMALL_ROWS, HI_SMALL_LAUNDERING, HI_SMALL_ACCOUNTS = 5_078_345, 5_177, 515_080
LI_SMALL_ROWS, LI_SMALL_LAUNDERING, LI_SMALL_ACCOUNTS = 6_924_049, 3_565, 705_907
HI_SMALL_FORMAT_ROWS = np.array([481_056, 1_864_331, 1_323_324, 600_797, 490_891, 171_855, 146_091])  # FORMATS order
HI_SMALL_PAYMENT_CURRENCY_ROWS = np.array([  # CURRENCIES order
    1_895_172, 1_168_297, 213_752, 192_184, 140_042, 180_738, 155_178, 136_769,
    234_860, 155_209, 110_159, 190_202, 70_703, 89_014, 146_066,
])
# Rows paid and received in different currencies, once 9 duplicate rows are dropped.
HI_SMALL_CROSS_CURRENCY = 72_154 / (HI_SMALL_ROWS - 9)
HI_SMALL_BANKS = 30_470
HI_SMALL_PATTERN_ROWS = 3_209  # laundering rows inside the 370 blocks of HI-Small_Patterns.txt
# Laundering rows' formats in HI-Small: ACH 86.6 %, Cheque 6.3 %, Credit Card 4.0 %, no Reinvestment
# or Wire; Cash and Bitcoin share the remaining 3.1 % (their split is not published: halves).
HI_SMALL_LAUNDER_FORMAT_SHARE = np.array([0.0, 0.063, 0.040, 0.866, 0.0155, 0.0, 0.0155])  # FORMATS order


@dataclass(frozen=True)
class Preset:
    """The headline statistics a generated file reproduces (shares sum to one)."""

    rows: int
    laundering_rate: float
    rows_per_account: float
    format_share: np.ndarray  # FORMATS order, over all rows
    currency_share: np.ndarray  # CURRENCIES order, payment currency over all rows
    cross_currency_share: float


_HI_FORMATS = HI_SMALL_FORMAT_ROWS / HI_SMALL_ROWS
_HI_CURRENCIES = HI_SMALL_PAYMENT_CURRENCY_ROWS / HI_SMALL_ROWS
# LI-Small's format and currency mix are not published anywhere we found: HI-Small's stand in.
PRESETS = {
    # The bundled default: big enough for >= 100 test-split positives at 1 in 500, small enough to
    # train on in minutes on a laptop (docs/aml-generator.md).
    "default": Preset(300_000, 1 / 500, HI_SMALL_ROWS / HI_SMALL_ACCOUNTS, _HI_FORMATS, _HI_CURRENCIES,
                      HI_SMALL_CROSS_CURRENCY),
    "hi-small": Preset(HI_SMALL_ROWS, HI_SMALL_LAUNDERING / HI_SMALL_ROWS, HI_SMALL_ROWS / HI_SMALL_ACCOUNTS,
                       _HI_FORMATS, _HI_CURRENCIES, HI_SMALL_CROSS_CURRENCY),
    "li-small": Preset(LI_SMALL_ROWS, LI_SMALL_LAUNDERING / LI_SMALL_ROWS, LI_SMALL_ROWS / LI_SMALL_ACCOUNTS,
                       _HI_FORMATS, _HI_CURRENCIES, HI_SMALL_CROSS_CURRENCY),
}

SPAN_DAYS = 18  # HI-Small runs 2022-09-01 .. 2022-09-18
DAY, HOUR, MINUTE = 86_400, 3_600, 60
ACCOUNTS_PER_BANK = HI_SMALL_ACCOUNTS / HI_SMALL_BANKS
# Accounts paying more than this share of all rows bank in a currency holding at least MAJOR_CURRENCY_SHARE.
HEAVY_PAYER_SHARE, MAJOR_CURRENCY_SHARE = 0.002, 0.2

# Ordinary behaviour: shares of the ordinary rows per kind; generic payments take the rest.
SALARY_SHARE, BILL_SHARE, CARD_SHARE = 0.05, 0.06, 0.17
EMPLOYER_SHARE, BILLER_SHARE, MERCHANT_SHARE = 0.004, 0.002, 0.015  # of accounts
WEEKLY_PAY_SHARE, WEEKLY_BILL_SHARE = 0.4, 0.4  # the others pay every 14 days / bill once in the span
SALARY_ACH_SHARE = 0.8  # employers pay by ACH, the others by Wire
BILL_FORMATS, BILL_FORMAT_P = np.array([ACH, CHEQUE, CREDIT_CARD]), np.array([0.5, 0.3, 0.2])
PAY_HOURS, PAYROLL_MINUTES = (6, 12), 30  # payroll runs start in these hours and take up to 30 minutes
# Amounts in US dollars: (median, sigma of the log). Salaries and bills are fixed per payee.
SALARY_USD, BILL_USD, CARD_USD, REINVEST_USD = (2_500.0, 0.5), (150.0, 0.9), (40.0, 1.1), (3_000.0, 2.0)
GENERIC_MEDIAN_USD = np.array([3900.0, 1950.0, 200.0, 3900.0, 1000.0, 26000.0, 1300.0])  # FORMATS order
GENERIC_SIGMA = 1.6
GENERIC_USUAL_PARTNER_SHARE = 0.5  # generic payments to one of the payer's three usual counterparties

# Laundering behaviour.
LONE_SHARE = 1 - HI_SMALL_PATTERN_ROWS / HI_SMALL_LAUNDERING  # laundering rows outside any pattern block
LAUNDER_FORMAT_P = HI_SMALL_LAUNDER_FORMAT_SHARE
LAUNDER_FORMAT_NOISE = 0.2  # rows of a scheme not paid in the scheme's own format
LAUNDER_CROSS_CURRENCY = 0.05
LAUNDER_USD = (6_600.0, 1.2)  # a scheme's amount, then kept at HOP_KEEP per hop less up to 15 % noise
HOP_KEEP = 0.95
HOP_GAP_SECONDS = (15 * MINUTE, 4 * HOUR)  # between successive hops of one scheme
MULE_SHARE = 0.2  # pattern slots (all but the scheme's originator) filled by an ordinary account
LAUNDERINGS_PER_LAUNDERER = 15  # laundering rows an average launderer takes part in
LAUNDERER_LAUNDERING_SHARE = 0.5  # of a launderer's rows, the rest ordinary payments
RING_SIZE = 20  # launderers per ring; a scheme's accounts come from one ring
# Launderers at their ring's favourite bank, one of the 5 biggest. In HI-Small the biggest bank
# sends 12.2 % of laundering and 8.9 % of ordinary rows; 0.1 gives the 5 biggest about that excess.
RING_BANK_SHARE, CRIMINAL_BANKS = 0.1, 5
PLACEMENT_SHARE = 0.5  # lone rows paying into a scheme, the others spending out of one
LONE_TO_RING_SHARE = 0.5  # without any scheme, lone rows paid to a ring mate, the others to a person

PATTERN_TYPES = (
    "FAN-OUT", "FAN-IN", "CYCLE", "SCATTER-GATHER", "GATHER-SCATTER", "BIPARTITE", "STACK", "RANDOM",
)
# Size parameters are 2 + Poisson(mean), capped: degree (fans), hops (cycle, random), layer widths.
_SIZE_MEAN_CAP = {
    "FAN-OUT": (4.0, 16), "FAN-IN": (4.0, 16), "CYCLE": (3.0, 12), "RANDOM": (3.0, 12),
    "SCATTER-GATHER": (2.0, 10), "GATHER-SCATTER": (2.0, 10), "BIPARTITE": (0.7, 5), "STACK": (0.5, 4),
}
# Text after "Max N" in AMLworld's BEGIN lines; BIPARTITE and STACK blocks carry no detail.
_HEADER_DETAIL = {
    "FAN-OUT": "-degree Fan-Out", "FAN-IN": "-degree Fan-In", "CYCLE": " hops", "RANDOM": " hops",
    "SCATTER-GATHER": "-degree Fan-Out", "GATHER-SCATTER": "-degree Fan-In",
}
_BEGIN, _END = "BEGIN LAUNDERING ATTEMPT - ", "END LAUNDERING ATTEMPT - "
_TX_KEYS = ("src", "dst", "t", "fmt", "usd", "label")


@dataclass
class PatternLog:
    """Injected laundering patterns: instance i is ``rows[offsets[i]:offsets[i + 1]]`` of the frame."""

    kinds: np.ndarray  # per instance, e.g. "CYCLE"
    headers: np.ndarray  # per instance, text after "BEGIN LAUNDERING ATTEMPT - ", e.g. "CYCLE:  Max 5 hops"
    offsets: np.ndarray  # int64, len(kinds) + 1
    rows: np.ndarray  # int64 row positions in the transactions frame

    def __len__(self) -> int:
        return len(self.kinds)


def resolve_preset(preset: str, rows: int | None, laundering_rate: float | None) -> Preset:
    """The preset with ``rows`` / ``laundering_rate`` overriding its own; every bad value is a RelsslError."""
    if preset not in PRESETS:
        raise RelsslError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    base = PRESETS[preset]
    rows = base.rows if rows is None else rows
    rate = base.laundering_rate if laundering_rate is None else laundering_rate
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise RelsslError(f"rows {rows!r}: expected a positive integer")
    if not 0 <= rate < 1:
        raise RelsslError(f"laundering rate {rate!r}: expected a fraction in [0, 1)")
    return Preset(int(rows), float(rate), base.rows_per_account, base.format_share, base.currency_share,
                  base.cross_currency_share)


def generate_aml(
    rows: int | None = None, seed: int = 0, laundering_rate: float | None = None, start: str = "2022/09/01",
    preset: str = "default",
) -> tuple[pd.DataFrame, PatternLog]:
    """Transactions sorted by time in AMLworld column order (``Account``, ``Account.1``), and the
    injected patterns. ``rows`` and ``laundering_rate`` default to the preset's."""
    spec = resolve_preset(preset, rows, laundering_rate)
    try:
        day0 = datetime.strptime(start, "%Y/%m/%d")
    except ValueError:
        raise RelsslError(f"generate_aml: start {start!r} is not a date YYYY/MM/DD") from None
    rng = np.random.default_rng(seed)
    n_launder = round(spec.rows * spec.laundering_rate)
    kind_ids, sizes = _plan_patterns(rng, n_launder - round(n_launder * LONE_SHARE))
    world = _World(rng, spec, n_launder, day0)

    pattern = _pattern_rows(rng, world, kind_ids, sizes)
    n_pattern = len(pattern["src"])
    lone = _lone_rows(rng, world, n_launder - n_pattern, pattern)
    launder_fmt = np.concatenate([pattern["fmt"], lone["fmt"]])
    normal = _normal_rows(rng, world, spec, spec.rows - n_launder, launder_fmt)
    _place_in_time(rng, world, normal["t"], pattern, lone)
    parts = [normal, pattern, lone]
    tx = {k: np.concatenate([p[k] for p in parts]) for k in _TX_KEYS}
    _cover_every_account(rng, world, tx, np.arange(normal["generic_from"], len(normal["t"])))
    pay, recv = _currencies(rng, world, spec, tx, np.concatenate([p["cross"] for p in parts]))

    n = spec.rows
    order = rng.permutation(n)  # random order among equal minutes
    order = order[np.argsort(tx["t"][order], kind="stable")]
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    tx = {k: v[order] for k, v in tx.items()}
    # Pattern rows come grouped by instance, instances in increasing id (type by type, as planned).
    counts = np.bincount(pattern["instance"], minlength=len(kind_ids))
    log = PatternLog(
        kinds=np.array(PATTERN_TYPES)[kind_ids],
        headers=_headers(kind_ids, sizes[:, 0]),
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        rows=position[len(normal["t"]) : len(normal["t"]) + n_pattern],
    )
    return world.frame(tx, pay[order], recv[order]), log


def write_aml(
    out_dir: str | Path, rows: int | None = None, seed: int = 0, laundering_rate: float | None = None,
    name: str = "Synthetic", preset: str = "default",
) -> tuple[Path, Path]:
    """Write ``<name>_Trans.csv`` and ``<name>_Patterns.txt`` exactly as AMLworld lays them out."""
    df, log = generate_aml(rows, seed, laundering_rate, preset=preset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = _csv_columns(df)
    trans_path = out_dir / f"{name}_Trans.csv"
    with trans_path.open("wb") as f:
        f.write(f"{HEADER}\n".encode())
        pv.write_csv(
            pa.table(columns, names=COLUMNS), f, pv.WriteOptions(include_header=False, quoting_style="none")
        )
    patterns_path = out_dir / f"{name}_Patterns.txt"
    patterns_path.write_text(_patterns_text(columns, log), encoding="utf-8", newline="\n")
    return trans_path, patterns_path


def read_aml_patterns(path: str | Path) -> list[tuple[str, pd.DataFrame]]:
    """(pattern type, its transactions) per block of an AMLworld ``*_Patterns.txt`` file."""
    path = Path(path)
    if not path.is_file():
        raise RelsslError(f"{path}: file not found (expected an IBM AMLworld *_Patterns.txt file)")
    lines = np.array(path.read_text(encoding="utf-8").splitlines(), dtype=str)
    begin, end = np.char.startswith(lines, _BEGIN), np.char.startswith(lines, _END)
    is_row = ~begin & ~end & (np.char.str_len(np.char.strip(lines)) > 0)
    inside = np.cumsum(begin) > np.cumsum(end)
    if (is_row & ~inside).any():
        line = int(np.flatnonzero(is_row & ~inside)[0]) + 1
        raise RelsslError(f"{path}: line {line} is a transaction outside a BEGIN/END LAUNDERING ATTEMPT block")
    kinds = [h.removeprefix(_BEGIN).split(":")[0].strip() for h in lines[begin]]
    if not is_row.any():
        return [(kind, pd.DataFrame(columns=COLUMNS)) for kind in kinds]
    text = "\n".join(lines[is_row]) + "\n"  # all rows parsed at once, then cut into blocks
    frame = read_ibm_rows(io.BytesIO(text.encode()), path).to_pandas()
    bounds = np.searchsorted(np.cumsum(begin)[is_row] - 1, np.arange(len(kinds) + 1))
    return [(kind, frame.iloc[lo:hi].reset_index(drop=True)) for kind, lo, hi in zip(kinds, bounds[:-1], bounds[1:])]


class _World:
    """Banks and accounts: who exists, where they bank, what role they play and how active they are."""

    def __init__(self, rng: np.random.Generator, spec: Preset, n_launder: int, day0: datetime) -> None:
        self.n = n = max(100, round(spec.rows / spec.rows_per_account))
        n_banks = int(np.clip(round(n / ACCOUNTS_PER_BANK), 10, 100_000))
        self.bank_ids = _bank_ids(rng, n_banks)
        bank_p = 1.0 / np.arange(1, n_banks + 1) ** 0.9  # a few big banks, a long tail of small ones
        self.bank = rng.choice(n_banks, n, p=bank_p / bank_p.sum())
        self.account_ids = _hex_ids(rng.choice(0x4000000, n, replace=False))

        # Roles over a random order of accounts; launderers in rings of consecutive entries.
        n_launderers = 0
        if n_launder:
            n_launderers = int(np.clip(round(2 * n_launder / LAUNDERINGS_PER_LAUNDERER), 2, n // 10))
        role_sizes = [max(1, round(n * s)) for s in (EMPLOYER_SHARE, BILLER_SHARE, MERCHANT_SHARE)]
        order = rng.permutation(n)
        self.employers, self.billers, self.merchants, self.launderers, self.people = np.split(
            order, np.cumsum([*role_sizes, n_launderers]))
        self.ring_start = np.arange(0, n_launderers, RING_SIZE)
        self.ring_size = np.minimum(RING_SIZE, n_launderers - self.ring_start)
        # Each ring keeps some members at one favourite among the biggest banks, which also serve
        # many ordinary customers: launderers are over-represented there about as in HI-Small.
        ring_bank = rng.integers(0, min(CRIMINAL_BANKS, n_banks), len(self.ring_start))
        at_ring_bank = rng.random(n_launderers) < RING_BANK_SHARE
        self.bank[self.launderers[at_ring_bank]] = ring_bank[np.arange(n_launderers)[at_ring_bank] // RING_SIZE]

        # Pareto activity gives heavy-tailed (power-law) out- and in-degrees for ordinary payments.
        self.out_w, self.in_w = rng.pareto(1.5, n) + 1, rng.pareto(1.5, n) + 1
        self.epoch0 = int(np.datetime64(day0, "s").astype(np.int64))
        weekend = (day0.weekday() + np.arange(SPAN_DAYS)) % 7 >= 5
        day_w = np.where(weekend, 0.6, 1.0)
        hour_w = 0.15 + np.exp(-0.5 * ((np.arange(24) - 13) / 4.0) ** 2)  # daytime peak
        self.day_p, self.hour_p = day_w / day_w.sum(), hour_w / hour_w.sum()

    def launderer_adjusted_p(self, weights: np.ndarray, per_launderer: float, draws: int) -> np.ndarray:
        """Draw probabilities from activity ``weights``, with each launderer drawn ``per_launderer``
        times in ``draws`` (ordinary payments in proportion to its laundering)."""
        weights = weights.copy()
        if len(self.launderers) and draws:
            share = min(per_launderer * len(self.launderers) / draws, 0.5)
            others = weights.sum() - weights[self.launderers].sum()
            weights[self.launderers] = others * share / (1 - share) / len(self.launderers)
        return weights / weights.sum()

    def times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Seconds after day 0 at minute resolution, with a weekly and daily rhythm."""
        day = rng.choice(SPAN_DAYS, n, p=self.day_p)
        hour = rng.choice(24, n, p=self.hour_p)
        return day * DAY + hour * HOUR + rng.integers(0, 60, n) * MINUTE

    def frame(self, tx: dict[str, np.ndarray], pay: np.ndarray, recv: np.ndarray) -> pd.DataFrame:
        """AMLworld columns from account indices, currencies and US-dollar values."""
        src, dst, usd = tx["src"], tx["dst"], tx["usd"]
        paid = np.maximum(np.rint(usd * PER_USD[pay] * 100), 1) / 100
        received = np.where(recv == pay, paid, np.maximum(np.rint(usd * PER_USD[recv] * 100), 1) / 100)
        banks, accounts = pa.array(self.bank_ids), pa.array(self.account_ids)
        table = pa.table(
            {
                "Timestamp": pa.array(self.epoch0 + tx["t"], pa.timestamp("s")),
                "From Bank": banks.take(self.bank[src]),
                "Account": accounts.take(src),
                "To Bank": banks.take(self.bank[dst]),
                "Account.1": accounts.take(dst),
                "Amount Received": received,
                "Receiving Currency": pa.array(CURRENCIES).take(recv),
                "Amount Paid": paid,
                "Payment Currency": pa.array(CURRENCIES).take(pay),
                "Payment Format": pa.array(FORMATS).take(tx["fmt"]),
                "Is Laundering": tx["label"],
            }
        )
        return table.to_pandas()


def _rows(src, dst, t, fmt, usd, label: int = 0, cross=None) -> dict[str, np.ndarray]:
    """One block of transactions; ``cross`` marks rows received in another currency."""
    n = len(src)
    return dict(src=src, dst=dst, t=t, fmt=np.broadcast_to(fmt, n).astype(np.int64), usd=usd,
                label=np.full(n, label, np.int64), cross=np.zeros(n, bool) if cross is None else cross)


def _amounts(rng: np.random.Generator, median_sigma: tuple[float, float], n: int) -> np.ndarray:
    """Log-normal US-dollar amounts with the given median and log spread."""
    median, sigma = median_sigma
    return median * rng.lognormal(0.0, sigma, n)


def _zipf(rng: np.random.Generator, n: int, size: int, exponent: float = 1.0) -> np.ndarray:
    """Indices 0..n-1 drawn with a popularity that falls as a power of a random rank."""
    p = rng.permutation(1.0 / np.arange(1, n + 1) ** exponent)
    return rng.choice(n, size, p=p / p.sum())


def _schedule(rng: np.random.Generator, n: int, weekly_share: float, other_period: int) -> tuple:
    """Per payer: period in days (7, or ``other_period``), first day, and how many times it falls in the span."""
    period = np.where(rng.random(n) < weekly_share, 7, other_period)
    first = rng.integers(0, np.minimum(period, SPAN_DAYS))
    return period, first, (SPAN_DAYS - 1 - first) // period + 1


def _repeat_schedule(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row owner and occurrence number k (0..count-1) for owners repeated ``counts`` times."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)


def _salary_rows(rng: np.random.Generator, world: _World, budget: int) -> dict[str, np.ndarray]:
    """Employers pay each employee the same amount on the same weekday or fortnightly day, in one batch."""
    k = len(world.employers)
    period, first, paydays = _schedule(rng, k, WEEKLY_PAY_SHARE, 14)
    size_w = rng.pareto(1.2, k) + 1  # a few large employers
    mean_paydays = (size_w * paydays).sum() / size_w.sum()
    n_employees = min(len(world.people), round(budget / mean_paydays))
    employees = rng.choice(world.people, n_employees, replace=False)
    employer = rng.choice(k, n_employees, p=size_w / size_w.sum())
    salary = _amounts(rng, SALARY_USD, n_employees)
    fmt = np.where(rng.random(k) < SALARY_ACH_SHARE, ACH, WIRE)
    pay_hour = rng.integers(*PAY_HOURS, k)
    who, nth = _repeat_schedule(paydays[employer])
    boss = employer[who]
    t = (first[boss] + nth * period[boss]) * DAY + pay_hour[boss] * HOUR
    t += rng.integers(0, PAYROLL_MINUTES, len(who)) * MINUTE
    return _rows(world.employers[boss], employees[who], t, fmt[boss], salary[who])


def _bill_rows(rng: np.random.Generator, world: _World, budget: int) -> dict[str, np.ndarray]:
    """People pay a utility or merchant the same amount weekly, or once a month, at a fixed hour."""
    mean_payments = WEEKLY_BILL_SHARE * (SPAN_DAYS / 7) + (1 - WEEKLY_BILL_SHARE)
    n_pairs = round(budget / mean_payments)
    period, first, counts = _schedule(rng, n_pairs, WEEKLY_BILL_SHARE, 31)
    payer = rng.choice(world.people, n_pairs)
    biller = world.billers[_zipf(rng, len(world.billers), n_pairs)]
    amount = _amounts(rng, BILL_USD, n_pairs)
    fmt = BILL_FORMATS[rng.choice(len(BILL_FORMATS), n_pairs, p=BILL_FORMAT_P)]
    clock = rng.choice(24, n_pairs, p=world.hour_p) * HOUR + rng.integers(0, 60, n_pairs) * MINUTE
    pair, nth = _repeat_schedule(counts)
    t = (first[pair] + nth * period[pair]) * DAY + clock[pair]
    return _rows(payer[pair], biller[pair], t, fmt[pair], amount[pair])


def _card_rows(rng: np.random.Generator, world: _World, n: int, out_p: np.ndarray) -> dict[str, np.ndarray]:
    """Shoppers pay merchants small Credit Card amounts; a few merchants take most of them."""
    src = rng.choice(world.n, n, p=out_p)
    dst = world.merchants[_zipf(rng, len(world.merchants), n)]
    src = np.where(src == dst, rng.choice(world.people, n), src)  # a merchant does not shop at itself
    return _rows(src, dst, world.times(rng, n), CREDIT_CARD, _amounts(rng, CARD_USD, n))


def _reinvestment_rows(rng: np.random.Generator, world: _World, n: int, out_p: np.ndarray) -> dict:
    """Self-transfers, as AMLworld writes Reinvestment."""
    src = rng.choice(world.n, n, p=out_p)
    return _rows(src, src, world.times(rng, n), REINVESTMENT, _amounts(rng, REINVEST_USD, n))


def _generic_rows(rng: np.random.Generator, world: _World, format_counts: np.ndarray, out_p, in_p) -> dict:
    """Everyday payments between active accounts and their usual counterparties, formats as counted."""
    n = int(format_counts.sum())
    fmt = rng.permutation(np.repeat(np.arange(len(FORMATS)), format_counts))
    src = rng.choice(world.n, n, p=out_p)
    partners = rng.choice(world.n, (world.n, 3), p=in_p)  # usual counterparties
    usual = partners[src, rng.integers(0, 3, n)]
    dst = np.where(rng.random(n) < GENERIC_USUAL_PARTNER_SHARE, usual, rng.choice(world.n, n, p=in_p))
    dst = np.where(dst == src, (dst + 1) % world.n, dst)
    usd = GENERIC_MEDIAN_USD[fmt] * rng.lognormal(0.0, GENERIC_SIGMA, n)
    return _rows(src, dst, world.times(rng, n), fmt, usd)


def _normal_rows(rng: np.random.Generator, world: _World, spec: Preset, n: int, launder_fmt: np.ndarray) -> dict:
    """Ordinary rows of every kind; generic payments fill the format mix the other kinds leave open.

    Returns the blocks concatenated, with ``generic_from``: where the generic rows start.
    """
    target = _counts(spec.format_share, spec.rows)
    fixed = [_salary_rows(rng, world, round(SALARY_SHARE * n)), _bill_rows(rng, world, round(BILL_SHARE * n))]
    left = n - sum(len(b["src"]) for b in fixed)
    n_card = min(round(CARD_SHARE * n), left)
    n_reinvest = min(int(target[REINVESTMENT]), left - n_card)
    n_generic = left - n_card - n_reinvest
    # Each launderer's ordinary out- and in-payments about match its laundering rows.
    per_launderer = LAUNDERINGS_PER_LAUNDERER * (1 - LAUNDERER_LAUNDERING_SHARE) / LAUNDERER_LAUNDERING_SHARE / 2
    out_p = world.launderer_adjusted_p(world.out_w, per_launderer, n_generic + n_card + n_reinvest)
    in_p = world.launderer_adjusted_p(world.in_w, per_launderer, n_generic)
    fixed += [_card_rows(rng, world, n_card, out_p), _reinvestment_rows(rng, world, n_reinvest, out_p)]
    taken = np.bincount(np.concatenate([launder_fmt, *[b["fmt"] for b in fixed]]), minlength=len(FORMATS))
    generic = _generic_rows(rng, world, _counts(np.maximum(target - taken, 0), n_generic), out_p, in_p)
    blocks = [*fixed, generic]
    out = {k: np.concatenate([b[k] for b in blocks]) for k in (*_TX_KEYS, "cross")}
    out["generic_from"] = n - n_generic
    return out


def _counts(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` in proportion to ``weights`` (largest remainders)."""
    weights = np.asarray(weights, float)
    if total <= 0:
        return np.zeros(len(weights), np.int64)
    if weights.sum() <= 0:
        weights = np.ones(len(weights))
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(counts - exact)[: total - counts.sum()]] += 1
    return counts


def _plan_patterns(rng: np.random.Generator, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Pattern instances (type index, sizes a, b, c) filling at most ``budget`` rows, about as many
    instances of each type (HI-Small_Patterns.txt holds 40 to 54 blocks of each)."""
    rows_each = np.array([_shape(k, *(2 + np.full(3, _SIZE_MEAN_CAP[k][0])))[0] for k in PATTERN_TYPES])
    kind_ids, sizes, left = [], [], budget
    for i, kind in enumerate(PATTERN_TYPES):
        share = int(left * rows_each[i] / rows_each[i:].sum())  # what earlier types left over rolls on
        mean, cap = _SIZE_MEAN_CAP[kind]
        abc = np.minimum(2 + rng.poisson(mean, (share // 2 + 1, 3)), cap)
        n_rows = _shape(kind, *abc.T)[0]
        take = np.cumsum(n_rows) <= share
        if not take.any():  # share too small for the first draw: try the smallest instance
            abc = np.full((1, 3), 2)
            take = _shape(kind, *abc.T)[0] <= left
        kind_ids.append(np.full(take.sum(), i))
        sizes.append(abc[take])
        left -= int(_shape(kind, *abc[take].T)[0].sum())
    return np.concatenate(kind_ids), np.concatenate(sizes).reshape(-1, 3)


def _shape(kind: str, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (transactions) and slots (distinct accounts) of pattern instances with sizes a, b, c."""
    if kind in ("FAN-OUT", "FAN-IN"):
        return a, a + 1
    if kind == "CYCLE":
        return a, a
    if kind == "RANDOM":
        return a, a // 2 + 2
    if kind == "SCATTER-GATHER":
        return 2 * a, a + 2
    if kind == "GATHER-SCATTER":
        return 2 * a, 2 * a + 1
    if kind == "BIPARTITE":
        return a * b, a + b
    return a * b + b * c, a + b + c  # STACK: three layers, each fully linked to the next


def _edges(
    kind: str, j: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, slots: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source slot, target slot and hop stage of edge ``j`` (per row) within its pattern instance."""
    zero = np.zeros_like(j)
    if kind == "FAN-OUT":
        return zero, 1 + j, zero
    if kind == "FAN-IN":
        return 1 + j, zero, zero
    if kind == "CYCLE":
        return j, (j + 1) % a, j
    if kind == "SCATTER-GATHER":  # 0 -> 1..a -> a+1
        second = j >= a
        return np.where(second, 1 + j - a, 0), np.where(second, a + 1, 1 + j), second.astype(np.int64)
    if kind == "GATHER-SCATTER":  # 1..a -> 0 -> a+1..2a
        second = j >= a
        return np.where(second, 0, 1 + j), np.where(second, 1 + j, 0), second.astype(np.int64)
    if kind == "BIPARTITE":
        return j // b, a + j % b, zero
    if kind == "STACK":
        second = j >= a * b
        k = np.maximum(j - a * b, 0)
        src = np.where(second, a + k // c, j // b)
        dst = np.where(second, a + b + k % c, a + j % b)
        return src, dst, second.astype(np.int64)
    # RANDOM: a walk that never stays put: position = running sum of steps in 1..slots-1, mod slots.
    step = 1 + (rng.random(len(j)) * (slots - 1)).astype(np.int64)
    before = np.cumsum(step) - step
    first = j == 0
    before -= np.repeat(before[first], a[first])  # restart the sum at each instance (a rows each)
    return before % slots, (before + step) % slots, j


def _pattern_rows(rng: np.random.Generator, world: _World, kind_ids: np.ndarray, sizes: np.ndarray) -> dict:
    """Transactions of all pattern instances, built type by type over all instances of the type at once.

    Times are relative to the scheme's start (``_place_in_time`` sets the starts).
    """
    parts, slot_base = [(np.zeros(0, np.int64),) * 4], 0
    slot_owner, slot_rank = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for i, kind in enumerate(PATTERN_TYPES):
        ids = np.flatnonzero(kind_ids == i)
        a, b, c = sizes[ids].T
        n_rows, n_slots = _shape(kind, a, b, c)
        inst = np.repeat(np.arange(len(ids)), n_rows)
        j = np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
        s, d, hop = _edges(kind, j, a[inst], b[inst], c[inst], n_slots[inst], rng)
        base = slot_base + np.repeat(np.cumsum(n_slots) - n_slots, n_rows)
        parts.append((ids[inst], s + base, d + base, hop))
        owner, rank = _repeat_schedule(n_slots)
        slot_owner.append(ids[owner])
        slot_rank.append(rank)
        slot_base += int(n_slots.sum())
    instance, s, d, hop = (np.concatenate([p[i] for p in parts]).astype(np.int64) for i in range(4))
    account = _slot_accounts(rng, world, np.concatenate(slot_owner), np.concatenate(slot_rank), len(kind_ids))
    src, dst = account[s], account[d]
    dst = np.where(dst == src, (dst + 1) % world.n, dst)

    k, n = len(kind_ids), len(instance)
    fmt = rng.choice(len(FORMATS), k, p=LAUNDER_FORMAT_P)[instance]  # one habit per scheme, some noise
    noisy = rng.random(n) < LAUNDER_FORMAT_NOISE
    fmt = np.where(noisy, rng.choice(len(FORMATS), n, p=LAUNDER_FORMAT_P), fmt)
    usd = _amounts(rng, LAUNDER_USD, k)[instance] * HOP_KEEP**hop * rng.uniform(0.85, 1.0, n)
    gap = rng.uniform(*HOP_GAP_SECONDS, k)[instance]  # hops follow each other within hours
    rel_t = ((hop + rng.random(n) / 2) * gap).astype(np.int64)
    out = _rows(src, dst, rel_t, fmt, usd, label=1, cross=_launder_cross(rng, fmt))
    out["instance"] = instance
    return out


def _slot_accounts(rng, world: _World, owner: np.ndarray, rank: np.ndarray, n_instances: int) -> np.ndarray:
    """Accounts for pattern slots: consecutive members of one ring per scheme, some slots mules.

    Slot 0 (the scheme's originator) is always a launderer; any other slot is, with probability
    MULE_SHARE, an ordinary person the ring borrows for one scheme.
    """
    if not len(owner):
        return np.zeros(0, np.int64)
    n_rings = len(world.ring_start)
    ring_w = rng.gamma(2.0, 1.0, n_rings) * world.ring_size  # some rings busier than others
    ring = rng.choice(n_rings, n_instances, p=ring_w / ring_w.sum())
    offset = (rng.random(n_instances) * world.ring_size[ring]).astype(np.int64)
    member = world.ring_start[ring[owner]] + (offset[owner] + rank) % world.ring_size[ring[owner]]
    account = world.launderers[member]
    mule = (rank > 0) & (rng.random(len(rank)) < MULE_SHARE)
    return np.where(mule, rng.choice(world.people, len(rank)), account)


def _lone_rows(rng: np.random.Generator, world: _World, n: int, pattern: dict) -> dict[str, np.ndarray]:
    """Laundering rows outside any pattern block: the cycle's placement and integration around a
    scheme. Half pay dirty money from a launderer into the scheme's first payer shortly before the
    scheme; half spend what the scheme's last payee received on an ordinary person shortly after.
    Each row carries its scheme as ``instance`` and a time relative to the scheme's start.
    Without any scheme, a launderer pays a ring mate or an ordinary person."""
    if n <= 0:
        return _rows(*(np.zeros(0, np.int64),) * 4, np.zeros(0), label=1) | {"instance": np.zeros(0, np.int64)}
    fmt = rng.choice(len(FORMATS), n, p=LAUNDER_FORMAT_P)
    usd = _amounts(rng, LAUNDER_USD, n)
    launderer = world.launderers[rng.integers(0, len(world.launderers), n)]
    person = rng.choice(world.people, n)
    scheme_rows = pattern["instance"]
    if len(scheme_rows):
        n_inst = int(scheme_rows[-1]) + 1
        first = np.searchsorted(scheme_rows, np.arange(n_inst))  # rows come grouped by scheme, hop by hop
        last = np.searchsorted(scheme_rows, np.arange(n_inst), side="right") - 1
        instance = rng.integers(0, n_inst, n)
        placement = rng.random(n) < PLACEMENT_SHARE
        gap = rng.uniform(*HOP_GAP_SECONDS, n).astype(np.int64)
        src = np.where(placement, launderer, pattern["dst"][last[instance]])
        dst = np.where(placement, pattern["src"][first[instance]], person)
        t = np.where(placement, pattern["t"][first[instance]] - gap, pattern["t"][last[instance]] + gap)
    else:
        payer = rng.integers(0, len(world.launderers), n)
        start, size = world.ring_start[payer // RING_SIZE], world.ring_size[payer // RING_SIZE]
        step = 1 + (rng.random(n) * np.maximum(size - 1, 1)).astype(np.int64)
        mate = world.launderers[start + (payer - start + step) % size]
        src = world.launderers[payer]
        dst = np.where(rng.random(n) < LONE_TO_RING_SHARE, mate, person)
        instance, t = np.arange(n), np.zeros(n, np.int64)
    dst = np.where(dst == src, (dst + 1) % world.n, dst)
    out = _rows(src, dst, t, fmt, usd, label=1, cross=_launder_cross(rng, fmt))
    out["instance"] = instance
    return out


def _launder_cross(rng: np.random.Generator, fmt: np.ndarray) -> np.ndarray:
    """Laundering rows received in another currency (never Bitcoin or self-transfers)."""
    return (rng.random(len(fmt)) < LAUNDER_CROSS_CURRENCY) & (fmt != BITCOIN_FORMAT) & (fmt != REINVESTMENT)


def _place_in_time(rng: np.random.Generator, world: _World, normal_t: np.ndarray, *blocks: dict) -> None:
    """Start every scheme (with its placement and integration rows) at a time drawn from ordinary
    traffic's own time distribution, stratified by laundering rows, so that every stretch of the
    period (every temporal split) gets its share of laundering; a scheme that would run past
    either end of the span is moved inside it. Rows' ``t`` turn from relative to absolute."""
    instance = np.concatenate([b["instance"] for b in blocks])
    rel = np.concatenate([b["t"] for b in blocks])
    if not len(instance):
        return
    mass = np.bincount(instance)
    if not len(normal_t):  # nothing but laundering: the daily and weekly rhythm itself
        normal_t = world.times(rng, len(mass))
    order = rng.permutation(len(mass))
    before = np.empty(len(mass), np.int64)
    before[order] = np.cumsum(mass[order]) - mass[order]
    quantile = (before + rng.random(len(mass)) * mass) / mass.sum()
    start = np.sort(normal_t)[(quantile * len(normal_t)).astype(np.int64)]
    earliest, latest = np.zeros(len(mass), np.int64), np.zeros(len(mass), np.int64)
    np.minimum.at(earliest, instance, rel)
    np.maximum.at(latest, instance, rel)
    start = np.maximum(np.minimum(start, SPAN_DAYS * DAY - MINUTE - latest), -earliest)
    for block in blocks:
        block["t"] = (start[block["instance"]] + block["t"]) // MINUTE * MINUTE


def _cover_every_account(rng: np.random.Generator, world: _World, tx: dict, generic_rows: np.ndarray) -> None:
    """Point generic payments at accounts that have no transaction yet, so every account appears
    and rows per account match the preset."""
    seen = np.zeros(world.n, bool)
    seen[tx["src"]] = seen[tx["dst"]] = True
    unseen = np.flatnonzero(~seen)
    take = min(len(unseen), len(generic_rows))
    tx["dst"][rng.choice(generic_rows, take, replace=False)] = unseen[:take]


def _currencies(rng: np.random.Generator, world: _World, spec: Preset, tx: dict, cross: np.ndarray) -> tuple:
    """Payment and receiving currency per row.

    Bitcoin payments are in Bitcoin; every other row pays in the payer's home currency, and home
    currencies are dealt out over accounts by how many rows each pays, so the payment-currency mix
    matches the preset's. The marked laundering rows, and enough ordinary ones to reach the
    preset's share, are received in another currency.
    """
    bitcoin = tx["fmt"] == BITCOIN_FORMAT
    paid_rows = np.bincount(tx["src"][~bitcoin], minlength=world.n).astype(float) + 1e-9
    fiat = spec.currency_share[:BITCOIN] / spec.currency_share[:BITCOIN].sum()
    # The heaviest payers (one alone can outweigh a small currency) bank in the major currencies;
    # everyone else fills what each currency still lacks.
    heavy = paid_rows > HEAVY_PAYER_SHARE * paid_rows.sum()
    home = np.empty(world.n, np.int64)
    home[heavy] = _deal(rng, paid_rows[heavy], np.where(fiat >= MAJOR_CURRENCY_SHARE, fiat, 0.0))
    still_wanted = np.maximum(fiat * paid_rows.sum() - np.bincount(home[heavy], paid_rows[heavy], BITCOIN), 0)
    home[~heavy] = _deal(rng, paid_rows[~heavy], still_wanted)
    pay = np.where(bitcoin, BITCOIN, home[tx["src"]])

    eligible = np.flatnonzero(~cross & (tx["label"] == 0) & ~bitcoin & (tx["fmt"] != REINVESTMENT))
    wanted = round(spec.cross_currency_share * len(pay)) - int(cross.sum())
    cross = cross.copy()
    cross[rng.choice(eligible, int(np.clip(wanted, 0, len(eligible))), replace=False)] = True
    other = (pay + rng.integers(1, BITCOIN, len(pay))) % BITCOIN  # a different fiat currency
    recv = np.where(cross, np.where(home[tx["dst"]] != pay, home[tx["dst"]], other), pay)
    return pay, recv


def _deal(rng: np.random.Generator, weights: np.ndarray, share: np.ndarray) -> np.ndarray:
    """A category per item, items in random order taking consecutive stretches of the categories'
    ``share``, so each category's total weight matches its share up to about one item's weight."""
    if not len(weights):
        return np.zeros(0, np.int64)
    order = rng.permutation(len(weights))
    middle = (np.cumsum(weights[order]) - weights[order] / 2) / weights.sum()
    category = np.empty(len(weights), np.int64)
    category[order] = np.minimum(np.searchsorted(np.cumsum(share) / share.sum(), middle), len(share) - 1)
    return category


def _headers(kind_ids: np.ndarray, degree: np.ndarray) -> np.ndarray:
    """AMLworld BEGIN-line texts, e.g. "FAN-OUT:  Max 16-degree Fan-Out"; BIPARTITE and STACK bare."""
    kinds = np.array(PATTERN_TYPES)[kind_ids]
    detail = np.array([_HEADER_DETAIL.get(k, "") for k in PATTERN_TYPES])[kind_ids]
    with_max = np.char.add(np.char.add(np.char.add(kinds, ":  Max "), degree.astype(str)), detail)
    return np.where(np.char.str_len(detail) > 0, with_max, kinds)


def _bank_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct bank ids as AMLworld writes them: zero-padded numbers of varying width ("010", "03208")."""
    n_small = min(n, 20)  # the big banks have small numbers
    small = np.sort(rng.choice(np.arange(1, 100), n_small, replace=False))
    large = np.sort(rng.choice(np.arange(100, 100 + 200 * n), n - n_small, replace=False))
    numbers = np.concatenate([small, large])
    text = numbers.astype(str)
    digits = np.char.str_len(text)
    width = np.maximum(3, digits + rng.choice(3, n, p=[0.3, 0.5, 0.2]))
    return np.char.add(np.char.multiply("0", width - digits), text)


def _hex_ids(values: np.ndarray) -> np.ndarray:
    """AMLworld-style account ids: "8", seven hex digits, "0" (e.g. 8000EBD30)."""
    digits = (values[:, None] >> np.arange(24, -1, -4)) & 0xF
    chars = np.empty((len(values), 9), np.uint8)
    chars[:, 0], chars[:, 8] = ord("8"), ord("0")
    chars[:, 1:8] = np.frombuffer(b"0123456789ABCDEF", np.uint8)[digits]
    return chars.view("S9").ravel().astype(str)


_CENTS = pa.array([f"{i:02d}" for i in range(100)])


def _csv_columns(df: pd.DataFrame) -> list[pa.Array]:
    """Each column as the text AMLworld writes: minute timestamps, amounts with two decimals."""
    columns = []
    for name in COLUMNS:
        values = df[name]
        if name == "Timestamp":
            text = pc.strftime(pa.array(values.to_numpy().astype("datetime64[s]")), TIME_FORMAT)
        elif name.startswith("Amount"):
            cents = np.rint(values.to_numpy() * 100).astype(np.int64)
            whole = pc.cast(pa.array(cents // 100), pa.string())
            text = pc.binary_join_element_wise(whole, _CENTS.take(pa.array(cents % 100)), ".")
        elif name == "Is Laundering":
            text = pc.cast(pa.array(values.to_numpy()), pa.string())
        else:
            text = pa.array(values, pa.string())
        columns.append(text)
    return columns


def _patterns_text(columns: list[pa.Array], log: PatternLog) -> str:
    """The patterns file: per instance a BEGIN line, its rows in CSV form, an END line, a blank line."""
    if len(log) == 0:
        return ""
    take = pa.array(log.rows)
    lines = pc.binary_join_element_wise(*[c.take(take) for c in columns], ",").to_numpy(zero_copy_only=False)
    counts = np.diff(log.offsets)
    begin = log.offsets[:-1] + 3 * np.arange(len(log))  # each earlier block adds BEGIN, END and a blank
    out = np.empty(len(lines) + 3 * len(log), dtype=object)
    out[begin] = np.char.add(_BEGIN, log.headers)
    out[begin + counts + 1] = np.char.add(_END, log.kinds)
    out[begin + counts + 2] = ""
    out[np.repeat(begin + 1 - log.offsets[:-1], counts) + np.arange(len(lines))] = lines
    return "\n".join(out) + "\n"
