"""Layers written by a second process into a GeoPackage of their own and copied into the
archive (``archive.copy_layer``, ``runner._side_writer``): the copy is the layer as written,
spatial index included, and what goes wrong in the second process reaches the first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from pipeline import archive as arc
from pipeline.errors import InputError, OutputError

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


def test_a_copied_layer_is_the_layer_as_written(tmp_path: Path) -> None:
    side = arc.write_layers(tmp_path / "side.gpkg", {"B": _squares(300, x0=5000), "T": _table(4)})
    # the same layers written directly, for reference
    direct = tmp_path / "direct.gpkg"
    arc.write_layers(direct, {"A": _squares(5), "B": _squares(300, x0=5000), "T": _table(4)})

    target = arc.write_layers(tmp_path / "target.gpkg", {"A": _squares(5)})
    arc.copy_layer(side, target, "B")
    arc.copy_layer(side, target, "T")

    assert list(pyogrio.list_layers(target)[:, 0]) == list(pyogrio.list_layers(direct)[:, 0])
    for name in ("A", "B", "T"):
        assert pyogrio.read_arrow(target, layer=name)[1].equals(
            pyogrio.read_arrow(direct, layer=name)[1]
        ), name
    assert pyogrio.read_info(target, layer="B")["features"] == 300
    # the spatial index came along and finds the right rows: squares 10 and 11 of B
    assert _rtree_ok(target) == {"rtree_A_geom": "ok", "rtree_B_geom": "ok"}
    found = pyogrio.read_dataframe(target, layer="B", bbox=(5205, 2, 5225, 8))
    assert found["BH"].tolist() == ["P010", "P011"]
    con = sqlite3.connect(target)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    # it stays a working layer: a row added by GDAL is indexed and found
    new = _squares(1, x0=5000).assign(BH="NEW")
    pyogrio.write_dataframe(new, target, layer="B", append=True, promote_to_multi=True)
    assert pyogrio.read_dataframe(target, layer="B", bbox=(5001, 1, 5009, 9))["BH"].tolist() == [
        "P000",
        "NEW",
    ]
    assert _rtree_ok(target)["rtree_B_geom"] == "ok"


def test_copying_onto_a_layer_of_that_name_is_refused(tmp_path: Path) -> None:
    side = arc.write_layers(tmp_path / "side.gpkg", {"B": _squares(3)})
    target = arc.write_layers(tmp_path / "target.gpkg", {"B": _squares(2)})
    with pytest.raises(OutputError, match="cannot copy layer B: it is there already"):
        arc.copy_layer(side, target, "B")
    assert pyogrio.read_info(target, layer="B")["features"] == 2  # rolled back, untouched


def test_a_crs_number_meaning_another_crs_is_refused(tmp_path: Path) -> None:
    side = arc.write_layers(tmp_path / "side.gpkg", {"B": _squares(3)})
    target = arc.write_layers(tmp_path / "target.gpkg", {"A": _squares(2)})
    con = sqlite3.connect(target)
    con.execute("UPDATE gpkg_spatial_ref_sys SET definition = 'other' WHERE srs_id = 4526")
    con.commit()
    con.close()
    with pytest.raises(OutputError, match="CRS number 4526 means another CRS"):
        arc.copy_layer(side, target, "B")
    assert "B" not in pyogrio.list_layers(target)[:, 0]


def test_a_layer_written_elsewhere_goes_into_the_archive_in_its_turn(tmp_path: Path) -> None:
    side = arc.write_layers(tmp_path / "side.gpkg", {"B": _squares(4)})
    asked: list[str] = []

    def path() -> Path:
        asked.append("B")
        return side

    out = arc.write_archive(
        tmp_path / "archive.gpkg",
        {"A": _squares(2), "B": arc.Written(_squares(4).columns, path), "T": _table(2)},
    )
    assert asked == ["B"]
    assert list(pyogrio.list_layers(out)[:, 0]) == ["A", "B", "T"]
    assert pyogrio.read_dataframe(out, layer="B")["BH"].tolist() == ["P000", "P001", "P002", "P003"]


class _Partial:
    """What ``_side_writer`` looks at in a partition's results: which layers have rows."""

    empty = None

    def __init__(self, *names: str) -> None:
        self.names = names

    def has(self, name: str) -> bool:
        return name in self.names

    def rows(self, name: str) -> int:
        return 1


def _job(tmp_path: Path):
    from pipeline.config import config_from_dict

    return config_from_dict(
        {
            "year": 2024,
            "inputs": {
                "parcels": {"path": str(tmp_path / "p.gpkg")},
                "soil": {"path": str(tmp_path / "s.gpkg")},
            },
            "output": {"path": str(tmp_path / "out.gpkg")},
        }
    )


