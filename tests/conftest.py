"""Shared fixtures: tiny hand-made survey layers written to tmp_path, and job configs."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import yaml

#: a point near the central meridian of CGCS2000 GK zone 42 (EPSG:4530), about 44°N
X0, Y0 = 42_500_000.0, 4_870_000.0
CRS = "EPSG:4530"


def box(x1: float, y1: float, x2: float, y2: float) -> shapely.Polygon:
    """A box in metres relative to (X0, Y0)."""
    return shapely.box(X0 + x1, Y0 + y1, X0 + x2, Y0 + y2)


def parcels_frame(rows: list[dict], crs: str | None = CRS) -> gpd.GeoDataFrame:
    """Parcels with 三调 fields; each row needs BSM, geometry and may set DLBM, TBMJ, KCXS, ..."""
    full = []
    for i, row in enumerate(rows):
        r = {
            "BSM": f"2201222024{i + 1:08d}",
            "TBBH": str(i + 1),
            "DLBM": "0103",
            "DLMC": "旱地",
            "ZLDWDM": "2201221001010000000",
            "TBMJ": None,
            "KCXS": 0.0,
            "GDLX": "PD",
            "GDPDJB": "2",
            "SJNF": 2024,
        }
        r.update(row)
        if r["TBMJ"] is None and r.get("_auto_tbmj", True):
            r["TBMJ"] = round(r["geometry"].area, 2)
        r.pop("_auto_tbmj", None)
        full.append(r)
    return gpd.GeoDataFrame(full, geometry="geometry", crs=crs)


def write_raster(
    path: Path,
    values: np.ndarray,
    transform: object,
    crs: str = CRS,
    *,
    dtype: str = "float32",
    **profile: object,
) -> Path:
    """A one-band GeoTIFF of ``values`` (rows from the top) cast to ``dtype``; ``profile`` adds
    creation options such as ``nodata``."""
    values = np.asarray(values).astype(dtype)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=dtype,
        crs=crs,
        transform=transform,
        **profile,
    ) as dst:
        dst.write(values, 1)
    return path


def soil_frame(rows: list[tuple[str, shapely.Geometry]], crs: str | None = CRS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"TL": [t for t, _ in rows], "TRBM": [f"S{i + 1:03d}" for i in range(len(rows))]},
        geometry=[g for _, g in rows],
        crs=crs,
    )


class Job:
    """Writes layers and a config for a survey job under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config: dict = {
            "year": 2024,
            "crs": "auto",
            "inputs": {},
            "min_piece_area": 0.0,
            "output": {"path": "out/archive.gpkg"},
        }

    def layer(
        self, name: str, frame: gpd.GeoDataFrame, layer: str, filename: str | None = None, **spec
    ) -> Path:
        path = self.folder / (filename or f"{name}.gpkg")
        frame.to_file(path, layer=layer, engine="pyogrio")
        self.config["inputs"][name] = {"path": path.name, "layer": layer, **spec}
        return path

    def write(self, **overrides) -> Path:
        cfg = {**self.config, **overrides}
        path = self.folder / "job.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        return path

    @property
    def archive(self) -> Path:
        return self.folder / "out" / "archive.gpkg"


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return Job(tmp_path)


def run(job: Job, **overrides):
    """Run the job through the public API and return (outcome, archive layers)."""
    import pipeline

    cfg = pipeline.load_config(job.write(**overrides))
    outcome = pipeline.run_survey(cfg, overwrite=True)
    return outcome, pipeline.open_archive(outcome.archive)
