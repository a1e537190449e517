"""`LastWrites`: our writes' answers stand in for a cache that has not caught up, and
only until it has."""

from __future__ import annotations

from typing import Any

from arks_reconciler.kube.written import LastWrites


def obj(version: str, name: str = "a", **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "resourceVersion": version}
    return {"kind": "Service", "metadata": meta, **extra}


KEY = ("Service", "ns", "a")


def test_the_newer_of_the_cache_and_our_answer_wins() -> None:
    written = LastWrites()
    assert written.newest(KEY, obj("5")) == obj("5")  # nothing written: the cache
    answer = written.remember(obj("7", spec=1))
    assert written.newest(KEY, obj("5")) is answer  # the cache lags
    assert written.newest(KEY, None) is answer  # created by us, not delivered yet
    assert len(written) == 1
    assert written.newest(KEY, obj("7")) == obj("7")  # caught up: the cache, answer gone
    assert len(written) == 0
    assert written.newest(KEY, obj("6")) == obj("6")


def test_the_watch_prunes_answers_and_a_delete_forgets_them() -> None:
    written = LastWrites()
    written.remember(obj("7"))
    written.seen(obj("6"))  # an older event: still ours
    assert len(written) == 1
    written.seen(obj("8"))  # someone wrote after us
    assert len(written) == 0
    written.remember(obj("9"))
    written.seen(obj("9"), deleted=True)
    assert written.newest(KEY, None) is None  # deleted: not ours to believe in
    written.remember(obj("10"))
    written.forget(KEY)
    assert written.newest(KEY, None) is None
    written.seen(obj("3", name="other"))  # unknown objects are no trouble


def test_opaque_versions_trust_the_cache() -> None:
    written = LastWrites()
    written.remember(obj("abc"))  # not a number: not kept
    assert len(written) == 0
    written.remember(obj("7"))
    assert written.newest(KEY, obj("x1")) == obj("x1")
    assert len(written) == 0
