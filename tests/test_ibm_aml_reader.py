"""The IBM AMLworld reader takes the real Kaggle format unchanged and names the culprit on bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch_frame

from relssl.data.ibm_aml import HEADER, read_ibm_aml
from relssl.errors import RelsslError

REAL_ROWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ibm_aml_format" / "REAL_ROWS_HI-Small_Trans.csv"
GOOD_ROW = "2022/09/01 00:20,010,8000EBD30,001,8000F5340,3697.34,US Dollar,3697.34,US Dollar,Cheque,0"


@pytest.fixture
def real_rows() -> Path:
    if not REAL_ROWS.is_file():
        pytest.skip(f"real IBM AMLworld rows not found at {REAL_ROWS}")
    return REAL_ROWS


def write(tmp_path: Path, text: str, name: str = "Bad_Trans.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_real_rows_load_unchanged(real_rows):
    data = read_ibm_aml(real_rows)
    ev = data.events
    assert data.name == "REAL_ROWS_HI-Small"
    assert data.num_events == 4
    assert ev["From Bank"].tolist() == ["010", "03208", "03209", "012"]
    assert ev["To Bank"].tolist() == ["010", "001", "03209", "012"]
    assert ev["Account"].tolist()[0] == "8000EBD30"
    assert ev["Timestamp"].iloc[0] == pd.Timestamp("2022-09-01 00:20")
    assert pd.api.types.is_datetime64_dtype(ev["Timestamp"])
    assert data.time.dtype == np.int64
    assert data.time.tolist() == [1661991600, 1661991600, 1661990400, 1661990520]
    assert ev["Amount Paid"].tolist() == [3697.34, 0.01, 14675.57, 2806.97]
    assert ev["Amount Received"].tolist() == [3697.34, 0.01, 14675.57, 2806.97]

    reinvest = (ev["Payment Format"] == "Reinvestment").to_numpy()
    assert (data.src[reinvest] == data.dst[reinvest]).all()
    assert data.src[1] != data.dst[1]
    assert data.num_entities == 5
    keys = data.entity_keys.iloc[data.src[1]]
    assert (keys["bank"], keys["account"]) == ("03208", "8000F4580")

    assert data.label_cols == ["Is Laundering"] and data.time_col == "Timestamp"
    assert data.col_stypes["Timestamp"] == torch_frame.timestamp
    assert data.col_stypes["Amount Paid"] == torch_frame.numerical
    assert data.col_stypes["Payment Format"] == torch_frame.categorical
    assert "Account" not in data.col_stypes and "Account.1" not in data.col_stypes
    assert data.transforms == {"Amount Received": "log1p", "Amount Paid": "log1p"}


def test_same_account_number_at_two_banks_is_two_entities(tmp_path):
    row2 = GOOD_ROW.replace("001,8000F5340", "002,8000EBD30")
    data = read_ibm_aml(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n{row2}\n", "Two_Trans.csv"))
    assert data.num_entities == 3
    assert data.name == "Two"


def test_missing_file(tmp_path):
    with pytest.raises(RelsslError, match="Nope_Trans.csv"):
        read_ibm_aml(tmp_path / "Nope_Trans.csv")


@pytest.mark.parametrize("text", ["", f"{HEADER}\n"], ids=["no header", "no rows"])
def test_empty_file(tmp_path, text):
    with pytest.raises(RelsslError, match="Bad_Trans.csv"):
        read_ibm_aml(write(tmp_path, text))


def test_misspelt_header_names_the_column(tmp_path):
    bad = HEADER.replace("Amount Paid", "Amont Paid")
    with pytest.raises(RelsslError) as err:
        read_ibm_aml(write(tmp_path, f"{bad}\n{GOOD_ROW}\n"))
    message = str(err.value)
    assert "Bad_Trans.csv" in message and "'Amount Paid'" in message and "'Amont Paid'" in message
    assert HEADER in message


def test_header_without_second_account_column(tmp_path):
    bad = HEADER.replace("To Bank,Account,", "To Bank,")
    with pytest.raises(RelsslError, match=r"missing column\(s\) \['Account'\]"):
        read_ibm_aml(write(tmp_path, f"{bad}\n{GOOD_ROW}\n"))


@pytest.mark.parametrize(
    ("bad_row", "column", "value"),
    [
        (GOOD_ROW.replace("2022/09/01 00:20", "2022-09-01 00:20"), "Timestamp", "2022-09-01 00:20"),
        (GOOD_ROW.replace("3697.34,US Dollar,Cheque", "36x7.34,US Dollar,Cheque"), "Amount Paid", "36x7.34"),
        (GOOD_ROW.replace("3697.34,US Dollar,3697.34", ",US Dollar,3697.34"), "Amount Received", ""),
    ],
    ids=["timestamp", "amount", "empty amount"],
)
def test_unparsable_value_names_file_column_and_line(tmp_path, bad_row, column, value):
    with pytest.raises(RelsslError) as err:
        read_ibm_aml(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n{bad_row}\n"))
    message = str(err.value)
    assert "Bad_Trans.csv" in message and f"'{column}'" in message
    assert repr(value) in message and "line 3" in message


def test_wrong_field_count_names_the_file(tmp_path):
    with pytest.raises(RelsslError, match="Bad_Trans.csv"):
        read_ibm_aml(write(tmp_path, f"{HEADER}\n{GOOD_ROW},extra\n"))


def test_bad_label_is_rejected(tmp_path):
    with pytest.raises(RelsslError, match="'Is Laundering'"):
        read_ibm_aml(write(tmp_path, f"{HEADER}\n{GOOD_ROW[:-1]}7\n"))


def test_a_gzipped_file_reads_as_the_plain_one(real_rows, tmp_path):
    import gzip

    packed = tmp_path / "HI-Small_Trans.csv.gz"
    packed.write_bytes(gzip.compress(real_rows.read_bytes()))
    plain, unpacked = read_ibm_aml(real_rows), read_ibm_aml(packed)
    pd.testing.assert_frame_equal(unpacked.events, plain.events)
    assert (unpacked.src == plain.src).all() and (unpacked.time == plain.time).all()
    (tmp_path / "Bad_Trans.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RelsslError, match="Bad_Trans.csv.gz: not a readable gzip file"):
        read_ibm_aml(tmp_path / "Bad_Trans.csv.gz")


def test_an_infinite_amount_names_file_column_and_row(tmp_path):
    bad = GOOD_ROW.replace("3697.34,US Dollar,Cheque", "inf,US Dollar,Cheque")
    path = write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n{bad}\n")
    with pytest.raises(RelsslError, match="Bad_Trans.csv: column 'Amount Paid' holds inf in data row 2: not a finite"):
        read_ibm_aml(path)


def test_a_parquet_copy_reads_as_the_csv(real_rows, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from relssl.data.datasets import load_dataset

    plain = read_ibm_aml(real_rows)
    frame = pd.read_csv(real_rows, dtype=str)  # the Kaggle names: Account, Account.1
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "A_Trans.parquet")
    typed = frame.assign(Timestamp=pd.to_datetime(frame["Timestamp"], format="%Y/%m/%d %H:%M"),
                         **{"Amount Paid": frame["Amount Paid"].astype(float)})
    pq.write_table(pa.Table.from_pandas(typed, preserve_index=False), tmp_path / "B_Trans.parquet")
    for name in ("A_Trans.parquet", "B_Trans.parquet"):
        data = load_dataset(str(tmp_path / name))
        pd.testing.assert_frame_equal(data.events, plain.events)
        assert (data.src == plain.src).all() and (data.time == plain.time).all()
    pq.write_table(pa.Table.from_pandas(frame.drop(columns=["Payment Format"]), preserve_index=False),
                   tmp_path / "C_Trans.parquet")
    with pytest.raises(RelsslError, match=r"C_Trans.parquet: header does not match IBM AMLworld: missing column\(s\) "
                                          r"\['Payment Format'\]"):
        load_dataset(str(tmp_path / "C_Trans.parquet"))
    (tmp_path / "D_Trans.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RelsslError, match="D_Trans.parquet: not a readable Parquet file"):
        load_dataset(str(tmp_path / "D_Trans.parquet"))