def test_what_the_second_process_raises_reaches_the_first(tmp_path: Path, monkeypatch) -> None:
    """The second process merges from the partitions' folders: one missing there raises in it,
    and the same error comes out of the first process's wait, not a hang or a silent gap."""
    from pipeline import runner

    monkeypatch.setattr(runner, "_SIDE_ROWS", 0)
    cfg = _job(tmp_path)
    missing = tmp_path / "work" / "gone"
    with runner._side_writer(cfg, [_Partial(arc.OUTSIDE_FARMLAND)], [missing], tmp_path) as side:
        assert list(side) == [arc.OUTSIDE_FARMLAND]
        with pytest.raises(InputError, match=r"partial\.json: the partition's results"):
            side[arc.OUTSIDE_FARMLAND]()
        with pytest.raises(InputError):  # asked again: the same answer, no new wait
            side[arc.OUTSIDE_FARMLAND]()
    # no cores to spare, a parquet archive, or few rows: no second process
    monkeypatch.setattr(runner, "_SIDE_ROWS", 2)
    with runner._side_writer(cfg, [_Partial(arc.OUTSIDE_FARMLAND)], [missing], tmp_path) as side:
        assert side == {}
    with runner._side_writer(cfg, [_Partial(arc.OUTSIDE_FARMLAND)], [missing], None) as side:
        assert side == {}


@pytest.mark.parametrize(
    ("layers", "taken"),
    [
        # the layers that refer to pieces, while the first process writes pieces and balance
        (
            (arc.PIECES, arc.BALANCE, arc.OUTSIDE_FARMLAND, arc.OCCUPATION),
            [arc.OUTSIDE_FARMLAND, arc.OCCUPATION],
        ),
        # none of them (no protection inputs): the balance, while the first writes the pieces
        ((arc.PIECES, arc.BALANCE), [arc.BALANCE]),
        ((arc.PIECES,), []),
    ],
)
def test_what_the_second_process_writes(tmp_path: Path, monkeypatch, layers, taken) -> None:
    from pipeline import runner

    monkeypatch.setattr(runner, "_SIDE_ROWS", 0)
    missing = tmp_path / "work" / "gone"
    with runner._side_writer(_job(tmp_path), [_Partial(*layers)], [missing], tmp_path) as side:
        assert list(side) == taken
        for name in taken:  # its answer (the missing folder), so that it has ended
            with pytest.raises(InputError):
                side[name]()


def _report_ctrl_c(conn) -> None:
    import signal

    conn.send(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)
    conn.close()


def test_the_second_process_leaves_ctrl_c_to_the_first() -> None:
    """It starts with Ctrl-C ignored (before its imports, where a Ctrl-C would print its own
    traceback), and the first process's handling of Ctrl-C is as it was."""
    import multiprocessing
    import signal

    from pipeline import runner

    before = signal.getsignal(signal.SIGINT)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=False)
    process = context.Process(target=_report_ctrl_c, args=(theirs,))
    runner._start_without_ctrl_c(process)
    theirs.close()
    assert ours.recv() is True
    process.join()
    assert signal.getsignal(signal.SIGINT) is before


def _wait_for_ever(lifeline) -> None:
    import time

    from pipeline import runner

    runner._end_with_parent(lifeline)
    time.sleep(120)


def test_the_second_process_ends_when_the_first_does() -> None:
    """A first process killed outright (SIGKILL, out of memory) cannot stop its second one:
    the second ends by itself when the lifeline's other end closes, as it does when the first
    process ends however it ends (here: closed by hand)."""
    import multiprocessing
    import time

    context = multiprocessing.get_context("spawn")
    lifeline, held = context.Pipe(duplex=False)
    process = context.Process(target=_wait_for_ever, args=(lifeline,))
    process.start()
    lifeline.close()
    time.sleep(0.5)
    assert process.is_alive()  # the lifeline open: it waits
    held.close()
    process.join(timeout=30)
    try:
        assert process.exitcode == 1
    finally:
        if process.is_alive():
            process.kill()


def test_a_layer_that_cannot_be_copied_is_named_with_the_archive_not_its_temp_file(
    tmp_path: Path,
) -> None:
    """What a surveyor sees when the disk fills while a layer written elsewhere is copied in:
    the archive's own path and the layer (the temporary file is gone with the failed write)."""
    side = arc.write_layers(tmp_path / "side.gpkg", {"B": _squares(4)})
    with sqlite3.connect(side) as con:  # a copy that SQLite refuses, as a full disk does
        con.execute('DROP TABLE "rtree_B_geom_node"')
    out = tmp_path / "archive.gpkg"
    with pytest.raises(OutputError) as raised:
        arc.write_archive(
            out, {"A": _squares(2), "B": arc.Written(_squares(4).columns, lambda: side)}
        )
    assert str(raised.value).startswith(f"{out}: cannot copy layer B (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side.gpkg"]


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
