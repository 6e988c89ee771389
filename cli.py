"""The ``blacksoil`` command line: parse options, call one pipeline function, map errors.

Exit codes: 0 success, 1 data problem (bad input, unwritable output, failed check),
2 usage or config problem, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
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
      blacksoil report out/archive.gpkg --out out/report
      blacksoil diff out/2024.gpkg out/2025.gpkg --out out/diff.gpkg
    """
    level = (
        logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    )
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # dask's own log (cluster start and stop, at INFO) only with -vv; read by dask when it is
    # first imported, here and in the worker processes; a DASK_LOGGING__DISTRIBUTED set by the
    # user wins
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "info" if verbose >= 2 else "warning")
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
@click.option("--overwrite", is_flag=True, help="Replace an existing archive (and its report).")
@click.option(
    "--no-report", is_flag=True, help="Do not write the report folder beside the archive."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Run the partitions on a local dask cluster of N worker processes.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run the partitions on an existing dask cluster (tcp://HOST:PORT).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Keep the partitions an interrupted run finished; run only the others.",
)
@click.pass_context
def survey(
    ctx: click.Context,
    config: str | None,
    out: str | None,
    overwrite: bool,
    no_report: bool,
    workers: int | None,
    scheduler: str | None,
    resume: bool,
) -> None:
    """Run a survey job and write its archive, and its report beside it.

    CONFIG is the job's YAML file; without it the demo job (configs/demo.yaml) runs on the
    shipped demo data. The report (report.html, summary.xlsx, csv/) goes to
    <archive folder>/<archive stem>_report/.

    \b
    Examples:
      blacksoil survey
      blacksoil survey configs/demo.yaml --out /tmp/demo.gpkg --overwrite
      blacksoil -q survey job.yaml --no-report
      blacksoil survey province.yaml --workers 8
      blacksoil survey province.yaml --scheduler tcp://10.0.0.5:8786 --resume
    """
    from pipeline import report

    quiet = ctx.obj["quiet"]
    progress = _Progress(quiet)
    try:
        cfg = _load(config, out)
        folder = report.report_folder(cfg.output.path)
        if not no_report:
            report.check_report_folder(folder, overwrite)
        no_report = no_report or cfg.output.format == "parquet"  # the report reads a GeoPackage
        outcome = pipeline.run_survey(
            cfg,
            overwrite=overwrite,
            progress=progress,
            workers=workers,
            scheduler=scheduler,
            resume=resume,
        )
        if not no_report:
            progress(f"writing the report: {folder}")
            report.write_report(
                outcome.archive,
                folder,
                targets=cfg.report.targets,
                base=cfg.report.base_archive,
                overwrite=overwrite,
            )
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
    _echo_protection(outcome.totals, c)
    cons = outcome.conservation
    click.echo(
        f"conservation: {'PASSED' if cons['passed'] else 'FAILED'} "
        f"({cons['parcels']} parcels, max relative error {cons['max_rel_error']:.2e})"
    )
    if not no_report:
        click.echo(f"report: {folder / report.HTML_NAME}")


def _echo_protection(totals, counts: dict) -> None:
    """One line per protection analysis that ran (from the grand total row and the counts)."""
    grand = totals[(totals["XZQDM"] == "合计") & (totals["TL"] == "合计")]
    if grand.empty:
        return
    g = grand.iloc[0]
    lines = []
    if "JBNT_MJ" in g:
        lines.append(
            f"in basic farmland {g['JBNT_MJ']:,.2f} m²; outside (to be put in the red line) "
            f"{g['DNRHX_MJ']:,.2f} m² in {counts.get('outside_basic_farmland', 0)} parts"
        )
    if "CZKF_MJ" in g or "STHX_MJ" in g:
        lines.append(
            f"in the urban development boundary {g.get('CZKF_MJ', 0.0):,.2f} m²; in the "
            f"ecological red line {g.get('STHX_MJ', 0.0):,.2f} m²"
        )
    if "JSZY_MJ" in g:
        lines.append(
            f"under construction projects {g['JSZY_MJ']:,.2f} m² "
            f"({counts.get('construction_occupations', 0)} project × piece overlaps)"
        )
    if "changes" in counts:
        lines.append(
            f"change parcels {counts['changes']}: {counts.get('changes_construction', 0)} to "
            f"construction, {counts.get('changes_digging', 0)} dug out, "
            f"{counts.get('changes_added', 0)} new cultivated; suspected illegal "
            f"{counts.get('suspected_illegal', 0)}"
        )
    for line in lines:
        click.echo(f"protection: {line}")


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


@cli.command("report")
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    help="Report folder (default: <archive folder>/<archive stem>_report).",
)
@click.option(
    "--targets",
    type=click.Path(dir_okay=False),
    help="CSV of county protection targets: XZQDM and MBMJ_GQ (公顷), MBMJ_MU (亩) or MBMJ (m²).",
)
@click.option(
    "--base",
    type=click.Path(dir_okay=False),
    help="Base-year archive: its county totals are the targets where --targets gives none.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report.")
