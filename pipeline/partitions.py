"""Split a survey job into partitions: by county, by file, or by a grid over the parcels.

A partition is the unit of work of a scaled-out run (DESIGN.md §1, §7): the runner surveys each
one on its own, in-process or on a dask worker, writes its partial results, and merges them.
:func:`plan_partitions` finds the partitions cheaply, without reading geometry where it can:

- ``by: county``: the county codes (first 6 digits of the parcels' county field, ZLDWDM) read
  attribute-only; each county's parcels are then read with a ``where`` filter (ANDed with the
  user's). Parcels whose county field is missing or malformed form one more partition
  (``_other``) and take their county from the counties layer as in a single run. Without a
  county field the counties layer gives the partitions (parcels read with the county's bbox,
  owned by the county their inner point lies in); without either, a grid. A county of more than
  ``max_parcels`` parcels is split into parts by median cuts of its parcels' centres
  (:func:`split_county`), so that no worker holds a whole large county and workers stay evenly
  loaded.
- ``by: grid``: square cells of ``grid_size_m`` over the parcels' extent (feature bounds read
  without attributes); a parcel belongs to the cell holding the centre of its bounding box.
- many files (``inputs.parcels.path`` a glob or a folder): one partition per file.
- ``by: none``: one partition, the whole job.

It hands on :class:`Partition` records (small, picklable) and the read specs derived from them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
from pyproj import CRS, Transformer

from .config import InputSpec, SurveyConfig
from .errors import ConfigError, InputError
from .sources import geoparquet_bounds, geoparquet_crs, is_parquet

#: partition name of the parcels whose county field gives no county
OTHER = "_other"
#: files a folder input may hold (a .gdb folder is itself one input)
VECTOR_SUFFIXES = (".gpkg", ".shp", ".parquet", ".geoparquet", ".gdb", ".geojson", ".fgb")

Kind = Literal["all", "county", "other", "area", "grid", "file"]


@dataclass(frozen=True)
class Partition:
    """One unit of work of a survey job.

    Attributes
    ----------
    name : str
        Unique, file-name safe (a county code, ``_other``, ``grid_x_y`` or a file stem).
    kind : str
        ``all`` (the whole job), ``county`` (a ``where`` on the county field), ``other``
        (parcels with no usable county code), ``area`` (a county polygon of the counties layer),
        ``grid`` (a grid cell) or ``file`` (one file of a many-file input).
    where : str or None
        Extra filter on the parcels, ANDed with the user's ``where``.
    bbox : tuple or None
        Read window for the parcels, in the parcels' CRS (``area``, ``grid``).
    files : tuple of Path
        The parcels files read (several only for a many-file input read as one).
    cell : tuple or None
        The grid cell (xmin, ymin, xmax, ymax), half-open: a parcel belongs to it when the centre
        of its bounding box lies inside.
    county : str or None
        The county code of a ``county`` or ``area`` partition.
    size : int
        Its number of parcels as planning saw them (0 where unknown): executors start the
        largest partitions first, so that a big county does not run alone at the end.
    extent : tuple or None
        For one part of a county split in several (``county`` with a ``cell``): the extent of
        the whole county's parcels, from which ``crs: auto`` chooses the GK zone, as it would
        for the whole county.
    fids : tuple of int
        Parcels that no read window finds (no geometry, or an empty one), read by their FIDs:
        a single run reads and rejects them (QA log), so the first partition of a grid or of
        the counties layer does.
    changes : tuple of str
        For a ``file`` partition: the counties whose change parcels it analyses, those of its
        cultivated parcels that no file before it in the plan has (:func:`claim_changes`).
    """

    name: str
    kind: Kind = "all"
    where: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    files: tuple[Path, ...] = ()
    cell: tuple[float, float, float, float] | None = None
    county: str | None = None
    size: int = 0
    extent: tuple[float, float, float, float] | None = None
    fids: tuple[int, ...] = ()
    changes: tuple[str, ...] = ()


def unlocated(bounds: np.ndarray) -> np.ndarray:
    """Which of n × 4 bounding boxes belong to features no read window finds: no geometry
    (NaN) or an empty one (GDAL gives it the box (0, 0, 0, 0))."""
    return ~np.isfinite(bounds).all(axis=1) | (bounds == 0).all(axis=1)


def has_pattern(path: Path) -> bool:
    """Whether an input path is a glob pattern."""
    return any(c in str(path) for c in "*?[")


def is_many(spec: InputSpec) -> bool:
    """Whether an input is many files: a glob, or a folder that is not a File Geodatabase."""
    path = spec.path
    return has_pattern(path) or (path.is_dir() and path.suffix.lower() != ".gdb")


def input_files(spec: InputSpec) -> list[Path]:
    """The files of an input, sorted: the file itself, a glob's matches or a folder's files.

    Raises
    ------
    InputError
        A glob or folder that holds no input file.
    """
    path = spec.path
    if has_pattern(path):
        files = sorted(Path(p) for p in glob.glob(str(path)))
        if not files:
            raise InputError(f"{path}: no file matches the pattern")
        return files
    if path.is_dir() and path.suffix.lower() != ".gdb":
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in VECTOR_SUFFIXES)
        if not files:
            raise InputError(
                f"{path}: the folder holds no input file ({', '.join(VECTOR_SUFFIXES)})"
            )
        return files
    return [path]


def file_specs(spec: InputSpec) -> list[InputSpec]:
    """One spec per file of an input (the spec itself for a single file)."""
    return [dataclasses.replace(spec, path=f) for f in input_files(spec)]


def combine_where(*clauses: str | None) -> str | None:
    """Join SQL filters with AND (None where there is none)."""
    parts = [f"({c})" for c in clauses if c]
    if not parts:
        return None
    return parts[0][1:-1] if len(parts) == 1 else " AND ".join(parts)


def _quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def county_where(field: str, codes: list[str]) -> str:
    """SQL selecting the features whose county field starts with one of ``codes``."""
    return " OR ".join(f"{_quote(field)} LIKE '{code}%'" for code in codes)


def other_where(field: str, codes: list[str]) -> str:
    """SQL selecting the features whose county field starts with none of ``codes``."""
    if not codes:
        return "1 = 1"
    return f"{_quote(field)} IS NULL OR NOT ({county_where(field, codes)})"


def _field_name(spec: InputSpec, semantic: str) -> str | None:
    """The layer's actual field for a semantic name (case-insensitive), None when absent."""
    name = spec.fields.get(semantic)
    if name is None:
        return None
    try:
        if is_parquet(spec.path):
            import pyarrow.parquet as pq

            fields = list(pq.read_schema(spec.path).names)
        else:
            fields = [str(f) for f in pyogrio.read_info(spec.path, layer=spec.layer)["fields"]]
    except Exception as err:
        raise InputError(f"{spec.path}: cannot open ({_short(err)})") from err
    lower = {f.lower(): f for f in fields}
    return name if name in fields else lower.get(name.lower())


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _county_column(spec: InputSpec, field: str) -> pd.Series:
    """The county field of every parcel, attribute-only (no geometry is read), indexed by FID
    (by row for GeoParquet)."""
    try:
        if is_parquet(spec.path):
            frame = pd.read_parquet(spec.path, columns=[field])
            if spec.where:
                from .sources import _sql_filter

                frame = frame[_sql_filter(frame, spec.where, str(spec.path))]
        else:
            frame = pyogrio.read_dataframe(
                spec.path,
                layer=spec.layer,
                columns=[field],
                read_geometry=False,
                where=spec.where,
                use_arrow=True,
                fid_as_index=True,
            )
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{spec.path}: cannot read field {field} ({_short(err)})") from err
    return frame[field]


