"""Invariants on generated survey data: conservation per parcel, reconciliation per county,
agreement with geopandas.overlay, determinism, and the demo job end to end."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import yaml
from click.testing import CliRunner

import pipeline
from cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    pipeline.make_demo_data(folder, parcels=1500, seed=11)
    return folder


def _job(folder: Path, out: Path, **extra) -> pipeline.SurveyConfig:
    data = {
        "year": 2024,
        "inputs": {
            "parcels": {"path": str(folder / "parcels.gpkg"), "layer": "DLTB"},
            "soil": {
                "path": str(folder / "soil.gpkg"),
                "layer": "TRTB",
                "fields": {"subtype": "YL", "id": "TRBM"},
            },
            "counties": {"path": str(folder / "counties.gpkg"), "layer": "XZQ"},
        },
        "min_piece_area": 0.0,
        "output": {"path": str(out)},
        **extra,
    }
    return pipeline.config_from_dict(data)


@pytest.fixture(scope="module")
def surveyed(generated, tmp_path_factory):
    out = tmp_path_factory.mktemp("archive") / "a.gpkg"
    outcome = pipeline.run_survey(_job(generated, out))
    return outcome, pipeline.open_archive(out)


def test_conservation_every_parcel(surveyed):
    outcome, layers = surveyed
    bal = layers["HTGD_TBPH"]
    parts = bal[["HT_MJ", "FHT_MJ", "WDT_MJ", "QYW_MJ"]].sum(axis=1)
    np.testing.assert_allclose(parts, bal["MJ"], rtol=1e-6)
    assert bal["BALANCED"].all()
    assert outcome.conservation["passed"]
    # the official figures add up to the cent
    for col in ("TBMJ", "TBDLMJ"):
        cents = sum(np.round(bal[f"{p}_{col}"] * 100) for p in ("HT", "FHT", "WDT", "QYW"))
        assert (cents == np.round(bal[col] * 100)).all()


def test_reconciliation_with_input(generated, surveyed):
    _, layers = surveyed
    raw = pyogrio.read_dataframe(generated / "parcels.gpkg", layer="DLTB", read_geometry=False)
    raw = raw[raw["DLBM"].isin(["0101", "0102", "0103"]) & raw["TBMJ"].notna()]
    bal = layers["HTGD_TBPH"].set_index("BSM")
    given = raw.set_index("BSM")["TBMJ"]
    assert bal.loc[given.index, "TBMJ"].to_numpy() == pytest.approx(given.to_numpy(), abs=0)
    per_county = given.groupby(raw.set_index("BSM")["ZLDWDM"].str[:6]).sum()
    archive = bal.loc[given.index].groupby("XZQDM")["TBMJ"].sum()
    pd.testing.assert_series_equal(
        archive.sort_index(), per_county.sort_index(), check_names=False, rtol=1e-12
    )
    summary = layers["HTGD_XZQHZ"]
    pieces = layers["HTGDTB"]
    totals = summary[(summary["TL"] == "合计") & (summary["XZQDM"] != "合计")].set_index("XZQDM")
    by_county = pieces.groupby("XZQDM")["TBDLMJ"].sum()
    np.testing.assert_allclose(totals.loc[by_county.index, "TBDLMJ"], by_county, atol=0.005)


def test_agrees_with_geopandas_overlay(generated, surveyed):
    _, layers = surveyed
    parcels = gpd.read_file(generated / "parcels.gpkg", layer="DLTB")
    parcels = parcels[parcels["DLBM"].isin(["0101", "0102", "0103"])]
    soil = gpd.read_file(generated / "soil.gpkg", layer="TRTB")
    table = set(_job(generated, Path("x.gpkg")).black_soil_types)
    ref = gpd.overlay(
        parcels[["BSM", "geometry"]],
        soil[["TL", "YL", "geometry"]],
        how="intersection",
        keep_geom_type=True,
    )
    ref = ref[ref["TL"].isin(table) | ref["YL"].isin(table)]
    expected = ref.assign(a=ref.area).groupby("BSM")["a"].sum()
    got = layers["HTGDTB"].groupby("BSM")["MJ"].sum()
    both = pd.concat([got.rename("got"), expected.rename("ref")], axis=1).fillna(0.0)
    both = both[(both["got"] > 1e-6) | (both["ref"] > 1e-6)]
    np.testing.assert_allclose(both["got"], both["ref"], rtol=1e-7, atol=1e-3)


def test_same_job_twice_gives_identical_rows(generated, tmp_path):
    a = pipeline.run_survey(_job(generated, tmp_path / "a.gpkg", overlay={"threads": 1}))
    b = pipeline.run_survey(
        _job(generated, tmp_path / "b.gpkg", overlay={"threads": 2, "max_vertices": 64})
    )
    la, lb = pipeline.open_archive(a.archive), pipeline.open_archive(b.archive)
    for name in ("HTGDTB", "HTGD_TBPH", "HTGD_XZQHZ", "HTGD_ZJJL"):
        fa, fb = la[name], lb[name]
        cols = [c for c in fa.columns if c != "geometry"]
        exact = [c for c in cols if c not in ("MJ", "RESIDUAL", "REL_ERR")] + []
        pd.testing.assert_frame_equal(fa[exact], fb[exact])
        for c in set(cols) - set(exact):
            # another subdivision (max_vertices) cuts along other lines: float noise in the
            # planar areas, which the archive rounds to 1e-4 m² (one unit apart at most)
            np.testing.assert_allclose(fa[c], fb[c], rtol=1e-9, atol=1.01e-4)


def test_demo_job_end_to_end(tmp_path):
    out = tmp_path / "demo.gpkg"
    result = CliRunner().invoke(cli, ["survey", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "conservation: PASSED" in result.output
    layers = pipeline.open_archive(out)
    assert len(layers["HTGDTB"]) > 1000
    assert set(layers["HTGDTB"]["XZQDM"]) == {"220122", "220183", "220113"}
    assert set(layers["HTGDTB"]["TL"]) <= set(
        yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8"))[
            "black_soil_types"
        ]
    )
    meta = pipeline.read_metadata(out)
    assert meta["crs"] == "EPSG:4530"
    assert meta["counts"]["parcels_outside_region"] > 0
    qa = layers["HTGD_ZJJL"]
    assert (qa["check"] == "field area").any()  # parcels without TBMJ got their area computed
    assert (qa["problem"] == "gap in the soil map").any()


def test_demo_data_command(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["demo-data", str(tmp_path / "d"), "--parcels", "300", "--counties", "220122"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "parcels.gpkg").exists()
    bad = CliRunner().invoke(cli, ["demo-data", str(tmp_path / "e"), "--counties", "999999"])
    assert bad.exit_code == 1
    assert "999999" in bad.output
