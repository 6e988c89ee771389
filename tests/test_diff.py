"""The yearly comparison on hand-built two-year cases with known losses, gains and changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import pipeline
from cli import cli
from conftest import Job, box, parcels_frame, run, soil_frame
from pipeline import archive as arc
from pipeline import diff
from pipeline.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def _p(bsm: str, x1: float, x2: float, tbmj: float, **extra) -> dict:
    return {"BSM": bsm, "geometry": box(x1, 0, x2, 100), "TBMJ": tbmj, **extra}


# Year 1 → year 2, parcels of 100 m x 100 m (10000.00 m², no deduction), all in 220122:
#   A1  unchanged
#   A2  turned into construction land (0601): lost, no longer cultivated
#   A3  renumbered B3 and re-digitised 0.4 m to the east: the same land (location)
#   A4  land class 0103 → 0101
#   A5  split into A5 (6000) and B5 (4000)
#   B6  new cultivated land on black soil: gained
#   A7  half of it gone: 10000 → 5000
#   A8  the soil map now says 草甸土 instead of 黑土
#   A9  replaced by B9, which overlaps it by 30 % only: A9 lost and B9 gained
#   A10 cultivated on 风沙土, now mapped as 黑土: gained, was cultivated
#   A11 re-digitised 0.3 m to the east, same BSM, re-measured 10000.50
YEAR1 = [
    _p("A1", 0, 100, 10000.0),
    _p("A2", 200, 300, 10000.0),
    _p("A3", 400, 500, 10000.0),
    _p("A4", 600, 700, 10000.0),
    _p("A5", 800, 900, 10000.0),
    _p("A7", 1200, 1300, 10000.0),
    _p("A8", 1400, 1500, 10000.0),
    _p("A9", 1600, 1700, 10000.0),
    _p("A10", 1800, 1900, 10000.0),
    _p("A11", 2000, 2100, 10000.0),
]
YEAR2 = [
    _p("A1", 0, 100, 10000.0),
    _p("A2", 200, 300, 10000.0, DLBM="0601", DLMC="工业用地"),
    _p("B3", 400.4, 500.4, 10000.0),
    _p("A4", 600, 700, 10000.0, DLBM="0101", DLMC="水田"),
    _p("A5", 800, 860, 6000.0),
    _p("B5", 860, 900, 4000.0),
    _p("B6", 1000, 1100, 10000.0),
    _p("A7", 1200, 1250, 5000.0),
    _p("A8", 1400, 1500, 10000.0),
    _p("B9", 1670, 1770, 10000.0),
    _p("A10", 1800, 1900, 10000.0),
    _p("A11", 2000.3, 2100.3, 10000.50),
]


def _soil(year: int):
    a8 = "黑土" if year == 1 else "草甸土"
    a10 = "风沙土" if year == 1 else "黑土"
    return soil_frame(
        [
            ("黑土", box(-50, -50, 1390, 150)),
            (a8, box(1390, -50, 1510, 150)),
            ("黑土", box(1510, -50, 1790, 150)),
            (a10, box(1790, -50, 1910, 150)),
            ("黑土", box(1910, -50, 2200, 150)),
        ]
    )


def _survey(folder: Path, rows: list[dict], year: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    job = Job(folder)
    job.layer("parcels", parcels_frame(rows), "DLTB")
    job.layer("soil", _soil(1 if year == 2024 else 2), "TRTB")
    outcome, _ = run(job, year=year)
    return outcome.archive


@pytest.fixture(scope="module")
def years(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("diff")
    return _survey(base / "y1", YEAR1, 2024), _survey(base / "y2", YEAR2, 2025)


@pytest.fixture(scope="module")
def result(years) -> diff.DiffResult:
    return pipeline.diff_archives(*years)


def test_lost_and_gained(result):
    lost = result.lost.set_index("BSM")
    gained = result.gained.set_index("BSM")
    assert sorted(lost.index) == ["A2", "A9"]
    assert sorted(gained.index) == ["A10", "B6", "B9"]
    assert lost.loc["A2", "YY"] == diff.LEFT_CULTIVATED
    assert lost.loc["A2", "TBDLMJ"] == 10000.0 and lost.loc["A2", "TL"] == "黑土"
    assert lost.loc["A9", "CDMJ"] == pytest.approx(3000.0)  # overlaps B9 by 30 %: not matched
    assert gained.loc["B6", "YY"] == diff.NEW_CULTIVATED
    assert gained.loc["A10", "YY"] == diff.WAS_CULTIVATED
    assert gained.loc["B9", "SJNF"] == 2025 and lost.loc["A2", "SJNF"] == 2024
    assert result.lost.geometry.area.sum() == pytest.approx(20000.0)
    assert result.old_year == 2024 and result.new_year == 2025


def test_re_digitised_parcels_are_not_lost_and_found(result):
    ids = set(result.lost["BSM"]) | set(result.gained["BSM"])
    assert not ids & {"A3", "B3", "A11", "A5", "B5"}
    changed = result.changed.set_index("BSM_H")
    b3 = changed.loc["B3"]
    assert b3["BSM_Q"] == "A3" and b3["PPFS"] == diff.BY_LOCATION
    assert b3["BHLX"] == diff.KIND_ID and b3["BHMJ"] == 0.0
    assert b3["JSMJ_PM"] == pytest.approx(40.0) and b3["ZJMJ_PM"] == pytest.approx(40.0)
    a11 = changed.loc["A11"]
    assert a11["PPFS"] == diff.BY_ID and a11["BHLX"] == diff.KIND_AREA
    assert a11["BHMJ"] == pytest.approx(0.5)


def test_changes(result):
    changed = result.changed.set_index("BSM_H")
    assert sorted(changed.index) == ["A11", "A4", "A5,B5", "A7", "A8", "B3"]
    assert "A1" not in changed.index  # unchanged parcels are not reported
    a4 = changed.loc["A4"]
    assert a4["BHLX"] == diff.KIND_CLASS and (a4["DLBM_Q"], a4["DLBM_H"]) == ("0103", "0101")
    split = changed.loc["A5,B5"]
    assert split["PPFS"] == diff.SPLIT and split["BSM_Q"] == "A5"
    assert split["BHLX"] == diff.KIND_ID and split["BHMJ"] == 0.0
    assert split.geometry.area == pytest.approx(10000.0)
    a7 = changed.loc["A7"]
    assert a7["BHLX"] == diff.KIND_AREA and a7["BHMJ"] == -5000.0
    assert (a7["TBDLMJ_Q"], a7["TBDLMJ_H"]) == (10000.0, 5000.0)
    assert a7["JSMJ_PM"] == pytest.approx(5000.0) and a7["ZJMJ_PM"] == 0.0
    a8 = changed.loc["A8"]
    assert a8["BHLX"] == diff.KIND_SOIL and (a8["TL_Q"], a8["TL_H"]) == ("黑土", "草甸土")
    assert changed["BHBH"].tolist() != [] and changed["BHBH"].is_unique


def test_county_table_accounts_for_every_cent(result):
    c = result.counties.set_index("XZQDM")
    row = c.loc["220122"]
    assert row["JQMJ"] == 90000.0 and row["BQMJ"] == 95000.5
    assert (row["JSGS"], row["JSMJ"]) == (2, 20000.0)
    assert (row["ZJGS"], row["ZJMJ"]) == (3, 30000.0)
    assert row["BGGS"] == 6 and row["BGJSMJ"] == 5000.0 and row["BGZJMJ"] == 0.5
    assert row["JBHMJ"] == 5000.5 and row["JBHMJ_GQ"] == pytest.approx(0.50005)
    total = c.loc["合计"]
    assert total["JQMJ"] == 90000.0 and total["BQMJ"] == 95000.5
    groups = result.soil_groups.set_index(["XZQDM", "TL"])
    assert groups.loc[("220122", "草甸土"), "BQMJ"] == 10000.0
    assert groups.loc[("220122", "草甸土"), "JQMJ"] == 0.0
    assert groups.loc[("合计", "合计"), "BHMJ"] == 5000.5


def test_protection_status_changes(years, tmp_path):
    def with_status(src: Path, dst: Path, inside: set[str]) -> Path:
        layers = pipeline.open_archive(src)
        pieces = layers["HTGDTB"].copy()
        pieces["JBNT_MJ"] = np.where(pieces["BSM"].isin(inside), pieces["TBDLMJ"], 0.0)
        layers["HTGDTB"] = pieces
        return arc.write_archive(dst, layers)

    old = with_status(years[0], tmp_path / "old.gpkg", set())
    new = with_status(years[1], tmp_path / "new.gpkg", {"A1"})
    result = pipeline.diff_archives(old, new)
    changed = result.changed.set_index("BSM_H")
    a1 = changed.loc["A1"]
    assert a1["BHLX"] == diff.KIND_STATUS
    assert (a1["BHZT_Q"], a1["BHZT_H"]) == ("无", "永久基本农田内")
    assert result.summary["status_fields"] == ["JBNT_MJ"]


def test_same_archive_has_no_change(years):
    result = pipeline.diff_archives(years[0], years[0])
    assert len(result.lost) == len(result.gained) == len(result.changed) == 0
    assert (result.counties["JBHMJ"] == 0).all()


def test_match_share_decides_location_matches(years):
    # at 30 % of the smaller parcel, A9 and B9 are the same land
    result = pipeline.diff_archives(*years, match_share=0.3)
    assert "A9" not in set(result.lost["BSM"]) and "B9" not in set(result.gained["BSM"])
    assert "B9" in set(result.changed["BSM_H"])
    with pytest.raises(UsageError, match="match share"):
        pipeline.diff_archives(*years, match_share=0)


def test_write_and_read_the_comparison(result, tmp_path):
    path = pipeline.write_diff(result, tmp_path / "d.gpkg")
    layers = diff.read_diff(path)
    assert {diff.LOST, diff.GAINED, diff.CHANGED, diff.COUNTIES, diff.SOIL_GROUPS} <= set(layers)
    assert layers[diff.LOST].geometry.area.sum() == pytest.approx(20000.0)
    assert sorted(layers[diff.GAINED]["BSM"]) == ["A10", "B6", "B9"]
    counties = layers[diff.COUNTIES]
    assert counties.loc[counties["XZQDM"] == "220122", "JBHMJ"].iloc[0] == 5000.5
    with sqlite3.connect(path) as con:
        titles = dict(
            con.execute(
                "SELECT column_name, title FROM gpkg_data_columns WHERE table_name = ?",
                (diff.CHANGED,),
            ).fetchall()
        )
    assert titles["BHMJ"] == "变化面积（m²）"
    with pytest.raises(UsageError, match="already exists"):
        pipeline.write_diff(result, path)


def test_cli_diff(years, tmp_path):
    runner = CliRunner()
    out = tmp_path / "d.gpkg"
    res = runner.invoke(cli, ["diff", *map(str, years), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "2024 → 2025" in res.output
    assert "lost 2 parcels (2.0000 公顷), gained 3 (3.0000 公顷), changed 6" in res.output
    line = next(x for x in res.output.splitlines() if "220122" in x)
    assert line.split()[-5:] == ["9.0000", "9.5000", "2.0000", "3.0000", "+0.5000"]
    assert out.exists()
    res = runner.invoke(cli, ["diff", *map(str, years), "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = runner.invoke(cli, ["diff", str(years[0]), str(tmp_path / "none.gpkg")])
    assert res.exit_code == 1 and "archive not found" in res.output
    res = runner.invoke(cli, ["diff", "--help"])
    assert "Examples:" in res.output


@pytest.mark.slow
@pytest.mark.skipif(
    not (ROOT / "configs" / "demo_2025.yaml").exists(),
    reason="configs/demo_2025.yaml (the demo's second year) is not in this checkout",
)
def test_diff_of_the_two_demo_years(tmp_path):
    archives = []
    for name in ("demo.yaml", "demo_2025.yaml"):
        cfg = pipeline.load_config(
            ROOT / "configs" / name, overrides={"output": {"path": str(tmp_path / f"{name}.gpkg")}}
        )
        archives.append(pipeline.run_survey(cfg).archive)
    result = pipeline.diff_archives(*archives)
    assert len(result.lost) > 0 and len(result.gained) > 0
    total = result.counties.iloc[-1]
    assert total["BQMJ"] - total["JQMJ"] == pytest.approx(total["JBHMJ"], abs=0.005)
    old = pipeline.county_totals(archives[0])
    new = pipeline.county_totals(archives[1])
    assert total["JQMJ"] == pytest.approx(old["TBDLMJ"].iloc[-1], abs=0.005)
    assert total["BQMJ"] == pytest.approx(new["TBDLMJ"].iloc[-1], abs=0.005)
    assert pd.Series(result.lost["YY"]).isin([diff.LEFT_CULTIVATED, diff.STILL_CULTIVATED]).all()
