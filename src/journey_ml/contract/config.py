"""Former home of the journey map and the train config: an alias of :mod:`journey_ml.contract`.

Kept so that code written against the old path keeps importing; new code imports from
:mod:`journey_ml.contract` (map: ``contract.journey_map``, config: ``contract.train_config``).
"""

from journey_ml.contract import *  # noqa: F403
from journey_ml.contract import __all__ as __all__
