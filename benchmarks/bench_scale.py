"""Scale series: whole partitioned survey runs on 1 and 2 dask workers, vs pure read + write.

For each size it generates demo survey data (``pipeline.make_demo_data``, several counties,
kept in the temp folder for reruns), then times

* ``read+write``: reading the parcels and the soil map (pyogrio, Arrow) and writing the parcels
  to a GeoPackage, the floor any survey tool pays (the faster of two runs: one slow write of
  the file on a shared disk would otherwise flatter the ratios);
* ``job I/O``: reading every input the job reads (every vector layer, and with
  ``--all-stages`` every raster whole) and writing every layer of the archive the survey wrote
  (read back beforehand, outside the timing), the floor for this job's own data (the faster of
  two runs, as read+write: on this machine one run to the next moves by up to a third);
* ``in-process``: ``run_survey`` partitioned by county (parcels, soil map, counties, region;
  with ``--all-stages`` also every stage the demo job enables: basic farmland, zoning,
  construction projects and change parcels, and the quality rasters), in this process (the
  default executor: partitions one after another, the overlay's intersections on all cores
  as threads);
* ``1 worker``, ``2 workers``: the same on a local dask cluster of one or two single-threaded
  worker processes (``--workers N``; cluster start included);

For each size it also measures the machine's own ceiling for the 2-worker ratio: the largest
partition surveyed twice in one process, and once in each of two processes at the same time
(``concurrent.futures``, no dask, no merge): two busy cores share caches, memory bandwidth
and, on a virtual machine, the host, so they may give less than 2x. ``--ceiling N`` measures
it for N processes instead (the partition run alone min(N, 4) times for its time alone): on a
machine of many virtual CPUs, some may be the other halves of hyperthreaded cores.

Each measurement runs in a fresh Python process (none inherits another's memory). It prints
wall time, peak memory (the largest resident set of any one process, and the largest sum over
the run's process and its dask worker and nanny processes), cultivated parcels per second, the
ratios the issue asks for (2 workers vs 1, survey vs read+write and vs the job's I/O, time per
parcel across sizes), and the serial steps of the run (planning, reading the partitions'
results back, merging, writing the GeoPackage). Results go in benchmarks/README.md.

With ``--repeat R`` the 1- and 2-worker runs are made R times each, side by side in
alternating order, and the median of the pairs' ratios is printed: on a shared virtual machine
the speed drifts more over an hour than the effect measured.

Run:  python benchmarks/bench_scale.py --sizes 50000 200000 1000000
      python benchmarks/bench_scale.py --sizes 1000000 --all-stages --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import geopandas as gpd
import psutil
import pyogrio
import rasterio

from pipeline import make_demo_data
from pipeline.config import InputSpec, config_from_dict
from pipeline.demo import PROTECTION_INPUTS, demo_inputs
from pipeline.demo_rasters import make_demo_rasters
from pipeline.partitions import plan_partitions
from pipeline.runner import run_partition, run_survey

COUNTIES = ["220122", "220183", "220113", "220112", "220106", "220104", "220103", "220102"]


class PeakMemory:
    """Samples the resident memory of a process and its children (dask workers, nannies):
    the largest single process, and the sum over all of them (the machine's view)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.largest = 0
        self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.pid)
        while not self._stop.is_set():
            sizes = []
            with contextlib.suppress(psutil.Error):
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        sizes.append(proc.memory_info().rss)
            if sizes:
                self.largest = max(self.largest, max(sizes))
                self.total = max(self.total, sum(sizes))
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def data(size: int, root: Path) -> dict[str, Path]:
    folder = root / f"scale_{size}"
    if not (folder / "parcels.gpkg").exists():
        make_demo_data(folder, parcels=size, counties=COUNTIES[: max(3, min(8, size // 25000))])
    return {n: folder / f"{n}.gpkg" for n in ("parcels", "soil", "counties", "region")}


def rasters(folder: Path) -> dict[str, Path]:
    """The quality rasters over the counties of a data set (made once, kept with it)."""
    names = ("thickness", "organic_matter", "dem")
    target = folder / "rasters"
    if not all((target / f"{n}.tif").exists() for n in names):
        counties = gpd.read_file(folder / "counties.gpkg")
        make_demo_rasters(target, counties, seed=2024)
    return {n: target / f"{n}.tif" for n in names}


def job(paths: dict[str, Path], out: Path, all_stages: bool = False, max_parcels: int = 0):
    folder = paths["parcels"].parent
    stages = PROTECTION_INPUTS if all_stages else ()
    inputs = demo_inputs(folder, ("parcels", "soil", "counties", "region", *stages))
    if all_stages:
        inputs["rasters"] = {n: {"path": str(f)} for n, f in rasters(folder).items()}
    return config_from_dict(
        {
            "year": 2024,
            "inputs": inputs,
            "partition": {"by": "county", **({"max_parcels": max_parcels} if max_parcels else {})},
            "output": {"path": str(out)},
        }
    )


def read_write(paths: dict[str, Path], out: Path) -> None:
    parcels = pyogrio.read_dataframe(paths["parcels"], layer="DLTB", use_arrow=True)
    pyogrio.read_dataframe(paths["soil"], layer="TRTB", use_arrow=True)
    pyogrio.write_dataframe(parcels, out, layer="DLTB", use_arrow=True)


def job_io(paths: dict[str, Path], archive: Path, out: Path, all_stages: bool) -> float:
    """Seconds to read every input of the job and write every layer of ``archive`` to ``out``
    (the archive is read first, untimed)."""
    layers = [
        (name, pyogrio.read_dataframe(archive, layer=name, use_arrow=True))
        for name in pyogrio.list_layers(archive)[:, 0]
    ]
    inputs = job(paths, out, all_stages).inputs  # the partitioning reads the same inputs
    vectors = [
        s for f in dataclasses.fields(inputs) if isinstance(s := getattr(inputs, f.name), InputSpec)
    ]
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    t0 = time.perf_counter()
    for spec in vectors:
        pyogrio.read_dataframe(spec.path, layer=spec.layer, use_arrow=True)
    for spec in inputs.rasters.values():
        with rasterio.open(spec.path) as src:
            src.read()
    for i, (name, frame) in enumerate(layers):
        pyogrio.write_dataframe(frame, out, layer=name, append=bool(i), use_arrow=True)
    return time.perf_counter() - t0


def _partition_task(args: tuple) -> None:
    cfg, part, plan, folder = args
    run_partition(cfg, part, plan, folder, "ceiling", threads=1)


def machine_scaling(
    size: int, root: Path, all_stages: bool, max_parcels: int = 0, processes: int = 2
) -> tuple[float, float]:
    """Seconds for the largest partition of the data run ``processes`` times in one process
    (timed over min(processes, 4) runs and scaled), and once in each of ``processes`` processes
    at the same time (no dask): what that many busy cores give this work."""
    cfg = job(data(size, root), root / f"ceiling_{size}.gpkg", all_stages, max_parcels)
    plan = tuple(plan_partitions(cfg))
    part = max(plan, key=lambda p: p.size)
    walls = []
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        for n, runs in ((1, min(processes, 4)), (processes, processes)):
            tasks = [(cfg, part, plan, Path(tmp) / f"{n}_{i}") for i in range(runs)]
            with ProcessPoolExecutor(n) as pool:
                list(pool.map(abs, range(n)))  # start the processes first
                t0 = time.perf_counter()
                list(pool.map(_partition_task, tasks))
                walls.append((time.perf_counter() - t0) * processes / runs)
    return walls[0], walls[1]


def child(size: int, workers: int, root: Path, all_stages: bool, max_parcels: int = 0) -> None:
    """One measurement in this (fresh) process; prints its result as one JSON line."""
    paths = data(size, root)
    if workers == -2:  # after a survey run: any of its archives (they are the same)
        runs = [
            p for p in root.glob(f"archive_{size}_*.gpkg") if p.stem.rsplit("_", 1)[1].isdigit()
        ]
        written = sorted(runs, key=os.path.getmtime)
        wall = job_io(paths, written[-1], root / f"archive_{size}_io.gpkg", all_stages)
        print(json.dumps({"wall": wall}))
        return
    if workers < 0:
        t0 = time.perf_counter()
        read_write(paths, root / f"rw_{size}.gpkg")
        print(json.dumps({"wall": time.perf_counter() - t0}))
        return
    out = root / f"archive_{size}_{workers}.gpkg"
    kwargs = {"workers": workers} if workers else {}
    t0 = time.perf_counter()
    cfg = job(paths, out, all_stages, max_parcels)
    outcome = run_survey(cfg, overwrite=True, **kwargs)
    wall = time.perf_counter() - t0
    surveyed = outcome.counts["parcels_surveyed"]
    print(json.dumps({"wall": wall, "surveyed": surveyed, "timings": outcome.timings}))


def measure(size: int, workers: int, root: Path, all_stages: bool, max_parcels: int = 0) -> dict:
    """Run :func:`child` in a new Python process (so that no run inherits another's memory)
    and sample its memory and its workers' from outside."""
    cmd = [sys.executable, __file__, "--child", str(size), str(workers), "--tmp", str(root)]
    if all_stages:
        cmd.append("--all-stages")
    if max_parcels:
        cmd += ["--max-parcels", str(max_parcels)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    with PeakMemory(proc.pid) as mem:
        stdout, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"measurement {size} parcels, {workers} worker(s) failed")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "largest": mem.largest, "total": mem.total}


def schedule(workers: list[int], repeat: int) -> list[int]:
    """The runs in order: ``workers`` once, then with ``repeat`` > 1 the 1- and 2-worker runs
    again, in alternating order (2, 1, 1, 2, ...), so that each 2-worker run has a 1-worker run
    right beside it: the k-th 1-worker run and the k-th 2-worker run make a pair. On a shared
    virtual machine the speed drifts by up to 1.7x within an hour, more than the effect
    measured; only runs made side by side are compared.

    >>> schedule([0, 1, 2], 3)
    [0, 1, 2, 2, 1, 1, 2]
    """
    runs = list(workers)
    both = 1 in workers and 2 in workers
    for k in range(1, repeat if both else 1):
        runs += [2, 1] if k % 2 else [1, 2]
    return runs


#: the serial steps of a partitioned run, besides the partitions themselves
STEPS = ("plan", "collect", "merge", "write")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1, 2], help="0: in-process (no cluster)"
    )
    ap.add_argument(
        "--all-stages",
        action="store_true",
        help="every stage of the demo job: also protection (basic farmland, zoning, projects, "
        "change parcels) and quality (rasters)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run 1 and 2 workers this many times each, side by side in alternating order, "
        "and print the median of the pairs' ratios",
    )
    ap.add_argument(
        "--max-parcels",
        type=int,
        default=0,
        help="partition.max_parcels: split counties into parts of at most this many parcels "
        "(0: the default, 100,000); more workers need more partitions than the 8 counties",
    )
    ap.add_argument(
        "--ceiling",
        type=int,
        default=2,
        help="processes for the machine's ceiling (the largest partition run in each at once)",
    )
    ap.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "blacksoil_bench"))
    ap.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.tmp)
    root.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(*args.child, root, args.all_stages, args.max_parcels)
        return
    print(
        f"{'parcels':>9} {'run':>10} {'wall s':>7} {'GiB max':>8} {'GiB sum':>8} "
        f"{'parcels/s':>10} {'ratio':>26}  serial steps s ({', '.join(STEPS)})"
    )
    per_parcel = []
    for size in args.sizes:
        paths = data(size, root)  # generated once, outside the timings
        if args.all_stages:
            rasters(paths["parcels"].parent)
        floors = [measure(size, -1, root, args.all_stages, args.max_parcels) for _ in range(2)]
        base = min(floors, key=lambda r: r["wall"])
        runs = ", ".join(f"{r['wall']:.1f}" for r in floors)
        print(
            f"{size:>9,} {'read+write':>10} {base['wall']:>7.1f} "
            f"{base['largest'] / 2**30:>8.2f} {base['total'] / 2**30:>8.2f}  (runs {runs} s)"
        )
        n = args.ceiling
        one_proc, n_procs = machine_scaling(
            size, root, args.all_stages, args.max_parcels, processes=n
        )
        print(
            f"{size:>9,} {'ceiling':>10}  largest partition {n} times: in 1 process "
            f"{one_proc:.1f} s, in {n} at once {n_procs:.1f} s: {one_proc / n_procs:.2f}x"
        )
        one = io = None
        walls: dict[int, list[float]] = {1: [], 2: []}
        for n in schedule(args.workers, args.repeat):
            r = measure(size, n, root, args.all_stages, args.max_parcels)
            if io is None:  # the job's own I/O, writing the archive this run wrote
                ios = [measure(size, -2, root, args.all_stages, args.max_parcels) for _ in "ab"]
                io = min(ios, key=lambda r: r["wall"])
                runs = ", ".join(f"{r['wall']:.1f}" for r in ios)
                print(f"{size:>9,} {'job I/O':>10} {io['wall']:>7.1f}  (runs {runs} s)")
            wall, surveyed = r["wall"], r["surveyed"]
            if n == 0:
                per_parcel.append(wall / surveyed)
            one = wall if n == 1 else one
            ratio = f"{wall / base['wall']:.1f}x rw {wall / io['wall']:.1f}x io"
            if n > 1 and one:
                ratio += f" {one / wall:.2f}x 1w"
            if n in walls:
                walls[n].append(wall)
            label = "in-process" if n == 0 else f"{n} worker" + ("s" if n > 1 else "")
            steps = " ".join(f"{r['timings'].get(s, 0.0):.1f}" for s in STEPS)
            print(
                f"{size:>9,} {label:>10} {wall:>7.1f} {r['largest'] / 2**30:>8.2f} "
                f"{r['total'] / 2**30:>8.2f} {surveyed / wall:>10,.0f} {ratio:>26}  {steps}"
            )
        # the pairs (see schedule); none where only one of the two was run
        done = [one / two for one, two in zip(walls[1], walls[2], strict=False)]
        if len(done) > 1:
            listed = ", ".join(f"{r:.2f}" for r in done)
            print(
                f"{size:>9,} 2 workers vs 1, run next to each other: median "
                f"{statistics.median(done):.2f}x of {len(done)} pairs ({listed})"
            )
    if len(per_parcel) > 1:
        growth = per_parcel[-1] / per_parcel[0]
        print(
            f"time per parcel (in-process), largest vs smallest size: {growth:.2f}x (1.0 = linear)"
        )


if __name__ == "__main__":
    main()
