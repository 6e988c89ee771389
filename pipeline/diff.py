"""The yearly comparison (年度对比): black-soil farmland lost, gained and changed.

Both archives are reduced to parcels (all black-soil pieces of one BSM 标识码, dissolved), and
the parcels of the two years are matched by identity and location:

- the same BSM in both years, where the two outlines overlap, is the same parcel;
- parcels that overlap by at least ``match_share`` of the smaller one are the same land, whatever
  their BSM: a re-digitised or re-numbered parcel, or the parts of a split or merged one.

Matches form groups (connected components: one old parcel split into two new ones is one group).
An old parcel in no group is **lost** (减少), a new parcel in no group is **gained** (增加), and a
group whose area (TBDLMJ), main soil group, land class, protection status or parcel identity
differs is **changed** (变化). The county tables account for every square metre:
``new = old − lost + gained − changed decrease + changed increase``, exactly to the cent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import archive as arc
from . import summaries as sm
from .codes import M2_PER_HECTARE
from .errors import InvariantError, UsageError

logger = logging.getLogger(__name__)

#: layers of the comparison GeoPackage
LOST = "HTGD_BH_JS"  # 黑土耕地减少
GAINED = "HTGD_BH_ZJ"  # 黑土耕地增加
CHANGED = "HTGD_BH_BG"  # 黑土耕地变化
COUNTIES = "HTGD_BH_XZQ"  # 县级变化汇总
SOIL_GROUPS = "HTGD_BH_TL"  # 分土类变化汇总
METADATA = "HTGD_BH_YXXX"  # 对比信息

LAYER_TITLES: dict[str, str] = {
    LOST: "黑土耕地减少图斑",
    GAINED: "黑土耕地增加图斑",
    CHANGED: "黑土耕地变化图斑",
    COUNTIES: "黑土耕地变化县级汇总表",
    SOIL_GROUPS: "黑土耕地变化分土类汇总表",
    METADATA: "对比信息",
}

#: protection-status area fields of HTGDTB and their labels (the protection stage adds them)
STATUS_FIELDS: dict[str, str] = {
    "JBNT_MJ": "永久基本农田",
    "CZKF_MJ": "城镇开发边界",
    "STHX_MJ": "生态保护红线",
    "JSZY_MJ": "建设项目占用",
}
#: change kinds (BHLX)
KIND_AREA, KIND_SOIL, KIND_CLASS, KIND_STATUS, KIND_ID = (
    "面积",
    "土类",
    "地类",
    "保护状态",
    "标识码",
)
#: match methods (PPFS)
BY_ID, BY_LOCATION, SPLIT, MERGE, REGROUP = "标识码", "位置", "拆分", "合并", "重组"
#: reasons (YY) of lost and gained parcels
STILL_CULTIVATED = "仍为耕地、不再是黑土耕地"
LEFT_CULTIVATED = "不再是耕地或不在调查范围"
WAS_CULTIVATED = "原为耕地、非黑土耕地"
NEW_CULTIVATED = "新增耕地"

_UNIT_FIELDS = [
    ("BSM", "标识码", "", "parcel id"),
    ("XZQDM", "行政区代码", "", "county code"),
    ("XZQMC", "行政区名称", "", "county name"),
    ("DLBM", "地类编码", "", "land class code (largest part)"),
    ("DLMC", "地类名称", "", "land class name"),
    ("TL", "土类", "", "main black-soil group (largest TBDLMJ)"),
    ("TLS", "全部土类", "", "all black-soil groups of the parcel"),
    ("TBGS", "图斑个数", "", "black-soil pieces of the parcel"),
    ("MJ", "平面面积", "m²", "planar area"),
    ("TBMJ", "图斑面积", "m²", "official area on black soil"),
    ("TBDLMJ", "图斑地类面积", "m²", "black-soil farmland area (TBMJ − KCMJ)"),
    ("BHZT", "保护状态", "", "protection status (where the archives have it)"),
    ("YY", "原因", "", "why: still cultivated or not, per the other year's balance table"),
    (
        "CDMJ",
        "与另一年份重叠面积",
        "m²",
        "planar overlap with the other year's black-soil farmland",
    ),
    ("SJNF", "数据年份", "", "survey year of the parcel"),
]
FIELDS: dict[str, list[tuple[str, str, str, str]]] = {
    LOST: _UNIT_FIELDS,
    GAINED: _UNIT_FIELDS,
    CHANGED: [
        ("BHBH", "变化编号", "", "change number"),
        ("XZQDM", "行政区代码", "", "county code (of the largest new parcel)"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("BHLX", "变化类型", "", "面积 / 土类 / 地类 / 保护状态 / 标识码, joined by 、"),
        ("PPFS", "匹配方式", "", "标识码 / 位置 / 拆分 / 合并 / 重组"),
        ("BSM_Q", "变化前标识码", "", "old parcel ids"),
        ("BSM_H", "变化后标识码", "", "new parcel ids"),
        ("TL_Q", "变化前土类", "", "main soil group before"),
        ("TL_H", "变化后土类", "", "main soil group after"),
        ("DLBM_Q", "变化前地类编码", "", "main land class before"),
        ("DLBM_H", "变化后地类编码", "", "main land class after"),
        ("BHZT_Q", "变化前保护状态", "", "protection status before"),
        ("BHZT_H", "变化后保护状态", "", "protection status after"),
        ("TBDLMJ_Q", "变化前面积", "m²", "black-soil farmland before (TBDLMJ)"),
        ("TBDLMJ_H", "变化后面积", "m²", "black-soil farmland after (TBDLMJ)"),
        ("BHMJ", "变化面积", "m²", "after − before"),
        ("JSMJ_PM", "减少平面面积", "m²", "planar area covered before and not after"),
        ("ZJMJ_PM", "增加平面面积", "m²", "planar area covered after and not before"),
    ],
    COUNTIES: [
        ("XZQDM", "行政区代码", "", "county code; 合计 = all"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("JQMJ", "基期面积", "m²", "black-soil farmland in the old year (TBDLMJ)"),
        ("BQMJ", "本期面积", "m²", "black-soil farmland in the new year (TBDLMJ)"),
        ("JSGS", "减少图斑个数", "", "parcels lost"),
        ("JSMJ", "减少面积", "m²", "area of the parcels lost"),
        ("ZJGS", "增加图斑个数", "", "parcels gained"),
        ("ZJMJ", "增加面积", "m²", "area of the parcels gained"),
        ("BGGS", "变化个数", "", "changed groups"),
        ("BGJSMJ", "变化减少面积", "m²", "net decrease within matched parcels"),
        ("BGZJMJ", "变化增加面积", "m²", "net increase within matched parcels"),
        ("JBHMJ", "净变化面积", "m²", "BQMJ − JQMJ"),
        ("JQMJ_GQ", "基期面积", "ha", "JQMJ in hectares"),
        ("BQMJ_GQ", "本期面积", "ha", "BQMJ in hectares"),
        ("JBHMJ_GQ", "净变化面积", "ha", "JBHMJ in hectares"),
    ],
    SOIL_GROUPS: [
        ("XZQDM", "行政区代码", "", "county code; 合计 = all"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("TL", "土类", "", "black-soil group; 合计 = all groups"),
        ("JQMJ", "基期面积", "m²", "old year TBDLMJ"),
        ("BQMJ", "本期面积", "m²", "new year TBDLMJ"),
        ("BHMJ", "变化面积", "m²", "BQMJ − JQMJ"),
        ("BHMJ_GQ", "变化面积", "ha", "BHMJ in hectares"),
    ],
    METADATA: [("key", "项目", "", "item"), ("value", "内容", "", "JSON value")],
}


@dataclass(frozen=True)
class DiffResult:
    """The comparison of two archives (areas in m², TBDLMJ)."""

    old_year: object
    new_year: object
    lost: gpd.GeoDataFrame
    gained: gpd.GeoDataFrame
    changed: gpd.GeoDataFrame
    counties: pd.DataFrame
    soil_groups: pd.DataFrame
    summary: dict[str, object] = field(default_factory=dict)

    def layers(self) -> dict[str, pd.DataFrame]:
        """The comparison's layers as written by :func:`write_diff`."""
        meta = {**self.summary, "old_year": self.old_year, "new_year": self.new_year}
        return {
            LOST: self.lost,
            GAINED: self.gained,
            CHANGED: self.changed,
            COUNTIES: self.counties,
            SOIL_GROUPS: self.soil_groups,
            METADATA: pd.DataFrame(
                {
                    "key": list(meta),
                    "value": [
                        json.dumps(v, ensure_ascii=False, default=str) for v in meta.values()
                    ],
                }
            ),
        }


