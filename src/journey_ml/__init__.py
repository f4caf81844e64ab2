"""journey_ml: customer-journey prediction and optimisation.

Importing the package has no side effects: no directories are created, no tracking
URI is set and logging is left alone.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
