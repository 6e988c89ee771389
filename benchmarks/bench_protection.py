"""Protection stage vs a straightforward geopandas.overlay of the same layers, side by side.

Generates demo survey data (``pipeline.make_demo_data``: parcels, soil map, basic farmland,
urban development boundary, ecological red line, construction projects, change parcels), runs
the survey once to get the black-soil pieces (HTGDTB), then times

* blacksoil: the whole protection stage, ``protection.analyse_protection`` (zones made
  disjoint, subdivided and indexed, pieces wholly inside a zone polygon taken without an
  intersection, official areas shared to the cent, projects × pieces, change parcels × soil
  cover and approved projects);
* the reference: what one would write with geopandas — ``gpd.overlay`` of the pieces with each
  zone layer (``intersection``, and ``difference`` for the part outside basic farmland), of the
  pieces with the projects, and of the change parcels with the black-soil polygons and the
  approved projects;

checks that both give the same area inside each zone, and prints the ratio.

Run:  python benchmarks/bench_protection.py --parcels 112000
(about 105k black-soil pieces). Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
import yaml

from pipeline import load_config, make_demo_data, run_survey
from pipeline.config import config_from_dict
from pipeline.demo import PROTECTION_INPUTS, demo_inputs
from pipeline.overlay import default_threads
from pipeline.protection import ProtectionRules, analyse_protection
from pipeline.runner import load_inputs
from pipeline.survey import BLACK, prepare_soil


def _job(folder: Path, protection: bool) -> dict:
    inputs = demo_inputs(
        folder, ("parcels", "soil", "counties", *(PROTECTION_INPUTS if protection else ()))
    )
    return {
        "year": 2024,
        "inputs": inputs,
        "min_piece_area": 0.1,
        "output": {"path": str(folder / "pieces.gpkg")},
    }


def _reference(pieces: gpd.GeoDataFrame, layers: dict, soil_black: gpd.GeoDataFrame) -> dict:
    p = pieces[["DABH", "geometry"]]
    out = {}
    for name in ("basic_farmland", "urban_boundary", "ecological_redline"):
        zone = layers[name][["geometry"]]
        inter = gpd.overlay(p, zone, how="intersection", keep_geom_type=True)
        out[name] = inter.area.groupby(inter["DABH"].to_numpy()).sum()
        if name == "basic_farmland":
            gpd.overlay(p, zone, how="difference", keep_geom_type=True)
    projects = layers["construction"]
    gpd.overlay(p, projects[["geometry"]], how="intersection", keep_geom_type=True)
    changes = layers["changes"][["id", "geometry"]]
    gpd.overlay(changes, soil_black, how="intersection", keep_geom_type=True)
    approval = projects["approval"].astype(object).where(projects["approval"].notna(), "")
    approved = projects[approval.astype(str).str.strip() != ""][["geometry"]]
    gpd.overlay(changes, approved, how="intersection", keep_geom_type=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parcels", type=int, default=140_000)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    threads = args.threads or default_threads()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        make_demo_data(folder, parcels=args.parcels, seed=args.seed)
        print(f"demo data: {args.parcels} parcels in {time.perf_counter() - t:.1f} s")
        run_survey(config_from_dict(_job(folder, False), base=folder), overwrite=True)
        pieces = pyogrio.read_dataframe(folder / "pieces.gpkg", layer="HTGDTB", use_arrow=True)
        cfg = load_config_from(folder)
        inputs = load_inputs(cfg)
        ext = inputs.parcels.total_bounds
        changes = inputs.protection.changes
        lo = np.minimum(ext[:2], changes.total_bounds[:2]) - 10.0
        hi = np.maximum(ext[2:], changes.total_bounds[2:]) + 10.0
        extent = shapely.box(*lo, *hi)
        cover = prepare_soil(inputs.soil, extent, cfg.black_soil_types, inputs.qa)
        rules = ProtectionRules(
            cultivated_codes=cfg.cultivated_codes,
            construction_codes=cfg.construction_codes,
            digging_codes=cfg.digging_codes,
            approved_cover_share=cfg.approved_cover_share,
            min_piece_area=0.0,
        )
        sizes = {k: len(getattr(inputs.protection, k)) for k in PROTECTION_INPUTS}
        print(f"{len(pieces)} black-soil pieces; layers: {sizes}; threads: {threads}")

        t = time.perf_counter()
        result = analyse_protection(pieces, inputs.protection, rules, cover=cover, threads=threads)
        ours = time.perf_counter() - t
        print(f"blacksoil protection stage: {ours:8.2f} s")
        if args.skip_reference:
            return

        soil_black = cover.frame[cover.frame["cls"] == BLACK][["geometry"]]
        raw = {k: getattr(inputs.protection, k) for k in PROTECTION_INPUTS}
        t = time.perf_counter()
        ref = _reference(pieces, raw, gpd.GeoDataFrame(soil_black, crs=pieces.crs))
        theirs = time.perf_counter() - t
        print(f"geopandas.overlay:          {theirs:8.2f} s")
        print(f"ratio: {theirs / ours:.1f}x")

        # same area inside the basic farmland per piece (piece less its outside part)
        dnrhx = result.layers["HTGD_DNRHX"]
        outside = dnrhx.area.groupby(dnrhx["DABH"].to_numpy()).sum()
        inside = pieces.area.to_numpy() - outside.reindex(pieces["DABH"], fill_value=0).to_numpy()
        expected = ref["basic_farmland"].reindex(pieces["DABH"], fill_value=0.0).to_numpy()
        err = np.abs(inside - expected).max()
        print(f"max |inside basic farmland − reference| per piece: {err:.3g} m²")


def load_config_from(folder: Path):
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(_job(folder, True), allow_unicode=True), encoding="utf-8")
    return load_config(path)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
