"""`mer validate`: audit raw corpora and shard sets for alignment and integrity.

    report = mer_data.pipelines.validate.validate(PATH, ValidateOptions())   # the Dask graph: one task
                                                                     # per recording or per shard
    report.to_dict()        # the JSON report (schemas/validation-report.schema.json)
    render_summary(report.to_dict())   # the terminal table

Modules, one concept each:
- options.py: ValidateOptions, the thresholds and switches of a run;
- findings.py: Finding (one problem: severity, kind, file, line, id), the registry of kinds, Report;
- raw_audit.py: raw IEMOCAP and CMU-MOSEI releases (annotations against each other and the media);
- shard_audit.py: one shard (tar integrity, members, metadata, decoding, durations, faces, A/V);
- shard_set.py: a shard folder as a whole (index.parquet, dataset.json, errors.jsonl, duplicates,
  split leakage, A/V offsets per recording);
- summary.py: the terminal summary table;
- av_sync.py, html.py: A/V offset estimation and the HTML report.
"""
from mer_data.validation.findings import KINDS, Finding, Report, finding
from mer_data.validation.options import ValidateOptions

__all__ = ["KINDS", "Finding", "Report", "ValidateOptions", "finding"]
