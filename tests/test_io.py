"""Reading inputs: formats, both I/O engines, GBK Shapefiles, CRSs, and unrecoverable errors."""

from __future__ import annotations

import geopandas as gpd
import pyogrio
import pytest

from conftest import CRS, X0, Y0, box, parcels_frame, run, soil_frame
from pipeline import InputError

FORMATS = {
    "gpkg": ("parcels.gpkg", "GPKG", "DLTB"),
    "shp": ("parcels.shp", "ESRI Shapefile", None),
    "gdb": ("parcels.gdb", "OpenFileGDB", "DLTB"),
    "parquet": ("parcels.parquet", None, None),
}


def _parcels():
    rows = [
        {"geometry": box(0, 0, 100, 100), "TBMJ": 10000.0, "ZLDWDM": "2201221001010000000"},
        {"geometry": box(100, 0, 200, 100), "TBMJ": 10000.0, "DLBM": "0101", "DLMC": "水田"},
        {"geometry": box(200, 0, 300, 100), "DLBM": "0702", "DLMC": "农村宅基地"},
    ]
    return parcels_frame(rows)


def _soil():
    return soil_frame([("黑土", box(-50, -50, 150, 150)), ("风沙土", box(150, -50, 350, 150))])


def _write(frame: gpd.GeoDataFrame, folder, fmt: str, **kwargs):
    name, driver, layer = FORMATS[fmt]
    path = folder / name
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "gdb":
        # File Geodatabases before ArcGIS Pro 3.2 have no 64-bit integers
        frame = frame.astype({"SJNF": "int32"})
        pyogrio.write_dataframe(frame, path, layer=layer, driver=driver, **kwargs)
    else:
        pyogrio.write_dataframe(frame, path, layer=layer, driver=driver, **kwargs)
    return path, layer


@pytest.mark.parametrize("engine", ["pyogrio", "fiona"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_formats_and_engines_give_the_same_archive(job, fmt, engine):
    if fmt == "parquet" and engine == "fiona":
        pytest.skip("GeoParquet is read through pyarrow whatever the engine")
    path, layer = _write(_parcels(), job.folder, fmt)
    job.config["inputs"]["parcels"] = {"path": path.name, **({"layer": layer} if layer else {})}
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job, io={"engine": engine})
    pieces = layers["HTGDTB"].sort_values("BSM")
    assert pieces["DLBM"].tolist() == ["0103", "0101"]
    assert pieces["TL"].tolist() == ["黑土", "黑土"]
    assert pieces["TBMJ"].tolist() == [10000.0, 5000.0]
    assert pieces["XZQDM"].tolist() == ["220122", "220122"]


@pytest.mark.parametrize("engine", ["pyogrio", "fiona"])
@pytest.mark.parametrize("with_cpg", [True, False])
def test_gbk_shapefile(job, engine, with_cpg):
    soil = soil_frame([("黑钙土", box(-50, -50, 150, 150)), ("草甸土", box(150, -50, 350, 150))])
    path = job.folder / "soil.shp"
    pyogrio.write_dataframe(soil, path, encoding="GBK")
    cpg = path.with_suffix(".cpg")
    if not with_cpg:
        cpg.unlink(missing_ok=True)
    else:
        cpg.write_text("GBK")
    raw = path.with_suffix(".dbf").read_bytes()
    assert "黑钙土".encode("gbk") in raw  # really GBK on disk
    job.config["inputs"]["soil"] = {"path": path.name}
    job.layer("parcels", _parcels(), "DLTB")
    _, layers = run(job, io={"engine": engine})
    assert sorted(layers["HTGDTB"]["TL"]) == ["草甸土", "黑钙土", "黑钙土"]


def test_encoding_override(job):
    soil = soil_frame([("白浆土", box(-50, -50, 350, 150))])
    path = job.folder / "soil.shp"
    pyogrio.write_dataframe(soil, path, encoding="GBK")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    job.config["inputs"]["soil"] = {"path": path.name, "encoding": "GBK"}
    job.layer("parcels", _parcels(), "DLTB")
    _, layers = run(job)
    assert set(layers["HTGDTB"]["TL"]) == {"白浆土"}


def test_where_filter(job):
    job.layer("parcels", _parcels(), "DLTB", where="DLBM = '0101'")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert layers["HTGDTB"]["DLBM"].tolist() == ["0101"]


def test_where_filter_on_geoparquet(job):
    path, _ = _write(_parcels(), job.folder, "parquet")
    job.config["inputs"]["parcels"] = {"path": path.name, "where": "DLBM = '0101'"}
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert layers["HTGDTB"]["DLBM"].tolist() == ["0101"]


def test_a_window_read_keeps_the_layer_order(tmp_path):
    """GDAL returns a GeoPackage window in spatial-index order; the reader puts it back in FID
    order, which decides which of two overlapping polygons is the earlier one."""
    import numpy as np
    import shapely

    from pipeline.config import InputSpec
    from pipeline.qa import QALog
    from pipeline.sources import FID, read_layer

    xy = np.random.default_rng(1).uniform(0, 1000, (200, 2)) + np.array([X0, Y0])
    frame = gpd.GeoDataFrame(
        {"TL": ["黑土"] * 200},
        geometry=shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + 5, xy[:, 1] + 5),
        crs=CRS,
    )
    path = tmp_path / "soil.gpkg"
    pyogrio.write_dataframe(frame, path, layer="TRTB")
    bbox = (X0 + 100, Y0 + 100, X0 + 900, Y0 + 900)
    raw = pyogrio.read_dataframe(path, bbox=bbox, fid_as_index=True)
    assert not raw.index.is_monotonic_increasing  # what GDAL gives
    spec = InputSpec(path=path, layer="TRTB", fields={"soil_type": "TL"})
    read = read_layer(spec, "soil", crs=None, qa=QALog(), bbox=bbox)
    assert read[FID].tolist() == sorted(raw.index)


