"""Input checks and the QA log (质检记录).

Every repair and every rejection is recorded here, one row per feature (layer, feature id,
problem, action), so that nothing is dropped silently. The checks are vectorised over whole
layers; they hand on clean polygon layers to the survey stage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import shapely
from shapely import GeometryType

logger = logging.getLogger(__name__)

QA_COLUMNS = ["layer", "feature_id", "check", "problem", "action"]

_POLYGONAL = (GeometryType.POLYGON, GeometryType.MULTIPOLYGON)
_COLLECTIONS = (
    GeometryType.MULTIPOLYGON,
    GeometryType.MULTILINESTRING,
    GeometryType.MULTIPOINT,
    GeometryType.GEOMETRYCOLLECTION,
)


def as_string(values: object) -> pd.Series:
    """Values as stripped text in a pandas string Series (positional index), NA where missing:
    ``as_text`` without leaving pandas' string storage, for work on millions of values."""
    series = pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values
    return series.astype("string").str.strip().reset_index(drop=True)


def as_text(values: object) -> np.ndarray:
    """Values as stripped text (object array), None where missing; vectorised."""
    text = as_string(values)
    return text.astype(object).where(text.notna(), None).to_numpy()


class QALog:
    """Collects QA rows; cheap to append many rows at once."""

    def __init__(self) -> None:
        self._chunks: list[pd.DataFrame] = []

    def add(
        self,
        layer: str,
        feature_ids: Iterable[object] | object,
        check: str,
        problem: str,
        action: str,
    ) -> None:
        """Record one row per feature id (a scalar id records one row)."""
        if isinstance(feature_ids, str) or not isinstance(feature_ids, Iterable):
            ids = np.array([feature_ids], dtype=object)
        else:
            ids = np.asarray(
                list(feature_ids) if not hasattr(feature_ids, "__len__") else feature_ids,
                dtype=object,
            )
        if len(ids) == 0:
            return
        chunk = pd.DataFrame(
            {
                "layer": layer,
                "feature_id": np.where(pd.isna(ids), "", as_text(ids)).astype(object),
                "check": check,
                "problem": problem,
                "action": action,
            }
        )
        self._chunks.append(chunk)
        logger.info("%s: %s: %d feature(s): %s", layer, check, len(ids), action)

    def extend(self, other: QALog) -> None:
        self._chunks.extend(other._chunks)

    def only(self, feature_ids: Iterable[object]) -> QALog:
        """A log of the rows about these features (ids as recorded: stripped text)."""
        wanted = set(feature_ids)
        out = QALog()
        for chunk in self._chunks:
            rows = chunk[chunk["feature_id"].isin(wanted)]
            if len(rows):
                out._chunks.append(rows)
        return out

    def frame(self) -> pd.DataFrame:
        """All rows, in the order they were recorded."""
        if not self._chunks:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in QA_COLUMNS})
        return pd.concat(self._chunks, ignore_index=True)[QA_COLUMNS]

    def summary(self) -> pd.DataFrame:
        """Counts per (layer, check, action)."""
        frame = self.frame()
        if frame.empty:
            return pd.DataFrame(columns=["layer", "check", "action", "count"])
        return (
            frame.groupby(["layer", "check", "action"], sort=False)
            .size()
            .rename("count")
            .reset_index()
        )

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks)


def polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """The polygonal part of each geometry (Polygon/MultiPolygon), or None where there is none.

    Geometry collections from ``make_valid`` or intersections are taken apart level by level
    (vectorised per level, not per feature) and their polygons put back together.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.full(len(geoms), None, dtype=object)
    types = shapely.get_type_id(geoms)
    simple = np.isin(types, _POLYGONAL)
    out[simple] = geoms[simple]
    todo = np.flatnonzero(types == GeometryType.GEOMETRYCOLLECTION)
    if len(todo) == 0:
        return out
    parts, owner = shapely.get_parts(geoms[todo], return_index=True)
    owner = todo[owner]
    polys: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    while len(parts):
        ptypes = shapely.get_type_id(parts)
        keep = ptypes == GeometryType.POLYGON
        polys.append(parts[keep])
        owners.append(owner[keep])
        nested = np.isin(ptypes, _COLLECTIONS)
        if not nested.any():
            break
        parts, sub = shapely.get_parts(parts[nested], return_index=True)
        owner = owner[nested][sub]
    all_polys = np.concatenate(polys) if polys else np.empty(0, dtype=object)
    all_owners = np.concatenate(owners) if owners else np.empty(0, dtype=np.intp)
    if len(all_polys):
        order = np.argsort(all_owners, kind="stable")
        uniq, start = np.unique(all_owners[order], return_index=True)
        merged = shapely.multipolygons(
            all_polys[order], indices=np.searchsorted(uniq, all_owners[order])
        )
        single = np.diff(np.append(start, len(order))) == 1
        merged[single] = all_polys[order][start[single]]
        out[uniq] = merged
    return out


def clean_polygons(
    geoms: np.ndarray, feature_ids: np.ndarray, layer: str, qa: QALog
) -> tuple[np.ndarray, np.ndarray]:
    """Repair a polygon layer's geometries; return (geometries, keep mask).

    - Z/M coordinates are dropped (areas are planar);
    - invalid geometries are repaired with ``make_valid`` keeping the polygonal part;
    - collections keep their polygonal part;
    - null, empty, non-polygon and zero-area features are rejected.
    Every repair and rejection is recorded in ``qa``.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    ids = np.asarray(feature_ids, dtype=object)

    missing = shapely.is_missing(geoms)
    empty = ~missing & shapely.is_empty(geoms)
    qa.add(layer, ids[missing], "geometry", "null geometry", "rejected")
    qa.add(layer, ids[empty], "geometry", "empty geometry", "rejected")
    present = ~(missing | empty)

    has_z = np.zeros(len(geoms), dtype=bool)
    has_z[present] = shapely.has_z(geoms[present])
    if hasattr(shapely, "has_m"):  # shapely >= 2.1 reads measured coordinates
        has_z[present] |= shapely.has_m(geoms[present])
    if has_z.any():
        geoms[has_z] = shapely.force_2d(geoms[has_z])
        qa.add(layer, ids[has_z], "geometry", "3D/measured coordinates", "Z/M dropped")

    types = np.full(len(geoms), -1)
    types[present] = shapely.get_type_id(geoms[present])
    not_polygonal = present & ~np.isin(types, (*_POLYGONAL, GeometryType.GEOMETRYCOLLECTION))
    for type_id in np.unique(types[not_polygonal]):
        sel = not_polygonal & (types == type_id)
        name = GeometryType(type_id).name.title().replace("string", "String")
        qa.add(layer, ids[sel], "geometry", f"{name} feature in a polygon layer", "rejected")

    candidates = present & ~not_polygonal
    invalid = np.zeros(len(geoms), dtype=bool)
    invalid[candidates] = ~shapely.is_valid(geoms[candidates])
    if invalid.any():
        reasons = shapely.is_valid_reason(geoms[invalid])
        repaired = shapely.make_valid(geoms[invalid])
        geoms[invalid] = repaired
        for reason in np.unique(reasons):
            sel = np.flatnonzero(invalid)[reasons == reason]
            kind = reason.split("[")[0].strip()
            qa.add(layer, ids[sel], "geometry", f"invalid geometry: {kind}", "make_valid")

    collection = candidates & (shapely.get_type_id(geoms) == GeometryType.GEOMETRYCOLLECTION)
    if collection.any():
        was_collection_before = collection & ~invalid
        geoms[collection] = polygonal_part(geoms[collection])
        qa.add(
            layer,
            ids[was_collection_before],
            "geometry",
            "geometry collection",
            "kept polygonal part",
        )
    lost = candidates & shapely.is_missing(geoms)
    qa.add(layer, ids[lost], "geometry", "no polygonal part after repair", "rejected")

    keep = candidates & ~lost
    zero = keep & (shapely.area(geoms) <= 0)
    qa.add(layer, ids[zero], "geometry", "zero-area polygon", "rejected")
    keep &= ~zero
    return geoms, keep
