"""Protection status and conflicts: known answers on hand-built layouts, and the add-up rule.

Every layout is in metres around (X0, Y0); a parcel of 100 m × 100 m has TBMJ 10000 m².
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from conftest import CRS, box, parcels_frame, run, soil_frame
from pipeline import protection as protection_module
from pipeline.overlay import safe_difference
from pipeline.protection import (
    ADDED,
    CONSTRUCTION,
    DIGGING,
    OTHER_LOSS,
    STATUS_IN,
    STATUS_OUT,
    STATUS_PART,
    ProtectionRules,
    classify_changes,
    outside_of_zones,
    split_by_zones,
)


def zones(rows: list[dict]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)


def black_everywhere(job) -> None:
    job.layer("soil", soil_frame([("黑土", box(-500, -500, 1000, 1000))]), "TRTB")


def two_black_pieces(job) -> None:
    """Two 100 × 100 m parcels side by side, black soil everywhere: two pieces of 10,000 m²."""
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0},
                {"geometry": box(100, 0, 200, 100), "TBMJ": 10000.0},
            ]
        ),
        "DLTB",
    )
    black_everywhere(job)


def cents(values) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float) * 100).astype(np.int64)


# --- the splitting rule itself -----------------------------------------------------------------


def test_split_shares_official_areas_to_the_cent():
    piece = np.array([shapely.box(0, 0, 30, 10)])
    # three zone parts of 1/3 each would give 33.333...: the cents go by largest remainder
    zones_ = np.array([shapely.box(0, -1, 10, 11), shapely.box(10, -1, 20, 11)])
    s = split_by_zones(piece, np.array([100.0]), np.array([10.0]), zones_)
    assert s.tbmj.tolist() == [33.34, 33.33] and s.out_tbmj.tolist() == [33.33]
    assert s.kcmj.tolist() == [3.34, 3.33] and s.out_kcmj.tolist() == [3.33]
    assert s.tbdlmj.tolist() == [30.0, 30.0] and s.out_tbdlmj.tolist() == [30.0]
    assert s.share[0] == pytest.approx(2 / 3)
    assert shapely.area(s.out_geometry[0]) == pytest.approx(100.0)


def test_split_merges_a_boundary_sliver_into_the_inside():
    piece = np.array([shapely.box(0, 0, 100, 100)])
    # the zone follows the parcel edge 1 mm short: a 0.1 m² remainder is digitising noise
    zone = np.array([shapely.box(0.001, -1, 101, 101)])
    s = split_by_zones(piece, np.array([10000.0]), np.array([0.0]), zone, min_area=0.5)
    assert len(s.out_piece) == 0 and s.merged_slivers == 1
    assert s.tbmj.tolist() == [10000.0] and s.share.tolist() == [1.0]
    s = split_by_zones(piece, np.array([10000.0]), np.array([0.0]), zone, min_area=0.0)
    assert s.out_tbmj.tolist() == [0.1] and s.tbmj.tolist() == [9999.9]


def test_outside_of_zones_known_answers():
    pieces = np.array(
        [
            shapely.box(0, 0, 100, 100),  # half inside Z1
            shapely.box(200, 0, 300, 100),  # inside Z2
            shapely.box(0, 200, 100, 300),  # clear of both
            shapely.box(400, 0, 500, 100),  # inside Z2 and Z3 together, wholly in neither
            shapely.box(600, 0, 700, 100),  # Z4 and Z5 overlap over it: 60 m wide, counted once
        ]
    )
    zones_ = np.array(
        [
            shapely.box(50, -10, 150, 110),
            shapely.box(190, -10, 450, 110),
            shapely.box(450, -10, 510, 110),
            shapely.box(600, -10, 640, 110),
            shapely.box(620, -10, 660, 110),
        ]
    )
    tbmj = np.array([10000.0, 10000.0, 10002.0, 9000.0, 10000.0])
    s = outside_of_zones(pieces, tbmj, np.zeros(5), zones_)
    assert s.out_piece.tolist() == [0, 2, 4]
    assert s.out_tbmj.tolist() == [5000.0, 10002.0, 4000.0]
    assert shapely.area(s.out_geometry).tolist() == [5000.0, 10000.0, 4000.0]
    assert shapely.equals(s.out_geometry[0], shapely.box(0, 0, 50, 100))
    assert s.piece.tolist() == [0, 1, 3, 4] and s.tbmj.tolist() == [5000.0, 10000.0, 9000.0, 6000.0]
    assert s.share.tolist() == [0.5, 1.0, 0.0, 1.0, 0.6]
    assert s.overlaps.tolist() == [[4, 3]]  # Z5 overlaps the earlier Z4 inside piece 4


def test_outside_of_zones_needs_no_difference_for_a_piece_on_the_zone_boundary(monkeypatch):
    # the red line drawn along the parcels' edges: the first piece is inside it, sharing three
    # edges; only the second, half outside, is cut
    pieces = np.array([shapely.box(0, 0, 100, 100), shapely.box(100, 0, 200, 100)])
    zone = np.array([shapely.box(0, 0, 150, 100)])
    cut: list[int] = []

    def counted(a, b):
        cut.append(len(a))
        return safe_difference(a, b)

    monkeypatch.setattr(protection_module, "safe_difference", counted)
    s = outside_of_zones(pieces, np.array([10000.0, 10000.0]), np.zeros(2), zone)
    assert sum(cut) == 1  # the second piece only
    assert s.out_piece.tolist() == [1] and s.out_tbmj.tolist() == [5000.0]
    assert s.share.tolist() == [1.0, 0.5]


def test_outside_of_zones_agrees_with_split_by_zones():
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 900, (60, 2))
    pieces = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + 60, xy[:, 1] + 45)
    pieces = shapely.difference(pieces, shapely.buffer(shapely.points(xy + 30), 8))  # with holes
    centres = rng.uniform(0, 900, (12, 2))
    zones_ = shapely.buffer(shapely.points(centres), rng.uniform(60, 160, 12), quad_segs=64)
    tbmj = np.round(shapely.area(pieces), 2)
    a = split_by_zones(pieces, tbmj, np.zeros(60), zones_)
    b = outside_of_zones(pieces, tbmj, np.zeros(60), zones_)
    assert a.out_piece.tolist() == b.out_piece.tolist()
    assert np.allclose(shapely.area(a.out_geometry), shapely.area(b.out_geometry), atol=1e-6)
    assert np.allclose(a.share, b.share, atol=1e-9)
    assert a.overlaps.tolist() == b.overlaps.tolist() and len(b.overlaps) > 0
    # every piece: inside plus outside add up to its TBMJ
    total = np.bincount(b.piece, b.tbmj, minlength=60) + np.bincount(
        b.out_piece, b.out_tbmj, minlength=60
    )
    assert np.allclose(total, tbmj, atol=1e-9)


def test_classify_changes():
    rules = ProtectionRules(construction_codes=("0702", "0602"), digging_codes=("1206", "0602"))
    before = np.array(["0103", "0101", "0103", "0301", "0103", "0301", "0103"], dtype=object)
    after = np.array(["0702", "0602", "1206", "0102", "0301", "0404", "0101"], dtype=object)
    assert classify_changes(before, after, rules).tolist() == [
        CONSTRUCTION,
        DIGGING,  # 采矿用地 is both: digging-out wins
        DIGGING,
        ADDED,
        OTHER_LOSS,
        "",
        "",
    ]


# --- basic farmland ----------------------------------------------------------------------------


@pytest.fixture
def farmland_job(job):
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0, "KCXS": 0.1},  # half inside
                {"geometry": box(100, 0, 200, 100), "TBMJ": 10000.0},  # inside
                {"geometry": box(0, 100, 100, 200), "TBMJ": 10002.0},  # outside
            ]
        ),
        "DLTB",
    )
    black_everywhere(job)
    job.layer(
        "basic_farmland",
        zones([{"YJJBNTTBBH": "J1", "geometry": box(50, -10, 250, 100)}]),
        "YJJBNTTB",
    )
    return job


def test_piece_half_inside_basic_farmland(farmland_job):
    _, layers = run(farmland_job)
    pieces = layers["HTGDTB"].set_index("BSM").sort_index()
    assert pieces["JBNT_MJ"].tolist() == [4500.0, 10000.0, 0.0]
    assert pieces["JBNT_ZB"].tolist() == [0.5, 1.0, 0.0]
    assert pieces["SFWJBNT"].tolist() == [1, 0, 1]
    assert pieces["BHZT"].tolist() == [STATUS_PART, STATUS_IN, STATUS_OUT]

    outside = layers["HTGD_DNRHX"].sort_values("BSM")
    assert outside["BSM"].tolist() == [pieces.index[0], pieces.index[2]]
    assert outside["MJ"].tolist() == [5000.0, 10000.0]
    assert outside["TBMJ"].tolist() == [5000.0, 10002.0]
    assert outside["KCMJ"].tolist() == [500.0, 0.0]
    assert outside["TBDLMJ"].tolist() == [4500.0, 10002.0]
    assert outside["WZB"].tolist() == [0.5, 1.0]
    # the outside part is its own geometry: the west half of the first parcel
    first = outside.geometry.iloc[0]
    assert first.area == pytest.approx(5000.0)
    assert first.equals(box(0, 0, 50, 100).normalize()) or first.symmetric_difference(
        box(0, 0, 50, 100)
    ).area == pytest.approx(0.0, abs=1e-6)

    summary = layers["HTGD_XZQHZ"]
    total = summary[(summary["XZQDM"] == "220122") & (summary["TL"] == "合计")].iloc[0]
    assert total["JBNT_MJ"] == 14500.0 and total["DNRHX_MJ"] == 14502.0
    assert total["JBNT_MJ"] + total["DNRHX_MJ"] == total["TBDLMJ"]


def test_inside_plus_outside_adds_up_to_every_piece(job):
    rng = np.random.default_rng(7)
    rows = []
    for i in range(6):
        for j in range(6):
            x, y = 50.0 * i, 50.0 * j
            rows.append(
                {
                    "geometry": box(x, y, x + 50, y + 50),
                    "TBMJ": round(2500 * rng.uniform(0.97, 1.03), 2),
                    "KCXS": float(rng.choice([0.0, 0.0123, 0.08])),
                }
            )
    job.layer("parcels", parcels_frame(rows), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑土", box(-10, -10, 137, 310)), ("黑钙土", box(137, -10, 310, 310))]),
        "TRTB",
    )
    star = shapely.Polygon(
        [(X + 150 + r * np.cos(a), Y + 150 + r * np.sin(a)) for a, r in _star(40)]
    )
    job.layer("basic_farmland", zones([{"geometry": star}]), "YJJBNTTB")
    _, layers = run(job)
    pieces = layers["HTGDTB"].set_index("DABH")
    outside = layers["HTGD_DNRHX"].groupby("DABH")[["TBMJ", "KCMJ", "TBDLMJ", "MJ"]].sum()
    outside = outside.reindex(pieces.index, fill_value=0.0)
    assert (outside["TBMJ"] > 0).any() and (pieces["JBNT_MJ"] > 0).any()
    np.testing.assert_array_equal(
        cents(pieces["JBNT_MJ"]) + cents(outside["TBDLMJ"]), cents(pieces["TBDLMJ"])
    )
    outside_area = layers["HTGD_DNRHX"].set_index("DABH").area.groupby(level=0).sum()
    inside = pieces["JBNT_ZB"] * pieces["MJ"]
    np.testing.assert_allclose(
        inside + outside_area.reindex(pieces.index, fill_value=0.0), pieces["MJ"], rtol=1e-4
    )


X, Y = 42_500_000.0, 4_870_000.0


def _star(n: int) -> list[tuple[float, float]]:
    return [(2 * np.pi * k / n, 170.0 if k % 2 else 60.0) for k in range(n)]


# --- urban development boundary and ecological red line ---------------------------------------


def test_zoning_conflicts_with_zone_attributes(job):
    two_black_pieces(job)
    job.layer(
        "urban_boundary",
        zones([{"GHFQDM": "10", "GHFQMC": "集中建设区", "geometry": box(0, 0, 25, 100)}]),
        "CZKFBJ",
    )
    job.layer(
        "ecological_redline",
        zones(
            [
                {
                    "HXBM": "E1",
                    "HXMC": "水源涵养区",
                    "HXLX": "水源涵养",
                    "geometry": box(150, 0, 210, 100),
                },
                # overlaps E1 on x 150-170: the shared area stays with E1 (earlier in the file)
                {
                    "HXBM": "E2",
                    "HXMC": "生物多样性区",
                    "HXLX": "生物多样性维护",
                    "geometry": box(130, 0, 170, 100),
                },
            ]
        ),
        "STBHHX",
    )
    _, layers = run(job)
    pieces = layers["HTGDTB"].sort_values("BSM")
    assert pieces["CZKF_MJ"].tolist() == [2500.0, 0.0]
    assert pieces["SFCZKF"].tolist() == [1, 0]
    assert pieces["STHX_MJ"].tolist() == [0.0, 7000.0]
    assert pieces["STHX_ZB"].tolist() == [0.0, 0.7]
    assert pieces["SFSTHX"].tolist() == [0, 1]
    ghct = layers["HTGD_GHCT"].sort_values(["FQLX", "FQBM"]).fillna({"FQLB": ""})
    assert ghct[["FQLX", "FQBM", "FQMC", "FQLB", "TBDLMJ"]].values.tolist() == [
        ["城镇开发边界", "10", "集中建设区", "", 2500.0],
        ["生态保护红线", "E1", "水源涵养区", "水源涵养", 5000.0],
        ["生态保护红线", "E2", "生物多样性区", "生物多样性维护", 2000.0],
    ]
    assert ghct.area.round(6).tolist() == [2500.0, 5000.0, 2000.0]
    qa = layers["HTGD_ZJJL"]
    assert ((qa["layer"] == "ecological_redline") & (qa["check"] == "overlap")).any()


# --- construction projects ---------------------------------------------------------------------


def test_project_covering_two_pieces(job):
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0, "KCXS": 0.1},
                {"geometry": box(100, 0, 200, 100), "TBMJ": 10000.0},
            ]
        ),
        "DLTB",
    )
    black_everywhere(job)
    job.layer(
        "construction",
        zones(
            [
                {
                    "XMMC": "甲项目",
                    "PZWH": "吉政土批〔2024〕1号",
                    "PZRQ": "2024-05-01",
                    "geometry": box(50, 20, 150, 60),
                },
                {"XMMC": "乙项目", "PZWH": "", "PZRQ": "", "geometry": box(140, 0, 160, 100)},
                {"XMMC": "丙项目", "PZWH": None, "PZRQ": None, "geometry": box(500, 500, 600, 600)},
            ]
        ),
        "JSXMYD",
    )
    _, layers = run(job)
    jszy = layers["HTGD_JSZY"].sort_values(["XMBH", "BSM"])
    assert jszy["XMMC"].tolist() == ["甲项目", "甲项目", "乙项目"]
    assert jszy["PZZT"].tolist() == ["已批准", "已批准", "未批准"]
    assert jszy["MJ"].tolist() == [2000.0, 2000.0, 2000.0]
    assert jszy["TBDLMJ"].tolist() == [1800.0, 2000.0, 2000.0]

    totals = layers["HTGD_JSZYHZ"].set_index("XMMC")
    assert totals.loc["甲项目", ["TBGS", "ZYMJ", "ZYTBDLMJ"]].tolist() == [2, 4000.0, 3800.0]
    assert totals.loc["乙项目", ["TBGS", "ZYTBDLMJ"]].tolist() == [1, 2000.0]
    assert totals.loc["丙项目", ["TBGS", "ZYTBDLMJ", "PZZT"]].tolist() == [0, 0.0, "未批准"]
    assert layers["HTGD_JSZYHZ"]["XMMC"].iloc[0] == "甲项目"  # largest first

    pieces = layers["HTGDTB"].sort_values("BSM")
    # the second piece: 2000 (甲) + 2000 (乙) − 400 (their overlap) = 3600 m² occupied, once
    assert pieces["JSZY_MJ"].tolist() == [1800.0, 3600.0]
    assert pieces["JSZY_ZB"].tolist() == [0.2, 0.36]
    assert pieces["SFJSZY"].tolist() == [1, 1]
    assert pieces["SFWPZY"].tolist() == [0, 1]


def test_project_total_adds_up_its_overlaps_to_the_cent(job):
    """ZYMJ is the sum of the project's overlaps (HTGD_JSZY MJ, each to the cent): 2000.004 m²
    twice makes 4000.00, not 4000.01, so it does not depend on how the pieces are split
    between partitions."""
    two_black_pieces(job)
    project = {"XMMC": "甲项目", "PZWH": "批1", "PZRQ": "2024-05-01"}
    project["geometry"] = box(50, 20, 150, 60.00008)  # 2000.004 m² on each piece
    job.layer("construction", zones([project]), "JSXMYD")
    _, layers = run(job)
    assert layers["HTGD_JSZY"]["MJ"].tolist() == [2000.0, 2000.0]
    assert layers["HTGD_JSZYHZ"]["ZYMJ"].tolist() == [4000.0]


# --- change parcels: illegal occupation, digging-out, 占补平衡 ------------------------------------


def change(bsm, before, after, geom, bgmj=10000.0, county="220122"):
    return {"BSM": bsm, "BGQDLBM": before, "BGHDLBM": after, "BGMJ": bgmj, "XZQDM": county,
            "geometry": geom}  # fmt: skip


@pytest.fixture
def change_job(job):
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0},
                {"geometry": box(100, 0, 200, 100), "DLBM": "0702", "DLMC": "农村宅基地"},
                {"geometry": box(200, 0, 300, 100), "DLBM": "0601", "DLMC": "工业用地"},
                {"geometry": box(0, 100, 100, 200), "DLBM": "1206", "DLMC": "裸土地"},
                {"geometry": box(0, 200, 100, 300), "TBMJ": 10000.0},  # new cultivated land
                {"geometry": box(100, 100, 200, 200), "DLBM": "0301", "DLMC": "乔木林地"},
            ]
        ),
        "DLTB",
    )
    job.layer(
        "soil",
        soil_frame([("黑土", box(-10, -10, 310, 250)), ("潮土", box(-10, 250, 310, 310))]),
        "TRTB",
    )
    job.layer(
        "changes",
        zones(
            [
                change("C1", "0103", "0702", box(100, 0, 200, 100)),  # 60 % approved: suspected
                change("C2", "0103", "0601", box(200, 0, 300, 100)),  # approved: fine
                change("C3", "0103", "1206", box(0, 100, 100, 200)),  # digging-out, no approval
                change("C4", "0404", "0103", box(0, 200, 100, 300)),  # added, half on black soil
                change("C5", "0102", "0301", box(100, 100, 200, 200)),  # 退耕还林: other loss
            ]
        ),
        "DLTBGX",
    )
    job.layer(
        "construction",
        zones(
            [
                {
                    "XMMC": "宅基地项目",
                    "PZWH": "批1",
                    "PZRQ": "2024-03-01",
                    "geometry": box(100, 0, 160, 100),
                },
                {
                    "XMMC": "工业园项目",
                    "PZWH": "批2",
                    "PZRQ": "2024-04-01",
                    "geometry": box(200, -1, 301, 101),
                },
                {"XMMC": "未批项目", "PZWH": "", "PZRQ": "", "geometry": box(150, 0, 200, 50)},
            ]
        ),
        "JSXMYD",
    )
    return job


def test_change_parcels_with_and_without_an_approved_project(change_job):
    _, layers = run(change_job)
    wfzy = layers["HTGD_WFZY"].sort_values("BGBSM")
    assert wfzy["BGBSM"].tolist() == ["C1", "C3"]
    assert wfzy["LX"].tolist() == [CONSTRUCTION, DIGGING]
    assert wfzy["HTMJ"].tolist() == [10000.0, 10000.0]
    assert wfzy["PZFGBL"].tolist() == [0.6, 0.0]
    assert wfzy["PZXM"].tolist() == ["宅基地项目", ""]
    assert wfzy["WPXM"].tolist() == ["未批项目", ""]
    assert wfzy["TL"].tolist() == ["黑土", "黑土"]
    assert wfzy["BGQDLMC"].tolist() == ["旱地", "旱地"]
    assert wfzy["BGHDLMC"].tolist() == ["农村宅基地", "裸土地"]
    assert "60.0%" in wfzy["ZJ"].iloc[0]
    assert wfzy.area.round(6).tolist() == [10000.0, 10000.0]


def test_occupation_and_addition_balance_per_county(change_job):
    _, layers = run(change_job)
    zbph = layers["HTGD_ZBPH"].set_index("XZQDM")
    row = zbph.loc["220122"]
    assert row["ZYGDMJ"] == 30000.0  # C1 + C2 + C3
    assert row["ZYHTMJ"] == 30000.0
    assert row["JSZYHTMJ"] == 20000.0
    assert row["DWHTMJ"] == 10000.0
    assert row["WFZYHTMJ"] == 20000.0
    assert row["QTJSGDMJ"] == 10000.0  # C5
    assert row["BCGDMJ"] == 10000.0
    assert row["BCHTMJ"] == 5000.0  # C4 is half on 黑土, half on 潮土
    assert row["GDPHMJ"] == -20000.0
    assert row["HTPHMJ"] == -25000.0
    assert row["SFPH"] == "否"
    assert zbph.loc["合计", "HTPHMJ"] == -25000.0


def test_change_area_computed_when_missing_and_the_cover_reaches_past_the_parcels(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    black_everywhere(job)
    # the change parcel lies beyond every cultivated parcel: the soil cover must still reach it
    job.layer(
        "changes",
        zones([change("C9", "0103", "0702", box(300, 300, 400, 400), bgmj=None)]),
        "DLTBGX",
    )
    _, layers = run(job)
    wfzy = layers["HTGD_WFZY"]
    assert wfzy["BGBSM"].tolist() == ["C9"]
    assert wfzy["HTMJ"].iloc[0] == wfzy["BGMJ"].iloc[0]
    assert wfzy["BGMJ"].iloc[0] == pytest.approx(10000.0, rel=2e-3)
    qa = layers["HTGD_ZJJL"]
    assert ((qa["layer"] == "changes") & (qa["feature_id"] == "C9")).any()


def test_missing_inputs_skip_their_analyses(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    black_everywhere(job)
    _, layers = run(job)
    assert not {"HTGD_DNRHX", "HTGD_GHCT", "HTGD_JSZY", "HTGD_WFZY", "HTGD_ZBPH"} & set(layers)
    assert "JBNT_MJ" not in layers["HTGDTB"]
    meta = layers["HTGD_YXXX"].set_index("key")["value"]
    status = json.loads(meta["protection"])
    assert status == {
        "basic_farmland": "skipped: no inputs.basic_farmland",
        "urban_boundary": "skipped: no inputs.urban_boundary",
        "ecological_redline": "skipped: no inputs.ecological_redline",
        "construction": "skipped: no inputs.construction",
        "changes": "skipped: no inputs.changes",
    }
    fields = layers["HTGD_ZDZD"]
    assert not (fields["layer"] == "HTGD_WFZY").any()
    assert not ((fields["layer"] == "HTGDTB") & (fields["field"] == "JBNT_MJ")).any()


def test_change_codes_stored_as_numbers_keep_their_zeros(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    black_everywhere(job)
    frame = zones([change("C1", "0103", "0702", box(100, 0, 200, 100))])
    frame["BGQDLBM"] = 103
    frame["BGHDLBM"] = 702
    job.layer("changes", frame, "DLTBGX")
    _, layers = run(job)
    assert layers["HTGD_WFZY"]["BGQDLBM"].tolist() == ["0103"]
    assert layers["HTGD_WFZY"]["BGHDLBM"].tolist() == ["0702"]


def test_every_layer_has_titles_in_the_dictionary(change_job):
    _, layers = run(change_job)
    fields = layers["HTGD_ZDZD"]
    for name in ("HTGD_WFZY", "HTGD_ZBPH", "HTGD_JSZY", "HTGD_JSZYHZ"):
        have = set(pd.DataFrame(layers[name]).columns) - {"geometry"}
        titled = set(fields.loc[fields["layer"] == name, "field"])
        assert have == titled, name


def test_survey_command_prints_each_analysis(farmland_job):
    from click.testing import CliRunner

    from cli import cli

    path = farmland_job.write()
    result = CliRunner().invoke(cli, ["survey", str(path), "--overwrite", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "protection: in basic farmland 14,500.00 m²" in result.output
    assert "outside (to be put in the red line) 14,502.00 m² in 2 parts" in result.output
    assert "construction projects" not in result.output  # no such input: nothing claimed


def test_archive_keeps_the_surveyed_counties_boundaries(farmland_job):
    counties = gpd.GeoDataFrame(
        {
            "XZQDM": ["220122", "220183"],
            "XZQMC": ["农安县", "德惠市"],
            "geometry": [box(-50, -50, 300, 300), box(300, -50, 600, 300)],
        },
        crs=CRS,
    )
    farmland_job.layer("counties", counties, "XZQ")
    _, layers = run(farmland_job)
    xzq = layers["HTGD_XZQ"]
    # only the counties that have surveyed parcels, with their names, in the archive's CRS
    assert xzq["XZQDM"].tolist() == ["220122"] and xzq["XZQMC"].tolist() == ["农安县"]
    assert xzq.geometry.iloc[0].area == pytest.approx(350 * 350)
