"""Training-data pipeline: feedback → validated datasets (chat JSONL, RAG documents, classification,
preference pairs). See ``build`` for the flow, ``sources`` for how feedback combines, ``formats`` for the
filters and label rules, ``dedup`` for what a near-duplicate is, ``validate`` for the pre-flight checks.
"""

from training.dataset_options import DatasetOptions
from training.pipeline.build import DatasetInvalid, dataset_build, dataset_require_valid, options_resolve
from training.pipeline.formats import FORMATS

__all__ = [
    "FORMATS",
    "DatasetInvalid",
    "DatasetOptions",
    "dataset_build",
    "dataset_require_valid",
    "options_resolve",
]
