"""`mer evaluate`: score a trained run on a split with the paper's metrics, thresholds tuned on validation.

The protocol of Dai et al. (2021) for the one-vs-rest task: the run's best epoch predicts the validation split, per-class
thresholds are chosen there to maximise F1, and those thresholds are applied to the evaluated split.
Results go to RUN/eval-<split>/ as metrics.json, metrics.md and scores.parquet (every utterance's
scores and targets, so any other metric can be computed later without the model).

An MESM run can also be evaluated at a nucleus mass other than the one it was trained at
(`top_p`: both the validation pass that tunes the thresholds and the evaluated split use it), to
trace accuracy against kept share after training; those results go to RUN/eval-<split>-p<top_p>/,
so the run's own eval-<split>/ (which `mer compare` reads) is left as it is.

The same for the two-phase baselines (lf-rnn, lf-transformer): the `shards` argument then names a
FEATS folder, and the normalisation statistics come from the checkpoint (the training split's).

A sentiment run (`--task sentiment`) is scored by mer_data.model.metrics.sentiment_metrics on the evaluated
split alone (nothing is tuned on validation): MAE, Pearson r, Acc-2 (has0 and non0) with their
weighted F1, Acc-7 and Acc-5; scores.parquet then holds each utterance's prediction and target.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from mer_data.model import checkpoint as ckpt
from mer_data.model import distributed
from mer_data.model.kinds import is_feature_model
from mer_data.model.shard_check import PARTIAL_FLAG
from mer_data.model.train import (_no_bar, _progress_bar, evaluate_predictions, make_loader, make_model,
                         pass_notes, predict, read_run_config, tokenizer_for)


def load_run(run: Path, *, shards: list[str] | None = None, device: str | None = None, workers: int | None = None,
             epoch: int | None = None, log=None):
    """(config, model with the chosen epoch's weights, epoch) of a run folder.

    `log`: where warnings about the run's data go (moved or changed since training; None: not checked)."""
    run = Path(run)
    # Under torchrun rank 0 reads the run folder and sends it to the others (model/distributed.py).
    config, epoch, weights = distributed.from_main(lambda: _read_run(run, shards, epoch, log))
    config = replace(config, shards=list(shards or config.shards),
                     device=distributed.local_device(device or config.device),
                     workers=config.workers if workers is None else workers)
    # A baseline's normalisation statistics are buffers of its checkpoint: the placeholders it is
    # built with are overwritten by the training split's statistics.
    model = make_model(config, train_statistics=False).to(config.device)
    model.load_state_dict(weights if distributed.active() else
                          ckpt.load_checkpoint(ckpt.checkpoint_path(run, epoch), map_location=config.device)["model"])
    return config, model, epoch


def _read_run(run: Path, shards, epoch: int | None, log):
    """(config, epoch, its weights on the CPU: only under torchrun, to send them) of a run folder."""
    config = read_run_config(run, log=log if log is not None and not shards else lambda _: None)
    distributed.check_supported(config.model, is_feature_model(config.model))
    epoch = epoch or ckpt.load_state(run).best_epoch
    if not epoch:
        raise ValueError(f"{run}: no finished epoch to evaluate yet")
    weights = (ckpt.load_checkpoint(ckpt.checkpoint_path(run, epoch), map_location="cpu")["model"]
               if distributed.active() else None)
    return config, epoch, weights


def evaluate(run: Path, *, shards: list[str] | None = None, split: str = "test", device: str | None = None,
             workers: int | None = None, epoch: int | None = None, progress: bool = True,
             top_p: float | None = None, allow_partial: bool = False, allow_command_urls: bool = False,
             log=None) -> dict:
    """Evaluate a run on `split`; writes RUN/eval-<split>/ (see ckpt.evaluation_folder) and returns the metrics dict.

    The data is the run's (its stored absolute locations; a warning to `log`, default stderr, when it
    changed since training) or `shards`. `allow_command_urls` applies to `shards` only, never to the
    stored locations; `allow_partial`: see model/shard_check.py (recorded in metrics["run"])."""
    from mer_data.model.report import write_report
    distributed.start()
    if not distributed.is_main():   # under torchrun: every process predicts its share, rank 0 writes and prints
        log, progress = (lambda message: None), False
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    config, model, epoch = load_run(run, shards=shards, device=device, workers=workers, epoch=epoch, log=log)
    if top_p is not None:
        if config.model != "mesm":
            raise ValueError(f"{run}: --top-p applies to MESM runs; this one is {config.model}")
        model.top_p = top_p          # validated there: (0, 1]
    tokenizer = tokenizer_for(config)
    bar = _progress_bar if progress else _no_bar
    loaders = dict(train=False, allow_partial=allow_partial, allow_command_urls=allow_command_urls and bool(shards))
    valid_loader = make_loader(config, "valid", tokenizer, **loaders)
    tested_loader = valid_loader if split == "valid" else make_loader(config, split, tokenizer, **loaders)
    valid = predict(model, valid_loader, config, bar, "valid")
    tested = valid if split == "valid" else predict(model, tested_loader, config, bar, split)
    valid_expected, valid_notes = pass_notes(valid_loader, len(valid["ids"]))
    expected, tested_notes = ((valid_expected, []) if split == "valid"
                              else pass_notes(tested_loader, len(tested["ids"])))
    metrics = evaluate_predictions(config, valid, tested, split)
    metrics["run"] = {"path": str(run), "model": config.model, "modalities": config.modalities,
                      "top_p": model.top_p if config.model == "mesm" else None, "epoch": epoch, "split": split,
                      "samples": len(tested["ids"]), "samples_expected": expected, "corpus": config.corpus}
    notes = list(dict.fromkeys(valid_notes + tested_notes))
    if notes:   # only with allow_partial: otherwise a shortfall was refused
        metrics["run"]["partial"] = notes
        for note in notes:
            log(f"warning ({PARTIAL_FLAG}): {note}")
    if top_p is not None:
        metrics["run"]["trained_top_p"] = config.top_p
    if tested.get("kept_share"):
        metrics["run"]["kept_share"] = tested["kept_share"]
    if is_feature_model(config.model):
        metrics["run"]["features"] = ", ".join(model.input_names)
    if distributed.is_main():
        out = ckpt.evaluation_folder(run, split, top_p)
        write_report(metrics, out)
        write_scores(out / "scores.parquet", tested, config.label_names, regression=config.task == "sentiment")
    return metrics


def write_scores(path: Path, predicted: dict, label_names, *, regression: bool = False) -> None:
    """Every utterance's score and target per label (a regression's targets stay floats)."""
    table = pd.DataFrame({"id": predicted["ids"]})
    for i, name in enumerate(label_names):
        table[f"score_{name}"] = predicted["scores"][:, i]
        table[f"target_{name}"] = predicted["targets"][:, i] if regression else predicted["targets"][:, i].astype("int8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with ckpt.atomic_path(path) as temp:
        table.to_parquet(temp, index=False)
