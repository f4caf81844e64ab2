"""Process-level helpers: the identity cache of what fitted objects give."""

from __future__ import annotations

from journey_ml.runtime import per_identity


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
