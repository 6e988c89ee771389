"""Partitions on a real dask.distributed cluster (two worker processes on the loopback) give
the same archive as the in-process run."""

from __future__ import annotations

import pytest
from test_partitions import assert_same_archive, survey, three_county_job

from pipeline.errors import InputError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
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
