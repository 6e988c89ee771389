"""Tests of the demo-data generator (pipeline.demo) on small generated data sets."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from pyproj import CRS, Transformer

from cli import cli
from pipeline.codes import (
    BLACK_SOIL_SUBTYPES,
    CONSTRUCTION_CODES,
    CULTIVATED_CODES,
    DIGGING_CODES,
    LANDUSE_NAMES,
)
from pipeline.demo import make_demo_data, make_next_year
from pipeline.errors import InputError, UsageError

COUNTIES = ("220122", "220183", "220113")
LAYERS = {
    "parcels": "DLTB",
    "soil": "TRTB",
    "counties": "XZQ",
    "region": "HTQY",
    "changes": "DLTBGX",
    "construction": "JSXMYD",
    "basic_farmland": "YJJBNTTB",
    "zoning": "CZKFBJ",
}
#: every layer of each file, in order
FILE_LAYERS = {**{k: [v] for k, v in LAYERS.items()}, "zoning": ["CZKFBJ", "STBHHX"]}
NEW_FIELDS = {
    ("changes", "DLTBGX"): ["BSM", "BGQDLBM", "BGHDLBM", "BGMJ", "XZQDM", "TBBSM", "BGXW"],
    ("construction", "JSXMYD"): ["XMMC", "PZWH", "PZRQ", "XZQDM"],
    ("basic_farmland", "YJJBNTTB"): ["YJJBNTTBBH", "XZQDM", "MJ"],
    ("zoning", "CZKFBJ"): ["GHFQDM", "GHFQMC", "XZQDM", "MJ"],
    ("zoning", "STBHHX"): ["HXBM", "HXMC", "HXLX", "XZQDM", "MJ"],
}
#: the layers a new year copies unchanged
SHARED = ("soil", "counties", "region", "basic_farmland", "zoning")
DLTB_FIELDS = [
    "BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
    "TBMJ", "KCXS", "KCMJ", "TBDLMJ", "GDLX", "GDPDJB", "GDDB", "SJNF",
]  # fmt: skip
TEXT_FIELDS = [
    "BSM", "YSDM", "TBBH", "DLBM", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWDM", "ZLDWMC",
    "GDLX", "GDPDJB",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_demo_data(tmp_path_factory.mktemp("demo"), parcels=300)


def read(paths: dict[str, Path], key: str, layer: str | None = None) -> pd.DataFrame:
    return pyogrio.read_dataframe(paths[key], layer=layer or LAYERS[key])


def test_files_and_layers(demo: dict[str, Path]) -> None:
    assert set(demo) == set(LAYERS)
    for key, layers in FILE_LAYERS.items():
        assert demo[key].name == f"{key}.gpkg"
        assert demo[key].is_file()
        assert [str(name) for name in pyogrio.list_layers(demo[key])[:, 0]] == layers
        for layer in layers:
            assert pyogrio.read_info(demo[key], layer=layer)["crs"] == "EPSG:4530"


def test_demo_inputs_name_the_written_layers(demo: dict[str, Path]) -> None:
    from pipeline.demo import DEMO_INPUTS, PROTECTION_INPUTS, demo_inputs

    folder = demo["parcels"].parent
    inputs = demo_inputs(folder)
    assert set(inputs) == set(DEMO_INPUTS) and set(PROTECTION_INPUTS) < set(inputs)
    for spec in inputs.values():
        assert spec["layer"] in FILE_LAYERS[Path(spec["path"]).stem]
        assert Path(spec["path"]).is_file()
    assert list(demo_inputs(folder, ("soil",))) == ["soil"]


def test_parcel_fields_are_text_where_survey_data_has_text(demo: dict[str, Path]) -> None:
    info = pyogrio.read_info(demo["parcels"], layer="DLTB")
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert list(info["fields"]) == DLTB_FIELDS
    assert all(types[f] == "OFTString" for f in TEXT_FIELDS)
    assert types["TBMJ"] == "OFTReal"
    assert types["SJNF"].startswith("OFTInteger")

    df = read(demo, "parcels")
    assert len(df) == 300
    assert df["BSM"].is_unique
    assert (df["BSM"].str.len() == 18).all()
    assert (df["YSDM"] == "2001010100").all()
    assert df["DLBM"].isin(list(LANDUSE_NAMES)).all()
    assert df["DLBM"].str.startswith("0").any()  # leading zeros kept: "0103", not 103
    assert (df["DLMC"] == df["DLBM"].map(LANDUSE_NAMES)).all()
    assert (df["ZLDWDM"].str.len() == 19).all() and (df["QSDWDM"].str.len() == 19).all()
    assert df["ZLDWMC"].str.endswith("村").all()
    assert df["QSXZ"].isin(["10", "20", "30"]).all()
    assert (df["SJNF"] == 2024).all()
    # TBBH numbers the parcels of each village 1, 2, ...
    for _, tbbh in df.groupby("ZLDWDM")["TBBH"]:
        assert sorted(tbbh.astype(int)) == list(range(1, len(tbbh) + 1))


def test_parcels_form_a_valid_partition(demo: dict[str, Path]) -> None:
    geoms = read(demo, "parcels").geometry.values
    assert shapely.is_valid(geoms).all()
    assert (shapely.get_type_id(geoms) == 3).all()
    area = shapely.area(geoms)
    union = shapely.area(shapely.union_all(geoms))
    assert abs(area.sum() - union) <= 1e-6 * union
    assert 1_000.0 < np.median(area) < 30_000.0  # 0.1-3 ha


def test_parcels_lie_in_their_county(demo: dict[str, Path]) -> None:
    parcels = read(demo, "parcels")
    counties = read(demo, "counties").set_index("XZQDM")
    assert list(counties.index) == list(COUNTIES)
    code = parcels["ZLDWDM"].str[:6]
    assert code.isin(COUNTIES).all()
    assert parcels["BSM"].str[:6].equals(code)
    geoms = parcels.geometry.values
    county = counties.geometry.loc[code].values
    outside = shapely.area(shapely.difference(geoms, county))
    assert (outside <= 1e-6 * shapely.area(geoms) + 1e-6).all()


def test_area_fields(demo: dict[str, Path]) -> None:
    df = read(demo, "parcels")
    planar = shapely.area(df.geometry.values)
    tbmj = df["TBMJ"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(tbmj)
    assert 0 < (~known).sum() <= 0.05 * len(df)
    assert np.all(np.abs(tbmj[known] / planar[known] - 1.0) < 0.005)
    kcxs = df["KCXS"].to_numpy()
    kcmj = df["KCMJ"].to_numpy(dtype=float, na_value=np.nan)
    tbdlmj = df["TBDLMJ"].to_numpy(dtype=float, na_value=np.nan)
    assert np.array_equal(np.isnan(kcmj), ~known) and np.array_equal(np.isnan(tbdlmj), ~known)
    assert np.allclose(kcmj[known], np.round(tbmj[known] * kcxs[known], 2), rtol=0, atol=1e-9)
    assert np.allclose(tbdlmj[known], np.round(tbmj[known] - kcmj[known], 2), rtol=0, atol=1e-9)
    assert ((kcxs >= 0) & (kcxs < 1) & (kcxs == np.round(kcxs, 4))).all()

    cultivated = df["DLBM"].isin(CULTIVATED_CODES).to_numpy()
    assert cultivated.mean() > 0.5
    assert df.loc[cultivated, "GDLX"].isin(["TT", "PD"]).all()
    assert df.loc[cultivated, "GDPDJB"].isin(["1", "2", "3", "4", "5"]).all()
    assert df.loc[cultivated, "GDDB"].between(1, 15).all()
    assert (df.loc[~cultivated, ["GDLX", "GDPDJB"]] == "").all().all()
    assert df.loc[~cultivated, "GDDB"].isna().all()
    assert (kcxs[~cultivated | (df["GDPDJB"] == "1").to_numpy()] == 0).all()


def test_tbmj_is_the_geodesic_area(demo: dict[str, Path]) -> None:
    df = read(demo, "parcels").dropna(subset=["TBMJ"]).head(100)
    to_geo = Transformer.from_crs(df.crs, "EPSG:4490", always_xy=True)
    geod = CRS.from_epsg(4490).get_geod()
    lonlat = shapely.transform(
        df.geometry.values, lambda c: np.column_stack(to_geo.transform(c[:, 0], c[:, 1]))
    )
    geodesic = np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in lonlat])
    assert np.allclose(df["TBMJ"].to_numpy(dtype=float), geodesic, rtol=1e-7, atol=0.006)


def test_soil_map(demo: dict[str, Path]) -> None:
    soil = read(demo, "soil")
    assert list(soil.columns) == ["TRBM", "TL", "YL", "TS", "TZ", "geometry"]
    assert soil["TRBM"].is_unique
    assert 5 <= len(soil) <= 100
    geoms = soil.geometry.values
    assert shapely.is_valid(geoms).all()
    area = shapely.area(geoms)
    covered = shapely.union_all(geoms)
    assert abs(area.sum() - covered.area) <= 1e-6 * covered.area
    assert shapely.get_num_coordinates(geoms).mean() > 100  # digitised-looking boundaries
    black = soil["YL"].map(BLACK_SOIL_SUBTYPES)
    assert (black.dropna() == soil.loc[black.notna(), "TL"]).all()
    assert black.notna().any()
    # unmapped holes inside the parcel block
    parcels = shapely.union_all(read(demo, "parcels").geometry.values)
    gap = shapely.area(shapely.difference(parcels, covered))
    assert gap > 1_000.0


def test_region(demo: dict[str, Path]) -> None:
    region = read(demo, "region")
    assert len(region) == 1
    assert region["QYMC"].tolist() == ["黑土区"]
    geom = region.geometry.values[0]
    parcels = read(demo, "parcels").geometry.values
    inside = shapely.within(parcels, geom)
    outside = ~shapely.intersects(parcels, geom)
    assert inside.mean() > 0.5
    assert outside.any()
    assert (~inside & ~outside).any()  # some parcels are cut by the boundary


def test_same_seed_same_files_other_seed_other_data(tmp_path: Path) -> None:
    a = make_demo_data(tmp_path / "a", parcels=200, seed=7)
    b = make_demo_data(tmp_path / "b", parcels=200, seed=7)
    c = make_demo_data(tmp_path / "c", parcels=200, seed=8)
    for key in LAYERS:
        # byte for byte: the GeoPackages carry the survey year's end as their timestamp
        assert a[key].read_bytes() == b[key].read_bytes(), key
        if key != "counties":
            da, dc = read(a, key), read(c, key)
            assert not np.array_equal(
                shapely.to_wkb(da.geometry.values[:1]), shapely.to_wkb(dc.geometry.values[:1])
            )


def test_other_counties_get_their_own_zone(tmp_path: Path) -> None:
    paths = make_demo_data(tmp_path, parcels=40, counties=["222401"])  # 延吉市, 129.5°E
    df = read(paths, "parcels")
    assert df.crs.to_epsg() == 4531
    assert len(df) == 40
    assert (df["ZLDWDM"].str[:6] == "222401").all()


def test_unknown_county_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="999999"):
        make_demo_data(tmp_path, parcels=100, counties=["220122", "999999"])


def test_too_few_parcels_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--parcels must be at least 10"):
        make_demo_data(tmp_path, parcels=9)


# --------------------------------------------------------------------------------------------
# the year's changes, construction projects, basic farmland and zoning


def change_kinds(changes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of cultivated → construction, digging-out, and non-cultivated → cultivated."""
    before = changes["BGQDLBM"].isin(CULTIVATED_CODES).to_numpy()
    after = changes["BGHDLBM"]
    dig = before & after.isin(DIGGING_CODES).to_numpy()
    build = before & after.isin(CONSTRUCTION_CODES).to_numpy() & ~dig
    new = ~before & after.isin(CULTIVATED_CODES).to_numpy()
    return build, dig, new