def county_codes(values: pd.Series) -> pd.Series:
    """The county code (first 6 digits, when they are digits) of each value; None otherwise."""
    if isinstance(values.dtype, pd.StringDtype):  # text: Arrow's kernels, as str's methods
        text = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(pa.array(values.array)), 0, 6)
        good = pc.fill_null(pc.match_substring_regex(text, r"^\p{Nd}{6}$"), False)
        codes = pc.if_else(good, text, None).to_numpy(zero_copy_only=False)
        return pd.Series(codes, index=values.index, dtype=object)
    raw = values.astype(object)
    text = raw.where(raw.notna(), "").astype(str).str.strip().str[:6]
    good = text.str.fullmatch(r"\d{6}").to_numpy(dtype=bool)
    codes = np.where(good, text.to_numpy(dtype=object), None)
    return pd.Series(codes, index=values.index, dtype=object)


def plan_partitions(cfg: SurveyConfig) -> list[Partition]:
    """The partitions of a job, in a fixed order (by name).

    Parameters
    ----------
    cfg : SurveyConfig
        The job; ``cfg.partition.by`` chooses the split.

    Returns
    -------
    list of Partition

    Raises
    ------
    InputError
        The parcels cannot be read, or hold no feature to partition.
    """
    spec = cfg.inputs.parcels
    by = cfg.partition.by
    if is_many(spec):
        files = input_files(spec)
        names = [_safe_name(f.stem) for f in files]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"inputs.parcels.path: {spec.path} matches files with the same name in different "
                "folders; give them distinct names"
            )
        if by == "none":
            return [Partition("all", "all", files=tuple(files))]
        return [Partition(n, "file", files=(f,)) for n, f in sorted(zip(names, files, strict=True))]
    if by == "none":
        return [Partition("all", "all", files=(spec.path,))]
    if by == "county":
        field = _field_name(spec, "county")
        if field is not None:
            return _by_county_field(spec, field, cfg.partition.max_parcels)
        if cfg.inputs.counties is not None:
            return _by_county_areas(cfg)
    return _by_grid(spec, cfg.partition.grid_size_m)


