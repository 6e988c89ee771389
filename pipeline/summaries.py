"""Summary tables read from an archive: totals, quality, protection, conflicts, QA, targets.

Every helper takes an archive (a path, or the ``{layer: frame}`` mapping that
:func:`pipeline.open_archive` returns) and gives back plain DataFrames whose columns are the
archive's field codes, with Chinese titles available through :func:`field_title`. Layers and
fields that a given archive lacks (older archives, jobs without protection inputs) are simply
left out, so the same helpers serve every archive; the report, the workbook and the notebook are
built on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import archive as arc
from .codes import M2_PER_HECTARE, M2_PER_MU
from .errors import InputError

Archive = Mapping[str, pd.DataFrame]

#: the grand-total label used in the archive's summary table
TOTAL = "合计"

#: layers added by the protection and quality stages (discovered, never required)
UNPROTECTED = "HTGD_DNRHX"  # 黑土耕地未纳入永久基本农田
PLAN_CONFLICT = "HTGD_GHCT"  # 与城镇开发边界、生态保护红线冲突
CONSTRUCTION = "HTGD_JSZY"  # 建设占用
CONSTRUCTION_PROJECTS = "HTGD_JSZYHZ"  # 建设项目占用汇总
ILLEGAL = "HTGD_WFZY"  # 疑似违法占用
OFFSET_BALANCE = "HTGD_ZBPH"  # 占补平衡
QUALITY = "HTGD_ZLHZ"  # 质量汇总

#: layer → (Chinese title, English title) for layers this module knows; others use their name
LAYER_NAMES: dict[str, tuple[str, str]] = {
    arc.PIECES: ("黑土耕地图斑", "Black-soil farmland pieces"),
    arc.BALANCE: ("图斑面积平衡表", "Per-parcel area balance"),
    arc.COUNTY_SUMMARY: ("县级行政区汇总表", "County summary"),
    arc.QA_LOG: ("质检记录", "QA log"),
    arc.METADATA: ("运行信息", "Run metadata"),
    arc.DICTIONARY: ("字段字典", "Field dictionary"),
    UNPROTECTED: ("未划入永久基本农田的黑土耕地", "Black-soil farmland outside basic farmland"),
    PLAN_CONFLICT: ("与三区三线冲突的黑土耕地", "Inside urban boundary or ecological red line"),
    CONSTRUCTION: ("建设项目占用黑土耕地", "Construction occupation"),
    CONSTRUCTION_PROJECTS: ("建设项目占用黑土耕地汇总", "Occupation by construction project"),
    ILLEGAL: ("疑似违法占用黑土耕地", "Suspected illegal occupation"),
    OFFSET_BALANCE: ("占补平衡", "Occupation-compensation balance"),
    QUALITY: ("黑土耕地质量汇总", "Quality summary"),
}

#: the conflict layers, in report order
CONFLICT_LAYERS: tuple[str, ...] = (
    PLAN_CONFLICT,
    CONSTRUCTION,
    CONSTRUCTION_PROJECTS,
    ILLEGAL,
    UNPROTECTED,
)
#: area field of a conflict layer: the first of these that the layer has
CONFLICT_AREA_FIELDS: tuple[str, ...] = ("TBDLMJ", "ZYTBDLMJ", "HTMJ", "TBMJ", "MJ")
#: protection-status area fields of HTGDTB (added by the protection stage)
PROTECTION_FIELDS: tuple[str, ...] = ("JBNT_MJ", "CZKF_MJ", "STHX_MJ", "JSZY_MJ")
#: quality fields of HTGDTB: area-weighted means per county
QUALITY_FIELDS: tuple[str, ...] = ("HTHD_PJ", "YJZ_PJ", "PD_PJ")
#: slope grade field of HTGDTB (quality stage)
SLOPE_GRADE_FIELD = "PDJB"

#: Titles of the columns these helpers derive (the archive's dictionary has the rest).
DERIVED_TITLES: dict[str, tuple[str, str]] = {
    "TBDLMJ_GQ": ("黑土耕地面积", "公顷"),
    "TBDLMJ_MU": ("黑土耕地面积", "亩"),
    "TBDLMJ": ("黑土耕地面积", "m²"),
    "TBGS": ("黑土耕地图斑个数", ""),
    "YTBGS": ("涉及耕地图斑个数", ""),
    "GDTBDLMJ": ("耕地面积", "m²"),
    "GDTBDLMJ_GQ": ("耕地面积", "公顷"),
    "HTZB": ("黑土耕地占耕地比例", "%"),
    "ZB": ("占黑土耕地比例", "%"),
    "XZQDM": ("行政区代码", ""),
    "XZQMC": ("行政区名称", ""),
    "TL": ("土类", ""),
    "GS": ("个数", ""),
    "MJ_GQ": ("面积", "公顷"),
    "MJ_MU": ("面积", "亩"),
    "MBMJ": ("保护目标面积", "m²"),
    "MBMJ_GQ": ("保护目标面积", "公顷"),
    "JQMJ_GQ": ("基期黑土耕地面积", "公顷"),
    "BNMJ_GQ": ("本年黑土耕地面积", "公顷"),
    "BHMJ_GQ": ("较基期变化", "公顷"),
    "CEMJ_GQ": ("与目标差额", "公顷"),
    "SFDB": ("是否达标", ""),
    "layer": ("图层", ""),
    "check": ("检查项", ""),
    "action": ("处理", ""),
    "count": ("条数", ""),
    "PDJB": ("坡度级别", ""),
}

#: unit codes of the field dictionary → how a header shows them
UNIT_LABELS: dict[str, str] = {"ha": "公顷", "mu": "亩", "m2": "m²"}

#: responsibility outcome labels
MET, NOT_MET, NO_TARGET = "达标", "未达标", "无目标"


def load(archive: str | Path | Archive) -> dict[str, pd.DataFrame]:
    """The archive's layers: opened from a path, or the mapping given (not copied)."""
    if isinstance(archive, str | Path):
        return arc.open_archive(archive)
    if arc.PIECES not in archive:
        raise InputError(f"not a blacksoil archive (no layer {arc.PIECES})")
    return dict(archive)


