"""The archive's layers written side by side, one GeoPackage per group of layers, and combined
into one (``write_archive`` with an executor of several workers) give the same GeoPackage as the
layers written one after another: the same layers in the same order, rows, fids, spatial index,
system tables and field titles; and GDAL goes on using the combined file as its own."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from pyproj import CRS

from pipeline import archive as arc
from pipeline.errors import OutputError

CRS_GK = "EPSG:4530"


class Here:
    """An executor of ``workers`` workers that runs the tasks here, one after another, and
    notes the layers of each task given to the workers."""

    def __init__(self, workers: int) -> None:
        self.local_workers = workers
        self.groups: list[list[str]] = []

    def map(self, func, items, meanwhile=None):
        self.groups = [list(item[1]) for item in items]
        results = [func(*item) for item in items]
        meanwhile()
        return results


def _boxes(n: int, seed: int, size: float = 40.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 42_500_000 + rng.uniform(0, 5_000, n)
    y = 4_800_000 + rng.uniform(0, 5_000, n)
    return shapely.box(x, y, x + size, y + size)


def _layers() -> dict[str, pd.DataFrame | arc.GeoStream]:
    """Spatial layers (a GeoDataFrame with a two-part MultiPolygon, a stream), tables, one
    with no rows."""
    pieces = _boxes(600, 1)
    pieces[7] = shapely.multipolygons([pieces[7], shapely.box(0, 0, 1, 1)])
    outside = _boxes(250, 2, 25.0)
    counties = _boxes(3, 3, 2_000.0)
    stream = arc.GeoStream(
        pd.DataFrame({"DABH": [f"O{i:05d}" for i in range(len(outside))], "MJ": 625.0}),
        CRS.from_user_input(CRS_GK),
        lambda start, stop: arc.wkb_array(outside[start:stop]),
        chunk_rows=100,
    )
    return {
        arc.PIECES: gpd.GeoDataFrame(
            {
                "DABH": [f"HT{i:07d}" for i in range(len(pieces))],
                "XZQMC": "德惠市",
                "TBDLMJ": np.round(shapely.area(pieces), 2),
            },
            geometry=pieces,
            crs=CRS_GK,
        ),
        arc.BALANCE: pd.DataFrame({"BSM": [str(i) for i in range(900)], "TBMJ": 1.5}),
        arc.COUNTIES: gpd.GeoDataFrame(
            {"XZQDM": ["220183", "220122", "220106"]}, geometry=counties, crs=CRS_GK
        ),
        arc.OUTSIDE_FARMLAND: stream,
        arc.ILLEGAL: gpd.GeoDataFrame(
            {"DABH": pd.Series([], dtype=object)}, geometry=[], crs=CRS_GK
        ),
        arc.QA_LOG: pd.DataFrame(
            {"layer": ["DLTB"] * 40, "check": "geometry", "action": "repaired"}
        ),
        arc.METADATA: pd.DataFrame({"key": ["survey_year"], "value": ["2024"]}),
    }


def _query(path: Path, sql: str, *args) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _system_tables(path: Path) -> dict[str, list[tuple]]:
    return {
        "contents": _query(
            path,
            "SELECT table_name, data_type, identifier, description, min_x, min_y, max_x, max_y, "
            "srs_id FROM gpkg_contents ORDER BY rowid",
        ),
        "schema": sorted(_query(path, "SELECT type, name, tbl_name, sql FROM sqlite_master")),
        **{
            table: sorted(_query(path, f"SELECT * FROM {table}"), key=repr)
            for table in (
                "gpkg_geometry_columns",
                "gpkg_extensions",
                "gpkg_ogr_contents",
                "gpkg_spatial_ref_sys",
                "gpkg_data_columns",
                "sqlite_sequence",
            )
        },
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("archives")
    one = arc.write_archive(folder / "one.gpkg", _layers())
    out = {"one": one}
    for workers in (2, 3):
        here = Here(workers)
        out[f"side_by_side_{workers}"] = arc.write_archive(
            folder / f"side_by_side_{workers}.gpkg", _layers(), executor=here
        )
        # really written in several files: the largest group here, the others by "workers"
        assert len(here.groups) == workers - 1 and all(here.groups)
        assert arc.PIECES not in itertools.chain(*here.groups)
    return out


@pytest.mark.parametrize("workers", [2, 3])
def test_side_by_side_gives_the_same_layers_rows_and_fids(written, workers):
    one, many = written["one"], written[f"side_by_side_{workers}"]
    assert [tuple(x) for x in pyogrio.list_layers(many)] == [
        tuple(x) for x in pyogrio.list_layers(one)
    ]
    for name, _ in pyogrio.list_layers(one):
        a = pyogrio.read_dataframe(one, layer=name, fid_as_index=True)
        b = pyogrio.read_dataframe(many, layer=name, fid_as_index=True)
        if isinstance(a, gpd.GeoDataFrame):
            assert_geodataframe_equal(a, b)
            assert (
                shapely.to_wkb(a.geometry.values).tolist()
                == shapely.to_wkb(b.geometry.values).tolist()
            )
        else:
            pd.testing.assert_frame_equal(a, b)
    # only the archives are left: no part files, no SQLite side files
    assert sorted(p.name for p in one.parent.iterdir()) == [
        "one.gpkg",
        "side_by_side_2.gpkg",
        "side_by_side_3.gpkg",
    ]


@pytest.mark.parametrize("workers", [2, 3])
def test_side_by_side_gives_the_same_system_tables_and_index(written, workers):
    one, many = written["one"], written[f"side_by_side_{workers}"]
    assert _system_tables(many) == _system_tables(one)
    assert _query(many, "PRAGMA integrity_check") == [("ok",)]
    for name in (arc.PIECES, arc.COUNTIES, arc.OUTSIDE_FARMLAND, arc.ILLEGAL):
        rtree = f"rtree_{name}_geom"
        assert _query(many, f"SELECT rtreecheck('{rtree}')") == [("ok",)]
        entries = f'SELECT * FROM "{rtree}" ORDER BY id'
        assert _query(many, entries) == _query(one, entries)
        assert _query(
            many, "SELECT feature_count FROM gpkg_ogr_contents WHERE table_name = ?", name
        ) == [(pyogrio.read_info(one, layer=name)["features"],)]
    # GDAL's spatial filter goes through the copied index
    box = (42_501_000, 4_801_000, 42_503_000, 4_803_000)
    for name in (arc.PIECES, arc.OUTSIDE_FARMLAND):
        a = pyogrio.read_dataframe(one, layer=name, bbox=box, fid_as_index=True)
        b = pyogrio.read_dataframe(many, layer=name, bbox=box, fid_as_index=True)
        assert 0 < len(b) < pyogrio.read_info(many, layer=name)["features"]
        assert b.index.tolist() == a.index.tolist()


def test_gdal_goes_on_writing_a_combined_archive(written, tmp_path):
    """The copied triggers keep the index and feature count up to date when GDAL adds rows."""
    path = tmp_path / "combined.gpkg"
    path.write_bytes(written["side_by_side_2"].read_bytes())
    name = arc.OUTSIDE_FARMLAND
    before = pyogrio.read_info(path, layer=name)["features"]
    far = shapely.box(42_600_000, 4_900_000, 42_600_010, 4_900_010)
    extra = gpd.GeoDataFrame(
        {"DABH": ["O99999"], "MJ": [100.0]},
        geometry=[shapely.multipolygons([far])],
        crs=CRS_GK,
    )
    pyogrio.write_dataframe(extra, path, layer=name, append=True, driver="GPKG")
    assert pyogrio.read_info(path, layer=name)["features"] == before + 1
    found = pyogrio.read_dataframe(
        path, layer=name, bbox=(42_599_990, 4_899_990, 42_600_020, 4_900_020)
    )
    assert found["DABH"].tolist() == ["O99999"]
    assert _query(path, f"SELECT rtreecheck('rtree_{name}_geom')") == [("ok",)]


def test_layer_groups_share_the_work_largest_first():
    rows = lambda n: pd.DataFrame({"x": range(n)})  # noqa: E731
    spatial = gpd.GeoDataFrame({"x": range(10)}, geometry=_boxes(10, 4), crs=CRS_GK)
    layers = {"t30": rows(30), "s10": spatial, "t25": rows(25), "t5": rows(5), "empty": rows(0)}
    # a spatial row counts four: s10 weighs 40, the heaviest
    assert arc.layer_groups(layers, 2) == [["t30", "t25"], ["s10", "t5", "empty"]]
    assert arc.layer_groups(layers, 3) == [["s10"], ["t30", "empty"], ["t25", "t5"]]
    assert arc.layer_groups(layers, 1) == [list(layers)]
    # more groups than layers: no empty groups
    assert arc.layer_groups({"a": rows(3), "b": rows(2)}, 4) == [["a"], ["b"]]
    assert arc.layer_groups({"a": rows(3)}, 4) == [["a"]]


def test_a_failing_group_leaves_nothing_behind(tmp_path, monkeypatch):
    previous = arc.write_archive(tmp_path / "archive.gpkg", _layers())
    before = previous.read_bytes()
    real = arc._write_layer

    def failing(path, name, frame, *, append):
        if name == arc.OUTSIDE_FARMLAND:
            raise OSError(28, "No space left on device")
        real(path, name, frame, append=append)

    monkeypatch.setattr(arc, "_write_layer", failing)
    with pytest.raises(OutputError, match="No space left on device"):
        arc.write_archive(previous, _layers(), overwrite=True, executor=Here(3))
    assert previous.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["archive.gpkg"]


def test_parts_that_number_two_crss_alike_are_refused(tmp_path):
    """GDAL numbers a CRS with no EPSG code 100000 in each file: two such parts cannot be
    combined without renumbering, and the base is left as it was."""
    files = []
    for k, lon in enumerate((126, 129)):
        crs = CRS.from_proj4(f"+proj=tmerc +lon_0={lon} +k=1 +x_0=500000 +ellps=GRS80 +units=m")
        frame = gpd.GeoDataFrame({"v": [k]}, geometry=[shapely.box(0, 0, 1, 1)], crs=crs)
        files.append(tmp_path / f"part{k}.gpkg")
        arc.write_layers(files[-1], {f"L{k}": frame})
    before = files[0].read_bytes()
    with pytest.raises(OSError, match="srs_id 100000"):
        arc.combine_geopackages(files[0], files[1:], ["L0", "L1"])
    assert files[0].read_bytes() == before


@pytest.mark.skipif(
    sys.platform == "win32", reason="the stale-temp cleanup keeps every file on Windows"
)
def test_stale_part_files_of_a_dead_run_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [
        tmp_path / f".archive.{dead.pid}.tmp2.gpkg",
        tmp_path / f".archive.{dead.pid}.tmp2.gpkg-journal",
    ]
    for f in left:
        f.write_bytes(b"half written")
    arc.write_archive(tmp_path / "archive.gpkg", {arc.METADATA: _layers()[arc.METADATA]})
    assert [p.name for p in tmp_path.iterdir()] == ["archive.gpkg"]