@pytest.mark.parametrize("covering", [True, False], ids=["bbox-column", "no-bbox-column"])
def test_a_geoparquet_window_keeps_row_numbers_as_fids(tmp_path, monkeypatch, covering):
    """Through a window, a GeoParquet file gives the rows whose box meets it, numbered by their
    rows in the file (as a read of the whole file numbers them), row groups that miss it
    unread; a row without geometry is in no window."""
    import numpy as np
    import shapely

    from pipeline.config import InputSpec
    from pipeline.qa import QALog
    from pipeline.sources import FID, read_layer

    xy = np.random.default_rng(2).uniform(0, 1000, (300, 2)) + np.array([X0, Y0])
    xy = xy[np.argsort(xy[:, 0])]  # row groups of neighbouring features, as sorted files hold
    geoms = shapely.box(xy[:, 0], xy[:, 1], xy[:, 0] + 5, xy[:, 1] + 5).astype(object)
    geoms[7] = None
    frame = gpd.GeoDataFrame({"TL": [f"t{i}" for i in range(300)]}, geometry=geoms, crs=CRS)
    path = tmp_path / "soil.parquet"
    frame.to_parquet(path, write_covering_bbox=covering, row_group_size=25)
    spec = InputSpec(path=path, fields={"soil_type": "TL"})
    whole = read_layer(spec, "soil", crs=None, qa=QALog())
    assert whole[FID].tolist() == list(range(300))
    bbox = (X0 + 100, Y0 + 100, X0 + 300, Y0 + 900)
    import pyarrow.parquet as pq

    groups: list[int] = []
    read_groups = pq.ParquetFile.read_row_groups

    def counted(self, row_groups, *args, **kwargs):
        groups.extend(row_groups)
        return read_groups(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counted)
    read = read_layer(spec, "soil", crs=None, qa=QALog(), bbox=bbox)
    assert (0 < len(groups) < 12) if covering else groups == []  # 12 groups of 25 rows
    b = shapely.bounds(whole.geometry.to_numpy())
    with np.errstate(invalid="ignore"):
        meets = (b[:, 0] <= bbox[2]) & (b[:, 2] >= bbox[0]) & (b[:, 1] <= bbox[3])
        meets &= b[:, 3] >= bbox[1]
    want = whole[meets].reset_index(drop=True)
    assert 0 < len(read) < 300 and read[FID].tolist() == want[FID].tolist()
    assert read["soil_type"].tolist() == want["soil_type"].tolist()
    assert shapely.equals(read.geometry.to_numpy(), want.geometry.to_numpy()).all()
    assert read.crs == whole.crs == CRS
    with pytest.raises(InputError, match="no features"):  # a window off the data
        read_layer(spec, "soil", crs=None, qa=QALog(), bbox=(X0 + 5000, Y0, X0 + 6000, Y0 + 10))


