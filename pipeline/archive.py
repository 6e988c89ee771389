"""The black-soil farmland archive (黑土耕地档案): its layers, field dictionary and writer.

``write_archive`` writes all layers into a temporary GeoPackage beside the target, adds the
Chinese field titles (``gpkg_data_columns``, which QGIS shows) and renames the file into place
only when it is complete, so a crash never leaves a half-written archive. ``open_archive`` reads
an archive back as GeoDataFrames.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import shapely
from pyproj import CRS

from .errors import InputError, OutputError, PipelineError, UsageError

logger = logging.getLogger(__name__)

#: layer names
PIECES = "HTGDTB"  # 黑土耕地图斑
BALANCE = "HTGD_TBPH"  # 图斑面积平衡
COUNTY_SUMMARY = "HTGD_XZQHZ"  # 县级汇总
QA_LOG = "HTGD_ZJJL"  # 质检记录
METADATA = "HTGD_YXXX"  # 运行信息
DICTIONARY = "HTGD_ZDZD"  # 字段字典
COUNTIES = "HTGD_XZQ"  # 行政区 (boundaries of the surveyed counties)
QUALITY_SUMMARY = "HTGD_ZLHZ"  # 质量汇总 (quality per county and soil group)
OUTSIDE_FARMLAND = "HTGD_DNRHX"  # 待纳入红线 (outside basic farmland)
ZONING_CONFLICTS = "HTGD_GHCT"  # 规划冲突
OCCUPATION = "HTGD_JSZY"  # 建设占用
OCCUPATION_TOTALS = "HTGD_JSZYHZ"  # 建设项目占用汇总
ILLEGAL = "HTGD_WFZY"  # 疑似违法占用
OCCUPATION_BALANCE = "HTGD_ZBPH"  # 占补平衡

LAYER_TITLES: dict[str, str] = {
    PIECES: "黑土耕地图斑",
    BALANCE: "图斑面积平衡表",
    COUNTY_SUMMARY: "县级行政区汇总表",
    COUNTIES: "行政区",
    QUALITY_SUMMARY: "黑土耕地质量汇总表",
    OUTSIDE_FARMLAND: "永久基本农田外黑土耕地（待纳入红线）",
    ZONING_CONFLICTS: "城镇开发边界和生态保护红线内黑土耕地",
    OCCUPATION: "建设项目占用黑土耕地",
    OCCUPATION_TOTALS: "建设项目占用黑土耕地汇总",
    ILLEGAL: "疑似违法占用和盗挖黑土",
    OCCUPATION_BALANCE: "黑土耕地占补平衡表",
    QA_LOG: "质检记录",
    METADATA: "运行信息",
    DICTIONARY: "字段字典",
}

#: (layer, field) → (Chinese name, unit, description). The archive's field dictionary.
FIELDS: dict[str, list[tuple[str, str, str, str]]] = {
    PIECES: [
        ("DABH", "档案编号", "", "archive number: HT + county + year + sequence; stable on rerun"),
        ("BSM", "标识码", "", "source parcel id (DLTB BSM)"),
        ("TBBH", "图斑编号", "", "source parcel number"),
        ("XZQDM", "行政区代码", "", "county code (6 digits)"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("ZLDWDM", "坐落单位代码", "", "village code of the parcel"),
        ("DLBM", "地类编码", "", "land class code"),
        ("DLMC", "地类名称", "", "land class name"),
        ("TL", "土类", "", "black-soil group"),
        ("TLDM", "土类代码", "", "GB/T 17296-2009 group code where known"),
        ("TRLX", "土壤类型", "", "soil type as named on the soil map"),
        ("YL", "亚类", "", "soil sub-type as named on the soil map"),
        ("TRBM", "土壤图斑编码", "", "id of the soil polygon"),
        ("MJ", "平面面积", "m²", "planar area in the working CRS"),
        ("TBMJ", "图斑面积", "m²", "official (ellipsoidal) area allocated to the piece"),
        ("KCXS", "扣除系数", "", "deduction rate of the parcel"),
        ("KCMJ", "扣除面积", "m²", "deduction area allocated to the piece"),
        ("TBDLMJ", "图斑地类面积", "m²", "TBMJ − KCMJ"),
        ("GDLX", "耕地类型", "", "TT terrace / PD slope"),
        ("GDPDJB", "耕地坡度级别", "", "slope grade 1-5"),
        ("SBSL", "合并碎片数", "", "slivers merged into this piece"),
        ("SJNF", "数据年份", "", "survey year"),
        ("JBNT_MJ", "永久基本农田内面积", "m²", "TBDLMJ inside basic farmland (to the cent)"),
        ("JBNT_ZB", "永久基本农田内占比", "", "planar share of the piece inside basic farmland"),
        ("SFWJBNT", "是否有永久基本农田外部分", "", "1 where part of the piece is outside"),
        ("BHZT", "保护状态", "", "in / partly in / outside the basic farmland"),
        ("CZKF_MJ", "城镇开发边界内面积", "m²", "TBDLMJ inside the urban development boundary"),
        ("CZKF_ZB", "城镇开发边界内占比", "", "planar share inside the urban boundary"),
        ("SFCZKF", "是否在城镇开发边界内", "", "1 where any part is inside the urban boundary"),
        ("STHX_MJ", "生态保护红线内面积", "m²", "TBDLMJ inside the ecological red line"),
        ("STHX_ZB", "生态保护红线内占比", "", "planar share inside the ecological red line"),
        ("SFSTHX", "是否在生态保护红线内", "", "1 where any part is inside the red line"),
        ("JSZY_MJ", "建设项目占用面积", "m²", "TBDLMJ under construction projects (union)"),
        ("JSZY_ZB", "建设项目占用占比", "", "planar share under construction projects"),
        ("SFJSZY", "是否被建设项目占用", "", "1 where a construction project overlaps"),
        ("SFWPZY", "是否被未批项目占用", "", "1 where an unapproved project overlaps"),
        ("HTHD_PJ", "黑土层厚度均值", "cm", "black-soil layer thickness, coverage-weighted mean"),
        ("HTHD_MIN", "黑土层厚度最小值", "cm", "thickness: smallest cell value under the piece"),
        ("HTHD_MAX", "黑土层厚度最大值", "cm", "thickness: largest cell value under the piece"),
        ("HTHD_FGL", "黑土层厚度覆盖率", "", "share of the piece over thickness cells with data"),
        (
            "HTHDJB",
            "黑土层厚度级别",
            "",
            "1 薄层 thin ≤30 cm, 2 中层 medium 30-60 cm, 3 厚层 thick >60 cm "
            "(quality.thickness_breaks)",
        ),
        ("YJZ_PJ", "有机质含量均值", "g/kg", "soil organic matter, coverage-weighted mean"),
        ("YJZ_MIN", "有机质含量最小值", "g/kg", "organic matter: smallest value under the piece"),
        ("YJZ_MAX", "有机质含量最大值", "g/kg", "organic matter: largest value under the piece"),
        ("YJZ_FGL", "有机质含量覆盖率", "", "share of the piece over organic-matter data"),
        (
            "YJZJB",
            "有机质含量分级",
            "",
            "second soil census: 1 >40, 2 30-40, 3 20-30, 4 10-20, 5 6-10, 6 ≤6 g/kg "
            "(quality.organic_matter_breaks)",
        ),
        ("GC_PJ", "高程均值", "m", "DEM elevation, coverage-weighted mean"),
        ("GC_MIN", "高程最小值", "m", "elevation: smallest value of a cell under the piece"),
        ("GC_MAX", "高程最大值", "m", "elevation: largest value of a cell under the piece"),
        ("GC_FGL", "高程覆盖率", "", "share of the piece over DEM cells with data"),
        ("PD_PJ", "坡度均值", "°", "slope from the DEM (Horn, metre cell sizes), weighted mean"),
        ("PDJB", "坡度级别（DEM）", "", "grade of PD_PJ: 1 ≤2°, 2 2-6°, 3 6-15°, 4 15-25°, 5 >25°"),
    ],
    BALANCE: [
        ("BSM", "标识码", "", "parcel id"),
        ("XZQDM", "行政区代码", "", "county code"),
        ("DLBM", "地类编码", "", "land class code"),
        ("MJ", "平面面积", "m²", "planar area of the parcel"),
        ("TBMJ", "图斑面积", "m²", "official area of the parcel"),
        ("KCMJ", "扣除面积", "m²", "deduction area of the parcel"),
        ("TBDLMJ", "图斑地类面积", "m²", "TBMJ − KCMJ"),
        ("HT_MJ", "黑土平面面积", "m²", "planar area on black soil"),
        ("FHT_MJ", "非黑土平面面积", "m²", "planar area on other soils"),
        ("WDT_MJ", "无土壤图平面面积", "m²", "planar area in gaps of the soil map"),
        ("QYW_MJ", "黑土区外平面面积", "m²", "planar area outside the black-soil region"),
        ("HT_TBMJ", "黑土图斑面积", "m²", "official area on black soil"),
        ("FHT_TBMJ", "非黑土图斑面积", "m²", "official area on other soils"),
        ("WDT_TBMJ", "无土壤图图斑面积", "m²", "official area in gaps of the soil map"),
        ("QYW_TBMJ", "黑土区外图斑面积", "m²", "official area outside the black-soil region"),
        ("HT_TBDLMJ", "黑土图斑地类面积", "m²", "TBDLMJ on black soil"),
        ("FHT_TBDLMJ", "非黑土图斑地类面积", "m²", "TBDLMJ on other soils"),
        ("WDT_TBDLMJ", "无土壤图图斑地类面积", "m²", "TBDLMJ in gaps of the soil map"),
        ("QYW_TBDLMJ", "黑土区外图斑地类面积", "m²", "TBDLMJ outside the black-soil region"),
        ("SLIVERS", "合并碎片数", "", "slivers merged"),
        ("RESIDUAL", "平衡差", "m²", "MJ − sum of the class areas"),
        ("REL_ERR", "相对误差", "", "|RESIDUAL| / MJ"),
        ("BALANCED", "是否平衡", "", "1 where |RESIDUAL| ≤ max(1e-6 × MJ, 1e-6 m²)"),
    ],
    COUNTY_SUMMARY: [
        ("XZQDM", "行政区代码", "", "county code"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("TL", "土类", "", "black-soil group; 合计 = all groups"),
        ("TBGS", "图斑个数", "", "number of black-soil pieces"),
        ("YTBGS", "涉及耕地图斑个数", "", "number of parcels with black soil"),
        ("MJ", "平面面积", "m²", "planar area"),
        ("TBMJ", "图斑面积", "m²", "official area"),
        ("TBDLMJ", "图斑地类面积", "m²", "official area less deductions"),
        ("TBDLMJ_GQ", "图斑地类面积（公顷）", "ha", "TBDLMJ in hectares"),
        ("TBDLMJ_MU", "图斑地类面积（亩）", "mu", "TBDLMJ in mu (1 ha = 15 mu)"),
        ("GDTBMJ", "耕地图斑面积", "m²", "TBMJ of all surveyed cultivated parcels (合计 rows)"),
        ("GDTBDLMJ", "耕地图斑地类面积", "m²", "TBDLMJ of all surveyed cultivated parcels"),
        ("HTZB", "黑土耕地占比", "", "black-soil TBDLMJ / cultivated TBDLMJ (合计 rows)"),
        ("JBNT_MJ", "永久基本农田内面积", "m²", "black-soil TBDLMJ inside basic farmland"),
        ("DNRHX_MJ", "待纳入红线面积", "m²", "black-soil TBDLMJ outside basic farmland"),
        ("CZKF_MJ", "城镇开发边界内面积", "m²", "black-soil TBDLMJ inside the urban boundary"),
        ("STHX_MJ", "生态保护红线内面积", "m²", "black-soil TBDLMJ inside the ecological red line"),
        ("JSZY_MJ", "建设项目占用面积", "m²", "black-soil TBDLMJ under construction projects"),
    ],
    OUTSIDE_FARMLAND: [
        ("DABH", "档案编号", "", "archive number of the piece"),
        ("BSM", "标识码", "", "source parcel id"),
        ("XZQDM", "行政区代码", "", "county code"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("DLBM", "地类编码", "", "land class code"),
        ("DLMC", "地类名称", "", "land class name"),
        ("TL", "土类", "", "black-soil group"),
        ("MJ", "平面面积", "m²", "planar area of this part"),
        ("TBMJ", "图斑面积", "m²", "official area of this part (shared to the cent)"),
        ("KCMJ", "扣除面积", "m²", "deduction area of this part"),
        ("TBDLMJ", "图斑地类面积", "m²", "TBMJ − KCMJ of this part"),
        ("WZB", "基本农田外占比", "", "planar share of the piece outside basic farmland"),
    ],
    ZONING_CONFLICTS: [
        ("DABH", "档案编号", "", "archive number of the piece"),
        ("BSM", "标识码", "", "source parcel id"),
        ("XZQDM", "行政区代码", "", "county code"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("DLBM", "地类编码", "", "land class code"),
        ("DLMC", "地类名称", "", "land class name"),
        ("TL", "土类", "", "black-soil group"),
        ("FQLX", "分区类型", "", "城镇开发边界 or 生态保护红线"),
        ("FQBM", "分区编码", "", "zone id (GHFQDM / HXBM)"),
        ("FQMC", "分区名称", "", "zone name (GHFQMC / HXMC)"),
        ("FQLB", "分区类别", "", "zone kind (HXLX)"),
        ("MJ", "平面面积", "m²", "planar area of this part"),
        ("TBMJ", "图斑面积", "m²", "official area of this part (shared to the cent)"),
        ("KCMJ", "扣除面积", "m²", "deduction area of this part"),
        ("TBDLMJ", "图斑地类面积", "m²", "TBMJ − KCMJ of this part"),
    ],
    OCCUPATION: [
        ("XMBH", "项目编号", "", "project id (its feature id in the source layer)"),
        ("XMMC", "项目名称", "", "project name"),
        ("PZWH", "批准文号", "", "approval number; empty = unapproved"),
        ("PZRQ", "批准日期", "", "approval date"),
        ("PZZT", "批准状态", "", "已批准 / 未批准"),
        ("DABH", "档案编号", "", "archive number of the piece"),
        ("BSM", "标识码", "", "source parcel id"),
        ("XZQDM", "行政区代码", "", "county code"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("DLBM", "地类编码", "", "land class code"),
        ("DLMC", "地类名称", "", "land class name"),
        ("TL", "土类", "", "black-soil group"),
        ("MJ", "平面面积", "m²", "planar area of the overlap"),
        ("TBMJ", "图斑面积", "m²", "official area of the overlap (piece TBMJ × planar share)"),
        ("TBDLMJ", "图斑地类面积", "m²", "TBDLMJ of the overlap"),
    ],
    OCCUPATION_TOTALS: [
        ("XMBH", "项目编号", "", "project id (its feature id in the source layer)"),
        ("XMMC", "项目名称", "", "project name"),
        ("PZWH", "批准文号", "", "approval number; empty = unapproved"),
        ("PZRQ", "批准日期", "", "approval date"),
        ("PZZT", "批准状态", "", "已批准 / 未批准"),
        ("XMMJ", "项目用地面积", "m²", "planar area of the project polygon"),
        ("TBGS", "占用黑土耕地图斑个数", "", "number of black-soil pieces it overlaps"),
        (
            "ZYMJ",
            "占用黑土耕地平面面积",
            "m²",
            "planar area of black-soil farmland it occupies: its overlaps' MJ (HTGD_JSZY) added up",
        ),
        ("ZYTBDLMJ", "占用黑土耕地面积", "m²", "TBDLMJ of black-soil farmland it occupies"),
    ],
    ILLEGAL: [
        ("LX", "类型", "", "建设占用 (construction) or 盗挖黑土 (digging-out)"),
        ("BGBSM", "变更图斑标识码", "", "change parcel id"),
        ("XZQDM", "行政区代码", "", "county code"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("BGQDLBM", "变更前地类编码", "", "land class before"),
        ("BGQDLMC", "变更前地类名称", "", "land class name before"),
        ("BGHDLBM", "变更后地类编码", "", "land class after"),
        ("BGHDLMC", "变更后地类名称", "", "land class name after"),
        ("TL", "土类", "", "black-soil groups under the change parcel"),
        ("BGMJ", "变更面积", "m²", "official area of the change parcel"),
        ("MJ", "黑土平面面积", "m²", "planar black-soil area of the change parcel"),
        ("HTMJ", "黑土面积", "m²", "official area on black soil (BGMJ shared to the cent)"),
        ("PZFGMJ", "已批项目覆盖面积", "m²", "planar area covered by approved projects"),
        ("PZFGBL", "已批项目覆盖比例", "", "covered share; below the rule (0.95) = suspected"),
        ("PZXM", "已批项目", "", "approved projects overlapping the change parcel"),
        ("WPXM", "未批项目", "", "unapproved projects overlapping the change parcel"),
        ("ZJ", "证据说明", "", "evidence: change, black-soil area, approved cover"),
    ],
    OCCUPATION_BALANCE: [
        ("XZQDM", "行政区代码", "", "county code; 合计 = all counties"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("ZYGDMJ", "占用耕地面积", "m²", "cultivated land turned to construction or dug out"),
        ("ZYHTMJ", "占用黑土耕地面积", "m²", "of which on black soil"),
        ("JSZYHTMJ", "建设占用黑土耕地面积", "m²", "black soil turned to construction land"),
        ("DWHTMJ", "盗挖黑土面积", "m²", "black soil turned to bare land, mining or pits"),
        ("WFZYHTMJ", "疑似违法占用黑土面积", "m²", "black soil lost with no approved project"),
        ("QTJSGDMJ", "其他减少耕地面积", "m²", "cultivated land turned to other classes"),
        ("BCGDMJ", "补充耕地面积", "m²", "land turned into cultivated land"),
        ("BCHTMJ", "补充黑土耕地面积", "m²", "of which on black soil"),
        ("GDPHMJ", "耕地占补差额", "m²", "BCGDMJ − ZYGDMJ"),
        ("HTPHMJ", "黑土耕地占补差额", "m²", "BCHTMJ − ZYHTMJ"),
        ("SFPH", "是否占补平衡", "", "是 where HTPHMJ ≥ 0"),
    ],
    QUALITY_SUMMARY: [
        ("XZQDM", "行政区代码", "", "county code; 合计 = all counties"),
        ("XZQMC", "行政区名称", "", "county name"),
        ("TL", "土类", "", "black-soil group; 合计 = all groups"),
        ("TBGS", "图斑个数", "", "number of black-soil pieces"),
        ("TBDLMJ", "图斑地类面积", "m²", "TBDLMJ of the pieces, the area basis of this table"),
        ("HTHD_PJ", "黑土层厚度加权均值", "cm", "mean weighted by TBDLMJ × coverage share"),
        ("HTHD_FGMJ", "黑土层厚度有数据面积", "m²", "sum of TBDLMJ × coverage share"),
        ("HTHDJB1_MJ", "薄层黑土面积", "m²", "TBDLMJ of pieces with HTHDJB 1 (thin)"),
        ("HTHDJB2_MJ", "中层黑土面积", "m²", "TBDLMJ of pieces with HTHDJB 2 (medium)"),
        ("HTHDJB3_MJ", "厚层黑土面积", "m²", "TBDLMJ of pieces with HTHDJB 3 (thick)"),
        ("HTHDJB_WSJMJ", "厚度无数据面积", "m²", "TBDLMJ of pieces without a class"),
        ("YJZ_PJ", "有机质含量加权均值", "g/kg", "mean weighted by TBDLMJ × coverage share"),
        ("YJZ_FGMJ", "有机质含量有数据面积", "m²", "sum of TBDLMJ × coverage share"),
        ("YJZJB1_MJ", "有机质1级面积", "m²", "TBDLMJ of pieces with YJZJB 1"),
        ("YJZJB2_MJ", "有机质2级面积", "m²", "TBDLMJ of pieces with YJZJB 2"),
        ("YJZJB3_MJ", "有机质3级面积", "m²", "TBDLMJ of pieces with YJZJB 3"),
        ("YJZJB4_MJ", "有机质4级面积", "m²", "TBDLMJ of pieces with YJZJB 4"),
        ("YJZJB5_MJ", "有机质5级面积", "m²", "TBDLMJ of pieces with YJZJB 5"),
        ("YJZJB6_MJ", "有机质6级面积", "m²", "TBDLMJ of pieces with YJZJB 6"),
        ("YJZJB_WSJMJ", "有机质无数据面积", "m²", "TBDLMJ of pieces without a grade"),
        ("GC_PJ", "高程加权均值", "m", "mean weighted by TBDLMJ × coverage share"),
        ("GC_FGMJ", "高程有数据面积", "m²", "sum of TBDLMJ × coverage share"),
        ("PD_PJ", "坡度加权均值", "°", "mean slope weighted by TBDLMJ × DEM coverage"),
        ("PDJB1_MJ", "坡度1级面积", "m²", "TBDLMJ of pieces with PDJB 1"),
        ("PDJB2_MJ", "坡度2级面积", "m²", "TBDLMJ of pieces with PDJB 2"),
        ("PDJB3_MJ", "坡度3级面积", "m²", "TBDLMJ of pieces with PDJB 3"),
        ("PDJB4_MJ", "坡度4级面积", "m²", "TBDLMJ of pieces with PDJB 4"),
        ("PDJB5_MJ", "坡度5级面积", "m²", "TBDLMJ of pieces with PDJB 5"),
        ("PDJB_WSJMJ", "坡度无数据面积", "m²", "TBDLMJ of pieces without a slope grade"),
    ],
    COUNTIES: [
        ("XZQDM", "行政区代码", "", "county code"),
        ("XZQMC", "行政区名称", "", "county name"),
    ],
    QA_LOG: [
        ("layer", "图层", "", "input layer"),
        ("feature_id", "要素标识", "", "BSM or feature id in the source"),
        ("check", "检查项", "", "what was checked"),
        ("problem", "问题", "", "what was found"),
        ("action", "处理", "", "repair made or rejection"),
    ],
    METADATA: [
        ("key", "项目", "", "metadata item"),
        ("value", "内容", "", "JSON value"),
    ],
    DICTIONARY: [
        ("layer", "图层", "", "archive layer"),
        ("field", "字段", "", "field name"),
        ("name_zh", "中文名称", "", "Chinese name"),
        ("unit", "单位", "", "unit"),
        ("description", "说明", "", "meaning"),
    ],
}


class LayerStream:
    """A layer written a part at a time, never whole in memory.

    The partition merge passes the layers that grow with the parcels this way: each part is
    merged (one group of counties) and its geometries read from the partitions' GeoParquet
    files, as WKB, only when the writer asks for it.

    Parameters
    ----------
    schema : pyarrow.Schema
        The fields as written (not the geometry); every part is cast to it.
    parts : callable
        ``parts()`` → an iterator of (fields, geometries) for consecutive runs of rows: a
        DataFrame, and an Arrow binary array of WKB MultiPolygons (see :func:`as_multipolygons`)
        or None for a table.
    crs : pyproj.CRS, optional
        The geometries' CRS; None for a table without geometry.
    """

    def __init__(
        self,
        schema: pa.Schema,
        parts: Callable[[], Iterator[tuple[pd.DataFrame, pa.Array | None]]],
        crs: CRS | None = None,
    ) -> None:
        self.schema, self.parts, self.crs = schema, parts, crs

    @property
    def columns(self) -> pd.Index:
        return pd.Index([*self.schema.names, *(["geometry"] if self.crs is not None else [])])

    def chunks(self) -> Iterator[tuple[pd.DataFrame, pa.Array | None]]:
        """(fields, WKB) of consecutive runs of rows (at least one, empty for an empty layer)."""
        empty = True
        for attrs, wkb in self.parts():
            empty = False
            yield attrs, wkb
        if empty:
            yield (
                self.schema.empty_table().to_pandas(),
                (pa.array([], type=pa.binary()) if self.crs is not None else None),
            )

    def frames(self) -> Iterator[pd.DataFrame]:
        """The layer as consecutive GeoDataFrames (DataFrames for a table; see :meth:`chunks`)."""
        for attrs, wkb in self.chunks():
            if wkb is None:
                yield attrs
            else:
                geoms = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
                yield gpd.GeoDataFrame(attrs, geometry=geoms, crs=self.crs)


class GeoStream(LayerStream):
    """A spatial layer whose fields are in memory and whose geometries are fetched
    ``chunk_rows`` rows at a time, as WKB, as the layer is written.

    Attributes
    ----------
    attributes : DataFrame
        The layer's fields, in the layer's row order (no geometry).
    crs : pyproj.CRS
        The geometries' CRS.
    wkb : callable
        ``wkb(start, stop)`` → the geometries of rows ``start:stop`` as an Arrow binary array
        of WKB MultiPolygons (see :func:`as_multipolygons`).
    chunk_rows : int
        Rows per chunk.
    """

    def __init__(
        self,
        attributes: pd.DataFrame,
        crs: CRS,
        wkb: Callable[[int, int], pa.Array],
        chunk_rows: int = 100_000,
    ) -> None:
        self.attributes, self.wkb, self.chunk_rows = attributes, wkb, chunk_rows
        super().__init__(_arrow_schema(attributes), self._slices, crs)

    def __len__(self) -> int:
        return len(self.attributes)

    def _slices(self) -> Iterator[tuple[pd.DataFrame, pa.Array]]:
        n = len(self.attributes)
        for start in range(0, max(n, 1), self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            yield self.attributes.iloc[start:stop].reset_index(drop=True), self.wkb(start, stop)


def as_multipolygons(geoms: np.ndarray) -> np.ndarray:
    """Polygons as one-part MultiPolygons (the archive layers' declared type); others as they
    are."""
    out = np.asarray(geoms, dtype=object).copy()
    single = shapely.get_type_id(out) == shapely.GeometryType.POLYGON
    if single.any():
        out[single] = shapely.multipolygons(out[single][:, None])
    return out


#: the WKB headers (little-endian, two-dimensional) of a MultiPolygon of one part, and of a
#: Polygon of one ring
_ONE_PART = b"\x01\x06\x00\x00\x00\x01\x00\x00\x00"
_ONE_RING = b"\x01\x03\x00\x00\x00\x01\x00\x00\x00"


def _binary(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """An Arrow large binary array over ``data`` (bytes), value i at offsets[i]:offsets[i + 1]."""
    return pa.Array.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _ring_wkb(geoms: np.ndarray, counts: np.ndarray, head: bytes) -> pa.Array:
    """WKB of two-dimensional Polygons of one ring (no hole, not empty) of ``counts`` points,
    written from their coordinates in a few array operations: ``head``, the ring's number of
    points, its points (the bytes shapely writes, without a call per geometry)."""
    n = len(geoms)
    coords = np.ascontiguousarray(shapely.get_coordinates(geoms), dtype="<f8")
    size = len(head) + 4
    heads = np.empty((n, size), np.uint8)
    heads[:, : len(head)] = np.frombuffer(head, np.uint8)
    heads[:, len(head) :] = counts.astype("<u4").view(np.uint8).reshape(n, 4)
    ends = np.zeros(n + 1, np.int64)
    np.cumsum(counts * 16, out=ends[1:])
    return pc.binary_join_element_wise(
        _binary(heads, np.arange(n + 1, dtype=np.int64) * size),
        _binary(coords, ends),
        pa.scalar(b"", pa.large_binary()),
    )


def wkb_array(geoms: np.ndarray, multi: bool = True) -> pa.Array:
    """Geometries as an Arrow binary array of WKB (missing ones null), Polygons as one-part
    MultiPolygons as :func:`as_multipolygons` makes them (``multi=False``: as they are).

    A two-dimensional Polygon without holes, the common case, is written from its coordinates
    (:func:`_ring_wkb`); the others by shapely.
    """
    geoms = np.asarray(geoms, dtype=object)
    polygon = shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON
    counts = np.zeros(len(geoms), dtype=np.int64)
    counts[polygon] = shapely.get_num_coordinates(geoms[polygon])
    plain = polygon & (counts > 0)  # not empty
    plain[plain] = ~shapely.has_z(geoms[plain]) & (
        shapely.get_num_interior_rings(geoms[plain]) == 0
    )
    fast = _ring_wkb(geoms[plain], counts[plain], (_ONE_PART if multi else b"") + _ONE_RING)
    if plain.all():
        return fast.cast(pa.binary())
    others = geoms[~plain]
    if multi:
        others = as_multipolygons(others)
    slow = pa.array(shapely.to_wkb(others, byte_order=1), type=pa.large_binary())
    # back in the geometries' order: the plain ones first in the stack, then the others
    order = np.empty(len(geoms), dtype=np.int64)
    order[plain] = np.arange(plain.sum())
    order[~plain] = plain.sum() + np.arange(len(others))
    return pa.concat_arrays([fast, slow]).take(pa.array(order)).cast(pa.binary())


def field_dictionary(
    fields: dict[str, list[tuple[str, str, str, str]]] = FIELDS,
    layers: dict[str, Layer] | None = None,
) -> pd.DataFrame:
    """The field dictionary as a table (layer, field, name_zh, unit, description).

    With ``layers``, only the layers written and the fields they have (plus this table's own).
    """
    rows = [
        (layer, *entry)
        for layer, entries in fields.items()
        for entry in entries
        if layers is None
        or layer == DICTIONARY
        or (layer in layers and entry[0] in layers[layer].columns)
    ]
    return pd.DataFrame(rows, columns=["layer", "field", "name_zh", "unit", "description"])


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse to overwrite an existing archive without ``overwrite``; check the folder exists."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: the archive already exists; use --overwrite to replace it")
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"{path.parent}: cannot create the output folder ({err})") from err
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"{path.parent}: the output folder is not writable")


class Stacked:
    """A layer written in parts into GeoPackages of their own (by several processes, each a
    part), stacked into the archive in order when its turn comes (:func:`stack_layer`).

    Parameters
    ----------
    columns : pandas.Index
        Its fields (and ``geometry`` for a spatial layer), for the field titles and dictionary.
    parts : callable
        ``parts()`` → the parts in the layer's order, each (GeoPackage, layer name there, first
        row, end row) as :func:`stack_layer` takes them.
    """

    def __init__(self, columns: pd.Index, parts: Callable[[], list[StackPart]]) -> None:
        self.columns, self.parts = columns, parts


#: a part of a stacked layer: (GeoPackage, layer, first fid, fid past the last), the fids
#: None for all the layer's rows
StackPart = tuple[Path, str, int | None, int | None]

#: a layer to write: a GeoDataFrame (spatial) or DataFrame (table), a :class:`LayerStream`, a
#: layer written in parts elsewhere (:class:`Stacked`), or a callable giving a frame or
#: stream when its turn comes (made from what was written before it)
Layer = pd.DataFrame | LayerStream | Stacked | Callable[[], pd.DataFrame | LayerStream]


def write_archive(
    path: str | Path,
    layers: dict[str, Layer],
    *,
    overwrite: bool = False,
    fields: dict[str, list[tuple[str, str, str, str]]] = FIELDS,
) -> Path:
    """Write the archive layers into one GeoPackage, atomically.

    Parameters
    ----------
    path : path
        The archive (``.gpkg``).
    layers : dict
        Layer name → GeoDataFrame (spatial layer), DataFrame (table) or :class:`LayerStream`
        (either, written a chunk at a time), written in this order; or a callable giving one
        of those, called when its turn comes and replaced by what it gives in ``layers``, so
        that a later one sees it (the field dictionary of the layers written); or a
        :class:`Stacked` layer, stacked from the GeoPackages its parts were written to.
    overwrite : bool
        Replace an existing archive.
    fields : dict
        Field titles for ``gpkg_data_columns``.

    Returns
    -------
    Path
        The archive path.

    Raises
    ------
    UsageError
        The archive exists and ``overwrite`` is false.
    OutputError
        The file cannot be written (permissions, disk full); nothing is left behind.
    """
    path = Path(path)
    check_output(path, overwrite)
    _remove_stale_temp_files(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.gpkg")
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        with _no_sync():
            for i, name in enumerate(layers):
                if i:
                    _check_still_there(tmp, name)
                _write_layer(tmp, name, made(layers, name), append=bool(i), shown=path)
        _check_still_there(tmp, "the field titles")
        _add_titles(tmp, layers, fields)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        full = _disk_full(tmp.parent)  # before the temporary file gives its space back
        with contextlib.suppress(OSError):
            tmp.unlink()
        for extra in _side_files(tmp):
            with contextlib.suppress(OSError):
                extra.unlink()
        if isinstance(err, OSError | pyogrio.errors.DataSourceError | sqlite3.Error):
            raise OutputError(f"{path}: cannot write the archive ({err}){full}") from err
        if isinstance(err, OutputError) and full:
            raise OutputError(f"{err}{full}") from err
        raise
    logger.info("archive written: %s", path)
    return path


def made(layers: dict[str, Layer], name: str) -> pd.DataFrame | LayerStream | Stacked:
    """Layer ``name`` of ``layers``, made now if it is a callable (and put in its place)."""
    frame = layers[name]
    if callable(frame):
        frame = layers[name] = frame()
    return frame


def write_layers(path: str | Path, layers: dict[str, pd.DataFrame | LayerStream]) -> Path:
    """Write layers into a new GeoPackage as they are, one after another: a scratch file, for
    the parts of :class:`Stacked` layers (not atomic, no field titles; :func:`write_archive`
    for those)."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with _no_sync():
        for i, (name, frame) in enumerate(layers.items()):
            _write_layer(path, name, frame, append=bool(i))
    return path


def _table_sql(con: sqlite3.Connection, schema: str, table: str) -> str | None:
    """The ``CREATE`` statement of table ``table`` in ``schema``; None where it has none."""
    found = con.execute(
        f"SELECT sql FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return None if found is None else found[0]


def _add_srs(con: sqlite3.Connection, srs_id: int, target: str | Path, name: str) -> None:
    columns = _columns(con, "side", "gpkg_spatial_ref_sys")
    theirs = con.execute(
        f"SELECT {columns} FROM side.gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,)
    ).fetchone()
    ours = con.execute(
        f"SELECT {columns} FROM main.gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,)
    ).fetchone()
    if ours is None:
        _copy_rows(con, "gpkg_spatial_ref_sys", "srs_id", srs_id)
    elif ours != theirs:
        raise OutputError(
            f"{target}: cannot stack layer {name}: its CRS number {srs_id} means another CRS there"
        )


def _columns(con: sqlite3.Connection, schema: str, table: str, leave_out: str = "") -> str:
    info = con.execute(f'PRAGMA {schema}.table_info("{table}")')
    return ", ".join(f'"{r[1]}"' for r in info if r[1] != leave_out)


def _same_columns(con: sqlite3.Connection, side: str, main: str) -> bool:
    """Table ``side`` of the attached part has the columns of ``main``'s, in the same order."""
    return _columns(con, "side", side) == _columns(con, "main", main)


def _copy_rows(
    con: sqlite3.Connection, table: str, key: str, value: object, as_name: object = None
) -> None:
    """The rows of a GeoPackage table whose ``key`` is ``value``, from ``side`` into ``main``
    (the table made in ``main`` first where only ``side`` has it; nothing where neither), with
    ``key`` made ``as_name`` where given (and the names GDAL derives from it, as
    :func:`_renamed`)."""
    create = _table_sql(con, "side", table)
    if create is None:
        return
    if _table_sql(con, "main", table) is None:
        con.execute(create)
    columns = _columns(con, "side", table)
    rows = con.execute(f"SELECT {columns} FROM side.{table} WHERE {key} = ?", (value,)).fetchall()
    if as_name is not None and as_name != value:
        rows = [
            tuple(_renamed(v, str(value), str(as_name)) if isinstance(v, str) else v for v in r)
            for r in rows
        ]
    marks = ", ".join("?" * len(columns.split(", ")))
    con.executemany(f"INSERT INTO main.{table} ({columns}) VALUES ({marks})", rows)


def stack_layer(parts: list[StackPart], target: str | Path, name: str) -> None:
    """Write layer ``name`` of GeoPackage ``target`` from ``parts``: layers of other GeoPackages
    (written by GDAL with the same fields and CRS), or runs of their rows by fid, one after
    another. The rows are copied as they are (their geometries' GeoPackage blobs too) and
    numbered on; the spatial index is packed once from the parts' own (:func:`_pack_rtree`)
    instead of being built again row by row. The table, its indexes, triggers and rows in the
    GeoPackage's own tables are the first part's, its extent the union of the parts' layers'
    (which the parts of one layer together hold all of).

    Raises
    ------
    OutputError
        ``target`` holds a layer of that name, or another CRS under the layer's CRS number.
    ValueError
        A part's rows are not numbered one after another.
    """
    con = sqlite3.connect(target, isolation_level=None)
    try:
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone():
            raise OutputError(f"{target}: cannot stack layer {name}: it is there already")
        with _attached(con, parts[0][0]):
            if not con.execute("SELECT 1 FROM main.sqlite_master").fetchone():
                _new_geopackage(con)
            first = parts[0][1]
            schema = con.execute(
                "SELECT type, sql FROM side.sqlite_master WHERE tbl_name = ? AND sql NOT NULL",
                (first,),
            ).fetchall()
            fid = next(r[1] for r in con.execute(f'PRAGMA side.table_info("{first}")') if r[5])
            geometry = con.execute(
                "SELECT column_name FROM side.gpkg_geometry_columns WHERE table_name = ?",
                (first,),
            ).fetchone()
            srs = con.execute(
                "SELECT srs_id FROM side.gpkg_contents WHERE table_name = ?", (first,)
            ).fetchone()
            if srs is not None and srs[0] is not None:  # before anything is written
                _add_srs(con, srs[0], target, name)
        table = _renamed(next(sql for kind, sql in schema if kind == "table"), first, name)
        con.execute(table)
        rtree = None if geometry is None else f"rtree_{first}_{geometry[0]}"
        ids, boxes, extents, rows = [], [], [], 0
        #: each part's layer's index leaves, read once (runs of one layer's rows share them)
        leaves: dict[tuple[Path, str], tuple[np.ndarray, np.ndarray]] = {}
        for path, layer, lo, hi in parts:
            with _attached(con, path):
                where = "" if lo is None else f" WHERE {fid} >= {int(lo)} AND {fid} < {int(hi)}"
                count, low, high = con.execute(
                    f'SELECT count(*), min({fid}), max({fid}) FROM side."{layer}"{where}'
                ).fetchone()
                if count and high - low + 1 != count:
                    raise ValueError(f"{path} layer {layer}: rows not numbered one after another")
                shift = rows - (low or 0) + 1
                if lo is None and shift == 0 and _same_columns(con, layer, name):
                    # a whole layer into the empty table: SQLite copies its records as they
                    # are (its transfer optimisation, twice as fast)
                    insert = f'INSERT INTO main."{name}" SELECT * FROM side."{layer}"'
                else:  # column by column, by name
                    others = _columns(con, "side", layer, leave_out=fid)
                    insert = (
                        f'INSERT INTO main."{name}" ({fid}, {others}) SELECT {fid} + {shift}, '
                        f'{others} FROM side."{layer}"{where} ORDER BY {fid}'
                    )
                con.execute("BEGIN")
                con.execute(insert)
                con.execute("COMMIT")
                if rtree is not None and count:
                    if (path, layer) not in leaves:
                        leaves[path, layer] = _rtree_leaves(con, f"rtree_{layer}_{geometry[0]}")
                    found, box = leaves[path, layer]
                    keep = (found >= low) & (found <= high)
                    ids.append(found[keep] + shift)
                    boxes.append(box[keep])
                extents.append(
                    con.execute(
                        "SELECT min_x, min_y, max_x, max_y FROM side.gpkg_contents "
                        "WHERE table_name = ?",
                        (layer,),
                    ).fetchone()
                )
                rows += count
        with _attached(con, parts[0][0]):
            con.execute("BEGIN")
            for kind, sql in schema:
                if kind == "index":
                    con.execute(_renamed(sql, first, name))
            if rtree is not None:
                con.execute(_renamed(_table_sql(con, "side", rtree), first, name))
                if rows:
                    _pack_rtree(
                        con,
                        f"rtree_{name}_{geometry[0]}",
                        np.concatenate(ids),
                        np.concatenate(boxes),
                    )
            for meta in (
                "gpkg_contents",
                "gpkg_geometry_columns",
                "gpkg_extensions",
                "gpkg_ogr_contents",
            ):
                _copy_rows(con, meta, "table_name", first, as_name=name)
            con.execute(
                "UPDATE gpkg_ogr_contents SET feature_count = ? WHERE table_name = ?", (rows, name)
            )
            known = [e for e in extents if e is not None and e[0] is not None]
            if known:
                box = np.asarray(known, dtype=float)
                con.execute(
                    "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? "
                    "WHERE table_name = ?",
                    (*box[:, :2].min(axis=0).tolist(), *box[:, 2:].max(axis=0).tolist(), name),
                )
            for kind, sql in schema:
                if kind == "trigger":
                    con.execute(_renamed(sql, first, name))
            con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def _new_geopackage(con: sqlite3.Connection) -> None:
    """Make the empty database ``main`` a GeoPackage without layers, as GDAL made ``side``:
    its application id and version, the GeoPackage's own tables and triggers, and the CRS
    rows it starts with (those no layer of ``side`` added)."""
    for pragma in ("application_id", "user_version"):
        value = int(con.execute(f"PRAGMA side.{pragma}").fetchone()[0])
        con.execute(f"PRAGMA main.{pragma} = {value}")
    con.execute("BEGIN")
    schema = con.execute(
        "SELECT type, name, sql FROM side.sqlite_master WHERE tbl_name LIKE 'gpkg%' "
        "AND sql NOT NULL ORDER BY type = 'trigger', rowid"
    ).fetchall()
    for _, _, sql in schema:
        con.execute(sql)
    columns = _columns(con, "side", "gpkg_spatial_ref_sys")
    con.execute(
        f"INSERT INTO main.gpkg_spatial_ref_sys ({columns}) SELECT {columns} "
        "FROM side.gpkg_spatial_ref_sys WHERE srs_id NOT IN (SELECT srs_id FROM side.gpkg_contents "
        "WHERE srs_id NOT NULL)"
    )
    con.execute("COMMIT")


@contextlib.contextmanager
def _attached(con: sqlite3.Connection, path: Path) -> Iterator[None]:
    """GeoPackage ``path`` attached to ``con`` as ``side`` (outside a transaction)."""
    con.execute("ATTACH DATABASE ? AS side", (str(path),))
    try:
        yield
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.execute("DETACH DATABASE side")


def _renamed(sql: str, old: str, new: str) -> str:
    """A table's, index's or trigger's SQL with the layer's name ``old`` (quoted, or in the
    names GDAL derives from it: ``rtree_<layer>_<geometry>``, ``trigger_..._<layer>_...``)
    as ``new``."""
    if old == new:
        return sql
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(old)}(?![A-Za-z0-9])", new, sql)


#: SQLite's R*Tree of two dimensions: a node of 1,228 bytes (a new tree's size on 4 KiB pages),
#: 4 bytes of header (the tree's depth in the root, the cell count) and up to 51 cells of a
#: 64-bit id and four 32-bit coordinates (min x, max x, min y, max y), all big-endian
_RTREE_NODE = 1228
_RTREE_FANOUT = 51
_RTREE_CELL = np.dtype([("id", ">i8"), ("box", ">f4", (4,))])


def _rtree_leaves(con: sqlite3.Connection, rtree: str) -> tuple[np.ndarray, np.ndarray]:
    """The ids and boxes (float32 as stored: min x, max x, min y, max y) in the leaves of
    R-tree ``rtree`` of the attached database ``side``, read from its nodes' blobs."""
    blobs = con.execute(
        f'SELECT data FROM side."{rtree}_node" WHERE nodeno IN '
        f'(SELECT DISTINCT nodeno FROM side."{rtree}_rowid")'
    ).fetchall()
    if not blobs:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    size = len(blobs[0][0])
    nodes = np.frombuffer(b"".join(b for (b,) in blobs), np.uint8).reshape(len(blobs), size)
    counts = nodes[:, 2].astype(np.int64) * 256 + nodes[:, 3]
    fanout = (size - 4) // _RTREE_CELL.itemsize
    cells = (
        np.ascontiguousarray(nodes[:, 4 : 4 + fanout * _RTREE_CELL.itemsize])
        .view(_RTREE_CELL)
        .reshape(len(blobs), fanout)
    )
    used = np.arange(fanout)[None, :] < counts[:, None]
    return cells["id"][used].astype(np.int64), cells["box"][used].astype(np.float32)


def _rtree_floats(boxes: np.ndarray) -> np.ndarray:
    """Boxes (min x, max x, min y, max y) as SQLite's R-tree stores them: 32-bit floats, the
    minimums rounded down and the maximums up as SQLite rounds them (``rtreeValueDown/Up``)."""
    d = np.asarray(boxes, dtype=np.float64)
    f = d.astype(np.float32)
    low = np.zeros(d.shape, bool)
    low[:, [0, 2]] = True
    wrong = np.where(low, f > d, f < d)  # rounded to the nearest, past the box's edge
    # SQLite: a minimum times (1 - 2^-23), or (1 + 2^-23) below zero; a maximum the other way
    scale = np.where(low == (d < 0), 1.0 + 2.0**-23, 1.0 - 2.0**-23)
    f[wrong] = (d[wrong] * scale[wrong]).astype(np.float32)
    return f


def _pack_rtree(con: sqlite3.Connection, rtree: str, ids: np.ndarray, boxes: np.ndarray) -> None:
    """Fill the new, empty R-tree ``rtree`` (in ``main``) with ``ids`` and their ``boxes`` by
    packing it bottom up (sort-tile-recursive: each level's boxes in vertical slices by x, each
    slice by y, 51 to a node), writing its node, rowid and parent tables as SQLite would, the
    way GDAL builds a GeoPackage's index in bulk. Inserting the rows one at a time takes ten
    times as long. The packing depends only on the boxes and ids (the same index every run)."""
    boxes = _rtree_floats(boxes)
    ids = np.asarray(ids, dtype=np.int64)
    rowids, parents, nodes = [], [], []
    depth, next_node = 0, 2
    while len(ids) > _RTREE_FANOUT:
        order = _str_order(boxes)
        ids, boxes = ids[order], boxes[order]
        count = -(-len(ids) // _RTREE_FANOUT)
        numbers = np.arange(next_node, next_node + count, dtype=np.int64)
        next_node += count
        node_of = np.repeat(numbers, _RTREE_FANOUT)[: len(ids)]
        (rowids if depth == 0 else parents).append(np.column_stack([ids, node_of]))
        nodes.append((numbers, _node_blobs(ids, boxes, 0)))
        starts = np.arange(0, len(ids), _RTREE_FANOUT)
        boxes = np.column_stack(
            [
                np.minimum.reduceat(boxes[:, 0], starts),
                np.maximum.reduceat(boxes[:, 1], starts),
                np.minimum.reduceat(boxes[:, 2], starts),
                np.maximum.reduceat(boxes[:, 3], starts),
            ]
        )
        ids, depth = numbers, depth + 1
    (rowids if depth == 0 else parents).append(np.column_stack([ids, np.ones(len(ids), np.int64)]))
    nodes.append((np.array([1], np.int64), _node_blobs(ids, boxes, depth)))
    con.execute(f'DELETE FROM main."{rtree}_node"')
    for numbers, blobs in nodes:
        con.executemany(
            f'INSERT INTO main."{rtree}_node" VALUES (?, ?)',
            zip(numbers.tolist(), blobs, strict=True),
        )
    for table, pairs in (("rowid", rowids), ("parent", parents)):
        if pairs:
            pair = np.concatenate(pairs)
            pair = pair[np.argsort(pair[:, 0], kind="stable")]  # by key: appends to the b-tree
            rows = zip(pair[:, 0].tolist(), pair[:, 1].tolist(), strict=True)
            con.executemany(f'INSERT INTO main."{rtree}_{table}" VALUES (?, ?)', rows)


def _str_order(boxes: np.ndarray) -> np.ndarray:
    """Sort-tile-recursive order of boxes: slices of whole nodes by the centres' x, each slice
    by y (stable, so equal centres keep their order)."""
    n = len(boxes)
    nodes = -(-n // _RTREE_FANOUT)
    per_slice = int(np.ceil(np.sqrt(nodes))) * _RTREE_FANOUT
    cx = boxes[:, 0].astype(np.float64) + boxes[:, 1]
    cy = boxes[:, 2].astype(np.float64) + boxes[:, 3]
    by_x = np.argsort(cx, kind="stable")
    slice_of = np.empty(n, np.int64)
    slice_of[by_x] = np.arange(n) // per_slice
    return np.lexsort((cy, slice_of))


def _node_blobs(ids: np.ndarray, boxes: np.ndarray, depth: int) -> list[bytes]:
    """Nodes of up to 51 consecutive cells, as SQLite's R-tree stores them (the depth only in
    the root, which is the only node given one)."""
    count = -(-len(ids) // _RTREE_FANOUT)
    cells = np.zeros(count * _RTREE_FANOUT, _RTREE_CELL)
    cells["id"][: len(ids)] = ids
    cells["box"][: len(ids)] = boxes
    used = np.full(count, _RTREE_FANOUT, np.int64)
    used[-1] = len(ids) - _RTREE_FANOUT * (count - 1)
    header = np.zeros((count, 4), np.uint8)
    header[:, 0], header[:, 1] = depth >> 8, depth & 0xFF
    header[:, 2], header[:, 3] = used >> 8, used & 0xFF
    body = cells.view(np.uint8).reshape(count, _RTREE_FANOUT * _RTREE_CELL.itemsize)
    pad = np.zeros((count, _RTREE_NODE - 4 - body.shape[1]), np.uint8)
    return [row.tobytes() for row in np.hstack([header, body, pad])]


@contextlib.contextmanager
def _no_sync() -> Iterator[None]:
    """SQLite without a sync per transaction while the temporary archive is written: it is
    synced once, whole, before it is renamed into place (a crash leaves only the temp file)."""
    pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": "OFF"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_SQLITE_SYNCHRONOUS": None})


def _check_still_there(tmp: Path, what: str) -> None:
    """The temp file vanished mid-write (removed by someone else): never publish a partial one."""
    if not tmp.exists():
        raise OSError(f"the temporary archive {tmp.name} disappeared before writing {what}")


#: the files SQLite keeps beside a database being written (its rollback journal or WAL)
_JOURNALS = ("-journal", "-wal", "-shm")


def _remove_stale_temp_files(path: Path) -> None:
    """Remove temporary archives that a killed run left beside ``path`` (their process is gone).

    Only names of exactly this archive's form (``.<stem>.<pid>.tmp.gpkg``, SQLite's side
    files and GDAL's scratch file for a spatial index being built) are considered, so the temp
    file of ``archive.2024.gpkg`` is never taken for one of ``archive.gpkg``.
    """
    journal = "|".join(_JOURNALS)
    own = re.compile(
        rf"^\.{re.escape(path.stem)}\.(\d+)\.tmp\.gpkg"
        rf"({journal}|\.tmp_rtree_.+\.db({journal})?)?$"
    )
    for tmp in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp.gpkg*"):
        match = own.match(tmp.name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()
            logger.info("removed a temporary file left by an interrupted run: %s", tmp)


#: free space below which a failed write is said to have filled the disk
_FULL_BYTES = 64 * 2**20


def _disk_full(folder: Path) -> str:
    """Words to add to a write error where the disk holding ``folder`` is (nearly) full: GDAL
    and SQLite often report a full disk as something else (a failed rollback, a bad batch)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    if free >= _FULL_BYTES:
        return ""
    return f"; the disk is full ({free / 2**20:.1f} MiB free when it failed)"


def _side_files(tmp: Path) -> list[Path]:
    """The files SQLite and GDAL keep beside a GeoPackage being written: the journal, and the
    scratch database GDAL builds a large layer's spatial index in (``.tmp_rtree_<table>.db``),
    which a killed process leaves behind."""
    rtree = tmp.parent.glob(f"{glob.escape(tmp.name)}.tmp_rtree_*.db*")
    return [*(Path(f"{tmp}{extra}") for extra in _JOURNALS), *rtree]


def _alive(pid: int) -> bool:
    if os.name == "nt":  # no harmless liveness probe there: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _write_layer(
    path: Path,
    name: str,
    frame: pd.DataFrame | LayerStream | Stacked,
    *,
    append: bool,
    shown: Path | None = None,
) -> None:
    """One layer into ``path``; errors name ``shown`` (the archive a temporary file becomes)."""
    shown = shown or path
    if isinstance(frame, Stacked):
        try:
            stack_layer(frame.parts(), path, name)
        except sqlite3.Error as err:
            raise OutputError(f"{shown}: cannot write layer {name} ({err})") from err
        return
    if isinstance(frame, LayerStream):
        _write_stream(path, name, frame, append=append, shown=shown)
        return
    frame = frame.reset_index(drop=True)
    spatial = isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame
    try:
        pyogrio.write_dataframe(
            frame,
            path,
            layer=name,
            driver="GPKG",
            append=append,
            promote_to_multi=True if spatial else None,
            geometry_type="MultiPolygon" if spatial else None,
            layer_options={"IDENTIFIER": LAYER_TITLES.get(name, name)},
            use_arrow=True,
        )
    except Exception as err:
        if isinstance(err, OSError):
            raise
        raise OutputError(f"{shown}: cannot write layer {name} ({err})") from err


def _write_stream(
    path: Path, name: str, stream: LayerStream, *, append: bool, shown: Path | None = None
) -> None:
    """One layer from a stream of chunks, in one call (one transaction; for a spatial layer the
    spatial index built once at the end by GDAL), holding one chunk in memory at a time."""
    schema = stream.schema
    spatial = stream.crs is not None
    full = schema.append(pa.field("geometry", pa.binary())) if spatial else schema

    raised: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for attrs, wkb in stream.chunks():
                table = pa.Table.from_pandas(attrs, schema=schema, preserve_index=False)
                if spatial:
                    table = table.append_column(full.field("geometry"), wkb.cast(pa.binary()))
                yield from table.to_batches()
        except BaseException as err:  # GDAL would only see "Error while accessing batch"
            raised.append(err)
            raise

    where: dict[str, object] = {}
    if spatial:
        epsg = stream.crs.to_epsg()
        where = {
            "geometry_name": "geometry",
            "geometry_type": "MultiPolygon",
            "crs": f"EPSG:{epsg}" if epsg else stream.crs.to_wkt("WKT1_GDAL"),
        }
    try:
        pyogrio.write_arrow(
            pa.RecordBatchReader.from_batches(full, batches()),
            path,
            layer=name,
            driver="GPKG",
            append=append,
            layer_options={"IDENTIFIER": LAYER_TITLES.get(name, name)},
            **where,
        )
    except Exception as err:
        cause = raised[0] if raised else err  # the chunks failed to come, not the writing
        if not isinstance(cause, Exception):  # Ctrl-C while the chunks were read
            raise cause from None
        if isinstance(cause, OSError | PipelineError):  # e.g. an input of the chunks is bad
            raise cause from None
        raise OutputError(f"{shown or path}: cannot write layer {name} ({cause})") from cause


def _arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The Arrow schema of the attributes; a column with no value at all becomes text."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for i, fld in enumerate(schema):
        if pa.types.is_null(fld.type):
            schema = schema.set(i, pa.field(fld.name, pa.string()))
    return schema.remove_metadata()


def _add_titles(path: Path, layers: dict[str, pd.DataFrame | LayerStream], fields: dict) -> None:
    """Register Chinese field titles in ``gpkg_data_columns`` (the GeoPackage schema extension)."""
    con = sqlite3.connect(path)
    try:
        with con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS gpkg_data_columns (table_name TEXT NOT NULL, "
                "column_name TEXT NOT NULL, name TEXT, title TEXT, description TEXT, "
                "mime_type TEXT, constraint_name TEXT, "
                "CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name), "
                "CONSTRAINT gdc_tn UNIQUE (table_name, name))"
            )
            con.execute(
                "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT, "
                "extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL, "
                "CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"
            )
            con.execute(
                "INSERT OR IGNORE INTO gpkg_extensions VALUES ('gpkg_data_columns', NULL, "
                "'gpkg_schema', 'http://www.geopackage.org/spec121/#extension_schema', "
                "'read-write')"
            )
            rows = []
            for layer, frame in layers.items():
                present = set(frame.columns)
                for field, name_zh, unit, description in fields.get(layer, []):
                    if field in present:
                        title = f"{name_zh}（{unit}）" if unit else name_zh
                        rows.append((layer, field, field, title, description))
            con.executemany(
                "INSERT OR REPLACE INTO gpkg_data_columns "
                "(table_name, column_name, name, title, description) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        con.close()


def open_archive(path: str | Path, layers: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Open an archive: each layer as a GeoDataFrame (spatial) or DataFrame (table).

    Parameters
    ----------
    path : path
        The archive GeoPackage.
    layers : list of str, optional
        Only these layers (default: all).

    Returns
    -------
    dict
        Layer name → frame, in the archive's order.

    Raises
    ------
    InputError
        The file is missing or not an archive.

    Examples
    --------
    >>> archive = open_archive("out/demo_archive.gpkg")  # doctest: +SKIP
    >>> archive["HTGDTB"].groupby("TL")["TBDLMJ"].sum()  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: archive not found")
    try:
        available = [str(n) for n, *_ in pyogrio.list_layers(path)]
    except Exception as err:
        raise InputError(f"{path}: not a GeoPackage archive ({err})") from err
    if PIECES not in available:
        raise InputError(f"{path}: not a blacksoil archive (no layer {PIECES})")
    wanted = layers or available
    out: dict[str, pd.DataFrame] = {}
    for name in wanted:
        if name not in available:
            raise InputError(f"{path}: layer {name!r} not in the archive")
        out[name] = pyogrio.read_dataframe(path, layer=name, use_arrow=True)
    return out


def read_metadata(path: str | Path) -> dict[str, object]:
    """The archive's run metadata as a dict (values decoded from JSON)."""
    frame = open_archive(path, [METADATA])[METADATA]
    return {k: json.loads(v) for k, v in zip(frame["key"], frame["value"], strict=True)}
