"""The `mer` command. Each subcommand is a thin shell over a Python function of the same name:

    mer synth iemocap OUT        -> mer_data.synth.iemocap.synth_iemocap
    mer convert iemocap RAW OUT  -> pipelines.convert.plan_iemocap + run_conversion
    mer demo                     -> both, on an embedded synthetic default
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

import mer_data

# Exit status of a conversion that finished but rejected utterances (they are in errors.jsonl).
EXIT_REJECTED = 3
TERMINAL_PROBLEMS = 40


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(mer_data.__version__, prog_name="mer")
def main() -> None:
    """mer-data: raw emotion-recognition corpora to streaming WebDataset shards.

    \b
    Start here:
      mer demo                                  # synthetic corpus -> shards, in ./demo-out
      mer synth iemocap RAW/                    # a synthetic IEMOCAP release
      mer convert iemocap RAW/ SHARDS/          # raw release -> shards (Dask)
    """


@main.group()
def synth() -> None:
    """Synthetic corpora in the exact layout of the real releases (for demos and tests)."""


def _int_list(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}")


def _frame_size(value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, got {value!r}")
    return width, height


@synth.command("iemocap")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sessions", default="1,2,3,4,5", show_default=True, help="Sessions to generate, comma-separated.")
@click.option("--dialogs-per-session", default=2, show_default=True, type=click.IntRange(1))
@click.option("--utterances-per-dialog", default=24, show_default=True, type=click.IntRange(2))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--ids-from", type=click.Choice(["dai2021"]), default=None,
              help="Use the published utterance ids (all 7380) instead of generated ones.")
@click.option("--frame-size", default="720x480", show_default=True, help="Dialog video size WIDTHxHEIGHT.")
@click.option("--voice", type=click.Choice(["auto", "espeak", "synth"]), default="auto", show_default=True,
              help="espeak-ng speech where available (auto), or a synthesized voice.")
def synth_iemocap_command(out, sessions, dialogs_per_session, utterances_per_dialog, seed, ids_from, frame_size, voice):
    """Write a synthetic IEMOCAP release to OUT/IEMOCAP_full_release.

    \b
    Examples:
      mer synth iemocap raw/
      mer synth iemocap raw/ --sessions 1,2 --dialogs-per-session 1 --seed 7
      mer synth iemocap raw-full/ --ids-from dai2021 --frame-size 64x48 --voice synth
    """
    from mer_data.synth.iemocap import synth_iemocap

    root = synth_iemocap(out, sessions=_int_list(sessions), dialogs_per_session=dialogs_per_session,
                         utterances_per_dialog=utterances_per_dialog, seed=seed, ids_from=ids_from,
                         frame_size=_frame_size(frame_size), voice=voice, progress=True)
    click.echo(f"synthetic IEMOCAP release written to {root}")


@main.group()
def convert() -> None:
    """Convert a raw corpus release to utterance-level WebDataset shards."""


def _shared_convert_options(command):
    """The options every corpus's convert command has (applied bottom-up, shown in this order)."""
    shared = [
        click.argument("raw", type=click.Path(exists=True, file_okay=False, path_type=Path)),
        click.argument("out", type=click.Path(file_okay=False, path_type=Path)),
        click.option("--frame-interval-ms", default=500, show_default=True, type=click.IntRange(1),
                     help="Face boxes are detected on frames this far apart."),
        click.option("--workers", default=None, type=click.IntRange(1),
                     help="Worker processes of the local Dask cluster [default: CPU count]."),
        click.option("--scheduler", default=None, help="Address of an existing Dask scheduler (tcp://host:8786)."),
        click.option("--shard-max-bytes", default="256MiB", show_default=True,
                     help="Size cap of a shard (e.g. 64MB, 1GiB)."),
        click.option("--shard-max-count", default=1000, show_default=True, type=click.IntRange(1),
                     help="Samples per shard cap."),
        click.option("--shuffle-seed", default=0, show_default=True, type=int,
                     help="Seed of the shuffle across recordings."),
        click.option("--overwrite", is_flag=True,
                     help="Replace a finished conversion in OUT (without it, a rerun resumes)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for decorate in reversed(shared):
        command = decorate(command)
    return command


@convert.command("iemocap")
@_shared_convert_options
@click.option("--split", default="dai2021", show_default=True,
              help="dai2021 (published random utterance split), session:N (leave session N out), random:SEED.")
@click.option("--classes", default="ang,exc,fru,hap,neu,sad", show_default=True,
              help="Category codes to keep, comma-separated, or 'all'.")
def convert_iemocap_command(raw, out, split, classes, frame_interval_ms, workers, scheduler, shard_max_bytes,
                            shard_max_count, shuffle_seed, overwrite, quiet):
    """Convert the IEMOCAP release at RAW into shards in OUT.

    Writes {split}-NNNNNN.tar, index.parquet, errors.jsonl, excluded.jsonl and dataset.json.
    Exit status: 0 when every chosen utterance was written, 3 when some were rejected (each is in
    errors.jsonl with file, line and reason), 1 on a fatal error.

    \b
    Examples:
      mer convert iemocap IEMOCAP_full_release/ shards/
      mer convert iemocap raw/ shards/ --split session:5 --workers 8
      mer convert iemocap raw/ shards/ --scheduler tcp://10.0.0.5:8786
    """
    from pipelines.convert import plan_iemocap
    from pipelines.options import ConvertOptions

    options = ConvertOptions(corpus="iemocap", split=split, classes=_classes(classes),
                             frame_interval_ms=frame_interval_ms, shard_max_bytes=_bytes(shard_max_bytes),
                             shard_max_count=shard_max_count, shuffle_seed=shuffle_seed)
    _plan_and_run(lambda: plan_iemocap(raw, options), out, options, workers, scheduler, overwrite, quiet)


@convert.command("mosei")
@_shared_convert_options
@click.option("--split", default="dai2021", show_default=True,
              help="dai2021 (published utterance split), sdk (standard video folds), random:SEED (by video).")
@click.option("--labels", type=click.Choice(["csd", "mturk"]), default="csd", show_default=True,
              help="Label source: the SDK's CMU_MOSEI_Labels.csd or the raw MTurk CSVs under Labels/.")
@click.option("--max-height", default=360, show_default=True, type=click.IntRange(2),
              help="Videos taller than this are downscaled (aspect kept).")
def convert_mosei_command(raw, out, split, labels, max_height, frame_interval_ms, workers, scheduler,
                          shard_max_bytes, shard_max_count, shuffle_seed, overwrite, quiet):
    """Convert the CMU-MOSEI release at RAW (CMU_MOSEI/Raw or a folder holding it) into shards in OUT.

    One task per source video; speech from the 16 kHz WAV, or the video's own audio track where
    the WAV is missing (recorded in each sample's sources). Exit status as for iemocap.

    \b
    Examples:
      mer convert mosei CMU_MOSEI/Raw shards/ --split sdk
      mer convert mosei CMU_MOSEI/ shards/ --labels mturk --max-height 240
    """
    from pipelines.convert import plan_mosei
    from pipelines.options import ConvertOptions

    options = ConvertOptions(corpus="mosei", split=split, classes=("all",), frame_interval_ms=frame_interval_ms,
                             shard_max_bytes=_bytes(shard_max_bytes), shard_max_count=shard_max_count,
                             shuffle_seed=shuffle_seed, max_height=max_height, extra={"labels": labels})
    _plan_and_run(lambda: plan_mosei(raw, options, labels=labels), out, options, workers, scheduler, overwrite,
                  quiet)


def _plan_and_run(make_plan, out, options, workers, scheduler, overwrite, quiet):
    """Plan (clear errors for unusable input), run, and exit 3 when anything was rejected."""
    from pipelines.convert import OutputConflict

    try:
        plan = make_plan()
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc))
    try:
        report = _run(plan, out, options, workers, scheduler, overwrite, quiet)
    except OutputConflict as exc:
        raise click.ClickException(str(exc))
    sys.exit(EXIT_REJECTED if report.rejected else 0)


