"""A survey job from config to archive: read and check, survey, summarise, write.

``run_survey`` runs the stages in order and writes the archive; ``validate_inputs`` runs only the
reading and checking. Both report progress through an optional callback, so the CLI can show it
and notebooks can ignore it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely
from pyproj import CRS, Transformer

from . import archive as arc
from . import crossing
from .codes import BLACK_SOIL_GROUPS, LANDUSE_NAMES, M2_PER_HECTARE, M2_PER_MU
from .config import PROTECTION_INPUTS, InputSpec, RasterSpec, SurveyConfig
from .errors import InputError, Interrupted, InvariantError, OutputError, UsageError
from .executors import Background, Executor, release_memory
from .ids import (
    FILE,
    cultivated_fields,
    fill_missing,
    job_renames,
    later_duplicates,
    of_files,
    read_renames,
    write_renames,
)
from .ids import digest as renames_digest
from .overlay import default_threads, safe_intersection
from .partitions import (
    Partition,
    claim_changes,
    county_codes,
    file_specs,
    fingerprint,
    grid_cells,
    in_cell,
    input_files,
    is_many,
    layer_crs,
    parcel_specs,
    plan_partitions,
    transform_bbox,
)
from .protection import (
    ProtectionInputs,
    ProtectionRules,
    analyse_protection,
    balance_from_cents,
)
from .qa import QALog, as_string, as_text, clean_polygons
from .quality import add_quality, quality_fields, quality_rows, quality_table
from .soil_raster import soil_from_raster
from .sources import FID, describe, layer_fingerprint, read_layer
from .survey import (
    BLACK,
    CONSERVATION_FLOOR_M2,
    CONSERVATION_TOLERANCE,
    NON_BLACK,
    prepare_soil,
    survey_parcels,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
#: a column's values for a frame to be built of: text in Arrow storage, or a numpy array
Column = np.ndarray | pd.api.extensions.ExtensionArray

#: protection areas on the pieces that the county summary adds up (where the analysis ran)
PROTECTION_SUMMARY = ("JBNT_MJ", "CZKF_MJ", "STHX_MJ", "JSZY_MJ")


@dataclass
class Inputs:
    """The checked inputs of a job, in the working CRS."""

    crs: CRS
    parcels: gpd.GeoDataFrame  # cultivated, clean, with XZQDM
    soil: gpd.GeoDataFrame
    counties: gpd.GeoDataFrame | None
    region: np.ndarray | None
    counts: dict[str, int] = field(default_factory=dict)
    qa: QALog = field(default_factory=QALog)
    protection: ProtectionInputs = field(default_factory=ProtectionInputs)


@dataclass(frozen=True)
class SurveyOutcome:
    """What a survey run produced."""

    archive: Path
    counts: dict[str, int]
    totals: pd.DataFrame
    conservation: dict[str, object]
    qa_summary: pd.DataFrame
    timings: dict[str, float]


def _noop(_: str) -> None:
    pass


def gk_zone_crs(lon: float) -> CRS:
    """The CGCS2000 3-degree Gauss-Krüger zone CRS (with zone number) for a longitude."""
    zone = round(lon / 3.0)
    if not 25 <= zone <= 45:
        raise InputError(
            f"longitude {lon:.3f}° is outside the CGCS2000 3-degree zones 25-45 (75°-135°E); "
            "set 'crs' in the config"
        )
    return CRS.from_epsg(4513 + zone - 25)


def _working_crs(
    cfg: SurveyConfig,
    parcels: gpd.GeoDataFrame,
    where: str,
    extent: tuple[float, float, float, float] | None = None,
) -> CRS:
    """The job's CRS, or with ``crs: auto`` the GK zone of the middle of the parcels (or of
    ``extent``, in the parcels' CRS: a split county's whole extent)."""
    if cfg.crs != "auto":
        return CRS.from_user_input(cfg.crs)
    xmin, ymin, xmax, ymax = extent if extent is not None else parcels.total_bounds
    if not np.all(np.isfinite([xmin, ymin, xmax, ymax])):
        raise InputError(f"{where}: no usable geometry to choose a working CRS from")
    to_geo = Transformer.from_crs(parcels.crs, CRS.from_epsg(4490), always_xy=True)
    lon, _ = to_geo.transform((xmin + xmax) / 2, (ymin + ymax) / 2)
    zone = gk_zone_crs(lon)
    # keep the data's own GK zone (with or without zone number) when it is the right one
    src = parcels.crs
    epsg = src.to_epsg() if src.is_projected else None
    if epsg is not None and 4513 <= epsg <= 4554:
        src_zone = 25 + (epsg - 4513 if epsg <= 4533 else epsg - 4534)
        if src_zone == zone.to_epsg() - 4513 + 25:
            return src
    return zone


#: a read window (xmin, ymin, xmax, ymax) in the working CRS
Window = tuple[float, float, float, float]
#: column naming the file a feature came from, for inputs of many files (with ``_fid``)
SRC = "_src"


@dataclass
class Scope:
    """One partition being read: the partition, the whole plan (for ownership rules), and the
    features each layer read and kept (``file:fid`` keys; the merge counts them once)."""

    part: Partition
    plan: tuple[Partition, ...] = ()
    #: the new ids of the partition's duplicate parcel ids (:func:`pipeline.ids.read_renames`)
    renames: pd.DataFrame | None = None
    read_keys: dict[str, set[str]] = field(default_factory=dict)
    used_keys: dict[str, set[str]] = field(default_factory=dict)

    def saw(self, name: str, frame: gpd.GeoDataFrame, used: bool = False) -> None:
        keys = _feature_keys(frame)
        target = self.used_keys if used else self.read_keys
        target.setdefault(name, set()).update(keys)


class EmptyPartition(Exception):
    """A partition holds no parcel to survey (its counts and QA rows still count)."""

    def __init__(self, counts: dict[str, int], qa: QALog, message: str) -> None:
        super().__init__(message)
        self.counts = counts
        self.qa = qa


def _sources(frame: pd.DataFrame) -> np.ndarray:
    """Each feature's file among the input's files as its reader numbered them (``_src``; 0 for
    a one-file input)."""
    return frame[SRC].to_numpy() if SRC in frame else np.zeros(len(frame), dtype=np.int64)


def _feature_keys(frame: gpd.GeoDataFrame) -> np.ndarray:
    src = _sources(frame)
    return np.char.add(np.char.add(src.astype(str), ":"), frame[FID].to_numpy().astype(str))


def _fids(frame: gpd.GeoDataFrame) -> np.ndarray:
    if SRC in frame and len(frame) and frame[SRC].to_numpy().max() > 0:
        return _feature_keys(frame).astype(object)
    return frame[FID].to_numpy()


def extent_of(*frames: gpd.GeoDataFrame | None) -> tuple[float, float, float, float]:
    """The bounds of the frames' features together (frames that are None or empty add none)."""
    bounds = np.array([f.total_bounds for f in frames if f is not None and len(f)])
    return (*bounds[:, :2].min(axis=0), *bounds[:, 2:].max(axis=0))


def _window(
    parcels: gpd.GeoDataFrame, changes: gpd.GeoDataFrame | None = None, margin: float = 0.0
) -> Window:
    xmin, ymin, xmax, ymax = extent_of(parcels, changes)
    return (xmin - margin, ymin - margin, xmax + margin, ymax + margin)


#: how far (m) from a parcel's or change parcel's box a soil polygon's box may lie to be read
_SOIL_MARGIN = 10.0


class _Near:
    """Which features of a layer lie near the parcels and change parcels: their bounding box
    within a margin of one of theirs. The rule depends on each feature alone, so a single run
    keeps the features that the partitions keep together."""

    def __init__(self, parcels: gpd.GeoDataFrame, changes: gpd.GeoDataFrame | None) -> None:
        geoms = [parcels.geometry.to_numpy()]
        if changes is not None:
            geoms.append(changes.geometry.to_numpy())
        self.geoms = np.concatenate(geoms)
        self._tree: shapely.STRtree | None = None

    def of(self, frame: gpd.GeoDataFrame, margin: float) -> np.ndarray:
        """A mask of ``frame``'s features near them (a feature without geometry is not)."""
        if self._tree is None:  # built once for all the layers
            self._tree = shapely.STRtree(self.geoms)
        b = shapely.bounds(frame.geometry.to_numpy())
        located = np.flatnonzero(np.isfinite(b).all(axis=1))
        b = b[located]
        boxes = shapely.box(b[:, 0] - margin, b[:, 1] - margin, b[:, 2] + margin, b[:, 3] + margin)
        keep = np.zeros(len(frame), dtype=bool)
        keep[located[self._tree.query(boxes)[0]]] = True
        return keep


#: the start of read_layer's message for a filter or window that selects nothing
_NO_FEATURES = ": no features"


def _read(
    spec: InputSpec,
    name: str,
    crs: CRS | None,
    cfg: SurveyConfig,
    qa: QALog,
    scope: Scope | None = None,
    window: Window | None = None,
    near: Callable[[gpd.GeoDataFrame], np.ndarray] | None = None,
) -> gpd.GeoDataFrame:
    """Read a layer; in a partition through ``window`` (none: whole), file by file for an input
    of many files (their features told apart by ``_src``).

    With ``near`` (a mask of the features near the parcels: :class:`_Near`), only those
    features are kept, counted and logged (read_layer's QA rows about the others are dropped):
    a single run and the partitions then keep the same features, whatever their windows read.
    """
    log = QALog() if near is not None else qa
    if scope is None and not is_many(spec):
        out = read_layer(spec, name, crs=crs, qa=log, engine=cfg.io.engine)
    else:
        frames = []
        for i, fspec in enumerate(file_specs(spec)):
            bbox = None
            if window is not None and scope is not None:
                bbox = transform_bbox(window, crs, layer_crs(fspec))
            try:
                frame = read_layer(fspec, name, crs=crs, qa=log, engine=cfg.io.engine, bbox=bbox)
            except InputError as err:
                if bbox is not None and _NO_FEATURES in str(err):
                    continue  # nothing of this file in the window
                raise
            frame[SRC] = np.int64(i)
            frames.append(frame)
        if frames:
            out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        else:
            first = file_specs(spec)[0]
            out = read_layer(first, name, crs=crs, qa=QALog(), engine=cfg.io.engine)
            out = out.iloc[:0].copy()
            out[SRC] = np.int64(0)
    if near is not None:
        out = out[near(out)].reset_index(drop=True)
        qa.extend(log.only(as_text(out["id"] if "id" in out else out[FID])))
    if scope is not None:
        scope.saw(name, out)
    return out


def _clean(
    frame: gpd.GeoDataFrame,
    name: str,
    ids: np.ndarray,
    qa: QALog,
    scope: Scope | None = None,
) -> gpd.GeoDataFrame:
    geoms, keep = clean_polygons(frame.geometry.to_numpy(), ids, name, qa)
    frame = frame.copy()
    frame["geometry"] = geoms
    frame = frame[keep].reset_index(drop=True)
    if scope is not None:
        scope.saw(name, frame, used=True)
    return frame


def _parcel_ids(
    parcels: gpd.GeoDataFrame, qa: QALog, renames: pd.DataFrame | None = None
) -> gpd.GeoDataFrame:
    """Make parcel ids present and unique (missing → FID-based id, duplicates → suffixed).

    A single run ranks the duplicates itself; a partition takes the new ids of its parcels from
    ``renames``, the job's table (:func:`pipeline.ids.job_renames`: ``file`` as the partition
    numbers its sources, ``_fid``, ``id``), since its own parcels are not all the job's.
    """
    ids, missing = fill_missing(parcels["id"], parcels[FID].to_numpy())
    if missing.any():
        qa.add(
            "parcels",
            ids[missing].to_numpy(),
            "field id",
            "parcel id (BSM) missing",
            "id made from the feature id",
        )
    if renames is None:
        new = later_duplicates(ids)
    else:
        rows = pd.DataFrame(
            {FILE: _sources(parcels), FID: parcels[FID].to_numpy(), "row": np.arange(len(ids))}
        )
        hit = rows.merge(renames, on=[FILE, FID]).sort_values("row")
        new = pd.Series(hit["id"].to_numpy(dtype=object), index=hit["row"].to_numpy())
    if len(new):
        qa.add(
            "parcels",
            ids[new.index].to_numpy(),
            "field id",
            "duplicate parcel id (BSM)",
            "later duplicates renamed <BSM>-2, -3, ...",
        )
        ids[new.index] = new
    parcels = parcels.copy()
    parcels["id"] = ids.astype(str).to_numpy()
    return parcels


def _county_codes(
    parcels: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame | None,
    qa: QALog,
    layer: str = "parcels",
) -> pd.Series:
    """County code (XZQDM) of each feature: the county field's first 6 digits (ZLDWDM of a
    parcel, XZQDM of a change parcel), else the county it lies in."""
    code = pd.Series(
        county_codes(parcels["county"]).to_numpy()
        if "county" in parcels
        else np.full(len(parcels), None, dtype=object),
        dtype=object,
    )
    todo = code.isna().to_numpy()
    if todo.any() and counties is not None:
        points = shapely.point_on_surface(parcels.geometry.to_numpy()[todo])
        tree = shapely.STRtree(counties.geometry.to_numpy())
        pi, ci = tree.query(points, predicate="within")
        first = np.unique(pi, return_index=True)[1]
        found = np.flatnonzero(todo)[pi[first]]
        code[found] = counties["code"].astype(str).to_numpy()[ci[first]]
        qa.add(
            layer,
            parcels["id"].to_numpy()[found],
            "field county",
            "county code missing or malformed",
            "county taken from the counties layer",
        )
        todo = code.isna().to_numpy()
    if todo.any():
        qa.add(
            layer,
            parcels["id"].to_numpy()[todo],
            "field county",
            "county code missing and not inside any county",
            "county set to 000000",
        )
        code[todo] = "000000"
    return code


def _log_overlapping_parcels(
    parcels: gpd.GeoDataFrame, qa: QALog, others: np.ndarray | None = None
) -> None:
    """Parcels of a land survey do not overlap; where they do, both keep their official area (the
    survey works parcel by parcel) and the QA log names the pair and the shared area (more than
    :data:`crossing.MIN_SHARED`), on the later parcel of the pair. ``others``: the geometries of
    the parcels read beside them (not cultivated), with which they make a coverage.

    Where polygons overlap, one with an edge no other polygon shares (:func:`crossing.
    unshared_edges`) lies in the overlap. The parcels together with the valid polygons among
    ``others`` make a coverage in which those are few (on its outer edge, and where vertices
    do not match): where none of them overlaps another, nothing overlaps. Otherwise the pairs
    are found from the parcels' own such polygons (:func:`_overlapping_pairs`); where those are
    many (the parcels alone leave holes where the others lie, and vertices may not match their
    neighbours'), from those the coverage validator finds an edge of inside another parcel."""
    geoms = parcels.geometry.to_numpy()
    every = geoms
    if others is not None and len(others):
        polygonal = (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)
        fit = np.isin(shapely.get_type_id(others), polygonal)
        fit[fit] = shapely.is_valid(others[fit])
        every = np.concatenate([geoms, others[fit]])
    seeds = np.flatnonzero(crossing.unshared_edges(every))
    if len(seeds) <= len(every) // 8:
        near, b = shapely.STRtree(every).query(every[seeds])
        a = seeds[near]
        if not crossing.overlapping(every[a[a != b]], every[b[a != b]]).any():
            return
        if every is not geoms:  # the parcels' own
            seeds = np.flatnonzero(crossing.unshared_edges(geoms))
    if len(seeds) > len(geoms) // 8:  # (also where those of ``every`` were too many)
        try:
            seeds = np.flatnonzero(~shapely.is_empty(shapely.coverage_invalid_edges(geoms)))
        except shapely.errors.GEOSException:
            seeds = np.arange(len(geoms))
    a, b, shared = _overlapping_pairs(geoms, seeds)
    ids = parcels["id"].to_numpy()
    for i, j, area in zip(a, b, shared, strict=True):
        qa.add(
            "parcels", [ids[j]], "overlap", crossing.overlap_problem(ids[i], area), crossing.ACTION
        )


