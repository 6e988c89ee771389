"""Read survey inputs: any format, encoding, CRS, field mapping and filter.

``read_layer`` opens one input (GeoPackage, Shapefile, File Geodatabase via OpenFileGDB,
GeoParquet) through pyogrio with Arrow, or through fiona where the job asks for it, applies the
``where`` filter, renames the mapped fields to their semantic names, repairs field types that
come wrong (DLBM as an integer, KCXS as text) and reprojects to the working CRS. Every problem it
cannot repair is an :class:`~pipeline.errors.InputError` naming the file, layer and field.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from .config import REQUIRED_FIELDS, InputSpec
from .errors import InputError
from .qa import QALog, as_text

logger = logging.getLogger(__name__)

Engine = Literal["pyogrio", "fiona"]

#: semantic fields that hold land-class style codes (text with leading zeros)
CODE_FIELDS = {
    "parcels": {"landuse": 4, "county": 6},
    "changes": {"before": 4, "after": 4, "county": 6},
}
#: semantic fields that must be numbers
NUMERIC_FIELDS = ("area", "deduction_rate")
#: FID column carried along so QA rows can name features that have no id
FID = "_fid"
#: degrees by which data may reach beyond its CRS's area of use
_MARGIN_DEG = 5.0


@contextlib.contextmanager
def gdal_messages(where: object) -> Iterator[None]:
    """Turn the warnings GDAL raises while reading (through pyogrio or fiona) into log records,
    so that they reach the log (shown with -v) instead of the user's terminal as noise."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        logger.info("%s: %s", where, item.message)


def describe(spec: InputSpec) -> str:
    """``path (layer L)`` for messages."""
    return f"{spec.path}" + (f" (layer {spec.layer})" if spec.layer else "")


def is_parquet(path: Path) -> bool:
    """Whether a vector input is a GeoParquet file (by its suffix)."""
    return path.suffix.lower() in (".parquet", ".geoparquet")


def _detect_shapefile_encoding(path: Path) -> str | None:
    """The text encoding of a Shapefile that has no ``.cpg``: UTF-8 if its text decodes as
    UTF-8, else GB18030 (a superset of GBK/GB2312, which Chinese survey offices write)."""
    if path.suffix.lower() != ".shp":
        return None
    if any(path.with_suffix(s).exists() for s in (".cpg", ".CPG")):
        return None
    dbf = next(
        (p for p in (path.with_suffix(".dbf"), path.with_suffix(".DBF")) if p.exists()), None
    )
    if dbf is None:
        return None
    with dbf.open("rb") as f:
        sample = f.read(4 << 20)
    if len(sample) < 32:
        return None
    # records start after the header; decode only the record bytes
    header_len = int.from_bytes(sample[8:10], "little")
    body = sample[header_len:]
    if all(b < 0x80 for b in body):
        return None
    try:
        body.decode("utf-8")
        return "UTF-8"
    except UnicodeDecodeError as err:
        # a multi-byte character cut at the end of the sample is still UTF-8
        if err.start >= len(body) - 4 and len(sample) == 4 << 20:
            return "UTF-8"
        return "GB18030"


