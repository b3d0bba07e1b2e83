"""The `mer` command. Each subcommand is a thin shell over a Python function of the same name:

    mer synth iemocap OUT        -> mer_data.synth.iemocap.synth_iemocap
    mer synth mosei OUT          -> mer_data.synth.mosei.synth_mosei
    mer convert iemocap RAW OUT  -> mer_data.pipelines.convert.plan_iemocap + run_conversion
    mer convert mosei RAW OUT    -> mer_data.pipelines.convert.plan_mosei + run_conversion
    mer validate PATH            -> mer_data.pipelines.validate.validate
    mer train SHARDS --out RUN   -> mer_data.model.train.train
    mer evaluate RUN             -> mer_data.model.evaluate.evaluate
    mer features SHARDS FEATS    -> mer_data.pipelines.features.extract_features
    mer features import-csd ..   -> mer_data.model.features.csd.import_csd
    mer compare RUN..            -> mer_data.model.compare.compare_runs
    mer demo                     -> all of them, on an embedded synthetic default
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

import mer_data
# The option dataclasses and the model kinds: the options below show and use their defaults and names
# (default_of), so each is declared once. None of these modules imports torch, dask or the media stack.
from mer_data.media.encoding import KEYFRAME_POLICIES, X264_PRESETS, X264_TUNES, VideoEncoding
from mer_data.model.config import TrainConfig
from mer_data.model.features.registry import extractor_choices
from mer_data.model.kinds import ARCHITECTURES, BASELINE_KINDS, KIND_NAMES
from mer_data.model.presets import PRESETS
from mer_data.pipelines.options import ConvertOptions, FeatureOptions
from mer_data.synth.options import IEMOCAP_DEFAULTS, MOSEI_DEFAULTS, VOICES
from mer_data.validation.options import ValidateOptions

# Exit status of a conversion that finished but rejected utterances (they are in errors.jsonl).
EXIT_REJECTED = 3
TERMINAL_PROBLEMS = 40


class _OneLineErrors(click.Group):
    """Every failure of a subcommand ends as one `Error: ...` line on stderr and exit status 1.

    Click's own errors already do; this turns the rest (the project's errors, OSError, anything
    unexpected) into the same, so a user never sees a traceback. `mer --debug` or MER_DEBUG=1 lets
    the exception through with its traceback (for developers and bug reports).
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if ctx.params.get("debug") or _is_broken_pipe(exc):
                raise     # click ends a broken pipe quietly itself
            raise click.ClickException(error_line(exc)) from exc


def _is_broken_pipe(exc: Exception) -> bool:
    import errno

    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


FREE_SPACE = "free some space and run the same command again (finished work is kept)"
PERMISSIONS = "check the permissions of that path"
# What to do about an OSError, by errno name (the message says what happened).
OS_ERROR_ADVICE = {
    "ENOSPC": FREE_SPACE,
    "EDQUOT": FREE_SPACE,
    "EACCES": PERMISSIONS,
    "EPERM": PERMISSIONS,
    "EROFS": "choose a writable location",
    "ENOENT": "check the path",
    "ENOTDIR": "a file is in the way where a folder is expected: check the path",
    "EISDIR": "a folder is in the way where a file is expected: check the path",
    "EEXIST": "choose another path or remove the existing one",
    "ECONNREFUSED": "check that the service is running and the address",
}


def error_line(exc: BaseException) -> str:
    """One line saying what went wrong and, where known, what to do."""
    import errno
    import tarfile

    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        advice = OS_ERROR_ADVICE.get(errno.errorcode.get(exc.errno or 0, ""))
        text = f"{where}{exc.strerror}" + (f"; {advice}" if advice else "")
    elif isinstance(exc, tarfile.TarError):
        # webdataset appends the stream and the shard's path to the tarfile error's args
        texts = [arg for arg in exc.args if isinstance(arg, str)]
        where = f"{texts[-1]}: " if len(texts) > 1 else ""
        text = f"{where}cannot read it as a tar shard ({texts[0] if texts else exc}); check the shards with `mer validate`"
    elif isinstance(exc, (ValueError, OSError)) or type(exc).__module__.split(".")[0] in PROJECT_PACKAGES:
        text = str(exc) or type(exc).__name__
    else:
        text = (f"unexpected {type(exc).__name__}: {exc} (this is a bug: rerun with MER_DEBUG=1 for the "
                f"traceback and report it)")
    return " ".join(text.split())   # one line, whatever the message held


PROJECT_PACKAGES = ("mer_data", "pipelines", "model")


def default_of(options_class, name: str):
    """The default of the field `name` of an options dataclass (TrainConfig, ConvertOptions, ...).

    An option's default is declared once, on its dataclass; the CLI shows and uses that one."""
    for option in dataclasses.fields(options_class):
        if option.name != name:
            continue
        if option.default is not dataclasses.MISSING:
            return option.default
        if option.default_factory is not dataclasses.MISSING:
            return option.default_factory()
        raise ValueError(f"{options_class.__name__}.{name} has no default")
    raise ValueError(f"{options_class.__name__} has no field {name!r}")


