"""Faults while writing the archive: SIGKILL at random moments, permission errors, a full disk.

``write_archive`` writes every layer into ``.<stem>.<pid>.tmp.gpkg`` beside the target and
``os.replace``-s it into place only when it is complete. These tests check the promise that
follows: whatever happens during a run, the file at the output path is either the previous
complete archive or the new complete one, never something in between, and a failed run says why
in one line and leaves nothing half-written behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pyogrio
import pytest
import shapely
import yaml
from click.testing import CliRunner
from pyproj import CRS

import pipeline
from cli import cli
from pipeline import archive as arc

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
ARCHIVE = "archive.gpkg"
#: temp files of write_archive for ARCHIVE: the GeoPackage and SQLite's side files
TEMP_FILE = re.compile(r"^\.archive\.(\d+)\.tmp\.gpkg(-journal|-wal|-shm)?$")
#: metadata rows that legitimately differ between two runs of the same job
VOLATILE_KEYS = {"created", "timings_s"}

#: the layers of every archive (the protection and quality layers depend on the job's inputs)
CORE_LAYERS = (
    arc.PIECES,
    arc.BALANCE,
    arc.COUNTY_SUMMARY,
    arc.QA_LOG,
    arc.METADATA,
    arc.DICTIONARY,
)

SEED = 20240611
KILLS_DURING_WRITE = 7
KILLS_EARLIER = 3

needs_sigkill = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="SIGKILL does not exist on this platform (Windows)"
)


# --- helpers ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _integrity(path: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` on ``path``, opened read-only (creates no file)."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
        rows = con.execute("PRAGMA integrity_check").fetchall()
    return "\n".join(str(r[0]) for r in rows)


def _assert_complete(path: Path) -> None:
    """``path`` is a complete, readable archive whose area accounting passed."""
    layers = pipeline.open_archive(path)
    assert set(CORE_LAYERS) <= set(layers), f"{path}: layers {list(layers)}"
    assert set(layers) <= set(arc.LAYER_TITLES)
    assert len(layers[arc.PIECES]) > 0
    meta = pipeline.read_metadata(path)
    assert meta["conservation"]["passed"] is True


def _temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if TEMP_FILE.match(p.name))


def _survey_cmd(out: Path, *extra: str) -> list[str]:
    # the report folder is not part of the archive's atomicity promise: leave it out
    return [
        *(sys.executable, "-m", "cli", "survey", str(DEMO_CONFIG)),
        *("--out", str(out), "--no-report", *extra),
    ]


def _run_cli(out: Path, log: Path, *extra: str) -> subprocess.CompletedProcess:
    with open(log, "wb") as f:
        done = subprocess.run(
            _survey_cmd(out, *extra), cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=300
        )
    assert done.returncode == 0, log.read_text(encoding="utf-8", errors="replace")
    return done


def _wait_for_temp_file(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> float:
    """Poll until the run's temp archive appears; return perf_counter() then (nan if it ended)."""
    name = f".archive.{proc.pid}.tmp.gpkg"
    deadline = time.perf_counter() + timeout
    while proc.poll() is None and time.perf_counter() < deadline:
        if (folder / name).exists():
            return time.perf_counter()
        time.sleep(0.001)
    return float("nan")


def _frames_equal(name: str, a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns), name
    assert len(a) == len(b), name
    geo = [c for c in a.columns if isinstance(a, gpd.GeoDataFrame) and c == a.geometry.name]
    if geo:
        assert isinstance(b, gpd.GeoDataFrame), name
        assert a.crs == b.crs, name
        wkb_a, wkb_b = list(a.geometry.to_wkb()), list(b.geometry.to_wkb())
        differ = sum(x != y for x, y in zip(wkb_a, wkb_b, strict=True))
        assert differ == 0, f"{name}: {differ} geometries differ"
    pdt.assert_frame_equal(
        pd.DataFrame(a.drop(columns=geo)),
        pd.DataFrame(b.drop(columns=geo)),
        check_exact=True,
        obj=name,
    )


