"""The contract: what the user tells journey_ml (journey map, train config) and the rules read from it.

Every later stage reads these; nothing here imports from a later stage. The stage rules
(:mod:`journey_ml.contract.stages`) are imported from their module: they compile numba
kernels, which a config-only import should not pay for.
"""

from journey_ml.contract.frictions import (
    friction_measure,
    friction_occurrences,
    friction_occurs,
    over_threshold,
)
from journey_ml.contract.journey_map import (
    CANONICAL_COLUMNS,
    DEFAULT_JOURNEY_MAP,
    FORMATS,
    REQUIRED_COLUMNS,
    TOUCHPOINT_KEYS,
    Friction,
    JourneyMap,
    Stage,
    Touchpoints,
    load_journey_map,
)
from journey_ml.contract.time import to_utc, utc_ns
from journey_ml.contract.train_config import (
    AnchorConfig,
    DaskConfig,
    FeaturesConfig,
    ModelConfig,
    RankingConfig,
    SnapshotConfig,
    SplitConfig,
    TrackingConfig,
    TrainConfig,
    TuningConfig,
    parse_override,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "DEFAULT_JOURNEY_MAP",
    "FORMATS",
    "REQUIRED_COLUMNS",
    "TOUCHPOINT_KEYS",
    "AnchorConfig",
    "DaskConfig",
    "FeaturesConfig",
    "Friction",
    "JourneyMap",
    "ModelConfig",
    "RankingConfig",
    "SnapshotConfig",
    "SplitConfig",
    "Stage",
    "Touchpoints",
    "TrackingConfig",
    "TrainConfig",
    "TuningConfig",
    "friction_measure",
    "friction_occurrences",
    "friction_occurs",
    "load_journey_map",
    "over_threshold",
    "parse_override",
    "to_utc",
    "utc_ns",
]
