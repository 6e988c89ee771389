"""Repairable input problems: repaired, recorded in the QA log, and the areas still add up."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely

import pipeline
from conftest import X0, Y0, box, parcels_frame, run, soil_frame
from pipeline import archive


def _soil():
    return soil_frame([("黑土", box(-500, -500, 500, 500))])


def _qa(layers, **match):
    qa = layers["HTGD_ZJJL"]
    sel = qa
    for key, value in match.items():
        sel = sel[sel[key] == value]
    return sel


def test_bow_tie_parcel_is_made_valid(job):
    # a bow tie: two 50 m x 50 m triangles meeting at (50, 50) → 2 x 1250 m²
    bow = shapely.Polygon(
        [(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 100, Y0), (X0, Y0 + 100), (X0, Y0)]
    )
    job.layer("parcels", parcels_frame([{"geometry": bow, "TBMJ": 5000.0}]), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    outcome, layers = run(job)
    assert layers["HTGDTB"]["MJ"].sum() == pytest.approx(5000.0)
    assert layers["HTGDTB"]["TBMJ"].sum() == 5000.0
    assert len(_qa(layers, action="make_valid")) == 1
    assert outcome.conservation["passed"]


def test_null_empty_and_point_features_are_rejected_and_logged(job):
    frame = parcels_frame(
        [
            {"geometry": box(0, 0, 100, 100)},
            {"geometry": box(100, 0, 100, 0)},  # degenerate: no area
            {"geometry": shapely.Point(X0, Y0)},
            {"geometry": shapely.LineString([(X0, Y0), (X0 + 10, Y0)])},
        ]
    )
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "BSM": "NULLGEOM", "geometry": None}
    job.layer("parcels", gpd.GeoDataFrame(frame, geometry="geometry", crs=frame.crs), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert len(layers["HTGD_TBPH"]) == 1
    rejected = _qa(layers, layer="parcels", action="rejected")
    assert len(rejected) == 4
    assert set(rejected["problem"]) >= {"null geometry", "Point feature in a polygon layer"}


def test_duplicate_parcel_ids_are_renamed(job):
    rows = [
        {"geometry": box(0, 0, 100, 100), "BSM": "220122000000000001"},
        {"geometry": box(100, 0, 200, 100), "BSM": "220122000000000001"},
    ]
    job.layer("parcels", parcels_frame(rows), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert sorted(layers["HTGDTB"]["BSM"]) == ["220122000000000001", "220122000000000001-2"]
    assert len(_qa(layers, problem="duplicate parcel id (BSM)")) == 1


def test_a_renamed_id_never_takes_another_parcels_id():
    """A, A, A-2: the second A cannot become A-2, which a parcel has; it becomes A-3."""
    from pipeline.ids import fill_missing, later_duplicates

    ids, missing = fill_missing(pd.Series(["A", " A", "A-2", None, "B", "A", "", "FID3"]), range(8))
    assert missing.tolist() == [False, False, False, True, False, False, True, False]
    assert ids.tolist() == ["A", "A", "A-2", "FID3", "B", "A", "FID6", "FID3"]
    new = later_duplicates(ids)
    assert new.to_dict() == {1: "A-3", 5: "A-4", 7: "FID3-2"}
    assert later_duplicates(pd.Series(["A", "B"])).empty


def test_3d_geometries_are_flattened(job):
    geom = shapely.force_3d(box(0, 0, 100, 100), 150.0)
    job.layer("parcels", parcels_frame([{"geometry": geom}]), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert not shapely.has_z(layers["HTGDTB"].geometry.to_numpy()).any()
    assert len(_qa(layers, action="Z/M dropped")) == 1


def test_invalid_soil_polygon_is_repaired(job):
    bow = shapely.Polygon(
        [(X0 - 500, Y0 - 500), (X0 + 500, Y0 + 500), (X0 + 500, Y0 - 500), (X0 - 500, Y0 + 500)]
    )
    # the parcel straddles the waist of the bow tie: inside it, |y| <= |x|, half its area
    job.layer("parcels", parcels_frame([{"geometry": box(-50, -50, 50, 50)}]), "DLTB")
    job.layer("soil", soil_frame([("黑土", bow)]), "TRTB")
    outcome, layers = run(job)
    assert layers["HTGDTB"]["MJ"].sum() == pytest.approx(5000.0)
    assert layers["HTGD_TBPH"].iloc[0]["WDT_MJ"] == pytest.approx(5000.0)
    assert outcome.conservation["passed"]
    assert len(_qa(layers, layer="soil", action="make_valid")) == 1


def test_failed_write_leaves_previous_archive_and_no_temp_file(job, monkeypatch):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    run(job)
    before = job.archive.read_bytes()
    calls = {"n": 0}
    real = archive._write_layer

    def failing(path, name, frame, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(path, name, frame, **kwargs)

    monkeypatch.setattr(archive, "_write_layer", failing)
    with pytest.raises(pipeline.OutputError, match="No space left on device"):
        run(job)
    assert job.archive.read_bytes() == before
    assert sorted(p.name for p in job.archive.parent.iterdir()) == ["archive.gpkg"]


def test_archive_has_chinese_titles(job):
    import sqlite3

    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    run(job)
    con = sqlite3.connect(job.archive)
    titles = dict(
        con.execute(
            "SELECT column_name, title FROM gpkg_data_columns WHERE table_name = 'HTGDTB'"
        ).fetchall()
    )
    con.close()
    assert titles["TBDLMJ"] == "图斑地类面积（m²）"
    assert titles["DABH"] == "档案编号"
