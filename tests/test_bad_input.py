"""Bad input, case by case, through the command line.

Each case either stops with a one-line message naming the file, layer, field, key or feature
(exit 1 for data, 2 for usage/config; no traceback), or completes with the problem repaired and
recorded in the QA log while the area invariants still hold.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner

import pipeline
from cli import cli
from conftest import CRS, X0, Y0, Job, box, parcels_frame, soil_frame


def _parcels(**override) -> gpd.GeoDataFrame:
    rows = [
        {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0},
        {"geometry": box(100, 0, 200, 100), "TBMJ": 10000.0, "DLBM": "0101", "DLMC": "水田"},
    ]
    return parcels_frame(rows, **override)


def _soil() -> gpd.GeoDataFrame:
    return soil_frame([("黑土", box(-100, -100, 150, 200)), ("风沙土", box(150, -100, 400, 200))])


def _standard(job: Job, parcels: gpd.GeoDataFrame | None = None, soil=None) -> None:
    job.layer("parcels", _parcels() if parcels is None else parcels, "DLTB")
    job.layer("soil", _soil() if soil is None else soil, "TRTB")


def _set_wkb(path, layer: str, fid: int, wkb: bytes, srs: int = 4530) -> None:
    """Overwrite one feature's geometry with raw WKB (GeoPackage blob header + WKB)."""
    blob = b"GP" + bytes([0, 1]) + struct.pack("<i", srs) + wkb
    con = sqlite3.connect(path)
    con.execute(f"UPDATE {layer} SET geom = ? WHERE fid = ?", (blob, fid))
    con.commit()
    con.close()


def _ring_wkb(points, type_code: int = 3) -> bytes:
    dims = len(points[0])
    body = b"".join(struct.pack("<" + "d" * dims, *p) for p in points)
    return struct.pack("<BII", 1, type_code, 1) + struct.pack("<I", len(points)) + body


def _raw_gpkg(job: Job, rows: list[dict]) -> None:
    """Parcels written without a spatial index so raw geometry blobs can be patched in."""
    path = job.folder / "parcels.gpkg"
    pyogrio.write_dataframe(
        parcels_frame(rows), path, layer="DLTB", layer_options={"SPATIAL_INDEX": "NO"}
    )
    job.config["inputs"]["parcels"] = {"path": path.name, "layer": "DLTB"}


# --- the cases --------------------------------------------------------------------------------


def missing_file(job):
    _standard(job)
    job.config["inputs"]["soil"]["path"] = "nowhere.gpkg"


def corrupt_file(job):
    _standard(job)
    (job.folder / "broken.gpkg").write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    job.config["inputs"]["soil"] = {"path": "broken.gpkg"}


def wrong_layer(job):
    _standard(job)
    job.config["inputs"]["parcels"]["layer"] = "DLTB_2023"


def empty_layer(job):
    _standard(job, parcels=_parcels().iloc[:0])


def missing_field(job):
    _standard(job)
    job.config["inputs"]["soil"]["fields"] = {"soil_type": "TLMC"}


def missing_default_field(job):
    frame = _parcels().drop(columns="DLBM")
    _standard(job, parcels=frame)


def no_crs(job):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        _standard(job, parcels=_parcels().set_crs(None, allow_override=True))


def swapped_axes(job):
    frame = _parcels()
    frame["geometry"] = shapely.transform(frame.geometry.to_numpy(), lambda xy: xy[:, ::-1])
    _standard(job, parcels=frame)


def degrees_in_projected_layer(job):
    frame = _parcels().to_crs("EPSG:4490").set_crs(CRS, allow_override=True)
    _standard(job, parcels=frame)


def metres_in_geographic_layer(job):
    _standard(job, soil=_soil().set_crs("EPSG:4490", allow_override=True))


def no_cultivated(job):
    _standard(job, parcels=parcels_frame([{"geometry": box(0, 0, 10, 10), "DLBM": "0702"}]))


