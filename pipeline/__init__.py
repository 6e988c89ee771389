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
- :func:`make_demo_data` — synthetic survey data of any size.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .archive import open_archive, read_metadata
from .areas import allocate_cents, ellipsoidal_area
from .config import SurveyConfig, config_from_dict, load_config
from .errors import (
    ConfigError,
    InputError,
    InvariantError,
    OutputError,
    PipelineError,
    UsageError,
)
from .overlay import overlay
from .runner import SurveyOutcome, run_survey, validate_inputs

__all__ = [
    "ConfigError",
    "InputError",
    "InvariantError",
    "OutputError",
    "PipelineError",
    "SurveyConfig",
    "SurveyOutcome",
    "UsageError",
    "__version__",
    "allocate_cents",
    "config_from_dict",
    "ellipsoidal_area",
    "load_config",
    "make_demo_data",
    "open_archive",
    "overlay",
    "read_metadata",
    "run_survey",
    "validate_inputs",
]


def __getattr__(name: str) -> object:
    # the demo generator pulls in rasterio; import it only when asked for
    if name == "make_demo_data":
        from .demo import make_demo_data

        return make_demo_data
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
