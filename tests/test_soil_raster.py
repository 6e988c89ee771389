"""The soil map as a classified raster: the same area rules and invariants as polygons."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import yaml
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer

from conftest import CRS, X0, Y0, box, parcels_frame, run, soil_frame, write_raster
from pipeline import ConfigError, InputError, load_config, soil_raster
from pipeline.config import InputSpec
from pipeline.qa import QALog
from pipeline.soil_raster import soil_from_raster

TABLE = {1: "黑土", 2: "黑钙土", 3: "风沙土"}


def write_soil(path: Path, values: np.ndarray, transform: Affine, crs: str = CRS, **kw) -> Path:
    """A classified soil raster: one-byte codes unless another ``dtype`` is given."""
    return write_raster(path, values, transform, crs, **{"dtype": "uint8", **kw})


def use_soil_raster(job, path: Path, table: dict = TABLE, **spec) -> None:
    job.config["inputs"]["soil"] = {"path": path.name, "raster_values": table, **spec}


def grid(cell: float, x: float, top: float) -> Affine:
    return Affine(cell, 0, X0 + x, 0, -cell, Y0 + top)


def test_parcel_half_on_black_soil(job):
    # 10 m cells from x = -50: 黑土 (1) left of x = 50, 风沙土 (3) right of it
    job.layer(
        "parcels",
        parcels_frame([{"geometry": box(0, 0, 100, 100), "TBMJ": 10000.00, "KCXS": 0.1}]),
        "DLTB",
    )
    values = np.where(np.arange(20) < 10, 1, 3)[None, :].repeat(20, axis=0).astype("uint8")
    use_soil_raster(job, write_soil(job.folder / "soil.tif", values, grid(10, -50, 150)))
    outcome, layers = run(job)
    pieces = layers["HTGDTB"]
    assert len(pieces) == 1
    p = pieces.iloc[0]
    assert p["TL"] == "黑土" and p["TLDM"] == "C32"
    assert p["MJ"] == pytest.approx(5000.0, abs=1e-6)
    assert (p["TBMJ"], p["KCMJ"], p["TBDLMJ"]) == (5000.00, 500.00, 4500.00)
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["HT_MJ"] == pytest.approx(5000.0) and bal["FHT_MJ"] == pytest.approx(5000.0)
    assert bal["WDT_MJ"] == pytest.approx(0.0, abs=1e-6)
    assert outcome.conservation["passed"]
    assert p["TRBM"].startswith("R") and "C" in p["TRBM"]


def test_nodata_is_unmapped_and_unknown_values_are_logged(job):
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 100, 100)}]), "DLTB")
    # 10 m cells over x -50..150: 黑土 to x = 70, nodata (0) 70..80, value 9 (not in the table)
    values = np.full((20, 20), 1, dtype="uint8")
    values[:, 12:13] = 0
    values[:, 13:] = 9
    use_soil_raster(job, write_soil(job.folder / "soil.tif", values, grid(10, -50, 150), nodata=0))
    outcome, layers = run(job)
    bal = layers["HTGD_TBPH"].iloc[0]
    assert bal["HT_MJ"] == pytest.approx(7000.0)
    assert bal["WDT_MJ"] == pytest.approx(1000.0)
    assert bal["FHT_MJ"] == pytest.approx(2000.0)
    assert outcome.conservation["passed"]
    qa = layers["HTGD_ZJJL"]
    assert (qa["problem"] == "cell value 9 not in inputs.soil.raster_values").sum() == 1
    assert (qa["problem"] == "soil type '9' is not a black-soil group").sum() == 1
    assert (qa["problem"] == "gap in the soil map").any()


def _blocks(rng: np.random.Generator, shape: tuple[int, int], block: int) -> np.ndarray:
    """A map of square blocks of random classes 1-3."""
    coarse = rng.integers(1, 4, (shape[0] // block, shape[1] // block), dtype=np.uint8)
    return np.kron(coarse, np.ones((block, block), dtype=np.uint8))


def test_raster_and_polygon_soil_maps_give_the_same_areas(job, tmp_path):
    rng = np.random.default_rng(3)
    values = _blocks(rng, (40, 40), 4)  # 10 m cells, 40 m blocks over (-100..300, -100..300)
    values[rng.random(values.shape) < 0.05] = 2  # scattered single cells of 黑钙土
    transform = grid(10, -100, 300)
    parcels = [
        {"geometry": box(x, y, x + w, y + h)}
        for x, y, w, h in zip(
            rng.uniform(-80, 150, 12),
            rng.uniform(-80, 150, 12),
            rng.uniform(20, 120, 12),
            rng.uniform(20, 120, 12),
            strict=True,
        )
    ]
    # parcels must not overlap: keep a non-overlapping subset
    kept: list = []
    for p in parcels:
        if all(not p["geometry"].intersects(k["geometry"]) for k in kept):
            kept.append(p)
    job.layer("parcels", parcels_frame(kept), "DLTB")
    use_soil_raster(job, write_soil(job.folder / "soil.tif", values, transform))
    outcome_r, raster_layers = run(job)
    assert outcome_r.conservation["passed"] and outcome_r.counts["soil_read"] > 20

    # the same map as one square polygon per cell
    rows, cols = np.indices(values.shape)
    x0, y0 = transform.c - X0, transform.f - Y0
    cells = [
        (TABLE[int(v)], box(x0 + c * 10, y0 - (r + 1) * 10, x0 + (c + 1) * 10, y0 - r * 10))
        for v, r, c in zip(values.ravel(), rows.ravel(), cols.ravel(), strict=True)
    ]
    job.layer("soil", soil_frame(cells), "TRTB")
    _, polygon_layers = run(job)
    by = ["BSM", "TL"]
    r = raster_layers["HTGDTB"].groupby(by)["MJ"].sum()
    p = polygon_layers["HTGDTB"].groupby(by)["MJ"].sum()
    assert r.index.equals(p.index)
    # pieces' MJ is rounded to 0.0001 m² in the archive, and the per-cell map has more pieces
    assert np.allclose(r.to_numpy(), p.to_numpy(), rtol=0, atol=1e-2)
    rb, pb = raster_layers["HTGD_TBPH"], polygon_layers["HTGD_TBPH"]
    for col in ("HT_MJ", "FHT_MJ", "WDT_MJ"):
        assert np.allclose(rb[col].to_numpy(), pb[col].to_numpy(), rtol=0, atol=1e-6)
    # official areas go to the pieces to the cent (largest remainder): the per-cell polygon map
    # cuts parcels into more pieces, so a class may get a cent more or less per piece
    for col in ("HT_TBMJ", "FHT_TBMJ"):
        assert np.allclose(rb[col].to_numpy(), pb[col].to_numpy(), rtol=0, atol=0.1)
    cents = [np.round((b["HT_TBMJ"] + b["FHT_TBMJ"]).to_numpy() * 100) for b in (rb, pb)]
    assert (cents[0] == cents[1]).all()


def test_soil_raster_in_geographic_coordinates(job):
    # EPSG:4490, 0.0005° cells: 黑土 west of a meridian, 风沙土 east of it
    to_geo = Transformer.from_crs(CRS, "EPSG:4490", always_xy=True)
    lon0, lat0 = to_geo.transform(X0 - 200, Y0 + 300)
    values = np.where(np.arange(20) < 6, 1, 3)[None, :].repeat(20, axis=0).astype("uint8")
    cell = 0.0005
    transform = Affine(cell, 0, lon0, 0, -cell, lat0)
    job.layer("parcels", parcels_frame([{"geometry": box(0, 0, 400, 200)}]), "DLTB")
    use_soil_raster(job, write_soil(job.folder / "soil.tif", values, transform, "EPSG:4490"))
    outcome, layers = run(job)
    assert outcome.conservation["passed"]
    bal = layers["HTGD_TBPH"].iloc[0]
    # the dividing meridian, brought into the working CRS, cuts the parcel
    split = lon0 + 6 * cell
    xs = Transformer.from_crs("EPSG:4490", CRS, always_xy=True).transform(
        [split, split], [lat0 - 0.0015, lat0 - 0.0025]
    )[0]
    west = (np.mean(xs) - X0) * 200  # the meridian is straight to < 1 mm over 200 m
    assert bal["HT_MJ"] == pytest.approx(west, rel=1e-4)
    assert bal["HT_MJ"] + bal["FHT_MJ"] == pytest.approx(80000.0)


def test_polygons_and_ids_do_not_depend_on_the_window(tmp_path):
    # 60 × 60 cells of 10 m polygonised by sheets of 16 cells: the polygons a partition gets
    # are the same as in any other read of the same sheets, ids included
    rng = np.random.default_rng(11)
    values = _blocks(rng, (60, 60), 3)
    path = write_soil(tmp_path / "soil.tif", values, grid(10, 0, 600))
    spec = InputSpec(path=path, raster_values=TABLE)
    crs = ProjCRS.from_user_input(CRS)

    def read(x0: float, y0: float, x1: float, y1: float, tile: int = 16) -> gpd.GeoDataFrame:
        bounds = (X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)
        return soil_from_raster(spec, crs, bounds, QALog(), tile_cells=tile).set_index("id")

    whole = read(0, 0, 600, 600)
    part = read(250, 250, 330, 330)  # inside the sheet of cells 16-31 (x, y 160-320 m)
    assert whole.index.is_unique and part.index.is_unique
    assert whole.geometry.area.sum() == pytest.approx(360000.0)
    assert part.geometry.area.sum() == pytest.approx(4 * 160 * 160)  # the 4 sheets it touches
    assert set(part.index) <= set(whole.index)
    same = whole.loc[part.index]
    assert shapely.equals(same.geometry.to_numpy(), part.geometry.to_numpy()).all()
    assert (same["soil_type"] == part["soil_type"]).all()
    # polygons end at sheet edges; ids are the first cell of each polygon in the whole raster
    assert {"R0C0", "R0C16", "R16C0"} <= set(whole.index)
    b = shapely.bounds(whole.geometry.to_numpy()) - [X0, Y0, X0, Y0]
    eps = 1e-6
    assert (np.floor((b[:, 0] + eps) / 160) == np.floor((b[:, 2] - eps) / 160)).all()
    assert (np.floor((600 - b[:, 3] + eps) / 160) == np.floor((600 - b[:, 1] - eps) / 160)).all()
    single = read(0, 0, 600, 600, tile=1024)  # one sheet: fewer, larger polygons
    assert len(single) < len(whole)
    assert single.geometry.area.sum() == pytest.approx(360000.0)


def test_bad_soil_rasters_are_input_errors(tmp_path):
    crs = ProjCRS.from_user_input(CRS)
    qa = QALog()
    floats = np.full((5, 5), 1.5, dtype="float32")
    path = write_soil(tmp_path / "f.tif", floats, grid(10, 0, 50), dtype="float32")
    near = (X0, Y0, X0 + 50, Y0 + 50)
    with pytest.raises(InputError, match="integer cell values"):
        soil_from_raster(InputSpec(path=path, raster_values=TABLE), crs, near, qa)
    ints = write_soil(tmp_path / "i.tif", np.ones((5, 5), "uint8"), grid(10, 0, 50))
    far = (X0 + 5000, Y0, X0 + 5100, Y0 + 100)
    with pytest.raises(InputError, match="does not reach the parcels"):
        soil_from_raster(InputSpec(path=ints, raster_values=TABLE), crs, far, qa)
    empty = write_soil(tmp_path / "e.tif", np.zeros((5, 5), "uint8"), grid(10, 0, 50), nodata=0)
    with pytest.raises(InputError, match="no soil cell with data"):
        soil_from_raster(InputSpec(path=empty, raster_values=TABLE), crs, near, qa)
    # integral codes stored as floats are fine
    whole = write_soil(tmp_path / "w.tif", np.full((5, 5), 2.0), grid(10, 0, 50), dtype="float32")
    frame = soil_from_raster(InputSpec(path=whole, raster_values=TABLE), crs, near, qa)
    assert frame["soil_type"].tolist() == ["黑钙土"]


def _config(tmp_path: Path, soil: dict) -> Path:
    data = {
        "year": 2024,
        "inputs": {"parcels": {"path": "p.gpkg"}, "soil": soil},
        "output": {"path": "out/a.gpkg"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_soil_raster_config(tmp_path):
    cfg = load_config(
        _config(tmp_path, {"path": "soil.tif", "raster_values": {1: "黑土", 2: "D11"}, "band": 2})
    )
    soil = cfg.inputs.soil
    assert soil.raster_values == {1: "黑土", 2: "D11"} and soil.band == 2 and soil.nodata is None
    assert load_config(_config(tmp_path, {"path": "s.gpkg"})).inputs.soil.raster_values is None


@pytest.mark.parametrize(
    ("soil", "message"),
    [
        ({"path": "soil.tif"}, "inputs.soil.raster_values: required for a soil raster"),
        ({"path": "s.tif", "raster_values": {"a": "黑土"}}, "expected integer cell values"),
        ({"path": "s.tif", "raster_values": {1: ""}}, "inputs.soil.raster_values.1: expected"),
        ({"path": "s.tif", "raster_values": {}}, "expected at least one value"),
        ({"path": "s.tif", "raster_values": {1: "黑土"}, "band": 0}, "inputs.soil.band"),
        ({"path": "s.gpkg", "band": 2}, "inputs.soil.band: only for a soil raster"),
    ],
)
def test_soil_raster_config_errors(tmp_path, soil, message):
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, soil))
    assert message in str(err.value)


def test_other_inputs_take_no_raster_keys(tmp_path):
    data = yaml.safe_load(_config(tmp_path, {"path": "s.gpkg"}).read_text(encoding="utf-8"))
    data["inputs"]["parcels"]["raster_values"] = {1: "x"}
    path = tmp_path / "job2.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"inputs\.parcels\.raster_values: unknown key"):
        load_config(path)


def test_reprojected_polygons_still_tile(tmp_path):
    # a soil raster in EPSG:4490 polygonised and brought into GK zone 42: no overlaps, no gaps
    rng = np.random.default_rng(2)
    to_geo = Transformer.from_crs(CRS, "EPSG:4490", always_xy=True)
    lon0, lat0 = to_geo.transform(X0, Y0 + 1000)
    values = _blocks(rng, (30, 30), 3)
    path = write_soil(
        tmp_path / "g.tif", values, Affine(0.0003, 0, lon0, 0, -0.0003, lat0), "EPSG:4490"
    )
    frame = soil_from_raster(
        InputSpec(path=path, raster_values=TABLE),
        ProjCRS.from_user_input(CRS),
        (X0 + 100, Y0, X0 + 500, Y0 + 400),
        QALog(),
    )
    geoms = frame.geometry.to_numpy()
    union = gpd.GeoSeries(geoms).union_all()
    assert frame.geometry.area.sum() == pytest.approx(union.area, rel=1e-12)
    assert frame.geometry.is_valid.all()


def test_same_archive_whatever_the_partitioning(job, monkeypatch):
    # parcels in several 150 m grid partitions over a soil raster read by sheets of 8 cells,
    # with a thickness raster: pieces, their soil polygon ids, archive numbers and quality are
    # the same as in one piece
    monkeypatch.setattr(soil_raster, "TILE_CELLS", 8)
    rng = np.random.default_rng(8)
    values = _blocks(rng, (40, 40), 4)
    use_soil_raster(job, write_soil(job.folder / "soil.tif", values, grid(10, -100, 300)))
    thickness = rng.uniform(10, 80, (40, 40)).astype("float32")
    write_soil(job.folder / "th.tif", thickness, grid(10, -100, 300), dtype="float32")
    job.config["inputs"]["rasters"] = {"thickness": {"path": "th.tif"}}
    cells = [(x, y) for x in range(-80, 280, 60) for y in range(-80, 280, 60)]
    job.layer(
        "parcels",
        parcels_frame([{"geometry": box(x, y, x + 45, y + 50)} for x, y in cells]),
        "DLTB",
    )
    _, one = run(job)
    _, split = run(job, partition={"by": "grid", "grid_size_m": 150})
    a, b = one["HTGDTB"], split["HTGDTB"]
    assert len(a) == len(b) > len(cells)
    for col in ("DABH", "BSM", "TRBM", "TL", "TBMJ", "HTHD_PJ", "HTHD_FGL", "HTHDJB"):
        assert a[col].tolist() == b[col].tolist(), col
    assert np.allclose(a["MJ"], b["MJ"], rtol=0, atol=1e-6)
