"""notebooks/inspect_archive.ipynb: kept with cleared outputs, and runs top to bottom on the demo
archive through nbclient."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import pipeline

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "inspect_archive.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_uses_the_public_api():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for name in ("open_archive", "read_metadata", "county_totals", "soil_group_totals",
                 "conflict_lists", "select_county", "qa_summary"):  # fmt: skip
        assert f"pipeline.{name}(" in source
        assert name in pipeline.__all__


@pytest.mark.slow
def test_notebook_runs_on_the_demo_archive(tmp_path, monkeypatch):
    cfg = pipeline.load_config(
        ROOT / "configs" / "demo.yaml", overrides={"output": {"path": str(tmp_path / "demo.gpkg")}}
    )
    archive = pipeline.run_survey(cfg).archive
    monkeypatch.setenv("BLACKSOIL_ARCHIVE", str(archive))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(archive) in text
    assert "conservation passed: True" in text
    assert "HTGDTB" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the soil-group maps and the county map
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    counties = pipeline.county_totals(archive)
    assert any(counties["XZQMC"].iloc[0] in t["data"]["text/html"] for t in tables)
    assert not any(o.output_type == "error" for o in outputs)