def dictionary(archive: Archive) -> pd.DataFrame:
    """The field dictionary (layer, field, name_zh, unit): the archive's, else the built-in one."""
    if arc.DICTIONARY in archive and len(archive[arc.DICTIONARY]):
        frame = archive[arc.DICTIONARY]
        return frame[["layer", "field", "name_zh", "unit"]].fillna("")
    return arc.field_dictionary()[["layer", "field", "name_zh", "unit"]]


def field_title(archive: Archive, layer: str, field: str, unit: str | None = None) -> str:
    """The Chinese column header of ``layer.field`` with its unit, e.g. ``图斑地类面积（m²）``.

    The title comes from the archive's field dictionary (``HTGD_ZDZD``; any layer naming the
    field when ``layer`` lacks it), else from :data:`DERIVED_TITLES`, else the field code.
    ``unit`` replaces the dictionary's unit (for a column converted to 公顷 or 亩).
    """
    table = dictionary(archive)
    rows = table[(table["layer"] == layer) & (table["field"] == field)]
    if rows.empty:
        rows = table[table["field"] == field]
    if not rows.empty:
        name, own_unit = str(rows.iloc[0]["name_zh"]), str(rows.iloc[0]["unit"])
    elif field in DERIVED_TITLES:
        name, own_unit = DERIVED_TITLES[field]
    else:
        return field if unit is None else f"{field}（{unit}）"
    shown = UNIT_LABELS.get(own_unit, own_unit) if unit is None else unit
    if not shown or name.endswith("）"):
        return name
    return f"{name}（{shown}）"


def layer_title(name: str) -> str:
    """The Chinese title of an archive layer (its name where unknown)."""
    if name in LAYER_NAMES:
        return LAYER_NAMES[name][0]
    return arc.LAYER_TITLES.get(name, name)