def _assert_same_contents(path_a: Path, path_b: Path, volatile: set[str] = VOLATILE_KEYS) -> None:
    """Every layer equal (geometry as WKB), but for the ``volatile`` metadata rows."""
    la, lb = pipeline.open_archive(path_a), pipeline.open_archive(path_b)
    assert list(la) == list(lb)
    for name in la:
        a, b = la[name], lb[name]
        if name == arc.METADATA:
            a = a[~a["key"].isin(volatile)].reset_index(drop=True)
            b = b[~b["key"].isin(volatile)].reset_index(drop=True)
        _frames_equal(name, a, b)


def _demo_config(out: Path) -> pipeline.SurveyConfig:
    return pipeline.load_config(DEMO_CONFIG, overrides={"output": {"path": str(out)}})


# --- 1 and 2: SIGKILL at random moments; a rerun gives the same archive -----------------------


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A folder with a first complete archive of the demo job, and the timing of that run."""
    folder = tmp_path_factory.mktemp("kill_out")
    logs = tmp_path_factory.mktemp("kill_logs")
    out = folder / ARCHIVE
    with open(logs / "first.log", "wb") as f:
        start = time.perf_counter()
        proc = subprocess.Popen(_survey_cmd(out), cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        seen = _wait_for_temp_file(proc, folder)
        proc.wait(timeout=300)
        end = time.perf_counter()
    assert proc.returncode == 0, (logs / "first.log").read_text(encoding="utf-8")
    assert seen == seen, "the temp archive was never seen: is the write not atomic any more?"
    first = logs / "first.gpkg"
    shutil.copyfile(out, first)
    return {
        "folder": folder,
        "logs": logs,
        "out": out,
        "first": first,
        "before_write_s": seen - start,
        "write_s": end - seen,
    }


@needs_sigkill
def test_sigkill_never_leaves_a_corrupt_archive(killed: dict) -> None:
    folder, logs, out = killed["folder"], killed["logs"], killed["out"]
    _assert_complete(out)
    previous = _sha256(out)
    assert _integrity(out) == "ok"

    rng = random.Random(SEED)
    # (phase, fraction): kill `fraction` of the way through the write phase (after the temp file
    # appears) or through the earlier stages (start-up, reading, overlay)
    plan = [("write", rng.random()) for _ in range(KILLS_DURING_WRITE)]
    plan += [("early", rng.random()) for _ in range(KILLS_EARLIER)]
    rng.shuffle(plan)
    # a little past the measured write phase so that some kills land after the rename
    write_window = killed["write_s"] * 1.15
    early_window = killed["before_write_s"]

    killed_pids: set[int] = set()
    outcomes = []
    for i, (phase, fraction) in enumerate(plan):
        log = logs / f"kill{i}.log"
        with open(log, "wb") as f:
            start = time.perf_counter()
            proc = subprocess.Popen(
                _survey_cmd(out, "--overwrite"), cwd=REPO, stdout=f, stderr=subprocess.STDOUT
            )
            if phase == "write":
                t = _wait_for_temp_file(proc, folder)
                if t == t:  # seen: sleep into the write phase
                    time.sleep(max(0.0, t + fraction * write_window - time.perf_counter()))
            else:
                time.sleep(max(0.0, start + fraction * early_window - time.perf_counter()))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        killed_pids.add(proc.pid)
        rc = proc.returncode
        outcomes.append((phase, round(fraction, 2), rc))
        text = log.read_text(encoding="utf-8", errors="replace")
        assert rc in (0, -signal.SIGKILL), f"run {i} ({phase}) exited {rc}:\n{text}"

        # the output path holds a whole archive, never a part of one
        assert out.is_file(), f"run {i} ({phase}): the archive is gone"
        others = [p.name for p in folder.iterdir() if p.name != ARCHIVE]
        for name in others:
            m = TEMP_FILE.match(name)
            assert m, f"run {i} ({phase}): unexpected file {name} in the output folder"
            assert int(m.group(1)) in killed_pids, f"run {i}: {name} is no killed run's"
        now = _sha256(out)
        if now != previous:
            # the run had renamed its archive into place before the kill landed
            _assert_complete(out)
            assert _sha256(out) == now, "reading the archive changed its bytes"
            previous = now
        assert _integrity(out) == "ok", f"run {i} ({phase}): integrity_check failed"

    # the plan does put kills into both phases (a sanity check of the schedule itself)
    assert {p for p, _, _ in outcomes} == {"write", "early"}
    assert any(rc == -signal.SIGKILL for _, _, rc in outcomes), outcomes


@needs_sigkill
def test_rerun_after_a_kill_gives_the_same_archive(killed: dict) -> None:
    folder, logs, out = killed["folder"], killed["logs"], killed["out"]
    # one more kill in the middle of the write phase, so a temp file is (almost surely) left
    with open(logs / "rerun_kill.log", "wb") as f:
        proc = subprocess.Popen(
            _survey_cmd(out, "--overwrite"), cwd=REPO, stdout=f, stderr=subprocess.STDOUT
        )
        t = _wait_for_temp_file(proc, folder)
        if t == t:
            time.sleep(killed["write_s"] * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)

    copies = []
    for i in range(2):
        _run_cli(out, logs / f"rerun{i}.log", "--overwrite")
        # a completed run removes the temp files that killed runs left behind
        assert sorted(p.name for p in folder.iterdir()) == [ARCHIVE], f"rerun {i}"
        assert _integrity(out) == "ok"
        _assert_complete(out)
        copy = logs / f"rerun{i}.gpkg"
        shutil.copyfile(out, copy)
        copies.append(copy)
    _assert_same_contents(copies[0], copies[1])
    _assert_same_contents(killed["first"], copies[0])


# --- 3: permission errors ---------------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="chmod cannot make a folder read-only on Windows")
@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="running as root, which ignores folder permissions (chmod 0o555); "
    "test_permission_error_in_process covers the same case",
)
def test_read_only_folder_one_line_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        done = subprocess.run(
            _survey_cmd(ro / ARCHIVE),
            cwd=REPO,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=300,
        )
        entries = list(ro.iterdir())
    finally:
        ro.chmod(0o755)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("[")]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: ")
    assert str(ro.resolve()) in lines[0]
    assert entries == []


@pytest.fixture(scope="module")
def demo_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete archive of the demo job, written in-process."""
    out = tmp_path_factory.mktemp("demo_archive") / ARCHIVE
    pipeline.run_survey(_demo_config(out))
    return out