def size_text(size: int) -> str:
    """A byte count as --shard-max-bytes reads it back: 268435456 -> 256MiB (plain bytes when not a
    whole number of KiB, MiB or GiB)."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


class LocalFolder(click.Path):
    """A folder written on this machine, as a Path: a local path or a file:// URL. Other URLs (s3://...)
    are a usage error, never a local folder named `./s3:/bucket/x` (OutputLocation takes object storage)."""

    def __init__(self):
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        from mer_data.locations import UnsupportedLocation, local_folder

        try:
            value = local_folder(value)
        except UnsupportedLocation as exc:
            self.fail(str(exc), param, ctx)
        return super().convert(value, param, ctx)


def _other_rank() -> bool:
    """Whether this is a process other than rank 0 of a torchrun job: those never read the run folder
    (rank 0 sends them what it holds, model/distributed.py), and on another machine it may not exist."""
    return os.environ.get("RANK", "0") != "0"


class OutputLocation(LocalFolder):
    """A folder to write: a local path or file:// URL (a Path, as LocalFolder), or an object-storage URL
    (s3://bucket/x, gs://..., as text; mer_data/storage.py). Any other URL is a usage error."""

    def convert(self, value, param, ctx):
        from mer_data.locations import UnsupportedLocation
        from mer_data.storage import is_storage_url

        try:
            if is_storage_url(value):
                return str(value)
        except UnsupportedLocation as exc:
            self.fail(str(exc), param, ctx)
        return super().convert(value, param, ctx)


class InputLocation(OutputLocation):
    """A folder to read: an existing local folder (a Path), or an object-storage URL (as text)."""

    def __init__(self):
        click.Path.__init__(self, exists=True, file_okay=False, path_type=Path)


class LocalRelease(click.Path):
    """RAW of `mer convert`: an existing local folder. A bucket URL is refused with the reason (ffmpeg
    seeks in every source video by path; docs/at-scale.md), not as a missing path."""

    def __init__(self):
        super().__init__(exists=True, file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        from mer_data.locations import URL_SCHEME

        if URL_SCHEME.match(str(value)) and not str(value).lower().startswith("file:"):
            self.fail(f"{value}: the raw release must be a local or mounted folder (ffmpeg reads and seeks in every "
                      f"source video by path); mount the bucket or copy the release (docs/at-scale.md)", param, ctx)
        return super().convert(value, param, ctx)


def _use_storage_options(ctx, param, values):
    """--storage-option callback: the options every storage URL of this process is opened with."""
    from mer_data.storage import parse_storage_options, set_default_options

    try:
        set_default_options(parse_storage_options(values))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    return values


def _storage_options(command):
    """--storage-option KEY=VALUE (repeatable): fsspec storage_options of the s3://, gs://, ... locations."""
    return click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
                        expose_value=False, callback=_use_storage_options,
                        help="An fsspec storage option of the s3://, gs://, ... locations (repeatable; VALUE read "
                             "as JSON where it parses), e.g. endpoint_url=http://127.0.0.1:9000 or anon=true. "
                             "Credentials: the environment, as for s3fs (docs/at-scale.md).")(command)


@click.group(cls=_OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(mer_data.__version__, prog_name="mer")
@click.option("--debug", is_flag=True, envvar="MER_DEBUG",
              help="Show the full traceback of an error instead of one line (also: MER_DEBUG=1).")
def main(debug: bool) -> None:
    """mer-data: raw emotion-recognition corpora to streaming WebDataset shards.

    \b
    Start here:
      mer demo                                  # the whole job on a synthetic corpus, in ./demo-out
      mer synth iemocap RAW/                    # a synthetic IEMOCAP release
      mer convert iemocap RAW/ SHARDS/          # raw release -> shards (Dask)
      mer validate SHARDS/ --html report.html   # audit a release or shards
      mer train SHARDS/ --out RUN/              # FE2E / MESM end to end (evaluates on test at the end)
      mer features SHARDS/ FEATS/               # precomputed features for the two-phase baselines
      mer train FEATS/ --model lf-rnn --out B/  # LF-RNN / LF-Transformer on those features
      mer compare RUN/ B/ --out CMP/            # end-to-end vs two-phase: one table and a bar plot
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


def show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal: never drawn into a pipe or a log file, never with --quiet."""
    return not quiet and sys.stderr.isatty()


def _quiet_option(help_text: str = "No progress bars or progress messages."):
    return click.option("-q", "--quiet", is_flag=True, help=help_text)


@synth.command("iemocap")
@click.argument("out", type=LocalFolder())
@click.option("--sessions", default=",".join(map(str, IEMOCAP_DEFAULTS.sessions)), show_default=True,
              help="Sessions to generate, comma-separated.")
@click.option("--dialogs-per-session", default=IEMOCAP_DEFAULTS.dialogs_per_session, show_default=True,
              type=click.IntRange(1))
@click.option("--utterances-per-dialog", default=IEMOCAP_DEFAULTS.utterances_per_dialog, show_default=True,
              type=click.IntRange(2))
@click.option("--seed", default=IEMOCAP_DEFAULTS.seed, show_default=True, type=int)
@click.option("--ids-from", type=click.Choice(["dai2021"]), default=None,
              help="Use the published utterance ids (all 7380) instead of generated ones.")
@click.option("--frame-size", default="x".join(map(str, IEMOCAP_DEFAULTS.frame_size)), show_default=True,
              help="Dialog video size WIDTHxHEIGHT.")
@click.option("--voice", type=click.Choice(VOICES), default=IEMOCAP_DEFAULTS.voice, show_default=True,
              help="espeak-ng speech where available (auto), or a synthesized voice.")
@_quiet_option("No progress bar.")
def synth_iemocap_command(out, sessions, dialogs_per_session, utterances_per_dialog, seed, ids_from, frame_size, voice,
                          quiet):
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
                         frame_size=_frame_size(frame_size), voice=voice, progress=show_progress(quiet))
    click.echo(f"synthetic IEMOCAP release written to {root}")


@synth.command("mosei")
@click.argument("out", type=LocalFolder())
@click.option("--videos", default=None, type=click.IntRange(1),
              help=f"Number of videos  [default: {MOSEI_DEFAULTS.videos}; with --ids-from: every listed video]")
@click.option("--seed", default=MOSEI_DEFAULTS.seed, show_default=True, type=int)
@click.option("--ids-from", type=click.Choice(["dai2021", "sdk"]), default=None,
              help="Use the published ids (dai2021: 20,477 utterances; sdk: the standard folds' videos), tiny media.")
@click.option("--long-video-minutes", default=MOSEI_DEFAULTS.long_video_minutes, show_default=True,
              type=click.FloatRange(0),
              help="Length of the default corpus's long video (0: none).")
@click.option("--voice", type=click.Choice(VOICES), default=MOSEI_DEFAULTS.voice, show_default=True,
              help="espeak-ng speech where available (auto), or a synthesized voice.")
@_quiet_option("No progress bar.")
def synth_mosei_command(out, videos, seed, ids_from, long_video_minutes, voice, quiet):
    """Write a synthetic CMU-MOSEI release to OUT/CMU_MOSEI (Raw/ and Labels/).

    Videos of several sizes and frame rates, WAVs, segmented transcripts, the SDK's
    CMU_MOSEI_Labels.csd and the raw MTurk CSVs, with the quirks of the real release; the
    ground truth goes to OUT/synth_truth.json.

    \b
    Examples:
      mer synth mosei raw/
      mer synth mosei raw/ --videos 5 --long-video-minutes 1 --seed 7
      mer synth mosei raw-dai/ --ids-from dai2021 --voice synth
      mer synth mosei raw-sdk/ --ids-from sdk --videos 30
    """
    from mer_data.synth.mosei import synth_mosei

    root = synth_mosei(out, videos=videos, seed=seed, ids_from=ids_from, long_video_minutes=long_video_minutes,
                       voice=voice, progress=show_progress(quiet))
    click.echo(f"synthetic CMU-MOSEI release written to {root}")


@main.group()
def convert() -> None:
    """Convert a raw corpus release to utterance-level WebDataset shards."""


SCHEDULER_HELP = ("Address of an existing Dask scheduler (tcp://host:8786, or tls://host:8786 with the --tls-* "
                  "options or dask's distributed.comm.tls config; see docs/dask-cluster.md).")


def _use_dask_tls(key: str):
    """An option callback that sets dask's config `key` (what Client(--scheduler) reads) to the given path."""
    def callback(ctx, param, value):
        if value:
            import dask

            dask.config.set({key: value})   # for this process, like dask's own config files
        return value
    return callback


def _scheduler_tls_options(command):
    """--tls-ca-file, --tls-cert, --tls-key: the client side of a TLS-secured --scheduler (names as in `dask worker`)."""
    tls = [
        click.option("--tls-ca-file", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                     callback=_use_dask_tls("distributed.comm.tls.ca-file"),
                     help="With --scheduler tls://...: the CA certificate of the cluster (PEM) "
                          "[default: dask's distributed.comm.tls.ca-file]."),
        click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                     callback=_use_dask_tls("distributed.comm.tls.client.cert"),
                     help="With --scheduler tls://...: this client's certificate (PEM) "
                          "[default: dask's distributed.comm.tls.client.cert]."),
        click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                     callback=_use_dask_tls("distributed.comm.tls.client.key"),
                     help="With --scheduler tls://...: this client's private key (PEM) "
                          "[default: dask's distributed.comm.tls.client.key]."),
    ]
    for decorate in reversed(tls):
        command = decorate(command)
    return command


