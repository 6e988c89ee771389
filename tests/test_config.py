"""The job config: defaults, validation messages naming the key path, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import ConfigError, load_config


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _minimal() -> dict:
    return {
        "year": 2024,
        "inputs": {"parcels": {"path": "p.gpkg"}, "soil": {"path": "s.gpkg"}},
        "output": {"path": "out/a.gpkg"},
    }


def test_defaults_and_relative_paths(tmp_path):
    cfg = load_config(_write(tmp_path, _minimal()))
    assert cfg.crs == "auto"
    assert cfg.inputs.parcels.path == tmp_path / "p.gpkg"
    assert cfg.output.path == tmp_path / "out" / "a.gpkg"
    assert cfg.inputs.parcels.fields["id"] == "BSM"
    assert cfg.inputs.parcels.fields["landuse"] == "DLBM"
    assert cfg.inputs.soil.fields["soil_type"] == "TL"
    assert cfg.cultivated_codes == ("0101", "0102", "0103")
    assert cfg.black_soil_types["草甸黑土"] == "黑土"
    assert cfg.black_soil_types["D11"] == "黑钙土"
    assert len(cfg.black_soil_groups) == 7
    assert cfg.io.engine == "pyogrio"


def test_field_override_is_explicit(tmp_path):
    data = _minimal()
    data["inputs"]["parcels"]["fields"] = {"id": "bsm_1"}
    cfg = load_config(_write(tmp_path, data))
    assert cfg.inputs.parcels.fields["id"] == "bsm_1"
    assert cfg.inputs.parcels.explicit_fields == {"id"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d.pop("year"), "year: missing required key"),
        (lambda d: d.update(year="2024"), "year: expected an integer"),
        (lambda d: d.update(year=True), "year: expected an integer"),
        (lambda d: d["inputs"].pop("soil"), "inputs.soil: missing required key"),
        (lambda d: d["inputs"]["parcels"].update(lyr="x"), "inputs.parcels.lyr: unknown key"),
        (
            lambda d: d["inputs"]["parcels"].update(fields={"idd": "X"}),
            "inputs.parcels.fields.idd: unknown field name",
        ),
        (lambda d: d["inputs"]["parcels"].pop("path"), "inputs.parcels.path: missing required key"),
        (lambda d: d.update(crs="EPSG:4490"), "crs: EPSG:4490 is not a projected CRS"),
        (lambda d: d.update(crs="nonsense"), "crs: not a coordinate reference system"),
        (lambda d: d.update(min_piece_area=-1), "min_piece_area: expected a non-negative"),
        (lambda d: d.update(cultivated_codes=[101]), "cultivated_codes: expected a list"),
        (lambda d: d.update(io={"engine": "gdal"}), "io.engine: expected one of pyogrio, fiona"),
        (lambda d: d.update(overlay={"max_vertices": 4}), "overlay.max_vertices"),
        (lambda d: d.update(output={"path": "a.shp"}), "output.path: the archive must be a .gpkg"),
        (lambda d: d.update(black_soil_types={"黑土": "x"}), "black_soil_types.黑土"),
    ],
)
def test_bad_config_names_the_key(tmp_path, change, message):
    data = _minimal()
    change(data)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(_write(tmp_path, data))


def test_yaml_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("year: [2024\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_unsafe_yaml_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("year: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_demo_config_loads():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert cfg.inputs.parcels.layer == "DLTB"
    assert cfg.inputs.region is not None


def test_out_override_keeps_the_other_output_keys(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(
        "year: 2024\ninputs: {parcels: {path: p.gpkg}, soil: {path: s.gpkg}}\n"
        "output: {path: a_parquet, format: parquet, crs: 'EPSG:4490'}\n",
        encoding="utf-8",
    )
    cfg = load_config(path, overrides={"output": {"path": str(tmp_path / "b_parquet")}})
    assert cfg.output.path == tmp_path / "b_parquet"
    assert cfg.output.format == "parquet" and cfg.output.crs == "EPSG:4490"