def _cents(values: object) -> np.ndarray:
    return np.round(np.asarray(values, dtype=float) * 100).astype(np.int64)


def _text(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame:
        return np.full(len(frame), "", dtype=object)
    values = frame[col].astype(object)
    return values.where(values.notna(), "").astype(str).to_numpy(dtype=object)


def _dominant(group: np.ndarray, value: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Per group (0..n-1), the value with the largest summed weight (ties: smallest value)."""
    out = np.full(n, "", dtype=object)
    if len(group) == 0:
        return out
    f = pd.DataFrame({"g": group, "v": value, "w": weight}).groupby(["g", "v"], sort=True)["w"]
    s = f.sum().reset_index().sort_values(["g", "w"], ascending=[True, False], kind="stable")
    first = s.drop_duplicates("g")
    out[first["g"].to_numpy()] = first["v"].to_numpy()
    return out


def _dissolve(parts_of: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """One valid (multi)polygon per group from the polygons of its members, vectorised."""
    parts, idx = shapely.get_parts(parts_of, return_index=True)
    keep = shapely.get_type_id(parts) == 3
    parts, g = parts[keep], group[idx[keep]]
    order = np.argsort(g, kind="stable")
    parts, g = parts[order], g[order]
    out = np.array([shapely.MultiPolygon()] * n, dtype=object)
    if len(parts) == 0:
        return out
    count = np.bincount(g, minlength=n)
    single = count[g] == 1  # a group of one polygon is that polygon: nothing to dissolve
    out[g[single]] = parts[single]
    many = ~single
    if many.any():
        joined = shapely.multipolygons(parts[many], indices=g[many], out=out.copy())
        rows = np.unique(g[many])
        # the parts of a parcel only share edges: a zero buffer dissolves them (fast); where
        # the area says otherwise (parts that overlap), the exact repair takes over
        merged = shapely.buffer(joined[rows], 0)
        expected = np.bincount(g, weights=shapely.area(parts), minlength=n)[rows]
        off = np.abs(shapely.area(merged) - expected) > 1e-9 * np.maximum(expected, 1.0)
        if off.any():
            merged[off] = shapely.make_valid(joined[rows[off]], method="structure")
        out[rows] = merged
    return out


def _status(pieces: pd.DataFrame, fields: list[str], unit: np.ndarray, n: int) -> np.ndarray:
    """Protection status of each parcel: for each zone field, 内 (all), 部分 (part) or none."""
    out = np.full(n, "", dtype=object)
    if not fields:
        return out
    total = np.bincount(unit, weights=_cents(pieces["TBDLMJ"]), minlength=n)
    labels = []
    for f in fields:
        inside = np.bincount(unit, weights=_cents(pieces[f].fillna(0)), minlength=n)
        name = STATUS_FIELDS[f]
        labels.append(
            np.where(inside <= 0, "", np.where(inside >= total, f"{name}内", f"{name}部分"))
        )
    for lab in labels:
        lab = lab.astype(object)
        both = (out != "") & (lab != "")
        out = np.where(both, out + "、" + lab, np.where(out == "", lab, out))
    out[out == ""] = "无"
    return out.astype(object)


@dataclass
class _Year:
    """One archive reduced to parcels."""

    year: object
    pieces: gpd.GeoDataFrame
    unit_of_piece: np.ndarray
    units: gpd.GeoDataFrame
    cultivated: set[str]
    names: dict[str, str]


def _year(layers: Mapping[str, pd.DataFrame], status_fields: list[str], crs) -> _Year:
    pieces = layers[arc.PIECES]
    if crs is not None and pieces.crs is not None and not pieces.crs.equals(crs):
        pieces = pieces.to_crs(crs)
    meta = sm.metadata(layers)
    bsm = _text(pieces, "BSM")
    unit, keys = pd.factorize(bsm, sort=True)
    n = len(keys)
    cents = _cents(pieces["TBDLMJ"])
    geoms = _dissolve(pieces.geometry.to_numpy(), unit, n)
    first = np.unique(unit, return_index=True)[1]
    tl = _text(pieces, "TL")
    units = gpd.GeoDataFrame(
        {
            "BSM": np.asarray(keys, dtype=object),
            "XZQDM": _text(pieces, "XZQDM")[first],
            "XZQMC": _text(pieces, "XZQMC")[first],
            "DLBM": _dominant(unit, _text(pieces, "DLBM"), cents, n),
            "DLMC": _dominant(unit, _text(pieces, "DLMC"), cents, n),
            "TL": _dominant(unit, tl, cents, n),
            "TLS": _joined(unit, tl, n, "、"),
            "TBGS": np.bincount(unit, minlength=n).astype(np.int32),
            "MJ": np.round(np.bincount(unit, weights=pieces["MJ"].to_numpy(float), minlength=n), 2),
            "TBMJ": np.bincount(unit, weights=_cents(pieces["TBMJ"]), minlength=n) / 100,
            "TBDLMJ": np.bincount(unit, weights=cents, minlength=n) / 100,
            "BHZT": _status(pieces, status_fields, unit, n),
            "SJNF": np.int32(meta.get("survey_year") or 0),
        },
        geometry=geoms,
        crs=pieces.crs,
    )
    balance = layers.get(arc.BALANCE)
    cultivated = set(_text(balance, "BSM")) if balance is not None else set()
    return _Year(meta.get("survey_year"), pieces, unit, units, cultivated, sm.county_names(layers))


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Area of overlap of each pair: identical outlines (most parcels, year to year) and pairs
    whose interiors do not meet (neighbours) need no overlay."""
    out = np.zeros(len(a))
    if len(a) == 0:
        return out
    same = shapely.equals_exact(a, b, tolerance=0.0)
    out[same] = shapely.area(a[same])
    rest = np.flatnonzero(~same)
    inner = shapely.relate_pattern(a[rest], b[rest], "T********")
    rest = rest[inner]
    out[rest] = shapely.area(shapely.intersection(a[rest], b[rest]))
    return out


def _components(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Connected components of an undirected graph on n nodes (edges a–b): a label per node."""
    labels = np.arange(n)
    if len(a) == 0:
        return labels
    while True:
        m = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, m)
        np.minimum.at(new, b, m)
        new = new[new]  # pointer jumping: follow labels to their roots
        if np.array_equal(new, labels):
            return labels
        labels = new


def diff_archives(
    old: str | Path | Mapping[str, pd.DataFrame],
    new: str | Path | Mapping[str, pd.DataFrame],
    *,
    match_share: float = 0.5,
    min_change: float = 0.01,
) -> DiffResult:
    """Compare two archives: black-soil farmland lost, gained and changed.

    Parameters
    ----------
    old, new : path or mapping
        The earlier and the later archive (paths, or the layers from :func:`pipeline.open_archive`).
    match_share : float
        Two parcels of different BSM are the same land where they overlap by at least this share
        of the smaller one (0 < share ≤ 1).
    min_change : float
        Area changes (TBDLMJ, m²) smaller than this are not reported as changes (they still
        count in the county tables).

    Returns
    -------
    DiffResult

    Raises
    ------
    InputError
        An archive cannot be read.
    UsageError
        A parameter is out of range.

    Examples
    --------
    >>> from pipeline import diff_archives
    >>> d = diff_archives("out/2024.gpkg", "out/2025.gpkg")  # doctest: +SKIP
    >>> d.counties[["XZQMC", "JSMJ", "ZJMJ", "JBHMJ"]]  # doctest: +SKIP
    """
    if not 0 < match_share <= 1:
        raise UsageError(f"match share: expected a share in (0, 1], got {match_share!r}")
    if min_change < 0:
        raise UsageError(f"minimum change: expected a non-negative area, got {min_change!r}")
    t0 = time.perf_counter()
    old_layers, new_layers = sm.load(old), sm.load(new)
    status_fields = [
        f for f in STATUS_FIELDS if f in old_layers[arc.PIECES] and f in new_layers[arc.PIECES]
    ]
    o = _year(old_layers, status_fields, None)
    w = _year(new_layers, status_fields, o.pieces.crs)
    uo, un = o.units, w.units
    no, nn = len(uo), len(un)
    og, ng = uo.geometry.to_numpy(), un.geometry.to_numpy()

    # candidate pairs and their overlap
    oi, ni = shapely.STRtree(ng).query(og, predicate="intersects")
    inter = _overlap(og[oi], ng[ni])
    same = uo["BSM"].to_numpy()[oi] == un["BSM"].to_numpy()[ni]
    smaller = np.minimum(shapely.area(og[oi]), shapely.area(ng[ni]))
    edge = (inter > 0) & (same | (inter >= match_share * smaller))
    ea, eb = oi[edge], ni[edge]
    labels = _components(ea, no + eb, no + nn)
    lab_o, lab_n = labels[:no], labels[no:]
    has_new = np.zeros(no + nn, dtype=bool)
    has_new[lab_n] = True
    has_old = np.zeros(no + nn, dtype=bool)
    has_old[lab_o] = True
    lost_mask = ~has_new[lab_o]
    gained_mask = ~has_old[lab_n]
    overlap_o = np.bincount(oi, weights=inter, minlength=no)
    overlap_n = np.bincount(ni, weights=inter, minlength=nn)

    lost = uo[lost_mask].copy()
    lost["YY"] = np.where(lost["BSM"].isin(w.cultivated), STILL_CULTIVATED, LEFT_CULTIVATED)
    lost["CDMJ"] = np.round(overlap_o[lost_mask], 2)
    gained = un[gained_mask].copy()
    gained["YY"] = np.where(gained["BSM"].isin(o.cultivated), WAS_CULTIVATED, NEW_CULTIVATED)
    gained["CDMJ"] = np.round(overlap_n[gained_mask], 2)
    order = [f for f, *_ in _UNIT_FIELDS]
    lost = _sorted_units(lost[[*order, "geometry"]])
    gained = _sorted_units(gained[[*order, "geometry"]])

    changed, per_county = _changed(o, w, lab_o, lab_n, ea, eb, min_change)
    counties = _county_table(o, w, lost, gained, per_county)
    soil_groups = _soil_group_table(o, w)
    summary = {
        "old_parcels": no,
        "new_parcels": nn,
        "lost": len(lost),
        "gained": len(gained),
        "changed": len(changed),
        "lost_m2": float(_cents(lost["TBDLMJ"]).sum() / 100),
        "gained_m2": float(_cents(gained["TBDLMJ"]).sum() / 100),
        "match_share": match_share,
        "min_change_m2": min_change,
        "status_fields": status_fields,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return DiffResult(o.year, w.year, lost, gained, changed, counties, soil_groups, summary)


def _sorted_units(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    frame = frame.assign(_c=_cents(frame["TBDLMJ"]))
    frame = frame.sort_values(["XZQDM", "_c", "BSM"], ascending=[True, False, True], kind="stable")
    return frame.drop(columns="_c").reset_index(drop=True)


def _changed(
    o: _Year,
    w: _Year,
    lab_o: np.ndarray,
    lab_n: np.ndarray,
    ea: np.ndarray,
    eb: np.ndarray,
    min_change: float,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """The matched groups that changed, and per (group, county) the net change in cents."""
    uo, un = o.units, w.units
    matched_o = np.isin(lab_o, lab_n)
    matched_n = np.isin(lab_n, lab_o)
    roots = np.unique(lab_o[matched_o])
    k = len(roots)
    go = np.searchsorted(roots, lab_o[matched_o])  # group of each matched old parcel
    gn = np.searchsorted(roots, lab_n[matched_n])
    io, in_ = np.flatnonzero(matched_o), np.flatnonzero(matched_n)
    co, cn = _cents(uo["TBDLMJ"].to_numpy()[io]), _cents(un["TBDLMJ"].to_numpy()[in_])
    old_c = np.bincount(go, weights=co, minlength=k).astype(np.int64)
    new_c = np.bincount(gn, weights=cn, minlength=k).astype(np.int64)

    def dominant(units: gpd.GeoDataFrame, rows: np.ndarray, g: np.ndarray, col: str, c):
        return _dominant(g, units[col].to_numpy(dtype=object)[rows], c, k)

    # main soil group and land class by area, over the pieces (a parcel may hold several)
    po = np.isin(o.unit_of_piece, io)
    pn = np.isin(w.unit_of_piece, in_)
    piece_go = np.full(len(uo), -1)
    piece_go[io] = go
    piece_gn = np.full(len(un), -1)
    piece_gn[in_] = gn
    pgo, pgn = piece_go[o.unit_of_piece[po]], piece_gn[w.unit_of_piece[pn]]
    pco, pcn = _cents(o.pieces["TBDLMJ"].to_numpy()[po]), _cents(w.pieces["TBDLMJ"].to_numpy()[pn])
    tl_q = _dominant(pgo, _text(o.pieces, "TL")[po], pco, k)
    tl_h = _dominant(pgn, _text(w.pieces, "TL")[pn], pcn, k)
    dl_q = _dominant(pgo, _text(o.pieces, "DLBM")[po], pco, k)
    dl_h = _dominant(pgn, _text(w.pieces, "DLBM")[pn], pcn, k)
    zt_q = dominant(uo, io, go, "BHZT", co)
    zt_h = dominant(un, in_, gn, "BHZT", cn)

    n_old = np.bincount(go, minlength=k)
    n_new = np.bincount(gn, minlength=k)
    bsm_q = _joined(go, uo["BSM"].to_numpy(dtype=object)[io], k)
    bsm_h = _joined(gn, un["BSM"].to_numpy(dtype=object)[in_], k)
    ppfs = np.where(
        (n_old == 1) & (n_new == 1),
        np.where(bsm_q == bsm_h, BY_ID, BY_LOCATION),
        np.where(n_old == 1, SPLIT, np.where(n_new == 1, MERGE, REGROUP)),
    )
    delta = new_c - old_c
    kinds = [
        (np.abs(delta) >= round(min_change * 100)) & (delta != 0),
        tl_q != tl_h,
        dl_q != dl_h,
        zt_q != zt_h,
        bsm_q != bsm_h,
    ]
    names = [KIND_AREA, KIND_SOIL, KIND_CLASS, KIND_STATUS, KIND_ID]
    flags = np.stack(kinds, axis=1)
    bhlx = np.array(["、".join(n for n, f in zip(names, row, strict=True) if f) for row in flags],
                    dtype=object)  # fmt: skip
    changed = flags.any(axis=1)

    geo_q = _group_outline(uo.geometry.to_numpy()[io], go, k)
    geo_h = _group_outline(un.geometry.to_numpy()[in_], gn, k)
    xzq = dominant(un, in_, gn, "XZQDM", cn)
    frame = gpd.GeoDataFrame(
        {
            "BHBH": "",
            "XZQDM": xzq,
            "XZQMC": [w.names.get(c, o.names.get(c, "")) for c in xzq],
            "BHLX": bhlx,
            "PPFS": ppfs,
            "BSM_Q": bsm_q,
            "BSM_H": bsm_h,
            "TL_Q": tl_q,
            "TL_H": tl_h,
            "DLBM_Q": dl_q,
            "DLBM_H": dl_h,
            "BHZT_Q": zt_q,
            "BHZT_H": zt_h,
            "TBDLMJ_Q": old_c / 100,
            "TBDLMJ_H": new_c / 100,
            "BHMJ": delta / 100,
            "JSMJ_PM": _difference_area(geo_q, geo_h, changed),
            "ZJMJ_PM": _difference_area(geo_h, geo_q, changed),
        },
        geometry=geo_h,
        crs=un.crs,
    )[changed]
    frame = frame.assign(_a=np.abs(frame["BHMJ"].to_numpy()))
    frame = frame.sort_values(["XZQDM", "_a", "BSM_H"], ascending=[True, False, True])
    frame = frame.drop(columns="_a").reset_index(drop=True)
    frame["BHBH"] = [f"BH{i + 1:06d}" for i in range(len(frame))]

    # per (group, county): new parcels' cents minus old parcels' cents, for the county table
    parts = pd.concat(
        [
            pd.DataFrame({"g": go, "XZQDM": uo["XZQDM"].to_numpy()[io], "c": -co}),
            pd.DataFrame({"g": gn, "XZQDM": un["XZQDM"].to_numpy()[in_], "c": cn}),
        ]
    )
    per_county = parts.groupby(["g", "XZQDM"], sort=True)["c"].sum().reset_index()
    per_county["changed"] = changed[per_county["g"].to_numpy()]
    return frame, per_county


def _group_outline(geoms: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """The outline of each group: its one parcel's, or the dissolved parcels of a larger group."""
    count = np.bincount(group, minlength=n)
    out = np.empty(n, dtype=object)
    single = count[group] == 1
    out[group[single]] = geoms[single]
    many = np.flatnonzero(count > 1)
    if len(many):
        sub = np.isin(group, many)
        local = np.searchsorted(many, group[sub])
        out[many] = _dissolve(geoms[sub], local, len(many))
    return out


def _difference_area(a: np.ndarray, b: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Planar area of ``a − b`` on the selected rows (0 elsewhere), to the cent."""
    out = np.zeros(len(a))
    sel = np.flatnonzero(rows)
    if len(sel):
        out[sel] = shapely.area(shapely.difference(a[sel], b[sel]))
    return np.round(out, 2)


def _joined(group: np.ndarray, values: np.ndarray, n: int, sep: str = ",") -> np.ndarray:
    """Per group (0..n-1), its distinct values sorted and joined by ``sep``."""
    f = pd.DataFrame({"g": group, "v": values}).drop_duplicates().sort_values(["g", "v"])
    out = np.full(n, "", dtype=object)
    count = np.bincount(f["g"].to_numpy(), minlength=n)
    single = count[f["g"].to_numpy()] == 1
    out[f["g"].to_numpy()[single]] = f["v"].to_numpy()[single]
    multi = f[~single]
    if len(multi):  # few groups: a parcel on several soil groups, a split parcel
        joined = multi.groupby("g")["v"].agg(sep.join)
        out[joined.index.to_numpy()] = joined.to_numpy()
    return out


def _county_table(
    o: _Year, w: _Year, lost: pd.DataFrame, gained: pd.DataFrame, per_county: pd.DataFrame
) -> pd.DataFrame:
    def by(frame: pd.DataFrame, col: str = "TBDLMJ") -> pd.Series:
        return pd.Series(_cents(frame[col]), index=frame["XZQDM"].to_numpy()).groupby(level=0).sum()

    old_total = by(o.pieces)
    new_total = by(w.pieces)
    codes = sorted(set(old_total.index) | set(new_total.index))
    pc = per_county.set_index("XZQDM")
    out = pd.DataFrame({"XZQDM": codes})
    out["XZQMC"] = [w.names.get(c) or o.names.get(c, "") for c in codes]
    out["JQMJ"] = old_total.reindex(codes, fill_value=0).to_numpy()
    out["BQMJ"] = new_total.reindex(codes, fill_value=0).to_numpy()
    out["JSGS"] = lost.groupby("XZQDM").size().reindex(codes, fill_value=0).to_numpy()
    out["JSMJ"] = by(lost).reindex(codes, fill_value=0).to_numpy() if len(lost) else 0
    out["ZJGS"] = gained.groupby("XZQDM").size().reindex(codes, fill_value=0).to_numpy()
    out["ZJMJ"] = by(gained).reindex(codes, fill_value=0).to_numpy() if len(gained) else 0
    changed = pc[pc["changed"]]
    out["BGGS"] = (
        changed.groupby(level=0)["g"].nunique().reindex(codes, fill_value=0).to_numpy()
        if len(changed)
        else 0
    )
    c = pc["c"]
    out["BGJSMJ"] = (
        (-c.clip(upper=0)).groupby(level=0).sum().reindex(codes, fill_value=0).to_numpy()
    )
    out["BGZJMJ"] = c.clip(lower=0).groupby(level=0).sum().reindex(codes, fill_value=0).to_numpy()
    out["JBHMJ"] = out["BQMJ"] - out["JQMJ"]
    cents_cols = ["JQMJ", "BQMJ", "JSMJ", "ZJMJ", "BGJSMJ", "BGZJMJ", "JBHMJ"]
    for col in ("JSGS", "ZJGS", "BGGS", *cents_cols):
        out[col] = out[col].astype(np.int64)
    check = out["JQMJ"] - out["JSMJ"] + out["ZJMJ"] - out["BGJSMJ"] + out["BGZJMJ"] - out["BQMJ"]
    if (check != 0).any():
        bad = out["XZQDM"][check != 0].iloc[0]
        raise InvariantError(f"county {bad}: the change accounting does not add up")
    total = {"XZQDM": sm.TOTAL, "XZQMC": "全部", **{c: int(out[c].sum()) for c in out.columns[2:]}}
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    for col in cents_cols:
        out[col] = out[col].to_numpy() / 100
    for col in ("JQMJ", "BQMJ", "JBHMJ"):
        out[f"{col}_GQ"] = out[col] / M2_PER_HECTARE
    return out


def _soil_group_table(o: _Year, w: _Year) -> pd.DataFrame:
    def by(y: _Year) -> pd.Series:
        p = y.pieces
        keys = pd.MultiIndex.from_arrays([_text(p, "XZQDM"), _text(p, "TL")])
        return pd.Series(_cents(p["TBDLMJ"]), index=keys).groupby(level=[0, 1]).sum()

    old, new = by(o), by(w)
    index = old.index.union(new.index).sort_values()
    frame = pd.DataFrame(
        {
            "JQMJ": old.reindex(index, fill_value=0).to_numpy(),
            "BQMJ": new.reindex(index, fill_value=0).to_numpy(),
        },
        index=index,
    )
    frame.index.names = ["XZQDM", "TL"]
    frame = frame.reset_index()
    groups = frame.groupby("TL", sort=True)[["JQMJ", "BQMJ"]].sum().reset_index()
    groups["XZQDM"] = sm.TOTAL
    grand = pd.DataFrame(
        [
            {
                "XZQDM": sm.TOTAL,
                "TL": sm.TOTAL,
                "JQMJ": frame["JQMJ"].sum(),
                "BQMJ": frame["BQMJ"].sum(),
            }
        ]
    )
    out = pd.concat([frame, groups, grand], ignore_index=True)
    out["BHMJ"] = out["BQMJ"] - out["JQMJ"]
    for col in ("JQMJ", "BQMJ", "BHMJ"):
        out[col] = out[col].astype(np.int64) / 100
    out["BHMJ_GQ"] = out["BHMJ"] / M2_PER_HECTARE
    out.insert(
        1,
        "XZQMC",
        ["全部" if c == sm.TOTAL else (w.names.get(c) or o.names.get(c, "")) for c in out["XZQDM"]],
    )
    return out[["XZQDM", "XZQMC", "TL", "JQMJ", "BQMJ", "BHMJ", "BHMJ_GQ"]]


def write_diff(result: DiffResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the comparison as one GeoPackage (layers with Chinese titles and a field dictionary).

    Raises
    ------
    UsageError
        The file exists and ``overwrite`` is false.
    OutputError
        The file cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise UsageError(f"{path}: the comparison is written as a GeoPackage (.gpkg)")
    layers = result.layers()
    fields = {**FIELDS, arc.DICTIONARY: arc.FIELDS[arc.DICTIONARY]}
    layers[arc.DICTIONARY] = arc.field_dictionary(fields)
    return arc.write_archive(path, layers, overwrite=overwrite, fields=fields)


def read_diff(path: str | Path) -> dict[str, pd.DataFrame]:
    """Read a comparison GeoPackage written by :func:`write_diff` (layer → frame)."""
    import pyogrio

    from .errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: comparison file not found")
    try:
        names = [str(n) for n, *_ in pyogrio.list_layers(path)]
    except Exception as err:
        raise InputError(f"{path}: not a GeoPackage ({err})") from err
    if LOST not in names:
        raise InputError(f"{path}: not a blacksoil comparison (no layer {LOST})")
    return {n: pyogrio.read_dataframe(path, layer=n, use_arrow=True) for n in names}
