"""The survey-job configuration: one YAML file, validated into typed objects.

``load_config(path)`` reads the YAML safely, rejects unknown keys, missing required keys and bad
values with a :class:`~pipeline.errors.ConfigError` naming the key's path
(``inputs.parcels.fields.id``), resolves relative paths from the config file's folder and fills
in the defaults, which come from the national standards (DESIGN.md §3). Every key is documented in
``configs/README.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .codes import (
    BLACK_SOIL_GROUPS,
    BLACK_SOIL_SUBTYPES,
    CONSTRUCTION_CODES,
    CULTIVATED_CODES,
    DIGGING_CODES,
)
from .errors import ConfigError

#: Semantic field names of each core input and their 三调 defaults.
PARCEL_FIELDS: dict[str, str] = {
    "id": "BSM",
    "landuse": "DLBM",
    "county": "ZLDWDM",
    "area": "TBMJ",
    "deduction_rate": "KCXS",
    "number": "TBBH",
    "landuse_name": "DLMC",
    "terrace": "GDLX",
    "slope_grade": "GDPDJB",
}
SOIL_FIELDS: dict[str, str] = {"soil_type": "TL", "subtype": "YL", "id": "TRBM"}
COUNTY_FIELDS: dict[str, str] = {"code": "XZQDM", "name": "XZQMC"}
REGION_FIELDS: dict[str, str] = {}
#: protection and change layers (issue: protection status and conflicts)
ZONE_FIELDS: dict[str, dict[str, str]] = {
    "basic_farmland": {"id": "YJJBNTTBBH"},
    "urban_boundary": {"id": "GHFQDM", "name": "GHFQMC"},
    "ecological_redline": {"id": "HXBM", "name": "HXMC", "kind": "HXLX"},
}
CONSTRUCTION_FIELDS: dict[str, str] = {
    "name": "XMMC",
    "approval": "PZWH",
    "approval_date": "PZRQ",
}
CHANGE_FIELDS: dict[str, str] = {
    "id": "BSM",
    "before": "BGQDLBM",
    "after": "BGHDLBM",
    "area": "BGMJ",
    "county": "XZQDM",
}
#: the optional inputs of the protection stage, in the order they are analysed
PROTECTION_INPUTS = (*ZONE_FIELDS, "construction", "changes")

#: Fields a layer must have (the others are used when present).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "parcels": ("id", "landuse"),
    "soil": ("soil_type",),
    "counties": ("code",),
    "region": (),
    "basic_farmland": (),
    "urban_boundary": (),
    "ecological_redline": (),
    "construction": (),
    "changes": ("before", "after"),
}
_DEFAULT_FIELDS = {
    "parcels": PARCEL_FIELDS,
    "soil": SOIL_FIELDS,
    "counties": COUNTY_FIELDS,
    "region": REGION_FIELDS,
    **ZONE_FIELDS,
    "construction": CONSTRUCTION_FIELDS,
    "changes": CHANGE_FIELDS,
}


@dataclass(frozen=True)
class InputSpec:
    """One input layer: where it is and how its fields are named."""

    path: Path
    layer: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    where: str | None = None
    encoding: str | None = None
    crs: str | None = None
    #: the fields the user named explicitly (they must exist; defaults may be absent)
    explicit_fields: frozenset[str] = frozenset()
    #: soil map as a classified raster (``inputs.soil`` only): cell value → soil type, band, nodata
    raster_values: dict[int, str] | None = None
    band: int = 1
    nodata: float | None = None


#: names of ``inputs.rasters`` the quality stage understands, and their field prefixes
RASTER_PREFIXES: dict[str, str] = {"thickness": "HTHD", "organic_matter": "YJZ", "dem": "GC"}
#: prefixes generic raster names may not take (the known ones and the slope's)
_RESERVED_PREFIXES = {*RASTER_PREFIXES.values(), "PD", "PDJB", "HTHDJB", "YJZJB"}
#: file endings that make ``inputs.soil`` a classified raster
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img")


@dataclass(frozen=True)
class RasterSpec:
    """One raster of ``inputs.rasters``: file, band, nodata override, CRS override."""

    path: Path
    band: int = 1
    nodata: float | None = None
    crs: str | None = None


@dataclass(frozen=True)
class Inputs:
    parcels: InputSpec
    soil: InputSpec
    counties: InputSpec | None = None
    region: InputSpec | None = None
    basic_farmland: InputSpec | None = None
    urban_boundary: InputSpec | None = None
    ecological_redline: InputSpec | None = None
    construction: InputSpec | None = None
    changes: InputSpec | None = None
    rasters: dict[str, RasterSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class IOOptions:
    engine: Literal["pyogrio", "fiona"] = "pyogrio"


@dataclass(frozen=True)
class OverlayOptions:
    max_vertices: int = 256
    threads: int = 0  # 0: one per CPU core, at most 8


@dataclass(frozen=True)
class QualityOptions:
    """Class thresholds of the quality stage; a value on a break belongs to the class below."""

    #: black-soil layer thickness (cm): 薄层 ≤ 30 < 中层 ≤ 60 < 厚层
    thickness_breaks: tuple[float, ...] = (30.0, 60.0)
    #: organic matter (g/kg): grade 6 ≤ 6 < 5 ≤ 10 < 4 ≤ 20 < 3 ≤ 30 < 2 ≤ 40 < grade 1
    organic_matter_breaks: tuple[float, ...] = (6.0, 10.0, 20.0, 30.0, 40.0)


@dataclass(frozen=True)
class OutputOptions:
    path: Path
    #: ``gpkg``: one GeoPackage; ``parquet``: a folder of GeoParquet files, partitioned by county
    format: Literal["gpkg", "parquet"] = "gpkg"
    #: the archive's declared CRS; None: the working CRS (EPSG:4490 when partitions span zones)
    crs: str | None = None


@dataclass(frozen=True)
class PartitionOptions:
    """How a job is split for scale-out (``partition:``): by county, by a grid, or not at all."""

    by: Literal["none", "county", "grid"] = "none"
    #: grid cell size in metres (``by: grid``, or ``county`` where no county is known)
    grid_size_m: float = 50_000.0
    #: ``by: county``: a county with more parcels than this is split into this many or fewer
    #: per sub-partition (0: never split)
    max_parcels: int = 100_000


@dataclass(frozen=True)
class ReportOptions:
    """The report beside the archive: inputs of the responsibility assessment (保护责任考核)."""

    #: CSV of county targets (XZQDM and MBMJ_GQ 公顷, MBMJ_MU 亩 or MBMJ m²)
    targets: Path | None = None
    #: a base-year archive: its black-soil farmland per county is the target where none is given
    base_archive: Path | None = None


@dataclass(frozen=True)
class SurveyConfig:
    """A validated survey job."""

    year: int
    inputs: Inputs
    output: OutputOptions
    crs: str = "auto"
    black_soil_types: dict[str, str] = field(default_factory=dict)  # alias -> group
    black_soil_groups: tuple[str, ...] = ()
    cultivated_codes: tuple[str, ...] = CULTIVATED_CODES
    construction_codes: tuple[str, ...] = CONSTRUCTION_CODES
    digging_codes: tuple[str, ...] = DIGGING_CODES
    approved_cover_share: float = 0.95
    min_piece_area: float = 0.1
    io: IOOptions = field(default_factory=IOOptions)
    overlay: OverlayOptions = field(default_factory=OverlayOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    report: ReportOptions = field(default_factory=ReportOptions)
    partition: PartitionOptions = field(default_factory=PartitionOptions)
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)


_TOP_KEYS = {
    "year": (int, True),
    "crs": (str, False),
    "inputs": (dict, True),
    "output": (dict, True),
    "black_soil_types": ((list, dict), False),
    "cultivated_codes": (list, False),
    "construction_codes": (list, False),
    "digging_codes": (list, False),
    "approved_cover_share": ((int, float), False),
    "min_piece_area": ((int, float), False),
    "io": (dict, False),
    "overlay": (dict, False),
    "report": (dict, False),
    "quality": (dict, False),
    "partition": (dict, False),
}
_INPUT_KEYS = {
    "path": (str, True),
    "layer": (str, False),
    "fields": (dict, False),
    "where": (str, False),
    "encoding": (str, False),
    "crs": ((str, int), False),
}
#: keys of a soil map given as a classified raster (``inputs.soil`` only)
_SOIL_RASTER_KEYS = {
    "raster_values": (dict, False),
    "band": (int, False),
    "nodata": ((int, float), False),
}
_RASTER_KEYS = {
    "path": (str, True),
    "band": (int, False),
    "nodata": ((int, float), False),
    "crs": ((str, int), False),
}


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a text", dict: "a mapping", list: "a list"}
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in ts)


def _check_mapping(data: Any, schema: dict, path: str) -> dict:
    """Check keys and value types of one YAML mapping against ``schema``."""
    where = path or "the config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"{_join(path, key)}: unknown key (known keys: {known})")
    for key, (typ, required) in schema.items():
        if key not in data or data[key] is None:
            if required:
                raise ConfigError(f"{_join(path, key)}: missing required key")
            continue
        value = data[key]
        # bool is an int in Python; a YAML `yes` is never a valid year or area
        if isinstance(value, bool) or not isinstance(value, typ):
            raise ConfigError(f"{_join(path, key)}: expected {_type_name(typ)}, got {value!r}")
    return data


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _input_spec(data: Any, name: str, base: Path) -> InputSpec:
    path = f"inputs.{name}"
    _check_mapping(data, {**_INPUT_KEYS, **(_SOIL_RASTER_KEYS if name == "soil" else {})}, path)
    defaults = _DEFAULT_FIELDS[name]
    user_fields = data.get("fields") or {}
    for key, value in user_fields.items():
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise ConfigError(f"{path}.fields.{key}: unknown field name (known: {known})")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}.fields.{key}: expected a field name, got {value!r}")
    fields = {**defaults, **user_fields}
    raw_path = Path(str(data["path"])).expanduser()
    resolved = Path(os.path.normpath(raw_path if raw_path.is_absolute() else base / raw_path))
    crs = data.get("crs")
    return InputSpec(
        path=resolved,
        layer=data.get("layer"),
        fields=fields,
        where=data.get("where"),
        encoding=data.get("encoding"),
        crs=None if crs is None else (f"EPSG:{crs}" if isinstance(crs, int) else crs),
        explicit_fields=frozenset(user_fields),
        **(_soil_raster(data, resolved, path) if name == "soil" else {}),
    )


def _soil_raster(data: dict, resolved: Path, path: str) -> dict[str, Any]:
    """The soil-raster keys of ``inputs.soil``: a raster file needs ``raster_values``."""
    values = data.get("raster_values")
    is_raster = resolved.suffix.lower() in RASTER_SUFFIXES
    if values is None:
        if is_raster:
            raise ConfigError(
                f"{path}.raster_values: required for a soil raster (cell value → soil type, "
                "e.g. {1: 黑土, 2: 黑钙土})"
            )
        for key in ("band", "nodata"):
            if data.get(key) is not None:
                raise ConfigError(f"{path}.{key}: only for a soil raster (with raster_values)")
        return {}
    if not values:
        raise ConfigError(f"{path}.raster_values: expected at least one value → soil type")
    table: dict[int, str] = {}
    for value, soil in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}.raster_values: expected integer cell values, got {value!r}")
        if isinstance(soil, bool) or not isinstance(soil, str | int) or not str(soil).strip():
            raise ConfigError(
                f"{path}.raster_values.{value}: expected a soil type name or code, got {soil!r}"
            )
        table[value] = str(soil).strip()
    band = data.get("band", 1)
    if band < 1:
        raise ConfigError(f"{path}.band: expected a band number from 1, got {band!r}")
    nodata = data.get("nodata")
    return {
        "raster_values": table,
        "band": band,
        "nodata": None if nodata is None else float(nodata),
    }


def _raster_specs(data: Any, base: Path) -> dict[str, RasterSpec]:
    """``inputs.rasters``: name → {path, band, nodata, crs}."""
    specs: dict[str, RasterSpec] = {}
    for name, spec in data.items():
        path = f"inputs.rasters.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,15}", name):
            raise ConfigError(
                f"{path}: a raster name must be a letter then letters, digits or _ "
                "(at most 16), as it names the archive fields"
            )
        if name not in RASTER_PREFIXES and name.upper() in _RESERVED_PREFIXES:
            raise ConfigError(f"{path}: the name {name!r} clashes with a quality field prefix")
        if spec is None:
            raise ConfigError(f"{path}: expected a mapping with at least 'path'")
        _check_mapping(spec, _RASTER_KEYS, path)
        raw = Path(str(spec["path"])).expanduser()
        band = spec.get("band", 1)
        if band < 1:
            raise ConfigError(f"{path}.band: expected a band number from 1, got {band!r}")
        crs = spec.get("crs")
        nodata = spec.get("nodata")
        specs[name] = RasterSpec(
            path=Path(os.path.normpath(raw if raw.is_absolute() else base / raw)),
            band=band,
            nodata=None if nodata is None else float(nodata),
            crs=None if crs is None else (f"EPSG:{crs}" if isinstance(crs, int) else crs),
        )
    prefixes = [name.upper() for name in specs]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError("inputs.rasters: two raster names differ only in letter case")
    return specs


def _quality_options(data: Any) -> QualityOptions:
    """The ``quality:`` block: class thresholds, ascending numbers of the standard's count."""
    keys = ("thickness_breaks", "organic_matter_breaks")
    _check_mapping(data, dict.fromkeys(keys, (list, False)), "quality")
    defaults = QualityOptions()
    out = {}
    for key in keys:
        value = data.get(key)
        if value is None:
            continue
        count = len(getattr(defaults, key))
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ascending = numbers and all(b > a for a, b in itertools.pairwise(value))
        if not ascending or len(value) != count:
            raise ConfigError(f"quality.{key}: expected {count} ascending numbers, got {value!r}")
        out[key] = tuple(float(v) for v in value)
    return QualityOptions(**out)


