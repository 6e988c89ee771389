"""Parcel ids (BSM): present and unique across the whole job, however it is partitioned.

A parcel with no id gets one made from its feature id (``FID<n>``); the later parcels with an id
already seen are renamed ``<BSM>-2``, ``-3``, ... in the order a single run reads the cultivated
parcels (file by file, each in layer order). A partition sees only its own parcels, so a
partitioned job ranks the duplicates of the whole job once, before the partitions run
(:func:`job_renames`), and each partition takes the new ids of its parcels from that table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .config import SurveyConfig
from .errors import InputError
from .partitions import file_specs
from .qa import as_string
from .sources import FID, read_fields

#: the job's renamed parcels, in its work folder (a leading dot: no partition has that name)
RENAMES_FILE = ".renamed_ids.parquet"
#: the renames table's file column: the index of the parcels file among the input's files
FILE = "file"


def fill_missing(ids: object, fids: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """Ids as stripped text, a missing or blank one made from the feature id (``FID<n>``).

    Returns
    -------
    (Series, ndarray)
        The ids (a pandas string Series, positional index) and which of them were missing.
    """
    text = as_string(ids)
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    if missing.any():
        text[missing] = "FID" + pd.Series(np.asarray(fids)[missing]).astype(str).to_numpy()
    return text, missing


def later_duplicates(ids: pd.Series) -> pd.Series:
    """New ids for the later parcels of an id seen before (indexed by their rows).

    The k-th parcel of an id becomes ``<id>-k``; where that is another parcel's id already, the
    id's later parcels take the next free numbers instead, so every new id is unique.
    """
    twice = _repeated(ids)
    if not twice.any():
        return pd.Series([], dtype=object)
    group = ids[twice].astype(object)  # the few parcels of the ids seen twice, in order
    rank = group.groupby(group, sort=False).cumcount() + 1
    later = rank > 1
    old = group[later]
    new = old + "-" + rank[later].astype(str)
    clash = new.isin(set(ids[ids.isin(set(new))]))
    if clash.any():  # rare: number those ids' later parcels again, skipping the taken ones
        used = set(ids.astype(object))
        for key in pd.unique(old[clash]):
            n = 2
            for row in old.index[(old == key).to_numpy()]:
                while f"{key}-{n}" in used:
                    n += 1
                new[row] = f"{key}-{n}"
                used.add(new[row])
                n += 1
    return new


def _repeated(ids: pd.Series) -> np.ndarray:
    """Which ids occur more than once (through Arrow's hashing: several times faster than
    pandas' ``duplicated`` on millions of strings)."""
    array = pa.array(ids.astype("string"))  # chunked where pandas' storage is
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    codes = pc.dictionary_encode(array).indices.to_numpy(zero_copy_only=False)
    return np.bincount(codes)[codes] > 1


def cultivated_fields(
    cfg: SurveyConfig, semantics: Sequence[str] = ("id",)
) -> list[pd.DataFrame | None]:
    """Per parcels file, in the input's order: ``_fid`` and the fields of ``semantics`` the layer
    has, of its cultivated parcels (the user's ``where`` applied), read without geometry; None
    for a file that cannot be read (its partition fails and is named)."""
    frames: list[pd.DataFrame | None] = []
    wanted = tuple(dict.fromkeys([*semantics, "landuse"]))
    for spec in file_specs(cfg.inputs.parcels):
        try:
            frame = read_fields(spec, "parcels", wanted, cfg.io.engine)
        except InputError:
            frames.append(None)
            continue
        landuse = frame["landuse"].astype(object).where(frame["landuse"].notna(), None)
        frame = frame[landuse.isin(cfg.cultivated_codes).to_numpy()]
        frames.append(frame.reset_index(drop=True))
    return frames


def job_renames(cfg: SurveyConfig, fields: list[pd.DataFrame | None] | None = None) -> pd.DataFrame:
    """The later duplicate ids among the job's cultivated parcels and their new ids, ranked as
    a single run ranks them (only the id and land-use fields are read, or taken from
    ``fields``, :func:`cultivated_fields`).

    A file that cannot be read is left out: its partition fails and is named, and the stamps
    of the others hold the renames they were given (:func:`digest`), so that a resume after the
    file is mended runs again the partitions whose ids it changes.

    Returns
    -------
    DataFrame
        ``file`` (index among the parcels input's files), ``_fid``, ``id`` (the new id), in
        reading order.
    """
    frames = [
        pd.DataFrame({FILE: np.int64(k), FID: frame[FID], "id": frame["id"]})
        for k, frame in enumerate(cultivated_fields(cfg) if fields is None else fields)
        if frame is not None
    ]
    if not frames:
        return _no_renames()
    every = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    ids, _ = fill_missing(every["id"], every[FID].to_numpy())
    new = later_duplicates(ids)
    rows = every.loc[new.index, [FILE, FID]].reset_index(drop=True)
    rows["id"] = new.to_numpy(dtype=object).astype(str)
    return rows


def _no_renames() -> pd.DataFrame:
    return pd.DataFrame({FILE: [], FID: [], "id": []}).astype({FILE: "int64", FID: "int64"})


def write_renames(renames: pd.DataFrame, workdir: Path) -> None:
    """Put the renames where the partitions read them (no file when there are none)."""
    path = Path(workdir) / RENAMES_FILE
    path.unlink(missing_ok=True)
    if len(renames):
        renames.to_parquet(path, index=False)


def read_renames(workdir: Path, files: Sequence[int]) -> pd.DataFrame:
    """The renames of the parcels in the given files (indexes among the input's files), with
    ``file`` as the position in ``files``, as a partition numbers its sources."""
    path = Path(workdir) / RENAMES_FILE
    if not path.exists():
        return _no_renames()
    table = pd.read_parquet(path)
    return of_files(table, files)


def of_files(renames: pd.DataFrame, files: Sequence[int]) -> pd.DataFrame:
    """The rows of ``renames`` in the given files, ``file`` renumbered as positions in them."""
    where = {f: i for i, f in enumerate(files)}
    rows = renames[renames[FILE].isin(list(where))].reset_index(drop=True)
    rows[FILE] = rows[FILE].map(where).astype("int64")
    return rows


def digest(renames: pd.DataFrame) -> str:
    """A short hash of a renames table (for a partition's stamp)."""
    data = pd.util.hash_pandas_object(renames, index=False).to_numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]
