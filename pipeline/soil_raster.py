"""The soil map as a classified raster: cells of soil-type codes → soil polygons.

Some surveys hold the soil map as a raster (one soil-type code per cell) instead of polygons.
:func:`soil_from_raster` reads the part of the raster under one partition (the parcels' extent),
polygonises it with ``rasterio.features.shapes`` (GDAL's polygoniser, 4-connected, so the
polygons are valid and tile the map without overlaps or gaps), maps the cell values to soil
types through the config's ``raster_values`` table and hands on a frame shaped like a read soil
layer (``soil_type``, ``subtype``, ``id``, ``_fid``, geometry in the working CRS). The survey then
treats it exactly as a polygon soil map: same overlay, area rules and invariants; nodata cells
are gaps in the map (unmapped area).

The raster is polygonised by fixed sheets of cells (like map sheets, 图幅), a whole sheet at a
time, so that the polygons and their ids (TRBM: the raster row and column of a polygon's first
cell) do not depend on which partition reads them: the archive numbers stay the same however
the job is partitioned. GDAL's polygons come out per sheet in one pass and their GeoJSON is turned
into shapely geometries in one vectorised call.
"""

from __future__ import annotations

import json
import logging
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.features import shapes
from rasterio.warp import transform_bounds

from .config import InputSpec
from .errors import InputError
from .qa import QALog
from .quality import open_raster, read_window

logger = logging.getLogger(__name__)

__all__ = ["soil_from_raster"]

#: cell value types GDAL's polygoniser takes
_INT_MAX = np.iinfo(np.int32).max
#: sheet size (cells) the soil raster is polygonised by: 1024 cells are 30.7 km at 30 m
TILE_CELLS = 1024


