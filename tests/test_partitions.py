"""Partitioned runs: planning, determinism across partitionings, resume, failed partitions,
mixed Gauss-Krüger zones and the GeoParquet archive.

The three-county job is 27 parcels of 100 m × 100 m in a row of three counties (x 0-300 m is
220122, 300-600 m 220183, 600-900 m 220113), with every protection input crossing a county line,
so that a partition boundary runs through soil polygons, zones and projects.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from pyproj import Geod

import pipeline
from conftest import CRS, X0, Y0, Job, box, parcels_frame, soil_frame
from pipeline import archive as arc
from pipeline.errors import InputError, Interrupted, InvariantError, UsageError
from pipeline.partitions import (
    OTHER,
    combine_where,
    county_codes,
    input_files,
    plan_partitions,
)
from pipeline.runner import work_folder

COUNTIES = ("220122", "220183", "220113")


def _county(x: float) -> str:
    return COUNTIES[int(x // 300)]


def three_county_parcels() -> gpd.GeoDataFrame:
    rows = []
    for i in range(9):
        for j in range(3):
            x, y = i * 100, j * 100
            code = _county(x)
            row = {
                "BSM": f"{code}2024{i:03d}{j:05d}",
                "ZLDWDM": f"{code}1001010000000",
                "geometry": box(x, y, x + 100, y + 100),
                "KCXS": 0.05 if j == 1 else 0.0,
            }
            if (i, j) == (2, 2):  # the land after a change: construction, not surveyed
                row.update(DLBM="0702", DLMC="农村宅基地")
            if (i, j) == (4, 0):
                row["TBMJ"] = 10000.37  # official area differs from the planar one
            rows.append(row)
    return parcels_frame(rows)


def frame(rows: list[dict]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)


def three_county_job(job: Job, *, many_files: bool = False) -> Job:
    parcels = three_county_parcels()
    if many_files:
        folder = job.folder / "dltb"
        folder.mkdir()
        for code in COUNTIES:
            part = parcels[parcels["ZLDWDM"].str[:6] == code]
            part.to_file(folder / f"{code}.gpkg", layer="DLTB", engine="pyogrio")
        job.config["inputs"]["parcels"] = {"path": "dltb", "layer": "DLTB"}
    else:
        job.layer("parcels", parcels, "DLTB")
    soil = soil_frame(
        [
            ("黑土", box(-20, -20, 460, 320)),
            ("潮土", box(460, -20, 920, 150)),
            ("黑钙土", box(460, 150, 920, 320)),
        ]
    )
    job.layer("soil", soil, "TRTB")
    job.layer(
        "counties",
        frame(
            [
                {"XZQDM": c, "XZQMC": n, "geometry": box(k * 300, -50, (k + 1) * 300, 350)}
                for k, (c, n) in enumerate(
                    zip(COUNTIES, ("农安县", "榆树市", "九台区"), strict=True)
                )
            ]
        ),
        "XZQ",
    )
    job.layer("region", frame([{"geometry": box(-100, -100, 1000, 400)}]), "HTQY")
    job.layer(
        "basic_farmland",
        frame([{"YJJBNTTBBH": "J1", "geometry": box(50, 50, 650, 250)}]),
        "YJJBNTTB",
    )
    job.layer(
        "urban_boundary",
        frame([{"GHFQDM": "Z1", "GHFQMC": "集中建设区", "geometry": box(250, -50, 350, 50)}]),
        "CZKFBJ",
    )
    job.layer(
        "ecological_redline",
        frame(
            [{"HXBM": "H1", "HXMC": "湿地", "HXLX": "生态", "geometry": box(700, 200, 760, 260)}]
        ),
        "STBHHX",
    )
    job.layer(
        "construction",
        frame(
            [
                {"XMMC": "跨县项目", "PZWH": "批1", "PZRQ": "2024-03-01",
                 "geometry": box(280, 120, 330, 180)},
                {"XMMC": "未批项目", "PZWH": "", "PZRQ": "", "geometry": box(820, 20, 850, 50)},
                {"XMMC": "远处项目", "PZWH": "批2", "PZRQ": "2024-05-01",
                 "geometry": box(5000, 5000, 5100, 5100)},
            ]
        ),
        "JSXMYD",
    )  # fmt: skip
    job.layer(
        "changes",
        frame(
            [
                {"BSM": "C1", "BGQDLBM": "0103", "BGHDLBM": "0702", "BGMJ": 10000.0,
                 "XZQDM": "220122", "geometry": box(200, 200, 300, 300)},
                {"BSM": "C2", "BGQDLBM": "0404", "BGHDLBM": "0103", "BGMJ": 10000.0,
                 "XZQDM": "220113", "geometry": box(800, 200, 900, 300)},
            ]
        ),
        "DLTBGX",
    )  # fmt: skip
    return job


def survey(job: Job, name: str, **kwargs) -> dict[str, pd.DataFrame]:
    """Run the job with an archive of its own name; return the archive's layers."""
    out = job.folder / "out" / f"{name}.gpkg"
    cfg = pipeline.load_config(job.write(output={"path": str(out)}, **kwargs.pop("config", {})))
    pipeline.run_survey(cfg, overwrite=True, **kwargs)
    return pipeline.open_archive(out)


