"""``journey_ml.pipelines``: this directory, shipped as package data.

pyproject.toml maps the subpackage onto ``pipelines/`` (setuptools ``package-dir``), so the
default pipeline config (``train.yaml``) and every journey map in ``journey_maps/`` are in
the wheel and found through ``importlib.resources`` (``journey_ml.contract.shipped``), while this
stays the one place they are edited. No code lives here.
"""