def _run(plan, out, options, workers, scheduler, overwrite, quiet):
    from pipelines.convert import run_conversion

    click.echo(f"{plan.corpus}: {plan.utterance_count} utterances in {len(plan.jobs)} recordings to convert; "
               f"{len(plan.excluded)} excluded by class, {len(plan.problems)} rejected while reading", err=True)
    report = run_conversion(plan, out, options, workers=workers or os.cpu_count(), scheduler=scheduler,
                            overwrite=overwrite, progress=not quiet)
    _print_summary(report)
    return report


def _print_summary(report) -> None:
    for problem in report.problems[:TERMINAL_PROBLEMS]:
        click.secho(f"rejected {problem.format()}", fg="yellow", err=True)
    if report.rejected > TERMINAL_PROBLEMS:
        click.secho(f"... and {report.rejected - TERMINAL_PROBLEMS} more", fg="yellow", err=True)
    counts = report.card["counts"]
    state = "already complete" if report.already_complete else "done"
    if report.resumed_recordings:
        state += f" (resumed: {report.resumed_recordings} recordings reused)"
    splits = ", ".join(f"{k} {v}" for k, v in counts["per_split"].items())
    click.echo(f"{state}: {counts['total']} samples ({splits}) in {len(report.card['shards'])} shards at {report.out}")
    if report.rejected:
        click.secho(f"{report.rejected} utterances rejected: see {report.out / 'errors.jsonl'}", fg="red", err=True)


def _classes(value: str) -> tuple[str, ...]:
    from mer_data.corpora.iemocap import IEMOCAP_CODES

    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    if chosen == ("all",):
        return chosen
    unknown = [c for c in chosen if c not in IEMOCAP_CODES]
    if unknown or not chosen:
        raise click.BadParameter(f"unknown class codes {unknown}; known: {', '.join(IEMOCAP_CODES)} or 'all'",
                                 param_hint="--classes")
    return chosen


def _bytes(value: str) -> int:
    units = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}
    text = value.strip().upper()
    number = text.rstrip("KMGIB")
    try:
        size = int(float(number) * units[text[len(number):]])
    except (ValueError, KeyError):
        raise click.BadParameter(f"expected a size like 64MB or 1GiB, got {value!r}", param_hint="--shard-max-bytes")
    if size < 1:
        raise click.BadParameter("must be positive", param_hint="--shard-max-bytes")
    return size


@main.command()
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", default=None, type=click.IntRange(1), help="[default: CPU count]")
@click.option("--seed", default=0, show_default=True, type=int)
def demo(out, workers, seed):
    """Synthesize a small IEMOCAP release and convert it (leave-session-5-out split).

    The embedded default: 5 sessions x 2 dialogs x 24 utterances of synthetic speech, faces and
    transcripts in the real release layout, written to OUT/raw, converted to OUT/shards.
    """
    from mer_data.synth.iemocap import synth_iemocap
    from pipelines.convert import plan_iemocap
    from pipelines.options import ConvertOptions

    raw = synth_iemocap(out / "raw", seed=seed, progress=True)
    click.echo(f"[1/2] synthetic IEMOCAP release: {raw}")
    options = ConvertOptions(corpus="iemocap", split="session:5")
    report = _run(plan_iemocap(raw, options), out / "shards", options, workers, scheduler=None, overwrite=True,
                  quiet=False)
    click.echo(f"[2/2] shards: {report.out}  (index: index.parquet, card: dataset.json)")


if __name__ == "__main__":
    main()