def _layer_info(
    spec: InputSpec, engine: Engine, encoding: str | None
) -> tuple[str | None, list[str], object]:
    """(layer name, field names, crs) of the input, checking that file and layer exist."""
    path = spec.path
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except Exception as err:
            raise InputError(f"{path}: cannot read GeoParquet file ({_short(err)})") from err
        meta = schema.metadata or {}
        if b"geo" not in meta:
            raise InputError(f"{path}: not a GeoParquet file (no 'geo' metadata)")
        return None, [n for n in schema.names], None
    try:
        with gdal_messages(path):
            layers = [str(name) for name, *_ in pyogrio.list_layers(path)]
    except Exception as err:
        raise InputError(f"{path}: cannot open ({_short(err)})") from err
    layer = spec.layer
    if layer is None:
        if len(layers) != 1:
            raise InputError(
                f"{path}: holds {len(layers)} layers ({', '.join(layers[:10])}); "
                "name one with 'layer' in the config"
            )
        layer = layers[0]
    elif layer not in layers:
        raise InputError(
            f"{path}: layer {layer!r} not found (layers: {', '.join(layers[:20]) or 'none'})"
        )
    try:
        with gdal_messages(path):
            if engine == "fiona":
                import fiona

                with fiona.open(path, layer=layer, encoding=encoding) as src:
                    return layer, list(src.schema["properties"]), src.crs_wkt or None
            info = pyogrio.read_info(path, layer=layer, encoding=encoding)
    except Exception as err:
        raise InputError(f"{path} (layer {layer}): cannot read ({_short(err)})") from err
    return layer, [str(f) for f in info["fields"]], info["crs"]


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_layer(
    spec: InputSpec,
    name: str,
    *,
    crs: CRS | None,
    qa: QALog,
    engine: Engine = "pyogrio",
    bbox: tuple[float, float, float, float] | None = None,
    fids: Sequence[int] | None = None,
) -> gpd.GeoDataFrame:
    """Read one input layer into a GeoDataFrame with semantic column names.

    Parameters
    ----------
    spec : InputSpec
        Where the layer is, its field mapping, filter and encoding.
    name : str
        The input's role (``parcels``, ``soil``, ``counties``, ``region``), which decides the
        required fields and names the layer in the QA log.
    crs : pyproj.CRS or None
        The working CRS to reproject to; None keeps the layer's CRS.
    qa : QALog
        Receives the repairs made to field values.
    engine : {"pyogrio", "fiona"}
        The I/O library.
    bbox : tuple, optional
        Read only features intersecting this box (in the layer's own CRS).
    fids : sequence of int, optional
        Read only these features (FIDs as the result's ``_fid`` gives them). From a GDAL
        format they are read with pyogrio whatever the engine, and the caller has chosen them
        after the user's ``where``; from a GeoParquet file the ``where`` is applied here.

    Returns
    -------
    GeoDataFrame
        Columns: the semantic names of the mapped fields present, ``_fid`` (the feature's id in
        the source) and ``geometry``, in the working CRS.

    Raises
    ------
    InputError
        Unreadable file, missing layer or required field, no CRS, no features after filtering.
    """
    encoding = spec.encoding or _detect_shapefile_encoding(spec.path)
    if encoding and not spec.encoding:
        logger.info("%s: no .cpg file; text decoded as %s", spec.path, encoding)
    layer, fields, _ = _layer_info(spec, engine, encoding)
    where = describe(spec) if layer is None else f"{spec.path} (layer {layer})"
    rename = _field_mapping(spec, name, fields, where)
    columns = list(rename)

    with gdal_messages(where):
        frame = _read(spec, layer, columns, engine, encoding, bbox, where, fids)
    if spec.crs is not None:
        try:
            frame = frame.set_crs(CRS.from_user_input(spec.crs), allow_override=True)
        except CRSError as err:
            raise InputError(f"{where}: bad crs override {spec.crs!r}") from err
    elif frame.crs is None:
        raise InputError(
            f"{where}: the layer has no coordinate reference system; "
            f"set inputs.{name}.crs in the config"
        )
    if len(frame) == 0:
        filt = f" after filter {spec.where!r}" if spec.where else ""
        raise InputError(f"{where}: no features{filt}")
    check_coordinates(frame, where, name)

    fixed = frame.attrs.pop("decoder_fixed", np.empty(0))  # not passed on: concat compares attrs
    frame = frame.rename(columns=rename)
    frame = _fix_types(frame, name, where, qa)
    if len(fixed):
        ids = frame["id"] if "id" in frame else frame[FID]
        sel = frame[FID].isin(fixed).to_numpy()
        qa.add(
            name,
            ids[sel].to_numpy(),
            "geometry",
            "geometry not decodable as written (ring not closed or too few points)",
            "rings closed by the reader",
        )
    if crs is not None and not frame.crs.equals(crs):
        frame = frame.to_crs(crs)
    return frame


