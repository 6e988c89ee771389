"""The survey report: one offline HTML page, an Excel workbook and CSV copies, from an archive.

``write_report(archive, folder)`` reads an archive only (never the survey inputs) and writes

- ``report.html``: one self-contained page (inline CSS, PNG maps and charts embedded as data
  URIs, no script, font, stylesheet or link from outside), since survey data lives on isolated
  networks: the job and its inputs with their fingerprints, totals by county and soil group in
  m², 公顷 and 亩, quality and protection summaries and conflict lists as far as the archive has
  those layers, the QA summary, the conservation and reconciliation checks, the responsibility
  assessment where targets are given, and maps;
- ``summary.xlsx``: the county tables, one sheet each, Chinese headers with units, a totals row;
- ``csv/<table>.csv``: the same tables as UTF-8 CSV (with BOM, so that Excel reads the Chinese).

Maps and charts are drawn with matplotlib's Agg canvas. Chinese labels need a CJK font, found
among the installed fonts through matplotlib's font manager (:func:`find_cjk_font`); where there
is none, labels fall back to pinyin or English and county codes, never to empty boxes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import io
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from pandas.api.types import is_float_dtype

from . import archive as arc
from . import summaries as sm
from .errors import OutputError, UsageError

logger = logging.getLogger(__name__)

HTML_NAME = "report.html"
XLSX_NAME = "summary.xlsx"
CSV_FOLDER = "csv"

#: preferred CJK fonts (family names as matplotlib knows them), best first
CJK_FONTS: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "SimHei",
    "Noto Serif CJK SC",
    "Source Han Serif SC",
    "SimSun",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "Droid Sans Fallback",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
)
#: words in a font's family or file name that mark a CJK font not in the list above
_CJK_HINTS = (
    "cjk",
    "wenquanyi",
    "wqy",
    "han sans",
    "hansans",
    "simhei",
    "yahei",
    "msyh",
    "droidsansfallback",
    "uming",
    "ukai",
    "simsun",
    "fangsong",
    "kaiti",
)

#: soil-group names in pinyin, for maps drawn without a CJK font
SOIL_GROUP_PINYIN: dict[str, str] = {
    "黑土": "Heitu (black soil)",
    "黑钙土": "Heigaitu (chernozem)",
    "白浆土": "Baijiangtu (albic soil)",
    "草甸土": "Caodiantu (meadow soil)",
    "暗棕壤": "Anzongrang (dark brown earth)",
    "棕壤": "Zongrang (brown earth)",
    "水稻土": "Shuidaotu (paddy soil)",
}

#: colours of the soil groups on maps and charts (others take the next free colour)
SOIL_GROUP_COLOURS: dict[str, str] = {
    "黑土": "#3b3024",
    "黑钙土": "#6b4f2a",
    "白浆土": "#c9b27c",
    "草甸土": "#5f8f4e",
    "暗棕壤": "#8c5a3c",
    "棕壤": "#b9793f",
    "水稻土": "#4f7fa8",
}
_EXTRA_COLOURS = ("#9467bd", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22", "#d62728")
_CONFLICT_COLOUR = "#d62728"

#: text of the page and figures: key → (Chinese, English)
TEXT: dict[str, tuple[str, str]] = {
    "report": ("黑土耕地调查报告", "Black-soil farmland survey report"),
    "job": ("任务与输入数据", "Job and inputs"),
    "totals": ("面积汇总", "Totals"),
    "quality": ("质量状况", "Quality"),
    "protection": ("保护状况", "Protection"),
    "conflicts": ("冲突清单", "Conflict lists"),
    "responsibility": ("保护责任考核", "Responsibility assessment"),
    "qa": ("质检汇总", "QA summary"),
    "checks": ("面积守恒与核对", "Conservation and reconciliation"),
    "maps": ("图件", "Maps"),
    "map_soil": ("黑土耕地分布（按土类）", "Black-soil farmland by soil group"),
    "chart_county": ("各县黑土耕地面积（公顷）", "Black-soil farmland by county (ha)"),
    "chart_group": ("各土类黑土耕地面积（公顷）", "Black-soil farmland by soil group (ha)"),
    "chart_conflict": ("各县冲突面积（公顷）", "Conflict area by county (ha)"),
    "chart_target": ("保护目标与本年面积（公顷）", "Target and this year's area (ha)"),
    "chart_slope": ("各县坡度级别面积（公顷）", "Area by slope grade (ha)"),
    "chart_status": ("各县保护状况面积（公顷）", "Protection status by county (ha)"),
    "county_outline": ("县界", "county boundary"),
    "county_hull": ("县域范围（由图斑推算）", "county extent (from the pieces)"),
    "black_soil": ("黑土耕地", "black-soil farmland"),
    "hectare": ("公顷", "ha"),
    "target": ("保护目标", "target"),
    "this_year": ("本年", "this year"),
    "met": ("达标", "met"),
    "not_met": ("未达标", "not met"),
    "slope_grade": ("坡度级别", "slope grade"),
}

#: the tables of the workbook: key → (sheet name, table title)
TABLE_TITLES: dict[str, tuple[str, str]] = {
    "county_totals": ("县级汇总", "黑土耕地面积县级汇总表"),
    "county_soil_groups": ("县级土类汇总", "黑土耕地面积分县分土类汇总表"),
    "soil_groups": ("土类汇总", "黑土耕地面积分土类汇总表"),
    "county_summary": ("汇总明细", "县级行政区汇总表（档案）"),
    "responsibility": ("保护责任考核", "黑土耕地保护责任考核表"),
    "protection_status": ("保护状况", "黑土耕地保护状况汇总表"),
    "quality_means": ("质量均值", "黑土耕地质量指标县级均值表"),
    "slope_grades": ("坡度级别", "黑土耕地分坡度级别面积表"),
    "qa": ("质检汇总", "质检记录汇总表"),
}
#: workbook table keys of layers from the protection and quality stages
LAYER_TABLE_KEYS: dict[str, str] = {
    sm.UNPROTECTED: "unprotected_by_county",
    sm.PLAN_CONFLICT: "plan_conflicts_by_county",
    sm.CONSTRUCTION: "construction_by_county",
    sm.CONSTRUCTION_PROJECTS: "construction_by_approval",
    sm.ILLEGAL: "illegal_by_county",
    sm.OFFSET_BALANCE: "offset_balance",
    sm.QUALITY: "quality_summary",
}
#: candidate county-boundary layers of an archive, first present wins
COUNTY_LAYERS: tuple[str, ...] = ("HTGD_XZQ", "XZQ")
#: rows shown per conflict list in the page (the workbook and the archive have them all)
CONFLICT_ROWS = 50


@dataclass(frozen=True)
class Table:
    """One report table: the frame (field codes as columns) with Chinese headers."""

    key: str
    sheet: str
    title: str
    frame: pd.DataFrame
    headers: list[str]
    #: per column: "text", "int", "m2", "ha", "mu", "share", "num"
    kinds: list[str]
    total_row: bool = True
    note: str = ""


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    folder: Path
    html: Path
    xlsx: Path
    csv: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------ fonts


def find_cjk_font() -> str | None:
    """The family name of an installed font that draws Chinese, or None.

    Looks through matplotlib's font manager for the fonts in :data:`CJK_FONTS`, then for any
    font whose name marks it as CJK, then in the system font folders for such font files that
    the font cache does not know yet (installed after it was built).
    """
    return _find_cjk_font()


@functools.lru_cache(maxsize=1)
def _find_cjk_font() -> str | None:
    from matplotlib import font_manager

    known = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in known:
            return name
    for name, fname in sorted(known.items()):
        text = f"{name} {Path(fname).name}".lower()
        if any(h in text for h in _CJK_HINTS):
            return name
    for fname in sorted(font_manager.findSystemFonts()):
        if any(h in Path(fname).name.lower() for h in _CJK_HINTS):
            try:
                font_manager.fontManager.addfont(fname)
                return font_manager.FontProperties(fname=fname).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
    return None


class _Labels:
    """Chinese labels where a CJK font is available, pinyin / English / codes otherwise."""

    def __init__(self, font: str | None) -> None:
        self.font = font

    def text(self, key: str) -> str:
        zh, en = TEXT[key]
        return zh if self.font else en

    def soil(self, group: str) -> str:
        if self.font or _ascii(group):
            return group
        return SOIL_GROUP_PINYIN.get(group, f"soil group {_ascii_only(group)}")

    def county(self, code: str, name: str) -> str:
        if self.font and name:
            return name
        return name if name and _ascii(name) else str(code)

    def plain(self, value: str, fallback: str) -> str:
        return value if (self.font or _ascii(value)) else fallback

    def rc(self) -> dict[str, object]:
        families = [self.font, "DejaVu Sans"] if self.font else ["DejaVu Sans"]
        return {
            "font.family": "sans-serif",
            "font.sans-serif": families,
            "axes.unicode_minus": False,
        }


def _ascii(text: object) -> bool:
    return str(text).isascii()


def _ascii_only(text: object) -> str:
    out = "".join(ch for ch in str(text) if ch.isascii()).strip()
    return out or "?"


# ------------------------------------------------------------------------------------ tables


def _kind(col: str, series: pd.Series) -> str:
    if col.endswith("_GQ"):
        return "ha"
    if col.endswith("_MU"):
        return "mu"
    if col in {"HTZB", "ZB"} or (col.endswith(("_ZB", "BL")) and is_float_dtype(series)):
        return "share"
    if pd.api.types.is_bool_dtype(series):
        return "text"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if is_float_dtype(series):
        return "m2" if ("MJ" in col or col in {"TBDLMJ", "TBMJ"}) else "num"
    return "text"


def _table(
    layers: Mapping[str, pd.DataFrame],
    key: str,
    frame: pd.DataFrame,
    layer: str,
    *,
    title: str | None = None,
    sheet: str | None = None,
    units: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
    total_row: bool = True,
    note: str = "",
) -> Table:
    """A Table whose headers come from the field dictionary (``units`` overrides a unit)."""
    frame = frame.drop(columns="geometry", errors="ignore").reset_index(drop=True)
    units = dict(units or {})
    kinds = kinds or {}
    titled = set(sm.dictionary(layers)["field"]) | set(sm.DERIVED_TITLES)
    headers, kind_list = [], []
    for col in frame.columns:
        col = str(col)
        kind = kinds.get(col) or _kind(col, frame[col])
        if col not in units and col not in titled and col.endswith(("_GQ", "_MU")):
            units[col] = "公顷" if col.endswith("_GQ") else "亩"  # a converted area column
        if col in units:
            base = col.removesuffix("_GQ").removesuffix("_MU")
            headers.append(sm.field_title(layers, layer, base, units[col]))
        else:
            headers.append(sm.field_title(layers, layer, col))
        kind_list.append(kind)
    default_sheet, default_title = TABLE_TITLES.get(key, (key, key))
    return Table(
        key=key,
        sheet=sheet or default_sheet,
        title=title or default_title,
        frame=frame,
        headers=headers,
        kinds=kind_list,
        total_row=total_row,
        note=note,
    )


def build_tables(
    layers: Mapping[str, pd.DataFrame], responsibility: pd.DataFrame | None = None
) -> list[Table]:
    """The report's tables, in order; the workbook and CSV copies hold the same."""
    tables = [
        _table(
            layers,
            "county_totals",
            sm.county_totals(layers),
            arc.COUNTY_SUMMARY,
            units={"TBDLMJ_GQ": "公顷", "TBDLMJ_MU": "亩"},
        )
    ]
    by_group = sm.county_by_soil_group(layers, unit="公顷")
    group_cols = [c for c in by_group.columns if c not in ("XZQDM", "XZQMC")]
    tables.append(
        Table(
            key="county_soil_groups",
            sheet=TABLE_TITLES["county_soil_groups"][0],
            title=TABLE_TITLES["county_soil_groups"][1],
            frame=by_group,
            headers=[
                sm.field_title(layers, arc.COUNTY_SUMMARY, "XZQDM"),
                sm.field_title(layers, arc.COUNTY_SUMMARY, "XZQMC"),
                *[f"{c}（公顷）" for c in group_cols],
            ],
            kinds=["text", "text", *["ha"] * len(group_cols)],
        )
    )
    tables.append(
        _table(
            layers,
            "soil_groups",
            sm.soil_group_totals(layers),
            arc.COUNTY_SUMMARY,
            units={"TBDLMJ_GQ": "公顷", "TBDLMJ_MU": "亩"},
        )
    )
    if responsibility is not None:
        tables.append(_table(layers, "responsibility", responsibility, "", kinds={"SFDB": "text"}))
    protection = sm.protection_summary(layers)
    if "status" in protection:
        tables.append(_table(layers, "protection_status", protection["status"], arc.PIECES))
    for name in (*sm.CONFLICT_LAYERS, sm.OFFSET_BALANCE):
        if name in protection:
            frame = protection[name]
            tables.append(
                _table(
                    layers,
                    LAYER_TABLE_KEYS[name],
                    frame,
                    name,
                    sheet=sm.layer_title(name)[:31],
                    title=f"{sm.layer_title(name)}汇总表",
                    total_row=bool(len(frame)) and str(frame.iloc[-1, 0]) == sm.TOTAL,
                )
            )
    quality = sm.quality_summary(layers)
    if "means" in quality:
        tables.append(_table(layers, "quality_means", quality["means"], arc.PIECES))
    if "slope_grades" in quality:
        frame = quality["slope_grades"]
        grades = [c for c in frame.columns if c not in ("XZQDM", "XZQMC")]
        tables.append(
            Table(
                key="slope_grades",
                sheet=TABLE_TITLES["slope_grades"][0],
                title=TABLE_TITLES["slope_grades"][1],
                frame=frame,
                headers=[
                    sm.field_title(layers, arc.PIECES, "XZQDM"),
                    sm.field_title(layers, arc.PIECES, "XZQMC"),
                    *[f"{sm.TOTAL}（公顷）" if g == sm.TOTAL else f"{g}级（公顷）" for g in grades],
                ],
                kinds=["text", "text", *["ha"] * len(grades)],
            )
        )
    if sm.QUALITY in quality:
        frame = quality[sm.QUALITY]
        tables.append(
            _table(
                layers,
                LAYER_TABLE_KEYS[sm.QUALITY],
                frame,
                sm.QUALITY,
                sheet=sm.layer_title(sm.QUALITY)[:31],
                title=sm.layer_title(sm.QUALITY),
                total_row=bool(len(frame)) and str(frame.iloc[-1, 0]) == sm.TOTAL,
            )
        )
    if arc.COUNTY_SUMMARY in layers:
        tables.append(
            _table(layers, "county_summary", layers[arc.COUNTY_SUMMARY], arc.COUNTY_SUMMARY)
        )
    tables.append(_table(layers, "qa", sm.qa_summary(layers), arc.QA_LOG))
    return tables