def report_command(
    archive: str, out: str | None, targets: str | None, base: str | None, overwrite: bool
) -> None:
    """Write the report of an archive: report.html, summary.xlsx and csv/ tables.

    The page is one offline file (no external reference); with --targets or --base it holds
    the responsibility assessment (保护责任考核) per county.

    \b
    Examples:
      blacksoil report out/demo_archive.gpkg --out out/demo_report
      blacksoil report out/2025.gpkg --base out/2024.gpkg --overwrite
      blacksoil report out/2025.gpkg --targets targets.csv
    """
    from pipeline import report

    folder = Path(out) if out else report.report_folder(archive)
    try:
        files = pipeline.write_report(
            archive, folder, targets=targets, base=base, overwrite=overwrite
        )
    except PipelineError as err:
        raise _fail(err) from None
    click.echo(f"report: {files.html}")
    click.echo(f"workbook: {files.xlsx}")
    click.echo(f"tables: {len(files.csv)} CSV files in {files.html.parent / report.CSV_FOLDER}")


@cli.command("diff")
@click.argument("old_archive", type=click.Path(dir_okay=False))
@click.argument("new_archive", type=click.Path(dir_okay=False))
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Write the comparison (GeoPackage)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing comparison file.")
@click.option(
    "--match-share",
    default=0.5,
    show_default=True,
    type=float,
    help="Parcels overlapping by this share of the smaller one are the same land.",
)
def diff_command(
    old_archive: str, new_archive: str, out: str | None, overwrite: bool, match_share: float
) -> None:
    """Compare two years: black-soil farmland lost, gained and changed, per county.

    Parcels are matched by identity (BSM) and location, so a re-digitised or renumbered
    parcel is not reported as lost and found.

    \b
    Examples:
      blacksoil diff out/2024.gpkg out/2025.gpkg
      blacksoil diff out/2024.gpkg out/2025.gpkg --out out/diff_2024_2025.gpkg
    """
    try:
        if out:
            from pipeline.archive import check_output

            check_output(Path(out), overwrite)
        result = pipeline.diff_archives(old_archive, new_archive, match_share=match_share)
        if out:
            pipeline.write_diff(result, out, overwrite=overwrite)
    except PipelineError as err:
        raise _fail(err) from None
    _echo_diff(result)
    if out:
        click.echo(f"comparison: {out}")


def _echo_diff(result) -> None:
    s = result.summary
    c = result.counties
    total = c.iloc[-1]
    click.echo(
        f"black-soil farmland {result.old_year} → {result.new_year}: "
        f"{total['JQMJ_GQ']:,.4f} → {total['BQMJ_GQ']:,.4f} 公顷 "
        f"({total['JBHMJ_GQ']:+,.4f} 公顷)"
    )
    click.echo(
        f"lost {s['lost']} parcels ({total['JSMJ'] / 10_000:,.4f} 公顷), "
        f"gained {s['gained']} ({total['ZJMJ'] / 10_000:,.4f} 公顷), "
        f"changed {s['changed']} (−{total['BGJSMJ'] / 10_000:,.4f} / "
        f"+{total['BGZJMJ'] / 10_000:,.4f} 公顷)"
    )
    click.echo("by county (公顷): old, new, lost, gained, net change")
    for _, r in c.iloc[:-1].iterrows():
        click.echo(
            f"  {r['XZQDM']:>6} {r['XZQMC'] or '':<8} {r['JQMJ_GQ']:>12,.4f} "
            f"{r['BQMJ_GQ']:>12,.4f} {r['JSMJ'] / 10_000:>10,.4f} {r['ZJMJ'] / 10_000:>10,.4f} "
            f"{r['JBHMJ_GQ']:>+12,.4f}"
        )