def metadata(archive: Archive) -> dict[str, object]:
    """The run metadata (``HTGD_YXXX``) as a dict, values decoded from JSON."""
    frame = archive.get(arc.METADATA)
    if frame is None or frame.empty:
        return {}
    out: dict[str, object] = {}
    for key, value in zip(frame["key"], frame["value"], strict=True):
        try:
            out[str(key)] = json.loads(value)
        except (TypeError, ValueError):
            out[str(key)] = value
    return out


def _summary(archive: Archive) -> pd.DataFrame:
    """The county × soil-group summary, from HTGD_XZQHZ or (older archives) from the pieces."""
    if arc.COUNTY_SUMMARY in archive:
        frame = pd.DataFrame(archive[arc.COUNTY_SUMMARY]).copy()
    else:
        pieces = archive[arc.PIECES]
        cents = np.round(pieces["TBDLMJ"].to_numpy(float) * 100).astype(np.int64)
        p = pd.DataFrame(
            {"XZQDM": pieces["XZQDM"], "XZQMC": pieces.get("XZQMC", ""), "TL": pieces["TL"]}
        ).assign(c=cents, BSM=pieces["BSM"].to_numpy())
        g = p.groupby(["XZQDM", "TL"]).agg(
            TBGS=("c", "size"), YTBGS=("BSM", "nunique"), c=("c", "sum")
        )
        c = p.groupby("XZQDM").agg(TBGS=("c", "size"), YTBGS=("BSM", "nunique"), c=("c", "sum"))
        total = pd.DataFrame(
            {"TBGS": [len(p)], "YTBGS": [p["BSM"].nunique()], "c": [int(cents.sum())]},
            index=pd.MultiIndex.from_tuples([(TOTAL, TOTAL)], names=["XZQDM", "TL"]),
        )
        c.index = pd.MultiIndex.from_arrays([c.index, [TOTAL] * len(c)], names=["XZQDM", "TL"])
        frame = pd.concat([g, c, total]).reset_index()
        frame["TBDLMJ"] = frame.pop("c") / 100
        names = p.drop_duplicates("XZQDM").set_index("XZQDM")["XZQMC"]
        frame["XZQMC"] = frame["XZQDM"].map(names).fillna("全部")
    frame["XZQDM"] = frame["XZQDM"].astype(str)
    frame["XZQMC"] = frame["XZQMC"].astype(object).where(frame["XZQMC"].notna(), "")
    return frame


def _cents(values: pd.Series | np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float) * 100).astype(np.int64)


def _with_units(frame: pd.DataFrame, field: str = "TBDLMJ") -> pd.DataFrame:
    frame[f"{field}_GQ"] = frame[field] / M2_PER_HECTARE
    frame[f"{field}_MU"] = frame[field] / M2_PER_MU
    return frame


