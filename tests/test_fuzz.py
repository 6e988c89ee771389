"""The survey invariants (DESIGN.md §4), fuzzed with hypothesis through the real pipeline.

Every example builds a soil map and a set of cultivated parcels in EPSG:4530 around (X0, Y0),
writes them as GeoPackages, runs the job with ``run(job)`` and checks the archive:

- conservation per parcel (``HTGD_TBPH``): the class areas add up to the parcel, to the cent for
  the official figures, and no input parcel disappears without a QA row;
- reconciliation per county: archive TBMJ/TBDLMJ equal the input's, the county summary's 合计
  rows equal the sum of the pieces;
- agreement with ``geopandas.overlay`` on black-soil (and non-black) area per parcel;
- determinism: the same job run twice writes the same rows.

The generated layers mix what real data holds: grid tilings with shared edges, edges shifted by
1e-6 to 1e-3 m (near-coincident boundaries: sliver overlaps and sliver gaps), soil polygons with
holes and islands, multipolygons, thin slivers, star-shaped polygons, soil maps with gaps and with
overlapping polygons, parcels partly outside the soil map, and geometries that are invalid in
known ways (bow ties, zero-width spikes, overlapping multipolygon parts, zero-area rings), which
the pipeline repairs with ``make_valid`` or rejects (logged in ``HTGD_ZJJL``).
"""

from __future__ import annotations

import itertools
import math
import tempfile
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely import affinity

import pipeline
from conftest import CRS, X0, Y0, Job, parcels_frame, run, soil_frame

#: county codes (first 6 digits of ZLDWDM) the generated parcels are spread over
COUNTIES = ("220122", "220183", "220113")
#: soil names: black-soil groups (and a sub-type, 草甸黑土), other soils, and a missing type
BLACK_NAMES = ("黑土", "黑钙土", "白浆土", "草甸土", "暗棕壤", "水稻土", "草甸黑土")
OTHER_NAMES = ("潮土", "风沙土", "栗钙土", None)
CLASS_COLUMNS = ("HT", "FHT", "WDT", "QYW")

