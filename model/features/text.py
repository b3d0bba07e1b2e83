"""Text feature sequences of one utterance: token embeddings of a frozen text encoder.

The transcript is tokenized by the encoder's own tokenizer and run through the encoder once
(torch.no_grad, eval mode); each token's vector is the encoder's last hidden state. Special tokens
([CLS], [SEP], ...) are dropped, so the sequence holds the transcript's word pieces only; an empty
transcript gives an empty sequence. Transcripts longer than the encoder's positions (512 for the
default) are truncated. Tokens have no times (`timed` is false, `text_times` null).

The encoder is any `transformers` AutoModel by hub name or local path (model/text.py); None is the
bundled all-MiniLM-L6-v2 (384 dimensions), so nothing is downloaded. It is loaded once per process.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from mer_data.model.features.table import ModalitySpec

KINDS = ("encoder",)
EXTRACTOR = "transformers-last-hidden-state"
MAX_TOKENS = 512

Sequence = tuple[list[str], np.ndarray, None]


def resolve_encoder(name_or_path: str | None) -> str | None:
    """A local path made absolute (the workers may run elsewhere in the file tree); names and None as they are."""
    if name_or_path is not None and Path(name_or_path).exists():
        return str(Path(name_or_path).resolve())
    return name_or_path


@lru_cache(maxsize=2)
def _encoder(name_or_path: str | None):
    """(tokenizer, frozen encoder, token limit), loaded once per process."""
    from transformers.utils import logging as transformers_logging

    from mer_data.model.text import load_text_encoder, load_tokenizer

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per worker is noise
    tokenizer = load_tokenizer(name_or_path)
    encoder = load_text_encoder(name_or_path).eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    positions = getattr(encoder.config, "max_position_embeddings", MAX_TOKENS) or MAX_TOKENS
    limit = min(MAX_TOKENS, positions, tokenizer.model_max_length or MAX_TOKENS)
    return tokenizer, encoder, limit


def hidden_size(name_or_path: str | None) -> int:
    """The encoder's width, from its configuration only (no weights loaded)."""
    from transformers import AutoConfig

    from mer_data.model.text import DEFAULT_TEXT_ENCODER

    source = name_or_path or DEFAULT_TEXT_ENCODER
    try:
        return int(AutoConfig.from_pretrained(source).hidden_size)
    except OSError as error:
        raise OSError(f"cannot load the text encoder's configuration from {source!r} (a hub name needs network "
                      f"or a filled Hugging Face cache; the offline default is the bundled all-MiniLM-L6-v2): "
                      f"{error}") from error


def names(width: int) -> list[str]:
    return [f"emb_{i}" for i in range(width)]


def token_embeddings(text: str, encoder: str | None = None) -> Sequence:
    """[tokens, hidden] float32 last hidden states of the transcript's non-special tokens."""
    import torch

    tokenizer, model, limit = _encoder(encoder)
    width = int(model.config.hidden_size)
    tokens = tokenizer(text, return_tensors="pt", truncation=True, max_length=limit,
                       return_special_tokens_mask=True)
    keep = tokens.pop("special_tokens_mask")[0] == 0
    if not bool(keep.any()):
        return names(width), np.zeros((0, width), dtype=np.float32), None
    with torch.no_grad():
        hidden = model(**tokens).last_hidden_state[0]
    return names(width), hidden[keep].float().numpy(), None


def text_spec(kind: str, encoder: str | None) -> ModalitySpec:
    """What the card records for the text modality (`encoder`: name or path, None = the bundled MiniLM)."""
    if kind not in KINDS:
        raise ValueError(f"unknown text features {kind!r}; expected one of {', '.join(KINDS)}")
    from mer_data.model.text import DEFAULT_TEXT_ENCODER

    return ModalitySpec(role="t", extractor=EXTRACTOR, names=names(hidden_size(encoder)),
                        description="token embeddings (last hidden state) of a frozen text encoder, special "
                                    "tokens dropped; untimed",
                        step_seconds=None, timed=False,
                        options={"encoder": encoder or DEFAULT_TEXT_ENCODER, "default_encoder": encoder is None,
                                 "max_tokens": MAX_TOKENS})