def county_totals(archive: str | Path | Archive) -> pd.DataFrame:
    """Black-soil farmland per county, with a 合计 row last.

    Columns: XZQDM, XZQMC, TBGS (pieces), YTBGS (parcels), TBDLMJ (m²), TBDLMJ_GQ (公顷),
    TBDLMJ_MU (亩), GDTBDLMJ (cultivated land surveyed, m², where the archive has it) and HTZB
    (black-soil share of the cultivated land).

    Examples
    --------
    >>> county_totals("out/demo_archive.gpkg")[["XZQMC", "TBDLMJ_GQ"]]  # doctest: +SKIP
    """
    layers = load(archive)
    s = _summary(layers)
    rows = s[s["TL"] == TOTAL].copy()
    rows["_grand"] = rows["XZQDM"] == TOTAL
    rows = rows.sort_values(["_grand", "XZQDM"], kind="stable").drop(columns="_grand")
    cols = ["XZQDM", "XZQMC", "TBGS", "YTBGS", "TBDLMJ"]
    out = rows[cols].reset_index(drop=True)
    out = _with_units(out)
    if "GDTBDLMJ" in rows:
        out["GDTBDLMJ"] = rows["GDTBDLMJ"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["HTZB"] = np.where(out["GDTBDLMJ"] > 0, out["TBDLMJ"] / out["GDTBDLMJ"], np.nan)
    if not (out["XZQDM"] == TOTAL).any():
        out = _append_total(out, label_cols=("XZQDM", "XZQMC"))
    return out


def soil_group_totals(archive: str | Path | Archive) -> pd.DataFrame:
    """Black-soil farmland per soil group (土类), largest first, with a 合计 row last.

    Columns: TL, TBGS, TBDLMJ (m²), TBDLMJ_GQ (公顷), TBDLMJ_MU (亩), ZB (share of all
    black-soil farmland).
    """
    layers = load(archive)
    s = _summary(layers)
    rows = s[(s["TL"] != TOTAL) & (s["XZQDM"] != TOTAL)]
    g = (
        rows.assign(c=_cents(rows["TBDLMJ"]))
        .groupby("TL", sort=True)
        .agg(TBGS=("TBGS", "sum"), c=("c", "sum"))
        .reset_index()
        .sort_values(["c", "TL"], ascending=[False, True], kind="stable")
    )
    total = int(g["c"].sum())
    out = pd.DataFrame(
        {"TL": g["TL"].astype(str), "TBGS": g["TBGS"].astype(np.int64), "TBDLMJ": g["c"] / 100}
    ).reset_index(drop=True)
    out = _append_total(_with_units(out), label_cols=("TL",))
    out["ZB"] = out["TBDLMJ"] / (total / 100) if total else np.nan
    return out


def county_by_soil_group(archive: str | Path | Archive, unit: str = "公顷") -> pd.DataFrame:
    """Black-soil farmland per county (rows) and soil group (columns), with 合计 row and column.

    Parameters
    ----------
    archive : path or mapping
    unit : {"公顷", "亩", "m²"}
        The unit of the figures.

    Returns
    -------
    DataFrame
        Columns XZQDM, XZQMC, one per soil group (largest group first), 合计.
    """
    factor = {"公顷": M2_PER_HECTARE, "亩": M2_PER_MU, "m²": 1.0}
    if unit not in factor:
        raise ValueError(f"unit: expected one of {', '.join(factor)}, got {unit!r}")
    layers = load(archive)
    s = _summary(layers)
    rows = s[(s["TL"] != TOTAL) & (s["XZQDM"] != TOTAL)].assign(c=lambda f: _cents(f["TBDLMJ"]))
    groups = soil_group_totals(layers)["TL"].tolist()[:-1]
    counties = county_totals(layers)
    table = rows.pivot_table(index="XZQDM", columns="TL", values="c", aggfunc="sum", fill_value=0)
    table = table.reindex(index=counties["XZQDM"].iloc[:-1], columns=groups, fill_value=0)
    table[TOTAL] = table.sum(axis=1)
    table.loc[TOTAL] = table.sum(axis=0)
    out = (table / 100 / factor[unit]).reset_index()
    out.columns.name = None
    out.insert(1, "XZQMC", counties["XZQMC"].to_numpy())
    return out


def _append_total(frame: pd.DataFrame, label_cols: tuple[str, ...]) -> pd.DataFrame:
    """Append a 合计 row: numeric columns summed (areas to the cent), labels set to 合计."""
    total: dict[str, object] = {}
    for col in frame.columns:
        if col in label_cols:
            total[col] = TOTAL if col == label_cols[0] else ""
        elif pd.api.types.is_integer_dtype(frame[col]):
            total[col] = int(frame[col].sum())
        elif pd.api.types.is_float_dtype(frame[col]):
            total[col] = float(frame[col].sum())
        else:
            total[col] = ""
    out = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    for col in frame.columns:
        if pd.api.types.is_integer_dtype(frame[col]):
            out[col] = out[col].astype(np.int64)
    return out


def protection_summary(archive: str | Path | Archive) -> dict[str, pd.DataFrame]:
    """Protection tables, as far as the archive has them.

    Returns
    -------
    dict
        ``"status"``: per county the sums of HTGDTB's protection-status areas (JBNT_MJ, CZKF_MJ,
        STHX_MJ, JSZY_MJ, those present) with the black-soil TBDLMJ; ``"HTGD_DNRHX"``,
        ``"HTGD_GHCT"``, ``"HTGD_JSZY"``, ``"HTGD_WFZY"``: per county (and zone type FQLX / type
        LX / approval status PZZT where present) count and area; ``"HTGD_ZBPH"``: the
        occupation-compensation balance as stored. Empty where none exist.
    """
    layers = load(archive)
    out: dict[str, pd.DataFrame] = {}
    pieces = layers[arc.PIECES]
    present = [f for f in PROTECTION_FIELDS if f in pieces]
    if present:
        frame = pd.DataFrame({"XZQDM": pieces["XZQDM"].astype(str)})
        frame["TBDLMJ"] = _cents(pieces["TBDLMJ"])
        for f in present:
            frame[f] = _cents(pieces[f].fillna(0))
        g = frame.groupby("XZQDM", sort=True).sum() / 100
        g = g.reset_index()
        g.insert(1, "XZQMC", g["XZQDM"].map(county_names(layers)).fillna(""))
        out["status"] = _append_total(g, ("XZQDM", "XZQMC"))
    for name in CONFLICT_LAYERS:
        if name in layers:
            out[name] = conflict_by_county(layers, name)
    if OFFSET_BALANCE in layers:
        zb = pd.DataFrame(layers[OFFSET_BALANCE]).drop(columns="geometry", errors="ignore")
        if "XZQDM" in zb and not (zb["XZQDM"].astype(str) == TOTAL).any():
            zb = _append_total(zb.reset_index(drop=True), ("XZQDM", "XZQMC"))
        out[OFFSET_BALANCE] = zb
    return out


def county_names(archive: str | Path | Archive) -> dict[str, str]:
    """County code → county name (XZQMC), as the archive's summary gives them."""
    s = _summary(load(archive))
    return dict(zip(s["XZQDM"], s["XZQMC"], strict=True))


def conflict_area_field(frame: pd.DataFrame) -> str | None:
    """The area field of a conflict layer (the first of :data:`CONFLICT_AREA_FIELDS` present)."""
    return next((f for f in CONFLICT_AREA_FIELDS if f in frame), None)


def conflict_by_county(archive: str | Path | Archive, layer: str) -> pd.DataFrame:
    """Count and area of one conflict layer per county (and per type column where it has one).

    Columns: XZQDM, XZQMC (where the layer has counties), the type column (FQLX, LX or PZZT,
    where present), GS (rows), the layer's area field in m² (see :func:`conflict_area_field`)
    and the same in 公顷 (``<field>_GQ``) and 亩 (``<field>_MU``); a 合计 row last.
    """
    layers = load(archive)
    frame = layers[layer]
    area = conflict_area_field(frame)
    keys = ["XZQDM"] if "XZQDM" in frame else []
    keys += [k for k in ("FQLX", "LX", "PZZT") if k in frame][:1]
    data = pd.DataFrame(
        {k: frame[k].astype(object).fillna("").astype(str).to_numpy() for k in keys},
        index=pd.RangeIndex(len(frame)),
    )
    data["c"] = _cents(frame[area].fillna(0).to_numpy()) if area else 0
    if keys:
        g = data.groupby(keys, sort=True).agg(GS=("c", "size"), c=("c", "sum")).reset_index()
    else:
        g = pd.DataFrame({"GS": [len(data)], "c": [int(data["c"].sum())]})
    cents = g.pop("c").to_numpy()
    if area:
        g[area] = cents / 100
        g = _with_units(g, area)
    if "XZQDM" in g:
        g.insert(1, "XZQMC", g["XZQDM"].map(county_names(layers)).fillna(""))
    labels = ("XZQDM", "XZQMC", *keys[1:]) if "XZQDM" in g else tuple(keys)
    return _append_total(g, labels) if labels else g


def conflict_lists(
    archive: str | Path | Archive, top: int | None = None
) -> dict[str, pd.DataFrame]:
    """The conflict layers present in the archive, each sorted largest area first.

    Parameters
    ----------
    archive : path or mapping
    top : int, optional
        Keep only this many rows of each list.

    Returns
    -------
    dict
        Layer name (``HTGD_GHCT``, ``HTGD_JSZY``, ``HTGD_WFZY``, ``HTGD_DNRHX``) → its rows,
        geometry kept, sorted by area (TBDLMJ, HTMJ, TBMJ or MJ, the first present) descending.
    """
    layers = load(archive)
    out: dict[str, pd.DataFrame] = {}
    for name in CONFLICT_LAYERS:
        if name not in layers:
            continue
        frame = layers[name]
        area = conflict_area_field(frame)
        if area is not None:
            frame = frame.sort_values(area, ascending=False, kind="stable")
        frame = frame.reset_index(drop=True)
        out[name] = frame.head(top) if top is not None else frame
    return out


def quality_summary(archive: str | Path | Archive) -> dict[str, pd.DataFrame]:
    """Quality tables, as far as the archive has them.

    Returns
    -------
    dict
        ``"means"``: per county the means of thickness (HTHD_PJ), organic matter (YJZ_PJ),
        slope (PD_PJ) and the like: the 合计 rows of HTGD_ZLHZ where the archive has it, else
        the TBDLMJ-weighted means of HTGDTB's fields; ``"slope_grades"``: black-soil
        farmland (公顷) per county and slope grade PDJB; ``"HTGD_ZLHZ"``: the stored quality
        summary. Empty where none exist.
    """
    layers = load(archive)
    pieces = layers[arc.PIECES]
    out: dict[str, pd.DataFrame] = {}
    present = [f for f in QUALITY_FIELDS if f in pieces]
    names = county_names(layers)
    stored = layers.get(QUALITY)
    if stored is not None and "TL" in stored and "XZQDM" in stored:
        # the quality stage's own county means (coverage-weighted): the figures of record
        rows = stored[stored["TL"].astype(str) == TOTAL]
        cols = [c for c in stored.columns if c.endswith("_PJ")]
        if cols:
            out["means"] = pd.DataFrame(rows[["XZQDM", "XZQMC", *cols]]).reset_index(drop=True)
    elif present:
        w = pieces["TBDLMJ"].to_numpy(float)
        frame = pd.DataFrame({"XZQDM": pieces["XZQDM"].astype(str).to_numpy()})
        for f in present:
            v = pd.to_numeric(pieces[f], errors="coerce").to_numpy(float)
            ok = np.isfinite(v)
            frame[f"{f}_wv"] = np.where(ok, v * w, 0.0)
            frame[f"{f}_w"] = np.where(ok, w, 0.0)

        def _means(g: pd.DataFrame) -> pd.DataFrame:
            res = pd.DataFrame(index=g.index)
            for f in present:
                with np.errstate(invalid="ignore", divide="ignore"):
                    res[f] = g[f"{f}_wv"] / g[f"{f}_w"].where(g[f"{f}_w"] > 0)
            return res

        sums = frame.groupby("XZQDM", sort=True).sum()
        sums.loc[TOTAL] = sums.sum()
        means = _means(sums).reset_index()
        means.insert(1, "XZQMC", means["XZQDM"].map(names).fillna("全部"))
        out["means"] = means
    if SLOPE_GRADE_FIELD in pieces:
        frame = pd.DataFrame(
            {
                "XZQDM": pieces["XZQDM"].astype(str).to_numpy(),
                "PDJB": pieces[SLOPE_GRADE_FIELD].astype(object).fillna("").astype(str).to_numpy(),
                "c": _cents(pieces["TBDLMJ"]),
            }
        )
        t = frame.pivot_table(
            index="XZQDM", columns="PDJB", values="c", aggfunc="sum", fill_value=0
        )
        t = t.reindex(columns=sorted(t.columns))
        t[TOTAL] = t.sum(axis=1)
        t.loc[TOTAL] = t.sum(axis=0)
        t = (t / 100 / M2_PER_HECTARE).reset_index()
        t.columns.name = None
        t.insert(1, "XZQMC", t["XZQDM"].map(names).fillna("全部"))
        out["slope_grades"] = t
    if QUALITY in layers:
        out[QUALITY] = pd.DataFrame(layers[QUALITY]).drop(columns="geometry", errors="ignore")
    return out


def qa_summary(archive: str | Path | Archive) -> pd.DataFrame:
    """The QA log counted by (layer, check, action), largest first, with a 合计 row last."""
    layers = load(archive)
    log = layers.get(arc.QA_LOG)
    if log is None or log.empty:
        return pd.DataFrame({"layer": [TOTAL], "check": [""], "action": [""], "count": [0]})
    g = (
        log.groupby(["layer", "check", "action"], sort=True, dropna=False)
        .size()
        .rename("count")
        .reset_index()
        .sort_values(["count", "layer", "check"], ascending=[False, True, True], kind="stable")
        .reset_index(drop=True)
    )
    return _append_total(g, ("layer", "check", "action"))


def select_county(archive: str | Path | Archive, code: str) -> dict[str, pd.DataFrame]:
    """The archive's layers restricted to one county (rows whose XZQDM is ``code``).

    Layers without an XZQDM field (QA log, metadata, dictionary) are kept whole. The county
    summary keeps the county's rows only (no grand total).

    Raises
    ------
    InputError
        No black-soil piece of the archive lies in that county.

    Examples
    --------
    >>> one = select_county("out/demo_archive.gpkg", "220122")  # doctest: +SKIP
    >>> one["HTGDTB"]["TBDLMJ"].sum()  # doctest: +SKIP
    """
    layers = load(archive)
    code = str(code)
    pieces = layers[arc.PIECES]
    if not (pieces["XZQDM"].astype(str) == code).any():
        known = ", ".join(sorted(pieces["XZQDM"].astype(str).unique()))
        raise InputError(
            f"county {code}: no black-soil farmland in the archive (counties: {known})"
        )
    out: dict[str, pd.DataFrame] = {}
    for name, frame in layers.items():
        if "XZQDM" in frame:
            out[name] = frame[frame["XZQDM"].astype(str) == code].reset_index(drop=True)
        else:
            out[name] = frame
    return out


def read_targets(path: str | Path) -> pd.Series:
    """Read a protection-target table (CSV): county code → target area in m².

    The file has a column ``XZQDM`` and one target column: ``MBMJ_GQ`` (公顷), ``MBMJ_MU`` (亩)
    or ``MBMJ`` (m²). Other columns (a county name) are ignored.

    Raises
    ------
    InputError
        The file is missing or unreadable, lacks the columns, repeats a county or holds a
        target that is not a non-negative number.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: target table not found")
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the target table ({err})") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    if "XZQDM" not in frame:
        raise InputError(f"{path}: the target table needs a column XZQDM (county code)")
    units = {"MBMJ_GQ": M2_PER_HECTARE, "MBMJ_MU": M2_PER_MU, "MBMJ": 1.0}
    found = [c for c in units if c in frame]
    if len(found) != 1:
        raise InputError(
            f"{path}: the target table needs exactly one target column: MBMJ_GQ (公顷), "
            f"MBMJ_MU (亩) or MBMJ (m²); found {', '.join(found) or 'none'}"
        )
    col = found[0]
    codes = frame["XZQDM"].str.strip()
    bad_code = ~codes.str.fullmatch(r"\d{6}")
    if bad_code.any():
        row = int(np.flatnonzero(bad_code)[0]) + 2
        raise InputError(
            f"{path}: line {row}: XZQDM {codes[bad_code].iloc[0]!r} is not a county code"
        )
    dup = codes.duplicated()
    if dup.any():
        raise InputError(f"{path}: county {codes[dup].iloc[0]} appears more than once")
    values = pd.to_numeric(frame[col].str.replace(",", "").str.strip(), errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 2
        raise InputError(
            f"{path}: line {row}: {col} {frame[col][bad].iloc[0]!r} is not a non-negative number"
        )
    return pd.Series(values.to_numpy(float) * units[col], index=codes.to_numpy(), name="MBMJ")


def responsibility_assessment(
    archive: str | Path | Archive,
    *,
    targets: pd.Series | str | Path | None = None,
    base: str | Path | Archive | None = None,
) -> pd.DataFrame:
    """保护责任考核: per county the target, this year's black-soil farmland and whether it is met.

    Parameters
    ----------
    archive : path or mapping
        This year's archive.
    targets : Series or path, optional
        County code → target area in m² (:func:`read_targets` reads a CSV).
    base : path or mapping, optional
        A base-year archive: its black-soil farmland per county is the target where ``targets``
        does not give one (no net loss), and the change is measured from it.

    Returns
    -------
    DataFrame
        XZQDM, XZQMC, MBMJ_GQ (target), JQMJ_GQ (base year, with ``base``), BNMJ_GQ (this year),
        BHMJ_GQ (change from the base year, with ``base``), CEMJ_GQ (this year − target), SFDB
        (达标 / 未达标 / 无目标), all areas in 公顷; a 合计 row last (met where every county with
        a target is).

    Raises
    ------
    UsageError
        Neither targets nor a base archive is given.
    """
    from .errors import UsageError

    if targets is None and base is None:
        raise UsageError("responsibility assessment needs a target table or a base-year archive")
    layers = load(archive)
    now = county_totals(layers)
    now = now[now["XZQDM"] != TOTAL]
    names = dict(zip(now["XZQDM"], now["XZQMC"], strict=True))
    this = pd.Series(_cents(now["TBDLMJ"]), index=now["XZQDM"].to_numpy())
    base_c = None
    if base is not None:
        old = county_totals(load(base))
        old = old[old["XZQDM"] != TOTAL]
        base_c = pd.Series(_cents(old["TBDLMJ"]), index=old["XZQDM"].to_numpy())
        for code, name in zip(old["XZQDM"], old["XZQMC"], strict=True):
            names.setdefault(code, name)
    if isinstance(targets, str | Path):
        targets = read_targets(targets)
    target_c = (
        pd.Series(_cents(targets.to_numpy()), index=targets.index.astype(str))
        if targets is not None
        else pd.Series(dtype=np.int64)
    )
    if base_c is not None:
        target_c = pd.concat([target_c, base_c[~base_c.index.isin(target_c.index)]])
    codes = sorted(
        set(this.index) | set(target_c.index) | set(base_c.index if base_c is not None else [])
    )
    this = this.reindex(codes, fill_value=0)
    tgt = target_c.reindex(codes)
    has = tgt.notna().to_numpy()
    tgt_v = tgt.fillna(0).to_numpy(np.int64)
    out = pd.DataFrame({"XZQDM": codes, "XZQMC": [names.get(c, "") for c in codes]})
    out["MBMJ_GQ"] = np.where(has, tgt_v / 100 / M2_PER_HECTARE, np.nan)
    if base_c is not None:
        out["JQMJ_GQ"] = base_c.reindex(codes, fill_value=0).to_numpy() / 100 / M2_PER_HECTARE
    out["BNMJ_GQ"] = this.to_numpy() / 100 / M2_PER_HECTARE
    if base_c is not None:
        delta = this.to_numpy() - base_c.reindex(codes, fill_value=0).to_numpy()
        out["BHMJ_GQ"] = delta / 100 / M2_PER_HECTARE
    gap = this.to_numpy() - tgt_v
    out["CEMJ_GQ"] = np.where(has, gap / 100 / M2_PER_HECTARE, np.nan)
    out["SFDB"] = np.where(has, np.where(gap >= 0, MET, NOT_MET), NO_TARGET)
    total: dict[str, object] = {"XZQDM": TOTAL, "XZQMC": ""}
    for col in out.columns[2:-1]:
        total[col] = float(np.nansum(out[col].to_numpy(float)))
    if not has.any():
        total["MBMJ_GQ"] = total["CEMJ_GQ"] = np.nan
    else:
        total["CEMJ_GQ"] = float((this.to_numpy()[has] - tgt_v[has]).sum() / 100 / M2_PER_HECTARE)
    total["SFDB"] = NO_TARGET if not has.any() else (MET if (gap[has] >= 0).all() else NOT_MET)
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)
