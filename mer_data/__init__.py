"""mer-data: raw multimodal emotion corpora -> utterance-level WebDataset shards."""
__version__ = "0.2.0"
