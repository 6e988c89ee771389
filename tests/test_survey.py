"""Known answers on tiny hand-built layouts: every area can be checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from conftest import box, parcels_frame, run, soil_frame
from pipeline.areas import ellipsoidal_area


def _by(frame: pd.DataFrame, key: str, value: str) -> pd.Series:
    rows = frame[frame[key] == value]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_parcel_half_on_black_soil(job):
    job.layer(
        "parcels",
        parcels_frame([{"geometry": box(0, 0, 100, 100), "TBMJ": 10000.00, "KCXS": 0.1}]),
        "DLTB",
    )
    job.layer(
        "soil",
        soil_frame([("黑土", box(-50, -50, 50, 150)), ("风沙土", box(50, -50, 150, 150))]),
        "TRTB",
    )
    outcome, layers = run(job)
    pieces = layers["HTGDTB"]
    assert len(pieces) == 1
    p = pieces.iloc[0]
    assert p["TL"] == "黑土" and p["TLDM"] == "C32"
    assert p["MJ"] == pytest.approx(5000.0, abs=1e-6)
    assert p["TBMJ"] == 5000.00 and p["KCMJ"] == 500.00 and p["TBDLMJ"] == 4500.00
    assert p["DLBM"] == "0103" and p["SJNF"] == 2024
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["HT_MJ"] == pytest.approx(5000.0) and bal["FHT_MJ"] == pytest.approx(5000.0)
    assert bal["WDT_MJ"] == pytest.approx(0.0, abs=1e-6)
    assert bal["HT_TBMJ"] + bal["FHT_TBMJ"] == 10000.00
    assert bal["KCMJ"] == 1000.00 and bal["TBDLMJ"] == 9000.00
    assert outcome.conservation["passed"]


def test_parcel_across_three_soil_polygons_allocates_cents(job):
    # three equal thirds of a 30 m x 10 m parcel whose official area is 100.00 m²
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 30, 10), "TBMJ": 100.00}]), "DLTB")
    job.layer(
        "soil",
        soil_frame(
            [
                ("黑土", box(-10, -10, 10, 20)),
                ("草甸土", box(10, -10, 20, 20)),
                ("黑钙土", box(20, -10, 40, 20)),
            ]
        ),
        "TRTB",
    )
    _, layers = run(job)
    pieces = layers["HTGDTB"].sort_values("TRBM")
    assert pieces["TL"].tolist() == ["黑土", "草甸土", "黑钙土"]
    assert pieces["MJ"].tolist() == pytest.approx([100.0, 100.0, 100.0])
    assert sorted(pieces["TBMJ"].tolist()) == [33.33, 33.33, 33.34]
    assert round(pieces["TBMJ"].sum(), 2) == 100.00
    # archive numbers: per county, in (BSM, soil id) order
    assert pieces["DABH"].tolist() == [f"HT2201222024{i:07d}" for i in (1, 2, 3)]


def test_gap_in_soil_map_is_unmapped(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑土", box(-50, -50, 70, 150)), ("风沙土", box(80, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job)
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["HT_MJ"] == pytest.approx(7000.0)
    assert bal["FHT_MJ"] == pytest.approx(2000.0)
    assert bal["WDT_MJ"] == pytest.approx(1000.0)
    assert bal["HT_TBMJ"] + bal["FHT_TBMJ"] + bal["WDT_TBMJ"] == pytest.approx(bal["TBMJ"], abs=0)
    qa = layers["HTGD_ZJJL"]
    assert (qa["problem"] == "gap in the soil map").any()


def test_soil_map_missing_entirely_counts_all_as_unmapped(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer("soil", soil_frame([("黑土", box(5000, 5000, 6000, 6000))]), "TRTB")
    _, layers = run(job)
    assert len(layers["HTGDTB"]) == 0
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["WDT_MJ"] == pytest.approx(10000.0)
    assert bal["BALANCED"] == 1


def test_overlapping_soil_polygons_first_wins(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    # 黑土 (first) covers x<60, 草甸土 (second) covers x>40: the overlap 40-60 stays 黑土
    job.layer(
        "soil",
        soil_frame([("黑土", box(-50, -50, 60, 150)), ("草甸土", box(40, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job)
    pieces = layers["HTGDTB"].set_index("TL")
    assert pieces.loc["黑土", "MJ"] == pytest.approx(6000.0)
    assert pieces.loc["草甸土", "MJ"] == pytest.approx(4000.0)
    qa = layers["HTGD_ZJJL"]
    assert ((qa["check"] == "overlap") & (qa["feature_id"] == "S002")).any()


def test_sliver_is_merged_and_counted(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    # the 风沙土 polygon takes a 0.001 m strip: a 0.1 m² sliver
    job.layer(
        "soil",
        soil_frame([("黑土", box(-50, -50, 99.999, 150)), ("风沙土", box(99.999, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job, min_piece_area=1.0)
    pieces = layers["HTGDTB"]
    assert len(pieces) == 1
    assert pieces.iloc[0]["MJ"] == pytest.approx(10000.0)
    assert pieces.iloc[0]["SBSL"] == 1
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["SLIVERS"] == 1 and bal["FHT_MJ"] == 0
    qa = layers["HTGD_ZJJL"]
    assert (qa["check"] == "sliver").sum() == 1


def test_sliver_kept_when_min_piece_area_is_zero(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑土", box(-50, -50, 99.999, 150)), ("风沙土", box(99.999, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job, min_piece_area=0.0)
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["FHT_MJ"] == pytest.approx(0.1, rel=1e-3)


def test_region_cuts_parcel_and_accounts_for_outside(job):
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0},
                {"geometry": box(500, 0, 600, 100)},
            ]
        ),
        "DLTB",
    )
    job.layer("soil", soil_frame([("黑土", box(-100, -100, 700, 200))]), "TRTB")
    import geopandas as gpd

    region = gpd.GeoDataFrame(
        {"QYMC": ["黑土区"]}, geometry=[box(-100, -100, 25, 200)], crs="EPSG:4530"
    )
    job.layer("region", region, "HTQY")
    outcome, layers = run(job)
    pieces = layers["HTGDTB"]
    assert len(pieces) == 1
    assert pieces.iloc[0]["MJ"] == pytest.approx(2500.0)
    assert pieces.iloc[0]["TBMJ"] == 2500.00
    bal = layers["HTGD_TBPH"]
    assert len(bal) == 1  # the second parcel lies outside the region: not surveyed, logged
    assert bal.iloc[0]["QYW_MJ"] == pytest.approx(7500.0)
    assert bal.iloc[0]["QYW_TBMJ"] == 7500.00
    assert outcome.counts["parcels_outside_region"] == 1
    qa = layers["HTGD_ZJJL"]
    assert (qa["problem"] == "parcel outside the black-soil region").sum() == 1


def test_missing_tbmj_uses_ellipsoidal_area(job):
    geom = box(0, 0, 200, 150)
    job.layer(
        "parcels", parcels_frame([{"geometry": geom, "TBMJ": np.nan, "_auto_tbmj": False}]), "DLTB"
    )
    job.layer("soil", soil_frame([("黑土", box(-100, -100, 300, 300))]), "TRTB")
    _, layers = run(job)
    expected = ellipsoidal_area(np.array([geom]), "EPSG:4530")[0]
    assert layers["HTGDTB"].iloc[0]["TBMJ"] == pytest.approx(expected, abs=0.005)
    assert abs(expected - 30000.0) / 30000.0 < 1e-3  # near the central meridian
    qa = layers["HTGD_ZJJL"]
    assert (qa["check"] == "field area").sum() == 1


def test_only_cultivated_parcels_are_surveyed(job):
    job.layer(
        "parcels",
        parcels_frame(
            [
                {"geometry": box(0, 0, 100, 100), "DLBM": "0101", "DLMC": "水田"},
                {"geometry": box(100, 0, 200, 100), "DLBM": "0702"},
                {"geometry": box(200, 0, 300, 100), "DLBM": "0301"},
            ]
        ),
        "DLTB",
    )
    job.layer("soil", soil_frame([("黑土", box(-100, -100, 400, 200))]), "TRTB")
    outcome, layers = run(job)
    assert layers["HTGDTB"]["DLBM"].tolist() == ["0101"]
    assert layers["HTGDTB"]["DLMC"].tolist() == ["水田"]
    assert outcome.counts["parcels_not_cultivated"] == 2


def test_subtype_names_map_to_their_group(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("草甸黑土", box(-50, -50, 50, 150)), ("C32", box(50, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job)
    assert layers["HTGDTB"]["TL"].tolist() == ["黑土", "黑土"]
    assert layers["HTGDTB"]["TRLX"].tolist() == ["草甸黑土", "C32"]


def test_custom_black_soil_table(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("厚层黑土", box(-50, -50, 50, 150)), ("黑钙土", box(50, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job, black_soil_types={"黑土": ["厚层黑土"]})
    assert layers["HTGDTB"]["TL"].tolist() == ["黑土"]  # 黑钙土 is not in this job's list


def test_county_summary_reconciles(job):
    rows = [
        {
            "geometry": box(i * 100, 0, i * 100 + 100, 100),
            "TBMJ": 10000.01 + i,
            "KCXS": 0.0283,
            "ZLDWDM": ("220122" if i < 3 else "220183") + "1001010000000",
        }
        for i in range(6)
    ]
    job.layer("parcels", parcels_frame(rows), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑土", box(-100, -100, 250, 200)), ("白浆土", box(250, -100, 700, 200))]),
        "TRTB",
    )
    _, layers = run(job)
    summary = layers["HTGD_XZQHZ"]
    pieces = layers["HTGDTB"]
    for code in ("220122", "220183"):
        total = _by(summary[summary["TL"] == "合计"], "XZQDM", code)
        assert total["TBDLMJ"] == pytest.approx(pieces.loc[pieces["XZQDM"] == code, "TBDLMJ"].sum())
        assert total["TBDLMJ_GQ"] == pytest.approx(total["TBDLMJ"] / 10000)
        assert total["TBDLMJ_MU"] == pytest.approx(total["TBDLMJ"] * 15 / 10000)
    grand = _by(summary, "XZQDM", "合计")
    assert grand["GDTBMJ"] == pytest.approx(sum(10000.01 + i for i in range(6)))
    assert grand["TBMJ"] == pytest.approx(grand["GDTBMJ"])  # everything lies on black soil
    # deductions: KCMJ = round(TBMJ * KCXS, 2) per parcel, pieces add up to it
    bal = layers["HTGD_TBPH"]
    expected = np.round(bal["TBMJ"].to_numpy() * 0.0283, 2)
    assert bal["KCMJ"].to_numpy() == pytest.approx(expected, abs=1e-9)


def test_parcel_with_hole_and_multipolygon(job):
    ring = shapely.difference(box(0, 0, 100, 100), box(40, 40, 60, 60))
    multi = shapely.union(box(200, 0, 250, 100), box(300, 0, 350, 100))
    job.layer("parcels", parcels_frame([{"geometry": ring}, {"geometry": multi}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑土", box(-100, -100, 225, 200)), ("风沙土", box(225, -100, 500, 200))]),
        "TRTB",
    )
    _, layers = run(job)
    pieces = layers["HTGDTB"].set_index("BSM")
    assert pieces["MJ"].tolist() == pytest.approx([9600.0, 2500.0])


def test_later_soil_polygon_containing_an_earlier_one_gets_a_hole(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑钙土", box(25, 25, 75, 75)), ("风沙土", box(-50, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job)
    assert layers["HTGDTB"]["MJ"].tolist() == pytest.approx([2500.0])
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["FHT_MJ"] == pytest.approx(7500.0)


def test_duplicate_soil_polygon_is_rejected_and_logged(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer(
        "soil",
        soil_frame([("黑土", box(-50, -50, 150, 150)), ("风沙土", box(-50, -50, 150, 150))]),
        "TRTB",
    )
    _, layers = run(job)
    assert layers["HTGDTB"]["TL"].tolist() == ["黑土"]
    qa = layers["HTGD_ZJJL"]
    assert ((qa["feature_id"] == "S002") & (qa["action"] == "rejected")).any()


def test_soil_union_of_a_coverage_with_a_few_unmatched_edges(monkeypatch):
    from pipeline import survey

    # a 4 × 4 grid of 10 m squares less one (a gap): square (1,1) has a vertex at (20, 15) on
    # the edge it shares with (2,1), which lacks it; (3,3) overlaps (3,2) by a 1 m strip
    squares = [
        shapely.box(10 * i, 10 * j, 10 * i + 10, 10 * j + 10) for j in range(4) for i in range(4)
    ]
    squares[5] = shapely.Polygon([(10, 10), (20, 10), (20, 15), (20, 20), (10, 20)])
    squares[15] = shapely.box(30, 29, 40, 40)
    del squares[12]
    geoms = np.array(squares, dtype=object)
    sizes = []
    union_all = shapely.union_all
    monkeypatch.setattr(
        shapely, "union_all", lambda g, **kw: sizes.append(len(g)) or union_all(g, **kw)
    )
    union = survey._union(geoms)
    assert union.area == pytest.approx(1500.0)
    assert union.equals(union_all(geoms))
    # only the squares whose edges do not match their neighbours' go to the general union
    assert sizes and max(sizes) < len(geoms) // 2
