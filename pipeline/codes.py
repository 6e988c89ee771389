"""Domain code tables: land classes, black-soil soil groups, field dictionary, units.

Defaults here come from national standards (三调 land classification, GB/T 17296-2009 soil
groups); the job config can override the lists that differ between provinces and years.
"""

from __future__ import annotations

#: Cultivated land (耕地): 水田, 水浇地, 旱地.
CULTIVATED_CODES: tuple[str, ...] = ("0101", "0102", "0103")

#: Construction land (建设用地) in the 三调 三大类 grouping.
CONSTRUCTION_CODES: tuple[str, ...] = (
    "05H1", "0508", "0601", "0602", "0603", "0701", "0702", "08H1", "08H2", "0809", "0810",
    "09", "1001", "1002", "1003", "1004", "1005", "1007", "1008", "1009", "1109", "1201",
)  # fmt: skip

#: Land classes that cultivated land turned into when black soil is dug out (盗挖、滥挖):
#: 裸土地, 采矿用地, 坑塘水面.
DIGGING_CODES: tuple[str, ...] = ("1206", "0602", "1104")

#: Land-class names (地类名称, DLMC) of the 三调 classification, by code (DLBM).
LANDUSE_NAMES: dict[str, str] = {
    "0101": "水田", "0102": "水浇地", "0103": "旱地",
    "0201": "果园", "0202": "茶园", "0203": "橡胶园", "0204": "其他园地",
    "0301": "乔木林地", "0302": "竹林地", "0303": "红树林地", "0304": "森林沼泽",
    "0305": "灌木林地", "0306": "灌丛沼泽", "0307": "其他林地",
    "0401": "天然牧草地", "0402": "沼泽草地", "0403": "人工牧草地", "0404": "其他草地",
    "05H1": "商业服务业设施用地", "0508": "物流仓储用地",
    "0601": "工业用地", "0602": "采矿用地", "0603": "盐田",
    "0701": "城镇住宅用地", "0702": "农村宅基地",
    "08H1": "机关团体新闻出版用地", "08H2": "科教文卫用地", "0809": "公用设施用地",
    "0810": "公园与绿地", "09": "特殊用地",
    "1001": "铁路用地", "1002": "轨道交通用地", "1003": "公路用地", "1004": "城镇村道路用地",
    "1005": "交通服务场站用地", "1006": "农村道路", "1007": "机场用地", "1008": "港口码头用地",
    "1009": "管道运输用地",
    "1101": "河流水面", "1102": "湖泊水面", "1103": "水库水面", "1104": "坑塘水面",
    "1105": "沿海滩涂", "1106": "内陆滩涂", "1107": "沟渠", "1108": "沼泽地",
    "1109": "水工建筑用地", "1110": "冰川及永久积雪",
    "1201": "空闲地", "1202": "设施农用地", "1203": "田坎", "1204": "盐碱地", "1205": "沙地",
    "1206": "裸土地", "1207": "裸岩石砾地",
}  # fmt: skip

#: The seven black-soil soil groups (土类) and their GB/T 17296-2009 codes. Six are confirmed
#: in the literature; the seventh is usually given as 水稻土 (L11). Configurable per job.
BLACK_SOIL_GROUPS: dict[str, str] = {
    "黑土": "C32",
    "黑钙土": "D11",
    "白浆土": "B32",
    "草甸土": "H11",
    "暗棕壤": "B31",
    "棕壤": "B21",
    "水稻土": "L11",
}

#: Sub-types (亚类) that belong to a black-soil group, as named in soil-census maps.
BLACK_SOIL_SUBTYPES: dict[str, str] = {
    "黑土": "黑土", "草甸黑土": "黑土", "白浆化黑土": "黑土", "表潜黑土": "黑土",
    "黑钙土": "黑钙土", "淋溶黑钙土": "黑钙土", "石灰性黑钙土": "黑钙土", "草甸黑钙土": "黑钙土",
    "盐化黑钙土": "黑钙土", "碱化黑钙土": "黑钙土",
    "白浆土": "白浆土", "草甸白浆土": "白浆土", "潜育白浆土": "白浆土",
    "草甸土": "草甸土", "暗色草甸土": "草甸土", "石灰性草甸土": "草甸土", "白浆化草甸土": "草甸土",
    "潜育草甸土": "草甸土", "盐化草甸土": "草甸土", "碱化草甸土": "草甸土",
    "暗棕壤": "暗棕壤", "白浆化暗棕壤": "暗棕壤", "草甸暗棕壤": "暗棕壤", "潜育暗棕壤": "暗棕壤",
    "暗棕壤性土": "暗棕壤",
    "棕壤": "棕壤", "白浆化棕壤": "棕壤", "潮棕壤": "棕壤", "棕壤性土": "棕壤",
    "水稻土": "水稻土", "淹育水稻土": "水稻土", "潴育水稻土": "水稻土", "潜育水稻土": "水稻土",
}  # fmt: skip

#: Square metres per unit.
M2_PER_HECTARE = 10_000.0
M2_PER_MU = 10_000.0 / 15.0

#: Slope grade (耕地坡度级别 GDPDJB) upper bounds in degrees: 1 ≤2°, 2 2–6°, 3 6–15°,
#: 4 15–25°, 5 >25°.
SLOPE_GRADE_BOUNDS: tuple[float, ...] = (2.0, 6.0, 15.0, 25.0)
