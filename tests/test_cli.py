"""The command line through click's CliRunner: exit codes and one-line messages."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import cli
from conftest import box, parcels_frame, soil_frame


@pytest.fixture
def small_job(job):
    rows = [{"geometry": box(i * 100, 0, i * 100 + 100, 100), "TBMJ": 10000.0} for i in range(4)]
    rows.append({"geometry": box(0, 0, 0, 0)})  # an empty polygon: rejected and logged
    job.layer("parcels", parcels_frame(rows), "DLTB")
    job.layer("soil", soil_frame([("黑土", box(-50, -50, 250, 150))]), "TRTB")
    return job


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_survey_then_inspect(small_job):
    config = small_job.write()
    result = _invoke("survey", str(config))
    assert result.exit_code == 0, result.output
    assert "conservation: PASSED" in result.output
    assert small_job.archive.exists()
    result = _invoke("inspect", str(small_job.archive))
    assert result.exit_code == 0, result.output
    assert "HTGDTB" in result.output and "220122" in result.output and "黑土" in result.output


def test_existing_archive_needs_overwrite(small_job):
    config = small_job.write()
    assert _invoke("survey", str(config)).exit_code == 0
    before = small_job.archive.read_bytes()
    result = _invoke("survey", str(config))
    assert result.exit_code == 2
    assert "already exists; use --overwrite" in result.output
    assert small_job.archive.read_bytes() == before
    assert _invoke("survey", str(config), "--overwrite").exit_code == 0


def test_out_option(small_job, tmp_path):
    out = tmp_path / "elsewhere" / "x.gpkg"
    result = _invoke("-q", "survey", str(small_job.write()), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.exists() and not small_job.archive.exists()
    assert result.output == ""


def test_validate_prints_qa_summary(small_job):
    result = _invoke("validate", str(small_job.write()))
    assert result.exit_code == 0, result.output
    assert "parcels, geometry, rejected: 1" in result.output
    assert not small_job.archive.exists()


def test_bad_config_exits_2_with_one_line(small_job):
    config = small_job.write(colour="red")
    result = _invoke("survey", str(config))
    assert result.exit_code == 2
    assert "colour: unknown key" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_input_exits_1_with_one_line(small_job):
    small_job.config["inputs"]["soil"]["path"] = "missing.gpkg"
    result = _invoke("survey", str(small_job.write()))
    assert result.exit_code == 1
    assert "missing.gpkg: file not found" in result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("[")]
    assert len(lines) == 1


def test_missing_config_file_exits_2(tmp_path):
    result = _invoke("validate", str(tmp_path / "none.yaml"))
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_inspect_rejects_non_archive(tmp_path):
    result = _invoke("inspect", str(tmp_path / "none.gpkg"))
    assert result.exit_code == 1
    assert "archive not found" in result.output


def test_help_has_examples():
    for command in ("survey", "validate", "inspect", "demo-data"):
        result = _invoke(command, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.output