def test_inputs_in_other_crs_are_reprojected(job):
    job.layer("parcels", _parcels(), "DLTB")
    job.layer("soil", _soil().to_crs("EPSG:4490"), "TRTB")
    outcome, layers = run(job)
    assert layers["HTGDTB"]["MJ"].sum() == pytest.approx(15000.0, rel=1e-6)
    assert outcome.conservation["passed"]


def test_geographic_parcels_get_a_gk_zone(job):
    job.layer("parcels", _parcels().to_crs("EPSG:4490"), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert layers["HTGDTB"].crs.to_epsg() == 4530
    assert layers["HTGDTB"]["MJ"].sum() == pytest.approx(15000.0, rel=1e-6)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_crs_override_for_layer_without_crs(job):
    job.layer("parcels", _parcels().set_crs(None, allow_override=True), "DLTB", crs="EPSG:4530")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    assert len(layers["HTGDTB"]) == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda j: j.config["inputs"]["parcels"].update(path="nope.gpkg"),
            "nope.gpkg: file not found",
        ),
        (lambda j: j.config["inputs"]["parcels"].update(layer="XX"), "layer 'XX' not found"),
        (
            lambda j: j.config["inputs"]["parcels"].update(fields={"id": "BSM_X"}),
            "field 'BSM_X' \\(parcels id\\) not found",
        ),
        (
            lambda j: j.config["inputs"]["parcels"].update(where="DLBM = 'none'"),
            "no features after filter",
        ),
        (
            lambda j: j.config["inputs"]["parcels"].update(fields={"county": "NOPE"}),
            "field 'NOPE' \\(parcels county\\) not found",
        ),
    ],
)
def test_unrecoverable_input_errors(job, setup, message):
    job.layer("parcels", _parcels(), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    setup(job)
    with pytest.raises(InputError, match=message):
        run(job)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_no_crs_is_an_error(job):
    job.layer("parcels", _parcels().set_crs(None, allow_override=True), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    with pytest.raises(InputError, match=r"no coordinate reference system; set inputs\.parcels"):
        run(job)


def test_corrupt_file_is_an_error(job):
    (job.folder / "parcels.gpkg").write_bytes(b"not a geopackage at all" * 100)
    job.config["inputs"]["parcels"] = {"path": "parcels.gpkg"}
    job.layer("soil", _soil(), "TRTB")
    with pytest.raises(InputError, match=r"parcels\.gpkg: cannot open"):
        run(job)


def test_no_cultivated_parcels_is_an_error(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 10, 10), "DLBM": "0702"}]), "DLTB")
    job.layer("soil", _soil(), "TRTB")
    with pytest.raises(InputError, match="no cultivated parcels"):
        run(job)


def test_several_layers_need_a_name(job):
    path = job.folder / "both.gpkg"
    _parcels().to_file(path, layer="DLTB")
    _soil().to_file(path, layer="TRTB")
    job.config["inputs"]["parcels"] = {"path": "both.gpkg"}
    job.config["inputs"]["soil"] = {"path": "both.gpkg", "layer": "TRTB"}
    with pytest.raises(InputError, match="holds 2 layers"):
        run(job)


def test_numeric_dlbm_and_text_kcxs_are_repaired(job):
    frame = _parcels()
    frame["DLBM"] = frame["DLBM"].astype(int)
    frame["KCXS"] = ["0.1", "", "x"]
    job.layer("parcels", frame, "DLTB")
    job.layer("soil", _soil(), "TRTB")
    _, layers = run(job)
    pieces = layers["HTGDTB"].sort_values("BSM")
    assert pieces["DLBM"].tolist() == ["0103", "0101"]
    assert pieces["KCMJ"].tolist() == [1000.0, 0.0]
    qa = layers["HTGD_ZJJL"]
    assert (qa["action"] == "converted to text, zero-padded to 4 digits").sum() == 3
    assert (qa["problem"] == "text that is not a number").sum() == 1
    assert CRS == "EPSG:4530"
