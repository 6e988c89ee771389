"""The report: HTML, workbook and CSV checked against the archive's own figures; offline page;
CJK font and its fallback; protection and conflict layers as they exist; responsibility."""

from __future__ import annotations

import base64
import html.parser
import io
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import pipeline
from cli import cli
from conftest import Job, box, parcels_frame, run, soil_frame
from pipeline import archive as arc
from pipeline import report
from pipeline.errors import InputError, UsageError

# two counties; parcels of 100 m x 100 m with official areas 10000.00 m² (KCXS 0 / 0.1)
#   220122: P1 on 黑土, P2 half 黑土 half 草甸土, P3 on 风沙土 (non-black)
#   220183: P4 on 草甸土 (KCXS 0.1), P5 on 黑土
NONG_AN, DE_HUI = "220122", "220183"


def _county_layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"XZQDM": [NONG_AN, DE_HUI], "XZQMC": ["农安县", "德惠市"]},
        geometry=[box(-100, -100, 650, 200), box(650, -100, 1300, 200)],
        crs="EPSG:4530",
    )


def _build(job: Job) -> Path:
    rows = [
        {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0, "ZLDWDM": NONG_AN + "1001010000000"},
        {"geometry": box(200, 0, 300, 100), "TBMJ": 10000.0, "ZLDWDM": NONG_AN + "1001010000000"},
        {"geometry": box(400, 0, 500, 100), "TBMJ": 10000.0, "ZLDWDM": NONG_AN + "1001010000000"},
        {
            "geometry": box(700, 0, 800, 100),
            "TBMJ": 10000.0,
            "KCXS": 0.1,
            "ZLDWDM": DE_HUI + "1001010000000",
        },
        {"geometry": box(900, 0, 1000, 100), "TBMJ": 10000.0, "ZLDWDM": DE_HUI + "1001010000000"},
    ]
    job.layer("parcels", parcels_frame(rows), "DLTB")
    soil = soil_frame(
        [
            ("黑土", box(-50, -50, 250, 150)),
            ("草甸土", box(250, -50, 350, 150)),
            ("风沙土", box(350, -50, 650, 150)),
            ("草甸土", box(650, -50, 850, 150)),
            ("黑土", box(850, -50, 1100, 150)),
        ]
    )
    job.layer("soil", soil, "TRTB")
    job.layer("counties", _county_layer(), "XZQ")
    outcome, _ = run(job)
    return outcome.archive


#: expected black-soil TBDLMJ (m²) per county and soil group
EXPECTED = {
    (NONG_AN, "黑土"): 15000.00,
    (NONG_AN, "草甸土"): 5000.00,
    (DE_HUI, "草甸土"): 9000.00,
    (DE_HUI, "黑土"): 10000.00,
}


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory) -> Path:
    return _build(Job(tmp_path_factory.mktemp("report_job")))


@pytest.fixture(scope="module")
def small_report(small_archive, tmp_path_factory) -> report.ReportFiles:
    return report.write_report(small_archive, tmp_path_factory.mktemp("rep") / "report")


# ---------------------------------------------------------------------------- summary helpers


def test_summaries_known_answers(small_archive):
    layers = pipeline.open_archive(small_archive)
    counties = pipeline.county_totals(layers)
    assert counties["XZQDM"].tolist() == [NONG_AN, DE_HUI, "合计"]
    assert counties["XZQMC"].tolist()[:2] == ["农安县", "德惠市"]
    assert counties["TBDLMJ"].tolist() == [20000.00, 19000.00, 39000.00]
    assert counties["TBDLMJ_GQ"].tolist() == pytest.approx([2.0, 1.9, 3.9])
    assert counties["TBDLMJ_MU"].tolist() == pytest.approx([30.0, 28.5, 58.5])
    # cultivated land: 3 and 2 parcels (less 1000 m² deduction in 德惠市)
    assert counties["GDTBDLMJ"].tolist() == [30000.0, 19000.0, 49000.0]
    assert counties["HTZB"].tolist() == pytest.approx([2 / 3, 1.0, 39 / 49])

    groups = pipeline.soil_group_totals(layers)
    assert groups["TL"].tolist() == ["黑土", "草甸土", "合计"]
    assert groups["TBDLMJ"].tolist() == [25000.00, 14000.00, 39000.00]
    assert groups["ZB"].tolist() == pytest.approx([25 / 39, 14 / 39, 1.0])

    pivot = pipeline.county_by_soil_group(layers, unit="m²").set_index("XZQDM")
    for (county, group), value in EXPECTED.items():
        assert pivot.loc[county, group] == pytest.approx(value)
    assert pivot.loc["合计", "合计"] == pytest.approx(39000.0)
    with pytest.raises(ValueError, match="unit"):
        pipeline.county_by_soil_group(layers, unit="acre")


