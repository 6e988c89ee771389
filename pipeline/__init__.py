"""blacksoil: the black-soil farmland survey pipeline (黑土耕地调查).

Cultivated land parcels of the annual land-use change survey are checked parcel by parcel
against the soil map's black-soil types, and the result is written as a GeoPackage archive
(黑土耕地档案) with exact area accounting. The public API:

- :func:`load_config`, :func:`config_from_dict` — read and validate a survey job;
- :func:`run_survey` — run a job and write its archive;
- :func:`validate_inputs` — only read and check a job's inputs;
- :func:`open_archive`, :func:`read_metadata` — read an archive back;
- :func:`overlay` — the overlay engine on geometry arrays;
- :func:`ellipsoidal_area`, :func:`allocate_cents` — the area rules;
- :func:`make_demo_data` — synthetic survey data of any size; :func:`make_next_year` — the
  following year of such data (changes applied, parcels re-digitised);
- :func:`county_totals`, :func:`soil_group_totals`, :func:`county_by_soil_group`,
  :func:`conflict_lists`, :func:`protection_summary`, :func:`quality_summary`,
  :func:`qa_summary`, :func:`select_county`, :func:`responsibility_assessment`,
  :func:`read_targets`, :func:`field_title` — summary tables of an archive;
- :func:`write_report` — the HTML report, workbook and CSV tables of an archive;
- :func:`diff_archives`, :func:`write_diff` — the yearly comparison of two archives.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .archive import open_archive, read_metadata
from .areas import allocate_cents, ellipsoidal_area
from .config import SurveyConfig, config_from_dict, load_config
from .errors import (
    ConfigError,
    InputError,
    Interrupted,
    InvariantError,
    OutputError,
    PipelineError,
    UsageError,
)
from .overlay import overlay
from .runner import SurveyOutcome, run_survey, validate_inputs
from .summaries import (
    conflict_lists,
    county_by_soil_group,
    county_totals,
    field_title,
    protection_summary,
    qa_summary,
    quality_summary,
    read_targets,
    responsibility_assessment,
    select_county,
    soil_group_totals,
)

__all__ = [
    "ConfigError",
    "InputError",
    "Interrupted",
    "InvariantError",
    "OutputError",
    "PipelineError",
    "SurveyConfig",
    "SurveyOutcome",
    "UsageError",
    "__version__",
    "allocate_cents",
    "config_from_dict",
    "conflict_lists",
    "county_by_soil_group",
    "county_totals",
    "diff_archives",
    "ellipsoidal_area",
    "field_title",
    "load_config",
    "make_demo_data",
    "make_next_year",
    "open_archive",
    "overlay",
    "protection_summary",
    "qa_summary",
    "quality_summary",
    "read_metadata",
    "read_targets",
    "responsibility_assessment",
    "run_survey",
    "select_county",
    "soil_group_totals",
    "validate_inputs",
    "write_diff",
    "write_report",
]


def __getattr__(name: str) -> object:
    # the demo generator pulls in rasterio; import it only when asked for
    if name in ("make_demo_data", "make_next_year"):
        from . import demo

        return getattr(demo, name)
    # the report pulls in matplotlib and openpyxl: import it (and the diff) only when asked for
    if name == "write_report":
        from .report import write_report

        return write_report
    if name in ("diff_archives", "write_diff"):
        from . import diff

        return getattr(diff, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