@cli.command("demo-data")
@click.argument("outdir", required=False, type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), help="Output folder (or OUTDIR).")
@click.option(
    "--next-year",
    "next_year",
    type=click.Path(file_okay=False),
    help="Make the year after the demo data in this folder (changes, projects, parcels).",
)
@click.option("--year", type=int, help="With --next-year: the new survey year [default: N+1].")
@click.option("--parcels", default=6000, show_default=True, type=int, help="Number of parcels.")
@click.option(
    "--counties",
    default="220122,220183,220113",
    show_default=True,
    help="Comma-separated county codes (吉林省 counties).",
)
@click.option("--seed", type=int, help="Random seed [default: 2024; 2025 with --next-year].")
@click.option(
    "--soil-polygon-ha",
    default=50.0,
    show_default=True,
    type=float,
    help="Typical soil polygon size in hectares.",
)
@click.pass_context
def demo_data(
    ctx: click.Context,
    outdir: str | None,
    out: str | None,
    next_year: str | None,
    year: int | None,
    parcels: int,
    counties: str,
    seed: int | None,
    soil_polygon_ha: float,
) -> None:
    """Make synthetic survey data of any size: parcels, soil map, counties, region, the year's
    change parcels, construction projects, basic farmland and zoning; or, with --next-year,
    the following year of such a data set.

    \b
    Examples:
      blacksoil demo-data /tmp/demo
      blacksoil demo-data /tmp/big --parcels 200000
      blacksoil demo-data /tmp/two --counties 220122,220183
      blacksoil demo-data /tmp/coarse --parcels 140000 --soil-polygon-ha 900
      blacksoil demo-data --next-year data/demo --out /tmp/demo-2025
    """
    from click.core import ParameterSource

    seeded = {} if seed is None else {"seed": seed}
    try:
        if outdir and out and Path(outdir) != Path(out):
            raise UsageError("give the output folder once: OUTDIR or --out")
        target = out or outdir
        if target is None:
            raise UsageError("give the output folder: OUTDIR or --out DIR")
        if next_year is not None:
            given = [
                "--" + name.replace("_", "-")
                for name in ("parcels", "counties", "soil_polygon_ha")
                if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
            ]
            if given:
                raise UsageError(
                    f"{', '.join(given)} cannot be used with --next-year: "
                    f"the parcels come from {next_year}"
                )
            from pipeline.demo import make_next_year

            written = make_next_year(next_year, target, year=year, **seeded)
        else:
            if year is not None:
                raise UsageError("--year applies only with --next-year")
            codes = [c.strip() for c in counties.split(",") if c.strip()]
            written = pipeline.make_demo_data(
                target, parcels=parcels, counties=codes, soil_polygon_ha=soil_polygon_ha, **seeded
            )
    except PipelineError as err:
        raise _fail(err) from None
    for name, path in written.items():
        click.echo(f"{name}: {path}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system or ``kill`` ending the run), handled as Ctrl-C is."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def main() -> None:
    """Console-script entry point: no traceback for unforeseen errors unless -v is given.

    SIGTERM stops a run as Ctrl-C does (a partitioned run keeps its finished partitions, no
    temporary archive is left); the exit code is 128 + the signal's number (130, 143)."""
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort as err:
        # click turns Ctrl-C into Abort; an interrupted partitioned run says what it kept
        cause = err.__cause__
        if isinstance(cause, KeyboardInterrupt):
            term = isinstance(cause, _Terminated) or isinstance(cause.__cause__, _Terminated)
            click.echo(f"Error: {cause or ('terminated' if term else 'interrupted')}", err=True)
            sys.exit(128 + (signal.SIGTERM if term else signal.SIGINT))
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