def _black_soil_table(value: Any) -> tuple[dict[str, str], tuple[str, ...]]:
    """Build the alias → group lookup from the config's ``black_soil_types``.

    A list names groups; each brings its GB/T 17296 code and known sub-types along. A mapping
    ``group: [alias, ...]`` adds the province's own names or codes to a group.
    """
    if value is None:
        value = list(BLACK_SOIL_GROUPS)
    if isinstance(value, list):
        value = {group: [] for group in value}
    table: dict[str, str] = {}
    groups: list[str] = []
    for group, aliases in value.items():
        key = f"black_soil_types.{group}"
        if not isinstance(group, str) or not group.strip():
            raise ConfigError(f"black_soil_types: expected group names, got {group!r}")
        if aliases is None:
            aliases = []
        if not isinstance(aliases, list) or not all(isinstance(a, str | int) for a in aliases):
            raise ConfigError(f"{key}: expected a list of names or codes, got {aliases!r}")
        group = group.strip()
        groups.append(group)
        names = [group, *(str(a).strip() for a in aliases)]
        if group in BLACK_SOIL_GROUPS:
            names.append(BLACK_SOIL_GROUPS[group])
        names += [sub for sub, grp in BLACK_SOIL_SUBTYPES.items() if grp == group]
        for name in names:
            if table.get(name, group) != group:
                raise ConfigError(f"{key}: {name!r} already belongs to group {table[name]!r}")
            table[name] = group
    if not groups:
        raise ConfigError("black_soil_types: at least one soil group is needed")
    return table, tuple(groups)


