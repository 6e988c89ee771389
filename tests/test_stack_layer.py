"""Layers written in parts by several processes into GeoPackages of their own and stacked into
the archive (``archive.stack_layer``, ``archive.Stacked``): the stack is the layer written whole,
its spatial index packed once, and what goes wrong names the archive."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import pytest
import shapely

from pipeline import archive as arc
from pipeline.errors import OutputError

CRS = "EPSG:4526"


def _squares(n: int, x0: float = 0.0) -> gpd.GeoDataFrame:
    """``n`` 10 m squares in a row from ``x0``, each with its number and area."""
    boxes = [shapely.box(x0 + 20 * i, 0, x0 + 20 * i + 10, 10) for i in range(n)]
    return gpd.GeoDataFrame(
        {"BH": [f"P{i:03d}" for i in range(n)], "MJ": [100.0] * n}, geometry=boxes, crs=CRS
    )


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"key": [f"k{i}" for i in range(n)], "value": range(n)})


def _rtree_ok(path: Path) -> dict[str, str]:
    con = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%rtree%'"
            )
        ]
        return {n: con.execute(f"SELECT rtreecheck('{n}')").fetchone()[0] for n in names}
    finally:
        con.close()


def _scattered(n: int, seed: int, x0: float = 0.0) -> gpd.GeoDataFrame:
    """``n`` rectangles strewn over 10 km from ``x0``, some across x = 0 and y = 0 (negative
    coordinates, whose rounding in the index goes the other way)."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(x0 - 500, x0 + 10_000, n), rng.uniform(-500, 10_000, n)
    return gpd.GeoDataFrame(
        {"BH": [f"S{seed}-{i:05d}" for i in range(n)], "MJ": rng.uniform(0, 1, n)},
        geometry=shapely.box(x, y, x + rng.uniform(0.1, 40, n), y + rng.uniform(0.1, 40, n)),
        crs=CRS,
    )


def test_a_stacked_layer_is_its_parts_written_as_one(tmp_path: Path) -> None:
    """Parts written by several processes, whole and as runs of rows, some empty, stacked in
    order under another name: the rows, their numbers and the GeoPackage's own records are
    those of the layer written whole, and the packed index (three levels: 4,000 rows, 51 to a
    node) is sound and finds what GDAL's own index finds."""
    parts = [_scattered(2500, 1), _scattered(0, 2), _scattered(1500, 3, x0=20_000)]
    kinds = _scattered(30, 4, x0=-5000)
    files = [arc.write_layers(tmp_path / f"g{i}.gpkg", {"P": f}) for i, f in enumerate(parts)]
    split = arc.write_layers(tmp_path / "split.gpkg", {"P": kinds})
    stack = [
        (files[0], "P", None, None),
        (split, "P", 21, 31),
        (files[1], "P", None, None),
        (files[2], "P", None, None),
        (split, "P", 1, 21),
    ]
    whole = pd.concat([parts[0], kinds[20:], parts[2], kinds[:20]], ignore_index=True)
    direct = arc.write_layers(tmp_path / "direct.gpkg", {"A": _squares(2), "L": whole})
    target = arc.write_layers(tmp_path / "target.gpkg", {"A": _squares(2)})

    arc.stack_layer(stack, target, "L")

    assert pyogrio.read_arrow(target, layer="L")[1].equals(pyogrio.read_arrow(direct, layer="L")[1])
    got = pyogrio.read_dataframe(target, layer="L", fid_as_index=True)
    assert got.index.tolist() == list(range(1, 4031))
    assert _rtree_ok(target) == {"rtree_A_geom": "ok", "rtree_L_geom": "ok"}
    ours, gdal = sqlite3.connect(target), sqlite3.connect(direct)
    try:
        assert ours.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for sql in (
            "SELECT table_name, data_type, identifier, min_x, min_y, max_x, max_y, srs_id "
            "FROM gpkg_contents",
            "SELECT * FROM gpkg_ogr_contents",
            "SELECT * FROM sqlite_sequence ORDER BY name",
            "SELECT * FROM gpkg_geometry_columns",
            "SELECT * FROM gpkg_extensions",
            "SELECT type, name, tbl_name FROM sqlite_master ORDER BY name",
            "SELECT id, minx, maxx, miny, maxy FROM rtree_L_geom ORDER BY id",
        ):
            assert ours.execute(sql).fetchall() == gdal.execute(sql).fetchall(), sql
        depth = ours.execute("SELECT data FROM rtree_L_geom_node WHERE nodeno = 1").fetchone()[0]
        assert depth[:2] == b"\x00\x02"
    finally:
        ours.close()
        gdal.close()
    for bbox in [(-600, -600, 200, 300), (1000, 2000, 4000, 2600), (20_100, 50, 23_000, 9000)]:
        a = pyogrio.read_dataframe(target, layer="L", bbox=bbox, fid_as_index=True)
        b = pyogrio.read_dataframe(direct, layer="L", bbox=bbox, fid_as_index=True)
        assert len(a) and sorted(a.index) == sorted(b.index), bbox
    # it stays a working layer: a row added by GDAL is indexed and found
    pyogrio.write_dataframe(
        _squares(1, x0=-3000).assign(BH="NEW"), target, layer="L", append=True,
        promote_to_multi=True,
    )  # fmt: skip
    assert pyogrio.read_dataframe(target, layer="L", bbox=(-2999, 1, -2991, 9))["BH"].tolist() == [
        "NEW"
    ]
    assert _rtree_ok(target)["rtree_L_geom"] == "ok"