def share_inside(geoms: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Share of each geometry's area inside the union of ``cover``."""
    if len(cover) == 0:
        return np.zeros(len(geoms))
    union = shapely.union_all(cover)
    return shapely.area(shapely.intersection(geoms, union)) / shapely.area(geoms)


def clusters_of(geoms: np.ndarray) -> np.ndarray:
    """Groups of touching change polygons (corners too), each as one geometry."""
    union = shapely.union_all(geoms)
    return shapely.intersection(
        shapely.get_parts(shapely.union_all(shapely.buffer(geoms, 0.5))), union
    )


def approved(projects: pd.DataFrame) -> np.ndarray:
    return (projects["PZWH"].fillna("") != "").to_numpy()


def test_new_layers_fields_and_geometry(demo: dict[str, Path]) -> None:
    for (key, layer), fields in NEW_FIELDS.items():
        info = pyogrio.read_info(demo[key], layer=layer)
        assert list(info["fields"]) == fields, layer
        types = dict(zip(info["fields"], info["ogr_types"], strict=True))
        for name in fields:
            numeric = name in ("BGMJ", "MJ")
            assert types[name] == ("OFTReal" if numeric else "OFTString"), (layer, name)
        df = read(demo, key, layer)
        assert len(df) > 0, layer
        geoms = df.geometry.values
        assert shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any(), layer
        assert np.isin(shapely.get_type_id(geoms), (3, 6)).all(), layer  # (multi)polygons
        assert df["XZQDM"].isin(COUNTIES).all(), layer


def test_change_parcels_are_the_dltb_parcels_after_the_change(demo: dict[str, Path]) -> None:
    changes = read(demo, "changes")
    parcels = read(demo, "parcels").set_index("BSM")
    assert changes["BSM"].is_unique and changes["TBBSM"].is_unique
    assert (changes["BSM"].str.len() == 18).all()
    assert (changes["BSM"].str[:10] == changes["XZQDM"] + "2024").all()
    assert (changes["BGXW"] == "变更").all()
    assert changes["TBBSM"].isin(parcels.index).all()
    mine = parcels.loc[changes["TBBSM"]]
    assert (changes["BGHDLBM"].to_numpy() == mine["DLBM"].to_numpy()).all()
    assert (changes["BGQDLBM"] != changes["BGHDLBM"]).all()
    for col in ("BGQDLBM", "BGHDLBM"):
        assert changes[col].isin(list(LANDUSE_NAMES)).all()  # text codes with leading zeros
    assert (changes["XZQDM"].to_numpy() == mine["ZLDWDM"].str[:6].to_numpy()).all()
    # the change polygon is the parcel; its area is TBMJ, or measured the same way
    assert shapely.equals_exact(changes.geometry.values, mine.geometry.values, 0.0).all()
    tbmj = mine["TBMJ"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(tbmj)
    assert np.array_equal(changes["BGMJ"].to_numpy()[known], tbmj[known])
    planar = shapely.area(changes.geometry.values)
    assert np.all(np.abs(changes["BGMJ"].to_numpy() / planar - 1.0) < 0.005)
    # the parcels not in the change layer are as generated: no cultivated construction there
    others = parcels.drop(index=changes["TBBSM"])
    assert not others["DLBM"].isin(["0601", "0508", "1004", "1001", "0810", "1206"]).any()


def test_each_kind_of_change_is_there(demo: dict[str, Path]) -> None:
    changes = read(demo, "changes")
    build, dig, new = change_kinds(changes)
    assert build.sum() >= 4 and dig.sum() > 0 and new.sum() > 0
    assert (build | dig | new).all()  # nothing else changes
    assert changes.loc[new, "BGHDLBM"].isin(["0101", "0103"]).all()
    # most construction grows out of villages and roads: clusters touch older construction
    parcels = read(demo, "parcels")
    old = parcels["DLBM"].isin(CONSTRUCTION_CODES) & ~parcels["BSM"].isin(changes["TBBSM"])
    clusters = clusters_of(changes.geometry.values[build])
    touching = shapely.STRtree(parcels.geometry.values[old.to_numpy()]).query(
        clusters, predicate="intersects"
    )[0]
    assert np.unique(touching).size >= 0.5 * clusters.size


def test_construction_projects_over_change_clusters(demo: dict[str, Path]) -> None:
    changes = read(demo, "changes")
    projects = read(demo, "construction")
    build, dig, _ = change_kinds(changes)
    ok = approved(projects)
    clusters = clusters_of(changes.geometry.values[build])
    by_approved = share_inside(clusters, projects.geometry.values[ok])
    by_other = share_inside(clusters, projects.geometry.values[~ok])
    by_any = share_inside(clusters, projects.geometry.values)
    assert (by_approved >= 0.95).any()  # approved
    assert ((by_other >= 0.95) & (by_approved < 0.01)).any()  # submitted, not approved
    assert (by_any < 0.01).any()  # no project: suspected illegal occupation
    assert ((by_approved > 0.4) & (by_approved < 0.8)).any()  # approved, but short of 95 %
    # digging out: mostly without a project
    dug = share_inside(changes.geometry.values[dig], projects.geometry.values)
    assert (dug < 0.01).sum() >= 0.5 * dig.sum()


def test_project_approvals(demo: dict[str, Path]) -> None:
    projects = read(demo, "construction")
    ok = approved(projects)
    assert ok.any() and (~ok).any()
    pzwh, pzrq = projects["PZWH"], projects["PZRQ"]
    # no approval: PZWH and PZRQ both empty or both null
    assert (pzwh[~ok].isna() | (pzwh[~ok] == "")).all()
    assert (pzrq.fillna("")[~ok] == "").all()
    assert pzwh[ok].str.fullmatch(r"(吉政土批|自然资函)〔20\d\d〕[1-9]\d*号").all()
    assert pzwh[ok].is_unique
    dates = pd.to_datetime(pzrq[ok], format="%Y-%m-%d")
    assert (dates.dt.year.astype(str).to_numpy() == pzwh[ok].str[5:9].to_numpy()).all()
    assert (dates <= pd.Timestamp("2024-12-31")).all()
    assert (projects["XMMC"].str.len() > 4).all()


def test_planned_projects_over_cultivated_land(demo: dict[str, Path]) -> None:
    projects = read(demo, "construction")
    parcels = read(demo, "parcels")
    changes = read(demo, "changes")
    geoms = projects.geometry.values
    cultivated = parcels.geometry.values[parcels["DLBM"].isin(CULTIVATED_CODES).to_numpy()]
    on_farmland = shapely.area(shapely.intersection(geoms, shapely.union_all(cultivated)))
    untouched = ~shapely.intersects(geoms, shapely.union_all(changes.geometry.values))
    assert ((on_farmland > 5_000.0) & untouched).sum() >= 2
    # they cross parcel boundaries, and some overlap one another
    crossed = shapely.STRtree(parcels.geometry.values).query(geoms, predicate="overlaps")[0]
    assert np.bincount(crossed, minlength=len(projects)).max() >= 3
    a, b = shapely.STRtree(geoms).query(geoms, predicate="overlaps")
    assert (a != b).any()


def test_basic_farmland(demo: dict[str, Path]) -> None:
    farmland = read(demo, "basic_farmland")
    parcels = read(demo, "parcels")
    changes = read(demo, "changes")
    geoms = farmland.geometry.values
    assert farmland["YJJBNTTBBH"].is_unique
    assert (farmland["YJJBNTTBBH"].str[:6] == farmland["XZQDM"]).all()
    assert np.allclose(farmland["MJ"], np.round(shapely.area(geoms), 2), rtol=0, atol=0.006)
    union = shapely.union_all(geoms)
    assert shapely.area(geoms).sum() == pytest.approx(shapely.area(union), rel=1e-6)  # no overlaps
    assert shapely.get_num_coordinates(geoms).max() > 200  # digitised, not the parcel corners

    cultivated = parcels.geometry.values[parcels["DLBM"].isin(CULTIVATED_CODES).to_numpy()]
    inside = share_inside(cultivated, geoms)
    area = shapely.area(cultivated)
    assert 0.6 < float((inside * area).sum() / area.sum()) < 0.97  # most, not all
    assert (inside < 0.01).sum() >= 5  # black-soil farmland outside basic farmland
    assert ((inside > 0.02) & (inside < 0.98)).sum() >= 5  # partly inside: boundary noise
    # this year's occupations were basic farmland (the red line was drawn before)
    build, dig, _ = change_kinds(changes)
    taken = changes.geometry.values[build | dig]
    inside = share_inside(taken, geoms)
    area = shapely.area(taken)
    assert (inside > 0.5).all() and (inside * area).sum() > 0.95 * area.sum()


def test_zoning(demo: dict[str, Path]) -> None:
    urban = read(demo, "zoning", "CZKFBJ")
    eco = read(demo, "zoning", "STBHHX")
    parcels = read(demo, "parcels")
    assert urban["GHFQDM"].isin(["10", "20", "30"]).all() and (urban["GHFQDM"] == "10").any()
    names = {"10": "集中建设区", "20": "弹性发展区", "30": "特别用途区"}
    assert (urban["GHFQMC"] == urban["GHFQDM"].map(names)).all()
    assert eco["HXBM"].is_unique
    assert eco["HXMC"].str.endswith("生态保护红线").all()
    assert eco["HXLX"].isin(["水源涵养", "生物多样性维护", "水土保持"]).all()
    assert all(
        m.endswith(k + "生态保护红线") for m, k in zip(eco["HXMC"], eco["HXLX"], strict=True)
    )
    for layer in (urban, eco):
        assert np.allclose(layer["MJ"], shapely.area(layer.geometry.values), atol=0.006)
    cultivated = shapely.union_all(
        parcels.geometry.values[parcels["DLBM"].isin(CULTIVATED_CODES).to_numpy()]
    )
    for layer in (urban, eco):
        assert shapely.area(shapely.intersection(layer.geometry.values, cultivated)).sum() > 1e4
    # 三区三线: the urban development boundary and the ecological red line do not overlap
    both = shapely.intersection(
        shapely.union_all(urban.geometry.values), shapely.union_all(eco.geometry.values)
    )
    assert shapely.area(both) < 1.0


# --------------------------------------------------------------------------------------------
# the next year


@pytest.fixture(scope="module")
def next_year(demo: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_next_year(demo["parcels"].parent, tmp_path_factory.mktemp("next"))


def test_next_year_files(demo: dict[str, Path], next_year: dict[str, Path]) -> None:
    assert set(next_year) == set(LAYERS)
    for key in SHARED:  # copied unchanged
        assert next_year[key].read_bytes() == demo[key].read_bytes(), key
    for key in ("parcels", "changes", "construction"):
        before = pyogrio.read_info(demo[key], layer=LAYERS[key])
        after = pyogrio.read_info(next_year[key], layer=LAYERS[key])
        assert list(after["fields"]) == list(before["fields"])
        assert list(after["ogr_types"]) == list(before["ogr_types"])
        assert after["crs"] == before["crs"]


def test_next_year_parcels_and_changes(demo: dict[str, Path], next_year: dict[str, Path]) -> None:
    old = read(demo, "parcels").set_index("BSM")
    new = read(next_year, "parcels").set_index("BSM")
    changes = read(next_year, "changes")
    assert (new["SJNF"] == 2025).all()
    assert sorted(new.index) == sorted(old.index)  # no parcel lost or gained
    new = new.loc[old.index]
    assert (changes["BSM"].str[:10] == changes["XZQDM"] + "2025").all()
    assert not changes["BSM"].isin(read(demo, "changes")["BSM"]).any()
    # the change layer holds exactly the parcels whose land class changed, before and after
    differs = new.index[new["DLBM"] != old["DLBM"]]
    assert sorted(changes["TBBSM"]) == sorted(differs)
    assert (changes["BGQDLBM"].to_numpy() == old.loc[changes["TBBSM"], "DLBM"].to_numpy()).all()
    assert (changes["BGHDLBM"].to_numpy() == new.loc[changes["TBBSM"], "DLBM"].to_numpy()).all()
    build, dig, fresh = change_kinds(changes)
    assert build.any() and dig.any() and fresh.any()
    assert (build | dig | fresh).all()
    # the parcels still form a partition
    geoms = new.geometry.values
    assert shapely.is_valid(geoms).all()
    assert shapely.area(geoms).sum() == pytest.approx(shapely.area(shapely.union_all(geoms)))


def test_next_year_redigitised_parcels(demo: dict[str, Path], next_year: dict[str, Path]) -> None:
    old = read(demo, "parcels").set_index("BSM")
    new = read(next_year, "parcels").set_index("BSM").loc[old.index]
    changes = read(next_year, "changes")
    moved = ~shapely.equals_exact(old.geometry.values, new.geometry.values, 0.0)
    assert moved.sum() >= 3
    ids = old.index[moved]
    assert not ids.isin(changes["TBBSM"]).any()  # same land class: not a change
    assert (new.loc[ids, "DLBM"] == old.loc[ids, "DLBM"]).all()
    # the same vertices, some moved by 0.1-1 m
    xy_old, at = shapely.get_coordinates(old.geometry.values[moved], return_index=True)
    xy_new = shapely.get_coordinates(new.geometry.values[moved])
    step = np.hypot(*(xy_new - xy_old).T)
    assert ((step == 0) | ((step >= 0.1 - 1e-3) & (step <= 1.0 + 1e-3))).all()
    assert (np.bincount(at, weights=step > 0) > 0).all()
    # areas measured again; the rest untouched
    tbmj_old = old.loc[ids, "TBMJ"].to_numpy(dtype=float, na_value=np.nan)
    tbmj_new = new.loc[ids, "TBMJ"].to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(tbmj_old)
    assert np.array_equal(np.isnan(tbmj_new), ~known)
    assert (tbmj_new[known] != tbmj_old[known]).any()
    planar = shapely.area(new.geometry.values[moved])
    assert np.all(np.abs(tbmj_new[known] / planar[known] - 1.0) < 0.005)
    kcmj = new.loc[ids, "KCMJ"].to_numpy(dtype=float, na_value=np.nan)[known]
    assert np.allclose(kcmj, np.round(tbmj_new[known] * new.loc[ids, "KCXS"][known], 2))
    same = ~moved & ~old.index.isin(changes["TBBSM"])
    cols = ["TBMJ", "KCMJ", "TBDLMJ", "DLBM", "GDDB"]
    pd.testing.assert_frame_equal(old.loc[same, cols], new.loc[same, cols])


def test_next_year_construction(demo: dict[str, Path], next_year: dict[str, Path]) -> None:
    old = read(demo, "construction")
    new = read(next_year, "construction")
    assert len(new) > len(old)
    pd.testing.assert_frame_equal(new.iloc[: len(old)], old)  # earlier projects unchanged
    ok = approved(new)
    assert new.loc[ok, "PZWH"].is_unique  # numbering continues the earlier approvals
    added = new.iloc[len(old) :]
    assert approved(added).any()
    changes = read(next_year, "changes")
    build, _, _ = change_kinds(changes)
    clusters = clusters_of(changes.geometry.values[build])
    by_any = share_inside(clusters, new.geometry.values)
    assert (by_any >= 0.95).any() and (by_any < 0.01).any()


def test_next_year_is_deterministic_and_checks_its_arguments(
    demo: dict[str, Path], next_year: dict[str, Path], tmp_path: Path
) -> None:
    src = demo["parcels"].parent
    again = make_next_year(src, tmp_path / "again")
    for key in LAYERS:
        assert again[key].read_bytes() == next_year[key].read_bytes(), key
    later = make_next_year(src, tmp_path / "2027", year=2027, seed=3)
    assert (read(later, "parcels")["SJNF"] == 2027).all()
    with pytest.raises(UsageError, match=r"--year must come after .* 2024"):
        make_next_year(src, tmp_path / "bad", year=2024)
    with pytest.raises(UsageError, match="source folder"):
        make_next_year(src, src)
    with pytest.raises(InputError, match="no such folder"):
        make_next_year(tmp_path / "missing", tmp_path / "out")
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(demo["parcels"], partial)
    with pytest.raises(InputError, match=r"construction\.gpkg: not found"):
        make_next_year(partial, tmp_path / "out")


def test_a_year_folder_without_shared_layers_makes_another_year(
    next_year: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    only = tmp_path / "2025"
    only.mkdir()
    for key in ("parcels", "changes", "construction"):
        shutil.copy(next_year[key], only)
    with caplog.at_level(logging.WARNING, logger="pipeline.demo"):
        paths = make_next_year(only, tmp_path / "2026")
    assert set(paths) == {"parcels", "changes", "construction"}
    assert sum("soil.gpkg: not found" in r.getMessage() for r in caplog.records) == 1
    assert (read(paths, "parcels")["SJNF"] == 2026).all()
    assert (read(paths, "changes")["BSM"].str[6:10] == "2026").all()


def test_cli_next_year(demo: dict[str, Path], tmp_path: Path) -> None:
    src = str(demo["parcels"].parent)
    runner = CliRunner()
    result = runner.invoke(cli, ["demo-data", "--next-year", src, "--out", str(tmp_path / "n")])
    assert result.exit_code == 0, result.output
    assert re.search(r"^changes: .*changes\.gpkg$", result.output, re.M)
    assert (tmp_path / "n" / "zoning.gpkg").is_file()
    result = runner.invoke(
        cli, ["demo-data", "--next-year", src, "--out", str(tmp_path / "m"), "--parcels", "50"]
    )
    assert result.exit_code == 2 and "--parcels cannot be used with --next-year" in result.output
    result = runner.invoke(cli, ["demo-data", "--next-year", src])
    assert result.exit_code == 2 and "give the output folder" in result.output
    result = runner.invoke(cli, ["demo-data", str(tmp_path / "y"), "--year", "2026"])
    assert result.exit_code == 2 and "--year applies only with --next-year" in result.output
