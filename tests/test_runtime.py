"""Process-level helpers: the identity cache of what fitted objects give, numba's start-up."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from journey_ml.runtime import RefuseInThread, per_identity


class _Spec:
    def __init__(self, name: str) -> None:
        self.name = name


def test_per_identity_builds_once_per_object_and_keeps_at_most_kept() -> None:
    calls: list[str] = []

    def build(spec: _Spec, suffix: str) -> str:
        calls.append(spec.name)
        return spec.name + suffix

    cached = per_identity(build, kept=2)
    a, b, c = _Spec("a"), _Spec("a"), _Spec("c")
    suffix = "!"
    assert cached(a, suffix) == "a!" and cached(a, suffix) == "a!"
    assert calls == ["a"]  # the same objects: built once
    assert cached(b, suffix) == "a!"
    assert calls == ["a", "a"]  # an equal but distinct object is another entry
    cached(c, suffix)  # a third entry evicts the oldest (a)
    cached(a, suffix)
    assert calls == ["a", "a", "c", "a"]
    assert cached.__name__ == "build"


def test_refuse_in_thread_refuses_only_its_package_in_its_own_thread() -> None:
    finder = RefuseInThread("scipy.linalg")
    with pytest.raises(ImportError, match=r"scipy\.linalg\.cython_blas"):
        finder.find_spec("scipy.linalg.cython_blas")
    with pytest.raises(ImportError):
        finder.find_spec("scipy.linalg")
    assert finder.find_spec("scipy.linalgebra") is None  # another package, same prefix
    assert finder.find_spec("scipy.special") is None
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(finder.find_spec("scipy.linalg.cython_blas")))
    worker.start()
    worker.join()
    assert seen == [None]  # other threads import as usual


def test_numba_target_set_up_skips_the_blas_probe_and_leaves_blas_usable() -> None:
    """In a fresh process: no scipy.linalg after the set-up, a cached kernel runs, and a
    kernel compiled afterwards with np.dot still gets scipy's BLAS."""
    code = (
        "import sys, numpy as np, numba\n"
        "from journey_ml.runtime import set_up_numba_target\n"
        "set_up_numba_target()\n"
        "print('scipy.linalg' in sys.modules)\n"
        "from journey_ml.features.kernels import shares\n"
        "print(shares(np.array([[1, 3]], dtype=np.int32), np.array([4, 4], dtype=np.int32)).tolist())\n"
        "print(numba.njit(lambda a, b: np.dot(a, b))(np.ones(3), np.arange(3.0)))\n"
        "print('scipy.linalg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "False"
    assert out[1] == "[[0.25, 0.75]]"
    assert out[2] == "3.0"
    assert out[3] == "True"