def test_a_stacked_table_and_a_stack_of_empty_parts(tmp_path: Path) -> None:
    files = [
        arc.write_layers(tmp_path / f"g{i}.gpkg", {"T": _table(n), "E": _scattered(0, i)})
        for i, n in enumerate((3, 0, 2))
    ]
    target = arc.write_layers(tmp_path / "target.gpkg", {"A": _squares(2)})
    arc.stack_layer([(f, "T", None, None) for f in files], target, "T")
    arc.stack_layer([(f, "E", None, None) for f in files], target, "E")
    table = pyogrio.read_dataframe(target, layer="T", fid_as_index=True)
    assert table["key"].tolist() == ["k0", "k1", "k2", "k0", "k1"]
    assert table.index.tolist() == [1, 2, 3, 4, 5]
    assert pyogrio.read_info(target, layer="E")["features"] == 0
    assert _rtree_ok(target) == {"rtree_A_geom": "ok", "rtree_E_geom": "ok"}
    with pytest.raises(OutputError, match="cannot stack layer T: it is there already"):
        arc.stack_layer([(files[0], "T", None, None)], target, "T")


def test_parts_with_the_columns_in_another_order_are_copied_by_name(tmp_path: Path) -> None:
    """The first rows come whole from a part (copied record by record where its columns are
    the table's); a part whose columns stand in another order is copied column by column."""
    empty = arc.write_layers(tmp_path / "empty.gpkg", {"T": _table(0).astype({"key": "str"})})
    swapped = arc.write_layers(tmp_path / "swapped.gpkg", {"T": _table(3)[["value", "key"]]})
    same = arc.write_layers(tmp_path / "same.gpkg", {"T": _table(2)})
    target = arc.write_layers(tmp_path / "target.gpkg", {"A": _squares(2)})
    arc.stack_layer([(f, "T", None, None) for f in (empty, swapped, same)], target, "T")
    got = pyogrio.read_dataframe(target, layer="T", fid_as_index=True)
    assert list(got.columns) == ["key", "value"]
    assert got["key"].tolist() == ["k0", "k1", "k2", "k0", "k1"]
    assert got["value"].tolist() == [0, 1, 2, 0, 1] and got.index.tolist() == [1, 2, 3, 4, 5]