def only_null_geometry(job):
    _raw_gpkg(job, [{"geometry": box(0, 0, 10, 10)}])
    con = sqlite3.connect(job.folder / "parcels.gpkg")
    con.execute("UPDATE DLTB SET geom = NULL")
    con.commit()
    con.close()
    job.layer("soil", _soil(), "TRTB")


def bad_where(job):
    _standard(job)
    job.config["inputs"]["parcels"]["where"] = "NO_SUCH_FIELD = 1"


def unknown_key(job):
    _standard(job)
    job.config["colour"] = "red"


def wrong_type(job):
    _standard(job)
    job.config["year"] = "2024年"


def geographic_working_crs(job):
    _standard(job)
    job.config["crs"] = "EPSG:4490"


def unknown_field_key(job):
    _standard(job)
    job.config["inputs"]["parcels"]["fields"] = {"bsm": "BSM"}


def text_deduction_rate(job):
    frame = _parcels()
    frame["KCXS"] = ["0.05", ""]
    _standard(job, parcels=frame)


def integer_landuse_code(job):
    frame = _parcels()
    frame["DLBM"] = [103, 101]
    _standard(job, parcels=frame)


def bow_tie(job):
    bow = shapely.Polygon([(X0, Y0), (X0 + 100, Y0 + 100), (X0 + 100, Y0), (X0, Y0 + 100)])
    _standard(job, parcels=parcels_frame([{"geometry": bow, "TBMJ": 5000.0}]))


def ring_not_closed(job):
    _raw_gpkg(job, [{"geometry": box(0, 0, 100, 100)}, {"geometry": box(100, 0, 200, 100)}])
    ring = [(X0 + 100, Y0), (X0 + 200, Y0), (X0 + 200, Y0 + 100), (X0 + 100, Y0 + 100)]
    _set_wkb(job.folder / "parcels.gpkg", "DLTB", 2, _ring_wkb(ring))
    job.layer("soil", _soil(), "TRTB")


def too_few_points(job):
    _raw_gpkg(job, [{"geometry": box(0, 0, 100, 100)}, {"geometry": box(100, 0, 200, 100)}])
    _set_wkb(job.folder / "parcels.gpkg", "DLTB", 2, _ring_wkb([(X0, Y0), (X0 + 1, Y0)]))
    job.layer("soil", _soil(), "TRTB")


def empty_and_null_geometry(job):
    _raw_gpkg(
        job,
        [
            {"geometry": box(0, 0, 100, 100)},
            {"geometry": box(100, 0, 200, 100)},
            {"geometry": box(200, 0, 300, 100)},
        ],
    )
    con = sqlite3.connect(job.folder / "parcels.gpkg")
    con.execute("UPDATE DLTB SET geom = NULL WHERE fid = 2")
    con.commit()
    con.close()
    _set_wkb(job.folder / "parcels.gpkg", "DLTB", 3, struct.pack("<BII", 1, 3, 0))
    job.layer("soil", _soil(), "TRTB")


def three_d(job):
    frame = _parcels()
    frame["geometry"] = shapely.force_3d(frame.geometry.to_numpy(), 180.0)
    _standard(job, parcels=frame)


def measured(job):
    _raw_gpkg(job, [{"geometry": box(0, 0, 100, 100)}])
    ring = [(X0, Y0, 1), (X0 + 100, Y0, 2), (X0 + 100, Y0 + 100, 3), (X0, Y0 + 100, 4), (X0, Y0, 1)]
    _set_wkb(job.folder / "parcels.gpkg", "DLTB", 1, _ring_wkb(ring, 2003))
    job.layer("soil", _soil(), "TRTB")


def multipolygon(job):
    multi = shapely.union(box(0, 0, 50, 100), box(300, 0, 350, 100))
    _standard(job, parcels=parcels_frame([{"geometry": multi}]))