def _overlapping_pairs(
    geoms: np.ndarray, seeds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``(i, j)``, ``i < j``, of polygons whose interiors meet over more than
    :data:`crossing.MIN_SHARED`, and that area, found from ``seeds``: each seed is paired with
    its neighbours, and so in turn are the neighbours of every polygon in such an overlap (an
    overlapped area may run on under them, past polygons whose edges are all shared)."""
    tree = shapely.STRtree(geoms)
    paired = np.zeros(len(geoms), dtype=bool)
    none = np.empty(0, dtype=np.intp)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [(none, none, np.empty(0))]
    todo = np.unique(seeds)
    while len(todo):
        paired[todo] = True
        near, b = tree.query(geoms[todo])
        a = todo[near]
        a, b = a[a != b], b[a != b]
        hit = crossing.overlapping(geoms[a], geoms[b])
        a, b = np.minimum(a[hit], b[hit]), np.maximum(a[hit], b[hit])
        shared = shapely.area(safe_intersection(geoms[a], geoms[b]))
        real = shared > crossing.MIN_SHARED
        found.append((a[real], b[real], shared[real]))
        _, around = tree.query(geoms[np.unique(np.concatenate([a[real], b[real]]))])
        todo = np.unique(around[~paired[around]])
    a, b, shared = (np.concatenate(x) for x in zip(*found, strict=True))
    first = np.unique(a.astype(np.int64) * len(geoms) + b, return_index=True)[1]
    return a[first], b[first], shared[first]


def load_inputs(
    cfg: SurveyConfig, progress: Progress = _noop, *, scope: Scope | None = None
) -> Inputs:
    """Read and check every input of a job; return the clean layers and the QA log.

    With ``scope``, only one partition's inputs: its parcels, the other layers read through a
    window around them (the counties, construction and change layers whole).

    Raises
    ------
    InputError
        On what cannot be repaired (file, layer, field, CRS, no features).
    """
    qa = QALog()
    counts: dict[str, int] = {}
    spec = cfg.inputs.parcels
    progress(f"reading parcels: {describe(spec)}")
    if scope is None and not is_many(spec):
        parcels = _read(spec, "parcels", None, cfg, qa)
    else:
        parcels = _partition_parcels(cfg, scope, qa)
    counts["parcels_read"] = len(parcels)
    crs = _working_crs(cfg, parcels, describe(spec), scope.part.extent if scope else None)
    if not parcels.crs.equals(crs):
        parcels = parcels.to_crs(crs)

    # cultivated parcels only; the rest are outside the survey by definition
    landuse = parcels["landuse"].astype(object).where(parcels["landuse"].notna(), None)
    cultivated = landuse.isin(cfg.cultivated_codes).to_numpy()
    counts["parcels_not_cultivated"] = int((~cultivated).sum())
    others = parcels.geometry.to_numpy()[~cultivated]
    parcels = parcels[cultivated].reset_index(drop=True)
    # why there is nothing to survey: an error for a job; a partition goes on where it owns
    # change parcels (they are analysed even with no cultivated parcel beside them)
    empty: list[str] = []

    def nothing(message: str) -> None:
        if scope is None:
            raise InputError(message)
        empty.append(message)

    if len(parcels) == 0:
        nothing(
            f"{describe(spec)}: no cultivated parcels (field {spec.fields['landuse']} in "
            f"{', '.join(cfg.cultivated_codes)})"
        )
    parcels = _parcel_ids(parcels, qa, scope.renames if scope is not None else None)
    parcels = _clean(parcels, "parcels", parcels["id"].to_numpy(), qa)
    if len(parcels) == 0 and not empty:
        nothing(f"{describe(spec)}: no cultivated parcel has a usable polygon geometry")
    _log_overlapping_parcels(parcels, qa, others)
    del others

    counties = None
    if cfg.inputs.counties is not None:
        progress(f"reading counties: {describe(cfg.inputs.counties)}")
        counties = _read(cfg.inputs.counties, "counties", crs, cfg, qa, scope)
        codes = counties["code"].astype(str).to_numpy()
        counties = _clean(counties, "counties", codes, qa, scope)
        counties["code"] = counties["code"].astype(str).str.strip()
    parcels["XZQDM"] = _county_codes(parcels, counties, qa).to_numpy()

    changes = None
    if cfg.inputs.changes is not None:
        # the change parcels come first: the soil and zone layers are read around them too
        changes = _own_changes(cfg, crs, counties, parcels, qa, counts, scope, progress)
    region = None
    if cfg.inputs.region is not None:
        progress(f"reading region: {describe(cfg.inputs.region)}")
        # read whole, so that every partition cuts the parcels by the same region polygons
        reg = _read(cfg.inputs.region, "region", crs, cfg, qa, scope)
        reg = _clean(reg, "region", _fids(reg), qa, scope)
        if len(reg) == 0 and scope is None:
            raise InputError(f"{describe(cfg.inputs.region)}: no usable region polygon")
        region = reg.geometry.to_numpy()
        # the parcels in the tree, the few large region polygons as the (prepared) queries
        tree = shapely.STRtree(parcels.geometry.to_numpy())
        hit = np.zeros(len(parcels), dtype=bool)
        hit[tree.query(region, predicate="intersects")[1]] = True
        qa.add(
            "parcels",
            parcels["id"].to_numpy()[~hit],
            "region",
            "parcel outside the black-soil region",
            "not surveyed",
        )
        counts["parcels_outside_region"] = int((~hit).sum())
        parcels = parcels[hit].reset_index(drop=True)
        if len(parcels) == 0 and not empty:
            nothing(f"{describe(cfg.inputs.region)}: no cultivated parcel lies in the region")

    if empty and (changes is None or len(changes) == 0):
        raise EmptyPartition(counts, qa, empty[0])
    progress(f"reading soil map: {describe(cfg.inputs.soil)}")
    near = _Near(parcels, changes)
    xmin, ymin, xmax, ymax = extent_of(parcels, changes)
    if cfg.inputs.soil.raster_values is not None:
        soil = soil_from_raster(cfg.inputs.soil, crs, (xmin, ymin, xmax, ymax), qa)
    else:
        window = _window(parcels, changes, margin=_SOIL_MARGIN)
        soil = _read(
            cfg.inputs.soil, "soil", crs, cfg, qa, scope, window, lambda f: near.of(f, _SOIL_MARGIN)
        )
    counts["soil_read"] = len(soil)
    soil_ids = soil["id"].astype(str).to_numpy() if "id" in soil else _fids(soil)
    soil = _clean(soil, "soil", soil_ids, qa, scope)
    if len(soil) == 0 and scope is None and cfg.inputs.soil.raster_values is None:
        # no soil polygon near the parcels: they are unmapped land, as in a partition whose
        # window holds none, unless the layer has no usable polygon at all
        _check_soil_layer(cfg)
    counts["parcels_surveyed"] = len(parcels)
    counts["soil_used"] = len(soil)
    protection = _protection_inputs(
        cfg,
        crs,
        counties,
        qa,
        counts,
        progress,
        scope,
        _window(parcels, changes),
        changes,
        lambda f: near.of(f, 0.0),
    )
    return Inputs(
        crs=crs,
        parcels=parcels,
        soil=soil,
        counties=counties,
        region=region,
        counts=counts,
        qa=qa,
        protection=protection,
    )


def _no_soil(cfg: SurveyConfig) -> str:
    return f"{describe(cfg.inputs.soil)}: no usable soil polygon"


#: the QA row of a job none of whose parcels lies on the soil map
_UNCOVERED = {
    "layer": "soil",
    "feature_id": "*",
    "check": "coverage",
    "problem": "the soil map does not cover the parcels at all",
    "action": "all parcel area counted as unmapped",
}


def _protection_inputs(
    cfg: SurveyConfig,
    crs: CRS,
    counties: gpd.GeoDataFrame | None,
    qa: QALog,
    counts: dict[str, int],
    progress: Progress,
    scope: Scope | None = None,
    window: Window | None = None,
    changes: gpd.GeoDataFrame | None = None,
    near: Callable[[gpd.GeoDataFrame], np.ndarray] | None = None,
) -> ProtectionInputs:
    """Read and clean the optional zone, construction and change layers.

    The zone layers keep the features ``near`` the parcels (in a partition read through
    ``window``); the construction layer is read whole (its projects are numbered in source
    order); the change parcels come already read.
    """
    layers: dict[str, gpd.GeoDataFrame] = {}
    for name in PROTECTION_INPUTS:
        spec = getattr(cfg.inputs, name)
        if spec is None:
            continue
        if name == "changes" and changes is not None:
            counts["changes_read"], counts["changes_used"] = changes.attrs["counts"]
            layers[name] = changes
            continue
        progress(f"reading {name}: {describe(spec)}")
        if name == "construction":
            frame = _read(spec, name, crs, cfg, qa, scope)
        else:
            frame = _read(spec, name, crs, cfg, qa, scope, window, near)
        counts[f"{name}_read"] = len(frame)
        ids = frame["id"].astype(str).to_numpy() if "id" in frame else _fids(frame)
        frame = _clean(frame, name, ids, qa, scope)
        if "id" not in frame:  # rows are named by their source feature id
            frame["id"] = frame[FID].astype(str)
        if name == "changes":
            frame["XZQDM"] = _county_codes(frame, counties, qa, "changes").to_numpy()
        counts[f"{name}_used"] = len(frame)
        layers[name] = frame
    return ProtectionInputs(**layers)


def validate_inputs(cfg: SurveyConfig, progress: Progress = _noop) -> Inputs:
    """Run only the reading and checking of a job (``blacksoil validate``)."""
    return load_inputs(cfg, progress)


def run_survey(
    cfg: SurveyConfig,
    *,
    overwrite: bool = False,
    progress: Progress = _noop,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
) -> SurveyOutcome:
    """Run a survey job and write its archive.

    A job with ``partition.by: none`` (the default) and one parcels file runs in this process in
    one piece. Otherwise it is split into partitions (:func:`pipeline.partitions.plan_partitions`),
    each surveyed on its own (in this process, on a local dask cluster of ``workers`` processes
    or on the cluster at ``scheduler``) into a work folder beside the archive, and merged.

    Parameters
    ----------
    cfg : SurveyConfig
        The job (see :func:`pipeline.load_config`).
    overwrite : bool
        Replace an existing archive at ``cfg.output.path``.
    progress : callable, optional
        Called with a short message as each stage starts (and as each partition ends).
    workers : int, optional
        Run the partitions on a local dask cluster of this many worker processes.
    scheduler : str, optional
        Run the partitions on an existing dask cluster (``tcp://HOST:PORT``).
    resume : bool
        Keep the partitions an interrupted run finished (same config and inputs) and run only
        the others.

    Returns
    -------
    SurveyOutcome

    Raises
    ------
    UsageError
        The archive exists and ``overwrite`` is false (checked before any work).
    InputError, OutputError, InvariantError
        Bad input (a failed partition is named, the others are kept for ``resume``); the archive
        cannot be written; the area accounting does not add up.
    Interrupted
        A partitioned run was interrupted (Ctrl-C, a ``KeyboardInterrupt``): the message says
        how many partitions are done and kept for ``resume``.

    Examples
    --------
    >>> from pipeline import load_config, run_survey
    >>> outcome = run_survey(load_config("configs/demo.yaml"), overwrite=True)  # doctest: +SKIP
    """
    if workers is not None and workers < 1:
        raise UsageError(f"--workers: expected 1 or more worker processes, got {workers}")
    if workers is not None and scheduler is not None:
        raise UsageError("--workers and --scheduler exclude each other")
    _check_output(cfg, overwrite)
    simple = workers is None and scheduler is None and not resume
    if simple and cfg.partition.by == "none" and not is_many(cfg.inputs.parcels):
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        inputs = load_inputs(cfg, progress)
        timings["read_check"] = time.perf_counter() - t0
        partial = _survey(cfg, inputs, progress, timings)
        return _finish(cfg, [partial], overwrite=overwrite, progress=progress, soil_checked=True)
    with _work_lock(work_folder(cfg.output.path)):
        return _run_partitioned(
            cfg,
            overwrite=overwrite,
            progress=progress,
            workers=workers,
            scheduler=scheduler,
            resume=resume,
        )


def _check_output(cfg: SurveyConfig, overwrite: bool) -> None:
    """The archive (a GeoPackage, or a folder for ``output.format: parquet``) may be written."""
    arc.check_output(cfg.output.path, overwrite)


@dataclass
class PartialResult:
    """One partition's share of the archive, before the merge.

    ``layers``: HTGDTB (numbered within the partition), the balance, the protection layers,
    the QA log and ``_parcels`` (county and official area of each surveyed parcel, for the
    reconciliation). Empty for a partition with nothing to survey.
    """

    name: str
    crs: str
    layers: dict[str, pd.DataFrame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    read_keys: dict[str, list[str]] = field(default_factory=dict)
    used_keys: dict[str, list[str]] = field(default_factory=dict)
    empty: str | None = None
    #: layers read back from the work folder: layer → its (Geo)Parquet file, read when merged
    sources: dict[str, str] = field(default_factory=dict)
    #: the spatial layers among ``sources``
    geo: list[str] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return name in self.layers or name in self.sources

    def layer_names(self) -> list[str]:
        """The layers, in the order the partition wrote them."""
        return [*self.layers, *(n for n in self.sources if n not in self.layers)]

    def is_spatial(self, name: str) -> bool:
        return name in self.geo or isinstance(self.layers.get(name), gpd.GeoDataFrame)

    def fields(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """A layer's fields (all, or ``columns``), without its geometry: read from its file,
        or a copy of the frame in memory."""
        if name in self.sources:
            with _reading(self.sources[name]):
                if columns is None:
                    schema = pq.read_schema(self.sources[name])
                    columns = [c for c in schema.names if c != "geometry"]
                return pd.read_parquet(self.sources[name], columns=columns)
        frame = self.layers[name]
        if columns is None:
            columns = [c for c in frame.columns if c != "geometry"]
        return pd.DataFrame(frame[columns])

    def arrow(self, name: str, columns: list[str]) -> pa.Table:
        """Some of a layer's columns as an Arrow table (no pandas objects made)."""
        if name in self.sources:
            with _reading(self.sources[name]):
                return pq.read_table(self.sources[name], columns=columns)
        return pa.Table.from_pandas(self.layers[name][columns], preserve_index=False)

    def schema(self, name: str) -> pa.Schema:
        """A layer's fields as an Arrow schema (with the geometry, if any)."""
        if name in self.sources:
            with _reading(self.sources[name]):
                return pq.read_schema(self.sources[name])
        return pa.Schema.from_pandas(self.fields(name), preserve_index=False)

    def rows(self, name: str) -> int:
        """A layer's number of rows."""
        if name in self.sources:
            with _reading(self.sources[name]):
                return pq.read_metadata(self.sources[name]).num_rows
        return len(self.layers[name])


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """A partition's result file that cannot be read (removed, truncated, damaged) is named.

    Raises
    ------
    InputError
        The file cannot be read.
    """
    try:
        yield
    except (OSError, pa.ArrowException) as err:
        raise InputError(
            f"{path}: a partition's result cannot be read ({err}); run again without --resume "
            "to redo the partitions"
        ) from err


#: the partial layer of the surveyed parcels' counties and official areas
_PARCELS = "_parcels"


def _survey(
    cfg: SurveyConfig,
    inputs: Inputs,
    progress: Progress,
    timings: dict[str, float],
    name: str = "all",
    threads: int | None = None,
) -> PartialResult:
    """The stages on checked inputs: overlay, pieces, protection, quality, balance."""
    qa = inputs.qa
    progress(
        f"overlay: {len(inputs.parcels)} cultivated parcels × {len(inputs.soil)} soil polygons"
    )
    t1 = time.perf_counter()
    threads = threads or cfg.overlay.threads or default_threads()
    # the soil cover must tile the change parcels too (which of them were black soil)
    xmin, ymin, xmax, ymax = extent_of(inputs.parcels, inputs.protection.changes)
    extent = shapely.box(xmin - 10, ymin - 10, xmax + 10, ymax + 10)
    cover = prepare_soil(inputs.soil, extent, cfg.black_soil_types, qa)
    result = survey_parcels(
        inputs.parcels,
        cover,
        crs=inputs.crs,
        qa=qa,
        region=inputs.region,
        min_piece_area=cfg.min_piece_area,
        max_vertices=cfg.overlay.max_vertices,
        threads=threads,
    )
    timings["overlay"] = time.perf_counter() - t1
    if not result.pieces["cls"].isin([BLACK, NON_BLACK]).any():
        row = _UNCOVERED
        qa.add(row["layer"], [row["feature_id"]], row["check"], row["problem"], row["action"])

    progress("building the archive")
    t2 = time.perf_counter()
    names = _county_names(inputs)
    pieces = archive_pieces(result.pieces, inputs.parcels, names, cfg.year)
    timings["summaries"] = time.perf_counter() - t2

    progress("protection status and conflicts")
    t_p = time.perf_counter()
    protection = analyse_protection(
        pieces,
        inputs.protection,
        ProtectionRules(
            cultivated_codes=cfg.cultivated_codes,
            construction_codes=cfg.construction_codes,
            digging_codes=cfg.digging_codes,
            approved_cover_share=cfg.approved_cover_share,
            min_piece_area=cfg.min_piece_area,
        ),
        cover=cover,
        region=inputs.region,
        names=names,
        qa=qa,
        threads=threads,
        max_vertices=cfg.overlay.max_vertices,
    )
    for col in protection.fields.columns:
        pieces[col] = protection.fields[col].to_numpy()
    pieces = pieces.set_geometry("geometry")
    timings["protection"] = time.perf_counter() - t_p

    if cfg.inputs.rasters:
        t_q = time.perf_counter()
        pieces = add_quality(pieces, cfg.inputs.rasters, cfg.quality, qa, progress)
        timings["quality"] = time.perf_counter() - t_q

    t2 = time.perf_counter()
    balance = archive_balance(result.balance, inputs.parcels)
    timings["summaries"] += time.perf_counter() - t2
    counts = {
        **inputs.counts,
        "pieces_black": len(pieces),
        "pieces_total": len(result.pieces),
        **protection.counts,
    }
    area = (
        inputs.parcels["area"].to_numpy(float)
        if "area" in inputs.parcels
        else np.full(len(inputs.parcels), np.nan)
    )
    return PartialResult(
        name=name,
        crs=inputs.crs.to_wkt(),
        layers={
            arc.PIECES: pieces,
            arc.BALANCE: balance,
            **protection.layers,
            arc.QA_LOG: qa.frame(),
            _PARCELS: pd.DataFrame({"XZQDM": inputs.parcels["XZQDM"].to_numpy(), "area": area}),
        },
        counts=counts,
        timings=timings,
        status=protection.status,
        names=names,
    )


def _finish(
    cfg: SurveyConfig,
    partials: list[PartialResult],
    *,
    overwrite: bool,
    progress: Progress,
    merge_timings: dict[str, float] | None = None,
    executor: Executor | None = None,
    workdir: Path | None = None,
    soil_checked: bool = False,
) -> SurveyOutcome:
    """Merge the partitions' results, add the summaries and metadata, write the archive.

    With an ``executor`` whose tasks run in other processes (a cluster) and a GeoPackage
    archive, its tasks merge some layers (or all, a group of counties each) into GeoPackages of
    their own in ``workdir`` while this process writes the others, and they are stacked into
    the archive in their turn (:func:`_merge_in_tasks`). ``soil_checked``: see
    :func:`merge_partials`."""
    t0 = time.perf_counter()
    merged = merge_partials(cfg, partials, soil_checked=soil_checked)
    stacked: dict[str, arc.Stacked] = {}
    if executor is not None and executor.distributed and cfg.output.format == "gpkg":
        assert workdir is not None
        stacked = _merge_in_tasks(executor, merged, workdir / "_merge")
    timings = {**merged.timings, **(merge_timings or {})}
    counts = dict(merged.counts)  # and the QA rows, once the QA log is made
    timings["merge"] = time.perf_counter() - t0
    timings.setdefault("summaries", 0.0)

    groups = merged.groups

    def spent() -> dict[str, float]:
        """The timings, the quality summary's share of the merge added to the quality's."""
        if not cfg.inputs.rasters:
            return timings
        return {**timings, "quality": timings.get("quality", 0.0) + groups.quality_seconds}

    def metadata() -> pd.DataFrame:
        counts["qa_rows"] = len(merged.qa)
        return _metadata(
            cfg,
            merged.crs,
            counts,
            spent(),
            groups.conservation(),
            groups.reconciliation(),
            merged.status,
        )

    # the summaries are added up as the layers they come from are written: the layers made
    # from them are callables, called when their turn comes (see write_archive)
    layers: dict[str, arc.Layer] = {
        arc.PIECES: merged.pieces,
        arc.BALANCE: merged.balance,
        arc.COUNTY_SUMMARY: groups.county_summary,
        **(
            {arc.COUNTIES: lambda: _county_boundaries(cfg, merged.crs, groups.counties())}
            if cfg.inputs.counties is not None
            else {}
        ),
        **({arc.QUALITY_SUMMARY: groups.quality_summary} if cfg.inputs.rasters else {}),
        **merged.protection,
        arc.QA_LOG: lambda: merged.qa,
        arc.METADATA: metadata,
    }
    layers.update(stacked)
    layers[arc.DICTIONARY] = lambda: arc.field_dictionary(layers=layers)
    release_memory()  # the merge's transient copies, before the write's buffers
    progress(f"writing {cfg.output.path}")
    t3 = time.perf_counter()
    if cfg.output.format == "parquet":
        write_parquet_archive(cfg.output.path, layers, overwrite=overwrite)
    else:
        arc.write_archive(cfg.output.path, layers, overwrite=overwrite)
    timings["write"] = time.perf_counter() - t3
    conservation = groups.conservation()
    if not conservation["passed"]:
        raise InvariantError(
            f"{cfg.output.path}: conservation check failed for {conservation['unbalanced']} "
            f"parcel(s) (max relative error {conservation['max_rel_error']:.3g}); "
            f"see layer {arc.BALANCE}"
        )
    if not groups.reconciliation()["passed"]:
        raise InvariantError(
            f"{cfg.output.path}: county totals do not reconcile with the input TBMJ"
        )
    qa_frame = merged.qa
    counts["qa_rows"] = len(qa_frame)
    qa_summary = (
        qa_frame.groupby(["layer", "check", "action"], sort=False)
        .size()
        .rename("count")
        .reset_index()
        if len(qa_frame)
        else pd.DataFrame(columns=["layer", "check", "action", "count"])
    )
    return SurveyOutcome(
        cfg.output.path, counts, groups.county_summary(), conservation, qa_summary, spent()
    )


def _county_boundaries(cfg: SurveyConfig, crs: CRS, codes: set[str]) -> gpd.GeoDataFrame | None:
    """The surveyed counties' boundaries (HTGD_XZQ), for maps of the archive; None without a
    counties input. Read again here (a small layer): partitions read only their own window.
    Its repairs were logged when the partitions read it."""
    spec = cfg.inputs.counties
    if spec is None:
        return None
    frame = read_layer(spec, "counties", crs=crs, qa=QALog(), engine=cfg.io.engine)
    code = frame["code"].astype(str).str.strip().to_numpy(dtype=object)
    geoms, keep = clean_polygons(frame.geometry.to_numpy(), code, "counties", QALog())
    keep &= np.isin(code, list(codes))
    name = _text(frame, "name", np.arange(len(frame)))
    out = gpd.GeoDataFrame(
        {"XZQDM": code[keep], "XZQMC": name[keep]}, geometry=geoms[keep], crs=crs
    )
    return out.sort_values("XZQDM", kind="stable").reset_index(drop=True)


def _county_names(inputs: Inputs) -> dict[str, str]:
    if inputs.counties is None or "name" not in inputs.counties:
        return {}
    c = inputs.counties
    return dict(
        zip(
            c["code"].astype(str),
            c["name"].astype(object).where(c["name"].notna(), ""),
            strict=True,
        )
    )


def _text(frame: pd.DataFrame, col: str, rows: np.ndarray) -> Column:
    """Column ``col`` of ``frame`` at ``rows`` as stripped text in pandas' Arrow string storage
    (no Python strings made, and none for the frame built of it to convert back); missing
    values stay missing, and all are missing where ``frame`` has no such column."""
    if col not in frame:
        return np.full(len(rows), None, dtype=object)
    return as_string(frame[col]).astype("str").array.take(rows)


def _take(column: pd.Series, rows: np.ndarray | None = None) -> Column:
    """A column's values (at ``rows``): text kept in its Arrow storage, other values as
    objects, as a frame built of them infers them."""
    if isinstance(column.dtype, pd.StringDtype):
        text = column.astype("str").array
        return text if rows is None else text.take(rows)
    values = column.to_numpy(dtype=object)
    return values if rows is None else values[rows]


def _lookup(keys: object, table: dict[str, str], missing: object) -> np.ndarray:
    """``table[key]`` for each key, ``missing`` where a key is missing or not in the table
    (each distinct key looked up once)."""
    codes, uniq = pd.factorize(pd.Series(keys, copy=False))
    found = [table.get(k) for k in uniq.tolist()]
    values = np.array([missing if v is None else v for v in found] + [missing], dtype=object)
    return values[codes]  # code -1 (a missing key): the last value


def archive_pieces(
    pieces: gpd.GeoDataFrame, parcels: gpd.GeoDataFrame, names: dict[str, str], year: int
) -> gpd.GeoDataFrame:
    """The HTGDTB layer: black-soil pieces with parcel and soil attributes and archive numbers.

    Archive numbers (DABH) follow the order (county, BSM, soil polygon id), numbered per county,
    so they do not depend on how the job was partitioned.
    """
    black = pieces[pieces["cls"].to_numpy() == BLACK]
    rows = black["parcel"].to_numpy()
    county = _take(parcels["XZQDM"], rows)
    landuse = _text(parcels, "landuse", rows)
    landuse_name = _text(parcels, "landuse_name", rows)
    unnamed = np.asarray(pd.isna(landuse_name))
    if unnamed.any():  # the official name of the land-use code
        landuse_name = landuse_name.copy()
        landuse_name[unnamed] = _lookup(landuse, LANDUSE_NAMES, None)[unnamed]
    out = gpd.GeoDataFrame(
        {
            "DABH": "",
            "BSM": _take(parcels["id"], rows),
            "TBBH": _text(parcels, "number", rows),
            "XZQDM": county,
            "XZQMC": _lookup(county, names, ""),
            "ZLDWDM": _text(parcels, "county", rows),
            "DLBM": landuse,
            "DLMC": landuse_name,
            "TL": _take(black["group"]),
            "TLDM": _lookup(black["group"], BLACK_SOIL_GROUPS, None),
            "TRLX": _take(black["soil_type"]),
            "YL": _take(black["subtype"]),
            "TRBM": _take(black["soil_id"].astype(str)),
            "MJ": np.round(black["MJ"].to_numpy(), 4),
            "TBMJ": black["TBMJ"].to_numpy(),
            "KCXS": parcels["deduction_rate"].to_numpy(float)[rows]
            if "deduction_rate" in parcels
            else np.zeros(len(rows)),
            "KCMJ": black["KCMJ"].to_numpy(),
            "TBDLMJ": black["TBDLMJ"].to_numpy(),
            "GDLX": _text(parcels, "terrace", rows),
            "GDPDJB": _text(parcels, "slope_grade", rows),
            "SBSL": black["sliver_count"].to_numpy(np.int32),
            "SJNF": np.int32(year),
        },
        geometry=black.geometry.to_numpy(),
        crs=pieces.crs,
    )
    out = out.iloc[_text_order(out, _SORT_KEYS)].reset_index(drop=True)
    seq = out.groupby("XZQDM", sort=False).cumcount().to_numpy() + 1
    dabh = _piece_numbers(out["XZQDM"].to_numpy(), seq, year)
    out["DABH"] = pd.Series(dabh, index=out.index, dtype="str")  # text even with no pieces
    return out


def _piece_numbers(counties: np.ndarray, seq: np.ndarray, year: int) -> np.ndarray:
    """DABH: HT, county code, survey year, number in the county (7 digits)."""
    number = pc.utf8_lpad(pc.cast(pa.array(seq), pa.string()), 7, "0")
    text = pa.array(counties, pa.string())
    dabh = pc.binary_join_element_wise("HT", text, str(year), number, "")
    return dabh.to_numpy(zero_copy_only=False)


def archive_balance(balance: pd.DataFrame, parcels: gpd.GeoDataFrame) -> pd.DataFrame:
    """The per-parcel balance table, sorted by (county, BSM)."""
    rows = balance["parcel"].to_numpy()
    out = pd.DataFrame(
        {
            "BSM": _take(parcels["id"], rows),
            "XZQDM": _take(parcels["XZQDM"], rows),
            "DLBM": _text(parcels, "landuse", rows),
        }
    )
    for col in balance.columns.drop("parcel"):
        out[col] = balance[col].to_numpy()
    out["BALANCED"] = out["BALANCED"].astype(np.int32)
    out["SLIVERS"] = out["SLIVERS"].astype(np.int32)
    return out.iloc[_text_order(out, ("XZQDM", "BSM"))].reset_index(drop=True)


def _zone_columns(columns: list[str]) -> list[str]:
    """The protection areas of the pieces' ``columns`` that the county summary adds up."""
    zone_cols = [c for c in PROTECTION_SUMMARY if c in columns]
    if "JBNT_MJ" in columns:
        zone_cols.insert(1, "DNRHX_MJ")
    return zone_cols


def county_rows(pieces: pd.DataFrame, balance: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The county summary's rows of these counties (black-soil farmland per soil group and per
    county, TL = 合计; areas in cents), before the grand total. A province is summed one group
    of counties at a time (each county in one group, its pieces and balance rows whole) and
    finished by :func:`county_table`; ``columns``: the pieces' fields."""
    zone_cols = _zone_columns(columns)
    frame = pd.DataFrame(pieces.drop(columns="geometry", errors="ignore"))
    if "DNRHX_MJ" in zone_cols:
        frame["DNRHX_MJ"] = frame["TBDLMJ"] - frame["JBNT_MJ"]
    # sum in integer cents so that the totals are exact
    for col in ("TBMJ", "TBDLMJ", *zone_cols):
        frame[col] = np.round(frame[col].to_numpy(float) * 100).astype(np.int64)
    agg = {
        "TBGS": ("DABH", "size"),
        "YTBGS": ("BSM", "nunique"),
        "MJ": ("MJ", "sum"),
        "TBMJ": ("TBMJ", "sum"),
        "TBDLMJ": ("TBDLMJ", "sum"),
        **{c: (c, "sum") for c in zone_cols},
    }
    by_group = frame.groupby(["XZQDM", "TL"], sort=True).agg(**agg).reset_index()
    by_county = frame.groupby("XZQDM", sort=True).agg(**agg).reset_index().assign(TL="合计")
    out = pd.concat([by_group, by_county], ignore_index=True)
    # counties with cultivated land but no black soil still get a 合计 row
    bal = pd.DataFrame(
        {
            "XZQDM": balance["XZQDM"].to_numpy(),
            "GDTBMJ": np.round(balance["TBMJ"].to_numpy(float) * 100).astype(np.int64),
            "GDTBDLMJ": np.round(balance["TBDLMJ"].to_numpy(float) * 100).astype(np.int64),
        }
    )
    cult = bal.groupby("XZQDM").sum()
    missing = sorted(set(cult.index) - set(out["XZQDM"]))
    if missing:
        zeros = {"TBGS": 0, "YTBGS": 0, "MJ": 0.0, "TBMJ": 0, "TBDLMJ": 0}
        extra = pd.DataFrame(
            {"XZQDM": missing, "TL": "合计", **zeros, **dict.fromkeys(zone_cols, 0)}
        )
        out = pd.concat([out, extra], ignore_index=True)
    is_total = (out["TL"] == "合计").to_numpy()
    for col in ("GDTBMJ", "GDTBDLMJ"):
        out[col] = np.where(is_total, out["XZQDM"].map(cult[col]).fillna(0), 0).astype(np.int64)
    return out


def county_table(
    parts: list[pd.DataFrame], columns: list[str], names: dict[str, str]
) -> pd.DataFrame:
    """The county summary from :func:`county_rows` of groups of counties: the grand total
    (XZQDM = 合计) added up from the county totals, areas in m², 公顷 and 亩, in county order."""
    zone_cols = _zone_columns(columns)
    out = pd.concat(parts, ignore_index=True)
    sums = ["TBGS", "YTBGS", "MJ", "TBMJ", "TBDLMJ", *zone_cols, "GDTBMJ", "GDTBDLMJ"]
    county = out[(out["TL"] == "合计").to_numpy()]
    grand = {c: county[c].sum() if len(county) else 0 for c in sums}
    out = pd.concat(
        [out, pd.DataFrame([{"XZQDM": "合计", "TL": "合计", **grand}])], ignore_index=True
    )
    out["XZQMC"] = [names.get(c, "全部" if c == "合计" else "") for c in out["XZQDM"]]
    is_total = (out["TL"] == "合计").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(is_total & (out["GDTBDLMJ"] > 0), out["TBDLMJ"] / out["GDTBDLMJ"], np.nan)
    for col in ("TBMJ", "TBDLMJ", "GDTBMJ", "GDTBDLMJ", *zone_cols):
        out[col] = out[col].to_numpy(np.int64) / 100
    out["TBDLMJ_GQ"] = out["TBDLMJ"] / M2_PER_HECTARE
    out["TBDLMJ_MU"] = out["TBDLMJ"] / M2_PER_MU
    out["HTZB"] = share
    out["MJ"] = out["MJ"].astype(float).round(2)
    # counties in code order, each county's groups then its 合计, the grand total last
    out["_grand"] = out["XZQDM"] == "合计"
    out["_total"] = out["TL"] == "合计"
    out = out.sort_values(["_grand", "XZQDM", "_total", "TL"], kind="stable")
    cols = [
        "XZQDM",
        "XZQMC",
        "TL",
        "TBGS",
        "YTBGS",
        "MJ",
        "TBMJ",
        "TBDLMJ",
        "TBDLMJ_GQ",
        "TBDLMJ_MU",
        "GDTBMJ",
        "GDTBDLMJ",
        "HTZB",
        *zone_cols,
    ]
    out = out[cols].reset_index(drop=True)
    out["TBGS"] = out["TBGS"].astype(np.int64)
    out["YTBGS"] = out["YTBGS"].astype(np.int64)
    return out


def _balance_errors(balance: pd.DataFrame) -> tuple[int, int, float]:
    """Balance rows' (parcels, unbalanced parcels, largest relative error)."""
    rel = balance["REL_ERR"].to_numpy()
    unbalanced = int((balance["BALANCED"] == 0).sum())
    return len(balance), unbalanced, float(np.nanmax(rel)) if len(rel) else 0.0


def _checked(column: str) -> bool:
    """A balance column the checks read (:func:`_balance_errors`, :func:`_reconcile`)."""
    return column in ("XZQDM", "REL_ERR", "BALANCED") or column.endswith(("TBMJ", "TBDLMJ"))


def _conservation(groups: list[tuple[int, int, float]]) -> dict[str, object]:
    """The conservation check of all parcels from :func:`_balance_errors` of groups of them."""
    unbalanced = sum(g[1] for g in groups)
    return {
        "parcels": sum(g[0] for g in groups),
        "unbalanced": unbalanced,
        "max_rel_error": float(np.nanmax([g[2] for g in groups])) if groups else 0.0,
        "tolerance": CONSERVATION_TOLERANCE,
        "floor_m2": CONSERVATION_FLOOR_M2,
        "passed": unbalanced == 0,
    }


def _reconcile(balance: pd.DataFrame, parcels: gpd.GeoDataFrame) -> dict[str, object]:
    """Per county: the archive's class totals (TBMJ, TBDLMJ) equal the input parcels' sums."""
    cents = {
        c: np.round(balance[c].to_numpy() * 100).astype(np.int64)
        for c in balance.columns
        if c.endswith("TBMJ") or c.endswith("TBDLMJ")
    }
    frame = pd.DataFrame({"XZQDM": balance["XZQDM"], **cents})
    by = frame.groupby("XZQDM").sum()
    parts_tbmj = by[["HT_TBMJ", "FHT_TBMJ", "WDT_TBMJ", "QYW_TBMJ"]].sum(axis=1)
    parts_tbdl = by[["HT_TBDLMJ", "FHT_TBDLMJ", "WDT_TBDLMJ", "QYW_TBDLMJ"]].sum(axis=1)
    if "area" in parcels:
        given = pd.Series(np.round(parcels["area"].to_numpy(float) * 100), index=parcels["XZQDM"])
        known = given.notna() & (given > 0)
        input_tbmj = given[known].groupby(level=0).sum()
    else:
        input_tbmj = pd.Series(dtype=float)
    computed = by["TBMJ"].sub(input_tbmj.reindex(by.index).fillna(0))
    counties = {
        str(code): {
            "TBMJ": by.loc[code, "TBMJ"] / 100,
            "TBMJ_pieces": parts_tbmj[code] / 100,
            "TBDLMJ": by.loc[code, "TBDLMJ"] / 100,
            "TBDLMJ_pieces": parts_tbdl[code] / 100,
            "TBMJ_input": float(input_tbmj.get(code, 0)) / 100,
            "TBMJ_computed": float(computed[code]) / 100,
        }
        for code in by.index
    }
    passed = bool((parts_tbmj == by["TBMJ"]).all() and (parts_tbdl == by["TBDLMJ"]).all())
    return {"passed": passed, "counties": counties}


def _versions() -> dict[str, str]:
    import fiona
    import pyogrio
    import pyproj

    from . import __version__

    return {
        "blacksoil": __version__,
        "python": platform.python_version(),
        "geopandas": gpd.__version__,
        "shapely": shapely.__version__,
        "geos": shapely.geos_version_string,
        "pyogrio": pyogrio.__version__,
        "gdal": pyogrio.__gdal_version_string__,
        "fiona": fiona.__version__,
        "pyproj": pyproj.__version__,
        "proj": pyproj.proj_version_str,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }


def _metadata(
    cfg: SurveyConfig,
    crs: CRS,
    counts: dict[str, int],
    timings: dict[str, float],
    conservation: dict[str, object],
    reconciliation: dict[str, object],
    protection: dict[str, str],
) -> pd.DataFrame:
    specs = {
        name: spec
        for name in ("parcels", "soil", "counties", "region", *PROTECTION_INPUTS)
        if (spec := getattr(cfg.inputs, name)) is not None
    }
    items = {
        "survey_year": cfg.year,
        "config_file": str(cfg.source) if cfg.source else None,
        "config": cfg.raw,
        "crs": crs.to_string(),
        "inputs": {
            name: {
                "path": str(spec.path),
                "layer": spec.layer,
                "where": spec.where,
                "fields": spec.fields,
                "fingerprint": _fingerprint(spec),
            }
            for name, spec in specs.items()
        },
        "black_soil_groups": list(cfg.black_soil_groups),
        "cultivated_codes": list(cfg.cultivated_codes),
        "min_piece_area": cfg.min_piece_area,
        "counts": counts,
        "conservation": conservation,
        "reconciliation": reconciliation,
        "protection": protection,
        "versions": _versions(),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return pd.DataFrame(
        {
            "key": list(items),
            "value": [json.dumps(v, ensure_ascii=False, default=str) for v in items.values()],
        }
    )


def _fingerprint(spec: InputSpec) -> str:
    """The input's fingerprint; for many files, one over theirs."""
    if not is_many(spec):
        return layer_fingerprint(spec.path)
    import hashlib

    parts = [f"{f.name}={layer_fingerprint(f)}" for f in input_files(spec)]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
    return f"sha256:{digest} files:{len(parts)}"


# --- partitions: reading one, running them, checkpoints, the merge ---------------------------


def _partition_parcels(cfg: SurveyConfig, scope: Scope | None, qa: QALog) -> gpd.GeoDataFrame:
    """The parcels a partition owns, from one or more files (in the first file's CRS).

    A parcel read through a window belongs to the partition only when the partition owns it
    (grid: the centre of its bounding box lies in the cell; county polygon: that centre lies in
    the county, or in no county and in this partition's window first), so every parcel is
    surveyed exactly once whatever the partitioning. The parcels no window finds (no geometry,
    or an empty one) are read by their FIDs in the partition that the plan gave them to, and
    rejected there as in a single run.
    """
    spec = cfg.inputs.parcels
    part = scope.part if scope is not None else Partition("all", "all")
    frames = []
    crs = None
    for i, fspec in enumerate(parcel_specs(spec, part)):
        try:
            frame = read_layer(
                fspec, "parcels", crs=crs, qa=qa, engine=cfg.io.engine, bbox=part.bbox
            )
        except InputError as err:
            if part.kind in ("area", "grid") and _NO_FEATURES in str(err):
                continue
            raise
        crs = crs or frame.crs
        frame[SRC] = np.int64(i)
        frames.append(frame)
    if not frames:
        raise EmptyPartition({"parcels_read": 0}, qa, f"{describe(spec)}: no parcels")
    parcels = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if part.kind in ("area", "grid") or part.cell is not None:
        parcels = parcels[_owned(cfg, parcels, part, scope.plan)].reset_index(drop=True)
        if part.fids:
            (fspec,) = parcel_specs(spec, part)
            lost = read_layer(
                fspec, "parcels", crs=crs, qa=qa, engine=cfg.io.engine, fids=part.fids
            )
            lost[SRC] = np.int64(0)
            # in layer order, as a single run reads them
            parcels = pd.concat([parcels, lost], ignore_index=True)
            parcels = parcels.sort_values(FID, kind="stable", ignore_index=True)
        if len(parcels) == 0:
            raise EmptyPartition({"parcels_read": 0}, qa, f"{describe(spec)}: no parcels")
    if SRC in parcels and parcels[SRC].max() == 0:
        parcels = parcels.drop(columns=SRC)
    return parcels


def _centres(frame: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    b = shapely.bounds(frame.geometry.to_numpy())
    return (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2


def _owned(
    cfg: SurveyConfig, frame: gpd.GeoDataFrame, part: Partition, plan: tuple[Partition, ...]
) -> np.ndarray:
    """Which features of a window read (in the parcels' CRS) the partition owns."""
    if part.kind == "county":  # one part of a split county: its cell (the first: no geometry)
        cx, cy = _centres(frame)
        geoms = frame.geometry.to_numpy()
        missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
        owned = in_cell(cx, cy, part.cell) & ~missing
        return owned | (missing & (part.bbox is None))
    return _homes(cfg, frame, plan) == _index(plan, part)


def _index(plan: tuple[Partition, ...], part: Partition) -> int:
    return next(k for k, other in enumerate(plan) if other.name == part.name)


def _homes(cfg: SurveyConfig, frame: gpd.GeoDataFrame, plan: tuple[Partition, ...]) -> np.ndarray:
    """The index in ``plan`` of the grid or county-polygon partition that owns each feature (in
    the parcels' CRS) by where it lies, -1 for none: the cell holding the centre of its box; the
    county polygon holding that centre, else the first partition's window holding it."""
    cx, cy = _centres(frame)
    if plan[0].kind == "grid":
        size = plan[0].cell[2] - plan[0].cell[0]
        col, row = grid_cells(np.column_stack([cx, cy, cx, cy]), size)
        cells = pd.MultiIndex.from_arrays(
            [[round(p.cell[0] / size) for p in plan], [round(p.cell[1] / size) for p in plan]]
        )
        return cells.get_indexer(pd.MultiIndex.from_arrays([col, row]))
    counties = read_layer(
        cfg.inputs.counties, "counties", crs=frame.crs, qa=QALog(), engine=cfg.io.engine
    )
    codes = counties["code"].astype(str).str.strip().to_numpy()
    tree = shapely.STRtree(counties.geometry.to_numpy())
    pi, ci = tree.query(shapely.points(cx, cy), predicate="within")
    first = np.unique(pi, return_index=True)[1]
    located = np.zeros(len(frame), dtype=bool)
    located[pi[first]] = True
    home = np.full(len(frame), -1)
    home[pi[first]] = pd.Index([p.county for p in plan]).get_indexer(codes[ci[first]])
    for k, other in reversed(list(enumerate(plan))):  # the loose ones: the first window
        if other.bbox is None:
            continue
        x0, y0, x1, y1 = other.bbox
        inside = ~located & (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
        home[inside] = k
    return home


def _own_changes(
    cfg: SurveyConfig,
    crs: CRS,
    counties: gpd.GeoDataFrame | None,
    parcels: gpd.GeoDataFrame,
    qa: QALog,
    counts: dict[str, int],
    scope: Scope | None,
    progress: Progress,
) -> gpd.GeoDataFrame:
    """The change parcels a single run or a partition analyses (the layer is read whole: it is a
    year's increment).

    A single run analyses them all. A change parcel belongs to the partition of its county
    (XZQDM), in a split county to the part whose cell holds its centre; with a grid, to the cell
    of its centre; with many files, to the first file that has cultivated parcels of its county
    (:func:`pipeline.partitions.claim_changes`). What no partition's rule claims, the first
    partition takes.
    """
    spec = cfg.inputs.changes
    progress(f"reading changes: {describe(spec)}")
    frame = _read(spec, "changes", crs, cfg, qa, scope, None)
    n_read = len(frame)
    ids = frame["id"].astype(str).to_numpy() if "id" in frame else _fids(frame)
    frame = _clean(frame, "changes", ids, qa, scope)
    if "id" not in frame:
        frame["id"] = frame[FID].astype(str)
    frame["XZQDM"] = _county_codes(frame, counties, qa, "changes").to_numpy()
    n_used = len(frame)
    frame.attrs["counts"] = (n_read, n_used)  # the layer's, set where a single run sets them
    if scope is None:
        return frame
    part, plan = scope.part, scope.plan
    code = frame["XZQDM"].to_numpy(dtype=object)
    county_parts = {p.county for p in plan if p.kind in ("county", "area")}

    src_crs = layer_crs(file_specs(cfg.inputs.parcels)[0]) or crs
    local = frame.to_crs(src_crs) if not src_crs.equals(crs) else frame  # the windows' CRS
    loose = ~pd.Series(code).isin(county_parts).to_numpy()
    me = _index(plan, part)
    # what no partition's rule claims, the first partition takes: every change is analysed once
    unclaimed = np.zeros(len(frame), dtype=bool)
    if part.kind == "county":
        own = code == part.county
        if part.cell is not None:  # a split county: its cell's share
            own &= _owned(cfg, local, part, plan)
        unclaimed = loose & all(p.kind != "other" for p in plan)
    elif part.kind == "other":
        own = loose
    elif part.kind == "area":
        home = _homes(cfg, local, plan)
        own = (code == part.county) | (loose & (home == me))
        unclaimed = loose & (home < 0)
    elif part.kind == "grid":
        home = _homes(cfg, local, plan)
        own = home == me
        unclaimed = home < 0
    elif part.kind == "file":
        own = pd.Series(code).isin(set(part.changes)).to_numpy()
        claimed = {c for p in plan for c in p.changes}
        unclaimed = ~pd.Series(code).isin(claimed).to_numpy()
    else:
        own = np.ones(len(frame), dtype=bool)
    if me == 0:
        own = own | unclaimed  # (to_numpy may give a read-only view)
    counted = frame.attrs["counts"]
    frame = frame[own].reset_index(drop=True)
    frame.attrs["counts"] = counted
    return frame


def work_folder(path: Path) -> Path:
    """The work folder of an archive: ``<folder>/.<stem>.work`` (partial results, checkpoints)."""
    path = Path(path)
    return path.parent / f".{path.stem}.work"


def _input_fingerprints(cfg: SurveyConfig) -> dict[str, str]:
    """Fingerprints of every input file but the parcels' (a partition adds its own)."""
    specs = [
        spec
        for name in ("soil", "counties", "region", *PROTECTION_INPUTS)
        if (spec := getattr(cfg.inputs, name)) is not None
    ]
    out = {}
    for spec in specs:
        for f in input_files(spec):
            out[str(f)] = layer_fingerprint(f)
    for raster in cfg.inputs.rasters.values():
        out[str(raster.path)] = layer_fingerprint(raster.path)
    return out


def run_partition(
    cfg: SurveyConfig,
    part: Partition,
    plan: tuple[Partition, ...],
    workdir: Path,
    stamp: str,
    threads: int | None = None,
) -> dict[str, object]:
    """Survey one partition and write its partial results (the executors' task).

    Reads the partition's inputs itself, runs the stages and writes GeoParquet files and a
    ``done.json`` marker (holding ``stamp``, the fingerprint of config and inputs) to
    ``workdir/<partition>/``. Returns a small summary (counts, seconds) for the progress line.
    """
    started = time.perf_counter()
    folder = Path(workdir) / part.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with _partition_log(folder / "partition.log"):
        logger.info("partition %s (%s) started", part.name, part.kind)
        every = input_files(cfg.inputs.parcels)
        scope = Scope(part, tuple(plan), read_renames(workdir, _file_indexes(every, part)))
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            inputs = load_inputs(cfg, _log_progress, scope=scope)
        except EmptyPartition as empty:
            logger.info("partition %s: nothing to survey (%s)", part.name, empty)
            partial = PartialResult(
                name=part.name,
                crs="",
                layers={arc.QA_LOG: empty.qa.frame()},
                counts=empty.counts,
                empty=str(empty),
            )
        else:
            timings["read_check"] = time.perf_counter() - t0
            partial = _survey(cfg, inputs, _log_progress, timings, part.name, threads)
            if len(plan) > 1:  # for the overlaps with other partitions' parcels, at the merge
                partial.layers[crossing.SHAPES] = _parcel_shapes(inputs.parcels, every, part)
        partial.read_keys = {k: sorted(v) for k, v in scope.read_keys.items()}
        partial.used_keys = {k: sorted(v) for k, v in scope.used_keys.items()}
        _write_partial(folder, partial, stamp)
        logger.info("partition %s done", part.name)
    return {
        "parcels": int(partial.counts.get("parcels_surveyed", 0)),
        "pieces": int(partial.counts.get("pieces_black", 0)),
        "seconds": time.perf_counter() - started,
    }


def _parcel_shapes(parcels: gpd.GeoDataFrame, every: list[Path], part: Partition) -> pd.DataFrame:
    """A partition's cultivated parcels as :func:`pipeline.crossing.parcel_shapes` keeps them."""
    files = np.asarray(_file_indexes(every, part), dtype=np.int64)[_sources(parcels)]
    return crossing.parcel_shapes(
        parcels.geometry.to_numpy(), files, parcels[FID].to_numpy(), parcels["id"].to_numpy()
    )


def _file_indexes(every: list[Path], part: Partition) -> list[int]:
    """The indexes among the parcels input's files of the files a partition reads."""
    where = {f: i for i, f in enumerate(every)}
    return [where[f] for f in part.files] if part.files else [0]


@contextlib.contextmanager
def _partition_log(path: Path) -> Iterator[None]:
    """The package's INFO messages go to the partition's log file while the block runs. The
    "pipeline" logger is lowered to INFO for it; the handlers above it (a console, a
    notebook's) still get only what they got before, through :class:`_PassOn`."""
    log = logging.getLogger("pipeline")
    level, propagate = log.level, log.propagate
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    above = _PassOn(log, log.getEffectiveLevel()) if propagate else None
    log.addHandler(handler)
    if above is not None:
        log.addHandler(above)
        log.propagate = False
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.setLevel(level)
        log.propagate = propagate
        log.removeHandler(handler)
        if above is not None:
            log.removeHandler(above)
        handler.close()


class _PassOn(logging.Handler):
    """Passes the records at or above its level on to the handlers above ``log``, as
    propagation would (and, as propagation, to none where there are none)."""

    def __init__(self, log: logging.Logger, level: int) -> None:
        super().__init__(level)
        self.parent = log.parent

    def emit(self, record: logging.LogRecord) -> None:
        node = self.parent
        while node is not None:
            if node.handlers:
                self.parent.callHandlers(record)
                return
            node = node.parent if node.propagate else None


def _log_progress(message: str) -> None:
    logger.info("%s", message)


#: the type ids of a layer of MultiPolygons once Polygons are made so (missing: -1)
_POLYGONAL_OR_MISSING = (-1, shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)
#: how the partial results are stored: LZ4 without dictionaries writes them in two thirds of the
#: time of the default (Snappy, dictionaries), and the merge reads them in half, the files no larger
_PARTIAL_PARQUET = {"compression": "lz4", "use_dictionary": False}


def _write_partial(folder: Path, partial: PartialResult, stamp: str) -> None:
    geo = []
    for name, frame in partial.layers.items():
        path = folder / f"{name}.parquet"
        frame = frame.reset_index(drop=True)
        if isinstance(frame, gpd.GeoDataFrame):
            # MultiPolygons, as the archive declares: the merge passes the WKB on as it is
            geoms = frame.geometry.to_numpy()
            attrs = pd.DataFrame(frame.drop(columns=frame.geometry.name))
            table = pa.Table.from_pandas(attrs, preserve_index=False)
            table = table.append_column("geometry", arc.wkb_array(geoms))
            polygonal = np.isin(shapely.get_type_id(geoms), _POLYGONAL_OR_MISSING).all()
            table = _as_geoparquet(table, frame.crs, polygonal)
            pq.write_table(table, path, **_PARTIAL_PARQUET)
            geo.append(name)
        else:
            pd.DataFrame(frame).to_parquet(path, index=False, **_PARTIAL_PARQUET)
    info = {
        "name": partial.name,
        "crs": partial.crs,
        "layers": list(partial.layers),
        "geo": geo,
        "counts": partial.counts,
        "timings": partial.timings,
        "status": partial.status,
        "names": partial.names,
        "read_keys": partial.read_keys,
        "used_keys": partial.used_keys,
        "empty": partial.empty,
    }
    (folder / "partial.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    # the marker last, atomically: a partition is done only when everything is on disk
    tmp = folder / "done.json.tmp"
    tmp.write_text(json.dumps({"fingerprint": stamp}), encoding="utf-8")
    os.replace(tmp, folder / "done.json")


def _is_done(folder: Path, stamp: str) -> bool:
    """The partition in ``folder`` is done for these inputs: its marker holds their
    fingerprint and each of its result files is there and whole (its Parquet footer reads)."""
    try:
        marker = json.loads((folder / "done.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("fingerprint") != stamp:
        return False
    try:
        info = json.loads((folder / "partial.json").read_text(encoding="utf-8"))
        for name in info["layers"]:
            pq.read_metadata(folder / f"{name}.parquet")
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        logger.warning("%s: the partition's results are damaged (%s); it is run again", folder, err)
        return False
    return True


def _read_partial(folder: Path) -> PartialResult:
    """A partition's results in its work folder, by reference: the merge reads each layer's
    rows from its file when it needs them.

    Raises
    ------
    InputError
        The results are not there: a partition run on a cluster whose workers write the work
        folder somewhere this process does not see it (``--scheduler`` across machines)."""
    where = folder / "partial.json"
    try:
        info = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InputError(
            f"{where}: the partition's results cannot be read ({why}); on a cluster "
            "(--scheduler) the workers must see the work folder at the same path as this machine"
        ) from err
    return PartialResult(
        sources={name: str(folder / f"{name}.parquet") for name in info["layers"]},
        geo=list(info["geo"]),
        name=info["name"],
        crs=info["crs"],
        counts=info["counts"],
        timings=info["timings"],
        status=info["status"],
        names=info["names"],
        read_keys=info["read_keys"],
        used_keys=info["used_keys"],
        empty=info["empty"],
    )


@contextlib.contextmanager
def _work_lock(workdir: Path) -> Iterator[None]:
    """One run at a time per work folder: a second run of the same archive would clear or mix
    the first one's partitions. The lock (``<work folder>.lock`` beside it, naming its holder)
    is the operating system's, so a run that dies releases it.

    Raises
    ------
    UsageError
        Another run holds it.
    """
    path = workdir.with_name(workdir.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held across the yield)
    except OSError as err:
        raise OutputError(f"{path}: cannot create the work folder's lock ({err})") from err
    try:
        try:
            _lock_file(handle)
        except OSError:
            holder = "unknown"
            with contextlib.suppress(OSError):  # Windows locks the bytes against reading too
                handle.seek(0)
                holder = handle.read().strip() or holder
            raise UsageError(
                f"{workdir}: another run of this archive is in progress ({holder}); wait for "
                "it to end, or stop it, then run again (with --resume to keep its partitions)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}")
        handle.flush()
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # removed while still held
    finally:
        handle.close()  # releases the lock


def _lock_file(handle: IO[str]) -> None:
    """An exclusive lock on an open file, failing at once (OSError) if another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


@dataclass(frozen=True)
class _Job:
    """A partitioned job as planned: its partitions, work folder, each partition's fingerprint
    and the partitions still to run, largest first."""

    plan: tuple[Partition, ...]
    workdir: Path
    stamps: dict[str, str]
    todo: list[Partition]


def _run_partitioned(
    cfg: SurveyConfig,
    *,
    overwrite: bool,
    progress: Progress,
    workers: int | None,
    scheduler: str | None,
    resume: bool,
) -> SurveyOutcome:
    """Plan, run and merge the partitions (the caller holds the work folder's lock)."""
    if cfg.partition.by == "none" and (workers or scheduler):
        # a cluster needs partitions to share out: counties, as the issue's natural unit
        cfg = dataclasses.replace(cfg, partition=dataclasses.replace(cfg.partition, by="county"))
    job: _Job | None = None
    try:
        with Executor(workers, scheduler) as executor:
            executor.start()  # the workers start while this process plans the partitions
            t0 = time.perf_counter()
            job = _plan_job(cfg, resume=resume, progress=progress)
            plan, workdir = job.plan, job.workdir
            t_plan = time.perf_counter() - t0
            threads = 1 if (workers or scheduler) else None
            tasks = [
                (p.name, (cfg, p, plan, workdir, job.stamps[p.name], threads)) for p in job.todo
            ]
            t1 = time.perf_counter()
            _, failed = executor.run(run_partition, tasks, progress=progress)
            t_parts = time.perf_counter() - t1
            if failed:
                raise InputError(_failed_message(failed, len(plan), workdir))
            progress("merging the partitions")
            t2 = time.perf_counter()
            folders = [workdir / p.name for p in plan]
            partials = [_read_partial(f) for f in folders]
            t_collect = time.perf_counter() - t2
            outcome = _finish(
                cfg,
                partials,
                overwrite=overwrite,
                progress=progress,
                merge_timings={"plan": t_plan, "partitions": t_parts, "collect": t_collect},
                executor=executor,
                workdir=workdir,
            )
    except KeyboardInterrupt as err:
        if job is None:  # while planning: nothing ran yet
            raise
        done = sum(_is_done(job.workdir / p.name, job.stamps[p.name]) for p in job.plan)
        raise Interrupted(_interrupted_message(done, len(job.plan), job.workdir)) from err
    shutil.rmtree(workdir, ignore_errors=True)
    return outcome


def _plan_job(cfg: SurveyConfig, *, resume: bool, progress: Progress) -> _Job:
    """The job's partitions, its work folder (emptied unless ``resume``), the renamed duplicate
    ids, and each partition's fingerprint, by which a resumed job skips those done before."""
    plan = tuple(plan_partitions(cfg))
    workdir = work_folder(cfg.output.path)
    if not resume and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    files = _input_fingerprints(cfg)
    every = input_files(cfg.inputs.parcels)
    many = any(p.kind == "file" for p in plan)
    fields = cultivated_fields(cfg, ("id", "county") if many else ("id",))
    claimed: dict[str, str] = {}
    if many:  # each change parcel analysed once, by the file that first has its county
        plan = claim_changes(plan, dict(zip(every, _file_counties(fields), strict=True)))
        # the first partition takes the changes of the counties no file claims
        claimed = {"change counties claimed": ",".join(sorted(c for p in plan for c in p.changes))}
    # duplicate parcel ids are ranked over the whole job, as a single run ranks them
    renames = job_renames(cfg, fields)
    write_renames(renames, workdir)
    reads = {p.name: tuple(_file_indexes(every, p)) for p in plan}
    # a digest per set of files read (a one-file job: one), not per partition
    digests = {f: renames_digest(of_files(renames, f)) for f in set(reads.values())}
    stamps = {
        p.name: fingerprint(
            cfg,
            p,
            {
                **files,
                **{str(f): layer_fingerprint(f) for f in p.files},
                "renamed ids": digests[reads[p.name]],
                **(claimed if p == plan[0] else {}),
            },
        )
        for p in plan
    }
    done = [p for p in plan if _is_done(workdir / p.name, stamps[p.name])]
    progress(
        f"{len(plan)} partition(s) by {plan[0].kind if len(plan) == 1 else cfg.partition.by}"
        + (f"; {len(done)} done before, resumed" if done else "")
    )
    # the largest partitions first (stable: plan order among equals), so that on a cluster a
    # big county does not start last and run alone
    todo = sorted((p for p in plan if p not in done), key=lambda p: -p.size)
    return _Job(plan, workdir, stamps, todo)


def _file_counties(fields: list[pd.DataFrame | None]) -> list[set[str]]:
    """Each parcels file's county codes (its cultivated parcels' county field, six digits)."""
    return [
        set()
        if frame is None or "county" not in frame
        else set(county_codes(frame["county"]).dropna().unique().tolist())
        for frame in fields
    ]


def _failed_message(failed: dict[str, str], total: int, workdir: Path) -> str:
    """The failed partitions by name, those that failed alike (a full disk fails them all)
    named together, and how to go on.

    >>> message = _failed_message({"b": "disk full", "a": "disk full", "c": "bad"}, 8, Path("w"))
    >>> message.split("; the others")[0]
    '3 of 8 partition(s) failed (a, b: disk full; c: bad)'
    """
    alike: dict[str, list[str]] = {}
    for name, message in sorted(failed.items()):
        alike.setdefault(message, []).append(name)
    listed = "; ".join(f"{', '.join(names)}: {message}" for message, names in alike.items())
    return (
        f"{len(failed)} of {total} partition(s) failed ({listed}); the others are kept in "
        f"{workdir}: fix the cause and rerun with --resume"
    )


def _interrupted_message(done: int, total: int, workdir: Path) -> str:
    """What an interrupted partitioned run kept, and how to go on.

    >>> _interrupted_message(0, 8, Path("out/.a.work"))
    'interrupted before any partition was done: nothing was kept'
    """
    if done == 0:
        return "interrupted before any partition was done: nothing was kept"
    if done == total:
        return (
            f"interrupted while merging: all {total} partition(s) are done, kept in {workdir}: "
            "run again with --resume to write the archive from them"
        )
    return (
        f"interrupted: {done} of {total} partition(s) are done, kept in {workdir}: "
        "run again with --resume to run only the others"
    )


@dataclass
class Merged:
    """The partitions' results merged into the archive's layers and summaries.

    The layers that grow with the parcels (HTGDTB, the balance, the layers whose rows follow the
    pieces) are :class:`pipeline.archive.LayerStream` s: merged one group of counties at a time
    as the archive is written, their geometries read from the partitions' files, so the merge
    holds one group's rows (a county, where partitions are counties), not the province's. The
    small layers (per project, per change parcel, the QA log) are merged whole.

    The summaries and checks (``groups``: :meth:`_GroupMerge.county_summary` and the others)
    are added up from each group as the pieces and the balance are written; asked for before,
    they read the groups not yet seen.
    """

    crs: CRS
    pieces: arc.LayerStream
    balance: arc.LayerStream
    protection: dict[str, pd.DataFrame | arc.LayerStream]
    #: makes the QA log (:attr:`qa`), when first asked for: the parcels that overlap across
    #: partitions may be paired by a task meanwhile
    qa_log: Callable[[], pd.DataFrame]
    counts: dict[str, int]
    timings: dict[str, float]
    status: dict[str, str]
    names: dict[str, str]
    groups: _GroupMerge

    @functools.cached_property
    def qa(self) -> pd.DataFrame:
        """The QA log of all the partitions."""
        return self.qa_log()


#: layers whose rows follow the pieces (DABH renumbered by the merge)
_BY_PIECE = (arc.OUTSIDE_FARMLAND, arc.ZONING_CONFLICTS, arc.OCCUPATION)
#: zone kinds of HTGD_GHCT in the order a single run writes them
_ZONE_ORDER = {"城镇开发边界": 0, "生态保护红线": 1}
#: the columns that tie a merged row of a spatial layer to its partition and row there
_SOURCE = ["_k", "_row"]
#: the pieces' order in the archive (after the county)
_SORT_KEYS = ("XZQDM", "BSM", "TRBM")
#: rows per chunk handed to the archive writer
_CHUNK_ROWS = 100_000


def output_crs(cfg: SurveyConfig, crss: list[str]) -> CRS:
    """The archive's CRS: ``output.crs`` where declared; else the partitions' working CRS when
    they share one, CGCS2000 (EPSG:4490) when they span zones."""
    if cfg.output.crs is not None:
        return CRS.from_user_input(cfg.output.crs)
    distinct = []
    for text in crss:
        crs = CRS.from_user_input(text)
        if not any(crs.equals(c) for c in distinct):
            distinct.append(crs)
    if len(distinct) == 1:
        return distinct[0]
    return CRS.from_epsg(4490)


def merge_partials(
    cfg: SurveyConfig, partials: list[PartialResult], *, soil_checked: bool = False
) -> Merged:
    """Merge partitions' results in a fixed order into the archive's layers.

    Pieces are ordered by (county, BSM, soil polygon) and numbered (DABH) per county again, the
    layers that refer to pieces follow the new numbers, per-county and per-project tables are
    added up, QA rows that several partitions logged for one shared feature are kept once, and
    the spatial layers are reprojected to the output CRS as they are written. The layers that
    grow with the parcels are merged one group of counties at a time (:func:`_merge_groups`) as
    the archive is written, and the summaries and checks added up from each group as it goes
    by (:class:`Merged`). One partition comes out as it went in.

    Where no partition used a soil polygon, the soil layer is checked for a usable one
    (:func:`_check_soil_layer`), unless ``soil_checked`` (a single run checked it as it read).

    Raises
    ------
    InputError
        No partition had anything to survey, or the soil layer has no usable polygon.
    """
    merge = _group_merge(cfg, partials)
    full, crs, single, names = merge.partials, merge.crs, merge.single, merge.names
    if not soil_checked and not any(p.counts.get("soil_used", 0) for p in full):
        _check_soil_layer(cfg)
    protection: dict[str, pd.DataFrame | arc.LayerStream] = {}
    for name in _protection_layers(full):
        if name in _BY_PIECE:
            protection[name] = merge.stream(name)
            continue
        frame = _merge_protection(name, _fields(full, name), single, names)
        if any(p.is_spatial(name) for p in full if p.has(name)):
            protection[name] = _stream(frame, full, name, crs)
        else:
            protection[name] = frame.drop(columns=_SOURCE, errors="ignore")

    def qa_log() -> pd.DataFrame:
        if merge.beside_task and merge.from_tasks is not None:
            merge.from_tasks()
            return _merge_qa(partials, merge.crossing)
        return _merge_qa(partials, _crossing_overlaps(full))

    return Merged(
        crs=crs,
        pieces=merge.stream(arc.PIECES),
        balance=merge.stream(arc.BALANCE),
        protection=protection,
        qa_log=qa_log,
        counts=_merge_counts(partials, single),
        timings=_merge_timings(partials),
        status=dict(full[0].status),
        names=names,
        groups=merge,
    )


def _check_soil_layer(cfg: SurveyConfig) -> None:
    """No usable soil polygon lies near the parcels (of a single run, or of any partition): the
    parcels are unmapped land if the soil map has a usable polygon somewhere, and the job is
    refused if it has none (a soil raster without data under the parcels leaves them unmapped)."""
    if cfg.inputs.soil.raster_values is not None:
        return
    for spec in file_specs(cfg.inputs.soil):
        soil = read_layer(spec, "soil", crs=None, qa=QALog(), engine=cfg.io.engine)
        if clean_polygons(soil.geometry.to_numpy(), _fids(soil), "soil", QALog())[1].any():
            return
    raise InputError(_no_soil(cfg))


#: the least workers for which each group of counties is merged by a task of its own (then
#: every square metre of the merge is done in parallel, and its copying into the archive pays);
#: with fewer, one task merges the layers that follow the pieces (or the balance) beside this
#: process, as on two cores
_GROUP_TASKS_FROM = 4


def _merge_in_tasks(executor: Executor, merged: Merged, folder: Path) -> dict[str, arc.Stacked]:
    """Layers of the archive merged by ``executor``'s tasks into GeoPackages of their own in
    ``folder`` (:func:`_merge_group`), to be stacked into the archive in their turn
    (:class:`pipeline.archive.Stacked`), which waits for the tasks; this process meanwhile
    writes the layers before them.

    On :data:`_GROUP_TASKS_FROM` workers or more, HTGDTB, the balance and the layers that
    follow the pieces are merged a group of counties a task (a group's rows, numbers and sums
    depend on the group alone) and stacked group after group (HTGD_GHCT zone kind after zone
    kind). On fewer, one task merges the layers that follow the pieces (the balance where
    there are none) while this process writes the pieces. The summaries and checks the tasks
    add up are handed to ``merged.groups`` as if it had added them up itself: the archive is
    the same either way."""
    merge = merged.groups
    by_piece = [n for n in _BY_PIECE if n in merged.protection]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    count = len(merge.groups)
    if executor.slots >= _GROUP_TASKS_FROM:
        names = [arc.PIECES, arc.BALANCE, *by_piece]
        jobs = [([g], merge.layout.only(g)) for g in range(count)]
    else:
        names = by_piece or [arc.BALANCE]
        jobs = [(list(range(count)), merge.layout)]
        # the task adds up the summaries too, and pairs the parcels that overlap across
        # partitions, while this process writes the pieces (and merges no layer that refers
        # to them)
        merge.beside_task = True
    # what the tasks need of the partitions: where their files are (not the keys they read)
    light = [dataclasses.replace(p, read_keys={}, used_keys={}) for p in merge.partials]
    paths = [folder / f"{j}.gpkg" for j in range(len(jobs))]
    sizes = [
        sum(merge.partials[k].rows(arc.PIECES) for k in m if merge.partials[k].has(arc.PIECES))
        for m in merge.groups
    ]
    tasks = [
        (
            str(j),
            (light, merge.year, merge.crs, merge.single, merge.names, merge.rasters,
             jobs[j][1], paths[j], names, merge.beside_task),
        )
        for j in sorted(range(len(jobs)), key=lambda j: -sum(sizes[g] for g in jobs[j][0]))
    ]  # fmt: skip
    running = Background(
        lambda: executor.run(_merge_group, tasks, stop_on_error=True)[0], "blacksoil-merge"
    )
    kinds: dict[int, dict[int, int]] = {}

    def collect() -> None:
        """Wait for the tasks (their error raised here, at the stack); their summaries and
        checks into ``merge`` (once)."""
        if kinds:
            return
        results = running.result()
        for j, (groups, _) in enumerate(jobs):
            done = results[str(j)]
            for local, g in enumerate(groups):
                for key, into in (
                    ("county", merge.county_parts),
                    ("quality", merge.quality_parts),
                    ("checks", merge.checks),
                ):
                    if local in done[key]:
                        into[g] = done[key][local]
            merge.quality_seconds += done["quality_seconds"]
            for name, rows in done["merged"].items():
                merge.merged[name] = merge.merged.get(name, 0) + rows
            kinds[j] = done["kinds"]
            if "crossing" in done:
                merge.crossing = done["crossing"]
        for name in names:
            merge.check_rows(name)

    merge.from_tasks = collect

    def parts(name: str) -> list[arc.StackPart]:
        collect()
        whole: list[arc.StackPart] = [(path, name, None, None) for path in paths]
        if name == arc.ZONING_CONFLICTS and len(paths) > 1:  # each group's rows, kind by kind
            return [*_kind_parts(kinds, paths, name, merge.layout.kinds)] or whole[:1]
        return whole

    columns = {arc.PIECES: merged.pieces.columns, arc.BALANCE: merged.balance.columns}
    return {
        name: arc.Stacked(
            columns[name] if name in columns else merged.protection[name].columns,
            functools.partial(parts, name),
        )
        for name in names
    }


def _kind_parts(
    kinds: dict[int, dict[int, int]], paths: list[Path], name: str, order: list[int]
) -> Iterator[arc.StackPart]:
    """The runs of rows of layer ``name`` in the groups' files, zone kind after zone kind (each
    group wrote its rows of a kind after those of the kinds before it); ``kinds``: per group,
    its rows of each kind."""
    for kind in order:
        for g, path in enumerate(paths):
            rows = kinds[g].get(kind, 0)
            if rows:
                first = 1 + sum(kinds[g].get(k, 0) for k in order[: order.index(kind)])
                yield (path, name, first, first + rows)


def _merge_group(
    partials: list[PartialResult],
    year: int,
    crs: CRS,
    single: bool,
    names: dict[str, str],
    rasters: dict[str, RasterSpec],
    layout: _Layout,
    path: Path,
    layers: list[str],
    beside: bool = False,
) -> dict[str, object]:
    """A task of :func:`_merge_in_tasks`: the groups of ``layout`` merged as the archive's
    writer would merge them, ``layers`` written into the GeoPackage ``path``; gives back the
    summary rows and checks added up on the way (by the layout's group numbers; with
    ``beside``, a task beside the process that writes the pieces: the summary rows of every
    group, whatever layers it wrote, and the QA rows of the parcels that overlap across
    partitions), its rows per layer and per zone kind of
    HTGD_GHCT."""
    merge = _GroupMerge(partials, year, crs, single, names, rasters, layout)
    arc.write_layers(path, {name: merge.stream(name) for name in layers})
    extra = {}
    if beside:
        merge.add_up_all()
        extra["crossing"] = _crossing_overlaps(partials)
    return {
        "county": merge.county_parts,
        "quality": merge.quality_parts,
        "checks": merge.checks,
        "quality_seconds": merge.quality_seconds,
        "merged": merge.merged,
        "kinds": merge.kind_rows,
        **extra,
    }


def _group_merge(cfg: SurveyConfig, partials: list[PartialResult]) -> _GroupMerge:
    """The merge of the partitions with something surveyed, into the output CRS."""
    full = [p for p in partials if p.empty is None]
    if not full:
        raise InputError(partials[0].empty if partials else "no partitions")
    crs = output_crs(cfg, [p.crs for p in full])
    names: dict[str, str] = {}
    for p in full:
        names.update(p.names)
    return _GroupMerge(full, cfg.year, crs, len(partials) == 1, names, cfg.inputs.rasters)


def _merge_groups(partials: list[PartialResult]) -> list[tuple[list[str], list[int]]]:
    """The groups merged one after another, in the archive's order: counties (their codes, in
    code order) with the partitions (their indexes) that have rows of them. A county is a group
    of its own, with its partition or the parts of a large one, or with the grid cells it
    crosses (each giving its rows of that county); counties next to each other in code order
    that have the same partitions (one partition for the whole job) are one group."""
    members: dict[str, list[int]] = {}
    for k, p in enumerate(partials):
        codes: set[str] = set()
        for name in (arc.PIECES, arc.BALANCE):
            if p.has(name):
                found = p.fields(name, ["XZQDM"])["XZQDM"].unique()
                codes.update("" if pd.isna(c) else str(c) for c in found)
        for code in codes:
            members.setdefault(code, []).append(k)
    groups: list[tuple[list[str], list[int]]] = []
    for code in sorted(members):
        if groups and groups[-1][1] == members[code]:
            groups[-1][0].append(code)
        else:
            groups.append(([code], members[code]))
    return groups


@dataclass(frozen=True)
class _Layout:
    """How the partitions' rows fall into the merge's groups (:func:`_merge_groups`), and what
    the merge of any group needs to know of the others: the layers' fields over all partitions
    and HTGD_GHCT's zone kinds."""

    #: per group: its counties; the partitions with rows of them
    codes: list[list[str]]
    groups: list[list[int]]
    #: the partitions with rows of more than one group (grid cells across county lines)
    shared: set[int]
    schemas: dict[str, pa.Schema]
    #: the ranks (:data:`_ZONE_ORDER`) of the zone kinds in HTGD_GHCT, in order
    kinds: list[int]

    def only(self, g: int) -> _Layout:
        """The layout of a merge of group ``g`` alone."""
        return dataclasses.replace(
            self,
            codes=[self.codes[g]],
            groups=[self.groups[g]],
            shared=self.shared & set(self.groups[g]),
        )


def _layout(partials: list[PartialResult]) -> _Layout:
    groups = _merge_groups(partials)
    members = [m for _, m in groups]
    kinds: set[int] = set()
    for p in partials:
        if p.has(arc.ZONING_CONFLICTS):
            kinds.update(_zone_rank(p.fields(arc.ZONING_CONFLICTS, ["FQLX"])).tolist())
    return _Layout(
        codes=[codes for codes, _ in groups],
        groups=members,
        shared={k for k in range(len(partials)) if sum(k in m for m in members) > 1},
        schemas={
            name: _layer_schema(partials, name)
            for name in (arc.PIECES, arc.BALANCE, *_BY_PIECE)
            if any(p.has(name) for p in partials)
        },
        kinds=sorted(kinds),
    )


def _county_of(frame: pd.DataFrame) -> np.ndarray:
    """The rows' county codes as text ("" where there is none), as :func:`_merge_groups` has
    them."""
    return frame["XZQDM"].astype(object).fillna("").astype(str).to_numpy()


class _GroupMerge:
    """The layers of the partitions merged one group of counties (:func:`_merge_groups`) at a
    time, each group's rows read from the partitions when needed."""

    def __init__(
        self,
        partials: list[PartialResult],
        year: int,
        crs: CRS,
        single: bool,
        names: dict[str, str],
        rasters: dict[str, RasterSpec] | None = None,
        layout: _Layout | None = None,
    ) -> None:
        self.partials, self.year, self.crs, self.single, self.names = (
            partials,
            year,
            crs,
            single,
            names,
        )
        self.rasters = rasters or {}
        #: the groups of the whole job (not one group's, as a task merging it has)
        self.whole = layout is None
        self.layout = layout = layout or _layout(partials)
        #: per group: its counties and the partitions with rows of them
        self.codes, self.groups = layout.codes, layout.groups
        #: the partitions with rows of more than one group (grid cells across county lines)
        self.shared = layout.shared
        #: per group, the sorted pieces' positions; per partition, its pieces' new numbers and
        #: where its counties start (:meth:`_county_starts`)
        self.order: dict[int, np.ndarray] = {}
        self.seq: dict[int, np.ndarray] = {}
        self.starts: dict[int, pd.DataFrame] = {}
        self.schemas = layout.schemas
        #: rows merged so far per layer, and per zone kind of HTGD_GHCT
        self.merged: dict[str, int] = {}
        self.kind_rows: dict[int, int] = {}
        self.columns = self.schemas[arc.PIECES].names
        #: the pieces' fields the summaries need
        self.needed = [
            c
            for c in (
                "BSM",
                "TL",
                "MJ",
                "TBMJ",
                "TBDLMJ",
                *PROTECTION_SUMMARY,
                *quality_fields(self.rasters),
            )
            if c in self.columns
        ]
        #: per group: its county summary rows, quality summary rows, and the balance checks
        #: (:func:`_balance_errors`, :func:`_reconcile`, its counties)
        self.county_parts: dict[int, pd.DataFrame] = {}
        self.quality_parts: dict[int, pd.DataFrame] = {}
        self.checks: dict[int, tuple[tuple[int, int, float], dict[str, object], set[str]]] = {}
        self.quality_seconds = 0.0
        self._county_summary: pd.DataFrame | None = None
        #: this process writes the pieces beside a task (:func:`_merge_in_tasks`) that adds up
        #: the summaries, pairs the parcels that overlap across partitions (QA rows,
        #: ``crossing``) and merges the layers that refer to pieces (so no table of where each
        #: county starts in each partition is kept here: :meth:`layer` is not called)
        self.beside_task = False
        self.crossing: pd.DataFrame | None = None
        #: brings what the tasks made (called before any summary)
        self.from_tasks: Callable[[], None] | None = None

    def fields(self, g: int, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        """A layer's fields in group ``g``'s partitions, one after another, with the partition
        and row each comes from (``_k``, ``_row``: where its geometry is); None if none has
        the layer. A partition with rows of other groups too gives only the group's counties'."""
        frames = []
        for k in self.groups[g]:
            p = self.partials[k]
            if not p.has(name):
                continue
            shared = k in self.shared
            extra = shared and columns is not None and "XZQDM" not in columns
            frame = p.fields(name, [*columns, "XZQDM"] if extra else columns)
            frame["_k"] = k
            frame["_row"] = np.arange(len(frame))
            if shared:  # only this group's county
                frame = frame[np.isin(_county_of(frame), self.codes[g])].reset_index(drop=True)
                if extra:
                    frame = frame.drop(columns="XZQDM")
            frames.append(frame)
        return _concat(frames) if frames else None

    def sorted_pieces(self, g: int, columns: list[str] | None = None) -> pd.DataFrame:
        """Group ``g``'s pieces (all fields, or ``columns`` and the sort keys) sorted by
        (county, BSM, soil polygon), with their partitions' numbers (DABH) as they are.

        The first call sorts them and keeps, for the pieces layer and the layers that refer to
        pieces (written later), the group's order and each piece's new number in its county
        (8 bytes a piece), and where each county starts in each partition's pieces."""
        if columns is not None:
            columns = list(dict.fromkeys([*_SORT_KEYS, "DABH", *columns]))
        pieces = self.fields(g, arc.PIECES, columns)
        if g not in self.order:
            self.order[g] = _text_order(pieces, _SORT_KEYS).astype(np.int32)
            pieces = pieces.iloc[self.order[g]].reset_index(drop=True)
            seq = pieces.groupby("XZQDM", sort=False).cumcount().to_numpy(np.int32) + 1
            k, row = pieces["_k"].to_numpy(), pieces["_row"].to_numpy()
            counties = pieces["XZQDM"].to_numpy().astype(str)
            dabh = pieces["DABH"].to_numpy()
            for member in self.groups[g]:
                at = k == member
                if member not in self.seq:
                    self.seq[member] = np.zeros(self.partials[member].rows(arc.PIECES), np.int32)
                self.seq[member][row[at]] = seq[at]
                if self.beside_task:
                    continue
                starts = self._county_starts(member, counties[at], row[at], dabh[at])
                if member in self.starts:  # a partition across county lines: more counties
                    starts = pd.concat([self.starts[member], starts])
                self.starts[member] = starts
            return pieces
        return pieces.iloc[self.order[g]].reset_index(drop=True)

    def pieces(self, g: int) -> pd.DataFrame:
        """Group ``g``'s pieces layer: all fields, sorted, numbered (DABH) per county again;
        its summary rows added up on the way (unless a task adds them up: ``beside_task``)."""
        pieces = self.sorted_pieces(g)
        if not self.beside_task:
            self._add_up(g, pieces)
        k, row = pieces["_k"].to_numpy(), pieces["_row"].to_numpy()
        seq = np.zeros(len(k), np.int32)
        for member in np.unique(k).tolist():
            at = k == member
            seq[at] = self.seq[member][row[at]]
        pieces["DABH"] = _piece_numbers(pieces["XZQDM"].to_numpy(), seq, self.year)
        return pieces

    def _county_starts(
        self, k: int, counties: np.ndarray, row: np.ndarray, dabh: np.ndarray
    ) -> pd.DataFrame:
        """Where each county's pieces start in partition ``k`` and how many there are.

        A partition numbers its pieces in the same order, per county (:func:`archive_pieces`),
        so a piece's old number is its row after its county's first; checked here, as the
        layers that refer to pieces are renumbered by it (:meth:`layer`)."""
        starts = (
            pd.DataFrame({"county": counties, "row": row})
            .groupby("county", sort=False)["row"]
            .agg(first="min", count="size")
        )
        old = _old_numbers(dabh)
        first = starts["first"].to_numpy()[starts.index.get_indexer(counties)]
        if not np.array_equal(old, row - first + 1):
            raise InvariantError(
                f"partition {self.partials[k].name}: its pieces' numbers (DABH) do not follow "
                "their order"
            )
        return starts

    def balance(self, g: int) -> pd.DataFrame:
        """Group ``g``'s balance rows, sorted by (county, BSM); its checks made on the way."""
        balance = self.fields(g, arc.BALANCE)
        self._check(g, balance)
        return balance.iloc[_text_order(balance, ("XZQDM", "BSM"))].reset_index(drop=True)

    def _check(self, g: int, balance: pd.DataFrame | None = None) -> None:
        """Group ``g``'s balance checks (from its balance rows, read here if not given)."""
        if g in self.checks:
            return
        if balance is None:
            columns = [c for c in self.schemas[arc.BALANCE].names if _checked(c)]
            balance = self.fields(g, arc.BALANCE, columns)
        self.checks[g] = (
            _balance_errors(balance),
            _reconcile(balance, self.fields(g, _PARCELS)),
            set(balance["XZQDM"].astype(str).unique().tolist()),
        )

    def _add_up(self, g: int, pieces: pd.DataFrame) -> None:
        """Group ``g``'s rows of the county and quality summaries, from its sorted pieces."""
        if g in self.county_parts:
            return
        frame = pieces[list(dict.fromkeys(["XZQDM", "DABH", *self.needed]))]
        cultivated = self.fields(g, arc.BALANCE, ["XZQDM", "TBMJ", "TBDLMJ"])
        self.county_parts[g] = county_rows(frame, cultivated, self.columns)
        if self.rasters:
            t = time.perf_counter()
            self.quality_parts[g] = quality_rows(frame, self.rasters)
            self.quality_seconds += time.perf_counter() - t

    def add_up_all(self) -> None:
        """The summary rows of the groups the layers written so far have not brought."""
        for g in range(len(self.groups)):
            if g not in self.county_parts:
                self._add_up(g, self.sorted_pieces(g, self.needed))

    def _every_group(self) -> None:
        """Add up the groups the layers written so far (or the tasks) have not brought."""
        if self.from_tasks is not None:
            self.from_tasks()
        self.add_up_all()
        for g in range(len(self.groups)):
            self._check(g)

    def county_summary(self) -> pd.DataFrame:
        """HTGD_XZQHZ, of every group."""
        if self._county_summary is None:
            self._every_group()
            parts = [self.county_parts[g] for g in range(len(self.groups))]
            self._county_summary = county_table(parts, self.columns, self.names)
        return self._county_summary

    def quality_summary(self) -> pd.DataFrame:
        """HTGD_ZLHZ, of every group (with quality rasters)."""
        self._every_group()
        t = time.perf_counter()
        parts = [self.quality_parts[g] for g in range(len(self.groups))]
        table = quality_table(parts, self.names)
        self.quality_seconds += time.perf_counter() - t
        return table

    def conservation(self) -> dict[str, object]:
        self._every_group()
        return _conservation([self.checks[g][0] for g in range(len(self.groups))])

    def reconciliation(self) -> dict[str, object]:
        self._every_group()
        checks = [self.checks[g][1] for g in range(len(self.groups))]
        return {
            "passed": all(r["passed"] for r in checks),
            "counties": {k: v for r in checks for k, v in r["counties"].items()},
        }

    def counties(self) -> set[str]:
        self._every_group()
        return set().union(*(self.checks[g][2] for g in range(len(self.groups))))

    def layer(self, g: int, name: str) -> pd.DataFrame | None:
        """Group ``g``'s rows of a layer that follows the pieces, with the pieces' new numbers,
        in the order a single run gives. A row's piece is found by its county (XZQDM) and its
        old number (:meth:`_county_starts`), without reading the pieces again."""
        assert not self.beside_task, f"layer {name} is merged by the tasks"
        frame = self.fields(g, name)
        if frame is None or not len(frame):
            return None
        if g not in self.order:
            self.sorted_pieces(g, [])
        k = frame["_k"].to_numpy()
        counties = frame["XZQDM"].to_numpy().astype(str)
        old = _old_numbers(frame["DABH"].to_numpy())
        dabh = np.full(len(frame), None, dtype=object)
        for member in np.unique(k).tolist():
            at = np.flatnonzero(k == member)
            starts = self.starts[member]
            where = starts.index.get_indexer(counties[at])
            found = where >= 0
            first = np.where(found, starts["first"].to_numpy()[where], 0)
            count = np.where(found, starts["count"].to_numpy()[where], 0)
            known = found & (old[at] >= 1) & (old[at] <= count)  # False where no number
            row = first[known] + old[at][known].astype(np.int64) - 1
            dabh[at[known]] = _piece_numbers(counties[at][known], self.seq[member][row], self.year)
        frame["DABH"] = dabh
        return _merge_protection(name, frame, self.single, self.names)

    def stream(self, name: str) -> arc.LayerStream:
        """A layer merged group by group as it is written. HTGD_GHCT lists the zone kinds one
        after another, each over all the counties."""
        spatial = any(p.is_spatial(name) for p in self.partials if p.has(name))
        if name == arc.PIECES:
            group: Callable[[int], pd.DataFrame | None] = self.pieces
        elif name == arc.BALANCE:
            group = self.balance
        else:
            group = functools.partial(self.layer, name=name)
        kinds = self.layout.kinds if name == arc.ZONING_CONFLICTS else [None]

        def parts() -> Iterator[tuple[pd.DataFrame, pa.Array | None]]:
            self.merged[name] = 0
            for kind in kinds:
                for g in range(len(self.groups)):
                    frame = group(g)
                    if frame is None:
                        continue
                    if kind is not None:
                        frame = frame[_zone_rank(frame) == kind].reset_index(drop=True)
                        self.kind_rows[kind] = self.kind_rows.get(kind, 0) + len(frame)
                    if len(frame):
                        self.merged[name] += len(frame)
                        yield from self._chunks(frame, name, spatial)
            if self.whole:
                self.check_rows(name)

        return arc.LayerStream(self.schemas[name], parts, self.crs if spatial else None)

    def check_rows(self, name: str) -> None:
        """Every row of layer ``name`` in the partitions was merged (:attr:`merged`)."""
        rows = sum(p.rows(name) for p in self.partials if p.has(name))
        if self.merged.get(name, 0) != rows:  # a row in no group: never leave it out unsaid
            raise InvariantError(f"layer {name}: {self.merged.get(name, 0)} of {rows} rows merged")

    def _chunks(
        self, frame: pd.DataFrame, name: str, spatial: bool
    ) -> Iterator[tuple[pd.DataFrame, pa.Array | None]]:
        geometries = (
            _Geometries(
                self.partials, name, frame["_k"].to_numpy(), frame["_row"].to_numpy(), self.crs
            )
            if spatial
            else None
        )
        attrs = frame.drop(columns=_SOURCE)
        for start in range(0, len(frame), _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, len(frame))
            chunk = attrs.iloc[start:stop].reset_index(drop=True)
            yield chunk, geometries(start, stop) if geometries is not None else None


def _old_numbers(dabh: np.ndarray) -> np.ndarray:
    """A partition's piece numbers: the last 7 digits of DABH (NaN where there are none)."""
    text = pa.array(dabh, from_pandas=True)
    if not _is_text(text):  # no number at all (a column of missing values)
        return np.full(len(dabh), np.nan)
    tail = pc.utf8_slice_codeunits(text, -7)
    digits = pc.if_else(pc.utf8_is_digit(tail), tail, pa.scalar(None, text.type))
    return pc.cast(digits, pa.float64()).to_numpy(zero_copy_only=False)


def _is_text(array: pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


def _text_order(frame: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    """The rows' order by ``keys`` compared as text, stable (as numpy's lexsort of them as
    ``str``): Arrow's sort where every key is text with no value missing (7x faster on
    a county's pieces), else numpy's."""
    arrays = [pa.array(frame[c], from_pandas=True) for c in keys]
    if all(_is_text(a) and a.null_count == 0 for a in arrays):
        table = pa.table(dict(zip(keys, arrays, strict=True)))
        return pc.sort_indices(table, sort_keys=[(c, "ascending") for c in keys]).to_numpy()
    return np.lexsort([frame[c].to_numpy().astype(str) for c in reversed(keys)])


def _zone_rank(frame: pd.DataFrame) -> np.ndarray:
    """HTGD_GHCT's zone kinds as their rank in :data:`_ZONE_ORDER` (others last)."""
    return frame["FQLX"].map(_ZONE_ORDER).fillna(9).to_numpy().astype(int)


def _layer_schema(partials: list[PartialResult], name: str) -> pa.Schema:
    """A layer's fields (not its geometry) as the archive writes them: the columns of the first
    partition with rows, their types over all partitions with rows. A column with no value in
    any is text, and so is one whose types do not go together (missing values read as numbers
    in one partition, text in another)."""
    found = [p for p in partials if p.has(name)]
    with_rows = [p.schema(name) for p in found if p.rows(name)] or [found[0].schema(name)]
    fields = []
    for f in with_rows[0]:
        if f.name in ("geometry", *_SOURCE):
            continue
        kinds = [
            s.field(f.name).type
            for s in with_rows
            if f.name in s.names and not pa.types.is_null(s.field(f.name).type)
        ]
        try:
            alone = [pa.schema([pa.field(f.name, k)]) for k in kinds]
            kind = pa.unify_schemas(alone, promote_options="permissive").field(0).type
        except (pa.ArrowTypeError, pa.ArrowInvalid, IndexError):
            kind = pa.string()
        fields.append(pa.field(f.name, kind))
    return pa.schema(fields)


def _fields(partials: list[PartialResult], name: str) -> pd.DataFrame:
    """A layer's fields of all partitions that have it, with the partition and row each row
    comes from (``_k``, ``_row``: where its geometry is)."""
    frames = []
    for k, p in enumerate(partials):
        if not p.has(name):
            continue
        frame = p.fields(name)
        frame["_k"] = k
        frame["_row"] = np.arange(len(frame))
        frames.append(frame)
    return _concat(frames)


def _rows(partials: list[PartialResult], name: str) -> pd.DataFrame:
    """A non-spatial layer of all partitions, one after another."""
    return _concat([p.fields(name) for p in partials if p.has(name)])


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames one after another. Those without rows are left out: their untyped (object)
    columns would turn the others' compact text columns into Python objects (3x the memory)."""
    full = [f for f in frames if len(f)] or frames[:1]
    return full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)


def _stream(
    frame: pd.DataFrame, partials: list[PartialResult], name: str, crs: CRS
) -> arc.GeoStream:
    geometries = _Geometries(partials, name, frame["_k"].to_numpy(), frame["_row"].to_numpy(), crs)
    return arc.GeoStream(frame.drop(columns=_SOURCE).reset_index(drop=True), crs, geometries)


class _Geometries:
    """The geometries of one spatial layer of the partitions, in the merged layer's row order,
    as WKB, a chunk at a time (:attr:`pipeline.archive.GeoStream.wkb`).

    A partition's geometries are read from its GeoParquet file (WKB MultiPolygons, passed on as
    they are) when a chunk first needs them and dropped after the last row that needs them, so
    one partition of a group is in memory at a time where its rows are consecutive. Rows of a
    partition in another CRS are reprojected chunk by chunk.
    """

    def __init__(
        self, partials: list[PartialResult], name: str, part: np.ndarray, row: np.ndarray, crs: CRS
    ) -> None:
        self.partials, self.name, self.part, self.row, self.crs = partials, name, part, row, crs
        ks, from_end = np.unique(part[::-1], return_index=True)
        self.last = dict(zip(ks.tolist(), (len(part) - 1 - from_end).tolist(), strict=True))
        self.crss = {k: CRS.from_user_input(partials[k].crs) for k in self.last}
        self.loaded: dict[int, pa.Array] = {}

    def _load(self, k: int) -> pa.Array:
        p = self.partials[k]
        if self.name in p.sources:
            with _reading(p.sources[self.name]):
                table = pq.read_table(p.sources[self.name], columns=["geometry"])
            return table.column("geometry").combine_chunks().cast(pa.binary())
        return arc.wkb_array(p.layers[self.name].geometry.to_numpy())

    def __call__(self, start: int, stop: int) -> pa.Array:
        part, row = self.part[start:stop], self.row[start:stop]
        arrays, positions = [], []
        for k in np.unique(part).tolist():
            if k not in self.loaded:
                self.loaded[k] = self._load(k)
            at = np.flatnonzero(part == k)
            wkb = self.loaded[k].take(pa.array(row[at]))
            if not self.crss[k].equals(self.crs):
                geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
                wkb = arc.wkb_array(gpd.GeoSeries(geoms, crs=self.crss[k]).to_crs(self.crs).values)
            arrays.append(wkb)
            positions.append(at)
        for k in [k for k in self.loaded if self.last[k] < stop]:
            del self.loaded[k]
        if not arrays:
            return pa.array([], type=pa.binary())
        if len(arrays) == 1:
            return arrays[0]
        # rows of several partitions: back into the chunk's row order
        where = np.argsort(np.concatenate(positions), kind="stable")
        return pa.concat_arrays(arrays).take(pa.array(where))


def _protection_layers(partials: list[PartialResult]) -> list[str]:
    """The protection layers present, in the order a partition wrote them."""
    skip = {arc.PIECES, arc.BALANCE, arc.QA_LOG, _PARCELS, crossing.SHAPES}
    seen: list[str] = []
    for p in partials:
        for name in p.layer_names():
            if name not in skip and name not in seen:
                seen.append(name)
    return seen


def _merge_protection(
    name: str, frame: pd.DataFrame, single: bool, names: dict[str, str]
) -> pd.DataFrame:
    """One protection layer of several partitions (their fields), in the order a single run
    gives."""
    if name == arc.OUTSIDE_FARMLAND:
        order = np.argsort(frame["DABH"].to_numpy().astype(str), kind="stable")
    elif name == arc.ZONING_CONFLICTS:
        kind = frame["FQLX"].map(_ZONE_ORDER).fillna(9).to_numpy()
        order = np.lexsort((frame["DABH"].to_numpy().astype(str), kind))
    elif name == arc.OCCUPATION:
        order = np.lexsort((frame["XMBH"].to_numpy(), frame["DABH"].to_numpy().astype(str)))
    elif name == arc.ILLEGAL:
        order = np.lexsort((frame["BGBSM"].astype(str).to_numpy(), -frame["HTMJ"].to_numpy()))
    elif single:
        return frame.reset_index(drop=True)
    elif name == arc.OCCUPATION_TOTALS:
        return _merge_project_totals(frame.drop(columns=_SOURCE))
    elif name == arc.OCCUPATION_BALANCE:
        return _merge_balance_table(frame.drop(columns=_SOURCE), names)
    else:
        return frame.reset_index(drop=True)
    return frame.iloc[order].reset_index(drop=True)


def _merge_project_totals(frame: pd.DataFrame) -> pd.DataFrame:
    """HTGD_JSZYHZ of several partitions: every partition lists every project (the layer is
    read whole), so the per-project figures add up; areas in cents, so the sums are exact."""
    cents = frame.assign(
        ZYMJ_c=np.round(frame["ZYMJ"].to_numpy(float) * 100).astype(np.int64),
        ZYTBDLMJ_c=np.round(frame["ZYTBDLMJ"].to_numpy(float) * 100).astype(np.int64),
    )
    first = cents.drop_duplicates("XMBH").set_index("XMBH")
    sums = cents.groupby("XMBH").agg(
        TBGS=("TBGS", "sum"), ZYMJ_c=("ZYMJ_c", "sum"), ZYTBDLMJ_c=("ZYTBDLMJ_c", "sum")
    )
    out = first.drop(columns=["TBGS", "ZYMJ", "ZYTBDLMJ", "ZYMJ_c", "ZYTBDLMJ_c"])
    out["TBGS"] = sums["TBGS"].astype(np.int64)
    out["ZYMJ"] = sums["ZYMJ_c"] / 100
    out["ZYTBDLMJ"] = sums["ZYTBDLMJ_c"] / 100
    out = out.reset_index()[list(frame.columns)]
    out = out.sort_values(["ZYTBDLMJ", "XMBH"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)


def _merge_balance_table(frame: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """HTGD_ZBPH of several partitions: county rows added up in cents, the total again."""
    rows = frame[frame["XZQDM"] != "合计"]
    cols = [c for c in frame.columns if c not in ("XZQDM", "XZQMC", "SFPH")]
    cents = rows[["XZQDM"]].copy()
    for col in cols:
        cents[col] = np.round(rows[col].to_numpy(float) * 100).astype(np.int64)
    cents = cents.drop(columns=["GDPHMJ", "HTPHMJ"])  # recomputed from the summed parts
    return balance_from_cents(cents, names)[list(frame.columns)]


def _crossing_overlaps(partials: list[PartialResult]) -> pd.DataFrame | None:
    """QA rows of the parcels that overlap another partition's (:mod:`pipeline.crossing`)."""
    kept = [p for p in partials if p.has(crossing.SHAPES)]
    if len(kept) < 2:
        return None
    columns = [*crossing.KEYS, *crossing.BOUNDS]
    return crossing.crossing_overlaps(
        [p.arrow(crossing.SHAPES, columns) for p in kept],
        [p.crs for p in kept],
        lambda k: kept[k].arrow(crossing.SHAPES, ["wkb"]).column("wkb"),
    )


def _merge_qa(partials: list[PartialResult], extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """The QA rows of all partitions (and ``extra``), sorted, each once: a row that several
    partitions logged (a shared soil polygon, a change parcel, a parcel read through two
    windows) or one stage logged twice says no more than one row does."""
    qa = _rows(partials, arc.QA_LOG)
    if extra is not None and len(extra):
        qa = pd.concat([qa, extra], ignore_index=True)
    # the soil map misses the job's parcels only where it misses every partition's
    full = [p for p in partials if p.empty is None]
    uncovered = np.logical_and.reduce([qa[k] == v for k, v in _UNCOVERED.items()])
    if uncovered.any() and int(uncovered.sum()) < len(full):
        qa = qa[~uncovered]
    cols = ["layer", "check", "problem", "action", "feature_id"]
    qa = qa.drop_duplicates(cols).sort_values(cols, kind="stable").reset_index(drop=True)
    return qa[["layer", "feature_id", "check", "problem", "action"]]


def _merge_counts(partials: list[PartialResult], single: bool) -> dict[str, int]:
    """Counts added up over partitions; a layer read by several partitions counts its features
    once (``<layer>_read``, ``<layer>_used``)."""
    if single:
        return dict(partials[0].counts)
    widest = max(partials, key=lambda p: len(p.counts))
    keys = list(widest.counts)
    for p in partials:
        keys += [k for k in p.counts if k not in keys]
    counts = {k: int(sum(p.counts.get(k, 0) for p in partials)) for k in keys}
    for attr, suffix in (("read_keys", "_read"), ("used_keys", "_used")):
        union: dict[str, set[str]] = {}
        for p in partials:
            for layer, found in getattr(p, attr).items():
                union.setdefault(layer, set()).update(found)
        for layer, found in union.items():
            if layer != "parcels" and f"{layer}{suffix}" in counts:
                counts[f"{layer}{suffix}"] = len(found)
    return counts


def _merge_timings(partials: list[PartialResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in partials:
        for k, v in p.timings.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def write_parquet_archive(
    path: Path, layers: dict[str, arc.Layer], *, overwrite: bool = False
) -> Path:
    """Write the archive as a folder of GeoParquet files (``output.format: parquet``).

    ``HTGDTB/<county>.parquet`` holds each county's pieces (a partitioned dataset that Arrow,
    DuckDB and GDAL read as one); every other layer is one ``<layer>.parquet``. The folder is
    written beside the target and renamed into place when complete. ``layers`` as for
    :func:`pipeline.archive.write_archive`.

    Raises
    ------
    UsageError
        The folder exists and ``overwrite`` is false.
    OutputError
        The folder cannot be written.
    """
    path = Path(path)
    arc.check_output(path, overwrite)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for name in layers:
            frame = arc.made(layers, name)
            if name == arc.PIECES:
                _write_by_county(tmp / name, frame)
                continue
            if isinstance(frame, arc.LayerStream):
                _write_parquet_stream(tmp / f"{name}.parquet", frame)
                continue
            frame = frame.reset_index(drop=True)
            if isinstance(frame, gpd.GeoDataFrame):
                frame.to_parquet(tmp / f"{name}.parquet", index=False)
            else:
                pd.DataFrame(frame).to_parquet(tmp / f"{name}.parquet", index=False)
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{path}: cannot write the parquet archive ({err})") from err
    return path


def _write_parquet_stream(path: Path, stream: arc.LayerStream) -> None:
    """A streamed layer as one Parquet file, written a chunk at a time: GeoParquet 1.0 (WKB
    MultiPolygons, the CRS as PROJJSON) for a spatial layer."""
    writer: pq.ParquetWriter | None = None
    try:
        for attrs, wkb in stream.chunks():
            table = pa.Table.from_pandas(attrs, schema=stream.schema, preserve_index=False)
            if stream.crs is not None:
                table = table.append_column("geometry", wkb.cast(pa.binary()))
                table = _as_geoparquet(table, stream.crs)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _as_geoparquet(table: pa.Table, crs: CRS | None, multipolygons: bool = True) -> pa.Table:
    """``table`` with GeoParquet 1.0 metadata for its column "geometry": WKB in ``crs`` (its
    PROJJSON), of MultiPolygons (and missing values) only, or else of types not declared."""
    column = {
        "encoding": "WKB",
        "geometry_types": ["MultiPolygon"] if multipolygons else [],
        "crs": crs.to_json_dict() if crs is not None else None,
    }
    geo = {"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": column}}
    meta = {**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode()}
    return table.replace_schema_metadata(meta)


def _write_by_county(folder: Path, pieces: gpd.GeoDataFrame | arc.LayerStream) -> None:
    """HTGDTB as one GeoParquet file per county; a stream (in county order) is written as it
    comes, one county in memory at a time."""
    folder.mkdir()
    chunks = pieces.frames() if isinstance(pieces, arc.LayerStream) else [pieces]
    code, pending = None, []

    def flush() -> None:
        if pending:
            rows = pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            rows.reset_index(drop=True).to_parquet(folder / f"{code}.parquet", index=False)
            pending.clear()

    for chunk in chunks:
        for value, rows in chunk.groupby("XZQDM", sort=True):
            if value != code:
                flush()
                code = value
                if (folder / f"{code}.parquet").exists():
                    raise ValueError(f"{arc.PIECES}: county {code} is not in one run of rows")
            pending.append(rows)
    flush()
