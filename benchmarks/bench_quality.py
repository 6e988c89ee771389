"""Zonal statistics of the quality stage vs rasterstats, side by side on the same data.

Generates demo survey data (``pipeline.make_demo_data``), cuts the cultivated parcels by the
soil map with the survey stage to get real pieces (the rows of ``HTGDTB``, many smaller than a
cell), writes demo rasters over them (``pipeline.demo_rasters.make_demo_rasters``, 30 m cells by
default, as survey thickness and organic-matter grids come) and times, on the same pieces and the
same thickness raster:

* blacksoil: ``quality.zonal_statistics`` — mean, min, max and coverage share with exact
  partial-cell weighting (exactextract, all pieces in one call, WKB in, arrays out);
* the reference: ``rasterstats.zonal_stats`` — mean, min, max, count (cells by centre, per
  feature in Python);
* for context: exactextract through its own GeoDataFrame source and pandas writer, and the whole
  quality stage (``quality.add_quality``: thickness, organic matter and a DEM in EPSG:4490 with
  slope).

It prints the ratio, and how the two differ: pieces smaller than a cell that rasterstats gives no
value at all (no cell centre inside), and the mean difference on pieces of many cells.

Run:  python benchmarks/bench_quality.py --parcels 150000
      python benchmarks/bench_quality.py --parcels 150000 --reference-sample 20000

rasterstats is needed only here and is not a dependency of the project: ``pip install
rasterstats``. ``--reference-sample N`` times it on N pieces only and scales the time up (it
costs the same per piece). Results are recorded in benchmarks/README.md.
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
import shapely
from bench_overlay import load_layers  # the same cultivated parcels and soil map

from pipeline import make_demo_data
from pipeline.config import QualityOptions, RasterSpec, config_from_dict
from pipeline.demo_rasters import make_demo_rasters
from pipeline.qa import QALog
from pipeline.quality import add_quality, zonal_statistics
from pipeline.survey import prepare_soil, survey_parcels


def _pieces(folder: Path, threads: int) -> gpd.GeoDataFrame:
    parcels, soil = load_layers(folder)
    table = config_from_dict(
        {
            "year": 2024,
            "inputs": {"parcels": {"path": "p"}, "soil": {"path": "s"}},
            "output": {"path": "a.gpkg"},
        }
    ).black_soil_types
    qa = QALog()
    cover = prepare_soil(soil, shapely.box(*parcels.total_bounds).buffer(10), table, qa)
    result = survey_parcels(
        parcels, cover, crs=parcels.crs, qa=qa, min_piece_area=0.0, threads=threads
    )
    pieces = result.pieces
    pieces = pieces[pieces["cls"] != "unmapped"].reset_index(drop=True)
    pieces["DABH"] = np.char.add("P", np.arange(len(pieces)).astype(str))
    pieces["BSM"] = parcels["id"].to_numpy()[pieces["parcel"].to_numpy()]
    pieces["GDPDJB"] = None
    return pieces


def _rasterstats(geoms: np.ndarray, path: Path, sample: int | None) -> tuple[float, pd.DataFrame]:
    try:
        from rasterstats import zonal_stats
    except ImportError as err:  # pragma: no cover - the benchmark says how to get it
        raise SystemExit("rasterstats is needed: pip install rasterstats") from err
    todo = geoms if sample is None else geoms[:sample]
    t = time.perf_counter()
    rows = zonal_stats(list(todo), str(path), stats=["mean", "min", "max", "count"])
    elapsed = time.perf_counter() - t
    if sample is not None and sample < len(geoms):
        elapsed *= len(geoms) / sample
    return elapsed, pd.DataFrame(rows)


def _exactextract_geopandas(pieces: gpd.GeoDataFrame, path: Path) -> float:
    from exactextract import exact_extract

    t = time.perf_counter()
    exact_extract(str(path), pieces[["geometry"]], ["mean", "min", "max", "count"], output="pandas")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=150_000, help="parcels to generate")
    parser.add_argument("--cell", type=float, default=30.0, help="raster cell size (m)")
    parser.add_argument(
        "--reference-sample",
        type=int,
        help="time rasterstats on this many pieces and scale up (default: all pieces)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data", type=Path, help="folder for the generated data (kept)")
    args = parser.parse_args()
    folder = args.data or Path(tempfile.gettempdir()) / f"blacksoil-bench-{args.parcels}-50ha"
    if not (folder / "parcels.gpkg").exists():
        t = time.perf_counter()
        make_demo_data(folder, parcels=args.parcels)
        print(f"generated {args.parcels:,} parcels in {time.perf_counter() - t:.1f} s → {folder}")
    pieces = _pieces(folder, args.threads)
    rasters = folder / f"rasters-{args.cell:g}m"
    paths = make_demo_rasters(rasters, pieces.geometry, seed=2024, cell=args.cell)
    thickness = paths["thickness"]
    geoms = pieces.geometry.to_numpy()
    area = shapely.area(geoms)
    cell_area = args.cell**2
    print(
        f"\n{len(pieces):,} pieces (median {np.median(area):,.0f} m², "
        f"{(area < cell_area).mean():.1%} smaller than one {args.cell:g} m cell) "
        f"on {thickness.name} ({args.cell:g} m cells, EPSG:4530)"
    )

    t = time.perf_counter()
    ours = zonal_statistics(geoms, pieces.crs, RasterSpec(path=thickness))
    ours_t = time.perf_counter() - t
    print(f"blacksoil zonal_statistics (exact):          {ours_t:8.2f} s")
    ee_t = _exactextract_geopandas(pieces, thickness)
    print(f"exactextract, GeoDataFrame in, pandas out:   {ee_t:8.2f} s")
    ref_t, ref = _rasterstats(geoms, thickness, args.reference_sample)
    label = "" if args.reference_sample is None else f" (from {args.reference_sample:,}, scaled)"
    print(f"rasterstats.zonal_stats (cell centres):     {ref_t:8.2f} s{label}")
    print(f"ratio: blacksoil is {ref_t / ours_t:.1f}× faster than rasterstats")

    n = len(ref)
    small = area[:n] < cell_area
    no_value = ref["mean"].isna().to_numpy()
    print(
        f"pieces smaller than a cell: rasterstats gives no value for "
        f"{(no_value & small).sum():,} of {small.sum():,}; blacksoil for "
        f"{(ours['mean'][:n].isna().to_numpy() & small).sum():,} (outside the data only)"
    )
    big = area[:n] > 20 * cell_area
    diff = (ours["mean"][:n].to_numpy() - ref["mean"].to_numpy(dtype=float))[big]
    print(
        f"pieces over 20 cells: mean |difference| of the means {np.nanmean(np.abs(diff)):.3f} cm "
        f"(cell-centre sampling vs exact weighting)"
    )

    t = time.perf_counter()
    specs = {name: RasterSpec(path=path) for name, path in paths.items()}
    add_quality(pieces, specs, QualityOptions(), QALog())
    print(
        f"whole quality stage (thickness, organic matter, DEM in EPSG:4490 + slope): "
        f"{time.perf_counter() - t:.2f} s"
    )


if __name__ == "__main__":
    main()