def _field_mapping(spec: InputSpec, name: str, fields: list[str], where: str) -> dict[str, str]:
    """{actual field: semantic name} of the mapped fields the layer has (names matched without
    regard to case); a required or explicitly mapped field it lacks is an InputError."""
    rename: dict[str, str] = {}
    present_lower = {f.lower(): f for f in fields}
    for semantic, field in spec.fields.items():
        actual = field if field in fields else present_lower.get(field.lower())
        if actual is None:
            if semantic in REQUIRED_FIELDS[name] or semantic in spec.explicit_fields:
                raise InputError(
                    f"{where}: field {field!r} ({name} {semantic}) not found; "
                    f"fields are: {', '.join(fields[:30])}"
                )
            continue
        rename[actual] = semantic
    return rename


def read_fields(
    spec: InputSpec, name: str, semantics: Sequence[str], engine: Engine = "pyogrio"
) -> pd.DataFrame:
    """Some mapped fields of every feature of a layer, without geometry, as ``read_layer`` gives
    them (the user's ``where`` applied, code fields repaired, in layer order), read through
    Arrow whatever the engine.

    Returns
    -------
    DataFrame
        ``_fid`` and those of ``semantics`` the layer has.

    Raises
    ------
    InputError
        Unreadable file, missing layer or required field, a bad ``where``.
    """
    encoding = spec.encoding or _detect_shapefile_encoding(spec.path)
    layer, fields, _ = _layer_info(spec, engine, encoding)
    where = describe(spec) if layer is None else f"{spec.path} (layer {layer})"
    rename = {k: v for k, v in _field_mapping(spec, name, fields, where).items() if v in semantics}
    columns = list(rename)
    try:
        with gdal_messages(where):
            if is_parquet(spec.path):
                import pyarrow.parquet as pq

                frame = pq.read_table(spec.path, columns=columns).to_pandas()
                frame[FID] = np.arange(len(frame), dtype=np.int64)
                if spec.where:
                    frame = frame[_sql_filter(frame[columns], spec.where, where)]
            else:
                _, table = pyogrio.read_arrow(
                    spec.path,
                    layer=layer,
                    columns=columns,
                    read_geometry=False,
                    where=spec.where,
                    encoding=encoding,
                    return_fids=True,
                )
                frame = table.to_pandas().rename(columns={"fid": FID})
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{where}: cannot read ({_short(err)})") from err
    frame = frame.rename(columns=rename).reset_index(drop=True)
    frame[FID] = frame[FID].astype(np.int64)
    for semantic in CODE_FIELDS.get(name, {}):
        if semantic in frame:  # repaired as read_layer repairs them, value by distinct value
            codes, values = pd.factorize(frame[semantic])
            distinct = pd.DataFrame({semantic: values, FID: np.zeros(len(values), np.int64)})
            fixed = _fix_types(distinct, name, where, QALog())[semantic].to_numpy(dtype=object)
            frame[semantic] = np.where(codes >= 0, fixed[np.maximum(codes, 0)], None)
    return frame