@pytest.fixture
def previous(demo_archive: Path, tmp_path: Path) -> Path:
    """A copy of the demo archive in an otherwise empty folder: the "previous" archive."""
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / ARCHIVE
    shutil.copyfile(demo_archive, out)
    return out


def _raise_permission_error(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize("where", ["replace", "write"])
def test_permission_error_in_process(
    previous: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    before = _sha256(previous)
    if where == "replace":  # the rename into place fails: every layer was written already
        monkeypatch.setattr(arc.os, "replace", _raise_permission_error)
    else:  # the first layer cannot be written
        monkeypatch.setattr(arc.pyogrio, "write_dataframe", _raise_permission_error)
    with pytest.raises(pipeline.OutputError) as exc:
        pipeline.run_survey(_demo_config(previous), overwrite=True)
    message = str(exc.value)
    assert str(previous) in message
    assert "Permission denied" in message
    assert "\n" not in message
    assert _sha256(previous) == before
    assert sorted(p.name for p in previous.parent.iterdir()) == [ARCHIVE]


def test_permission_error_cli_one_line(previous: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI maps the same failure to exit code 1 and one "Error:" line, without root."""
    monkeypatch.setattr(arc.os, "replace", _raise_permission_error)
    before = _sha256(previous)
    result = CliRunner().invoke(
        cli,
        ["survey", str(DEMO_CONFIG), "--out", str(previous), "--overwrite", "--no-report"],
        catch_exceptions=False,
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("[")]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and str(previous.resolve()) in lines[0]
    assert "Permission denied" in lines[0]
    assert _sha256(previous) == before
    assert sorted(p.name for p in previous.parent.iterdir()) == [ARCHIVE]


# --- 4: disk full -----------------------------------------------------------------------------


def test_disk_full_on_second_layer(previous: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _sha256(previous)
    layers_written: list[str] = []

    def failing(real_write):  # the pieces go through write_arrow, tables through write_dataframe
        def write(data, path, *args, layer=None, **kwargs):
            if layers_written:
                raise OSError(28, "No space left on device")
            real_write(data, path, *args, layer=layer, **kwargs)
            layers_written.append(layer)
            assert Path(path).exists()  # the first layer really went into the temp file

        return write

    for name in ("write_dataframe", "write_arrow"):
        monkeypatch.setattr(arc.pyogrio, name, failing(getattr(pyogrio, name)))
    with pytest.raises(pipeline.OutputError) as exc:
        pipeline.run_survey(_demo_config(previous), overwrite=True)
    assert layers_written == [arc.PIECES]
    message = str(exc.value)
    assert "No space left on device" in message
    assert str(previous) in message
    assert _sha256(previous) == before
    assert sorted(p.name for p in previous.parent.iterdir()) == [ARCHIVE]


# --- a concurrent run's temp files ---------------------------------------------------------
# Regressions: the stale-temp cleanup once took '.archive.2024.<pid>.tmp.gpkg' (the live temp file
# of a run writing archive.2024.gpkg) for a leftover of a dead process 2024 and deleted it; and a
# temp file removed between two layers was silently re-created, publishing an archive that lacked
# the earlier layers.


@pytest.mark.skipif(os.name == "nt", reason="the stale-temp cleanup keeps every file on Windows")
def test_stale_temp_cleanup_spares_a_sibling_archives_temp_file(tmp_path: Path) -> None:
    # the temp file of a live run (this process) writing 'archive.99999999.gpkg'; with a
    # realistic name such as archive.2024.gpkg the same happens whenever pid 2024 is not running
    sibling = tmp_path / f".archive.99999999.{os.getpid()}.tmp.gpkg"
    sibling.write_bytes(b"in progress")
    table = pd.DataFrame({"key": ["survey_year"], "value": ["2024"]})
    arc.write_archive(tmp_path / ARCHIVE, {arc.METADATA: table})
    assert sibling.exists()


@pytest.mark.skipif(os.name == "nt", reason="the stale-temp cleanup keeps every file on Windows")
def test_stale_temp_cleanup_takes_gdals_spatial_index_scratch_file(tmp_path: Path) -> None:
    """A run killed while GDAL built a large layer's spatial index leaves its scratch database
    ('.<stem>.<pid>.tmp.gpkg.tmp_rtree_<table>.db', seen at 1M parcels) beside the temp
    archive: the next write removes it with the temp archive, and spares a live run's."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(done.stdout)
    left = [
        tmp_path / f".archive.{dead}.tmp.gpkg",
        tmp_path / f".archive.{dead}.tmp.gpkg.tmp_rtree_HTGDTB.db",
        tmp_path / f".archive.{dead}.tmp.gpkg.tmp_rtree_HTGDTB.db-journal",
    ]
    live = tmp_path / f".archive.{os.getppid()}.tmp.gpkg.tmp_rtree_HTGDTB.db"
    for path in [*left, live]:
        path.write_bytes(b"")
    table = pd.DataFrame({"key": ["survey_year"], "value": ["2024"]})
    arc.write_archive(tmp_path / ARCHIVE, {arc.METADATA: table})
    assert not any(path.exists() for path in left)
    assert live.exists()


def test_a_failed_write_leaves_no_spatial_index_scratch_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path, name: str, frame, *, append: bool, shown: Path) -> None:
        Path(f"{path}.tmp_rtree_{name}.db").write_bytes(b"")  # as GDAL makes for a large layer
        raise OSError("No space left on device")

    monkeypatch.setattr(arc, "_write_layer", fail)
    table = pd.DataFrame({"key": ["survey_year"], "value": ["2024"]})
    with pytest.raises(pipeline.OutputError, match="No space left"):
        arc.write_archive(tmp_path / ARCHIVE, {arc.METADATA: table})
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fills_the_disk_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL reports a full disk in its own words (seen on a full tmpfs: "sqlite3_exec(ROLLBACK)
    failed: cannot rollback - no transaction is active"); the error adds that the disk is full,
    measured before the temporary archive is removed, and names the archive."""
    free = {"bytes": 10 * 2**30}

    def fill(path: Path, name: str, frame, *, append: bool, shown: Path) -> None:
        free["bytes"] = 3 * 2**20
        message = "sqlite3_exec(ROLLBACK) failed: cannot rollback - no transaction is active"
        raise pipeline.OutputError(f"{shown}: cannot write layer {name} ({message})")

    usage = shutil.disk_usage
    monkeypatch.setattr(arc.shutil, "disk_usage", lambda p: usage(p)._replace(free=free["bytes"]))
    monkeypatch.setattr(arc, "_write_layer", fill)
    table = pd.DataFrame({"key": ["survey_year"], "value": ["2024"]})
    with pytest.raises(pipeline.OutputError) as raised:
        arc.write_archive(tmp_path / ARCHIVE, {arc.METADATA: table})
    assert str(raised.value) == (
        f"{tmp_path / ARCHIVE}: cannot write layer {arc.METADATA} (sqlite3_exec(ROLLBACK) failed: "
        "cannot rollback - no transaction is active); the disk is full (3.0 MiB free when it "
        "failed)"
    )

    def refuse(path: Path, name: str, frame, *, append: bool, shown: Path) -> None:
        raise OSError("permission denied")

    free["bytes"] = 10 * 2**30  # with room left, nothing is added
    monkeypatch.setattr(arc, "_write_layer", refuse)
    with pytest.raises(pipeline.OutputError, match=r"the archive \(permission denied\)$"):
        arc.write_archive(tmp_path / ARCHIVE, {arc.METADATA: table})


def test_temp_file_vanishing_mid_write_is_an_error(
    previous: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _sha256(previous)
    real_write = pyogrio.write_dataframe
    calls: list[str] = []

    def write(frame, path, *args, layer=None, **kwargs):
        real_write(frame, path, *args, layer=layer, **kwargs)
        calls.append(layer)
        if len(calls) == 1:  # what a concurrent run's stale-temp cleanup does
            Path(path).unlink()

    monkeypatch.setattr(arc.pyogrio, "write_dataframe", write)
    try:
        with pytest.raises(pipeline.OutputError):
            pipeline.run_survey(_demo_config(previous), overwrite=True)
    finally:
        layers = [str(n) for n, *_ in pyogrio.list_layers(previous)]
    assert set(CORE_LAYERS) <= set(layers)
    assert _sha256(previous) == before


# --- Ctrl-C ------------------------------------------------------------------------------------


def _partitioned_demo_config(folder: Path) -> Path:
    """The demo job, partitioned by county, as a config file in ``folder``."""
    cfg = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    for spec in [*cfg["inputs"].values(), *cfg["inputs"]["rasters"].values()]:
        if isinstance(spec, dict) and "path" in spec:
            spec["path"] = str((DEMO_CONFIG.parent / spec["path"]).resolve())
    cfg["partition"] = {"by": "county"}
    path = folder / "partitioned.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The partitioned demo job's config, and the archive of an uninterrupted run of it."""
    folder = tmp_path_factory.mktemp("partitioned")
    config = _partitioned_demo_config(folder)
    reference = folder / "reference.gpkg"
    cfg = pipeline.load_config(config, overrides={"output": {"path": str(reference)}})
    pipeline.run_survey(cfg)
    return config, reference


@pytest.mark.skipif(os.name == "nt", reason="a process group and SIGINT as a terminal sends it")
@pytest.mark.parametrize(
    ("workers", "stop"),
    [(None, "SIGINT"), (2, "SIGINT"), (2, "SIGTERM")],
    ids=["ctrl-c", "ctrl-c-2-workers", "sigterm-2-workers"],
)
def test_interrupted_run_exits_keeps_the_done_partitions_and_resumes(
    tmp_path: Path, partitioned: tuple[Path, Path], workers: int | None, stop: str
) -> None:
    """Ctrl-C goes to every process of the command (the terminal's process group); SIGTERM
    (a batch system, ``kill``) to the driver alone."""
    config, reference = partitioned
    out = tmp_path / ARCHIVE
    cmd = [sys.executable, "-m", "cli", "survey", str(config), "--out", str(out), "--no-report"]
    cmd += ["--workers", str(workers)] if workers else []
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "1/3 partitions" in line:
                if stop == "SIGINT":
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    proc.send_signal(signal.SIGTERM)
                break
        lines.append(proc.communicate(timeout=120)[0])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = "".join(lines)
    assert proc.returncode == 128 + getattr(signal, stop), output
    assert "Traceback" not in output and "CancelledError" not in output, output
    work = pipeline.runner.work_folder(out)
    said = re.fullmatch(
        r"Error: interrupted(?: while merging)?: (?:(\d) of 3|all 3) partition\(s\) are done, "
        rf"kept in {re.escape(str(work))}: run again with --resume to .*",
        output.strip().splitlines()[-1],
    )
    assert said, output
    assert len(list(work.glob("*/done.json"))) == int(said.group(1) or 3)
    assert [p.name for p in tmp_path.iterdir() if p.name != "partitioned.yaml"] == [work.name]

    done = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    _assert_same_contents(out, reference, {*VOLATILE_KEYS, "config"})  # config: output path
    assert not work.exists()


def test_a_failing_geometry_stream_is_named_not_blamed_on_the_writer(tmp_path: Path) -> None:
    rows = pd.DataFrame({"n": [1, 2]})
    geoms = pa.array(shapely.to_wkb(arc.as_multipolygons(np.array([shapely.box(0, 0, 1, 1)]))))

    def wkb(start: int, stop: int) -> pa.Array:
        if start:
            raise FileNotFoundError("partition 220122/HTGDTB.parquet is gone")
        return geoms

    stream = arc.GeoStream(rows, CRS.from_epsg(4530), wkb, chunk_rows=1)
    with pytest.raises(FileNotFoundError, match=r"220122/HTGDTB\.parquet is gone"):
        arc._write_stream(tmp_path / "a.gpkg", "HTGDTB", stream, append=False)

    def broken(start: int, stop: int) -> pa.Array:
        raise ValueError("not WKB")

    stream = arc.GeoStream(rows, CRS.from_epsg(4530), broken)
    with pytest.raises(pipeline.OutputError, match=r"cannot write layer HTGDTB \(not WKB\)"):
        arc._write_stream(tmp_path / "b.gpkg", "HTGDTB", stream, append=False)

    def ctrl_c(start: int, stop: int) -> pa.Array:
        raise KeyboardInterrupt

    stream = arc.GeoStream(rows, CRS.from_epsg(4530), ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        arc._write_stream(tmp_path / "c.gpkg", "HTGDTB", stream, append=False)