def points_and_lines(job):
    rows = [
        {"geometry": box(0, 0, 100, 100)},
        {"geometry": shapely.Point(X0, Y0)},
        {"geometry": shapely.LineString([(X0, Y0), (X0 + 50, Y0 + 50)])},
    ]
    _standard(job, parcels=parcels_frame(rows))


def duplicate_ids(job):
    frame = _parcels()
    frame["BSM"] = "220122000000000007"
    _standard(job, parcels=frame)


def overlapping_parcels(job):
    rows = [{"geometry": box(0, 0, 100, 100)}, {"geometry": box(50, 0, 150, 100)}]
    _standard(job, parcels=parcels_frame(rows))


def overlapping_soil(job):
    _standard(
        job,
        soil=soil_frame([("黑土", box(-100, -100, 120, 200)), ("草甸土", box(80, -100, 400, 200))]),
    )


def soil_with_gaps(job):
    _standard(
        job,
        soil=soil_frame([("黑土", box(-100, -100, 50, 200)), ("风沙土", box(120, -100, 400, 200))]),
    )


def soil_not_covering(job):
    _standard(job, soil=soil_frame([("黑土", box(5000, 5000, 6000, 6000))]))


def unknown_soil_names(job):
    _standard(
        job,
        soil=soil_frame(
            [("黑土", box(-100, -100, 150, 200)), ("未知土壤XYZ", box(150, -100, 400, 200))]
        ),
    )


def gbk_without_cpg(job):
    job.layer("parcels", _parcels(), "DLTB")
    path = job.folder / "soil.shp"
    pyogrio.write_dataframe(_soil(), path, encoding="GBK")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    job.config["inputs"]["soil"] = {"path": "soil.shp"}


def huge_polygon(job):
    circle = shapely.Point(X0 + 100, Y0 + 50).buffer(3000, quad_segs=30_000)  # 120k vertices
    _standard(job, soil=soil_frame([("黑土", circle)]))


def mismatched_crs(job):
    _standard(job, soil=_soil().to_crs("EPSG:4490"))


def geographic_input(job):
    _standard(job, parcels=_parcels().to_crs("EPSG:4326"))


def relative_paths_from_config_folder(job):
    _standard(job)
    sub = job.folder / "data"
    sub.mkdir()
    for name in ("parcels.gpkg", "soil.gpkg"):
        (job.folder / name).rename(sub / name)
        key = name.split(".")[0]
        job.config["inputs"][key]["path"] = f"data/{name}"


@dataclass(frozen=True)
class Case:
    build: Callable[[Job], None]
    exit_code: int
    message: str = ""  # expected in the one-line error, or in the QA log's problem column
    args: tuple[str, ...] = ()