def _read(
    spec: InputSpec,
    layer: str | None,
    columns: list[str],
    engine: Engine,
    encoding: str | None,
    bbox: tuple[float, float, float, float] | None,
    where: str,
    fids: Sequence[int] | None = None,
) -> gpd.GeoDataFrame:
    path = spec.path
    try:
        if is_parquet(path):
            frame = _read_parquet(path, columns, bbox)
            if fids is not None:
                frame = frame.iloc[np.asarray(fids, dtype=np.int64)].reset_index(drop=True)
            if spec.where:
                frame = frame[_sql_filter(frame[columns], spec.where, where)]
            return frame
        if engine == "fiona" and fids is None:
            frame = gpd.read_file(
                path,
                layer=layer,
                engine="fiona",
                columns=columns,
                where=spec.where,
                bbox=bbox,
                encoding=encoding,
            )
            # the features' own FIDs (as pyogrio gives them), so that a partition's read and a
            # single run's name the same feature alike
            import fiona

            with fiona.open(path, layer=layer, encoding=encoding) as src:
                keys = np.fromiter(src.keys(bbox=bbox, where=spec.where), dtype=np.int64)
            frame[FID] = keys
            if bbox is not None:  # in layer order, as below
                frame = frame.sort_values(FID, kind="stable", ignore_index=True)
            return frame
        select = {"fids": np.asarray(fids, dtype=np.int64)} if fids is not None else {}
        frame = pyogrio.read_dataframe(
            path,
            layer=layer,
            columns=columns,
            where=None if fids is not None else spec.where,
            bbox=bbox,
            encoding=encoding,
            use_arrow=True,
            fid_as_index=True,
            on_invalid="ignore",
            **select,
        )
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{where}: cannot read ({_short(err)})") from err
    if bbox is not None:  # a window comes in spatial-index order: put it in layer order
        frame = frame.sort_index(kind="stable")
    frame[FID] = frame.index.to_numpy(dtype=np.int64)
    frame = frame.reset_index(drop=True)
    return _reread_broken(frame, path, layer, encoding)


def _reread_broken(
    frame: gpd.GeoDataFrame, path: Path, layer: str | None, encoding: str | None
) -> gpd.GeoDataFrame:
    """Features whose geometry could not be decoded (a ring not closed, too few points) are read
    again with the decoder's repair (rings closed); their FIDs go to ``attrs["decoder_fixed"]``."""
    broken = np.flatnonzero(frame.geometry.isna().to_numpy())
    frame.attrs["decoder_fixed"] = np.empty(0, dtype=np.int64)
    if len(broken) == 0:
        return frame
    fids = frame[FID].to_numpy()[broken]
    again = pyogrio.read_dataframe(
        path,
        layer=layer,
        fids=fids,
        columns=[],
        encoding=encoding,
        use_arrow=True,
        fid_as_index=True,
        on_invalid="fix",
    )
    fixed = again.geometry.reindex(fids).to_numpy()
    ok = ~shapely.is_missing(fixed)
    geoms = frame.geometry.to_numpy().copy()
    geoms[broken[ok]] = fixed[ok]
    frame = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))
    frame.attrs["decoder_fixed"] = fids[ok]
    return frame


def check_coordinates(frame: gpd.GeoDataFrame, where: str, name: str) -> None:
    """Refuse coordinates that cannot belong to the layer's CRS (swapped axes, degrees in a
    projected layer, metres in a geographic one), which would otherwise give absurd areas."""
    geoms = frame.geometry.to_numpy()
    present = ~shapely.is_missing(geoms)
    present[present] = ~shapely.is_empty(geoms[present])
    if not present.any():
        return
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms[present])
    crs = frame.crs
    xs = np.array([xmin, xmax, xmin, xmax, (xmin + xmax) / 2])
    ys = np.array([ymin, ymin, ymax, ymax, (ymin + ymax) / 2])
    if crs.is_geographic:
        lon, lat = xs, ys
    else:
        to_geo = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        with np.errstate(all="ignore"):
            lon, lat = to_geo.transform(xs, ys, errcheck=False)
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    ok = np.isfinite(lon).all() and np.isfinite(lat).all()
    ok = ok and (np.abs(lon) <= 180).all() and (np.abs(lat) <= 90).all()
    area = crs.area_of_use
    if ok and area is not None:
        # a margin: survey data may reach somewhat beyond its zone's nominal band
        ok = (
            (lon >= area.west - _MARGIN_DEG).all()
            and (lon <= area.east + _MARGIN_DEG).all()
            and (lat >= area.south - _MARGIN_DEG).all()
            and (lat <= area.north + _MARGIN_DEG).all()
        )
    if not ok:
        name_crs = crs.to_string()
        raise InputError(
            f"{where}: coordinates (x {xmin:.10g} to {xmax:.10g}, y {ymin:.10g} to {ymax:.10g}) "
            f"cannot belong to the layer's CRS {name_crs}: swapped axes, degrees in a projected "
            f"layer or a wrong CRS? Fix the data or set inputs.{name}.crs"
        )


