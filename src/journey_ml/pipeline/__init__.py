"""Pipelines as wiring: training (:mod:`.train`) and retraining (:mod:`.retrain`), with the
pure steps in :mod:`.steps`, the time-based splits in :mod:`.splits` and the data-heavy work
behind one engine interface in :mod:`.engines` (pandas in memory, Dask scaled out)."""
