"""Parcels of different partitions that overlap, found at the merge (pipeline.crossing)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS, Transformer

from pipeline.crossing import BOUNDS, KEYS, crossing_overlaps, parcel_shapes

GK39 = CRS.from_epsg(4527).to_wkt()  # CGCS2000 3-degree GK zone 39 (117°E)
GK40 = CRS.from_epsg(4528).to_wkt()  # zone 40 (120°E)


def partition(geoms: list, file: int, fids: list[int], ids: list[str]) -> pa.Table:
    frame = parcel_shapes(np.array(geoms, dtype=object), np.full(len(geoms), file), fids, ids)
    return pa.Table.from_pandas(frame, preserve_index=False)


def run(tables: list[pa.Table], crs: list[str]) -> list[list[str]]:
    rows = crossing_overlaps(
        [t.select([*KEYS, *BOUNDS]) for t in tables], crs, lambda k: tables[k].column("wkb")
    )
    return rows[["feature_id", "problem"]].to_numpy().tolist()


def row(x0: float, n: int, y0: float = 0.0) -> list:
    return [shapely.box(x0 + 100 * i, y0, x0 + 100 * (i + 1), y0 + 100) for i in range(n)]


def test_parcels_that_only_touch_across_partitions_are_not_logged():
    west = partition(row(0, 5), 0, [1, 2, 3, 4, 5], list("abcde"))
    east = partition(row(500, 5), 0, [6, 7, 8, 9, 10], list("fghij"))
    assert run([west, east], [GK39, GK39]) == []


def test_an_overlap_is_logged_on_the_later_parcel_in_reading_order():
    # the partition listed first holds the later parcel: file 1 comes after file 0
    east = partition([shapely.box(490, 0, 600, 100), *row(600, 3)], 1, [1, 2, 3, 4], list("fghi"))
    west = partition(row(0, 5), 0, [7, 8, 9, 10, 11], list("abcde"))
    inside = partition([shapely.box(120, 20, 150, 60)], 2, [1], ["z"])  # in b, far from edges
    assert run([east, west, inside], [GK39] * 3) == [
        ["f", "overlaps parcel e by 1000.00 m²"],
        ["z", "overlaps parcel b by 1200.00 m²"],
    ]


def test_a_shared_area_of_a_hundredth_of_a_square_metre_or_less_is_noise():
    west = partition(row(0, 2), 0, [1, 2], ["a", "b"])
    east = partition([shapely.box(199.99995, 0, 300, 100)], 0, [3], ["c"])  # 0.005 m²
    assert run([west, east], [GK39, GK39]) == []
    east = partition([shapely.box(199.99, 0, 300, 100)], 0, [3], ["c"])  # 1 m²
    assert run([west, east], [GK39, GK39]) == [["c", "overlaps parcel b by 1.00 m²"]]


def test_partitions_in_two_zones_are_compared_in_the_later_parcels_zone():
    """Counties on both sides of the 118.5°E zone boundary, each measured in its own zone: the
    boxes are compared in one CRS and the pair in the later parcel's."""
    to39 = Transformer.from_crs(4490, 4527, always_xy=True)
    to40 = Transformer.from_crs(4490, 4528, always_xy=True)
    x39, y39 = to39.transform(118.5, 45.0)
    west = shapely.box(x39 - 200, y39, x39 + 10, y39 + 100)  # 10 m over the meridian
    x40, y40 = to40.transform(118.5, 45.0)
    east = shapely.box(x40, y40, x40 + 200, y40 + 100)
    rows = run([partition([west], 0, [1], ["w"]), partition([east], 0, [2], ["e"])], [GK39, GK40])
    in40 = shapely.transform(west, lambda xy: np.column_stack(
        Transformer.from_crs(4527, 4528, always_xy=True).transform(xy[:, 0], xy[:, 1])
    ))  # fmt: skip
    shared = shapely.intersection(in40, east).area
    assert 500 < shared < 2000  # 10 m over the meridian in zone 39, turned by the zones' angle
    assert rows == [["e", f"overlaps parcel w by {shared:.2f} m²"]]
