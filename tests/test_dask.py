"""Partitions on a real dask.distributed cluster (two worker processes on the loopback) give
the same archive as the in-process run."""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import ClassVar

import pytest
from test_partitions import assert_same_archive, survey, three_county_job, three_county_parcels

from conftest import box
from pipeline import archive as arc
from pipeline.errors import InputError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # no fixed port: another cluster may be running
    ) as cluster:
        yield cluster


@pytest.mark.slow
def test_two_dask_workers_give_the_in_process_archive(job, cluster):
    three_county_job(job)
    single = survey(job, "single")
    seen: list[str] = []
    on_dask = survey(
        job,
        "dask",
        config={"partition": {"by": "county"}},
        scheduler=cluster.scheduler_address,
        progress=seen.append,
    )
    assert_same_archive(single, on_dask)
    assert sum("partitions" in m and "/3 " in m for m in seen) == 3
    # the work was shared out: both workers ran partitions
    with distributed.Client(cluster.scheduler_address) as client:
        ran = client.run(
            lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count
        )
    assert all(count > 0 for count in ran.values())


@pytest.mark.slow
def test_failed_partition_on_dask_is_named(job, cluster):
    three_county_job(job, many_files=True)
    (job.folder / "dltb" / "220122.gpkg").write_bytes(b"broken" * 50)
    with pytest.raises(InputError, match=r"failed \(220122: "):
        survey(
            job,
            "broken",
            config={"partition": {"by": "county"}},
            scheduler=cluster.scheduler_address,
        )


@pytest.mark.slow
def test_demo_data_gives_one_archive_for_any_partitioning_and_workers(
    tmp_path, cluster, monkeypatch
):
    """Realistic data (digitised soil boundaries that partitions cut through, soil-map gaps,
    the region edge, zones, projects and change parcels across county and cell lines, cells
    holding change parcels but no cultivated parcel): in process unpartitioned, by county on
    dask workers (each county merged by a worker and stacked into the archive, as on many
    workers), by a 3 km grid on the workers (cells across county lines; one worker merges the
    layers that follow the pieces, as on two) and by counties split in parts in process give
    the same archive, row for row; so does a job without protection inputs (its balance merged
    by a worker)."""
    import pipeline
    from pipeline import archive as arc
    from pipeline import runner
    from pipeline.config import config_from_dict
    from pipeline.demo import demo_inputs

    data = tmp_path / "data"
    pipeline.make_demo_data(data, parcels=2500, seed=5)
    inputs = demo_inputs(data)

    def run(name: str, partition: dict, only: tuple[str, ...] = (), **kwargs) -> dict:
        """The job's archive; ``only``: the job with these inputs alone."""
        out = tmp_path / f"{name}.gpkg"
        given = {k: v for k, v in inputs.items() if k in only} if only else inputs
        job = {"year": 2024, "inputs": given, "partition": partition, "output": {"path": str(out)}}
        pipeline.run_survey(config_from_dict(job), **kwargs)
        return pipeline.open_archive(out)

    single = run("single", {"by": "none"})
    assert len(single["HTGD_WFZY"]) > 0 and len(single["HTGD_ZBPH"]) > 1
    stacked: list[tuple[str, int]] = []
    stack_layer = arc.stack_layer

    def counted(parts, target, name: str) -> None:
        stacked.append((name, len({p[0] for p in parts})))
        stack_layer(parts, target, name)

    monkeypatch.setattr(arc, "stack_layer", counted)
    # each county merged by a task of its own, as on many workers (4 or more)
    monkeypatch.setattr(runner, "_GROUP_TASKS_FROM", 2)
    county = run("county", {"by": "county"}, scheduler=cluster.scheduler_address)
    # every layer that grows with the parcels, from each county's file (the demo: 3 counties)
    assert stacked == [
        (name, 3)
        for name in (
            arc.PIECES,
            arc.BALANCE,
            arc.OUTSIDE_FARMLAND,
            arc.ZONING_CONFLICTS,
            arc.OCCUPATION,
        )
    ]
    monkeypatch.setattr(runner, "_GROUP_TASKS_FROM", 3)
    # on two workers, one task merges the layers that follow the pieces beside this process
    grid = run("grid", {"by": "grid", "grid_size_m": 3000.0}, scheduler=cluster.scheduler_address)
    assert stacked[5:] == [
        (arc.OUTSIDE_FARMLAND, 1),
        (arc.ZONING_CONFLICTS, 1),
        (arc.OCCUPATION, 1),
    ]
    # and the balance, in a job without protection inputs
    core = ("parcels", "soil", "counties", "region")
    core_on_cluster = run("core_dask", {"by": "county"}, core, scheduler=cluster.scheduler_address)
    assert stacked[8:] == [(arc.BALANCE, 1)]
    monkeypatch.undo()
    assert_same_archive(run("core", {"by": "none"}, core), core_on_cluster)
    for parted in (
        county,
        grid,
        # every county split in parts of at most 300 parcels
        run("split", {"by": "county", "max_parcels": 300}),
    ):
        assert_same_archive(single, parted)  # the counts of features read too


def test_a_worker_that_dies_mid_partition_costs_only_time(tmp_path):
    """A worker process killed while it surveys a partition (the out-of-memory killer, as a
    large county can bring) is started again by its nanny and the partition is run again
    elsewhere: every partition's result comes back and none is reported failed. (Another
    cluster, the module's, runs on this machine meanwhile, as a second survey's might: the
    local cluster starts beside it without a word.)"""
    from pipeline.executors import run_tasks

    def survey_once(marker: str, k: int) -> int:  # nested: pickled by value for the workers
        import os

        if k == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(137)  # dies as a killed process does: no exception, no answer
        return 10 * k

    marker = str(tmp_path / "died")
    seen: list[str] = []
    results, failed = run_tasks(
        survey_once,
        [(name, (marker, k)) for k, name in enumerate(["a", "b", "c", "d"])],
        workers=2,
        progress=seen.append,
    )
    assert (tmp_path / "died").exists()  # it did die once
    assert failed == {}
    assert results == {"a": 0, "b": 10, "c": 20, "d": 30}
    assert len(seen) == 4