def _shared_convert_options(command):
    """The options every corpus's convert command has (applied bottom-up, shown in this order)."""
    shared = [
        click.argument("raw", type=LocalRelease()),
        click.argument("out", type=OutputLocation()),
        _storage_options,
        click.option("--frame-interval-ms", default=default_of(ConvertOptions, "frame_interval_ms"), show_default=True,
                     type=click.IntRange(1),
                     help="Face boxes are detected on frames this far apart."),
        click.option("--workers", default=None, type=click.IntRange(1),
                     help="Worker processes of the local Dask cluster [default: CPU count]."),
        click.option("--scheduler", default=None, help=SCHEDULER_HELP),
        _scheduler_tls_options,
        click.option("--x264-preset", default=default_of(VideoEncoding, "preset"), show_default=True,
                     type=click.Choice(X264_PRESETS), help="libx264 preset of the clips (speed against size)."),
        click.option("--x264-tune", default=default_of(VideoEncoding, "tune"), show_default=True,
                     type=click.Choice(X264_TUNES),
                     help="libx264 tune of the clips; fastdecode makes every epoch's decoding cheaper."),
        click.option("--crf", default=default_of(VideoEncoding, "crf"), show_default=True, type=click.IntRange(0, 51),
                     help="libx264 constant quality of the clips (lower: better and larger)."),
        click.option("--keyframes", default=default_of(VideoEncoding, "keyframes"), show_default=True,
                     type=click.Choice(KEYFRAME_POLICIES),
                     help="faces: a keyframe at every face frame, so loaders decode only those; "
                          "gop: one every 2 s (smaller clips, slower loading)."),
        click.option("--shard-max-bytes", default=size_text(default_of(ConvertOptions, "shard_max_bytes")),
                     show_default=True,
                     help="Size cap of a shard (e.g. 64MB, 1GiB)."),
        click.option("--shard-max-count", default=default_of(ConvertOptions, "shard_max_count"), show_default=True,
                     type=click.IntRange(1),
                     help="Samples per shard cap."),
        click.option("--shuffle-seed", default=default_of(ConvertOptions, "shuffle_seed"), show_default=True, type=int,
                     help="Seed of the shuffle across recordings."),
        click.option("--overwrite", is_flag=True,
                     help="Replace a finished conversion in OUT (without it, a rerun resumes)."),
        _quiet_option("No progress bar."),
    ]
    for decorate in reversed(shared):
        command = decorate(command)
    return command


@convert.command("iemocap")
@_shared_convert_options
@click.option("--split", default=default_of(ConvertOptions, "split"), show_default=True,
              help="dai2021 (published random utterance split), session:N (leave session N out), random:SEED.")
@click.option("--classes", default=",".join(default_of(ConvertOptions, "classes")), show_default=True,
              help="The label protocol: category codes to keep, comma-separated; CODE+CODE merges codes into "
                   "one class named by its first code (NAME=CODE+CODE names it); or a preset: iemocap6 (the "
                   "default six classes, one-vs-rest), iemocap4 (ang,hap+exc,neu,sad, single-label); or 'all'. "
                   "Other codes go to excluded.jsonl.")
@click.option("--max-height", default=None, type=click.IntRange(2),
              help="Downscale the speaker's half to at most this many rows (aspect kept) [default: keep 480].")
def convert_iemocap_command(raw, out, split, classes, max_height, frame_interval_ms, x264_preset, x264_tune, crf,
                            keyframes, workers, scheduler, shard_max_bytes, shard_max_count, shuffle_seed,
                            overwrite, quiet):
    """Convert the IEMOCAP release at RAW into shards in OUT.

    Writes {split}-NNNNNN.tar, index.parquet, errors.jsonl, excluded.jsonl and dataset.json.
    Exit status: 0 when every chosen utterance was written, 3 when some were rejected (each is in
    errors.jsonl with file, line and reason), 1 on a fatal error: a fault of the machine (full
    disk, ffmpeg missing, a killed worker) writes no dataset.json and records nothing as rejected,
    so the same command, run again, retries it. A second conversion into a busy OUT refuses.

    \b
    Examples:
      mer convert iemocap IEMOCAP_full_release/ shards/
      mer convert iemocap raw/ shards/ --split session:5 --workers 8
      mer convert iemocap raw/ shards4/ --classes iemocap4 --split session:5
      mer convert iemocap raw/ shards/ --scheduler tcp://10.0.0.5:8786
      mer convert iemocap raw/ s3://bucket/shards      # object storage: docs/at-scale.md
    """
    from mer_data.pipelines.convert import plan_iemocap

    options = ConvertOptions(corpus="iemocap", split=split, classes=_classes(classes),
                             frame_interval_ms=frame_interval_ms, shard_max_bytes=_bytes(shard_max_bytes),
                             shard_max_count=shard_max_count, shuffle_seed=shuffle_seed, max_height=max_height,
                             encoding=VideoEncoding(x264_preset, x264_tune, crf, keyframes))
    _plan_and_run(lambda: plan_iemocap(raw, options), out, options, workers, scheduler, overwrite, quiet)


@convert.command("mosei")
@_shared_convert_options
@click.option("--split", default=default_of(ConvertOptions, "split"), show_default=True,
              help="dai2021 (published utterance split), sdk (standard video folds), random:SEED (by video).")