FUZZ = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: 90 examples of every check at once (about 70 s on two cores), beside the 20 of each check
#: alone: the suite must finish in about ten minutes on a two-core machine
FUZZ_SLOW = settings(
    max_examples=90,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


# --------------------------------------------------------------------------------------------
# geometry builders (local metres; moved to (X0, Y0) when a case is written)


def rect(x0: float, y0: float, x1: float, y1: float) -> shapely.Polygon:
    return shapely.box(x0, y0, x1, y1)


def star(cx: float, cy: float, radii: list[float], turn: float) -> shapely.Polygon:
    """A star-shaped polygon: strictly increasing angles, so always simple (valid)."""
    n = len(radii)
    angles = [turn + 2 * math.pi * i / n for i in range(n)]
    return shapely.Polygon(
        [(cx + r * math.cos(a), cy + r * math.sin(a)) for r, a in zip(radii, angles, strict=True)]
    )


def bow_tie(x: float, y: float, s: float) -> shapely.Polygon:
    """Invalid (self-intersection); make_valid gives two triangles of s²/4 each."""
    return shapely.Polygon([(x, y), (x + s, y + s), (x + s, y), (x, y + s)])


def spike(x0: float, y0: float, x1: float, y1: float, length: float) -> shapely.Polygon:
    """A box with a zero-width spike on its right edge: invalid; make_valid keeps the box."""
    ym = (y0 + y1) / 2
    return shapely.Polygon(
        [(x0, y0), (x1, y0), (x1, ym), (x1 + length, ym), (x1, ym), (x1, y1), (x0, y1)]
    )


def to_world(geom: shapely.Geometry) -> shapely.Geometry:
    return shapely.transform(geom, lambda xy: xy + np.array([X0, Y0]))


# --------------------------------------------------------------------------------------------
# strategies

#: a coordinate on the 5 m grid (so that edges of different layers often coincide) or anywhere
coord = st.one_of(
    st.integers(1, 39).map(lambda i: 5.0 * i),
    st.floats(1.0, 199.0, allow_nan=False, allow_infinity=False),
)
#: a near-coincidence: 1e-6 to 1e-3 m either way
eps = st.one_of(st.sampled_from([1e-6, 1e-5, 1e-4, 1e-3]), st.floats(1e-6, 1e-3))
offset = st.builds(lambda e, s: e * s, eps, st.sampled_from([-1.0, 1.0]))
#: mostly an exactly shared edge, sometimes a near-coincident one
edge_shift = st.one_of(st.just(0.0), st.just(0.0), offset)
soil_name = st.sampled_from(BLACK_NAMES + OTHER_NAMES)


@st.composite
def cuts(draw, near: tuple[float, ...] = (), max_size: int = 3) -> list[float]:
    """Sorted distinct cut positions in (0, 200): free, on the grid, or near given ones."""
    choices = [coord]
    if near:
        choices.append(st.builds(lambda c, d: c + d, st.sampled_from(near), edge_shift))
    values = draw(st.lists(st.one_of(*choices), max_size=max_size))
    return sorted({v for v in values if 0.0 < v < 200.0})


@st.composite
def free_polygon(draw) -> shapely.Geometry:
    """A polygon anywhere in the 200 m square: valid or invalid in a known way."""
    kind = draw(
        st.sampled_from(
            [
                "box",
                "star",
                "sliver",
                "holed",
                "multi",
                "bow_tie",
                "spike",
                "overlapping_multi",
                "flat",
            ]
        )
    )
    x, y = draw(coord), draw(coord)
    w, h = draw(st.floats(0.5, 60.0)), draw(st.floats(0.5, 60.0))
    if kind == "box":
        return rect(x, y, x + w, y + h)
    if kind == "star":
        radii = draw(st.lists(st.floats(0.5, 30.0), min_size=3, max_size=12))
        return star(x, y, radii, draw(st.floats(0.0, 2 * math.pi)))
    if kind == "sliver":
        width = draw(st.sampled_from([1e-4, 1e-3, 1e-2, 0.1]))
        thin = rect(x, y, x + draw(st.floats(1.0, 80.0)), y + width)
        return affinity.rotate(thin, draw(st.floats(0.0, 180.0)), origin=(x, y))
    if kind == "holed":
        fx0, fy0 = draw(st.floats(0.1, 0.4)), draw(st.floats(0.1, 0.4))
        fx1, fy1 = draw(st.floats(0.6, 0.9)), draw(st.floats(0.6, 0.9))
        hole = rect(x + fx0 * w, y + fy0 * h, x + fx1 * w, y + fy1 * h)
        return shapely.Polygon(rect(x, y, x + w, y + h).exterior, [hole.exterior])
    if kind == "multi":
        gap = draw(st.sampled_from([0.0, 1e-3, 1.0, 10.0]))  # 0: parts touch at a corner
        return shapely.MultiPolygon(
            [rect(x, y, x + w, y + h), rect(x + w + gap, y + h + gap, x + 2 * w, y + 2 * h)]
        )
    if kind == "bow_tie":
        return bow_tie(x, y, w)
    if kind == "spike":
        return spike(x, y, x + w, y + h, draw(st.floats(0.1, 20.0)))
    if kind == "overlapping_multi":
        return shapely.MultiPolygon(
            [rect(x, y, x + w, y + h), rect(x + w / 2, y, x + 2 * w, y + h)]
        )
    # flat: a ring without area (rejected as a zero-area polygon)
    return shapely.Polygon([(x, y), (x + w, y), (x + 2 * w, y), (x, y)])


@st.composite
def tiling(
    draw, x: list[float], y_cuts, kinds: list[str], bottom: float, hi: float
) -> list[tuple[str, shapely.Geometry, tuple[float, float, float, float]]]:
    """Cells of a grid over [x[0], x[-1]] × [bottom, hi], each with a kind and the shifts of its
    top and right edges (near-coincident edges where a shift is not 0)."""
    cells = []
    for x0, x1 in itertools.pairwise(x):
        ys = [bottom, *(c for c in draw(y_cuts) if bottom < c < hi), hi]
        for y0, y1 in itertools.pairwise(ys):
            kind = draw(st.sampled_from(kinds))
            dx, dy = draw(edge_shift), draw(edge_shift)
            cells.append((kind, rect(x0, y0, x1 + dx, y1 + dy), (x0, y0, x1 + dx, y1 + dy)))
    return cells


@dataclass(repr=False)
class Case:
    """A generated survey: parcel rows (for ``parcels_frame``) and soil rows, in world units."""

    parcels: list[dict] = field(default_factory=list)
    soil: list[tuple[str | None, shapely.Geometry]] = field(default_factory=list)

    def write(self, folder: Path) -> Job:
        job = Job(folder)
        job.layer("parcels", parcels_frame(self.parcels), "DLTB")
        job.layer("soil", soil_frame(self.soil), "TRTB")
        return job

    def __repr__(self) -> str:  # short enough for hypothesis' falsifying-example report
        def wkt(g):
            return shapely.to_wkt(shapely.transform(g, lambda xy: xy - [X0, Y0]), 9)

        parcels = [
            {k: (wkt(v) if k == "geometry" else v) for k, v in row.items()} for row in self.parcels
        ]
        soil = [(t, wkt(g)) for t, g in self.soil]
        return f"Case(local coordinates around X0, Y0)\n parcels={parcels!r}\n soil={soil!r}"


@st.composite
def soil_maps(draw) -> tuple[list[tuple[str | None, shapely.Geometry]], list[float]]:
    """A soil map: a grid tiling with shifted edges, gaps, holes (some filled by islands),
    multipolygons and triangles, plus overlapping and invalid extra polygons anywhere in the
    file order. Its right and bottom edges may stop short of the parcels (partly unmapped)."""
    right = draw(st.one_of(st.just(220.0), coord))
    bottom = draw(st.one_of(st.just(-20.0), st.floats(-20.0, 120.0)))
    xs = [-20.0, *(c for c in draw(cuts()) if c < right), right]
    kinds = ["box", "box", "gap", "diag", "holed", "multi"]
    cells = draw(tiling(xs, cuts(), kinds, bottom, 220.0))
    # the first cell is always a plain box, so the map is never empty
    cells[0] = ("box", *cells[0][1:])
    rows: list[tuple[str | None, shapely.Geometry]] = []
    islands: list[tuple[str | None, shapely.Geometry]] = []
    multi: list[shapely.Polygon] = []
    for kind, geom, (x0, y0, x1, y1) in cells:
        if kind == "gap":
            continue
        if kind == "diag":
            rows.append((draw(soil_name), shapely.Polygon([(x0, y0), (x1, y0), (x1, y1)])))
            rows.append((draw(soil_name), shapely.Polygon([(x0, y0), (x1, y1), (x0, y1)])))
        elif kind == "holed":
            fx0, fy0 = draw(st.floats(0.1, 0.4)), draw(st.floats(0.1, 0.4))
            fx1, fy1 = draw(st.floats(0.6, 0.9)), draw(st.floats(0.6, 0.9))
            hx0, hy0 = x0 + fx0 * (x1 - x0), y0 + fy0 * (y1 - y0)
            hx1, hy1 = x0 + fx1 * (x1 - x0), y0 + fy1 * (y1 - y0)
            rows.append(
                (
                    draw(soil_name),
                    shapely.Polygon(geom.exterior, [rect(hx0, hy0, hx1, hy1).exterior]),
                )
            )
            if draw(st.booleans()):  # an island fills the hole, exactly or nearly
                d = draw(edge_shift)
                islands.append((draw(soil_name), rect(hx0 - d, hy0, hx1 + d, hy1 + d)))
        elif kind == "multi":
            multi.append(geom)
        else:
            rows.append((draw(soil_name), geom))
    if multi:
        # cells merged into one multipolygon: invalid where the cells share an edge (repaired)
        rows.append((draw(soil_name), shapely.MultiPolygon(multi)))
    rows.extend(islands)
    for extra in draw(st.lists(free_polygon(), max_size=3)):
        at = draw(st.integers(0, len(rows)))
        rows.insert(at, (draw(soil_name), extra))
    return rows, xs[1:-1]


@st.composite
def cases(draw, max_extra: int = 4) -> Case:
    """Parcels (a tiling sharing and nearly sharing edges with each other and with the soil
    map, plus free shapes) over a soil map, with official areas, deduction rates and counties."""
    soil, soil_cuts = draw(soil_maps())
    width = draw(st.one_of(st.just(200.0), st.floats(20.0, 200.0)))
    xs = [0.0, *(c for c in draw(cuts(near=tuple(soil_cuts))) if c < width), width]
    kinds = ["box", "box", "drop", "holed", "diag"]
    cells = draw(tiling(xs, cuts(near=tuple(soil_cuts)), kinds, 0.0, 200.0))
    cells[0] = ("box", *cells[0][1:])
    geoms: list[shapely.Geometry] = []
    for kind, geom, (x0, y0, x1, y1) in cells:
        if kind == "drop":
            continue
        if kind == "holed":
            hole = rect(x0 + 0.25 * (x1 - x0), y0 + 0.25 * (y1 - y0), x0 + 0.5 * (x1 - x0), y1 - 1)
            geoms.append(shapely.Polygon(geom.exterior, [hole.exterior]))
        elif kind == "diag":
            geoms.append(shapely.Polygon([(x0, y0), (x1, y0), (x1, y1)]))
            geoms.append(shapely.Polygon([(x0, y0), (x1, y1), (x0, y1)]))
        else:
            geoms.append(geom)
    geoms += draw(st.lists(free_polygon(), max_size=max_extra))

    rows = []
    for i, local in enumerate(geoms):
        geom = to_world(local)
        area = shapely.area(_repaired(geom) or shapely.Polygon())
        how = draw(st.sampled_from(["planar", "scaled", "missing"]))
        if how == "missing" or area <= 0:
            tbmj = None
        elif how == "planar":
            tbmj = round(area, 2)
        else:  # the official ellipsoidal area differs from the planar one
            tbmj = round(area * draw(st.floats(0.95, 1.05)), 2)
        rows.append(
            {
                "geometry": geom,
                "TBMJ": tbmj if tbmj else None,
                "_auto_tbmj": False,
                "KCXS": draw(st.sampled_from([0.0, 0.05, 0.1234, 0.0867, 0.2])),
                "DLBM": "0103"
                if i == 0
                else draw(st.sampled_from(["0103", "0101", "0102", "0201"])),
                "ZLDWDM": draw(st.sampled_from(COUNTIES)) + "1001010000000",
            }
        )
    return Case(rows, [(t, to_world(g)) for t, g in soil])


# --------------------------------------------------------------------------------------------
# reference computations


def _polygonal(geom: shapely.Geometry | None) -> shapely.Geometry | None:
    """The polygonal part of a geometry, None where it has none."""
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys: list[shapely.Polygon] = []
    todo = [geom]
    while todo:
        g = todo.pop(0)
        if g.geom_type == "Polygon":
            polys.append(g)
        elif g.geom_type == "MultiPolygon":
            polys.extend(g.geoms)
        elif g.geom_type == "GeometryCollection":
            todo.extend(g.geoms)
    polys = [p for p in polys if not p.is_empty]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def _repaired(geom: shapely.Geometry) -> shapely.Geometry | None:
    """What the pipeline keeps of an input polygon: make_valid's polygonal part, with area."""
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    geom = _polygonal(geom)
    return geom if geom is not None and geom.area > 0 else None


def _inputs(case: Case) -> pd.DataFrame:
    """The generated parcels as the pipeline should read them (BSM, county, TBMJ, KCXS, repaired
    geometry, cultivated or not)."""
    frame = parcels_frame(case.parcels)
    return pd.DataFrame(
        {
            "BSM": frame["BSM"].to_numpy(),
            "XZQDM": frame["ZLDWDM"].str[:6].to_numpy(),
            "TBMJ": frame["TBMJ"].to_numpy(float),
            "KCXS": frame["KCXS"].to_numpy(float),
            "cultivated": frame["DLBM"].isin(["0101", "0102", "0103"]).to_numpy(),
            "geometry": [_repaired(g) for g in frame.geometry],
        }
    )


def _cents(values) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float) * 100).astype(np.int64)


