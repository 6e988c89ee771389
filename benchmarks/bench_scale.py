"""Scale series: whole partitioned survey runs on 1 and 2 dask workers, vs pure read + write.

For each size it generates demo survey data (``pipeline.make_demo_data``, several counties,
kept in the temp folder for reruns), then times

* ``read+write``: reading the parcels and the soil map (pyogrio, Arrow) and writing the parcels
  to a GeoPackage, the floor any survey tool pays;
* ``in-process``: ``run_survey`` partitioned by county (parcels, soil map, counties, region;
  with ``--protection`` also basic farmland, zoning, construction projects and change
  parcels), in this process (the default executor: partitions one after another, the
  overlay's intersections on all cores as threads);
* ``1 worker``, ``2 workers``: the same on a local dask cluster of one or two single-threaded
  worker processes (``--workers N``; cluster start included);

and prints wall time, peak memory (largest resident set of this process or any worker) and
cultivated parcels per second, with the ratios the issue asks for (2 workers vs 1, survey vs
read+write, time per parcel across sizes). Results go in benchmarks/README.md.

Run:  python benchmarks/bench_scale.py --sizes 50000 200000 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyogrio

from pipeline import make_demo_data
from pipeline.config import config_from_dict
from pipeline.runner import run_survey

COUNTIES = ["220122", "220183", "220113", "220112", "220106", "220104", "220103", "220102"]


class PeakMemory:
    """Samples the resident memory of this process and its children (dask workers)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [me, *me.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total = max(total, p.memory_info().rss)
            self.peak = max(self.peak, total)
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


#: the protection layers of the demo data (``--protection``): input name → (file, layer)
PROTECTION = {
    "basic_farmland": ("basic_farmland", "YJJBNTTB"),
    "urban_boundary": ("zoning", "CZKFBJ"),
    "ecological_redline": ("zoning", "STBHHX"),
    "construction": ("construction", "JSXMYD"),
    "changes": ("changes", "DLTBGX"),
}


def job(paths: dict[str, Path], out: Path, protection: bool = False):
    inputs = {
        "parcels": {"path": str(paths["parcels"]), "layer": "DLTB"},
        "soil": {"path": str(paths["soil"]), "layer": "TRTB"},
        "counties": {"path": str(paths["counties"]), "layer": "XZQ"},
        "region": {"path": str(paths["region"]), "layer": "HTQY"},
    }
    if protection:
        folder = paths["parcels"].parent
        for name, (file, layer) in PROTECTION.items():
            inputs[name] = {"path": str(folder / f"{file}.gpkg"), "layer": layer}
    return config_from_dict(
        {
            "year": 2024,
            "inputs": inputs,
            "partition": {"by": "county"},
            "output": {"path": str(out)},
        }
    )


def read_write(paths: dict[str, Path], out: Path) -> None:
    parcels = pyogrio.read_dataframe(paths["parcels"], layer="DLTB", use_arrow=True)
    pyogrio.read_dataframe(paths["soil"], layer="TRTB", use_arrow=True)
    pyogrio.write_dataframe(parcels, out, layer="DLTB", use_arrow=True)


def timed(func, *args, **kwargs) -> tuple[float, int, object]:
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        result = func(*args, **kwargs)
        wall = time.perf_counter() - t0
    return wall, mem.peak, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1, 2], help="0: in-process (no cluster)"
    )
    ap.add_argument(
        "--protection",
        action="store_true",
        help="add the protection stage (basic farmland, zoning, projects, change parcels)",
    )
    ap.add_argument("--tmp", default=os.path.join(tempfile.gettempdir(), "blacksoil_bench"))
    args = ap.parse_args()
    root = Path(args.tmp)
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"{'parcels':>9} {'run':>10} {'wall s':>8} {'peak GiB':>9} {'parcels/s':>10} {'ratio':>14}"
    )
    per_parcel = []
    for size in args.sizes:
        paths = data(size, root)
        base, base_mem, _ = timed(read_write, paths, root / f"rw_{size}.gpkg")
        print(f"{size:>9,} {'read+write':>10} {base:>8.1f} {base_mem / 2**30:>9.2f}")
        one = None
        for n in args.workers:
            out = root / f"archive_{size}_{n}.gpkg"
            kwargs = {"workers": n} if n else {}
            cfg = job(paths, out, args.protection)
            wall, peak, outcome = timed(run_survey, cfg, overwrite=True, **kwargs)
            surveyed = outcome.counts["parcels_surveyed"]
            if n == 0:
                per_parcel.append(wall / surveyed)
                ratio = f"{wall / base:.1f}x rw"
            elif n == 1:
                one = wall
                ratio = f"{wall / base:.1f}x rw"
            else:
                ratio = f"{one / wall:.2f}x 1 worker" if one else ""
            label = "in-process" if n == 0 else f"{n} worker" + ("s" if n > 1 else "")
            print(
                f"{size:>9,} {label:>10} {wall:>8.1f} {peak / 2**30:>9.2f} "
                f"{surveyed / wall:>10,.0f} {ratio:>14}"
            )
    if len(per_parcel) > 1:
        growth = per_parcel[-1] / per_parcel[0]
        print(f"time per parcel, largest vs smallest size: {growth:.2f}x (1.0 = linear)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"max RSS of this process: {rss:.2f} GiB")


if __name__ == "__main__":
    main()