def test_the_packed_index_rounds_boxes_outward_as_sqlite_does() -> None:
    rng = np.random.default_rng(5)
    lows = rng.uniform(-1e6, 1e6, (2000, 2)) * rng.choice([1e-6, 1.0, 1e3], (2000, 1))
    boxes = np.column_stack(
        [lows[:, 0], lows[:, 0] + rng.uniform(0, 10, 2000), lows[:, 1], lows[:, 1] + 1e-3]
    )
    boxes[:3] = [[0.1, 0.1, -0.1, -0.1], [0.0, 0.0, 1.0, 1.0], [-3.3, 2.2, -1e-9, 1e-9]]
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE r USING rtree(id, minx, maxx, miny, maxy)")
    con.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?)", [(i, *b) for i, b in enumerate(boxes)])
    stored = np.array(con.execute("SELECT minx, maxx, miny, maxy FROM r ORDER BY id").fetchall())
    assert np.array_equal(arc._rtree_floats(boxes).astype(np.float64), stored)


def test_a_crs_number_meaning_another_crs_is_refused(tmp_path: Path) -> None:
    part = arc.write_layers(tmp_path / "part.gpkg", {"B": _squares(3)})
    target = arc.write_layers(tmp_path / "target.gpkg", {"A": _squares(2)})
    con = sqlite3.connect(target)
    con.execute("UPDATE gpkg_spatial_ref_sys SET definition = 'other' WHERE srs_id = 4526")
    con.commit()
    con.close()
    with pytest.raises(OutputError, match="CRS number 4526 means another CRS"):
        arc.stack_layer([(part, "B", None, None)], target, "B")
    assert "B" not in pyogrio.list_layers(target)[:, 0]


def test_stacked_layers_go_into_the_archive_in_their_turn_the_first_too(tmp_path: Path) -> None:
    """The archive's first layer stacked makes the GeoPackage itself (as GDAL makes one), and
    the archive reads back as one written whole, field titles and all."""
    parts = [_squares(3), _squares(2, x0=1000)]
    files = [arc.write_layers(tmp_path / f"g{i}.gpkg", {"B": f}) for i, f in enumerate(parts)]
    asked: list[str] = []

    def stack(name: str) -> list[arc.StackPart]:
        asked.append(name)
        return [(f, "B", None, None) for f in (files if name == "B" else [*files, extra])]

    whole = pd.concat(parts, ignore_index=True)
    layers = {"B": whole, "T": _table(2), "C": _squares(1)}
    direct = arc.write_archive(tmp_path / "direct.gpkg", layers)
    layers = {
        "B": arc.Stacked(whole.columns, lambda: stack("B")),
        "T": _table(2),
        "C": arc.Stacked(whole.columns, lambda: stack("C")),
    }
    extra = arc.write_layers(tmp_path / "c.gpkg", {"B": _squares(1)})
    out = arc.write_archive(tmp_path / "archive.gpkg", layers)
    assert asked == ["B", "C"]
    assert pyogrio.list_layers(out).tolist() == pyogrio.list_layers(direct).tolist()
    for name in ("B", "T"):
        got = pyogrio.read_dataframe(out, layer=name, fid_as_index=True)
        pd.testing.assert_frame_equal(
            got, pyogrio.read_dataframe(direct, layer=name, fid_as_index=True)
        )
    got = pyogrio.read_dataframe(out, layer="C")
    assert got["BH"].tolist() == ["P000", "P001", "P002", "P000", "P001", "P000"]
    assert _rtree_ok(out) == {"rtree_B_geom": "ok", "rtree_C_geom": "ok"}
    ours, gdal = sqlite3.connect(out), sqlite3.connect(direct)
    try:
        for sql in (
            "PRAGMA application_id",
            "PRAGMA user_version",
            "SELECT * FROM gpkg_spatial_ref_sys ORDER BY srs_id",
            "SELECT * FROM gpkg_data_columns WHERE table_name = 'B' ORDER BY column_name",
            "SELECT type, name FROM sqlite_master WHERE tbl_name LIKE 'gpkg%' ORDER BY name",
        ):
            assert ours.execute(sql).fetchall() == gdal.execute(sql).fetchall(), sql
        assert ours.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        ours.close()
        gdal.close()