def test_summaries_agree_with_the_pieces(small_archive):
    layers = pipeline.open_archive(small_archive)
    pieces = layers["HTGDTB"]
    by = pieces.groupby(["XZQDM", "TL"])["TBDLMJ"].sum()
    assert {k: round(v, 2) for k, v in by.items()} == EXPECTED
    counties = pipeline.county_totals(layers).set_index("XZQDM")
    for code, value in pieces.groupby("XZQDM")["TBDLMJ"].sum().items():
        assert counties.loc[code, "TBDLMJ"] == pytest.approx(value, abs=0.005)


def test_select_county(small_archive):
    layers = pipeline.open_archive(small_archive)
    one = pipeline.select_county(layers, DE_HUI)
    assert set(one["HTGDTB"]["XZQDM"]) == {DE_HUI}
    assert one["HTGDTB"]["TBDLMJ"].sum() == pytest.approx(19000.0)
    assert pipeline.soil_group_totals(one)["TBDLMJ"].iloc[-1] == pytest.approx(19000.0)
    assert len(one["HTGD_ZJJL"]) == len(layers["HTGD_ZJJL"])  # no county field: kept whole
    with pytest.raises(InputError, match="county 999999: no black-soil farmland"):
        pipeline.select_county(layers, "999999")


def test_field_titles_come_from_the_dictionary(small_archive):
    layers = pipeline.open_archive(small_archive)
    assert pipeline.field_title(layers, "HTGD_XZQHZ", "TBDLMJ") == "图斑地类面积（m²）"
    assert pipeline.field_title(layers, "HTGD_XZQHZ", "TBDLMJ", "公顷") == "图斑地类面积（公顷）"
    assert pipeline.field_title(layers, "HTGD_XZQHZ", "TBDLMJ_GQ") == "图斑地类面积（公顷）"
    # a dictionary edited in the archive is what the headers show
    edited = dict(layers)
    d = layers["HTGD_ZDZD"].copy()
    d.loc[(d["layer"] == "HTGD_XZQHZ") & (d["field"] == "TBGS"), "name_zh"] = "图斑数"
    edited["HTGD_ZDZD"] = d
    assert pipeline.field_title(edited, "HTGD_XZQHZ", "TBGS") == "图斑数"
    assert pipeline.field_title(layers, "X", "NOPE") == "NOPE"


def test_qa_summary_counts_the_log(small_archive):
    layers = pipeline.open_archive(small_archive)
    qa = pipeline.qa_summary(layers)
    assert qa.iloc[-1]["layer"] == "合计"
    assert qa.iloc[-1]["count"] == len(layers["HTGD_ZJJL"])
    assert qa["count"].iloc[:-1].sum() == len(layers["HTGD_ZJJL"])


# ---------------------------------------------------------------------------- workbook and CSV


def _sheet(path: Path, name: str) -> tuple[str, list[str], list[list[object]]]:
    from openpyxl import load_workbook

    ws = load_workbook(path)[name]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    return rows[0][0], rows[1], rows[2:]