def _options(cls: type, data: Any, path: str) -> Any:
    """Build a small options dataclass (io, overlay) from a mapping, checking key types."""
    hints = typing.get_type_hints(cls)
    schema = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is Literal:
            schema[f.name] = (str, False)
        else:
            schema[f.name] = ((int, float) if hint is float else hint, False)
    _check_mapping(data, schema, path)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is Literal and f.name in data:
            allowed = typing.get_args(hint)
            if data[f.name] not in allowed:
                raise ConfigError(
                    f"{path}.{f.name}: expected one of {', '.join(allowed)}, got {data[f.name]!r}"
                )
    return cls(**{k: v for k, v in data.items() if v is not None})


def config_from_dict(
    data: Any, *, base: Path | str = ".", source: Path | None = None
) -> SurveyConfig:
    """Validate a configuration mapping (as loaded from YAML) into a :class:`SurveyConfig`.

    Parameters
    ----------
    data : mapping
        The parsed YAML document.
    base : path
        Folder that relative input and output paths are resolved from.
    source : path, optional
        The file the mapping came from (recorded in the archive's metadata).

    Raises
    ------
    ConfigError
        On an unknown key, a missing required key or a bad value; the message names the key path.
    """
    base = Path(base)
    _check_mapping(data, _TOP_KEYS, "")
    year = data["year"]
    if not 1900 <= year <= 2200:
        raise ConfigError(f"year: expected a survey year such as 2024, got {year!r}")

    inputs = data["inputs"]
    _check_mapping(
        inputs,
        {"parcels": (dict, True), "soil": (dict, True), "counties": (dict, False),
         "region": (dict, False), **{name: (dict, False) for name in PROTECTION_INPUTS},
         "rasters": (dict, False)},
        "inputs",
    )  # fmt: skip
    specs = {
        name: _input_spec(inputs[name], name, base)
        for name in ("parcels", "soil", "counties", "region", *PROTECTION_INPUTS)
        if inputs.get(name) is not None
    }
    rasters = _raster_specs(inputs.get("rasters") or {}, base)

    output = _check_mapping(
        data["output"],
        {"path": (str, True), "format": (str, False), "crs": ((str, int), False)},
        "output",
    )
    out_path = Path(output["path"]).expanduser()
    out_path = Path(os.path.normpath(out_path if out_path.is_absolute() else base / out_path))
    out_format = output.get("format") or "gpkg"
    if out_format not in ("gpkg", "parquet"):
        raise ConfigError(f"output.format: expected one of gpkg, parquet, got {out_format!r}")
    if out_format == "gpkg" and out_path.suffix.lower() != ".gpkg":
        raise ConfigError(f"output.path: the archive must be a .gpkg file, got {output['path']!r}")
    if out_format == "parquet" and out_path.suffix.lower() == ".gpkg":
        raise ConfigError(
            f"output.path: a parquet archive is a folder, not a .gpkg file: {output['path']!r}"
        )
    out_crs = output.get("crs")
    if out_crs is not None:
        out_crs = f"EPSG:{out_crs}" if isinstance(out_crs, int) else str(out_crs)
        _check_crs(out_crs, "output.crs")
    partition = _options(PartitionOptions, data.get("partition") or {}, "partition")
    if partition.grid_size_m <= 0:
        raise ConfigError(
            "partition.grid_size_m: expected a cell size in metres > 0, "
            f"got {partition.grid_size_m}"
        )

    if isinstance(partition.max_parcels, bool) or partition.max_parcels < 0:
        raise ConfigError(
            "partition.max_parcels: expected a number of parcels >= 0 (0: never split a county), "
            f"got {partition.max_parcels!r}"
        )

    crs = str(data.get("crs") or "auto")
    if crs != "auto":
        _check_projected(crs, "crs")

    codes = {
        key: _code_list(data.get(key), key)
        for key in ("cultivated_codes", "construction_codes", "digging_codes")
    }
    share = data.get("approved_cover_share", 0.95)
    if not 0 < share <= 1:
        raise ConfigError(f"approved_cover_share: expected a share in (0, 1], got {share!r}")

    min_piece = data.get("min_piece_area", 0.1)
    if min_piece < 0:
        raise ConfigError(f"min_piece_area: expected a non-negative area in m², got {min_piece!r}")

    table, groups = _black_soil_table(data.get("black_soil_types"))
    overlay = _options(OverlayOptions, data.get("overlay") or {}, "overlay")
    if overlay.max_vertices < 16:
        raise ConfigError(f"overlay.max_vertices: expected at least 16, got {overlay.max_vertices}")
    if overlay.threads < 0:
        raise ConfigError(f"overlay.threads: expected 0 (auto) or more, got {overlay.threads}")
    return SurveyConfig(
        year=year,
        inputs=Inputs(**specs, rasters=rasters),
        output=OutputOptions(path=out_path, format=out_format, crs=out_crs),
        crs=crs,
        black_soil_types=table,
        black_soil_groups=groups,
        cultivated_codes=codes["cultivated_codes"] or CULTIVATED_CODES,
        construction_codes=codes["construction_codes"] or CONSTRUCTION_CODES,
        digging_codes=codes["digging_codes"] or DIGGING_CODES,
        approved_cover_share=float(share),
        min_piece_area=float(min_piece),
        io=_options(IOOptions, data.get("io") or {}, "io"),
        overlay=overlay,
        quality=_quality_options(data.get("quality") or {}),
        report=_report_options(data.get("report"), base),
        partition=partition,
        source=source,
        raw=data,
    )