@click.option("--labels", type=click.Choice(["csd", "mturk"]), default="csd", show_default=True,
              help="Label source: the SDK's CMU_MOSEI_Labels.csd or the raw MTurk CSVs under Labels/.")
@click.option("--max-height", default=360, show_default=True, type=click.IntRange(2),
              help="Videos taller than this are downscaled (aspect kept).")
def convert_mosei_command(raw, out, split, labels, max_height, frame_interval_ms, x264_preset, x264_tune, crf,
                          keyframes, workers, scheduler, shard_max_bytes, shard_max_count, shuffle_seed, overwrite,
                          quiet):
    """Convert the CMU-MOSEI release at RAW (CMU_MOSEI/Raw or a folder holding it) into shards in OUT.

    One task per source video; speech from the 16 kHz WAV, or the video's own audio track where
    the WAV is missing (recorded in each sample's sources). Exit status as for iemocap.

    \b
    Examples:
      mer convert mosei CMU_MOSEI/Raw shards/ --split sdk
      mer convert mosei CMU_MOSEI/ shards/ --labels mturk --max-height 240
    """
    from mer_data.pipelines.convert import plan_mosei

    options = ConvertOptions(corpus="mosei", split=split, classes=("all",), frame_interval_ms=frame_interval_ms,
                             shard_max_bytes=_bytes(shard_max_bytes), shard_max_count=shard_max_count,
                             shuffle_seed=shuffle_seed, max_height=max_height, extra={"labels": labels},
                             encoding=VideoEncoding(x264_preset, x264_tune, crf, keyframes))
    _plan_and_run(lambda: plan_mosei(raw, options, labels=labels), out, options, workers, scheduler, overwrite,
                  quiet)


def _plan_and_run(make_plan, out, options, workers, scheduler, overwrite, quiet):
    """Plan (clear errors for unusable input), run, and exit 3 when anything was rejected."""
    plan = make_plan()   # unusable input: the group's one-line error
    report = _run(plan, out, options, workers, scheduler, overwrite, quiet)
    sys.exit(EXIT_REJECTED if report.rejected else 0)


def _run(plan, out, options, workers, scheduler, overwrite, quiet):
    from mer_data.pipelines.convert import run_conversion

    click.echo(f"{plan.corpus}: {plan.utterance_count} utterances in {len(plan.jobs)} recordings to convert; "
               f"{len(plan.excluded)} excluded by class, {len(plan.problems)} rejected while reading", err=True)
    # OutputConflict, FolderLocked, EnvironmentFault (no card written, a rerun retries): the group's
    # one-line error, their messages say what to do
    report = run_conversion(plan, out, options, workers=workers or os.cpu_count(), scheduler=scheduler,
                            overwrite=overwrite, progress=show_progress(quiet))
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
    for warning in report.card.get("warnings", []):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    if report.rejected:
        from mer_data.storage import join

        click.secho(f"{report.rejected} utterances rejected: see {join(report.out, 'errors.jsonl')}", fg="red",
                    err=True)


def _classes(value: str) -> tuple[str, ...]:
    """The class tokens of a --classes value (a preset expands to its own), checked as a label protocol."""
    from mer_data.corpora.label_protocol import ProtocolError, parse_classes

    try:
        return parse_classes(value).spec
    except ProtocolError as exc:
        raise click.BadParameter(str(exc), param_hint="--classes")


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


def _data_safety_options(command):
    """--allow-partial and --allow-command-urls (model/shard_check.py), shared by train and evaluate."""
    command = click.option("--allow-command-urls", is_flag=True,
                           help="Accept shard URLs that webdataset opens by running a command (pipe:, http(s):, "
                                "gs:, ...) as typed on this command line; a run's stored config.json never runs "
                                "one.")(command)
    return click.option("--allow-partial", is_flag=True,
                        help="Go on when the shards disagree with their index.parquet or dataset.json (cut short, "
                             "foreign or misplaced samples): they are left out and the log and metrics record "
                             "samples read against expected.")(command)