CASES = {
    # stops: data problems, exit 1
    "missing file": Case(missing_file, 1, "nowhere.gpkg: file not found"),
    "corrupt file": Case(corrupt_file, 1, "broken.gpkg: cannot open"),
    "wrong layer name": Case(wrong_layer, 1, "layer 'DLTB_2023' not found"),
    "empty layer": Case(empty_layer, 1, "(layer DLTB): no features"),
    "missing mapped field": Case(missing_field, 1, "field 'TLMC' (soil soil_type) not found"),
    "missing default field": Case(missing_default_field, 1, "field 'DLBM' (parcels landuse)"),
    "no CRS": Case(no_crs, 1, "has no coordinate reference system"),
    "swapped axes": Case(swapped_axes, 1, "cannot belong to the layer's CRS EPSG:4530"),
    "degrees in a projected layer": Case(degrees_in_projected_layer, 1, "cannot belong"),
    "metres in a geographic layer": Case(metres_in_geographic_layer, 1, "cannot belong"),
    "no cultivated parcels": Case(no_cultivated, 1, "no cultivated parcels"),
    "only null geometries": Case(only_null_geometry, 1, "no usable geometry"),
    "bad where filter": Case(bad_where, 1, "cannot read"),
    # stops: usage and config problems, exit 2
    "unknown config key": Case(unknown_key, 2, "colour: unknown key"),
    "wrong config type": Case(wrong_type, 2, "year: expected an integer"),
    "geographic working CRS": Case(geographic_working_crs, 2, "is not a projected CRS"),
    "unknown field name": Case(unknown_field_key, 2, "inputs.parcels.fields.bsm"),
    # repaired or handled, recorded in the QA log
    "KCXS as text": Case(text_deduction_rate, 0, "number stored as text"),
    "DLBM as integer": Case(integer_landuse_code, 0, "numeric code field"),
    "self-intersecting bow tie": Case(bow_tie, 0, "invalid geometry: Self-intersection"),
    "ring not closed": Case(ring_not_closed, 0, "ring not closed or too few points"),
    "ring with too few points": Case(too_few_points, 0, "ring not closed or too few points"),
    "empty and null geometries": Case(empty_and_null_geometry, 0, "null geometry"),
    "3D geometries": Case(three_d, 0, "3D/measured coordinates"),
    "measured geometries": Case(measured, 0, "3D/measured coordinates"),
    "multipolygons": Case(multipolygon, 0),
    "points and lines in a polygon layer": Case(points_and_lines, 0, "Point feature"),
    "duplicate parcel ids": Case(duplicate_ids, 0, "duplicate parcel id (BSM)"),
    "overlapping parcels": Case(overlapping_parcels, 0, "overlaps parcel"),
    "overlapping soil polygons": Case(overlapping_soil, 0, "overlaps an earlier soil polygon"),
    "soil map with gaps": Case(soil_with_gaps, 0, "gap in the soil map"),
    "soil map not covering the parcels": Case(soil_not_covering, 0, "does not cover the parcels"),
    "unknown soil-type names": Case(unknown_soil_names, 0, "is not a black-soil group"),
    "GBK Shapefile without .cpg": Case(gbk_without_cpg, 0),
    "huge single polygon": Case(huge_polygon, 0),
    "mismatched CRSs": Case(mismatched_crs, 0),
    "geographic input layer": Case(geographic_input, 0),
    "relative paths": Case(relative_paths_from_config_folder, 0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, job, monkeypatch, tmp_path_factory):
    case = CASES[name]
    case.build(job)
    config = job.write()
    # run from elsewhere: relative paths must resolve from the config's folder
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    result = CliRunner().invoke(cli, ["-q", "survey", str(config), *case.args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.exit_code, result.output
    if case.exit_code:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, result.output
        assert lines[0].startswith("Error: ")
        assert case.message in lines[0], lines[0]
        assert "Traceback" not in result.output
        assert not job.archive.exists()
        return
    layers = pipeline.open_archive(job.archive)
    meta = pipeline.read_metadata(job.archive)
    assert meta["conservation"]["passed"]
    assert meta["reconciliation"]["passed"]
    bal = layers["HTGD_TBPH"]
    parts = bal[["HT_MJ", "FHT_MJ", "WDT_MJ", "QYW_MJ"]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(parts, bal["MJ"].to_numpy(), rtol=1e-6)
    if case.message:
        assert layers["HTGD_ZJJL"]["problem"].str.contains(case.message, regex=False).any()


def test_case_count():
    assert len(CASES) >= 30


def test_existing_output_needs_overwrite(job):
    _standard(job)
    config = job.write()
    assert CliRunner().invoke(cli, ["-q", "survey", str(config)]).exit_code == 0
    result = CliRunner().invoke(cli, ["-q", "survey", str(config)])
    assert result.exit_code == 2
    assert "already exists; use --overwrite" in result.output


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(job):
    _standard(job)
    out = job.folder / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = CliRunner().invoke(
            cli, ["-q", "survey", str(job.write()), "--out", str(out / "a.gpkg")]
        )
    finally:
        out.chmod(0o755)
    assert result.exit_code == 1
    assert "not writable" in result.output