def soil_from_raster(
    spec: InputSpec,
    crs: CRS,
    bounds: tuple[float, float, float, float] | np.ndarray,
    qa: QALog,
    *,
    tile_cells: int | None = None,
) -> gpd.GeoDataFrame:
    """Soil polygons from a classified soil raster, over ``bounds`` of the working CRS.

    The raster is read and polygonised by sheets of ``tile_cells`` × ``tile_cells`` cells on a
    grid fixed to the raster's origin, the sheets that the bounds touch. A soil area that crosses
    a sheet edge becomes one polygon per sheet, like a soil map digitised by map sheets (图幅),
    so the polygons and their ids are the same whichever partition reads them.

    Parameters
    ----------
    spec : InputSpec
        ``inputs.soil`` with ``raster_values`` (cell value → soil type name or code), ``band``,
        ``nodata`` and ``crs`` (override of the raster's CRS).
    crs : pyproj.CRS
        The working CRS; the polygons are reprojected to it (the raster is never warped).
    bounds : (xmin, ymin, xmax, ymax)
        The partition's extent in the working CRS (the parcels' bounds).
    qa : QALog
        Receives cell values missing from ``raster_values``.
    tile_cells : int, optional
        Sheet size in cells (default :data:`TILE_CELLS`).

    Returns
    -------
    GeoDataFrame
        One row per polygon, sorted by its first cell: ``soil_type`` (from the table, or the
        value as text where the table lacks it), ``subtype`` (None), ``id`` (``R<row>C<col>``,
        the raster row and column of the polygon's first cell), ``_fid`` and the geometry.

    Raises
    ------
    InputError
        The raster cannot be read, does not reach ``bounds``, has no data there or holds codes
        that are not integers.

    Examples
    --------
    >>> soil = soil_from_raster(cfg.inputs.soil, crs, parcels.total_bounds, qa)  # doctest: +SKIP
    """
    table = {int(k): v for k, v in (spec.raster_values or {}).items()}
    tile_cells = tile_cells or TILE_CELLS
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    cells_with_data = 0
    with open_raster(
        spec.path, band=spec.band, nodata=spec.nodata, crs=spec.crs, what="inputs.soil"
    ) as r:
        where, raster_crs, transform = r.where, r.crs, r.transform
        xmin, ymin, xmax, ymax = transform_bounds(crs, r.crs, *bounds, densify_pts=21)
        col0, row0 = ~transform @ (xmin, ymax)
        col1, row1 = ~transform @ (xmax, ymin)
        height, width = r.shape
        left, top = max(0, math.floor(col0) - 1), max(0, math.floor(row0) - 1)
        right, bottom = min(width, math.ceil(col1) + 1), min(height, math.ceil(row1) + 1)
        if right <= left or bottom <= top:
            raise InputError(f"{where}: the soil raster does not reach the parcels")
        for t_row in range(top // tile_cells, (bottom - 1) // tile_cells + 1):
            for t_col in range(left // tile_cells, (right - 1) // tile_cells + 1):
                r0, c0 = t_row * tile_cells, t_col * tile_cells
                rows, cols = min(tile_cells, height - r0), min(tile_cells, width - c0)
                values = read_window(r, r0, c0, rows, cols)
                geoms, value = _polygonise(values, transform @ Affine.translation(c0, r0), where)
                parts.append((geoms, value))
                cells_with_data += int((~np.isnan(values)).sum())
    if cells_with_data == 0:
        raise InputError(f"{where}: no soil cell with data under the parcels")
    geoms = np.concatenate([g for g, _ in parts])
    value = np.concatenate([v for _, v in parts])

    row, col = _first_cells(geoms, transform)
    order = np.lexsort((col, row))
    geoms, value, row, col = geoms[order], value[order], row[order], col[order]

    names = pd.Series(value).map(table)
    missing = names.isna().to_numpy()
    ids = np.char.add(np.char.add("R", row.astype(str)), np.char.add("C", col.astype(str)))
    for v in np.unique(value[missing]):
        sel = missing & (value == v)
        qa.add(
            "soil",
            ids[sel],
            "raster value",
            f"cell value {v} not in inputs.soil.raster_values",
            "soil type set to the value",
        )
    soil_type = np.where(missing, value.astype(str).astype(object), names.to_numpy(dtype=object))
    frame = gpd.GeoDataFrame(
        {
            "soil_type": soil_type,
            "subtype": None,
            "id": ids.astype(object),
            "_fid": np.arange(len(geoms), dtype=np.int64),
        },
        geometry=geoms,
        crs=raster_crs,
    )
    logger.info("%s: %d soil polygons from %d cells", where, len(frame), cells_with_data)
    if raster_crs.equals(crs):
        return frame
    frame["geometry"] = _on_cell_corners(geoms, transform)
    return frame.to_crs(crs)


def _polygonise(values: np.ndarray, transform: Affine, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of 4-connected cells of one value (NaN: no data) and their values."""
    valid = ~np.isnan(values)
    if not valid.any():
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    codes = values[valid]
    if not np.array_equal(codes, np.round(codes)) or np.abs(codes).max() > _INT_MAX:
        raise InputError(
            f"{where}: a classified soil raster needs integer cell values (soil-type codes)"
        )
    cells = np.where(valid, values, 0).astype(np.int32)
    polygons = list(shapes(cells, mask=valid, connectivity=4, transform=transform))
    collection = {"type": "GeometryCollection", "geometries": [g for g, _ in polygons]}
    geoms = shapely.get_parts(shapely.from_geojson(json.dumps(collection)))
    return geoms, np.array([v for _, v in polygons], dtype=np.int64)


def _on_cell_corners(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Give every polygon a vertex at each cell corner along its edges, at exactly the
    coordinates its neighbours use, before reprojection.

    GDAL leaves out the corners along a straight run of edge, so one polygon may have a corner
    where its neighbour's edge runs straight on; reprojected, that straight edge and the corner
    no longer meet (a grid line is not straight in the other CRS) and the polygons would overlap
    or leave slivers. With the same vertices on both sides they map to the same points.
    """
    step = min(abs(transform.a), abs(transform.e))
    dense = shapely.segmentize(geoms, step / 2)
    inv = ~transform

    def snap(coords: np.ndarray) -> np.ndarray:
        col, row = inv @ (coords[:, 0], coords[:, 1])
        x, y = transform @ (np.round(col), np.round(row))
        return np.column_stack([x, y])

    # the half-cell points land on corners already there: drop the repeats
    return shapely.remove_repeated_points(shapely.transform(dense, snap))


def _first_cells(geoms: np.ndarray, transform: Affine) -> tuple[np.ndarray, np.ndarray]:
    """Raster (row, col) of each polygon's first cell in scan order: its top row, leftmost cell
    there. Every cell belongs to one polygon, so these are unique ids."""
    shells = shapely.get_exterior_ring(geoms)
    coords, owner = shapely.get_coordinates(shells, return_index=True)
    inv = ~transform
    cols, rows = inv @ (coords[:, 0], coords[:, 1])
    rows = np.round(rows).astype(np.int64)
    cols = np.round(cols).astype(np.int64)
    n = len(geoms)
    top = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(top, owner, rows)
    on_top = rows == top[owner]
    left = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(left, owner[on_top], cols[on_top])
    return top, left
