"""The ``blacksoil`` command line: parse options, call one pipeline function, map errors.

Exit codes: 0 success, 1 data problem (bad input, unwritable output, failed check),
2 usage or config problem.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

import pipeline
from pipeline.errors import ConfigError, PipelineError, UsageError

logger = logging.getLogger("blacksoil")

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


class _UsageProblem(click.ClickException):
    exit_code = 2


def _fail(err: PipelineError) -> click.ClickException:
    if isinstance(err, ConfigError | UsageError):
        return _UsageProblem(str(err))
    return click.ClickException(str(err))


class _Progress:
    """Stage messages with elapsed time on stderr (silent with -q)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            click.echo(f"[{time.perf_counter() - self.start:7.1f}s] {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.version_option(pipeline.__version__, prog_name="blacksoil")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """blacksoil: black-soil farmland survey (黑土耕地调查).

    Checks cultivated land parcels against the soil map's black-soil types, parcel by parcel,
    and writes a black-soil farmland archive (GeoPackage).

    \b
    Examples:
      blacksoil survey                      # the demo survey on the shipped data
      blacksoil survey job.yaml --overwrite
      blacksoil validate job.yaml
      blacksoil inspect out/archive.gpkg
    """
    level = (
        logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    ctx.obj = {"quiet": quiet, "verbose": verbose}


def _load(config: str | None, out: str | None = None) -> pipeline.SurveyConfig:
    path = Path(config) if config else DEMO_CONFIG
    if config is None and not path.exists():
        raise UsageError(
            f"{path}: the demo config is not installed here; give a CONFIG file "
            "(install with 'pip install -e .' from the source tree to use the demo)"
        )
    overrides = {"output": {"path": str(Path(out).resolve())}} if out else None
    return pipeline.load_config(path, overrides=overrides)


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Archive path (overrides output.path)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing archive.")
@click.pass_context
def survey(ctx: click.Context, config: str | None, out: str | None, overwrite: bool) -> None:
    """Run a survey job and write its archive.

    CONFIG is the job's YAML file; without it the demo job (configs/demo.yaml) runs on the
    shipped demo data.

    \b
    Examples:
      blacksoil survey
      blacksoil survey configs/demo.yaml --out /tmp/demo.gpkg --overwrite
      blacksoil -q survey job.yaml
    """
    quiet = ctx.obj["quiet"]
    try:
        cfg = _load(config, out)
        outcome = pipeline.run_survey(cfg, overwrite=overwrite, progress=_Progress(quiet))
    except PipelineError as err:
        raise _fail(err) from None
    if quiet:
        return
    click.echo(f"archive: {outcome.archive}")
    c = outcome.counts
    click.echo(
        f"parcels read {c['parcels_read']}, surveyed {c['parcels_surveyed']}; "
        f"black-soil pieces {c['pieces_black']}; QA rows {c['qa_rows']}"
    )
    _echo_totals(outcome.totals)
    cons = outcome.conservation
    click.echo(
        f"conservation: {'PASSED' if cons['passed'] else 'FAILED'} "
        f"({cons['parcels']} parcels, max relative error {cons['max_rel_error']:.2e})"
    )


def _echo_totals(totals) -> None:
    rows = totals[totals["TL"] == "合计"]
    click.echo("black-soil farmland (TBDLMJ) by county:")
    for _, r in rows.iterrows():
        click.echo(
            f"  {r['XZQDM']:>6} {r['XZQMC'] or '':<8} {r['TBDLMJ']:>16,.2f} m² "
            f"{r['TBDLMJ_GQ']:>12,.2f} 公顷 {r['TBDLMJ_MU']:>14,.2f} 亩"
        )


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.pass_context
def validate(ctx: click.Context, config: str) -> None:
    """Read and check a job's inputs only, and print the QA summary.

    \b
    Examples:
      blacksoil validate configs/demo.yaml
    """
    try:
        cfg = _load(config)
        inputs = pipeline.validate_inputs(cfg, progress=_Progress(ctx.obj["quiet"]))
    except PipelineError as err:
        raise _fail(err) from None
    c = inputs.counts
    click.echo(f"working CRS: {inputs.crs.to_string()}")
    click.echo(
        f"parcels read {c['parcels_read']}, cultivated and usable {c['parcels_surveyed']}; "
        f"soil polygons {c['soil_used']}"
    )
    summary = inputs.qa.summary()
    if summary.empty:
        click.echo("QA: no problems found")
        return
    click.echo("QA summary (layer, check, action: count):")
    for _, r in summary.iterrows():
        click.echo(f"  {r['layer']}, {r['check']}, {r['action']}: {r['count']}")


@cli.command()
@click.argument("archive", type=click.Path(dir_okay=False))
def inspect(archive: str) -> None:
    """Show an archive's layers, counts and totals by county and soil group.

    \b
    Examples:
      blacksoil inspect out/demo_archive.gpkg
    """
    try:
        layers = pipeline.open_archive(archive)
        meta = pipeline.read_metadata(archive)
    except PipelineError as err:
        raise _fail(err) from None
    click.echo(f"archive: {archive} (survey year {meta.get('survey_year')}, CRS {meta.get('crs')})")
    for name, frame in layers.items():
        click.echo(f"  {name:<12} {len(frame):>9} rows")
    summary = layers["HTGD_XZQHZ"]
    click.echo("black-soil farmland by county and soil group (TBDLMJ):")
    for _, r in summary.iterrows():
        click.echo(
            f"  {r['XZQDM']:>6} {r['XZQMC'] or '':<8} {r['TL']:<6} {int(r['TBGS']):>7} pieces "
            f"{r['TBDLMJ']:>16,.2f} m² {r['TBDLMJ_GQ']:>12,.2f} 公顷 {r['TBDLMJ_MU']:>14,.2f} 亩"
        )
    cons = meta.get("conservation", {})
    if cons:
        click.echo(
            f"conservation: {'PASSED' if cons.get('passed') else 'FAILED'} "
            f"(max relative error {cons.get('max_rel_error', 0):.2e})"
        )


@cli.command("demo-data")
@click.argument("outdir", type=click.Path(file_okay=False))
@click.option("--parcels", default=6000, show_default=True, type=int, help="Number of parcels.")
@click.option(
    "--counties",
    default="220122,220183,220113",
    show_default=True,
    help="Comma-separated county codes (吉林省 counties).",
)
@click.option("--seed", default=2024, show_default=True, type=int, help="Random seed.")
@click.option(
    "--soil-polygon-ha",
    default=50.0,
    show_default=True,
    type=float,
    help="Typical soil polygon size in hectares.",
)
def demo_data(outdir: str, parcels: int, counties: str, seed: int, soil_polygon_ha: float) -> None:
    """Make synthetic survey data (parcels, soil map, counties, region) of any size.

    \b
    Examples:
      blacksoil demo-data /tmp/demo
      blacksoil demo-data /tmp/big --parcels 200000
      blacksoil demo-data /tmp/two --counties 220122,220183
      blacksoil demo-data /tmp/coarse --parcels 140000 --soil-polygon-ha 900
    """
    codes = [c.strip() for c in counties.split(",") if c.strip()]
    try:
        written = pipeline.make_demo_data(
            outdir, parcels=parcels, counties=codes, seed=seed, soil_polygon_ha=soil_polygon_ha
        )
    except PipelineError as err:
        raise _fail(err) from None
    for name, path in written.items():
        click.echo(f"{name}: {path}")


def main() -> None:
    """Console-script entry point: no traceback for unforeseen errors unless -v is given."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except Exception as err:
        if "-v" in sys.argv or "-vv" in sys.argv or "--verbose" in sys.argv:
            raise
        click.echo(
            f"Error: internal error: {type(err).__name__}: {err} (run with -v for details)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
