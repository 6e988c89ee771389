"""Overlay stage vs geopandas.overlay, side by side on the same generated data.

Generates demo survey data (``pipeline.make_demo_data``) with a digitised-looking soil map,
takes the cultivated parcels, and times

* blacksoil: the whole overlay stage (soil cover, subdivide, STRtree, contained fast path,
  boundary intersections, merge, area allocation) — ``survey.survey_parcels``;
* the reference: ``geopandas.overlay(parcels, soil, how="intersection")`` on the same layers,

checks that both give the same black-soil area per parcel, and prints the ratio. A second case
repeats this on simple soil polygons (the same map simplified to few vertices), where the target
is "never slower".

Run:  python benchmarks/bench_overlay.py --parcels 140000 --soil-polygon-ha 1800
      python benchmarks/bench_overlay.py --parcels 100000 --soil-polygon-ha 50

The first is the layout of DESIGN.md §6 (a county soil-group map: ~200 soil polygons of
thousands of vertices under 140k parcels); the second a fine soil map where most parcels cross a
soil boundary. Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from pipeline import make_demo_data
from pipeline.config import config_from_dict
from pipeline.qa import QALog
from pipeline.survey import BLACK, prepare_soil, survey_parcels


def load_layers(folder: Path) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    parcels = pyogrio.read_dataframe(
        folder / "parcels.gpkg",
        layer="DLTB",
        use_arrow=True,
        where="DLBM IN ('0101', '0102', '0103')",
        columns=["BSM", "TBMJ", "KCXS"],
    )
    parcels = parcels.rename(columns={"BSM": "id", "TBMJ": "area", "KCXS": "deduction_rate"})
    soil = pyogrio.read_dataframe(folder / "soil.gpkg", layer="TRTB", use_arrow=True)
    soil = soil.rename(columns={"TL": "soil_type", "YL": "subtype", "TRBM": "id"})
    soil["_fid"] = np.arange(len(soil))
    return parcels, soil


def _ours(
    parcels: gpd.GeoDataFrame, soil: gpd.GeoDataFrame, threads: int
) -> tuple[float, pd.Series]:
    table = config_from_dict(
        {
            "year": 2024,
            "inputs": {"parcels": {"path": "p"}, "soil": {"path": "s"}},
            "output": {"path": "a.gpkg"},
        }
    ).black_soil_types
    t = time.perf_counter()
    qa = QALog()
    extent = shapely.box(*parcels.total_bounds).buffer(10)
    cover = prepare_soil(soil, extent, table, qa)
    result = survey_parcels(
        parcels, cover, crs=parcels.crs, qa=qa, min_piece_area=0.0, threads=threads
    )
    elapsed = time.perf_counter() - t
    pieces = result.pieces
    black = pieces[pieces["cls"] == BLACK]
    area = black.groupby("parcel")["MJ"].sum()
    area.index = parcels["id"].to_numpy()[area.index.to_numpy()]
    return elapsed, area


def _reference(
    parcels: gpd.GeoDataFrame, soil: gpd.GeoDataFrame, table: set[str]
) -> tuple[float, pd.Series]:
    t = time.perf_counter()
    out = gpd.overlay(
        parcels[["id", "geometry"]],
        soil[["soil_type", "subtype", "geometry"]],
        how="intersection",
        keep_geom_type=True,
    )
    elapsed = time.perf_counter() - t
    black = out[out["soil_type"].isin(table) | out["subtype"].isin(table)]
    return elapsed, black.assign(a=black.area).groupby("id")["a"].sum()


def _case(name: str, parcels, soil, threads: int) -> None:
    table = set(
        config_from_dict(
            {
                "year": 2024,
                "inputs": {"parcels": {"path": "p"}, "soil": {"path": "s"}},
                "output": {"path": "a.gpkg"},
            }
        ).black_soil_types
    )
    vertices = shapely.get_num_coordinates(soil.geometry.to_numpy())
    print(
        f"\n== {name}: {len(parcels):,} cultivated parcels × {len(soil):,} soil polygons "
        f"(mean {vertices.mean():,.0f}, max {vertices.max():,} vertices)"
    )
    ours_t, ours_a = _ours(parcels, soil, threads)
    print(f"blacksoil overlay stage ({threads} thread(s)): {ours_t:8.2f} s")
    ref_t, ref_a = _reference(parcels, soil, table)
    print(f"geopandas.overlay (reference):          {ref_t:8.2f} s")
    both = pd.concat([ours_a.rename("ours"), ref_a.rename("ref")], axis=1).fillna(0.0)
    diff = (both["ours"] - both["ref"]).abs()
    print(
        f"black-soil area: {both['ours'].sum():,.2f} m² vs {both['ref'].sum():,.2f} m²; "
        f"max per-parcel difference {diff.max():.2e} m²"
    )
    print(f"ratio: blacksoil is {ref_t / ours_t:.1f}× faster than geopandas.overlay")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parcels", type=int, default=100_000, help="parcels to generate (all classes)"
    )
    parser.add_argument(
        "--soil-polygon-ha",
        type=float,
        default=1800.0,
        help="typical soil polygon size of the generated soil map",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", type=Path, help="folder for the generated data (kept)")
    args = parser.parse_args()
    name = f"blacksoil-bench-{args.parcels}-{args.soil_polygon_ha:g}ha"
    folder = args.data or Path(tempfile.gettempdir()) / name
    if not (folder / "parcels.gpkg").exists():
        t = time.perf_counter()
        make_demo_data(folder, parcels=args.parcels, soil_polygon_ha=args.soil_polygon_ha)
        print(f"generated {args.parcels:,} parcels in {time.perf_counter() - t:.1f} s → {folder}")
    parcels, soil = load_layers(folder)
    _case("digitised soil map", parcels, soil, args.threads)
    simple = soil.copy()
    # coverage simplification keeps neighbours edge-matched: no overlaps or gaps appear
    simple["geometry"] = shapely.coverage_simplify(soil.geometry.to_numpy(), 60.0)
    _case("simple soil polygons", parcels, simple, args.threads)


if __name__ == "__main__":
    main()
