"""Pipelines as wiring: training (:mod:`.train`), retraining (:mod:`.retrain`) and batch
scoring (:mod:`.scoring`), with the pure steps in :mod:`.steps` and the data-heavy work
behind one engine interface in :mod:`.engines` (pandas in memory, Dask scaled out)."""