def claim_changes(
    plan: Sequence[Partition], counties: dict[Path, Iterable[str]]
) -> tuple[Partition, ...]:
    """The plan of a many-file job with the counties whose change parcels each ``file``
    partition analyses: a county's changes go to the first partition (in plan order) whose file
    has cultivated parcels of it (``counties``: each file's county codes, as the county field
    gives them), so that each change parcel is analysed once however the counties are spread
    over the files; the changes of a county no file claims go to the first partition. Other
    plans come back as they are."""
    taken: set[str] = set()
    out = []
    for part in plan:
        if part.kind == "file":
            mine = sorted({c for f in part.files for c in counties.get(f, ())} - taken)
            taken.update(mine)
            part = dataclasses.replace(part, changes=tuple(mine))
        out.append(part)
    return tuple(out)


def _safe_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-.]+", "_", text).strip("._") or "part"


def _sqlite_fid(spec: InputSpec) -> str | None:
    """The FID column of a layer whose ``where`` SQLite runs itself (GeoPackage, SQLite), by
    which a range of FIDs is read from the table's own index; None for any other source."""
    if is_parquet(spec.path):
        return None
    try:
        info = pyogrio.read_info(spec.path, layer=spec.layer)
    except Exception as err:
        raise InputError(f"{spec.path}: cannot read the layer ({_short(err)})") from err
    driver, fid = info.get("driver"), info.get("fid_column")
    return fid if driver in ("GPKG", "SQLite") and fid else None


def _by_county_field(spec: InputSpec, field: str, max_parcels: int = 0) -> list[Partition]:
    column = _county_column(spec, field)
    codes = county_codes(column)
    number, known = pd.factorize(codes)  # each parcel's county as a number; -1: none
    fid = _sqlite_fid(spec)
    if fid is not None:
        # the stretch of FIDs each county's parcels lie in (-1: no county code): SQLite then
        # reads that stretch of the table, not all of it, where it is stored county by county
        stretch = pd.Series(column.index.to_numpy()).groupby(number).agg(["min", "max"])

    def where(clause: str, k: int) -> str:
        if fid is None:
            return clause
        lo, hi = stretch.loc[k]
        return f"({_quote(fid)} BETWEEN {int(lo)} AND {int(hi)}) AND ({clause})"

    counts = np.bincount(number[number >= 0], minlength=len(known))
    sizes = dict(zip(known.tolist(), counts.tolist(), strict=True))
    numbers = {code: k for k, code in enumerate(known.tolist())}
    found = sorted(sizes)
    splittable = not is_parquet(spec.path)
    big = {c for c in found if max_parcels and sizes[c] > max_parcels} if splittable else set()
    if big:  # the bounding boxes of all parcels, read once, in the order of the county column
        fids, bounds = _parcel_boxes(spec)
        order = np.argsort(fids, kind="stable")
        want = column.index.to_numpy()
        at = np.minimum(np.searchsorted(fids[order], want), len(fids) - 1)
        known = fids[order][at] == want
        bounds = np.where(known[:, None], bounds[order][at], np.nan)
    parts = []
    for code in found:
        county = Partition(
            code,
            "county",
            where=where(county_where(field, [code]), numbers[code]),
            files=(spec.path,),
            county=code,
            size=int(sizes[code]),
        )
        if code in big:
            mine = number == numbers[code]
            parts.extend(split_county(county, bounds[mine], max_parcels))
        else:
            parts.append(county)
    if (number < 0).any():
        size = int((number < 0).sum())
        other = where(other_where(field, found), -1)
        parts.append(Partition(OTHER, "other", where=other, files=(spec.path,), size=size))
    if not parts:
        raise InputError(f"{spec.path}: no parcels to partition")
    return parts