def comparable(layers: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The archive without what must differ between runs: the time, timings and the config."""
    out = dict(layers)
    meta = out[arc.METADATA]
    out[arc.METADATA] = meta[~meta["key"].isin(["created", "timings_s", "config"])].reset_index(
        drop=True
    )
    return out


def assert_same_archive(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    a, b = comparable(a), comparable(b)
    assert list(a) == list(b)
    for name in a:
        left, right = a[name], b[name]
        if isinstance(left, gpd.GeoDataFrame):
            assert_geodataframe_equal(left, right)
        else:
            pd.testing.assert_frame_equal(left, right)


@pytest.fixture
def single(job) -> dict[str, pd.DataFrame]:
    three_county_job(job)
    return survey(job, "single")


# --- planning ------------------------------------------------------------------------------


def test_county_codes_take_six_digits_and_refuse_the_rest():
    values = ["2201221001", " 220183", "22A183", None, "2201", "\u3000２２０１８３ ", "", "2201 22"]
    expected = ["220122", "220183", None, None, None, "２２０１８３", None, None]
    for dtype in ("str", object):  # Arrow's kernels for text, Python's str for the rest
        assert county_codes(pd.Series(values, dtype=dtype)).tolist() == expected
    assert county_codes(pd.Series([220122, 2201831001.0, np.nan])).tolist() == [
        "220122",
        "220183",
        None,
    ]


def test_combine_where_ands_the_filters():
    assert combine_where(None, None) is None
    assert combine_where("A = 1", None) == "A = 1"
    assert combine_where("A = 1", "B = 2 OR C = 3") == "(A = 1) AND (B = 2 OR C = 3)"


def test_plan_by_county_field_with_a_partition_for_bad_codes(job):
    parcels = three_county_parcels()
    parcels.loc[0, "ZLDWDM"] = None
    parcels.loc[1, "ZLDWDM"] = "bad"
    # counties interleaved in the layer: their FID ranges overlap
    parcels = parcels.iloc[[*range(0, 27, 2), *range(1, 27, 2)]].reset_index(drop=True)
    job.layer("parcels", parcels, "DLTB", where="DLBM <> '9999'")
    job.layer("soil", soil_frame([("黑土", box(0, 0, 900, 300))]), "TRTB")
    cfg = pipeline.load_config(job.write(partition={"by": "county"}))
    plan = plan_partitions(cfg)
    assert [p.name for p in plan] == ["220113", "220122", "220183", OTHER]
    # a GeoPackage's county is read from the stretch of FIDs (1-based) its parcels lie in
    fids = np.flatnonzero(parcels["ZLDWDM"].str[:6] == "220113") + 1
    assert plan[0].where == (
        f'("fid" BETWEEN {fids.min()} AND {fids.max()}) AND ("ZLDWDM" LIKE \'220113%\')'
    )
    # every parcel is read by exactly one partition
    import pyogrio

    from pipeline.partitions import parcel_specs

    total = 0
    for part in plan:
        (spec,) = parcel_specs(cfg.inputs.parcels, part)
        assert spec.where.startswith("(DLBM <> '9999') AND (")
        total += len(pyogrio.read_dataframe(spec.path, where=spec.where, read_geometry=False))
    assert total == len(parcels)


def test_plan_grid_and_files(job):
    three_county_job(job, many_files=True)
    cfg = pipeline.load_config(job.write(partition={"by": "grid", "grid_size_m": 450}))
    plan = plan_partitions(cfg)
    assert [p.kind for p in plan] == ["file"] * 3  # many files: one partition per file
    assert [p.name for p in plan] == sorted(COUNTIES)
    assert [f.name for f in input_files(cfg.inputs.parcels)] == sorted(
        f"{c}.gpkg" for c in COUNTIES
    )
    job.layer("parcels", three_county_parcels(), "DLTB")
    cfg = pipeline.load_config(job.write(partition={"by": "grid", "grid_size_m": 450}))
    plan = plan_partitions(cfg)
    assert all(p.kind == "grid" for p in plan) and len(plan) >= 3
    cells = [p.cell for p in plan]
    assert all(c[2] - c[0] == pytest.approx(450) for c in cells)


def test_counties_layer_partitions_when_parcels_have_no_county_field(job):
    three_county_job(job)
    job.config["inputs"]["parcels"]["fields"] = {"county": "NOSUCH"}
    cfg = pipeline.load_config(job.write(partition={"by": "county"}))
    plan = plan_partitions(cfg)
    assert [(p.kind, p.county) for p in plan] == [("area", c) for c in sorted(COUNTIES)]


def test_a_large_county_is_split_into_parts_that_own_every_parcel_once(job):
    parcels = three_county_parcels()
    parcels.loc[1, "geometry"] = None  # no window finds it: the first part reads the county
    job.layer("parcels", parcels, "DLTB")
    job.layer("soil", soil_frame([("黑土", box(0, 0, 900, 300))]), "TRTB")
    cfg = pipeline.load_config(job.write(partition={"by": "county", "max_parcels": 2}))
    plan = plan_partitions(cfg)
    code = str(parcels.loc[1, "ZLDWDM"])[:6]
    mine = [p for p in plan if p.county == code]
    n = int((parcels["ZLDWDM"].str[:6] == code).sum())
    assert len(mine) > 1 and [p.name for p in mine] == [f"{code}_{i + 1}" for i in range(len(mine))]
    assert mine[0].bbox is None and all(p.bbox is not None for p in mine[1:])
    assert all(0 < p.size <= 2 for p in mine) and sum(p.size for p in mine) == n - 1
    assert len({p.extent for p in mine}) == 1
    # every centre in exactly one cell, the cells reaching to infinity
    from pipeline.partitions import in_cell

    b = shapely.bounds(parcels.geometry.to_numpy())
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    mine_rows = (parcels["ZLDWDM"].str[:6] == code).to_numpy() & np.isfinite(cx)
    hits = sum(in_cell(cx, cy, p.cell).astype(int) for p in mine)
    assert (hits[mine_rows] == 1).all()
    # a config that never splits
    cfg = pipeline.load_config(job.write(partition={"by": "county", "max_parcels": 0}))
    assert [p.name for p in plan_partitions(cfg)] == sorted(COUNTIES)
    with pytest.raises(pipeline.ConfigError, match="max_parcels"):
        pipeline.load_config(job.write(partition={"by": "county", "max_parcels": -1}))


@pytest.mark.parametrize(
    ("partition", "county_field"),
    [
        ({"by": "grid", "grid_size_m": 250}, True),
        ({"by": "county"}, False),
        ({"by": "county", "max_parcels": 2}, True),
    ],
    ids=["grid", "counties-layer", "county-split"],
)
def test_parcels_no_window_finds_are_rejected_and_logged_as_in_a_single_run(
    job, partition, county_field
):
    """A parcel with no geometry, or an empty one, is in no grid cell or county window: the plan
    gives it to the first partition, which reads it by its FID and rejects it (QA log)."""
    three_county_job(job)
    parcels = three_county_parcels()
    parcels.loc[1, "geometry"] = None
    parcels.loc[13, "geometry"] = shapely.Polygon()
    job.layer("parcels", parcels if county_field else parcels.drop(columns="ZLDWDM"), "DLTB")
    single = survey(job, "single")
    qa = single[arc.QA_LOG]
    lost = {parcels.loc[1, "BSM"]: "null geometry", parcels.loc[13, "BSM"]: "empty geometry"}
    for bsm, problem in lost.items():
        assert ((qa["feature_id"] == bsm) & (qa["problem"] == problem)).sum() == 1
    plan = plan_partitions(pipeline.load_config(job.write(partition=partition)))
    if partition.get("max_parcels"):  # the first part of each county reads it whole
        assert all(p.fids == () for p in plan)
    else:
        assert plan[0].fids == (2, 14) and all(p.fids == () for p in plan[1:])
    assert_same_archive(single, survey(job, "parted", config={"partition": partition}))


@pytest.mark.parametrize(
    "partition",
    [
        {"by": "county"},
        {"by": "grid", "grid_size_m": 250},
        {"by": "county", "max_parcels": 2},
        {"by": "county", "no county field": True},
        {"by": "county", "many files": True},
    ],
    ids=["county", "grid", "county-split", "counties-layer", "many-files"],
)
def test_duplicate_ids_across_partitions_are_renamed_as_in_a_single_run(job, partition):
    """The job's duplicate BSMs are ranked over all its cultivated parcels, in the order a single
    run reads them, whichever partitions hold them; a renamed id never takes another's."""
    partition = dict(partition)
    many = partition.pop("many files", False)
    no_field = partition.pop("no county field", False)
    three_county_job(job, many_files=many)
    parcels = three_county_parcels()
    for k in (0, 2, 8, 12, 24):  # 8 is not cultivated, 2 not in the filter: they take no rank
        parcels.loc[k, "BSM"] = "D1"
    parcels["KEEP"] = np.where(parcels.index == 2, 0, 1)
    parcels.loc[[3, 4], "BSM"] = "D2"  # twice in one county
    parcels.loc[15, "BSM"] = "D1-2"  # the name the second D1 would take
    parcels.loc[[9, 18, 20], "BSM"] = None  # FID-made ids: FID1 twice in the many files
    if no_field:
        parcels = parcels.drop(columns="ZLDWDM")
    if many:
        for code in COUNTIES:
            own = parcels[parcels["ZLDWDM"].str[:6] == code]
            own.to_file(job.folder / "dltb" / f"{code}.gpkg", layer="DLTB", engine="pyogrio")
    else:
        job.layer("parcels", parcels, "DLTB")
    job.config["inputs"]["parcels"]["where"] = "KEEP = 1"
    single = survey(job, "single", config={"partition": {"by": "none"}})
    bsm = set(single[arc.BALANCE]["BSM"])
    assert {"D1", "D1-2", "D1-3", "D1-4", "D2", "D2-2"} <= bsm and "D1-5" not in bsm
    assert ("FID1-2" in bsm) == many
    qa = single[arc.QA_LOG]
    renamed = qa.loc[qa["problem"] == "duplicate parcel id (BSM)", "feature_id"]
    assert sorted(renamed) == ["D1", "D2", *(["FID1"] if many else [])]  # a row per id
    assert_same_archive(single, survey(job, "parted", config={"partition": partition}))


@pytest.mark.parametrize("covering", [True, False], ids=["bbox-column", "no-bbox-column"])
@pytest.mark.parametrize(
    "partition", [{"by": "grid", "grid_size_m": 250}, {"by": "county"}], ids=["grid", "areas"]
)
def test_geoparquet_parcels_read_through_windows_as_in_a_single_run(job, partition, covering):
    """A GeoParquet parcels file is read through each partition's window, with or without its
    bbox covering column, its features numbered by their rows as a single run numbers them."""
    three_county_job(job)
    parcels = three_county_parcels()
    parcels.loc[1, "geometry"] = None  # in no window: read by its row number
    parcels.loc[[0, 12, 24], "BSM"] = "D1"  # ranked over the partitions by row number
    if partition["by"] == "county":  # from the counties layer
        parcels = parcels.drop(columns="ZLDWDM")
    path = job.folder / "dltb.parquet"
    parcels.to_parquet(path, write_covering_bbox=covering, row_group_size=4)
    job.config["inputs"]["parcels"] = {"path": path.name}
    single = survey(job, "single")
    assert {"D1-2", "D1-3"} <= set(single[arc.BALANCE]["BSM"])
    assert_same_archive(single, survey(job, "parted", config={"partition": partition}))


@pytest.mark.parametrize("soil", ["one county", "none of them", "unusable"])
def test_a_partition_off_the_soil_map_is_unmapped_land_as_in_a_single_run(job, soil, monkeypatch):
    """A partition whose window holds no soil polygon surveys its parcels as unmapped land, as
    a single run does; the job is refused only when the soil map has no usable polygon at all,
    and says that it misses the parcels only when it misses all of them. The whole soil layer
    is read for that check once a run, where no soil polygon lies near any parcel."""
    from pipeline import runner

    checks = []
    check = runner._check_soil_layer

    def counted(cfg):
        checks.append(cfg)
        return check(cfg)

    monkeypatch.setattr(runner, "_check_soil_layer", counted)
    three_county_job(job)
    polygons = {
        "one county": box(-20, -20, 290, 320),
        "none of them": box(5000, 5000, 6000, 6000),
        "unusable": box(0, 0, 200, 0),  # no area
    }
    job.layer("soil", soil_frame([("黑土", polygons[soil])]), "TRTB")
    partition = {"config": {"partition": {"by": "county"}}}
    if soil == "unusable":
        for kwargs in ({}, partition):
            with pytest.raises(InputError, match="no usable soil polygon"):
                survey(job, "archive", **kwargs)
        return
    single = survey(job, "single")
    assert len(checks) == (soil == "none of them")
    parted = survey(job, "parted", **partition)
    assert len(checks) == 2 * (soil == "none of them")
    assert_same_archive(single, parted)
    qa = single[arc.QA_LOG]
    missed = (qa["layer"] == "soil") & qa["problem"].str.contains("does not cover the parcels")
    assert missed.sum() == (soil == "none of them")
    balance = single[arc.BALANCE]
    unmapped = balance["XZQDM"] != "220122" if soil == "one county" else slice(None)
    np.testing.assert_allclose(balance.loc[unmapped, "WDT_MJ"], balance.loc[unmapped, "MJ"])


@pytest.mark.parametrize(
    "partition",
    [{"by": "county"}, {"by": "grid", "grid_size_m": 250}, {"by": "county", "max_parcels": 4}],
    ids=["county", "grid", "county-split"],
)
def test_parcels_overlapping_across_partitions_are_logged_as_in_a_single_run(job, partition):
    """A single run logs each pair of overlapping parcels on the later one; the partitions see
    only their own parcels, so the merge pairs those of different partitions: a parcel reaching
    10 m over the county line, and one of another county lying wholly inside a parcel."""
    three_county_job(job)
    parcels = three_county_parcels()
    over = parcels.index[parcels["BSM"] == "220183202400300000"][0]
    parcels.loc[over, "geometry"] = box(290, 0, 400, 100)  # 10 m into 220122's (2, 0)
    inside = {**parcels.iloc[0].to_dict(), "BSM": "D-inside", "ZLDWDM": "2201131001010000000"}
    inside["geometry"] = box(110, 210, 150, 250)  # 1,600 m² in 220122's (1, 2)
    parcels = pd.concat([parcels, parcels_frame([inside])], ignore_index=True)
    job.layer("parcels", parcels, "DLTB")
    single = survey(job, "single")
    qa = single[arc.QA_LOG]
    logged = qa[qa["check"] == "overlap"][["feature_id", "problem"]].to_numpy().tolist()
    assert ["220183202400300000", "overlaps parcel 220122202400200000 by 1000.00 m²"] in logged
    assert ["D-inside", "overlaps parcel 220122202400100002 by 1600.00 m²"] in logged
    assert_same_archive(single, survey(job, "parted", config={"partition": partition}))


@pytest.mark.parametrize(
    "partition",
    [{"by": "county"}, {"by": "grid", "grid_size_m": 250}],
    ids=["county", "grid"],
)
def test_features_far_from_every_parcel_are_left_alone_by_both_runs(job, partition):
    """Soil polygons and zone features far from every parcel and change parcel are not read,
    checked, logged nor counted, in a single run as in the partitions (which never see them);
    one near a change parcel alone is. A change parcel that no partition's cell or county
    claims is analysed by the first partition, as a single run analyses it."""
    three_county_job(job)
    corners = [(3000, 3000), (3100, 3100), (3100, 3000), (3000, 3100)]
    bowtie = shapely.Polygon([(X0 + x, Y0 + y) for x, y in corners])
    soil = soil_frame(
        [
            ("黑土", box(-20, -20, 460, 320)),
            ("潮土", box(460, -20, 920, 150)),
            ("黑钙土", box(460, 150, 920, 320)),
            ("黑土", bowtie),  # invalid, far away
            ("黑土", None),  # nowhere
            ("黑土", box(1990, -10, 2110, 110)),  # under a change parcel only
            ("黑土", box(1490, -10, 1510, 10)),  # in the window of C3's partition, near nothing
        ]
    )
    job.layer("soil", soil, "TRTB")
    farmland = frame(
        [
            {"YJJBNTTBBH": "J1", "geometry": box(50, 50, 650, 250)},
            {"YJJBNTTBBH": "J2", "geometry": bowtie},
            {"YJJBNTTBBH": "J3", "geometry": box(1400, 20, 1450, 60)},
        ]
    )
    job.layer("basic_farmland", farmland, "YJJBNTTB")
    changes = gpd.read_file(job.folder / "changes.gpkg")
    extra = {"BSM": "C3", "BGQDLBM": "0103", "BGHDLBM": "0702", "BGMJ": 10000.0}
    extra.update(XZQDM="220113", geometry=box(2000, 0, 2100, 100))
    lost = dict(extra, BSM="C4", XZQDM="220199", geometry=box(2200, 0, 2300, 100))
    changes = pd.concat([changes, frame([extra, lost])], ignore_index=True)
    job.layer("changes", gpd.GeoDataFrame(changes, crs=CRS), "DLTBGX")
    single = survey(job, "single")
    meta = single[arc.METADATA].set_index("key")["value"]
    counts = json.loads(meta["counts"])
    assert (counts["soil_read"], counts["soil_used"]) == (4, 4)
    assert (counts["basic_farmland_read"], counts["basic_farmland_used"]) == (1, 1)
    qa = single[arc.QA_LOG]
    assert not qa["feature_id"].isin(["S004", "S005", "J2"]).any()
    assert "220199" in set(single[arc.OCCUPATION_BALANCE]["XZQDM"])  # C4, in no partition's
    assert_same_archive(single, survey(job, "parted", config={"partition": partition}))


@pytest.mark.parametrize("kind", ["gpkg", "gpkg-no-index", "shp"])
def test_parcel_boxes_hold_the_parcels(tmp_path, kind):
    """From a GeoPackage's spatial index (rounded outward to 32-bit floats) or from the
    geometries: every box holds its parcel; a parcel without geometry has none."""
    import pyogrio

    from pipeline.config import InputSpec
    from pipeline.partitions import _parcel_boxes

    parcels = three_county_parcels()
    parcels.loc[2, "geometry"] = None
    path = tmp_path / ("p.shp" if kind == "shp" else "p.gpkg")
    options = {"SPATIAL_INDEX": "NO"} if kind == "gpkg-no-index" else {}
    pyogrio.write_dataframe(parcels, path, layer=None if kind == "shp" else "DLTB", **options)
    fids, boxes = _parcel_boxes(InputSpec(path=path, layer=None if kind == "shp" else "DLTB"))
    exact = shapely.bounds(parcels.geometry.to_numpy())
    first = 0 if kind == "shp" else 1  # OGR numbers Shapefile features from 0, GPKG rows from 1
    lookup = dict(zip(fids.tolist(), boxes, strict=True))
    for i, want in enumerate(exact):
        got = lookup.get(i + first, np.full(4, np.nan))
        if i == 2:
            assert np.isnan(got).all()
            continue
        assert got[0] <= want[0] and got[1] <= want[1] and got[2] >= want[2] and got[3] >= want[3]
        assert np.allclose(got, want, atol=8.0)


def test_partition_names_are_unique_for_files(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(InputError, match="no file matches"):
        input_files(pipeline.config.InputSpec(path=tmp_path / "a" / "*.gpkg"))


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "partition",
    [{"by": "county"}, {"by": "grid", "grid_size_m": 250}, {"by": "county", "max_parcels": 1}],
    ids=["county", "grid", "county-split"],
)
def test_partitioned_archive_is_identical_to_one_partition(job, single, partition):
    parted = survey(job, "parted", config={"partition": partition})
    assert_same_archive(single, parted)
    # the layers that cross county lines are really there
    for name in (arc.OUTSIDE_FARMLAND, arc.ZONING_CONFLICTS, arc.OCCUPATION, arc.ILLEGAL):
        assert len(single[name]) > 0, name
    totals = single[arc.OCCUPATION_TOTALS].set_index("XMMC")
    assert totals.loc["跨县项目", "TBGS"] == 2  # a piece in each county
    assert totals.loc["远处项目", "TBGS"] == 0
    assert not work_folder(job.folder / "out" / "parted.gpkg").exists()


def test_same_archive_from_many_files(job, single):
    three_county_job(job, many_files=True)
    parted = survey(job, "files", config={"partition": {"by": "county"}})
    a, b = comparable(single), comparable(parted)
    for name in a:
        if name != arc.METADATA:  # the inputs (paths, fingerprints) differ
            pd.testing.assert_frame_equal(pd.DataFrame(a[name]), pd.DataFrame(b[name]))


@pytest.mark.parametrize("spread", ["a county in two files", "a county in no file"])
def test_each_change_parcel_is_analysed_once_with_many_files(job, spread):
    """With one partition per file, a change parcel is analysed by the first file holding its
    county, as once by a run over all the files: not twice where a county's parcels are in two
    files, and not never where its county has no file."""
    three_county_job(job, many_files=True)
    folder = job.folder / "dltb"
    path = folder / "220113.gpkg"  # holds the county of the change parcel C2
    parcels = gpd.read_file(path)
    path.unlink()
    if spread == "a county in two files":
        for name, half in (("220113a", parcels.iloc[::2]), ("220113b", parcels.iloc[1::2])):
            half.to_file(folder / f"{name}.gpkg", layer="DLTB", engine="pyogrio")
    together = survey(job, "together")
    parted = survey(job, "parted", config={"partition": {"by": "county"}})
    changes = together[arc.OCCUPATION_BALANCE]
    assert "220113" in set(changes["XZQDM"])  # C2 was analysed
    a, b = comparable(together), comparable(parted)
    for name in a:
        if name != arc.METADATA:
            pd.testing.assert_frame_equal(pd.DataFrame(a[name]), pd.DataFrame(b[name]))


# --- resume and failures ----------------------------------------------------------------------


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_archive(job, single):
    cfg = {"partition": {"by": "county"}}
    seen: list[str] = []

    def stop_after_first(message: str) -> None:
        seen.append(message)
        if "1/3 partitions" in message:
            raise Interrupt

    with pytest.raises(Interrupt):
        survey(job, "resumed", config=cfg, progress=stop_after_first)
    work = work_folder(job.folder / "out" / "resumed.gpkg")
    assert len(list(work.glob("*/done.json"))) == 1
    assert (next(work.glob("*/done.json")).parent / "partition.log").exists()

    seen.clear()
    resumed = survey(job, "resumed", config=cfg, progress=seen.append, resume=True)
    assert any("1 done before, resumed" in m for m in seen)
    assert sum("partitions" in m and "/2 " in m for m in seen) == 2  # only the two left
    assert_same_archive(single, resumed)


def test_ctrl_c_keeps_the_finished_partitions_and_says_how_to_go_on(job, single):
    cfg = {"partition": {"by": "county"}}

    def ctrl_c_after_first(message: str) -> None:
        if "1/3 partitions" in message:
            raise KeyboardInterrupt

    out = job.folder / "out" / "ctrl_c.gpkg"
    work = work_folder(out)
    with pytest.raises(Interrupted) as caught:
        survey(job, "ctrl_c", config=cfg, progress=ctrl_c_after_first)
    assert isinstance(caught.value, KeyboardInterrupt)  # what callers that handle it expect
    assert str(caught.value) == (
        f"interrupted: 1 of 3 partition(s) are done, kept in {work}: "
        "run again with --resume to run only the others"
    )
    assert len(list(work.glob("*/done.json"))) == 1
    assert not out.exists()
    assert_same_archive(single, survey(job, "ctrl_c", config=cfg, resume=True))


def test_ctrl_c_while_the_archive_is_written(job, single, monkeypatch):
    cfg = {"partition": {"by": "county"}}
    write_layer = arc._write_layer

    def ctrl_c_at_second_layer(path, name, frame, *, append, shown):
        if append:
            raise KeyboardInterrupt
        write_layer(path, name, frame, append=append, shown=shown)

    monkeypatch.setattr(arc, "_write_layer", ctrl_c_at_second_layer)
    out = job.folder / "out" / "ctrl_c_write.gpkg"
    with pytest.raises(Interrupted, match=r"all 3 partition\(s\) are done, kept in .*--resume"):
        survey(job, "ctrl_c_write", config=cfg)
    assert sorted(p.name for p in out.parent.iterdir() if "ctrl_c_write" in p.name) == [
        ".ctrl_c_write.work"
    ]  # no archive, no temporary file
    monkeypatch.undo()
    assert_same_archive(single, survey(job, "ctrl_c_write", config=cfg, resume=True))


def test_partition_logs_go_to_their_files_not_to_the_console(job):
    three_county_job(job)
    console = logging.Handler()
    seen: list[logging.LogRecord] = []
    console.emit = seen.append
    root = logging.getLogger()
    level = root.level
    root.addHandler(console)
    root.setLevel(logging.WARNING)
    work = work_folder(job.folder / "out" / "logs.gpkg")
    logs: list[str] = []

    def read_logs(message: str) -> None:
        if "3/3 partitions" in message:
            logs.extend(p.read_text(encoding="utf-8") for p in work.glob("*/partition.log"))

    try:
        logging.getLogger("pipeline.runner").warning("before")
        survey(job, "logs", config={"partition": {"by": "county"}}, progress=read_logs)
    finally:
        root.removeHandler(console)
        root.setLevel(level)
    assert [r.getMessage() for r in seen] == ["before"]  # no partition INFO on the console
    assert len(logs) == 3 and all("INFO pipeline.runner: partition" in text for text in logs)
    assert logging.getLogger("pipeline").level == logging.NOTSET
    assert logging.getLogger("pipeline").propagate


def test_a_second_run_of_the_same_archive_is_refused_until_the_first_ends(job):
    three_county_job(job)
    out = job.folder / "out" / "locked.gpkg"
    lock = work_folder(out).with_name(".locked.work.lock")
    cfg = {"partition": {"by": "county"}}
    # the first run: another process, which then dies without a word (SIGKILL)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(work_folder(out))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(UsageError, match=rf"another run .* \(pid {holder.pid} on .+\)"):
            survey(job, "locked", config=cfg)
        with pytest.raises(UsageError, match="in progress"):
            survey(job, "locked", config=cfg, resume=True)
    finally:
        holder.kill()
        holder.communicate()
    assert lock.exists()  # left by the killed run, but no longer locked
    survey(job, "locked", config=cfg)
    assert not lock.exists() and out.exists()


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline.runner import _work_lock
with _work_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def stop_before_merging(job: Job, name: str, cfg: dict) -> Path:
    """Run the job until its last partition is done, then stop it: the work folder it keeps."""

    def stop(message: str) -> None:
        if "3/3 partitions" in message:
            raise Interrupt

    with pytest.raises(Interrupt):
        survey(job, name, config=cfg, progress=stop)
    return work_folder(job.folder / "out" / f"{name}.gpkg")


def test_resume_redoes_a_partition_whose_input_changed(job):
    three_county_job(job, many_files=True)
    cfg = {"partition": {"by": "county"}}
    stop_before_merging(job, "changed", cfg)
    # one county's file changes: only its partition runs again
    path = job.folder / "dltb" / "220183.gpkg"
    parcels = gpd.read_file(path)
    parcels.loc[0, "TBMJ"] = 9999.0
    path.unlink()
    parcels.to_file(path, layer="DLTB", engine="pyogrio")
    seen: list[str] = []
    layers = survey(job, "changed", config=cfg, progress=seen.append, resume=True)
    assert any("2 done before" in m for m in seen)
    assert any("1/1 partitions" in m and "220183" in m for m in seen)
    assert 9999.0 in layers[arc.BALANCE]["TBMJ"].to_numpy()


def test_resume_redoes_a_partition_whose_ids_another_file_now_renames(job):
    """A file that now holds a parcel id of a later file's parcel renames that parcel: resume
    runs the later file's partition again, though the file itself did not change."""
    three_county_job(job, many_files=True)
    cfg = {"partition": {"by": "county"}}
    stop_before_merging(job, "renamed", cfg)
    later = gpd.read_file(job.folder / "dltb" / "220183.gpkg")
    path = job.folder / "dltb" / "220113.gpkg"  # read before 220183.gpkg
    parcels = gpd.read_file(path)
    parcels.loc[0, "BSM"] = later.loc[0, "BSM"]
    path.unlink()
    parcels.to_file(path, layer="DLTB", engine="pyogrio")
    seen: list[str] = []
    resumed = survey(job, "renamed", config=cfg, progress=seen.append, resume=True)
    assert any("1 done before" in m for m in seen)
    assert f"{later.loc[0, 'BSM']}-2" in set(resumed[arc.BALANCE]["BSM"])
    assert_same_archive(resumed, survey(job, "fresh", config=cfg))


@pytest.mark.parametrize("damage", ["removed", "truncated"])
def test_resume_redoes_a_partition_whose_results_are_damaged(job, single, damage):
    cfg = {"partition": {"by": "county"}}
    work = stop_before_merging(job, "damaged", cfg)
    result = work / "220183" / f"{arc.PIECES}.parquet"
    if damage == "removed":
        result.unlink()
    else:
        result.write_bytes(result.read_bytes()[:200])
    seen: list[str] = []
    resumed = survey(job, "damaged", config=cfg, progress=seen.append, resume=True)
    assert any("2 done before" in m for m in seen)
    assert any("1/1 partitions" in m and "220183" in m for m in seen)
    assert_same_archive(single, resumed)


def test_partial_results_are_geoparquet_with_the_archives_pieces(job, single):
    """A partition's pieces in the work folder read as GeoParquet (MultiPolygons in the
    partition's CRS) and are the archive's pieces of its county, shape for shape."""
    import pyarrow.parquet as pq

    cfg = {"partition": {"by": "county"}}
    work = stop_before_merging(job, "partial", cfg)
    pieces = single[arc.PIECES]
    for county in ("220122", "220183"):
        path = work / county / f"{arc.PIECES}.parquet"
        part = gpd.read_parquet(path)
        geo = json.loads(pq.read_schema(path).metadata[b"geo"])
        assert geo["columns"]["geometry"]["geometry_types"] == ["MultiPolygon"]
        assert part.crs == pieces.crs
        assert set(part.geom_type) == {"MultiPolygon"}
        mine = pieces[pieces["XZQDM"] == county]
        assert len(part) == len(mine) > 0
        ours = part.sort_values(["BSM", "TRBM"])
        theirs = mine.sort_values(["BSM", "TRBM"])
        assert ours["BSM"].tolist() == theirs["BSM"].tolist()
        assert shapely.equals(ours.geometry.to_numpy(), theirs.geometry.to_numpy()).all()
        assert np.allclose(ours["TBDLMJ"], theirs["TBDLMJ"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("damage", ["reversed", "not numbers"])
def test_pieces_numbered_out_of_order_are_refused(job, damage):
    """The layers that refer to pieces are renumbered by each partition's own numbering (a
    piece's number is its row in its county): a work folder whose pieces break it is named,
    not merged into wrong numbers."""
    import pyarrow.parquet as pq

    three_county_job(job)
    cfg = {"partition": {"by": "county"}}
    work = stop_before_merging(job, "renumbered", cfg)
    path = work / "220183" / f"{arc.PIECES}.parquet"
    table = pq.read_table(path)
    at = table.schema.get_field_index("DABH")
    numbers = table.column("DABH").to_pylist()
    numbers = numbers[::-1] if damage == "reversed" else ["HT-?"] * len(numbers)
    pq.write_table(table.set_column(at, "DABH", pa.array(numbers)), path)
    with pytest.raises(InvariantError, match=r"partition 220183: its pieces' numbers \(DABH\)"):
        survey(job, "renumbered", config=cfg, resume=True)


def test_a_result_file_lost_during_the_merge_is_named(job, monkeypatch):
    """The merge reads the partitions' files as it writes: one that goes missing by then is
    named in a one-line error, and no archive is left."""
    from pipeline import runner

    three_county_job(job)
    read_partial = runner._read_partial

    def then_lost(folder):
        partial = read_partial(folder)
        if folder.name == "220183":
            (folder / f"{arc.OUTSIDE_FARMLAND}.parquet").unlink()
        return partial

    monkeypatch.setattr(runner, "_read_partial", then_lost)
    with pytest.raises(InputError, match=r"220183.HTGD_DNRHX\.parquet: a partition's result"):
        survey(job, "lost", config={"partition": {"by": "county"}})
    assert not (job.folder / "out" / "lost.gpkg").exists()
    assert not list((job.folder / "out").glob(".lost*.tmp.gpkg"))


def test_results_the_workers_wrote_where_this_machine_cannot_see_are_named(job, monkeypatch):
    """Workers of an existing cluster on other machines write the partitions' results into
    their own file system unless the work folder is shared at the same path: the partitions
    are done, but not here. A one-line error names the missing file and says what is needed,
    and no archive is left."""
    import shutil

    from pipeline import executors

    three_county_job(job)
    run = executors.Executor.run

    def elsewhere(self, func, tasks, **kwargs):
        out = run(self, func, tasks, **kwargs)
        for _, args in tasks:  # (cfg, partition, plan, workdir, ...): as if on another machine
            shutil.rmtree(args[3] / args[1].name)
        return out

    monkeypatch.setattr(executors.Executor, "run", elsewhere)
    with pytest.raises(
        InputError,
        match=r"220113.partial\.json: the partition's results cannot be read \(No such file or "
        r"directory\); on a cluster \(--scheduler\) the workers must see the work folder",
    ):
        survey(job, "elsewhere", config={"partition": {"by": "county"}})
    assert not (job.folder / "out" / "elsewhere.gpkg").exists()


def test_failed_partition_is_named_and_the_others_finish(job, single):
    three_county_job(job, many_files=True)
    bad = job.folder / "dltb" / "220183.gpkg"
    good = bad.read_bytes()
    bad.write_bytes(b"not a geopackage" * 100)
    cfg = {"partition": {"by": "county"}}
    with pytest.raises(InputError, match=r"1 of 3 partition\(s\) failed \(220183: .*--resume"):
        survey(job, "failing", config=cfg)
    work = work_folder(job.folder / "out" / "failing.gpkg")
    assert sorted(p.parent.name for p in work.glob("*/done.json")) == ["220113", "220122"]
    assert not (job.folder / "out" / "failing.gpkg").exists()

    bad.write_bytes(good)
    seen: list[str] = []
    fixed = survey(job, "failing", config=cfg, progress=seen.append, resume=True)
    # 220113 ran again too: it is the first partition, which analyses the change parcels of the
    # counties no file claims, and the file that could not be read claimed none
    assert any("1 done before" in m for m in seen)
    a, b = comparable(single), comparable(fixed)
    for name in a:
        if name != arc.METADATA:
            pd.testing.assert_frame_equal(pd.DataFrame(a[name]), pd.DataFrame(b[name]))


def test_a_failed_partition_prints_its_reason_not_its_traceback(job, caplog):
    """In this process as on dask: the console (warnings) gets the partition's name and the
    one-line reason; where it failed is in the debug log (-vv)."""
    three_county_job(job, many_files=True)
    (job.folder / "dltb" / "220183.gpkg").write_bytes(b"not a geopackage" * 100)
    with (
        caplog.at_level(logging.DEBUG, logger="pipeline.executors"),
        pytest.raises(InputError, match="220183"),
    ):
        survey(job, "failing", config={"partition": {"by": "county"}})
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in warned] == ["partition 220183 failed"]
    assert all(r.exc_info is None and "Traceback" not in r.getMessage() for r in warned)
    where = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("partition 220183: where it failed:" in m and 'File "' in m for m in where)


def test_partitions_that_failed_alike_are_named_together():
    """A full disk fails every partition that is still to write, with the same words: the
    message names them together, once, not the same sentence for each."""
    from pipeline.runner import _failed_message

    full = "OSError: [Errno 28] No space left on device"
    message = _failed_message(
        {"220183": full, "220102": full, "220122": "InputError: bad.gpkg: not a GeoPackage"},
        8,
        Path("out/.a.work"),
    )
    assert message == (
        f"3 of 8 partition(s) failed (220102, 220183: {full}; 220122: InputError: bad.gpkg: "
        f"not a GeoPackage); the others are kept in {Path('out/.a.work')}: fix the cause and "
        "rerun with --resume"
    )


def test_cli_survey_resume_and_workers_options(job):
    from click.testing import CliRunner

    import cli

    three_county_job(job)
    path = job.write(partition={"by": "county"})
    result = CliRunner().invoke(cli.cli, ["survey", str(path), "--no-report", "--resume"])
    assert result.exit_code == 0, result.output
    assert "3/3 partitions" in result.output
    result = CliRunner().invoke(cli.cli, ["survey", str(path), "--workers", "0"])
    assert result.exit_code == 2


# --- mixed zones ------------------------------------------------------------------------------


def test_mixed_zones_give_geodesic_areas(job):
    """Two counties 3° apart (GK zones 41 and 42), parcels in EPSG:4490 in one file."""
    rows = []
    for code, lon0 in (("220500", 123.01), ("220600", 126.02)):
        for i in range(3):
            west = lon0 + i * 0.002
            rows.append(
                {
                    "BSM": f"{code}{i:012d}",
                    "ZLDWDM": f"{code}1001010000000",
                    "TBMJ": None,
                    "_auto_tbmj": False,
                    "geometry": shapely.box(west, 44.0, west + 0.0015, 44.001),
                }
            )
    parcels = parcels_frame(rows, crs="EPSG:4490")
    job.layer("parcels", parcels, "DLTB")
    soil = soil_frame(
        [("黑土", shapely.box(122.9, 43.9, 123.1, 44.1)),
         ("黑土", shapely.box(125.9, 43.9, 126.1, 44.1))],
        crs="EPSG:4490",
    )  # fmt: skip
    job.layer("soil", soil, "TRTB")
    layers = survey(job, "zones", config={"partition": {"by": "county"}})
    meta = {
        k: json.loads(v)
        for k, v in zip(*layers[arc.METADATA][["key", "value"]].T.values, strict=True)
    }
    assert meta["crs"] == "EPSG:4490"
    pieces = layers[arc.PIECES]
    assert pieces.crs.equals("EPSG:4490") and len(pieces) == 6
    geod = Geod(ellps="GRS80")
    for geom, mj, tbmj in zip(pieces.geometry, pieces["MJ"], pieces["TBMJ"], strict=True):
        exact = abs(geod.geometry_area_perimeter(geom)[0])
        assert mj == pytest.approx(exact, rel=1e-4)
        assert tbmj == pytest.approx(exact, rel=1e-4)
    # one working zone for both counties would be 1.5° off for each: areas off by > 0.01 %
    cfg = pipeline.load_config(job.write(output={"path": str(job.folder / "one.gpkg")}))
    pipeline.run_survey(cfg, overwrite=True)
    one = pipeline.open_archive(job.folder / "one.gpkg")[arc.PIECES].to_crs("EPSG:4490")
    off = [
        abs(mj / abs(geod.geometry_area_perimeter(g)[0]) - 1)
        for g, mj in zip(one.geometry, one["MJ"], strict=True)
    ]
    assert max(off) > 1e-4


def test_output_crs_is_declared(job, single):
    out = job.folder / "out" / "declared.gpkg"
    cfg = pipeline.load_config(
        job.write(output={"path": str(out), "crs": 4490}, partition={"by": "county"})
    )
    pipeline.run_survey(cfg, overwrite=True)
    pieces = pipeline.open_archive(out)[arc.PIECES]
    assert pieces.crs.equals("EPSG:4490")
    assert np.allclose(pieces["TBMJ"], single[arc.PIECES]["TBMJ"])


# --- the GeoParquet archive ---------------------------------------------------------------------


def test_parquet_archive_holds_the_same_layers(job, single):
    out = job.folder / "out" / "archive_parquet"
    cfg = pipeline.load_config(
        job.write(output={"path": str(out), "format": "parquet"}, partition={"by": "county"})
    )
    pipeline.run_survey(cfg, overwrite=True)
    assert sorted(p.name for p in (out / arc.PIECES).iterdir()) == sorted(
        f"{c}.parquet" for c in COUNTIES
    )
    pieces = gpd.read_parquet(out / arc.PIECES)
    pieces = pieces.sort_values("DABH").reset_index(drop=True)
    expected = single[arc.PIECES]
    assert pieces["DABH"].tolist() == expected["DABH"].tolist()
    assert np.array_equal(pieces["TBDLMJ"].to_numpy(), expected["TBDLMJ"].to_numpy())
    balance = pd.read_parquet(out / f"{arc.BALANCE}.parquet")
    pd.testing.assert_frame_equal(balance, single[arc.BALANCE], check_dtype=False)
    # the layers streamed group by group are GeoParquet, as the others
    for name in (arc.OUTSIDE_FARMLAND, arc.ZONING_CONFLICTS, arc.OCCUPATION, arc.ILLEGAL):
        layer = gpd.read_parquet(out / f"{name}.parquet")
        assert len(layer) > 0 and layer.crs.equals(single[name].crs)
        assert_geodataframe_equal(layer, single[name], check_dtype=False)


def test_config_keys(job, tmp_path):
    from pipeline.errors import ConfigError

    three_county_job(job)
    cfg = pipeline.load_config(job.write())
    assert cfg.partition.by == "none" and cfg.output.format == "gpkg" and cfg.output.crs is None
    with pytest.raises(ConfigError, match=r"partition\.by: expected one of"):
        pipeline.load_config(job.write(partition={"by": "province"}))
    with pytest.raises(ConfigError, match=r"partition\.grid_size_m"):
        pipeline.load_config(job.write(partition={"by": "grid", "grid_size_m": 0}))
    with pytest.raises(ConfigError, match=r"output\.format"):
        pipeline.load_config(job.write(output={"path": "x.gpkg", "format": "csv"}))
    with pytest.raises(ConfigError, match=r"output\.crs"):
        pipeline.load_config(job.write(output={"path": "x.gpkg", "crs": "EPSG:99999999"}))


def test_merge_keeps_text_columns_compact():
    """A partition without pieces has untyped columns; merged with the others they must not
    turn the text columns into Python objects."""
    from pipeline.runner import PartialResult, _fields, _rows

    full = pd.DataFrame({"BSM": pd.array(["1", "2"], dtype="str"), "MJ": [1.0, 2.0]})
    empty = pd.DataFrame({"BSM": pd.Series([], dtype=object), "MJ": pd.Series([], dtype=float)})
    parts = [
        PartialResult("a", CRS, layers={"T": empty, "B": empty}),
        PartialResult("b", CRS, layers={"T": full, "B": full}),
    ]
    merged = _fields(parts, "T")
    assert merged["BSM"].dtype == "str" and merged["_k"].tolist() == [1, 1]
    assert _rows(parts, "B")["BSM"].tolist() == ["1", "2"]


@pytest.mark.parametrize("kind", ["str", "object", "missing", "numbers"])
def test_rows_are_ordered_as_text_whatever_the_columns_hold(kind):
    """The merge's order (Arrow's sort where it can) is numpy's stable lexsort of the keys as
    text: code-point order beyond ASCII, ties in row order, missing values as 'None'/'nan'."""
    from pipeline.runner import _text_order

    rng = np.random.default_rng(7)
    words = np.array(["220122", "220183", "22012", "黑土", "黑", "Z", "a", ""], dtype=object)
    frame = pd.DataFrame(
        {
            "XZQDM": words[rng.integers(0, 3, 400)],
            "BSM": words[rng.integers(0, len(words), 400)],
            "TRBM": words[rng.integers(0, 4, 400)],
        }
    )
    if kind == "str":
        frame = frame.astype("str")
    elif kind == "missing":
        frame.loc[rng.integers(0, 400, 30), "BSM"] = None
    elif kind == "numbers":
        frame["TRBM"] = rng.integers(0, 20, 400)  # 10 before 9, as text
    keys = ("XZQDM", "BSM", "TRBM")
    expected = np.lexsort([frame[c].to_numpy().astype(str) for c in reversed(keys)])
    assert np.array_equal(_text_order(frame, keys), expected)


def test_old_numbers_are_the_last_seven_digits_or_none():
    from pipeline.runner import _old_numbers

    dabh = np.array(
        ["HT22012220240000012", None, "HT2201222024", "HT220122202400000x1", ""], object
    )
    got = _old_numbers(dabh)
    assert got[0] == 12 and got[2] == 1222024 and np.isnan(got[[1, 3, 4]]).all()
    assert np.isnan(_old_numbers(np.array([None, np.nan], dtype=object))).all()


def test_merge_groups_hold_whole_counties_in_code_order():
    """The merge goes one county at a time, in code order, with every partition that has rows
    of it (a partition across county lines gives its rows to each); counties next to each
    other with the same partitions go together."""
    from pipeline.runner import PartialResult, _merge_groups

    def part(*codes: str) -> PartialResult:
        frame = pd.DataFrame({"XZQDM": pd.array(codes, dtype="str")})
        return PartialResult("p", CRS, layers={arc.PIECES: frame, arc.BALANCE: frame.iloc[:0]})

    parts = [
        part("220104"),
        part("220102", "220103"),  # a grid cell across two counties
        part("220103"),  # the other part of 220103
        part("220106"),
        part("220105", "220107"),  # codes around 220106
        part(),  # nothing to merge by county
        part("220108", "220109"),  # one partition for two counties
    ]
    assert _merge_groups(parts) == [
        (["220102"], [1]),
        (["220103"], [1, 2]),
        (["220104"], [0]),
        (["220105"], [4]),
        (["220106"], [3]),
        (["220107"], [4]),
        (["220108", "220109"], [6]),
    ]


def test_layer_schema_takes_types_from_partitions_with_rows():
    from pipeline.runner import PartialResult, _layer_schema

    typed = pd.DataFrame(
        {"A": pd.array(["x"], dtype="str"), "B": [1.5], "C": [None], "D": [np.nan], "E": [1]}
    )
    other = pd.DataFrame({"A": ["y"], "B": [2.5], "C": [None], "D": ["text"], "E": [2.5]})
    empty = pd.DataFrame({"A": pd.Series([], dtype=object), "B": pd.Series([], dtype=object)})
    parts = [
        PartialResult("a", CRS, layers={"T": empty}),
        PartialResult("b", CRS, layers={"T": typed}),
        PartialResult("c", CRS, layers={"T": other}),
    ]
    schema = _layer_schema(parts, "T")
    assert schema.names == ["A", "B", "C", "D", "E"]
    assert pa.types.is_floating(schema.field("B").type)
    assert pa.types.is_string(schema.field("C").type)  # no value anywhere: text
    assert pa.types.is_string(schema.field("D").type)  # NaN in one, text in the other
    assert pa.types.is_floating(schema.field("E").type)  # integers and decimals


def test_county_summary_counts_parcels_of_two_counties_with_one_bsm_twice():
    """BSM is unique within a county's parcels only: the grand total's source parcels (YTBGS)
    add up the counties' and equal the sum of the county rows, as every other total does."""
    from pipeline.runner import county_rows, county_table

    pieces = pd.DataFrame(
        {
            "DABH": ["a", "b", "c"],
            "BSM": ["1", "1", "1"],
            "XZQDM": ["220102", "220102", "220103"],
            "TL": ["黑土", "黑钙土", "黑土"],
            "MJ": [100.0, 50.0, 30.0],
            "TBMJ": [100.0, 50.0, 30.0],
            "TBDLMJ": [90.0, 45.0, 27.0],
        }
    )
    balance = pd.DataFrame(
        {"XZQDM": ["220102", "220103"], "TBMJ": [150.0, 60.0], "TBDLMJ": [135.0, 54.0]}
    )
    columns = list(pieces.columns)
    out = county_table([county_rows(pieces, balance, columns)], columns, {})
    out = out.set_index(["XZQDM", "TL"])
    assert out.loc[("220102", "合计"), "YTBGS"] == 1
    assert out.loc[("合计", "合计"), "YTBGS"] == 2
    assert out.loc[("合计", "合计"), "TBGS"] == 3
    assert out.loc[("合计", "合计"), "TBDLMJ"] == 162.0
    assert out.loc[("合计", "合计"), "GDTBDLMJ"] == 189.0


def test_merge_reads_the_pieces_one_county_at_a_time_as_they_are_written(job, monkeypatch):
    """The driver's memory is bounded by a county, not the province: while HTGDTB is written,
    each chunk of a county comes after reading only that county's partitions (parts of a split
    county included)."""
    from pipeline import runner

    three_county_job(job)
    events: list[tuple[str, str]] = []
    fields, chunks = runner.PartialResult.fields, runner._GroupMerge._chunks

    def logged_fields(self, name, columns=None):
        if name == arc.PIECES and columns is None:  # the whole fields, as written
            events.append(("read", self.name.split("_")[0]))
        return fields(self, name, columns)

    def logged_chunks(self, frame, name, spatial):
        if name == arc.PIECES:
            (county,) = set(frame["XZQDM"])
            events.append(("chunk", county))
        yield from chunks(self, frame, name, spatial)

    monkeypatch.setattr(runner.PartialResult, "fields", logged_fields)
    monkeypatch.setattr(runner._GroupMerge, "_chunks", logged_chunks)
    survey(job, "parted", config={"partition": {"by": "county", "max_parcels": 5}})
    written = [county for kind, county in events if kind == "chunk"]
    assert written == sorted(COUNTIES)
    pending: list[str] = []
    for kind, county in events:
        if kind == "read":
            pending.append(county)
        else:
            assert pending and set(pending) == {county}, (county, pending)
            pending = []
    assert len([e for e in events if e[0] == "read"]) > len(COUNTIES)  # split counties


def test_summaries_are_the_same_asked_before_or_after_the_layers_are_written(job, single):
    """The summaries and checks are added up from each group as the pieces and the balance are
    written; asked for first, they read the groups themselves, and come out the same."""
    from pipeline import runner
    from pipeline.partitions import plan_partitions

    cfg_extra = {"partition": {"by": "county"}}
    work = stop_before_merging(job, "asked", cfg_extra)
    cfg = pipeline.load_config(
        job.write(output={"path": str(job.folder / "out" / "asked.gpkg")}, **cfg_extra)
    )
    plan = plan_partitions(cfg)
    partials = [runner._read_partial(work / p.name) for p in plan]

    first = runner.merge_partials(cfg, partials).groups  # nothing written yet
    asked = (first.county_summary(), first.conservation(), first.reconciliation())
    after = runner.merge_partials(cfg, partials).groups
    for stream in (after.stream(arc.PIECES), after.stream(arc.BALANCE)):
        for _ in stream.chunks():
            pass
    assert sorted(after.county_parts) == sorted(first.county_parts) == list(range(3))
    written = (after.county_summary(), after.conservation(), after.reconciliation())
    pd.testing.assert_frame_equal(asked[0], written[0])
    assert asked[1:] == written[1:]
    pd.testing.assert_frame_equal(
        written[0], single[arc.COUNTY_SUMMARY], check_dtype=False, check_exact=False
    )


def test_grid_cells_across_county_lines_are_merged_one_county_at_a_time(job, single, monkeypatch):
    """With a grid, cells cross county lines: the merge still goes a county at a time (each
    cell gives its rows of that county), so the driver holds a county, not the job, and the
    archive is the same."""
    from pipeline import runner

    merges: list[runner._GroupMerge] = []
    chunks = runner._GroupMerge._chunks
    written: list[str] = []

    def logged_chunks(self, frame, name, spatial):
        if not merges or merges[-1] is not self:
            merges.append(self)
        if name == arc.PIECES:
            (county,) = set(frame["XZQDM"])
            written.append(county)
        yield from chunks(self, frame, name, spatial)

    monkeypatch.setattr(runner._GroupMerge, "_chunks", logged_chunks)
    parted = survey(job, "grid", config={"partition": {"by": "grid", "grid_size_m": 250}})
    assert_same_archive(single, parted)
    (merge,) = merges
    assert merge.shared  # cells with rows of two counties
    assert merge.codes == [[c] for c in sorted(COUNTIES)]
    assert written == sorted(COUNTIES)  # one chunk a county: the demo counties are small


def test_a_row_of_no_county_group_stops_the_merge():
    """A row of a partition across county lines whose county has no pieces or balance rows
    falls in no group: the merge says so instead of leaving it out."""
    import pyproj

    from pipeline.runner import PartialResult, _GroupMerge

    def partial(codes: list[str], bsm: list[str], outside: list[str]) -> PartialResult:
        numbers = [f"HT{c}20240000001" for c in codes]
        pieces = pd.DataFrame(
            {
                "DABH": numbers,
                "BSM": bsm,
                "XZQDM": pd.array(codes, dtype="str"),
                "TRBM": "a",
                "TL": "黑土",
                "TBDLMJ": 1.0,
            }
        )
        layers = {arc.PIECES: pieces, arc.BALANCE: pieces[["XZQDM", "BSM"]]}
        if outside:
            layers[arc.OUTSIDE_FARMLAND] = pd.DataFrame(
                {"DABH": [f"HT{c}20240000001" for c in outside], "XZQDM": outside}
            )
        return PartialResult("cell", CRS, layers=layers)

    cells = [
        partial(["220102", "220103"], ["1", "2"], ["220102", "220199"]),  # 220199: no pieces
        partial(["220103"], ["3"], []),
    ]
    merge = _GroupMerge(cells, 2024, pyproj.CRS(CRS), False, {})
    assert merge.shared == {0} and merge.codes == [["220102"], ["220103"]]
    with pytest.raises(InvariantError, match=r"layer HTGD_DNRHX: 1 of 2 rows merged"):
        list(merge.stream(arc.OUTSIDE_FARMLAND).chunks())
