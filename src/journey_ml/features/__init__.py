"""Features: one feature spec for training, batch and online scoring.

Every feature is computed from a customer's events at or before a cutoff time ``t`` and
nothing else. Modules: :mod:`~journey_ml.features.vocabulary` (fitted vocabularies),
:mod:`~journey_ml.features.spec` (:class:`FeatureSpec`), :mod:`~journey_ml.features.families`
(feature functions beside their column names), :mod:`~journey_ml.features.context`
(per-chunk reductions), :mod:`~journey_ml.features.kernels` (compiled loops),
:mod:`~journey_ml.features.btyd` (the BG/NBD model behind the BTYD features) and
:mod:`~journey_ml.features.compute` (the drivers).
"""

from journey_ml.features.compute import (
    compute_features,
    compute_rows,
    features_at,
    features_for_customer,
)
from journey_ml.features.families import FEATURE_FAMILIES
from journey_ml.features.spec import MAX_TOUCHPOINTS, SPEC_VERSION, FeatureSpec
from journey_ml.features.vocabulary import OTHER, WINDOWS, Vocabulary

__all__ = [
    "FEATURE_FAMILIES",
    "MAX_TOUCHPOINTS",
    "OTHER",
    "SPEC_VERSION",
    "WINDOWS",
    "FeatureSpec",
    "Vocabulary",
    "compute_features",
    "compute_rows",
    "features_at",
    "features_for_customer",
]