def test_a_layer_that_cannot_be_stacked_is_named_with_the_archive_not_its_temp_file(
    tmp_path: Path,
) -> None:
    """What a surveyor sees when the disk fills while a layer's parts are stacked: the
    archive's own path and the layer (the temporary file is gone with the failed write)."""
    part = arc.write_layers(tmp_path / "part.gpkg", {"B": _squares(4)})
    with sqlite3.connect(part) as con:  # a stack that SQLite refuses, as a full disk does
        con.execute('DROP TABLE "rtree_B_geom_node"')
    out = tmp_path / "archive.gpkg"
    stacked = arc.Stacked(_squares(4).columns, lambda: [(part, "B", None, None)])
    with pytest.raises(OutputError) as raised:
        arc.write_archive(out, {"A": _squares(2), "B": stacked})
    assert str(raised.value).startswith(f"{out}: cannot write layer B (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.gpkg"]


def test_wkb_array_gives_multipolygons_as_shapely_writes_them():
    """A Polygon's WKB behind a one-part MultiPolygon header is the MultiPolygon's WKB; a
    MultiPolygon, a Polygon with Z, another type and a missing value go through shapely."""
    geoms = np.array(
        [
            shapely.box(0, 0, 1, 1),
            None,
            shapely.Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (1, 2), (2, 2)]]),
            shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)]),
            shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 2)]),
            shapely.Point(1, 2),
        ],
        dtype=object,
    )
    got = arc.wkb_array(geoms)
    assert got.type == pa.binary()
    expected = shapely.to_wkb(arc.as_multipolygons(geoms))
    assert got.to_pylist() == expected.tolist()
    back = shapely.from_wkb(got.to_numpy(zero_copy_only=False))
    assert shapely.get_type_id(back).tolist() == [6, -1, 6, 6, 6, 0]
    assert shapely.equals(back[[0, 2, 3]], geoms[[0, 2, 3]]).all()
    assert shapely.has_z(back[4])
    assert arc.wkb_array(np.array([], dtype=object)).to_pylist() == []


@pytest.mark.parametrize("multi", [True, False])
def test_wkb_array_writes_plain_polygons_from_their_coordinates(multi):
    """Polygons of one ring (written from their coordinates, not by shapely) give shapely's
    bytes, in their places among the others (holes, Z, empty, other types, missing)."""
    rng = np.random.default_rng(3)
    plain = shapely.buffer(shapely.points(rng.uniform(0, 1e6, (500, 2))), 20.0, quad_segs=3)
    plain[7] = shapely.Polygon([(0.5, 0.25), (1e7, 0.125), (1e7, 4e6), (0.5, 0.25)])  # a triangle
    others = [
        None,
        shapely.Polygon(),
        shapely.Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], [[(1, 1), (1, 2), (2, 2)]]),
        shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 2)]),
        shapely.MultiPolygon([shapely.box(0, 0, 1, 1)]),
        shapely.LineString([(0, 0), (1, 1)]),
    ]
    geoms = plain.astype(object)
    for k, geom in enumerate(others):
        geoms = np.insert(geoms, 60 * k + 3, geom)
    got = arc.wkb_array(geoms, multi=multi)
    assert got.type == pa.binary()
    expected = shapely.to_wkb(arc.as_multipolygons(geoms) if multi else geoms)
    assert got.to_pylist() == expected.tolist()
    assert got.null_count == 1
    # all plain: no reordering at all
    alone = arc.wkb_array(plain, multi=multi)
    assert (
        alone.to_pylist()
        == shapely.to_wkb(arc.as_multipolygons(plain) if multi else plain).tolist()
    )