def _fail(k: int) -> int:
    raise OSError(28, "No space left on device")


@pytest.mark.slow
def test_a_failed_partition_prints_no_traceback_from_the_workers(capfd):
    """Dask's workers log every task that raised with its traceback; on the local cluster that
    is left out (the partition is reported in one line by name, its traceback in the debug log
    of the first process), so a full disk prints no traceback per partition."""
    from pipeline.executors import run_tasks

    results, failed = run_tasks(_fail, [("220102", (1,)), ("220183", (2,))], workers=2)
    assert results == {}
    assert failed == {
        "220102": "OSError: [Errno 28] No space left on device",
        "220183": "OSError: [Errno 28] No space left on device",
    }
    err = capfd.readouterr().err
    assert "Compute Failed" not in err and "Traceback" not in err, err


class _SlowClient:
    """Stands in for ``distributed.Client``: connecting waits for ``go``, or fails with
    ``error``; closing is recorded."""

    go: ClassVar[threading.Event | None] = None
    error: ClassVar[Exception | None] = None
    closed: ClassVar[list[str]] = []

    def __init__(self, address, timeout=None):
        if self.error is not None:
            raise self.error
        self.go.wait(10)
        self.address = address

    def close(self):
        self.closed.append(self.address)


def test_the_cluster_starts_in_the_background_and_is_closed_with_the_executor(monkeypatch):
    """``Executor.start`` returns at once (the survey plans its partitions meanwhile); the first
    batch waits for the connection, and closing the executor closes it, even mid-start."""
    from pipeline.executors import Executor

    monkeypatch.setattr(distributed, "Client", _SlowClient)
    monkeypatch.setattr(_SlowClient, "go", threading.Event())
    monkeypatch.setattr(_SlowClient, "closed", [])
    with Executor(scheduler="tcp://127.0.0.1:1") as ex:
        ex.start()
        assert ex._client is None  # still connecting
        _SlowClient.go.set()
        assert ex._connect().address == "tcp://127.0.0.1:1"
    assert _SlowClient.closed == ["tcp://127.0.0.1:1"]

    monkeypatch.setattr(_SlowClient, "go", threading.Event())
    ex = Executor(scheduler="tcp://127.0.0.1:2")
    ex.start()
    threading.Timer(0.2, _SlowClient.go.set).start()
    ex.close()  # waits for the start, then closes what it started
    assert _SlowClient.closed == ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]


def test_a_scheduler_that_cannot_be_reached_is_said_when_the_tasks_start(monkeypatch):
    """An error met connecting in the background is raised, as one line, where the tasks
    would run, not lost in the starting thread."""
    from pipeline.errors import UsageError
    from pipeline.executors import Executor

    monkeypatch.setattr(distributed, "Client", _SlowClient)
    monkeypatch.setattr(_SlowClient, "error", OSError("Timed out trying to connect"))
    with Executor(scheduler="tcp://127.0.0.1:1") as ex:
        ex.start()
        with pytest.raises(UsageError, match=r"--scheduler tcp://127.0.0.1:1: cannot reach"):
            ex.run(pow, [("a", (2, 3))])


def _origin() -> tuple[int, bool]:
    import os
    import sys

    return os.getppid(), "pipeline.runner" in sys.modules


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="no forkserver here"
)
def test_local_workers_are_forked_from_a_server_that_imported_the_package():
    """The local cluster's workers are not started afresh (each importing dask and the package
    again, beside the planning) but forked from multiprocessing's server process, which
    imported them once; dask's setting is as it was afterwards, and one set otherwise by the
    user is kept."""
    import dask

    from pipeline.executors import Executor, _forked_workers

    key = "distributed.worker.multiprocessing-method"
    with Executor(workers=1) as ex:
        results, failed = ex.run(_origin, [("a", ())])
    assert failed == {}
    parent, imported = results["a"]
    assert parent != os.getpid()  # its nanny, in this process, did not start it
    assert imported
    assert dask.config.get(key) == "spawn"
    with dask.config.set({key: "fork"}), _forked_workers():
        assert dask.config.get(key) == "fork"


@pytest.mark.slow
def test_parcels_overlapping_across_partitions_are_logged_on_dask_as_in_process(job, cluster):
    """On a cluster, the task that merges the balance also pairs the parcels of different
    partitions that overlap (while this process writes the pieces): the QA log, its counts in
    the metadata and the rest of the archive are the in-process run's."""
    three_county_job(job)
    parcels = three_county_parcels()
    over = parcels.index[parcels["BSM"] == "220183202400300000"][0]
    parcels.loc[over, "geometry"] = box(290, 0, 400, 100)  # 10 m into 220122's (2, 0)
    job.layer("parcels", parcels, "DLTB")
    single = survey(job, "single")
    on_dask = survey(
        job, "dask", config={"partition": {"by": "county"}}, scheduler=cluster.scheduler_address
    )
    qa = on_dask[arc.QA_LOG]
    logged = qa[qa["check"] == "overlap"][["feature_id", "problem"]].to_numpy().tolist()
    assert logged == [["220183202400300000", "overlaps parcel 220122202400200000 by 1000.00 m²"]]
    assert_same_archive(single, on_dask)