def _kcmj_cents(tbmj: float, kcxs: float) -> int:
    """KCMJ = TBMJ × KCXS on the decimal values, half away from zero, in cents."""
    product = Decimal(f"{tbmj:.2f}") * Decimal(f"{kcxs:.4f}")
    return int(product.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)


def _run_case(case: Case, folder: Path):
    job = case.write(folder)
    outcome, layers = run(job)
    table = pipeline.load_config(job.write()).black_soil_types
    return job, outcome, layers, table


# --------------------------------------------------------------------------------------------
# the checks


def check_conservation(case: Case, outcome, layers) -> None:
    bal = layers["HTGD_TBPH"]
    parts = bal[[f"{c}_MJ" for c in CLASS_COLUMNS]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(parts, bal["MJ"].to_numpy(), rtol=1e-6, atol=1e-6)
    assert (bal["BALANCED"] == 1).all(), bal[bal["BALANCED"] != 1]
    assert outcome.conservation["passed"]
    for col in ("TBMJ", "TBDLMJ"):
        summed = sum(_cents(bal[f"{c}_{col}"]) for c in CLASS_COLUMNS)
        assert (summed == _cents(bal[col])).all(), col
    # the pieces of the archive add up to the black-soil class of their parcel
    pieces = layers["HTGDTB"]
    by_parcel = pieces.groupby("BSM").agg(
        MJ=("MJ", "sum"), n=("MJ", "size"), TBMJ=("TBMJ", lambda v: _cents(v).sum())
    )
    ht = bal.set_index("BSM").reindex(by_parcel.index)
    assert np.all(np.abs(by_parcel["MJ"] - ht["HT_MJ"]) <= 5e-5 * by_parcel["n"] + 1e-9)
    assert (by_parcel["TBMJ"] == _cents(ht["HT_TBMJ"])).all()
    assert set(bal["BSM"]) - set(pieces["BSM"]) == set(bal.loc[bal["HT_MJ"] == 0, "BSM"])

    # no silent loss: every cultivated input parcel is surveyed or rejected with a QA row
    given_ = _inputs(case)
    cult = given_[given_["cultivated"]]
    usable = cult["geometry"].notna()
    assert set(bal["BSM"]) == set(cult.loc[usable, "BSM"])
    qa = layers["HTGD_ZJJL"]
    rejected = qa[(qa["layer"] == "parcels") & (qa["action"] == "rejected")]
    assert set(cult.loc[~usable, "BSM"]) <= set(rejected["feature_id"])
    # the planar area of a parcel is that of its repaired geometry
    planar = cult.loc[usable].set_index("BSM")["geometry"].map(lambda g: g.area)
    np.testing.assert_allclose(
        bal.set_index("BSM").loc[planar.index, "MJ"], planar, rtol=1e-12, atol=0
    )


def check_reconciliation(case: Case, layers) -> None:
    bal = layers["HTGD_TBPH"].set_index("BSM")
    given_ = _inputs(case).set_index("BSM").loc[bal.index]
    assert (bal["XZQDM"] == given_["XZQDM"]).all()
    official = given_["TBMJ"].notna() & (given_["TBMJ"] > 0)
    g = given_[official]
    # per parcel and per county, to the cent
    assert (_cents(bal.loc[g.index, "TBMJ"]) == _cents(g["TBMJ"])).all()
    kcmj = np.array(
        [_kcmj_cents(t, k) for t, k in zip(g["TBMJ"], g["KCXS"], strict=True)], dtype=np.int64
    )
    expect = pd.DataFrame(
        {"TBMJ": _cents(g["TBMJ"]), "TBDLMJ": _cents(g["TBMJ"]) - kcmj}, index=g.index
    ).groupby(g["XZQDM"])
    archive = pd.DataFrame(
        {"TBMJ": _cents(bal.loc[g.index, "TBMJ"]), "TBDLMJ": _cents(bal.loc[g.index, "TBDLMJ"])},
        index=g.index,
    ).groupby(g["XZQDM"])
    pd.testing.assert_frame_equal(archive.sum().sort_index(), expect.sum().sort_index())
    # parcels without an official area got a computed one, close to the planar area
    computed = bal.loc[given_.index[~official.to_numpy()]]
    np.testing.assert_allclose(computed["TBMJ"], computed["MJ"], rtol=2e-3, atol=0.01)

    # the county summary: each county's 合计 row is the sum of its pieces
    summary = layers["HTGD_XZQHZ"]
    pieces = layers["HTGDTB"]
    totals = summary[(summary["TL"] == "合计") & (summary["XZQDM"] != "合计")]
    assert not totals["XZQDM"].duplicated().any()
    totals = totals.set_index("XZQDM")
    assert set(bal["XZQDM"]) <= set(totals.index)
    by_county = pieces.groupby("XZQDM")["TBDLMJ"].sum().reindex(totals.index, fill_value=0.0)
    np.testing.assert_allclose(totals["TBDLMJ"], by_county, rtol=0, atol=0.005)
    grand = summary[(summary["XZQDM"] == "合计") & (summary["TL"] == "合计")]
    if len(pieces):
        assert len(grand) == 1
        assert grand["TBDLMJ"].iloc[0] == pytest.approx(pieces["TBDLMJ"].sum(), abs=0.005)
        # the per-type rows of a county add up to its 合计 row, to the cent
        per_type = summary[(summary["TL"] != "合计") & (summary["XZQDM"] != "合计")]
        sums = per_type.groupby("XZQDM")["TBDLMJ"].apply(lambda v: _cents(v).sum())
        assert (sums == _cents(totals.loc[sums.index, "TBDLMJ"])).all()


def _resolved_soil(case: Case) -> gpd.GeoDataFrame:
    """The soil map repaired and with overlaps given to the earlier polygon in file order."""
    kept_types: list[str | None] = []
    kept: list[shapely.Geometry] = []
    earlier = shapely.Polygon()
    for soil_type, geom in case.soil:
        geom = _repaired(geom)
        if geom is None:
            continue
        own = _polygonal(shapely.difference(geom, earlier)) if not earlier.is_empty else geom
        earlier = shapely.union(earlier, geom)
        if own is not None and own.area > 0:
            kept_types.append(soil_type)
            kept.append(own)
    return gpd.GeoDataFrame({"TL": kept_types}, geometry=kept, crs=CRS)


def check_against_geopandas(case: Case, layers, table: dict[str, str]) -> None:
    given_ = _inputs(case)
    cult = given_[given_["cultivated"] & given_["geometry"].notna()]
    parcels = gpd.GeoDataFrame(
        {"BSM": cult["BSM"].to_numpy()}, geometry=list(cult["geometry"]), crs=CRS
    )
    soil = _resolved_soil(case)
    ref = gpd.overlay(parcels, soil, how="intersection", keep_geom_type=True)
    black = ref["TL"].map(table).notna().to_numpy()
    area = ref.area.to_numpy()
    bal = layers["HTGD_TBPH"].set_index("BSM")
    for cls, sel in (("HT", black), ("FHT", ~black)):
        expected = pd.Series(area[sel]).groupby(ref["BSM"].to_numpy()[sel]).sum()
        expected = expected.reindex(bal.index, fill_value=0.0)
        np.testing.assert_allclose(
            bal[f"{cls}_MJ"], expected, rtol=1e-6, atol=1e-4, err_msg=f"{cls}_MJ"
        )


def _rows(frame: pd.DataFrame, name: str) -> tuple[pd.DataFrame, list[bytes] | None]:
    if name == "HTGD_YXXX":
        frame = frame[~frame["key"].isin(["created", "timings_s"])]
    frame = frame.reset_index(drop=True)
    if isinstance(frame, gpd.GeoDataFrame):
        wkb = list(shapely.to_wkb(frame.geometry.to_numpy()))
        return pd.DataFrame(frame.drop(columns=frame.geometry.name)), wkb
    return frame, None


def check_determinism(job: Job, first: dict[str, pd.DataFrame]) -> None:
    _, second = run(job)
    assert list(first) == list(second)
    for name in first:
        rows_a, wkb_a = _rows(first[name], name)
        rows_b, wkb_b = _rows(second[name], name)
        pd.testing.assert_frame_equal(rows_a, rows_b, check_exact=True, obj=name)
        assert wkb_a == wkb_b, f"{name}: geometries differ"


# --------------------------------------------------------------------------------------------
# the properties


@FUZZ
@given(case=cases())
def test_conservation_per_parcel(case):
    with tempfile.TemporaryDirectory() as tmp:
        _, outcome, layers, _ = _run_case(case, Path(tmp))
        check_conservation(case, outcome, layers)


@FUZZ
@given(case=cases())
def test_reconciliation_per_county(case):
    with tempfile.TemporaryDirectory() as tmp:
        _, _, layers, _ = _run_case(case, Path(tmp))
        check_reconciliation(case, layers)


@FUZZ
@given(case=cases())
def test_black_soil_area_agrees_with_geopandas_overlay(case):
    with tempfile.TemporaryDirectory() as tmp:
        _, _, layers, table = _run_case(case, Path(tmp))
        check_against_geopandas(case, layers, table)


@FUZZ
@given(case=cases())
def test_same_job_twice_gives_identical_archive(case):
    with tempfile.TemporaryDirectory() as tmp:
        job, _, layers, _ = _run_case(case, Path(tmp))
        check_determinism(job, layers)


@pytest.mark.slow
@FUZZ_SLOW
@given(case=cases(max_extra=10))
def test_all_invariants_many_examples(case):
    with tempfile.TemporaryDirectory() as tmp:
        job, outcome, layers, table = _run_case(case, Path(tmp))
        check_conservation(case, outcome, layers)
        check_reconciliation(case, layers)
        check_against_geopandas(case, layers, table)
        check_determinism(job, layers)