def _parcel_boxes(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """(FIDs, n × 4 bounding boxes) of the parcels: from a GeoPackage's spatial index where it
    has one (no geometry is read; the boxes are rounded outward to 32-bit floats), else from
    the geometries. A parcel without geometry is missing or NaN."""
    try:
        info = pyogrio.read_info(spec.path, layer=spec.layer)
        if info["driver"] == "GPKG" and info["geometry_name"]:
            table = f"rtree_{info['layer_name']}_{info['geometry_name']}"
            with contextlib.suppress(Exception):  # no spatial index: read the geometries
                frame = pyogrio.read_dataframe(
                    spec.path,
                    sql=f'SELECT id, minx, miny, maxx, maxy FROM "{table}"',
                    sql_dialect="SQLITE",
                    read_geometry=False,
                    use_arrow=True,
                )
                boxes = frame[["minx", "miny", "maxx", "maxy"]].to_numpy(dtype=float)
                return frame["id"].to_numpy(dtype=np.int64), boxes
    except Exception as err:
        raise InputError(f"{spec.path}: cannot read ({_short(err)})") from err
    return _read_bounds(spec)


def _read_bounds(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """(FIDs, n × 4 bounding boxes) of the parcels, from their geometries (GDAL formats)."""
    try:
        fids, bounds = pyogrio.read_bounds(spec.path, layer=spec.layer, where=spec.where)
    except Exception as err:
        raise InputError(f"{spec.path}: cannot read ({_short(err)})") from err
    return np.asarray(fids, dtype=np.int64), np.asarray(bounds, dtype=float).T


def split_county(county: Partition, bounds: np.ndarray, max_parcels: int) -> list[Partition]:
    """A large county's partition as several, each of at most about ``max_parcels`` parcels.

    The centres of the county's parcels' bounding boxes (``bounds``, n × 4, NaN for a parcel
    without geometry) are split at the median of the longer side, again and again, into
    rectangular cells of nearly equal counts; the outer cells reach to infinity, so every parcel
    lies in exactly one. Each part reads the county's parcels (its ``where``) through the box
    around its own and keeps those whose centre lies in its cell (half-open, as a grid cell).
    Parcels without a geometry, which no window finds, are read by the first part, which reads
    the county whole. The boxes may be rounded outward (a spatial index's): a part's window is
    its cell widened by the largest half-size of a parcel, so it holds every parcel whose exact
    centre lies in the cell, and the sizes are about right.
    """
    ok = ~unlocated(bounds)
    has_empty = not ok.all()
    bounds = bounds[ok]
    if len(bounds) <= max_parcels:
        return [county]
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    extent = (
        float(bounds[:, 0].min()),
        float(bounds[:, 1].min()),
        float(bounds[:, 2].max()),
        float(bounds[:, 3].max()),
    )
    inf = math.inf
    cells = _median_cells(cx, cy, np.arange(len(cx)), (-inf, -inf, inf, inf), max_parcels)
    parts = []
    half_w = float(((bounds[:, 2] - bounds[:, 0]) / 2).max())
    half_h = float(((bounds[:, 3] - bounds[:, 1]) / 2).max())
    for i, (cell, members) in enumerate(cells):
        x0, y0, x1, y1 = cell
        window = (
            max(x0 - half_w, extent[0]),
            max(y0 - half_h, extent[1]),
            min(x1 + half_w, extent[2]),
            min(y1 + half_h, extent[3]),
        )
        parts.append(
            dataclasses.replace(
                county,
                name=f"{county.name}_{i + 1}",
                bbox=None if (i == 0 and has_empty) else tuple(float(v) for v in window),
                cell=cell,
                size=len(members),
                extent=extent,
            )
        )
    return parts


def _median_cells(
    cx: np.ndarray,
    cy: np.ndarray,
    members: np.ndarray,
    cell: tuple[float, float, float, float],
    most: int,
) -> list[tuple[tuple[float, float, float, float], np.ndarray]]:
    """Split ``cell`` at the median centre along its longer spread until each part holds at
    most ``most`` of the ``members`` (in a fixed order: lower/left part first)."""
    if len(members) <= most:
        return [(cell, members)]
    x, y = cx[members], cy[members]
    wide = (x.max() - x.min()) >= (y.max() - y.min())
    coord = x if wide else y
    k = math.ceil(len(members) / most)
    # split so that both sides hold whole multiples of about ``most``
    at = np.sort(coord)[len(members) * (k // 2) // k]
    low = coord < at
    if not low.any() or low.all():  # all centres on one line: cannot be cut there
        return [(cell, members)]
    x0, y0, x1, y1 = cell
    a, b = ((x0, y0, at, y1), (at, y0, x1, y1)) if wide else ((x0, y0, x1, at), (x0, at, x1, y1))
    return [
        *_median_cells(cx, cy, members[low], tuple(map(float, a)), most),
        *_median_cells(cx, cy, members[~low], tuple(map(float, b)), most),
    ]


def in_cell(cx: np.ndarray, cy: np.ndarray, cell: tuple[float, float, float, float]) -> np.ndarray:
    """Whether each centre lies in a half-open cell [x0, x1) × [y0, y1)."""
    x0, y0, x1, y1 = cell
    return (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)


def _by_county_areas(cfg: SurveyConfig) -> list[Partition]:
    """One partition per county polygon of the counties layer (parcels have no county field)."""
    counties = cfg.inputs.counties
    code_field = _field_name(counties, "code")
    if code_field is None:
        raise InputError(f"{counties.path}: field {counties.fields['code']!r} not found")
    try:
        frame = pyogrio.read_dataframe(
            counties.path, layer=counties.layer, columns=[code_field], where=counties.where
        )
    except Exception as err:
        raise InputError(f"{counties.path}: cannot read ({_short(err)})") from err
    parcels_crs = _layer_crs(cfg.inputs.parcels)
    if frame.crs is not None and parcels_crs is not None and not frame.crs.equals(parcels_crs):
        frame = frame.to_crs(parcels_crs)
    codes = frame[code_field].astype(str).str.strip()
    parts = []
    for code in sorted(set(codes)):
        xmin, ymin, xmax, ymax = frame.geometry[codes == code].total_bounds
        if not np.all(np.isfinite([xmin, ymin, xmax, ymax])):
            continue
        parts.append(
            Partition(
                _safe_name(code),
                "area",
                bbox=(xmin, ymin, xmax, ymax),
                files=(cfg.inputs.parcels.path,),
                county=code,
            )
        )
    if not parts:
        raise InputError(f"{counties.path}: no county polygon to partition by")
    lost = _unlocated_fids(cfg.inputs.parcels)
    if lost:
        parts[0] = dataclasses.replace(parts[0], fids=lost)
    return parts


def _unlocated_fids(spec: InputSpec) -> tuple[int, ...]:
    """The FIDs of the parcels (after the user's ``where``) that no read window finds."""
    if is_parquet(spec.path):
        fids, bounds = parcel_bounds(spec)
        return tuple(fids[unlocated(bounds)].tolist())
    located, boxes = _parcel_boxes(spec)
    if len(located) and not unlocated(boxes).any():  # a spatial index: only the located ones
        try:
            every = pyogrio.read_dataframe(
                spec.path,
                layer=spec.layer,
                columns=[],
                where=spec.where,
                read_geometry=False,
                fid_as_index=True,
                use_arrow=True,
            ).index.to_numpy(dtype=np.int64)
        except Exception as err:
            raise InputError(f"{spec.path}: cannot read ({_short(err)})") from err
        return tuple(np.setdiff1d(every, located).tolist())
    return tuple(located[unlocated(boxes)].tolist())


def _layer_crs(spec: InputSpec) -> CRS | None:
    if spec.crs is not None:
        return CRS.from_user_input(spec.crs)
    try:
        if is_parquet(spec.path):
            return geoparquet_crs(spec.path)
        crs = pyogrio.read_info(spec.path, layer=spec.layer)["crs"]
    except Exception as err:
        raise InputError(f"{spec.path}: cannot open ({_short(err)})") from err
    return CRS.from_user_input(crs) if crs else None


def parcel_bounds(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """(FIDs, n × 4 bounding boxes) of the parcels, read without attributes (a GeoParquet
    file's FIDs are its row numbers, as :func:`pipeline.sources.read_layer` gives them)."""
    if not is_parquet(spec.path):
        return _read_bounds(spec)
    try:
        bounds = geoparquet_bounds(spec.path)
        return np.arange(len(bounds), dtype=np.int64), bounds
    except Exception as err:
        raise InputError(f"{spec.path}: cannot read ({_short(err)})") from err


def _grid_size(spec: InputSpec, size_m: float) -> float:
    crs = _layer_crs(spec)
    if crs is not None and crs.is_geographic:
        return size_m / 111_320.0  # metres to degrees of latitude; cells need not be exact
    return size_m


def grid_cells(bounds: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """The (column, row) of the grid cell holding the centre of each bounding box."""
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    return np.floor(cx / size).astype(np.int64), np.floor(cy / size).astype(np.int64)


def _by_grid(spec: InputSpec, size_m: float) -> list[Partition]:
    fids, bounds = parcel_bounds(spec)
    ok = ~unlocated(bounds)
    if not ok.any():
        raise InputError(f"{spec.path}: no parcel geometry to partition")
    size = _grid_size(spec, size_m)
    col, row = grid_cells(bounds[ok], size)
    parts = []
    for c, r in sorted(set(zip(col.tolist(), row.tolist(), strict=True))):
        cell = (c * size, r * size, (c + 1) * size, (r + 1) * size)
        sel = (col == c) & (row == r)
        b = bounds[ok][sel]
        bbox = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
        parts.append(
            Partition(
                f"grid_{c}_{r}",
                "grid",
                bbox=bbox,
                files=(spec.path,),
                cell=cell,
                size=int(sel.sum()),
            )
        )
    # parcels with no geometry still need a home: the first cell reads them (and rejects them)
    if not ok.all():
        parts[0] = dataclasses.replace(parts[0], fids=tuple(fids[~ok].tolist()))
    return parts


def parcel_specs(spec: InputSpec, part: Partition) -> list[InputSpec]:
    """The read specs of a partition's parcels (one per file)."""
    files = part.files or (spec.path,)
    return [
        dataclasses.replace(spec, path=f, where=combine_where(spec.where, part.where))
        for f in files
    ]


def transform_bbox(
    bbox: tuple[float, float, float, float], src: CRS, dst: CRS | None
) -> tuple[float, float, float, float]:
    """A bbox in another CRS (the box around the densified edges of the reprojected box)."""
    if dst is None or src.equals(dst):
        return bbox
    tr = Transformer.from_crs(src, dst, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(*bbox, densify_pts=21)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InputError(f"cannot transform the read window {bbox} from {src} to {dst}")
    return (x0, y0, x1, y1)


def layer_crs(spec: InputSpec) -> CRS | None:
    """The CRS of an input layer (its ``crs`` override, else the file's)."""
    return _layer_crs(spec)


def fingerprint(cfg: SurveyConfig, part: Partition, files: dict[str, str]) -> str:
    """A hash of what a partition's result depends on: the job config (without the output and
    partitioning keys), the partition and its input files' fingerprints."""
    raw = {k: v for k, v in cfg.raw.items() if k not in ("output",)}
    out = cfg.output
    payload = {
        "config": raw,
        "output_crs": out.crs,
        "partition": dataclasses.asdict(part),
        "files": files,
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