def _report_options(data: Any, base: Path) -> ReportOptions:
    """``report: {targets: PATH, base_archive: PATH}``, paths resolved from the config's folder."""
    if data is None:
        return ReportOptions()
    _check_mapping(data, {"targets": (str, False), "base_archive": (str, False)}, "report")
    paths = {}
    for key in ("targets", "base_archive"):
        if data.get(key):
            raw = Path(str(data[key])).expanduser()
            paths[key] = Path(os.path.normpath(raw if raw.is_absolute() else base / raw))
    return ReportOptions(**paths)


def _code_list(codes: Any, key: str) -> tuple[str, ...] | None:
    if codes is None:
        return None
    if not codes or not all(isinstance(c, str) for c in codes):
        raise ConfigError(
            f"{key}: expected a list of land-class codes as quoted text "
            "(e.g. '0101', keeping the leading zero)"
        )
    return tuple(codes)


def _check_crs(crs: str, key: str) -> None:
    """A CRS pyproj understands (the archive's declared CRS may be geographic, e.g. 4490)."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        CRS.from_user_input(crs)
    except CRSError as err:
        raise ConfigError(f"{key}: not a coordinate reference system: {crs!r}") from err


def _check_projected(crs: str, key: str) -> None:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError as err:
        raise ConfigError(f"{key}: not a coordinate reference system: {crs!r}") from err
    if not parsed.is_projected:
        raise ConfigError(
            f"{key}: {crs} is not a projected CRS; areas must be measured in a projected CRS "
            "such as a CGCS2000 Gauss-Krüger zone (EPSG:4513-4554)"
        )


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> SurveyConfig:
    """Load and validate a survey-job YAML file.

    Parameters
    ----------
    path : path
        The YAML file. Relative paths inside it are resolved from its folder.
    overrides : mapping, optional
        Top-level keys replacing the file's; a mapping is merged into the file's mapping
        (e.g. ``{"output": {"path": ...}}`` from ``--out`` keeps ``output.format``).

    Returns
    -------
    SurveyConfig

    Raises
    ------
    ConfigError
        When the file cannot be read or parsed, or does not validate.

    Examples
    --------
    >>> cfg = load_config("configs/demo.yaml")  # doctest: +SKIP
    >>> cfg.inputs.parcels.fields["id"]  # doctest: +SKIP
    'BSM'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file ({err})") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from err
    if data is None:
        raise ConfigError(f"{path}: the config file is empty")
    if overrides and isinstance(data, dict):
        # a mapping override merges into the file's mapping (``--out`` keeps output.format)
        data = {
            **data,
            **{
                k: {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
                for k, v in overrides.items()
            },
        }
    try:
        return config_from_dict(data, base=path.resolve().parent, source=path.resolve())
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