# ------------------------------------------------------------------------------------ figures


def _colours(groups: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    extra = iter(_EXTRA_COLOURS * (1 + len(groups) // len(_EXTRA_COLOURS)))
    for g in groups:
        out[g] = SOIL_GROUP_COLOURS.get(g) or next(extra)
    return out


def _paths(geoms: np.ndarray, tolerance: float):
    """One matplotlib Path of all polygons (holes kept by orientation), built vectorised."""
    from matplotlib.path import Path as MplPath

    geoms = np.asarray(geoms, dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    if len(geoms) == 0:
        return None
    if tolerance > 0:
        geoms = shapely.simplify(geoms, tolerance, preserve_topology=True)
    parts = shapely.get_parts(geoms)
    parts = parts[shapely.get_type_id(parts) == 3]
    if len(parts) == 0:
        return None
    rings = shapely.get_rings(shapely.orient_polygons(parts))
    coords, idx = shapely.get_coordinates(rings, return_index=True)
    codes = np.full(len(coords), MplPath.LINETO, dtype=MplPath.code_type)
    starts = np.r_[0, np.flatnonzero(np.diff(idx)) + 1]
    codes[starts] = MplPath.MOVETO
    codes[np.r_[starts[1:] - 1, len(coords) - 1]] = MplPath.CLOSEPOLY
    return MplPath(coords, codes)


def _county_outlines(
    layers: Mapping[str, pd.DataFrame], tolerance: float
) -> tuple[pd.DataFrame, bool]:
    """County outlines (XZQDM, XZQMC, geometry): the archive's county layer where it has one,
    else each county's extent drawn around its pieces (``derived`` True)."""
    for name in COUNTY_LAYERS:
        frame = layers.get(name)
        if frame is not None and "geometry" in frame and "XZQDM" in frame:
            out = pd.DataFrame(
                {
                    "XZQDM": frame["XZQDM"].astype(str).to_numpy(),
                    "XZQMC": frame.get("XZQMC", pd.Series([""] * len(frame))).to_numpy(),
                    "geometry": frame.geometry.to_numpy(),
                }
            )
            return out, False
    pieces = layers[arc.PIECES]
    geoms = shapely.simplify(pieces.geometry.to_numpy(), tolerance)
    codes, uniq = pd.factorize(pieces["XZQDM"].astype(str), sort=True)
    coords, idx = shapely.get_coordinates(geoms, return_index=True)
    group = codes[idx]
    order = np.argsort(group, kind="stable")
    points = shapely.multipoints(coords[order], indices=group[order])
    hulls = shapely.concave_hull(points, ratio=0.3)
    names = sm.county_names(layers)
    return (
        pd.DataFrame(
            {
                "XZQDM": list(uniq),
                "XZQMC": [names.get(c, "") for c in uniq],
                "geometry": hulls,
            }
        ),
        True,
    )


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


@dataclass(frozen=True)
class Figure:
    key: str
    caption: str
    png: bytes
    texts: tuple[str, ...] = ()  # every text drawn (titles, labels, legend), for checks


def _figure_texts(fig) -> tuple[str, ...]:
    from matplotlib.text import Text

    return tuple(t.get_text() for t in fig.findobj(Text) if t.get_text())


class _Drawer:
    def __init__(self, layers: Mapping[str, pd.DataFrame], labels: _Labels) -> None:
        self.layers = layers
        self.labels = labels
        pieces = layers[arc.PIECES]
        bounds = np.asarray(pieces.total_bounds, dtype=float) if len(pieces) else None
        if bounds is None or not np.all(np.isfinite(bounds)):
            self.extent = None
            self.tolerance = 0.0
        else:
            self.extent = bounds
            self.tolerance = float(max(bounds[2] - bounds[0], bounds[3] - bounds[1])) / 1500
        self.outlines, self.derived = (
            _county_outlines(layers, self.tolerance) if self.extent is not None else (None, True)
        )

    def _new(self, size=(8.0, 7.0)):
        from matplotlib.figure import Figure as MplFigure

        return MplFigure(figsize=size, layout="constrained")

    def _base_map(self, fig, title: str):
        from matplotlib.lines import Line2D
        from matplotlib.patches import PathPatch
        from matplotlib.patheffects import withStroke

        ax = fig.add_subplot()
        ax.set_aspect("equal")
        ax.set_axis_off()
        ax.set_title(title)
        handles = []
        if self.outlines is not None and len(self.outlines):
            path = _paths(self.outlines["geometry"].to_numpy(), self.tolerance)
            if path is not None:
                ax.add_patch(
                    PathPatch(
                        path,
                        facecolor="none",
                        edgecolor="#555555",
                        lw=1.0,
                        ls="--" if self.derived else "-",
                    )
                )
                key = "county_hull" if self.derived else "county_outline"
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="#555555",
                        ls="--" if self.derived else "-",
                        label=self.labels.text(key),
                    )
                )
            points = shapely.point_on_surface(self.outlines["geometry"].to_numpy())
            for code, name, pt in zip(
                self.outlines["XZQDM"], self.outlines["XZQMC"], points, strict=True
            ):
                if pt is None or shapely.is_empty(pt):
                    continue
                ax.annotate(
                    self.labels.county(code, str(name or "")),
                    (pt.x, pt.y),
                    ha="center",
                    va="center",
                    fontsize=11,
                    color="#222222",
                    path_effects=[withStroke(linewidth=3, foreground="white")],
                )
        xmin, ymin, xmax, ymax = self.extent
        pad = 0.03 * max(xmax - xmin, ymax - ymin, 1.0)
        ax.set_xlim(xmin - pad, xmax + pad)
        ax.set_ylim(ymin - pad, ymax + pad)
        return ax, handles

    def soil_map(self) -> Figure | None:
        from matplotlib.patches import Patch, PathPatch

        if self.extent is None:
            return None
        pieces = self.layers[arc.PIECES]
        groups = sm.soil_group_totals(self.layers)["TL"].tolist()[:-1]
        colours = _colours(groups)
        fig = self._new()
        ax, handles = self._base_map(fig, self.labels.text("map_soil"))
        tl = pieces["TL"].astype(str).to_numpy()
        geoms = pieces.geometry.to_numpy()
        for g in groups:
            path = _paths(geoms[tl == g], self.tolerance)
            if path is not None:
                ax.add_patch(PathPatch(path, facecolor=colours[g], edgecolor="none", lw=0))
            handles.append(Patch(facecolor=colours[g], label=self.labels.soil(g)))
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
        return self._done(fig, "map_soil_groups", self.labels.text("map_soil"))

    def conflict_map(self, name: str, frame: pd.DataFrame) -> Figure | None:
        from matplotlib.patches import Patch, PathPatch

        if self.extent is None or "geometry" not in frame:
            return None
        zh, en = sm.LAYER_NAMES.get(name, (sm.layer_title(name), name))
        title = zh if self.labels.font else en
        fig = self._new()
        ax, handles = self._base_map(fig, title)
        background = _paths(self.layers[arc.PIECES].geometry.to_numpy(), self.tolerance)
        if background is not None:
            ax.add_patch(PathPatch(background, facecolor="#d9d4c7", edgecolor="none"))
            handles.append(Patch(facecolor="#d9d4c7", label=self.labels.text("black_soil")))
        geoms = frame.geometry.to_numpy()
        path = _paths(geoms, self.tolerance)
        if path is not None:
            ax.add_patch(
                PathPatch(path, facecolor=_CONFLICT_COLOUR, edgecolor=_CONFLICT_COLOUR, lw=0.6)
            )
        handles.append(Patch(facecolor=_CONFLICT_COLOUR, label=f"{title} ({len(frame)})"))
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
        return self._done(fig, f"map_{name}", title)

    def bars(
        self,
        key: str,
        table: pd.DataFrame,
        categories: list[str],
        series: list[str],
        series_labels: list[str],
        colours: list[str],
        *,
        stacked: bool = True,
        xlabel: str | None = None,
    ) -> Figure:
        """Horizontal bars: one bar per category, one segment (or bar) per series."""
        values = table[series].to_numpy(float)
        height = 1.2 + 0.45 * len(categories) * (1 if stacked else max(1, len(series)) * 0.6)
        fig = self._new((8.0, min(max(height, 2.5), 12.0)))
        ax = fig.add_subplot()
        y = np.arange(len(categories))
        if stacked:
            left = np.zeros(len(categories))
            for j, lab in enumerate(series_labels):
                ax.barh(y, values[:, j], left=left, color=colours[j], label=lab)
                left += values[:, j]
        else:
            width = 0.8 / max(len(series), 1)
            for j, lab in enumerate(series_labels):
                ax.barh(
                    y + (j - (len(series) - 1) / 2) * width,
                    values[:, j],
                    height=width,
                    color=colours[j],
                    label=lab,
                )
        ax.set_yticks(y, categories)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel or self.labels.text("hectare"))
        ax.set_title(self.labels.text(key))
        ax.grid(axis="x", color="#dddddd")
        ax.set_axisbelow(True)
        if len(series) > 1:
            fig.legend(
                loc="outside lower center", ncols=min(len(series), 4), fontsize=8, frameon=False
            )
        return self._done(fig, key, self.labels.text(key))

    def _done(self, fig, key: str, caption: str) -> Figure:
        texts = _figure_texts(fig)
        return Figure(key=key, caption=caption, png=_png(fig), texts=texts)


def build_figures(
    layers: Mapping[str, pd.DataFrame],
    *,
    font: str | None,
    responsibility: pd.DataFrame | None = None,
) -> list[Figure]:
    """The report's maps and charts as PNG images (one figure each)."""
    from matplotlib import rc_context

    labels = _Labels(font)
    figures: list[Figure] = []
    with rc_context(labels.rc()):
        draw = _Drawer(layers, labels)
        counties = sm.county_by_soil_group(layers, unit="公顷")
        rows = counties[counties["XZQDM"] != sm.TOTAL]
        groups = [c for c in counties.columns if c not in ("XZQDM", "XZQMC", sm.TOTAL)]
        colours = _colours(groups)
        cats = [labels.county(c, n) for c, n in zip(rows["XZQDM"], rows["XZQMC"], strict=True)]
        if len(rows) and groups:
            figures.append(
                draw.bars(
                    "chart_county",
                    rows,
                    cats,
                    groups,
                    [labels.soil(g) for g in groups],
                    [colours[g] for g in groups],
                )
            )
            totals = sm.soil_group_totals(layers).iloc[:-1]
            figures.append(
                draw.bars(
                    "chart_group",
                    totals,
                    [labels.soil(g) for g in totals["TL"]],
                    ["TBDLMJ_GQ"],
                    [labels.text("black_soil")],
                    ["#6b4f2a"],
                )
            )
        soil = draw.soil_map()
        if soil is not None:
            figures.append(soil)
        if responsibility is not None:
            r = responsibility[responsibility["XZQDM"] != sm.TOTAL].fillna({"MBMJ_GQ": 0.0})
            cats_r = [labels.county(c, n) for c, n in zip(r["XZQDM"], r["XZQMC"], strict=True)]
            figures.append(
                draw.bars(
                    "chart_target",
                    r,
                    cats_r,
                    ["MBMJ_GQ", "BNMJ_GQ"],
                    [labels.text("target"), labels.text("this_year")],
                    ["#999999", "#2c7fb8"],
                    stacked=False,
                )
            )
        protection = sm.protection_summary(layers)
        if "status" in protection:
            st = protection["status"]
            st = st[st["XZQDM"] != sm.TOTAL]
            fields = [f for f in sm.PROTECTION_FIELDS if f in st]
            hectares = st[fields] / 10_000
            hectares.insert(0, "XZQDM", st["XZQDM"].to_numpy())
            names = [labels.plain(sm.field_title(layers, arc.PIECES, f, ""), f) for f in fields]
            cats_s = [labels.county(c, n) for c, n in zip(st["XZQDM"], st["XZQMC"], strict=True)]
            figures.append(
                draw.bars(
                    "chart_status",
                    hectares,
                    cats_s,
                    fields,
                    names,
                    list(_EXTRA_COLOURS[: len(fields)]),
                    stacked=False,
                )
            )
        conflicts = sm.conflict_lists(layers)
        by_county = {
            name: sm.conflict_by_county(layers, name)
            for name in conflicts
            if "XZQDM" in conflicts[name] and sm.conflict_area_field(conflicts[name])
        }
        if by_county:
            codes = sorted({c for t in by_county.values() for c in t["XZQDM"] if c != sm.TOTAL})
            names_by_code = sm.county_names(layers)
            table = pd.DataFrame({"XZQDM": codes})
            series, series_labels = [], []
            for name, t in by_county.items():
                area = sm.conflict_area_field(conflicts[name])
                t = t[t["XZQDM"] != sm.TOTAL].groupby("XZQDM")[f"{area}_GQ"].sum()
                table[name] = table["XZQDM"].map(t).fillna(0.0)
                series.append(name)
                zh, en = sm.LAYER_NAMES.get(name, (name, name))
                series_labels.append(zh if font else en)
            figures.append(
                draw.bars(
                    "chart_conflict",
                    table,
                    [labels.county(c, names_by_code.get(c, "")) for c in codes],
                    series,
                    series_labels,
                    list(_EXTRA_COLOURS[: len(series)]),
                    stacked=False,
                )
            )
        quality = sm.quality_summary(layers)
        if "slope_grades" in quality:
            sg = quality["slope_grades"]
            sg = sg[sg["XZQDM"] != sm.TOTAL]
            grades = [c for c in sg.columns if c not in ("XZQDM", "XZQMC", sm.TOTAL)]
            cats_q = [labels.county(c, n) for c, n in zip(sg["XZQDM"], sg["XZQMC"], strict=True)]
            cmap = ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027", "#7f7f7f"]
            figures.append(
                draw.bars(
                    "chart_slope",
                    sg,
                    cats_q,
                    grades,
                    [f"{labels.text('slope_grade')} {g}" for g in grades],
                    [cmap[min(i, len(cmap) - 1)] for i in range(len(grades))],
                )
            )
        for name, frame in conflicts.items():
            fig = draw.conflict_map(name, frame)
            if fig is not None:
                figures.append(fig)
    return figures


# ------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC",
"WenQuanYi Micro Hei",SimHei,sans-serif;margin:0;color:#222;background:#fafaf7;line-height:1.5}
main{max-width:1180px;margin:0 auto;padding:16px 28px 48px}
h1{font-size:26px;margin:12px 0 2px}h2{font-size:20px;border-bottom:2px solid #6b4f2a;
padding-bottom:4px;margin-top:36px}h3{font-size:16px;margin:22px 0 6px}
.sub{color:#666;font-size:13px}nav{background:#fff;border:1px solid #ddd;padding:8px 14px;
margin:14px 0;font-size:14px}nav a{margin-right:14px;color:#6b4f2a;text-decoration:none}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0 14px}
th,td{border:1px solid #ccc;padding:3px 7px}th{background:#efe9dc;font-weight:600;
text-align:center}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:700;background:#f5f1e8}.ok{color:#1a7f37;font-weight:700}
.bad{color:#c62828;font-weight:700}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:170px}
.card b{display:block;font-size:20px}figure{margin:10px 0 20px;background:#fff;
border:1px solid #ddd;padding:8px;display:inline-block}figure img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#555;text-align:center}pre{background:#fff;border:1px solid #ddd;
padding:8px;font-size:12px;overflow:auto;max-height:360px}.muted{color:#777}
"""


def _fmt(value: object, kind: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if kind == "text":
        return "" if pd.isna(value) else str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if kind == "int":
        return f"{round(v):,d}"
    if kind == "ha":
        return f"{v:,.4f}"
    if kind == "share":
        return f"{100 * v:.2f}%"
    return f"{v:,.2f}"


def _html_table(table: Table, max_rows: int | None = None) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in table.headers)
    body = []
    frame = table.frame
    n = len(frame)
    shown = frame if max_rows is None or n <= max_rows else frame.head(max_rows)
    values = shown.to_numpy(dtype=object)
    for i, row in enumerate(values):
        cls = ' class="total"' if table.total_row and max_rows is None and i == n - 1 else ""
        cells = []
        for value, kind in zip(row, table.kinds, strict=True):
            text = e(_fmt(value, kind))
            if kind == "text" and text in (sm.MET, sm.NOT_MET):
                text = f'<span class="{"ok" if text == sm.MET else "bad"}">{text}</span>'
            num = ' class="n"' if kind != "text" else ""
            cells.append(f"<td{num}>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    more = ""
    if max_rows is not None and n > max_rows:
        more = f'<p class="muted">前 {max_rows} 条，共 {n} 条（first {max_rows} of {n} rows）</p>'
    title = f"<h3>{e(table.title)}</h3>" if table.title else ""
    note = f'<p class="muted">{e(table.note)}</p>' if table.note else ""
    return (
        f'{title}{note}<table id="t-{e(table.key)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )


def _img(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    cap = html.escape(fig.caption)
    return (
        f'<figure id="f-{html.escape(fig.key)}"><img alt="{cap}" '
        f'src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'
    )


def _kv(rows: list[tuple[str, object]]) -> str:
    e = html.escape
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _section(key: str, body: str) -> str:
    zh, en = TEXT[key]
    return f'<section id="{key}"><h2>{zh} <span class="sub">{en}</span></h2>{body}</section>'


def _job_section(meta: dict, archive_path: str, layers: Mapping[str, pd.DataFrame]) -> str:
    e = html.escape
    versions = meta.get("versions") or {}
    rows = [
        ("档案文件 archive", archive_path),
        ("调查年度 survey year", meta.get("survey_year", "")),
        ("任务配置 config", meta.get("config_file", "")),
        ("坐标系 CRS", meta.get("crs", "")),
        ("生成时间 created", meta.get("created", "")),
        ("程序版本 blacksoil", versions.get("blacksoil", "")),
        ("黑土土类 black-soil groups", "、".join(map(str, meta.get("black_soil_groups") or []))),
        ("耕地地类 cultivated codes", ", ".join(map(str, meta.get("cultivated_codes") or []))),
    ]
    out = [_kv(rows)]
    inputs = meta.get("inputs") or {}
    if inputs:
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "输入 input",
                "文件 path",
                "图层 layer",
                "筛选 where",
                "指纹 fingerprint",
            )
        )
        body = "".join(
            f"<tr><td>{e(str(name))}</td><td>{e(str(spec.get('path', '')))}</td>"
            f"<td>{e(str(spec.get('layer') or ''))}</td><td>{e(str(spec.get('where') or ''))}</td>"
            f"<td><code>{e(str(spec.get('fingerprint', '')))}</code></td></tr>"
            for name, spec in inputs.items()
            if isinstance(spec, dict)
        )
        out.append(
            f'<h3>输入数据 Inputs</h3><table id="t-inputs"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>"
        )
    counts = meta.get("counts") or {}
    if counts:
        out.append(
            "<h3>计数 Counts</h3>"
            + _kv([(k, f"{v:,}" if isinstance(v, int) else v) for k, v in counts.items()])
        )
    layer_rows = [
        (f"{name} {sm.layer_title(name)}", f"{len(frame):,}") for name, frame in layers.items()
    ]
    out.append("<h3>档案图层 Archive layers</h3>" + _kv(layer_rows))
    if meta.get("config"):
        text = json.dumps(meta["config"], ensure_ascii=False, indent=2)
        out.append(
            f"<details><summary>配置内容 configuration</summary><pre>{e(text)}</pre></details>"
        )
    return _section("job", "".join(out))


def _checks_section(meta: dict, layers: Mapping[str, pd.DataFrame]) -> str:
    e = html.escape
    out = []
    cons = meta.get("conservation") or {}
    balance = layers.get(arc.BALANCE)
    unbalanced = int((balance["BALANCED"] == 0).sum()) if balance is not None else None
    passed = bool(cons.get("passed")) if cons else unbalanced == 0
    if cons or balance is not None:
        verdict = (
            '<span class="ok">通过 PASSED</span>'
            if passed
            else ('<span class="bad">未通过 FAILED</span>')
        )
        rows = [
            ("面积守恒 conservation", ""),
            (
                "核查耕地图斑 parcels",
                cons.get("parcels", len(balance) if balance is not None else ""),
            ),
            (
                "不平衡图斑 unbalanced",
                unbalanced if unbalanced is not None else cons.get("unbalanced"),
            ),
            ("最大相对误差 max relative error", f"{float(cons.get('max_rel_error', 0)):.3e}"),
            ("容差 tolerance", cons.get("tolerance", "")),
        ]
        table = _kv(rows).replace("<td></td>", f"<td>{verdict}</td>", 1)
        out.append(f'<div id="conservation">{table}</div>')
    rec = meta.get("reconciliation") or {}
    if rec:
        ok = bool(rec.get("passed"))
        verdict = (
            '<span class="ok">通过 PASSED</span>'
            if ok
            else ('<span class="bad">未通过 FAILED</span>')
        )
        out.append(f"<h3>县级核对 Reconciliation: {verdict}</h3>")
        counties = rec.get("counties") or {}
        if counties:
            cols = ["TBMJ", "TBMJ_pieces", "TBDLMJ", "TBDLMJ_pieces", "TBMJ_input"]
            head = "<th>XZQDM</th>" + "".join(f"<th>{c}（m²）</th>" for c in cols)
            body = "".join(
                f"<tr><td>{e(code)}</td>"
                + "".join(f'<td class="n">{_fmt(v.get(c), "m2")}</td>' for c in cols)
                + "</tr>"
                for code, v in counties.items()
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return _section("checks", "".join(out) or '<p class="muted">—</p>')


def render_html(
    layers: Mapping[str, pd.DataFrame],
    tables: list[Table],
    figures: list[Figure],
    *,
    archive_path: str,
) -> str:
    """The report page as one self-contained HTML string."""
    e = html.escape
    meta = sm.metadata(layers)
    by_key = {t.key: t for t in tables}
    figs = {f.key: f for f in figures}
    totals = sm.county_totals(layers).iloc[-1]
    cards = [
        ("黑土耕地面积 m²", f"{totals['TBDLMJ']:,.2f}"),
        ("公顷 ha", f"{totals['TBDLMJ_GQ']:,.4f}"),
        ("亩 mu", f"{totals['TBDLMJ_MU']:,.2f}"),
        ("图斑 pieces", f"{int(totals['TBGS']):,}"),
    ]
    if "HTZB" in totals and pd.notna(totals["HTZB"]):
        cards.append(("占耕地 share of cultivated", f"{100 * totals['HTZB']:.2f}%"))
    card_html = "".join(f'<div class="card">{e(k)}<b>{e(v)}</b></div>' for k, v in cards)
    sections = [_job_section(meta, archive_path, layers)]

    body = [f'<div class="cards" id="headline">{card_html}</div>']
    for key in ("county_totals", "county_soil_groups", "soil_groups"):
        body.append(_html_table(by_key[key]))
    body += [_img(figs[k]) for k in ("chart_county", "chart_group") if k in figs]
    sections.append(_section("totals", "".join(body)))

    quality = [
        by_key[k] for k in ("quality_means", "slope_grades", "quality_summary") if k in by_key
    ]
    if quality:
        parts = [_html_table(t) for t in quality]
        parts += [_img(figs["chart_slope"])] if "chart_slope" in figs else []
        sections.append(_section("quality", "".join(parts)))
    protection_keys = [
        "protection_status",
        *(LAYER_TABLE_KEYS[n] for n in (*sm.CONFLICT_LAYERS, sm.OFFSET_BALANCE)),
    ]
    protection = [by_key[k] for k in protection_keys if k in by_key]
    if protection:
        parts = [_html_table(t) for t in protection]
        parts += [_img(figs[k]) for k in ("chart_status", "chart_conflict") if k in figs]
        sections.append(_section("protection", "".join(parts)))
    conflicts = sm.conflict_lists(layers)
    if conflicts:
        parts = []
        for name, frame in conflicts.items():
            t = _table(
                layers,
                f"list_{name}",
                frame,
                name,
                title=f"{name} {sm.layer_title(name)}",
                total_row=False,
            )
            parts.append(_html_table(t, max_rows=CONFLICT_ROWS))
            if f"map_{name}" in figs:
                parts.append(_img(figs[f"map_{name}"]))
        sections.append(_section("conflicts", "".join(parts)))
    if "responsibility" in by_key:
        parts = [_html_table(by_key["responsibility"])]
        parts += [_img(figs["chart_target"])] if "chart_target" in figs else []
        sections.append(_section("responsibility", "".join(parts)))
    sections.append(_section("qa", _html_table(by_key["qa"])))
    sections.append(_checks_section(meta, layers))
    if "map_soil_groups" in figs:
        sections.append(_section("maps", _img(figs["map_soil_groups"])))
    if "county_summary" in by_key:
        sections.append(
            '<section id="detail"><h2>汇总明细 <span class="sub">County summary (archive)</span>'
            f"</h2>{_html_table(by_key['county_summary'])}</section>"
        )
    nav = "".join(
        f'<a href="#{k}">{TEXT[k][0]}</a>'
        for k in TEXT
        if any(s.startswith(f'<section id="{k}"') for s in sections)
    )
    year = meta.get("survey_year", "")
    title = f"{TEXT['report'][0]} {year}".strip()
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<h1>{e(title)}</h1><div class="sub">{e(TEXT["report"][1])} · {e(archive_path)}</div>'
        f"<nav>{nav}</nav>{''.join(sections)}</main></body></html>\n"
    )


# ------------------------------------------------------------------------------------ workbook


_NUMBER_FORMATS = {
    "int": "#,##0",
    "m2": "#,##0.00",
    "ha": "#,##0.0000",
    "mu": "#,##0.00",
    "share": "0.00%",
    "num": "#,##0.00",
}


def _cell_value(value: object, kind: str) -> object:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if kind == "text":
        return "" if pd.isna(value) else str(value)
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _width(text: str) -> float:
    return sum(2.0 if ord(ch) > 0x2E7F else 1.1 for ch in text)


def write_workbook(tables: list[Table], path: Path, *, year: object = "") -> None:
    """One sheet per table: title row, header row (Chinese, units), data, totals row in bold."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    thin = Side(style="thin", color="999999")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    head_fill = PatternFill("solid", fgColor="EFE9DC")
    total_fill = PatternFill("solid", fgColor="F5F1E8")
    used: set[str] = set()
    for table in tables:
        name = _sheet_name(table.sheet, used)
        ws = wb.create_sheet(name)
        ncol = len(table.headers)
        ws.cell(row=1, column=1, value=f"{table.title}（{year}年）" if year else table.title)
        ws.cell(row=1, column=1).font = Font(bold=True, size=14)
        ws.cell(row=1, column=1).alignment = Alignment(horizontal="center")
        if ncol > 1:
            ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncol)
        for j, header in enumerate(table.headers, start=1):
            c = ws.cell(row=2, column=j, value=header)
            c.font = Font(bold=True)
            c.fill = head_fill
            c.border = border
            c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        values = table.frame.to_numpy(dtype=object)
        n = len(values)
        for i, row in enumerate(values):
            total = table.total_row and i == n - 1
            for j, (value, kind) in enumerate(zip(row, table.kinds, strict=True), start=1):
                c = ws.cell(row=3 + i, column=j, value=_cell_value(value, kind))
                c.border = border
                if kind != "text":
                    c.number_format = _NUMBER_FORMATS.get(kind, "General")
                if total:
                    c.font = Font(bold=True)
                    c.fill = total_fill
        for j, header in enumerate(table.headers, start=1):
            cells = [_width(_fmt(v, table.kinds[j - 1])) for v in values[:, j - 1]]
            longest = max([_width(header) / 1.6, *cells])
            ws.column_dimensions[get_column_letter(j)].width = min(max(8.0, longest + 2), 48.0)
        ws.row_dimensions[2].height = 32
        ws.freeze_panes = "A3"
    _atomic(path, wb.save)


def _sheet_name(name: str, used: set[str]) -> str:
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in name)[:31] or "Sheet"
    out, i = clean, 2
    while out in used:
        suffix = f"_{i}"
        out = clean[: 31 - len(suffix)] + suffix
        i += 1
    used.add(out)
    return out


def write_csv(table: Table, path: Path) -> None:
    """The table as UTF-8 CSV with BOM: one header row (Chinese, units), the data rows."""
    frame = table.frame.copy()
    for col, kind in zip(frame.columns, table.kinds, strict=True):
        if kind in ("m2", "mu", "num"):
            frame[col] = frame[col].astype(float).round(2)
        elif kind in ("ha", "share"):
            frame[col] = frame[col].astype(float).round(6)
    frame.columns = table.headers
    _atomic(path, lambda p: frame.to_csv(p, index=False, encoding="utf-8-sig"))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write ({err})") from err
        raise


# ------------------------------------------------------------------------------------ entry


def write_report(
    archive: str | Path,
    folder: str | Path,
    *,
    targets: str | Path | pd.Series | None = None,
    base: str | Path | None = None,
    overwrite: bool = False,
) -> ReportFiles:
    """Write the report folder of an archive: ``report.html``, ``summary.xlsx`` and ``csv/``.

    Parameters
    ----------
    archive : path
        The survey archive (GeoPackage).
    folder : path
        The report folder (created where missing).
    targets : path or Series, optional
        Protection targets per county for the responsibility assessment: a CSV with ``XZQDM``
        and ``MBMJ_GQ`` (公顷), ``MBMJ_MU`` (亩) or ``MBMJ`` (m²), see
        :func:`pipeline.summaries.read_targets`, or a Series county code → m².
    base : path, optional
        A base-year archive: its black-soil farmland per county is the target where ``targets``
        gives none, and the change is measured from it.
    overwrite : bool
        Replace the report files of an existing report.

    Returns
    -------
    ReportFiles

    Raises
    ------
    InputError
        The archive (or base archive, or target table) cannot be read.
    UsageError
        The folder already holds a report and ``overwrite`` is false.
    OutputError
        The folder or a file cannot be written.

    Examples
    --------
    >>> from pipeline import write_report
    >>> write_report("out/demo_archive.gpkg", "out/demo_report", overwrite=True)  # doctest: +SKIP
    """
    archive = Path(archive)
    folder = Path(folder)
    html_path, xlsx_path, csv_dir = folder / HTML_NAME, folder / XLSX_NAME, folder / CSV_FOLDER
    layers = sm.load(archive)
    check_report_folder(folder, overwrite)
    responsibility = None
    if targets is not None or base is not None:
        base_layers = sm.load(base) if base is not None else None
        responsibility = sm.responsibility_assessment(layers, targets=targets, base=base_layers)
    try:
        csv_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the report folder ({err})") from err
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{folder}: the report folder is not writable")
    meta = sm.metadata(layers)
    font = find_cjk_font()
    if font is None:
        logger.warning("no CJK font installed: map and chart labels are in pinyin/English")
    tables = build_tables(layers, responsibility)
    figures = build_figures(layers, font=font, responsibility=responsibility)
    page = render_html(layers, tables, figures, archive_path=str(archive))
    _atomic(html_path, lambda p: Path(p).write_text(page, encoding="utf-8"))
    write_workbook(tables, xlsx_path, year=meta.get("survey_year", ""))
    written = []
    for table in tables:
        path = csv_dir / f"{table.key}.csv"
        write_csv(table, path)
        written.append(path)
    keep = {p.name for p in written}
    for stale in csv_dir.glob("*.csv"):
        if stale.name not in keep:
            with contextlib.suppress(OSError):
                stale.unlink()
    logger.info("report written: %s", folder)
    return ReportFiles(folder=folder, html=html_path, xlsx=xlsx_path, csv=written)


def check_report_folder(folder: str | Path, overwrite: bool) -> None:
    """Refuse to replace an existing report without ``overwrite``.

    Raises
    ------
    UsageError
        The folder holds report.html, summary.xlsx or csv/*.csv and ``overwrite`` is false.
    """
    folder = Path(folder)
    if overwrite or not folder.exists():
        return
    existing = [p for p in (folder / HTML_NAME, folder / XLSX_NAME) if p.exists()]
    csv_dir = folder / CSV_FOLDER
    if existing or (csv_dir.is_dir() and any(csv_dir.glob("*.csv"))):
        raise UsageError(f"{folder}: the report already exists; use --overwrite to replace it")


def report_folder(archive: str | Path) -> Path:
    """The default report folder of an archive: ``<archive folder>/<archive stem>_report``."""
    archive = Path(archive)
    return archive.with_name(f"{archive.stem}_report")


__all__ = [
    "ReportFiles",
    "check_report_folder",
    "find_cjk_font",
    "report_folder",
    "write_report",
]