def _parquet_geometry(path: Path) -> str:
    return _geo_metadata(path).get("primary_column", "geometry")


def geoparquet_crs(path: Path) -> CRS | None:
    """The CRS of a GeoParquet file's primary geometry column (OGC:CRS84 where the file names
    none, as the format says; None where it says the CRS is unknown)."""
    meta = _geo_metadata(path)
    return _column_crs(meta["columns"][meta.get("primary_column", "geometry")])


def _column_crs(column: dict) -> CRS | None:
    """The CRS of a GeoParquet geometry column from its ``geo`` metadata entry."""
    crs = column.get("crs", "OGC:CRS84")
    if crs is None:
        return None
    return CRS.from_json_dict(crs) if isinstance(crs, dict) else CRS.from_user_input(crs)


def geoparquet_bounds(path: Path) -> np.ndarray:
    """The n × 4 bounding boxes of a GeoParquet file's rows, in row order (NaN: no geometry)."""
    geom = _parquet_geometry(path)
    return shapely.bounds(gpd.read_parquet(path, columns=[geom]).geometry.to_numpy())


def _geo_metadata(path: Path) -> dict:
    import json

    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[b"geo"])


def _read_parquet(
    path: Path, columns: list[str], bbox: tuple[float, float, float, float] | None
) -> gpd.GeoDataFrame:
    """A GeoParquet file's rows, ``_fid`` their row numbers in the file: all of them, or those
    whose bounding box meets ``bbox``.

    Through a window, the row groups whose bbox covering column's statistics miss it are not
    read; a file without that column (or not WKB-encoded) is read whole and its geometries'
    boxes compared. Either way a row keeps its number, so a partition's read and a single run's
    name a feature alike, and a row without geometry is in no window.
    """
    import pyarrow.parquet as pq

    meta = _geo_metadata(path)
    geom = meta.get("primary_column", "geometry")
    column = meta["columns"][geom]
    cover = column.get("covering", {}).get("bbox")
    if bbox is None or cover is None or str(column.get("encoding", "WKB")).upper() != "WKB":
        frame = gpd.read_parquet(path, columns=[*columns, geom])
        frame[FID] = np.arange(len(frame), dtype=np.int64)
        if bbox is None:
            return frame
        b = shapely.bounds(frame.geometry.to_numpy())
        return frame[_meets(b[:, 0], b[:, 1], b[:, 2], b[:, 3], bbox)].reset_index(drop=True)
    box_column = cover["xmin"][0]
    file = pq.ParquetFile(path)
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = [i for i in range(file.num_row_groups) if _group_meets(file, i, cover, bbox)]
    table = file.read_row_groups(groups, columns=[*columns, geom, box_column])
    boxes = table.column(box_column).combine_chunks()
    xmin, ymin, xmax, ymax = (
        boxes.field(cover[k][1]).to_numpy(zero_copy_only=False).astype(float)
        for k in ("xmin", "ymin", "xmax", "ymax")
    )
    keep = _meets(xmin, ymin, xmax, ymax, bbox)
    rows = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups] or [[]])
    table = table.filter(keep)
    wkb = table.column(geom).combine_chunks()
    if isinstance(wkb.type, pa.ExtensionType):
        wkb = wkb.storage
    geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
    frame = gpd.GeoDataFrame(
        table.select(columns).to_pandas(),
        geometry=gpd.GeoSeries(geoms, crs=_column_crs(column), name=geom),
    )
    frame[FID] = rows[keep].astype(np.int64)
    return frame


def _meets(
    xmin: np.ndarray | float,
    ymin: np.ndarray | float,
    xmax: np.ndarray | float,
    ymax: np.ndarray | float,
    bbox: tuple[float, ...],
) -> np.ndarray:
    """Which boxes meet ``bbox`` (a missing box, NaN, meets none)."""
    with np.errstate(invalid="ignore"):
        return (xmin <= bbox[2]) & (xmax >= bbox[0]) & (ymin <= bbox[3]) & (ymax >= bbox[1])


