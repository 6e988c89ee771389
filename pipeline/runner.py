"""A survey job from config to archive: read and check, survey, summarise, write.

``run_survey`` runs the stages in order and writes the archive; ``validate_inputs`` runs only the
reading and checking. Both report progress through an optional callback, so the CLI can show it
and notebooks can ignore it.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from . import archive as arc
from .codes import BLACK_SOIL_GROUPS, LANDUSE_NAMES, M2_PER_HECTARE, M2_PER_MU
from .config import PROTECTION_INPUTS, InputSpec, SurveyConfig
from .errors import InputError, InvariantError
from .overlay import default_threads, safe_intersection
from .protection import ProtectionInputs, ProtectionRules, analyse_protection
from .qa import QALog, as_text, clean_polygons
from .sources import FID, describe, layer_fingerprint, read_layer
from .survey import (
    BLACK,
    CONSERVATION_FLOOR_M2,
    CONSERVATION_TOLERANCE,
    prepare_soil,
    survey_parcels,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

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


def _working_crs(cfg: SurveyConfig, parcels: gpd.GeoDataFrame, where: str) -> CRS:
    if cfg.crs != "auto":
        return CRS.from_user_input(cfg.crs)
    xmin, ymin, xmax, ymax = parcels.total_bounds
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


def _read(
    spec: InputSpec, name: str, crs: CRS | None, cfg: SurveyConfig, qa: QALog
) -> gpd.GeoDataFrame:
    return read_layer(spec, name, crs=crs, qa=qa, engine=cfg.io.engine)


def _clean(frame: gpd.GeoDataFrame, name: str, ids: np.ndarray, qa: QALog) -> gpd.GeoDataFrame:
    geoms, keep = clean_polygons(frame.geometry.to_numpy(), ids, name, qa)
    frame = frame.copy()
    frame["geometry"] = geoms
    return frame[keep].reset_index(drop=True)


def _parcel_ids(parcels: gpd.GeoDataFrame, qa: QALog) -> gpd.GeoDataFrame:
    """Make parcel ids present and unique (missing → FID-based id, duplicates → suffixed)."""
    ids = parcels["id"].astype(object)
    ids = pd.Series(as_text(ids), dtype=object)
    missing = ids.isna() | (ids == "")
    if missing.any():
        new = "FID" + parcels.loc[missing, FID].astype(str)
        qa.add(
            "parcels",
            new.to_numpy(),
            "field id",
            "parcel id (BSM) missing",
            "id made from the feature id",
        )
        ids[missing] = new
    dup = ids.duplicated(keep="first")
    if dup.any():
        rank = ids.groupby(ids).cumcount() + 1
        new = ids[dup] + "-" + rank[dup].astype(str)
        qa.add(
            "parcels",
            ids[dup].to_numpy(),
            "field id",
            "duplicate parcel id (BSM)",
            "later duplicates renamed <BSM>-2, -3, ...",
        )
        ids[dup] = new
    parcels = parcels.copy()
    parcels["id"] = ids.astype(str)
    return parcels


def _county_codes(
    parcels: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame | None,
    qa: QALog,
    layer: str = "parcels",
) -> pd.Series:
    """County code (XZQDM) of each feature: the county field's first 6 digits (ZLDWDM of a
    parcel, XZQDM of a change parcel), else the county it lies in."""
    n = len(parcels)
    code = pd.Series([None] * n, dtype=object)
    if "county" in parcels:
        raw = parcels["county"].astype(object)
        text = raw.where(raw.notna(), "").astype(str).str.strip().str[:6]
        good = text.str.fullmatch(r"\d{6}")
        code[good.to_numpy()] = text[good].to_numpy()
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


def _log_overlapping_parcels(parcels: gpd.GeoDataFrame, qa: QALog) -> None:
    """Parcels of a land survey do not overlap; where they do, both keep their official area (the
    survey works parcel by parcel) and the QA log names the pair and the shared area."""
    geoms = parcels.geometry.to_numpy()
    # the coverage validator finds the few suspect parcels fast; only those are paired
    try:
        suspect = np.flatnonzero(~shapely.is_empty(shapely.coverage_invalid_edges(geoms)))
    except shapely.errors.GEOSException:
        suspect = np.arange(len(geoms))
    if len(suspect) == 0:
        return
    tree = shapely.STRtree(geoms)
    pairs = [tree.query(geoms[suspect], predicate=p) for p in ("overlaps", "contains", "within")]
    a = suspect[np.concatenate([p[0] for p in pairs])]
    b = np.concatenate([p[1] for p in pairs])
    keep = a != b
    a, b = a[keep], b[keep]
    a, b = np.minimum(a, b), np.maximum(a, b)
    if len(a) == 0:
        return
    a, b = np.unique(np.stack([a, b]), axis=1)
    shared = shapely.area(safe_intersection(geoms[a], geoms[b]))
    real = shared > 0.01
    ids = parcels["id"].to_numpy()
    for i, j, area in zip(a[real], b[real], shared[real], strict=True):
        qa.add(
            "parcels",
            [ids[j]],
            "overlap",
            f"overlaps parcel {ids[i]} by {area:.2f} m²",
            "kept; the shared area is counted in both parcels",
        )


def load_inputs(cfg: SurveyConfig, progress: Progress = _noop) -> Inputs:
    """Read and check every input of a job; return the clean layers and the QA log.

    Raises
    ------
    InputError
        On what cannot be repaired (file, layer, field, CRS, no features).
    """
    qa = QALog()
    counts: dict[str, int] = {}
    spec = cfg.inputs.parcels
    progress(f"reading parcels: {describe(spec)}")
    parcels = _read(spec, "parcels", None, cfg, qa)
    counts["parcels_read"] = len(parcels)
    crs = _working_crs(cfg, parcels, describe(spec))
    if not parcels.crs.equals(crs):
        parcels = parcels.to_crs(crs)

    # cultivated parcels only; the rest are outside the survey by definition
    landuse = parcels["landuse"].astype(object).where(parcels["landuse"].notna(), None)
    cultivated = landuse.isin(cfg.cultivated_codes).to_numpy()
    counts["parcels_not_cultivated"] = int((~cultivated).sum())
    parcels = parcels[cultivated].reset_index(drop=True)
    if len(parcels) == 0:
        raise InputError(
            f"{describe(spec)}: no cultivated parcels (field {spec.fields['landuse']} in "
            f"{', '.join(cfg.cultivated_codes)})"
        )
    parcels = _parcel_ids(parcels, qa)
    parcels = _clean(parcels, "parcels", parcels["id"].to_numpy(), qa)
    if len(parcels) == 0:
        raise InputError(f"{describe(spec)}: no cultivated parcel has a usable polygon geometry")
    _log_overlapping_parcels(parcels, qa)

    counties = None
    if cfg.inputs.counties is not None:
        progress(f"reading counties: {describe(cfg.inputs.counties)}")
        counties = _read(cfg.inputs.counties, "counties", crs, cfg, qa)
        counties = _clean(counties, "counties", counties["code"].astype(str).to_numpy(), qa)
        counties["code"] = counties["code"].astype(str).str.strip()
    parcels["XZQDM"] = _county_codes(parcels, counties, qa).to_numpy()

    region = None
    if cfg.inputs.region is not None:
        progress(f"reading region: {describe(cfg.inputs.region)}")
        reg = _read(cfg.inputs.region, "region", crs, cfg, qa)
        reg = _clean(reg, "region", reg[FID].to_numpy(), qa)
        if len(reg) == 0:
            raise InputError(f"{describe(cfg.inputs.region)}: no usable region polygon")
        region = reg.geometry.to_numpy()
        tree = shapely.STRtree(region)
        hit = np.zeros(len(parcels), dtype=bool)
        hit[np.unique(tree.query(parcels.geometry.to_numpy(), predicate="intersects")[0])] = True
        qa.add(
            "parcels",
            parcels["id"].to_numpy()[~hit],
            "region",
            "parcel outside the black-soil region",
            "not surveyed",
        )
        counts["parcels_outside_region"] = int((~hit).sum())
        parcels = parcels[hit].reset_index(drop=True)
        if len(parcels) == 0:
            raise InputError(
                f"{describe(cfg.inputs.region)}: no cultivated parcel lies in the region"
            )

    progress(f"reading soil map: {describe(cfg.inputs.soil)}")
    xmin, ymin, xmax, ymax = parcels.total_bounds
    soil = _read(cfg.inputs.soil, "soil", crs, cfg, qa)
    counts["soil_read"] = len(soil)
    soil_ids = soil["id"].astype(str).to_numpy() if "id" in soil else soil[FID].to_numpy()
    soil = _clean(soil, "soil", soil_ids, qa)
    if len(soil) == 0:
        raise InputError(f"{describe(cfg.inputs.soil)}: no usable soil polygon")
    counts["parcels_surveyed"] = len(parcels)
    counts["soil_used"] = len(soil)
    inside = shapely.intersects(soil.geometry.to_numpy(), shapely.box(xmin, ymin, xmax, ymax))
    if not inside.any():
        qa.add(
            "soil",
            ["*"],
            "coverage",
            "the soil map does not cover the parcels at all",
            "all parcel area counted as unmapped",
        )
    protection = _protection_inputs(cfg, crs, counties, qa, counts, progress)
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


def _protection_inputs(
    cfg: SurveyConfig,
    crs: CRS,
    counties: gpd.GeoDataFrame | None,
    qa: QALog,
    counts: dict[str, int],
    progress: Progress,
) -> ProtectionInputs:
    """Read and clean the optional zone, construction and change layers."""
    layers: dict[str, gpd.GeoDataFrame] = {}
    for name in PROTECTION_INPUTS:
        spec = getattr(cfg.inputs, name)
        if spec is None:
            continue
        progress(f"reading {name}: {describe(spec)}")
        frame = _read(spec, name, crs, cfg, qa)
        counts[f"{name}_read"] = len(frame)
        ids = frame["id"].astype(str).to_numpy() if "id" in frame else frame[FID].to_numpy()
        frame = _clean(frame, name, ids, qa)
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
) -> SurveyOutcome:
    """Run a survey job and write its archive.

    Parameters
    ----------
    cfg : SurveyConfig
        The job (see :func:`pipeline.load_config`).
    overwrite : bool
        Replace an existing archive at ``cfg.output.path``.
    progress : callable, optional
        Called with a short message as each stage starts.

    Returns
    -------
    SurveyOutcome

    Raises
    ------
    UsageError
        The archive exists and ``overwrite`` is false (checked before any work).
    InputError, OutputError, InvariantError
        Bad input; the archive cannot be written; the area accounting does not add up.

    Examples
    --------
    >>> from pipeline import load_config, run_survey
    >>> outcome = run_survey(load_config("configs/demo.yaml"), overwrite=True)  # doctest: +SKIP
    """
    timings: dict[str, float] = {}
    arc.check_output(cfg.output.path, overwrite)
    t0 = time.perf_counter()
    inputs = load_inputs(cfg, progress)
    timings["read_check"] = time.perf_counter() - t0
    qa = inputs.qa

    progress(
        f"overlay: {len(inputs.parcels)} cultivated parcels × {len(inputs.soil)} soil polygons"
    )
    t1 = time.perf_counter()
    threads = cfg.overlay.threads or default_threads()
    xmin, ymin, xmax, ymax = inputs.parcels.total_bounds
    if inputs.protection.changes is not None and len(inputs.protection.changes):
        # the soil cover must tile the change parcels too (which of them were black soil)
        cx0, cy0, cx1, cy1 = inputs.protection.changes.total_bounds
        xmin, ymin, xmax, ymax = min(xmin, cx0), min(ymin, cy0), max(xmax, cx1), max(ymax, cy1)
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

    t2 = time.perf_counter()
    balance = archive_balance(result.balance, inputs.parcels)
    conservation = _conservation(balance)
    summary = county_summary(pieces, balance, names)
    reconciliation = _reconcile(balance, inputs.parcels)
    counts = {
        **inputs.counts,
        "pieces_black": len(pieces),
        "pieces_total": len(result.pieces),
        **protection.counts,
        "qa_rows": len(qa),
    }
    timings["summaries"] += time.perf_counter() - t2
    meta = _metadata(cfg, inputs, counts, timings, conservation, reconciliation, protection.status)
    layers = {
        arc.PIECES: pieces,
        arc.BALANCE: balance,
        arc.COUNTY_SUMMARY: summary,
        **protection.layers,
        arc.QA_LOG: qa.frame(),
        arc.METADATA: meta,
    }
    layers[arc.DICTIONARY] = arc.field_dictionary(layers=layers)
    progress(f"writing {cfg.output.path}")
    t3 = time.perf_counter()
    arc.write_archive(cfg.output.path, layers, overwrite=overwrite)
    timings["write"] = time.perf_counter() - t3
    if not conservation["passed"]:
        raise InvariantError(
            f"{cfg.output.path}: conservation check failed for {conservation['unbalanced']} "
            f"parcel(s) (max relative error {conservation['max_rel_error']:.3g}); "
            f"see layer {arc.BALANCE}"
        )
    if not reconciliation["passed"]:
        raise InvariantError(
            f"{cfg.output.path}: county totals do not reconcile with the input TBMJ"
        )
    return SurveyOutcome(cfg.output.path, counts, summary, conservation, qa.summary(), timings)


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


def _text(frame: pd.DataFrame, col: str, rows: np.ndarray) -> np.ndarray:
    if col not in frame:
        return np.full(len(rows), None, dtype=object)
    return as_text(frame[col])[rows]


def _lookup(keys: object, table: dict[str, str], missing: object) -> np.ndarray:
    """``table[key]`` for each key (vectorised), ``missing`` where a key is not in the table."""
    values = pd.Series(keys, dtype=object).map(table).astype(object)
    return values.where(values.notna(), missing).to_numpy(dtype=object)


def archive_pieces(
    pieces: gpd.GeoDataFrame, parcels: gpd.GeoDataFrame, names: dict[str, str], year: int
) -> gpd.GeoDataFrame:
    """The HTGDTB layer: black-soil pieces with parcel and soil attributes and archive numbers.

    Archive numbers (DABH) follow the order (county, BSM, soil polygon id), numbered per county,
    so they do not depend on how the job was partitioned.
    """
    black = pieces[pieces["cls"].to_numpy() == BLACK]
    rows = black["parcel"].to_numpy()
    county = parcels["XZQDM"].to_numpy(dtype=object)[rows]
    landuse = _text(parcels, "landuse", rows)
    landuse_name = _text(parcels, "landuse_name", rows)
    known = np.array([LANDUSE_NAMES.get(c) for c in landuse], dtype=object)
    landuse_name = np.where(pd.isna(landuse_name), known, landuse_name)
    out = gpd.GeoDataFrame(
        {
            "DABH": "",
            "BSM": parcels["id"].to_numpy(dtype=object)[rows],
            "TBBH": _text(parcels, "number", rows),
            "XZQDM": county,
            "XZQMC": _lookup(county, names, ""),
            "ZLDWDM": _text(parcels, "county", rows),
            "DLBM": landuse,
            "DLMC": landuse_name,
            "TL": black["group"].to_numpy(dtype=object),
            "TLDM": _lookup(black["group"], BLACK_SOIL_GROUPS, None),
            "TRLX": black["soil_type"].astype(object).to_numpy(),
            "YL": black["subtype"].astype(object).to_numpy(),
            "TRBM": black["soil_id"].astype(str).to_numpy(),
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
    order = np.lexsort((out["TRBM"].to_numpy(), out["BSM"].to_numpy(), out["XZQDM"].to_numpy()))
    out = out.iloc[order].reset_index(drop=True)
    seq = out.groupby("XZQDM", sort=False).cumcount() + 1
    out["DABH"] = "HT" + out["XZQDM"].astype(str) + str(year) + seq.astype(str).str.zfill(7)
    return out


def archive_balance(balance: pd.DataFrame, parcels: gpd.GeoDataFrame) -> pd.DataFrame:
    """The per-parcel balance table, sorted by (county, BSM)."""
    rows = balance["parcel"].to_numpy()
    out = pd.DataFrame(
        {
            "BSM": parcels["id"].to_numpy(dtype=object)[rows],
            "XZQDM": parcels["XZQDM"].to_numpy(dtype=object)[rows],
            "DLBM": _text(parcels, "landuse", rows),
        }
    )
    for col in balance.columns.drop("parcel"):
        out[col] = balance[col].to_numpy()
    out["BALANCED"] = out["BALANCED"].astype(np.int32)
    out["SLIVERS"] = out["SLIVERS"].astype(np.int32)
    order = np.lexsort((out["BSM"].to_numpy(), out["XZQDM"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def county_summary(
    pieces: gpd.GeoDataFrame, balance: pd.DataFrame, names: dict[str, str]
) -> pd.DataFrame:
    """Black-soil farmland per county and soil group, with county totals (TL = 合计) and a
    grand total (XZQDM = 合计), in m², 公顷 and 亩."""
    frame = pd.DataFrame(pieces.drop(columns="geometry"))
    zone_cols = [c for c in PROTECTION_SUMMARY if c in frame]
    if "JBNT_MJ" in frame:
        frame["DNRHX_MJ"] = frame["TBDLMJ"] - frame["JBNT_MJ"]
        zone_cols.insert(1, "DNRHX_MJ")
    # sum in integer cents so that the totals are exact
    for col in ("TBMJ", "TBDLMJ", *zone_cols):
        frame[col] = np.round(frame[col].to_numpy() * 100).astype(np.int64)
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
    total = frame.agg(**{k: v for k, v in agg.items()}).T if len(frame) else None
    parts = [by_group, by_county]
    if total is not None:
        grand = pd.DataFrame(
            [
                {
                    "XZQDM": "合计",
                    "TL": "合计",
                    "TBGS": len(frame),
                    "YTBGS": frame["BSM"].nunique(),
                    "MJ": frame["MJ"].sum(),
                    "TBMJ": frame["TBMJ"].sum(),
                    "TBDLMJ": frame["TBDLMJ"].sum(),
                    **{c: frame[c].sum() for c in zone_cols},
                }
            ]
        )
        parts.append(grand)
    out = pd.concat(parts, ignore_index=True)
    # counties with cultivated land but no black soil still get a 合计 row
    bal = balance.assign(
        TBMJ_c=np.round(balance["TBMJ"].to_numpy() * 100).astype(np.int64),
        TBDLMJ_c=np.round(balance["TBDLMJ"].to_numpy() * 100).astype(np.int64),
    )
    cult = bal.groupby("XZQDM").agg(GDTBMJ=("TBMJ_c", "sum"), GDTBDLMJ=("TBDLMJ_c", "sum"))
    cult.loc["合计"] = cult.sum()
    missing = sorted(set(cult.index) - set(out["XZQDM"]))
    if missing:
        out = pd.concat(
            [
                out,
                pd.DataFrame(
                    {
                        "XZQDM": missing,
                        "TL": "合计",
                        "TBGS": 0,
                        "YTBGS": 0,
                        "MJ": 0.0,
                        "TBMJ": 0,
                        "TBDLMJ": 0,
                        **{c: 0 for c in zone_cols},
                    }
                ),
            ],
            ignore_index=True,
        )
    out["XZQMC"] = [names.get(c, "全部" if c == "合计" else "") for c in out["XZQDM"]]
    is_total = (out["TL"] == "合计").to_numpy()
    out["GDTBMJ"] = np.where(is_total, out["XZQDM"].map(cult["GDTBMJ"]).fillna(0), 0).astype(
        np.int64
    )
    out["GDTBDLMJ"] = np.where(is_total, out["XZQDM"].map(cult["GDTBDLMJ"]).fillna(0), 0).astype(
        np.int64
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(is_total & (out["GDTBDLMJ"] > 0), out["TBDLMJ"] / out["GDTBDLMJ"], np.nan)
    for col in ("TBMJ", "TBDLMJ", "GDTBMJ", "GDTBDLMJ", *zone_cols):
        out[col] = out[col].to_numpy() / 100
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


def _conservation(balance: pd.DataFrame) -> dict[str, object]:
    rel = balance["REL_ERR"].to_numpy()
    unbalanced = int((balance["BALANCED"] == 0).sum())
    return {
        "parcels": len(balance),
        "unbalanced": unbalanced,
        "max_rel_error": float(np.nanmax(rel)) if len(rel) else 0.0,
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
    inputs: Inputs,
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
        "crs": inputs.crs.to_string(),
        "inputs": {
            name: {
                "path": str(spec.path),
                "layer": spec.layer,
                "where": spec.where,
                "fields": spec.fields,
                "fingerprint": layer_fingerprint(spec.path),
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
