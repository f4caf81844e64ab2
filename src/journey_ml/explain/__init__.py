"""Explain the trained models: TreeSHAP, the friction ranking, reason codes, comparator attribution."""

from journey_ml.explain.attribution import (
    MarkovChain,
    friction_comparators,
    last_touch,
    markov_chain_from_paths,
    markov_chain_from_sequences,
    markov_removal_effects,
)
from journey_ml.explain.impacts import (
    IMPROVEMENT_COLUMNS,
    UNIT_WORDS,
    FrictionImpacts,
    empty_ranking,
    friction_impacts,
    improvements_for_bundle,
    improvements_to_records,
    rank_improvements,
    ranking_unit,
)
from journey_ml.explain.reasons import add_reason_codes, reason_codes
from journey_ml.explain.rows import (
    ANCHOR_COLUMN,
    anchored_features,
    period_cutoffs,
    period_features,
    scoring_time,
)
from journey_ml.explain.shap import (
    ShapComparison,
    compare_shap_backends,
    shap_summary_figures,
    tree_shap,
)

__all__ = [
    "ANCHOR_COLUMN",
    "IMPROVEMENT_COLUMNS",
    "UNIT_WORDS",
    "FrictionImpacts",
    "MarkovChain",
    "ShapComparison",
    "add_reason_codes",
    "anchored_features",
    "compare_shap_backends",
    "empty_ranking",
    "friction_comparators",
    "friction_impacts",
    "improvements_for_bundle",
    "improvements_to_records",
    "last_touch",
    "markov_chain_from_paths",
    "markov_chain_from_sequences",
    "markov_removal_effects",
    "period_cutoffs",
    "period_features",
    "rank_improvements",
    "ranking_unit",
    "reason_codes",
    "scoring_time",
    "shap_summary_figures",
    "tree_shap",
]
