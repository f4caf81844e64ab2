"""Labels: the rows a model learns from, and what the data can support.

:mod:`~journey_ml.labels.cutoffs` (snapshot cutoffs and the split by cutoff time),
:mod:`~journey_ml.labels.snapshots` (labelled weekly rows), :mod:`~journey_ml.labels.anchors`
(rows anchored at friction events and matched controls) and :mod:`~journey_ml.labels.shape`
(which tasks and parts the journey's data supports).
"""

from journey_ml.labels.anchors import ANCHOR_COLUMNS, anchor_cutoffs, control_event_types
from journey_ml.labels.cutoffs import Split, make_cutoffs, split_by_cutoff
from journey_ml.labels.shape import (
    MIN_TEST_LABELS,
    MIN_TRAIN_LABELS,
    NO_FRICTIONS,
    PARTS,
    VALUE_UNITS,
    InsufficientDataError,
    JourneyShape,
    Part,
    check_labels,
    label_counts,
    value_target,
)
from journey_ml.labels.snapshots import LABELS, active_customers, build_snapshots

__all__ = [
    "ANCHOR_COLUMNS",
    "LABELS",
    "MIN_TEST_LABELS",
    "MIN_TRAIN_LABELS",
    "NO_FRICTIONS",
    "PARTS",
    "VALUE_UNITS",
    "InsufficientDataError",
    "JourneyShape",
    "Part",
    "Split",
    "active_customers",
    "anchor_cutoffs",
    "build_snapshots",
    "check_labels",
    "control_event_types",
    "label_counts",
    "make_cutoffs",
    "split_by_cutoff",
    "value_target",
]
