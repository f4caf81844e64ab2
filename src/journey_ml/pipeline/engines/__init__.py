"""The pipeline's engines behind one interface (:class:`Engine`): pandas in memory, Dask scaled out."""

from journey_ml.pipeline.engines.base import BuiltSplits, Engine
from journey_ml.pipeline.engines.dask import DaskEngine
from journey_ml.pipeline.engines.pandas import PandasEngine

__all__ = ["BuiltSplits", "DaskEngine", "Engine", "PandasEngine"]
