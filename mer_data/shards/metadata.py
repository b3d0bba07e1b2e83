"""What the shard contract says of one sample: its `json` member (schemas/sample.schema.json) and its
row of index.parquet, both built from the corpus's Utterance and the media cut of it.
"""
from __future__ import annotations

from mer_data import schemas
from mer_data.media.black import black_facts
from mer_data.records import CutResult, Utterance


def sample_metadata(utt: Utterance, split: str, cut: CutResult) -> dict:
    """The `json` member of a sample: the contract of schemas/sample.schema.json."""
    interval = utt.end - utt.start
    encoding = "cp1252" if "text_encoding=cp1252" in utt.notes else "utf-8"
    return {
        "schema_version": schemas.SAMPLE_SCHEMA_VERSION,
        "corpus": utt.corpus, "id": utt.id, "split": split, "recording": utt.recording,
        "session": utt.session, "speaker": utt.speaker, "gender": utt.gender,
        "start": utt.start, "end": utt.end, "duration": round(interval, 6),
        "label": utt.label, "text": utt.text, "text_encoding": encoding,
        "audio": cut.audio, "video": {**cut.video, **black_facts([f["black"] for f in cut.faces["frames"]])},
        "faces": cut.faces,
        "alignment": {
            "audio_minus_interval_s": round(cut.audio["duration"] - interval, 6),
            "video_minus_interval_s": round(cut.video["duration"] - interval, 6),
            "video_start_offset_s": round(cut.video["start_time"] - utt.start, 6),
        },
        "words": None if utt.words is None else [word.to_json() for word in utt.words],
        "sources": {
            "video": utt.sources.get("video", ""), "audio": utt.sources.get("audio", ""),
            "transcript": utt.sources.get("transcript"), "labels": utt.sources.get("labels"),
            "transcript_line": utt.lines.get("transcript"), "labels_line": utt.lines.get("labels"),
        },
    }


def index_row(meta: dict, word_timings: str | None = None) -> dict:
    """The flat columns of index.parquet for one sample (shard and position are added at packing).

    `word_timings`: the utterance's Utterance.word_timings ("present", "missing", "malformed";
    None for a corpus without word timings), counted in the dataset card."""
    row = {
        "key": meta["id"], "split": meta["split"], "recording": meta["recording"], "session": meta["session"],
        "speaker": meta["speaker"], "gender": meta["gender"], "start": meta["start"], "end": meta["end"],
        "duration": meta["duration"], "text": meta["text"],
        "audio_samples": meta["audio"]["samples"], "video_frames": meta["video"]["frames"],
        "video_fps": meta["video"]["fps"], "video_black_fraction": meta["video"]["black_fraction"],
        "video_is_black": meta["video"]["is_black"], "face_detection_rate": meta["faces"]["detection_rate"],
        "word_timings": word_timings,
    }
    label = meta["label"]
    if "category" in label:
        row.update(label=label["category"], **{"class": label["class"]}, valence=label["vad"][0], arousal=label["vad"][1],
                   dominance=label["vad"][2])
    else:
        row.update(sentiment=label["sentiment"], **{f"emo_{k}": v for k, v in label["emotions"].items()})
    return row