def test_workbook_county_sheet_matches_the_archive(small_archive, small_report):
    title, headers, rows = _sheet(small_report.xlsx, "县级汇总")
    assert "黑土耕地面积县级汇总表" in title and "2024" in title
    assert headers[:2] == ["行政区代码", "行政区名称"]
    assert "图斑地类面积（m²）" in headers
    assert "图斑地类面积（公顷）" in headers and "图斑地类面积（亩）" in headers
    col = {h: i for i, h in enumerate(headers)}
    assert [r[0] for r in rows] == [NONG_AN, DE_HUI, "合计"]
    summary = pipeline.open_archive(small_archive)["HTGD_XZQHZ"]
    totals = summary[summary["TL"] == "合计"].set_index("XZQDM")["TBDLMJ"]
    for r in rows:
        assert r[col["图斑地类面积（m²）"]] == pytest.approx(totals[r[0]], abs=0.005)
        assert r[col["图斑地类面积（公顷）"]] == pytest.approx(totals[r[0]] / 10_000)
        assert r[col["图斑地类面积（亩）"]] == pytest.approx(totals[r[0]] * 15 / 10_000)
    body = [r[col["图斑地类面积（m²）"]] for r in rows[:-1]]
    assert rows[-1][col["图斑地类面积（m²）"]] == pytest.approx(sum(body))


def test_workbook_soil_group_sheet_and_csv_copies(small_report):
    _, headers, rows = _sheet(small_report.xlsx, "县级土类汇总")
    assert headers[2:] == ["黑土（公顷）", "草甸土（公顷）", "合计（公顷）"]
    values = {
        (r[0], h.removesuffix("（公顷）")): v for r in rows for h, v in zip(headers, r, strict=True)
    }
    for (county, group), m2 in EXPECTED.items():
        assert values[(county, group)] * 10_000 == pytest.approx(m2)
    assert values[("合计", "合计")] * 10_000 == pytest.approx(39000.0)
    csv = pd.read_csv(small_report.folder / "csv" / "county_soil_groups.csv", dtype={0: str})
    assert list(csv.columns) == headers
    assert csv.iloc[:, 0].tolist() == [r[0] for r in rows]
    assert csv.iloc[:, 2:].to_numpy() == pytest.approx(np.array([r[2:] for r in rows], float))
    # every table has its CSV copy, with the BOM Excel needs for Chinese
    names = {p.name for p in small_report.csv}
    assert {"county_totals.csv", "soil_groups.csv", "qa.csv"} <= names
    assert (small_report.folder / "csv" / "county_totals.csv").read_bytes()[:3] == b"\xef\xbb\xbf"


# ---------------------------------------------------------------------------- the page