def _published_setup_options(command):
    """--preset and the options it sets that older versions had no flag for (model/presets.py)."""
    options = [
        click.option("--preset", type=click.Choice(PRESETS), default=None,
                     help="The published setup of Dai et al. (2021) for FE2E/MESM: the published networks on the "
                          "official inputs, ALBERT-base-v2, BCE with pos_weight, Adam lr 5e-5 (text encoder and "
                          "head / 10) without weight decay, batch 8 (FE2E) or 2 (MESM), 40 epochs, patience 6, "
                          "MESM top-p 0.7 (IEMOCAP) or 0.5 (MOSEI). Options given explicitly win; config.json "
                          "records every resolved value (docs/reproducing.md)."),
        click.option("--arch", type=click.Choice(ARCHITECTURES), default=default_of(TrainConfig, "arch"),
                     show_default=True,
                     help="The nets: compact (small CNNs, the CPU demo's) or dai2021 (the published networks; "
                          "needs --audio-frontend dai2021 and 48 x 48 crops)."),
        click.option("--pos-weight", type=click.Choice(["auto", "none"]), default=default_of(TrainConfig, "pos_weight"),
                     show_default=True,
                     help="auto: BCE pos_weight = negatives / positives per class of the training split "
                          "(one-vs-rest tasks)."),
        click.option("--optimizer", type=click.Choice(["adamw", "adam"]),
                     default=default_of(TrainConfig, "optimizer"), show_default=True,
                     help="adamw (decoupled weight decay) or adam (the official code's)."),
        click.option("--weight-decay", default=default_of(TrainConfig, "weight_decay"), show_default=True,
                     type=click.FloatRange(0.0)),
        click.option("--audio-frontend", type=click.Choice(["logmel64", "dai2021"]),
                     default=default_of(TrainConfig, "audio_frontend"),
                     show_default=True, help="logmel64: 64-band log-mel, 10 ms hop, 320 ms chunks; dai2021: the "
                                             "official 128-band power mel, 12.5 ms hop, 400 ms chunks."),
        click.option("--face-normalisation", type=click.Choice(["imagenet", "dai2021"]),
                     default=default_of(TrainConfig, "face_normalisation"),
                     show_default=True, help="Per-channel normalisation of the RGB face crops: ImageNet's, or "
                                             "the official code's mean 159/111/102, std 37/33/32 (0-255)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@main.command("train")
@click.argument("shards", nargs=-1, required=False)
@click.option("--model", "model_kind", type=click.Choice(KIND_NAMES),
              default=default_of(TrainConfig, "model"), show_default=True,
              help="FE2E: fully end-to-end; MESM: sparse cross-modal attention (Dai et al., 2021); on SHARDS. "
                   "LF-RNN (late-fusion LSTMs) or LF-Transformer: two-phase baselines on a FEATS folder "
                   "(`mer features`), every modality of a chosen role used.")
@click.option("--modalities", default=default_of(TrainConfig, "modalities"), show_default=True,
              help="Any non-empty subset of t (text), a (audio), v (video).")
@click.option("--task", type=click.Choice(["emotion", "sentiment"]), default=default_of(TrainConfig, "task"),
              show_default=True,
              help="emotion: the corpus's emotion labels (one-vs-rest, BCE). sentiment: CMU-MOSEI's sentiment score "
                   "in [-3, 3], one regression output, early stopping on validation MAE (refused for IEMOCAP).")
@click.option("--sentiment-loss", type=click.Choice(["l1", "mse"]), default=default_of(TrainConfig, "sentiment_loss"),
              show_default=True,
              help="The sentiment task's loss: L1 (the MulT/MISA convention) or MSE.")
@click.option("--top-p", default=default_of(TrainConfig, "top_p"), show_default=True,
              type=click.FloatRange(0.0, 1.0, min_open=True),
              help="MESM: attention mass of the positions kept for the sparse CNN blocks.")
@click.option("--top-p-warmup", default=default_of(TrainConfig, "top_p_warmup"), show_default=True,
              type=click.IntRange(0),
              help="MESM: train the first epochs with a top-p falling linearly from 1 to --top-p over this many "
                   "epochs (validation and checkpoints always use --top-p).")
@click.option("--epochs", default=None, type=click.IntRange(1),
              help=f"Epoch budget  [default: {default_of(TrainConfig, 'epochs')}; with --resume: the run's, or raise "
                   f"it]")
@click.option("--batch-size", default=default_of(TrainConfig, "batch_size"), show_default=True, type=click.IntRange(1))
@click.option("--lr", default=default_of(TrainConfig, "lr"), show_default=True, type=float,
              help="Learning rate of the CNNs, transformers and heads.")
@click.option("--text-lr-factor", default=default_of(TrainConfig, "text_lr_factor"), show_default=True, type=float,
              help="The pretrained text encoder's learning rate is lr times this.")
@click.option("--patience", default=default_of(TrainConfig, "patience"), show_default=True, type=click.IntRange(1),
              help="Early stopping: epochs without a better validation mean F1 (sentiment: MAE).")
@click.option("--text-encoder", default=None, help="Hugging Face name or local path  [default: the bundled all-MiniLM-L6-v2]")
@click.option("--frame-interval-ms", default=None, type=click.IntRange(1), help="[default: the shards' face interval]")
@click.option("--crop-size", default=default_of(TrainConfig, "crop_size"), show_default=True, type=click.IntRange(8))
@click.option("--device", default=default_of(TrainConfig, "device"), show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--amp", is_flag=True, help="Mixed precision (bf16 on CPU, fp16 on CUDA).")
@click.option("--workers", default=default_of(TrainConfig, "workers"), show_default=True, type=click.IntRange(0),
              help="Data loader processes.")
@click.option("--seed", default=default_of(TrainConfig, "seed"), show_default=True, type=int)
@click.option("--out", "run", type=LocalFolder(), help="Run folder to create.")
@click.option("--resume", "resume_run", type=click.Path(file_okay=False, exists=not _other_rank(), path_type=Path),
              help="Continue the run in this folder (its stored options are used).")
@click.option("--keep-checkpoints", type=click.Choice(["best-and-last", "all"]),
              default=default_of(TrainConfig, "keep_checkpoints"),
              show_default=True, help="Checkpoints left after each epoch: the best and the last (~280 MB each with "
                                      "MiniLM), or every epoch's.")
@click.option("--init-from", type=click.Path(file_okay=False, exists=True),
              help="Start from this run's best weights where names and shapes agree (e.g. MESM from FE2E).")
@click.option("--model-option", "model_options", multiple=True, metavar="NAME=VALUE",
              help="An architecture size (repeatable), e.g. temporal_layers=2, visual_channels=[8,16,32,64] "
                   "(FE2E/MESM) or rnn_hidden=64, pool_seconds=0.08 (baselines); VALUE is read as JSON. "
                   "See docs/training.md for the names.")
@click.option("--evaluate-split", default="test", show_default=True,
              help="Split evaluated with the best epoch at the end ('' to skip).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@_published_setup_options
@_data_safety_options
@_storage_options
def train_command(shards, model_kind, modalities, task, sentiment_loss, top_p, top_p_warmup, epochs, batch_size, lr, text_lr_factor, patience,
                  text_encoder, frame_interval_ms, crop_size, device, amp, workers, seed, run, resume_run,
                  keep_checkpoints, init_from, model_options, evaluate_split, quiet, allow_partial, allow_command_urls,
                  **published):
    """Train FE2E or MESM end to end on shards (directories, files or brace patterns),
    or a two-phase baseline (lf-rnn, lf-transformer) on one feature folder FEATS.

    \b
    Examples:
      mer train shards/ --model fe2e --out runs/fe2e
      mer train shards/ --model mesm --top-p 0.5 --out runs/mesm
      mer train shards/ --model mesm --preset dai2021 --out runs/mesm-dai2021
      mer train shards/ --modalities a --epochs 10 --out runs/audio-only
      mer train feats/ --model lf-rnn --out runs/lf-rnn
      mer train mosei-shards/ --task sentiment --out runs/fe2e-sentiment
      mer train --resume runs/fe2e          # continue a killed or finished run
      mer train s3://bucket/shards --out runs/fe2e   # streamed from object storage
    """
    from mer_data.model.train import TrainConfig, train

    if bool(run) == bool(resume_run):
        raise click.UsageError("give either --out RUN (a new run) or --resume RUN")
    if run and not shards:
        raise click.UsageError("give the SHARDS (or, for a baseline, the FEATS folder) to train on")
    modalities = _modalities(modalities)
    config = TrainConfig(shards=list(shards), model=model_kind, modalities=modalities, top_p=top_p,
                         top_p_warmup=top_p_warmup, epochs=epochs or TrainConfig.epochs,
                         batch_size=batch_size, lr=lr, text_lr_factor=text_lr_factor, patience=patience,
                         text_encoder=text_encoder, frame_interval_ms=frame_interval_ms, crop_size=crop_size,
                         device=device, amp=amp, workers=workers, seed=seed, init_from=init_from,
                         keep_checkpoints=keep_checkpoints, task=task, sentiment_loss=sentiment_loss,
                         model_options=_model_options(model_options), **published,
                         preset_overrides=_given_fields(click.get_current_context(), TrainConfig))
    folder = run or resume_run
    train(config, folder, resume=bool(resume_run), epochs=epochs if resume_run else None, progress=show_progress(quiet),
          log=lambda m: click.echo(m, err=True), allow_partial=allow_partial, allow_command_urls=allow_command_urls)
    if evaluate_split:
        _evaluate_and_print(folder, None, evaluate_split, None, None, quiet, allow_partial=allow_partial)


def _given_fields(ctx: click.Context, config_class) -> list[str]:
    """The TrainConfig fields whose option the user gave (on the command line or from the environment):
    a --preset leaves exactly these as given."""
    from dataclasses import fields

    from click.core import ParameterSource

    names = {"model_kind": "model"}
    known = {f.name for f in fields(config_class)}
    given = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            field_name = names.get(param.name, param.name)
            if field_name in known:
                given.append(field_name)
    return sorted(given)


def _model_options(values) -> dict:
    """NAME=VALUE pairs -> {name: value}, VALUE parsed as JSON (numbers, lists, booleans) or kept as text.

    The names are checked where the model is built (an unknown one is refused with the known ones listed)."""
    import json

    options = {}
    for value in values:
        name, separator, text = value.partition("=")
        if not separator or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint="--model-option")
        try:
            options[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            options[name.strip()] = text
    return options


@main.command("evaluate")
@click.argument("run", type=click.Path(file_okay=False, exists=not _other_rank(), path_type=Path))
@click.argument("shards", nargs=-1, required=False)
@click.option("--split", default="test", show_default=True)
@click.option("--epoch", default=None, type=click.IntRange(1), help="[default: the run's best epoch]")
@click.option("--device", default=None, help="[default: the run's device]")
@click.option("--workers", default=None, type=click.IntRange(0), help="[default: the run's]")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="MESM: evaluate at this nucleus mass instead of the trained one (writes eval-SPLIT-pP/)")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@_data_safety_options
@_storage_options
def evaluate_command(run, shards, split, epoch, device, workers, top_p, quiet, allow_partial, allow_command_urls):
    """Evaluate a run's best epoch on a split (thresholds tuned on validation F1).

    SHARDS default to those the run was trained on. Writes RUN/eval-SPLIT/metrics.{json,md}
    and scores.parquet, and prints the tables (each names its metric). With --top-p, an MESM run
    is evaluated (validation and SPLIT) at another nucleus mass, into RUN/eval-SPLIT-pP/.

    \b
    Example:
      mer evaluate runs/fe2e shards/ --split test
      mer evaluate runs/mesm --top-p 0.7     # the same weights keeping more positions
    """
    _evaluate_and_print(run, list(shards) or None, split, epoch, device, quiet, workers=workers, top_p=top_p,
                        allow_partial=allow_partial, allow_command_urls=allow_command_urls)


def _evaluate_and_print(run, shards, split, epoch, device, quiet, workers=None, top_p=None, allow_partial=False,
                        allow_command_urls=False):
    from mer_data.model.checkpoint import evaluation_folder
    from mer_data.model.evaluate import evaluate
    from mer_data.model.report import terminal_table

    metrics = evaluate(run, shards=shards, split=split, device=device, workers=workers, epoch=epoch,
                       progress=show_progress(quiet), top_p=top_p, allow_partial=allow_partial,
                       allow_command_urls=allow_command_urls, log=lambda m: click.echo(m, err=True))
    if not is_main_process():   # under torchrun every process evaluates its share; rank 0 prints
        return
    click.echo(terminal_table(metrics))
    click.echo(f"written: {evaluation_folder(run, split, top_p)}/metrics.md, metrics.json, scores.parquet", err=True)


def is_main_process() -> bool:
    """False in the processes other than rank 0 of a torchrun job (model/distributed.py)."""
    from mer_data.model.distributed import is_main

    return is_main()


def _modalities(value: str) -> str:
    chosen = "".join(m for m in "tav" if m in value)
    if not chosen or set(value) - set("tav"):
        raise click.BadParameter(f"expected a non-empty subset of t, a, v; got {value!r}", param_hint="--modalities")
    return chosen


class _DefaultCommandGroup(click.Group):
    """A group whose first argument may be a subcommand name or, when it is not, the default command's.

    So `mer features SHARDS FEATS` runs `mer features extract SHARDS FEATS`, while
    `mer features import-csd ...` runs the importer.
    """

    default_command = "extract"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@main.group(cls=_DefaultCommandGroup)
def features() -> None:
    """Precomputed features for the two-phase baselines (LF-RNN, LF-Transformer).

    \b
      mer features SHARDS FEATS              extract features from shards (same as `extract`)
      mer features import-csd FILES.. FEATS  import CMU Multimodal SDK .csd features
    """


@features.command("extract")
@click.argument("shards", type=InputLocation())
@click.argument("feats", type=OutputLocation())
@_storage_options
@click.option("--audio", type=click.Choice(extractor_choices("audio")), default=default_of(FeatureOptions, "audio"),
              show_default=True,
              help="openSMILE eGeMAPS v02 low-level descriptors, or librosa MFCC + prosody.")
@click.option("--visual", type=click.Choice(extractor_choices("visual")), default=default_of(FeatureOptions, "visual"),
              show_default=True,
              help="HOG and region statistics of the stored face crops over time (OpenCV).")
@click.option("--text", type=click.Choice(extractor_choices("text")), default=default_of(FeatureOptions, "text"),
              show_default=True,
              help="Token embeddings of a frozen text encoder.")
@click.option("--text-encoder", default=None,
              help="Hugging Face name or local path  [default: the bundled all-MiniLM-L6-v2]")
@click.option("--task", type=click.Choice(["emotion", "sentiment"]), default="emotion", show_default=True,
              help="The training target stored per row: the emotion labels, or CMU-MOSEI's sentiment score "
                   "(for `mer train --task sentiment`).")
@click.option("--workers", default=None, type=click.IntRange(1), help="Local Dask workers [default: CPU count].")
@click.option("--scheduler", default=None, help=SCHEDULER_HELP)
@_scheduler_tls_options
@click.option("--overwrite", is_flag=True,
              help="Start over, replacing FEATS's feature tables (needed when the options or the shards changed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def features_extract_command(shards, feats, audio, visual, text, text_encoder, task, workers, scheduler, overwrite,
                             quiet):
    """Extract per-utterance feature sequences from SHARDS into per-split Parquet tables in FEATS.

    One Dask task per shard writes FEATS/<split>/part-NNNNNN.parquet; features.json (the card) is
    written last. Rerun the same command to resume: finished parts are kept. Every sample becomes a
    row or a line of FEATS/errors.jsonl. See docs/features.md. Exit status: 0, 3 when samples were
    rejected, 1 on a fatal error.

    \b
    Examples:
      mer features shards/ feats/
      mer features shards/ feats-mfcc/ --audio mfcc --visual none --text none --workers 2
      mer features shards/ feats/ --text-encoder bert-base-uncased --scheduler tcp://10.0.0.5:8786
    """
    from mer_data.pipelines.features import extract_features

    if workers and scheduler:
        raise click.UsageError("give --workers or --scheduler, not both")
    options = FeatureOptions(audio=audio, visual=visual, text=text, text_encoder=text_encoder)
    report = extract_features(shards, feats, options, workers=workers, scheduler=scheduler, overwrite=overwrite,
                              progress=show_progress(quiet), task=task)
    click.echo(report.summary())
    sys.exit(EXIT_REJECTED if report.errors else 0)


@features.command("import-csd")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("feats", type=LocalFolder())
@click.option("--shards", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The shard folder whose utterances (ids, intervals, splits, labels) the features are aligned to.")
@click.option("--role", "roles", multiple=True, metavar="NAME=t|a|v",
              help="The modality of a sequence whose name is not a known SDK feature set (repeatable).")
@click.option("--overwrite", is_flag=True, help="Replace an existing FEATS.")
@_quiet_option("No progress messages.")
def features_import_csd_command(files, feats, shards, roles, overwrite, quiet):
    """Import CMU Multimodal SDK computational sequences (.csd: COVAREP, FACET, GloVe, ...) into FEATS."""
    from mer_data.model.features.csd import import_csd

    report = import_csd(list(files), feats, shards=shards, roles=_roles(roles), overwrite=overwrite,
                        log=_log_lines(quiet))
    click.echo(report.summary())
    sys.exit(EXIT_REJECTED if report.errors else 0)


def _roles(values) -> dict[str, str]:
    roles = {}
    for value in values:
        name, _, role = value.partition("=")
        if not name or role not in ("t", "a", "v"):
            raise click.BadParameter(f"expected NAME=t, NAME=a or NAME=v, got {value!r}", param_hint="--role")
        roles[name] = role
    return roles


@main.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True, help="The evaluated split to compare.")
@click.option("--out", default=None, type=LocalFolder(),
              help="Folder for compare.md, compare.html and compare.json  [default: print only]")
@_quiet_option("Print the table only, no messages.")
@_storage_options
def compare_command(runs, split, out, quiet):
    """One table of the paper's metrics (per class and mean), FLOPs, parameters, training time and samples/s.

    RUNS: run folders of one corpus and label space, end-to-end (fe2e, mesm) and two-phase
    (lf-rnn, lf-transformer) alike. A run without RUN/eval-SPLIT/metrics.json is evaluated first;
    each run's cost is measured once and kept in RUN/profile.json. See docs/comparison.md for what
    each number counts.

    \b
    Examples:
      mer compare runs/fe2e runs/mesm runs/lf-rnn runs/lf-transformer --out comparison/
      mer compare runs/fe2e-* --split valid
    """
    from mer_data.model.compare import compare_runs

    comparison = compare_runs(list(runs), split=split, out=out)
    click.echo(comparison.markdown)
    if out and not quiet:
        click.echo(f"written: {out / 'compare.md'}, {out / 'compare.html'}, {out / 'compare.json'}", err=True)


@main.command("validate")
@click.argument("path", type=InputLocation())
@_storage_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write the full report as JSON (schemas/validation-report.schema.json); '-': to stdout "
                   "(the summary table then goes to stderr).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write a self-contained HTML report with figures; '-': to stdout (the summary table then goes "
                   "to stderr).")
@click.option("--strict", is_flag=True, help="Warnings fail the run too (exit status 1).")
@click.option("--workers", default=None, type=click.IntRange(1),
              help="Worker processes of the local Dask cluster [default: CPU count].")
@click.option("--scheduler", default=None, help=SCHEDULER_HELP)
@_scheduler_tls_options
@click.option("--av-threshold-ms", default=default_of(ValidateOptions, "av_threshold_s") * 1000, show_default=True,
              type=click.FloatRange(min=0),
              help="Flag recordings whose audio-video offset exceeds this.")
@click.option("--no-av-sync", is_flag=True, help="Skip the audio-video offset estimation (shards).")
@_quiet_option("No progress bar.")
def validate_command(path, json_path, html_path, strict, workers, scheduler, av_threshold_ms, no_av_sync, quiet):
    """Audit a raw IEMOCAP or CMU-MOSEI release, or a shard folder, for alignment and integrity.

    PATH is detected: a shard folder (dataset.json or *.tar in it) or a raw release. Prints a
    summary table; every finding names its kind, file, line and utterance id. See
    docs/validation.md for the checks and tolerances. Exit status: 0 when nothing is wrong,
    1 when errors were found (or, with --strict, warnings), 2 for a usage error.

    \b
    Examples:
      mer validate shards/ --json report.json --html report.html
      mer validate IEMOCAP_full_release/ --workers 8
      mer validate CMU_MOSEI/ --strict
      mer validate shards/ --av-threshold-ms 66 --scheduler tcp://10.0.0.5:8786
      mer validate s3://bucket/shards                  # audited through a local copy
    """
    from mer_data.validation import ValidateOptions
    from mer_data.validation.summary import render_summary
    from mer_data.pipelines.validate import NotAValidationTarget, validate

    if workers and scheduler:
        raise click.UsageError("give --workers or --scheduler, not both")
    reports_to_stdout = [path for path in (json_path, html_path) if _is_stdout(path)]
    if len(reports_to_stdout) > 1:
        raise click.UsageError("only one of --json and --html can be '-' (stdout)")
    options = ValidateOptions(strict=strict, av_sync=not no_av_sync, av_threshold_s=av_threshold_ms / 1000)
    try:
        report = validate(path, options, workers=workers or os.cpu_count(), scheduler=scheduler,
                          progress=show_progress(quiet))
    except NotAValidationTarget as exc:
        raise click.UsageError(str(exc))
    data = report.to_dict()
    _write_validation_outputs(data, json_path, html_path)  # first: the reports exist whatever the terminal does
    click.echo(render_summary(data), err=bool(reports_to_stdout))   # stdout holds the report alone
    sys.exit(0 if report.ok else 1)


def _is_stdout(path: Path | None) -> bool:
    """A report path of '-' means stdout."""
    return path is not None and str(path) == "-"


def _write_report(text: str, path: Path, kind: str) -> None:
    """`text` to the file `path` (its folder made), or to stdout when path is '-'."""
    if _is_stdout(path):
        click.echo(text, nl=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(f"{kind} report: {path}", err=True)


def _write_validation_outputs(data: dict, json_path: Path | None, html_path: Path | None) -> None:
    import json

    if json_path:
        _write_report(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n", json_path, "JSON")
    if html_path:
        from mer_data.validation.html import report_html

        _write_report(report_html(data), html_path, "HTML")


# The demo's corpus: every session (the leave-session-5-out split needs them all) with both dialog
# kinds, but 16 utterances per dialog instead of the synthesizer's 24, so that every step fits in
# about 3 minutes on 2 cores. (One dialog per session was faster still, but left a 16-utterance test
# split on which the 6-class metrics meant nothing.)
DEMO_UTTERANCES_PER_DIALOG = 16


@main.command()
@click.option("--out", default="demo-out", show_default=True, type=LocalFolder())
@click.option("--workers", default=None, type=click.IntRange(1), help="[default: CPU count]")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(0),
              help="Epochs of the demo's FE2E training run (0: stop after validation).")
@click.option("--baseline-epochs", default=30, show_default=True, type=click.IntRange(1),
              help="Epoch budget of the two-phase baselines (they stop early on validation).")
@_quiet_option("No progress bars or training log lines (the steps and result tables are still printed).")
def demo(out, workers, seed, epochs, baseline_epochs, quiet):
    """The whole job on an embedded default: synth -> convert -> validate -> train -> compare.

    The embedded default: 5 sessions x 2 dialogs x 16 utterances of synthetic speech, faces and
    transcripts in the real release layout, written to OUT/raw, converted to OUT/shards
    (leave-session-5-out split), audited (OUT/validation.html), a short FE2E training run
    (OUT/run) evaluated on the test split with the paper's metrics, then the two-phase side:
    features (OUT/feats), LF-RNN and LF-Transformer (OUT/lf-rnn, OUT/lf-transformer), and the
    comparison of all three (OUT/compare/compare.md and compare.html).
    """
    from mer_data.synth.iemocap import synth_iemocap
    from mer_data.pipelines.convert import plan_iemocap

    workers = workers or os.cpu_count()
    clock = _StepClock()
    raw = synth_iemocap(out / "raw", seed=seed, utterances_per_dialog=DEMO_UTTERANCES_PER_DIALOG,
                        progress=show_progress(quiet))
    click.echo(f"[1/6] synthetic IEMOCAP release: {raw}{clock.lap()}")
    options = ConvertOptions(corpus="iemocap", split="session:5")
    report = _run(plan_iemocap(raw, options), out / "shards", options, workers, scheduler=None, overwrite=True,
                  quiet=quiet)
    click.echo(f"[2/6] shards: {report.out}  (index: index.parquet, card: dataset.json){clock.lap()}")
    _demo_validate(report.out, out, workers, quiet, clock)
    if not epochs:
        return
    _demo_train(report.out, out / "run", epochs, seed, quiet, clock)
    feats = _demo_features(report.out, out / "feats", workers, quiet, clock)
    baselines = [_demo_train_baseline(feats, out / kind, kind, baseline_epochs, seed, quiet)
                 for kind in BASELINE_KINDS]
    _demo_compare([out / "run", *baselines], out / "compare", clock)
    click.echo(f"demo done in {clock.total()}")


class _StepClock:
    """Wall time of each demo step and of the whole, as printed after each step."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self._start = self._last = self._now()

    def lap(self) -> str:
        now = self._now()
        seconds, self._last = now - self._last, now
        return f"  [{seconds:.0f} s]"

    def total(self) -> str:
        minutes, seconds = divmod(round(self._now() - self._start), 60)
        return f"{minutes} min {seconds:02d} s"


def _log_lines(quiet: bool, prefix: str = ""):
    """Where a long step's log lines go: stderr, or nowhere with --quiet."""
    return (lambda message: None) if quiet else (lambda message: click.echo(f"{prefix}{message}", err=True))


def _demo_validate(shards: Path, out: Path, workers: int, quiet: bool, clock: _StepClock) -> None:
    from mer_data.validation import ValidateOptions
    from mer_data.validation.summary import render_summary
    from mer_data.pipelines.validate import validate

    data = validate(shards, ValidateOptions(), workers=workers, progress=show_progress(quiet)).to_dict()
    click.echo(render_summary(data))
    _write_validation_outputs(data, out / "validation.json", out / "validation.html")
    click.echo(f"[3/6] validation: {'ok' if data['ok'] else 'PROBLEMS FOUND'} (report: {out / 'validation.html'}){clock.lap()}")


def _fresh_run_folder(run: Path) -> None:
    import shutil

    if run.exists():
        shutil.rmtree(run)   # the demo starts over, like its conversion (--overwrite)


def _demo_train(shards: Path, run: Path, epochs: int, seed: int, quiet: bool, clock: _StepClock) -> None:
    from mer_data.model.train import TrainConfig, train

    _fresh_run_folder(run)
    config = TrainConfig(shards=[str(shards)], model="fe2e", modalities="tav", epochs=epochs, seed=seed)
    train(config, run, progress=show_progress(quiet), log=_log_lines(quiet))
    _evaluate_and_print(run, None, "test", None, None, quiet=quiet)
    click.echo(f"[4/6] FE2E trained {epochs} epochs and evaluated on the test split (above): {run}{clock.lap()}")


def _demo_features(shards: Path, feats: Path, workers: int, quiet: bool, clock: _StepClock) -> Path:
    from mer_data.pipelines.features import extract_features

    report = extract_features(shards, feats, FeatureOptions(), workers=workers, overwrite=True,
                              progress=show_progress(quiet))
    click.echo(report.summary())
    click.echo(f"[5/6] features (eGeMAPS, face appearance, frozen MiniLM tokens): {feats}{clock.lap()}")
    return feats


def _demo_train_baseline(feats: Path, run: Path, kind: str, epochs: int, seed: int, quiet: bool) -> Path:
    from mer_data.model.evaluate import evaluate
    from mer_data.model.train import TrainConfig, train

    _fresh_run_folder(run)
    config = TrainConfig(shards=[str(feats)], model=kind, modalities="tav", epochs=epochs, seed=seed)
    train(config, run, progress=False, log=_log_lines(quiet, prefix=f"{kind}: "))
    evaluate(run, split="test", progress=False)
    return run


def _demo_compare(runs: list[Path], out: Path, clock: _StepClock) -> None:
    from mer_data.model.compare import compare_runs

    comparison = compare_runs(runs, split="test", out=out)
    click.echo(comparison.markdown)
    click.echo(f"[6/6] end-to-end vs two-phase on the test split: {out / 'compare.md'}, {out / 'compare.html'}{clock.lap()}")


if __name__ == "__main__":
    main()