def _group_meets(file: object, group: int, cover: dict, bbox: tuple[float, ...]) -> bool:
    """Whether a row group's bbox covering statistics may meet ``bbox`` (True without them)."""
    meta = file.metadata.row_group(group)
    paths = {".".join(cover[k]): k for k in ("xmin", "ymin", "xmax", "ymax")}
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for j in range(meta.num_columns):
        chunk = meta.column(j)
        key = paths.get(chunk.path_in_schema)
        stats = chunk.statistics
        if key is None or stats is None or not stats.has_min_max:
            continue
        low[key], high[key] = float(stats.min), float(stats.max)
    if len(low) < 4:
        return True
    return bool(_meets(low["xmin"], low["ymin"], high["xmax"], high["ymax"], bbox))


def _sql_filter(attributes: pd.DataFrame, clause: str, where: str) -> np.ndarray:
    """Evaluate an SQL ``where`` clause on attributes (for formats GDAL does not filter)."""
    con = sqlite3.connect(":memory:")
    try:
        attributes.reset_index(drop=True).to_sql("t", con, index_label="_row")
        rows = con.execute(f"SELECT _row FROM t WHERE {clause}").fetchall()
    except (sqlite3.Error, ValueError) as err:
        raise InputError(f"{where}: bad where filter {clause!r} ({err})") from err
    finally:
        con.close()
    mask = np.zeros(len(attributes), dtype=bool)
    mask[[r[0] for r in rows]] = True
    return mask


def _fix_types(frame: gpd.GeoDataFrame, name: str, where: str, qa: QALog) -> gpd.GeoDataFrame:
    """Bring mapped fields to the types the survey needs, logging every value it had to change."""
    ids = frame["id"] if "id" in frame else frame[FID]
    for semantic, width in CODE_FIELDS.get(name, {}).items():
        if semantic not in frame:
            continue
        col = frame[semantic]
        if pd.api.types.is_numeric_dtype(col):
            # a DLBM stored as a number has lost its leading zero (103 for 0103)
            valid = col.notna()
            text = pd.Series(pd.NA, index=col.index, dtype=object)
            ints = col[valid].astype("int64")
            text[valid] = ints.astype(str).str.zfill(width)
            qa.add(
                name,
                ids[valid].to_numpy(),
                f"field {semantic}",
                f"numeric code field (e.g. {ints.iloc[0] if len(ints) else ''})",
                f"converted to text, zero-padded to {width} digits",
            )
            frame[semantic] = text
        else:
            frame[semantic] = as_text(col)
    for semantic in NUMERIC_FIELDS:
        if semantic not in frame:
            continue
        col = frame[semantic]
        if pd.api.types.is_numeric_dtype(col):
            frame[semantic] = col.astype("float64")
            continue
        text = pd.Series(as_text(col), index=col.index, dtype=object)
        numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce").astype("float64")
        bad = text.notna() & (text != "") & numbers.isna()
        qa.add(
            name,
            ids[~bad & text.notna()].to_numpy(),
            f"field {semantic}",
            "number stored as text",
            "converted to number",
        )
        qa.add(
            name,
            ids[bad].to_numpy(),
            f"field {semantic}",
            "text that is not a number",
            "treated as missing",
        )
        frame[semantic] = numbers
    return frame


def layer_fingerprint(path: Path) -> str:
    """A cheap, stable fingerprint of an input (size, mtime and a hash of the first and last MB)."""
    import hashlib

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    if path.suffix.lower() == ".shp":
        files = sorted(p for p in path.parent.glob(path.stem + ".*") if p.is_file())
    digest = hashlib.sha256()
    total = 0
    for file in files:
        size = file.stat().st_size
        total += size
        digest.update(f"{file.name}:{size}".encode())
        with file.open("rb") as f:
            digest.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), 2)
                digest.update(f.read())
    return f"sha256:{digest.hexdigest()[:32]} bytes:{total}"