class _Refs(html.parser.HTMLParser):
    """Collects every URL-valued attribute and the elements that load something."""

    URL_ATTRS: ClassVar[set[str]] = {
        *("src", "href", "srcset", "action", "poster", "data", "xlink:href", "formaction"),
        *("background", "manifest", "ping"),
    }
    LOADERS: ClassVar[set[str]] = {
        "script",
        "link",
        "iframe",
        "object",
        "embed",
        "base",
        "frame",
        "audio",
        "video",
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.loaders: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        if tag in self.LOADERS:
            self.loaders.append(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in self.URL_ATTRS and value is not None:
                self.urls.append(value)
            if name == "style" and value:
                self.styles.append(value)

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def external_references(page: str) -> list[str]:
    """Everything in the page that would load or link something from outside the file."""
    refs = _Refs()
    refs.feed(page)
    bad = [u for u in refs.urls if not (u.startswith("data:") or u.startswith("#"))]
    bad += [f"<{t}>" for t in refs.loaders]
    for css in refs.styles:
        bad += [
            m for m in re.findall(r"url\(\s*['\"]?([^'\")]*)", css) if not m.startswith("data:")
        ]
        bad += re.findall(r"@import|@font-face", css)
    return bad


def test_checker_finds_external_references():
    assert external_references('<img src="http://x/a.png">') == ["http://x/a.png"]
    assert external_references('<a href="https://example.org">x</a>') == ["https://example.org"]
    assert external_references('<link rel="stylesheet" href="s.css">') == ["s.css", "<link>"]
    assert external_references("<style>@font-face{src:url(f.woff)}</style>") == [
        "f.woff",
        "@font-face",
    ]
    assert external_references('<img src="data:image/png;base64,AA"><a href="#t">t</a>') == []


def test_page_holds_no_external_reference(small_report):
    page = small_report.html.read_text(encoding="utf-8")
    assert external_references(page) == []
    assert "<script" not in page
    assert "data:image/png;base64," in page


def test_page_contents_match_the_archive(small_archive, small_report):
    page = small_report.html.read_text(encoding="utf-8")
    meta = pipeline.read_metadata(small_archive)
    for spec in meta["inputs"].values():  # job and inputs with their fingerprints
        assert spec["fingerprint"] in page
    assert "39,000.00" in page and "3.9000" in page and "58.50" in page  # m², 公顷, 亩
    assert "20,000.00" in page and "19,000.00" in page
    assert 'id="conservation"' in page and "PASSED" in page
    assert "Reconciliation" in page
    qa = pipeline.qa_summary(small_archive)
    assert f'<td class="n">{qa.iloc[-1]["count"]:,}</td>' in page
    for key in ("chart_county", "chart_group", "map_soil_groups"):
        assert f'id="f-{key}"' in page
    # every embedded image is a real PNG
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    # no optional section where the archive has no such layers
    assert 'id="conflicts"' not in page and 'id="responsibility"' not in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _chromium() is None,
    reason="Chromium is not installed (Debian: apt-get install chromium); the page is not "
    "checked in a real browser",
)
def test_screenshot_in_headless_chromium(small_report, tmp_path):
    from matplotlib import image

    shot = tmp_path / "page.png"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        small_report.html.as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "Chromium wrote no screenshot"
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1100
    assert pixels.std() > 0.05  # not a blank page
    # the embedded charts were drawn: the 黑土 colour of the bars (#3b3024) is on screen
    target = np.array([0x3B, 0x30, 0x24]) / 255
    assert (np.abs(pixels - target).max(axis=-1) < 0.03).sum() > 500


# ---------------------------------------------------------------------------- fonts


def test_no_cjk_font_labels_are_ascii(small_archive, monkeypatch):
    # filterwarnings=error: a Chinese glyph drawn with a Latin font would fail here
    monkeypatch.setattr(report, "find_cjk_font", lambda: None)
    layers = pipeline.open_archive(small_archive)
    figures = report.build_figures(layers, font=report.find_cjk_font())
    texts = [t for f in figures for t in f.texts]
    assert texts and all(t.isascii() for t in texts), [t for t in texts if not t.isascii()]
    assert any("Heitu" in t for t in texts)  # soil groups in pinyin
    assert any(NONG_AN in t for t in texts)  # counties by code


def test_cjk_font_labels_are_chinese(small_archive):
    layers = pipeline.open_archive(small_archive)
    font = report.find_cjk_font()
    with warnings.catch_warnings():
        if font is None:  # no CJK font here: the label choice is checked with a Latin font
            font = "DejaVu Sans"
            warnings.filterwarnings("ignore", message="Glyph .* missing", category=UserWarning)
        figures = report.build_figures(layers, font=font)
    texts = [t for f in figures for t in f.texts]
    assert "黑土" in texts and "草甸土" in texts
    assert "农安县" in texts
    assert any("黑土耕地" in t for t in texts)


def test_find_cjk_font_looks_in_the_font_manager(monkeypatch):
    from matplotlib import font_manager

    latin = [f for f in font_manager.fontManager.ttflist if f.name == "DejaVu Sans"][:1]
    fake = font_manager.FontEntry(fname="/nonexistent/wqy-microhei.ttc", name="WenQuanYi Micro Hei")
    report._find_cjk_font.cache_clear()
    try:
        monkeypatch.setattr(font_manager.fontManager, "ttflist", [*latin, fake])
        assert report.find_cjk_font() == "WenQuanYi Micro Hei"
        report._find_cjk_font.cache_clear()
        monkeypatch.setattr(font_manager.fontManager, "ttflist", latin)
        monkeypatch.setattr(font_manager, "findSystemFonts", lambda *a, **k: [])
        assert report.find_cjk_font() is None
    finally:
        monkeypatch.undo()
        report._find_cjk_font.cache_clear()


# ---------------------------------------------------------------------------- protection layers


def _with_protection_layers(src: Path, dst: Path) -> Path:
    """The small archive plus protection, conflict and quality layers as the stages write them."""
    layers = pipeline.open_archive(src)
    pieces = layers["HTGDTB"].copy()
    n = len(pieces)
    pieces["JBNT_MJ"] = np.round(pieces["TBDLMJ"].to_numpy() * np.linspace(0, 1, n), 2)
    pieces["CZKF_MJ"] = 0.0
    pieces["HTHD_PJ"] = np.linspace(20, 80, n)
    pieces["PDJB"] = ["1", "2"] * (n // 2) + ["1"] * (n % 2)
    layers["HTGDTB"] = pieces
    geoms = pieces.geometry.to_numpy()
    layers["HTGD_JSZY"] = gpd.GeoDataFrame(
        {
            "XMMC": ["小项目", "大项目", "中项目"],
            "PZWH": ["", "吉政地〔2024〕1号", ""],
            "PZZT": ["未批准", "已批准", "未批准"],
            "XZQDM": [NONG_AN, DE_HUI, NONG_AN],
            "TBDLMJ": [120.5, 4000.25, 800.0],
        },
        geometry=[geoms[0], geoms[-1], geoms[1]],
        crs=pieces.crs,
    )
    layers["HTGD_WFZY"] = gpd.GeoDataFrame(
        {"LX": ["盗挖黑土"], "BGBSM": ["B1"], "XZQDM": [DE_HUI], "HTMJ": [321.0]},
        geometry=[geoms[-1]],
        crs=pieces.crs,
    )
    layers["HTGD_ZBPH"] = pd.DataFrame(
        {
            "XZQDM": [NONG_AN, DE_HUI, "合计"],
            "XZQMC": ["农安县", "德惠市", "全部"],
            "ZYHTMJ": [920.5, 4000.25, 4920.75],
            "SFPH": ["否", "是", "否"],
        }
    )
    ordered = {k: v for k, v in layers.items() if k not in ("HTGD_ZDZD",)}
    ordered["HTGD_ZDZD"] = arc.field_dictionary(arc.FIELDS)
    return arc.write_archive(dst, ordered, overwrite=True)


def test_protection_and_conflicts_as_they_exist(small_archive, tmp_path):
    archive = _with_protection_layers(small_archive, tmp_path / "p.gpkg")
    layers = pipeline.open_archive(archive)
    lists = pipeline.conflict_lists(layers)
    assert list(lists) == ["HTGD_JSZY", "HTGD_WFZY"]
    assert lists["HTGD_JSZY"]["XMMC"].tolist() == ["大项目", "中项目", "小项目"]  # largest first
    status = pipeline.protection_summary(layers)["status"].set_index("XZQDM")
    pieces = layers["HTGDTB"]
    for code, value in pieces.groupby("XZQDM")["JBNT_MJ"].sum().items():
        assert status.loc[code, "JBNT_MJ"] == pytest.approx(value, abs=0.005)
    by_county = pipeline.protection_summary(layers)["HTGD_JSZY"]
    assert by_county["TBDLMJ"].iloc[-1] == pytest.approx(4920.75)

    files = report.write_report(archive, tmp_path / "rep")
    page = files.html.read_text(encoding="utf-8")
    assert external_references(page) == []
    for section in ("protection", "conflicts", "quality"):
        assert f'<section id="{section}"' in page
    for key in ("map_HTGD_JSZY", "map_HTGD_WFZY", "chart_conflict", "chart_status", "chart_slope"):
        assert f'id="f-{key}"' in page
    big, mid, small = (page.index(x) for x in ("大项目", "中项目", "小项目"))
    assert big < mid < small
    from openpyxl import load_workbook

    sheets = load_workbook(files.xlsx).sheetnames
    assert "保护状况" in sheets and "坡度级别" in sheets and "质量均值" in sheets
    _, headers, rows = _sheet(files.xlsx, "保护状况")
    assert pipeline.field_title(layers, "HTGDTB", "JBNT_MJ") in headers
    assert rows[-1][0] == "合计"


# ---------------------------------------------------------------------------- responsibility


def _targets(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_responsibility_from_targets(small_archive, tmp_path):
    path = _targets(tmp_path, f"XZQDM,XZQMC,MBMJ_GQ\n{NONG_AN},农安县,1.5\n{DE_HUI},德惠市,2\n")
    table = pipeline.responsibility_assessment(small_archive, targets=path).set_index("XZQDM")
    assert table.loc[NONG_AN, "SFDB"] == "达标" and table.loc[DE_HUI, "SFDB"] == "未达标"
    assert table.loc[NONG_AN, "CEMJ_GQ"] == pytest.approx(0.5)
    assert table.loc[DE_HUI, "CEMJ_GQ"] == pytest.approx(-0.1)
    assert table.loc["合计", "SFDB"] == "未达标"
    assert table.loc["合计", "MBMJ_GQ"] == pytest.approx(3.5)

    files = report.write_report(small_archive, tmp_path / "rep", targets=path)
    _, headers, rows = _sheet(files.xlsx, "保护责任考核")
    assert "保护目标面积（公顷）" in headers and "是否达标" in headers
    met = {r[0]: r[headers.index("是否达标")] for r in rows}
    assert met == {NONG_AN: "达标", DE_HUI: "未达标", "合计": "未达标"}
    page = files.html.read_text(encoding="utf-8")
    assert '<section id="responsibility"' in page and 'id="f-chart_target"' in page


def test_responsibility_from_a_base_archive(small_archive):
    table = pipeline.responsibility_assessment(small_archive, base=small_archive)
    assert (table["SFDB"] == "达标").all()
    assert table["BHMJ_GQ"].tolist() == pytest.approx([0.0, 0.0, 0.0])
    assert table["JQMJ_GQ"].tolist() == pytest.approx([2.0, 1.9, 3.9])
    with pytest.raises(UsageError):
        pipeline.responsibility_assessment(small_archive)


def test_targets_in_m2_and_counties_without_figures(small_archive, tmp_path):
    path = _targets(tmp_path, f"XZQDM,MBMJ\n{NONG_AN},20000.00\n220999,5000\n")
    table = pipeline.responsibility_assessment(small_archive, targets=path).set_index("XZQDM")
    assert table.loc[NONG_AN, "SFDB"] == "达标"  # exactly the target is met
    assert table.loc["220999", "SFDB"] == "未达标" and table.loc["220999", "BNMJ_GQ"] == 0
    assert table.loc[DE_HUI, "SFDB"] == "无目标"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CODE,MBMJ_GQ\n220122,1\n", "needs a column XZQDM"),
        ("XZQDM,AREA\n220122,1\n", "exactly one target column"),
        ("XZQDM,MBMJ_GQ,MBMJ\n220122,1,1\n", "exactly one target column"),
        ("XZQDM,MBMJ_GQ\n220122,abc\n", "line 2: MBMJ_GQ 'abc' is not a non-negative number"),
        ("XZQDM,MBMJ_GQ\n220122,-1\n", "not a non-negative number"),
        ("XZQDM,MBMJ_GQ\n220122,1\n220122,2\n", "county 220122 appears more than once"),
        ("XZQDM,MBMJ_GQ\n22012,1\n", "is not a county code"),
    ],
)
def test_bad_target_tables(tmp_path, text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        pipeline.read_targets(_targets(tmp_path, text))


# ---------------------------------------------------------------------------- CLI


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_report(small_archive, tmp_path):
    out = tmp_path / "r"
    result = _invoke("report", str(small_archive), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and (out / "summary.xlsx").exists()
    result = _invoke("report", str(small_archive), "--out", str(out))
    assert result.exit_code == 2 and "use --overwrite" in result.output
    bad = _targets(tmp_path, "XZQDM,MBMJ_GQ\n220122,x\n")
    result = _invoke("report", str(small_archive), "--out", str(out), "--overwrite",
                     "--targets", str(bad))  # fmt: skip
    assert result.exit_code == 1 and "not a non-negative number" in result.output
    result = _invoke("report", str(tmp_path / "none.gpkg"), "--out", str(out))
    assert result.exit_code == 1 and "archive not found" in result.output


def test_survey_writes_the_report_beside_the_archive(tmp_path):
    job = Job(tmp_path)
    rows = [{"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0}]
    job.layer("parcels", parcels_frame(rows), "DLTB")
    job.layer("soil", soil_frame([("黑土", box(-50, -50, 150, 150))]), "TRTB")
    targets = _targets(tmp_path, "XZQDM,MBMJ_GQ\n220122,2\n")
    config = job.write(report={"targets": targets.name})
    result = _invoke("-q", "survey", str(config))
    assert result.exit_code == 0, result.output
    folder = job.archive.parent / "archive_report"
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "未达标" in page  # 1 公顷 of black soil against a 2 公顷 target
    # the report is replaced with the archive, and never silently
    result = _invoke("-q", "survey", str(config))
    assert result.exit_code == 2 and "already exists" in result.output
    (folder / "report.html").unlink()
    result = _invoke("-q", "survey", str(config))
    assert result.exit_code == 2  # the workbook is still there
    assert _invoke("-q", "survey", str(config), "--overwrite").exit_code == 0
    assert (folder / "report.html").exists()
    other = tmp_path / "b" / "b.gpkg"
    result = _invoke("-q", "survey", str(config), "--out", str(other), "--no-report")
    assert result.exit_code == 0 and not (other.parent / "b_report").exists()


def test_report_of_an_archive_without_pieces(tmp_path):
    # an archive whose parcels have no black soil still gets a report (zeros, no map)
    job = Job(tmp_path)
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    job.layer("soil", soil_frame([("风沙土", box(-50, -50, 150, 150))]), "TRTB")
    outcome, layers = run(job)
    assert len(layers["HTGDTB"]) == 0
    files = report.write_report(outcome.archive, tmp_path / "rep")
    page = files.html.read_text(encoding="utf-8")
    assert external_references(page) == []
    _, _, rows = _sheet(files.xlsx, "县级汇总")
    assert rows[-1][0] == "合计"


def test_figures_are_pngs(small_archive):
    layers = pipeline.open_archive(small_archive)
    for fig in report.build_figures(layers, font=None):
        from matplotlib import image

        assert image.imread(io.BytesIO(fig.png)).shape[2] in (3, 4)


def test_report_config_block(tmp_path):
    base = {
        "year": 2024,
        "inputs": {"parcels": {"path": "p.gpkg"}, "soil": {"path": "s.gpkg"}},
        "output": {"path": "out/a.gpkg"},
    }
    cfg = pipeline.config_from_dict(
        {**base, "report": {"targets": "t.csv", "base_archive": "/data/2023.gpkg"}}, base=tmp_path
    )
    assert cfg.report.targets == tmp_path / "t.csv"
    assert cfg.report.base_archive == Path("/data/2023.gpkg")
    assert pipeline.config_from_dict(base, base=tmp_path).report.targets is None
    with pytest.raises(pipeline.ConfigError, match=r"report\.target: unknown key"):
        pipeline.config_from_dict({**base, "report": {"target": "t.csv"}}, base=tmp_path)
    with pytest.raises(pipeline.ConfigError, match=r"report\.targets: expected a text"):
        pipeline.config_from_dict({**base, "report": {"targets": 5}}, base=tmp_path)


def test_county_boundaries_from_the_archive_when_it_has_them(small_archive, tmp_path):
    layers = pipeline.open_archive(small_archive)
    layers.pop("HTGD_XZQ", None)  # an archive without the boundary layer (no counties input)
    texts = [t for f in report.build_figures(layers, font=None) for t in f.texts]
    assert "county extent (from the pieces)" in texts  # no boundary layer: drawn around pieces
    layers["HTGD_XZQ"] = _county_layer()
    path = arc.write_archive(tmp_path / "with_counties.gpkg", layers)
    texts = [t for f in report.build_figures(pipeline.open_archive(path), font=None)
             for t in f.texts]  # fmt: skip
    assert "county boundary" in texts and "county extent (from the pieces)" not in texts
