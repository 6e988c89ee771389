"""Demo rasters for the quality stage: black-soil thickness, organic matter and a DEM.

:func:`make_demo_rasters` writes three smooth, realistic-looking fields over an extent (the demo
counties' survey area), compact enough to ship with the repository:

- ``thickness.tif``: black-soil layer thickness, 10–80 cm, EPSG:4530, 100 m cells;
- ``organic_matter.tif``: soil organic matter, 15–60 g/kg, EPSG:4530, 100 m cells;
- ``dem.tif``: elevation in metres, EPSG:4490 (geographic, 3 arc-second cells ≈ 65 × 93 m, as
  SRTM-like DEMs come), a plain rising to the east with hills.

The fields are tied together the way they are in the black-soil region: the soil is thinner on
hill slopes (erosion) and organic matter follows thickness. Thickness and organic matter have
one unsampled area (nodata), so runs on the demo show how the pipeline reports missing coverage.
Values are rounded to binary fractions (1/8 cm, 1/8 g/kg, 1/16 m) so that DEFLATE with the
floating-point predictor packs them small. The same seed gives the same files' values.
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer

logger = logging.getLogger(__name__)

__all__ = ["make_demo_rasters"]

NODATA = -9999.0
#: DEM cell size in degrees: 3 arc-seconds
DEM_CELL_DEG = 3 / 3600
_PROFILE = {
    "driver": "GTiff",
    "dtype": "float32",
    "count": 1,
    "nodata": NODATA,
    "compress": "deflate",
    "zlevel": 9,
    "predictor": 3,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
}


class _Field:
    """Smooth random fields of metric coordinates (EPSG:4530 metres), fixed by the seed."""

    def __init__(
        self,
        rng: np.random.Generator,
        bounds: tuple[float, float, float, float],
        anchors: np.ndarray | None = None,
    ):
        xmin, ymin, xmax, ymax = bounds
        self.origin = ((xmin + xmax) / 2, (ymin + ymax) / 2)
        w, h = xmax - xmin, ymax - ymin
        # gentle undulation and two noise fields: sums of plane waves of 3–15 km
        self.waves = [self._waves(rng, 8, 3_000, 15_000) for _ in range(3)]
        # hills: wide low ones anywhere, steeper ones where the survey's features are (anchors)
        n_wide, n_steep = 10, 14
        if anchors is None or len(anchors) == 0:
            anchors = np.column_stack([rng.uniform(xmin, xmax, 64), rng.uniform(ymin, ymax, 64)])
        steep = anchors[rng.choice(len(anchors), n_steep)] + rng.normal(0, 400, (n_steep, 2))
        self.hill_x = np.r_[rng.uniform(xmin, xmax, n_wide), steep[:, 0]]
        self.hill_y = np.r_[rng.uniform(ymin, ymax, n_wide), steep[:, 1]]
        self.hill_h = np.r_[rng.uniform(8, 30, n_wide), rng.uniform(30, 120, n_steep)]
        self.hill_s = np.r_[rng.uniform(1_500, 4_000, n_wide), rng.uniform(300, 1_200, n_steep)]
        # the unsampled area of the soil survey (nodata in thickness and organic matter)
        self.hole = (xmin + rng.uniform(0.3, 0.7) * w, ymin + rng.uniform(0.3, 0.7) * h, 900.0)
        self.span = max(w, h)

    @staticmethod
    def _waves(
        rng: np.random.Generator, n: int, shortest: float, longest: float
    ) -> tuple[np.ndarray, ...]:
        angle = rng.uniform(0, 2 * np.pi, n)
        k = 2 * np.pi / rng.uniform(shortest, longest, n)
        amp = rng.uniform(0.5, 1.0, n)
        return k * np.cos(angle), k * np.sin(angle), rng.uniform(0, 2 * np.pi, n), amp / amp.sum()

    def noise(self, i: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A smooth field in about [-1, 1]."""
        kx, ky, phase, amp = self.waves[i]
        dx, dy = (x - self.origin[0]).ravel(), (y - self.origin[1]).ravel()
        arg = np.outer(kx, dx) + np.outer(ky, dy) + phase[:, None]
        return (amp @ np.cos(arg)).reshape(x.shape)

    def hills(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Gaussian hills, metres above the plain."""
        d2 = np.subtract.outer(self.hill_x, x.ravel()) ** 2
        d2 += np.subtract.outer(self.hill_y, y.ravel()) ** 2
        bumps = np.exp(-d2 / (2 * self.hill_s[:, None] ** 2))
        return (self.hill_h @ bumps).reshape(x.shape)

    def elevation(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Metres: a plain at about 170 m rising eastwards, gentle undulation, hills."""
        east = (x - self.origin[0]) / self.span
        return 175 + 45 * east + 10 * self.noise(0, x, y) + self.hills(x, y)

    def thickness(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """cm: thick on the plain, thinner uphill (eroded slopes), 10–80."""
        t = 50 + 48 * self.noise(1, x, y) - 0.4 * self.hills(x, y)
        return np.clip(t, 10, 80)

    def organic_matter(self, x: np.ndarray, y: np.ndarray, thickness: np.ndarray) -> np.ndarray:
        """g/kg: follows thickness, with its own variation, 15–60."""
        om = 6 + 0.6 * thickness + 18 * self.noise(2, x, y)
        return np.clip(om, 15, 60)

    def unsampled(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        hx, hy, r = self.hole
        return (x - hx) ** 2 + (y - hy) ** 2 < r**2


def make_demo_rasters(
    outdir: str | Path,
    extent: gpd.GeoDataFrame | gpd.GeoSeries | tuple[float, float, float, float],
    seed: int = 2024,
    *,
    crs: str = "EPSG:4530",
    cell: float = 100.0,
    dem_crs: str = "EPSG:4490",
    margin: float = 2_000.0,
) -> dict[str, Path]:
    """Write ``thickness.tif``, ``organic_matter.tif`` and ``dem.tif`` over an extent.

    Parameters
    ----------
    outdir : path
        Folder to write into (created if missing); existing files are replaced.
    extent : GeoDataFrame, GeoSeries or (xmin, ymin, xmax, ymax)
        The area to cover: a layer's bounds (reprojected to ``crs``), or bounds in ``crs``. With
        a layer, the steeper hills rise among its features (so that its parcels have slopes).
    seed : int
        Random seed; the same seed gives the same values.
    crs : str
        Projected CRS of the thickness and organic-matter grids (and of the fields' metres).
    cell : float
        Cell size of those grids, in metres.
    dem_crs : str
        CRS of the DEM: geographic (3 arc-second cells) or projected (``cell`` metres).
    margin : float
        Metres added around the extent.

    Returns
    -------
    dict
        ``{"thickness": path, "organic_matter": path, "dem": path}``.

    Examples
    --------
    >>> import geopandas as gpd
    >>> region = gpd.read_file("data/demo/region.gpkg")  # doctest: +SKIP
    >>> make_demo_rasters("data/demo/rasters", region, seed=2024)  # doctest: +SKIP
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    work = CRS.from_user_input(crs)
    anchors = None
    if isinstance(extent, gpd.GeoDataFrame | gpd.GeoSeries):
        geoms = extent.geometry if isinstance(extent, gpd.GeoDataFrame) else extent
        geoms = geoms.to_crs(work)
        bounds = tuple(geoms.total_bounds)
        anchors = shapely.get_coordinates(shapely.centroid(geoms.to_numpy()))
    else:
        bounds = tuple(float(v) for v in extent)
    xmin, ymin, xmax, ymax = bounds
    xmin, ymin = np.floor((xmin - margin) / cell) * cell, np.floor((ymin - margin) / cell) * cell
    xmax, ymax = np.ceil((xmax + margin) / cell) * cell, np.ceil((ymax + margin) / cell) * cell
    rng = np.random.default_rng(seed)
    field = _Field(rng, (xmin, ymin, xmax, ymax), anchors)

    cols, rows = round((xmax - xmin) / cell), round((ymax - ymin) / cell)
    transform = Affine(cell, 0, xmin, 0, -cell, ymax)
    xs = xmin + (np.arange(cols) + 0.5) * cell
    ys = ymax - (np.arange(rows) + 0.5) * cell
    x, y = np.meshgrid(xs, ys)
    thickness = field.thickness(x, y)
    organic = field.organic_matter(x, y, thickness)
    hole = field.unsampled(x, y)
    paths = {
        "thickness": _write(outdir / "thickness.tif", thickness, hole, 8, transform, work, "cm"),
        "organic_matter": _write(
            outdir / "organic_matter.tif", organic, hole, 8, transform, work, "g/kg"
        ),
    }

    dem = CRS.from_user_input(dem_crs)
    to_dem = Transformer.from_crs(work, dem, always_xy=True)
    if dem.is_geographic:
        lon, lat = to_dem.transform(
            np.array([xmin, xmax, xmin, xmax]), np.array([ymin, ymin, ymax, ymax])
        )
        step = DEM_CELL_DEG
        left, right = np.floor(min(lon) / step) * step, np.ceil(max(lon) / step) * step
        bottom, top = np.floor(min(lat) / step) * step, np.ceil(max(lat) / step) * step
    else:
        step = cell
        ex, ey = to_dem.transform(
            np.array([xmin, xmax, xmin, xmax]), np.array([ymin, ymin, ymax, ymax])
        )
        left, right = np.floor(min(ex) / step) * step, np.ceil(max(ex) / step) * step
        bottom, top = np.floor(min(ey) / step) * step, np.ceil(max(ey) / step) * step
    dcols, drows = round((right - left) / step), round((top - bottom) / step)
    dem_transform = Affine(step, 0, left, 0, -step, top)
    gx, gy = np.meshgrid(
        left + (np.arange(dcols) + 0.5) * step, top - (np.arange(drows) + 0.5) * step
    )
    # the DEM is sampled from the same metric field at its own cell centres
    mx, my = Transformer.from_crs(dem, work, always_xy=True).transform(gx, gy)
    elevation = field.elevation(mx, my)
    paths["dem"] = _write(
        outdir / "dem.tif", elevation, np.zeros_like(elevation, bool), 16, dem_transform, dem, "m"
    )
    for name, path in paths.items():
        logger.info("demo raster %s: %s (%d bytes)", name, path, path.stat().st_size)
    return paths


def _write(
    path: Path,
    values: np.ndarray,
    nodata: np.ndarray,
    quantum: int,
    transform: Affine,
    crs: CRS,
    units: str,
) -> Path:
    data = np.round(values * quantum) / quantum
    data = np.where(nodata, NODATA, data).astype(np.float32)
    rows, cols = data.shape
    profile = {**_PROFILE, "width": cols, "height": rows, "transform": transform, "crs": crs}
    if rows < 256 or cols < 256:
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_unit(1, units)
        dst.update_tags(SOURCE="synthetic (blacksoil pipeline.demo_rasters)")
    return path
