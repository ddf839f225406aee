"""Settings from the environment: registry rate limits."""

from __future__ import annotations

import pytest

from config import DEFAULT_REGISTRY_RATE_LIMITS, load_settings


def test_registry_rate_limits_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_RATE_LIMITS", raising=False)
    assert load_settings().registry_rate_limits == DEFAULT_REGISTRY_RATE_LIMITS
    monkeypatch.setenv("REGISTRY_RATE_LIMITS", "population=80, land=2.5")
    limits = load_settings().registry_rate_limits
    assert limits["population"] == 80 and limits["land"] == 2.5
    assert limits["business"] == DEFAULT_REGISTRY_RATE_LIMITS["business"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tax=5", "unknown registry 'tax'"),
        ("population=0", "population must be a positive number per second"),
        ("population=fast", "population must be a positive number per second"),
    ],
)
def test_registry_rate_limits_refuse_what_cannot_be_a_limit(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("REGISTRY_RATE_LIMITS", value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_each_registry_queue_carries_its_registry_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from bootstrap import registry_rate

    monkeypatch.setenv("REGISTRY_RATE_LIMITS", "population=7")
    config = load_settings()
    assert registry_rate("registry-population", config) == 7
    assert registry_rate("registry-land", config) == DEFAULT_REGISTRY_RATE_LIMITS["land"]
    assert registry_rate("portal", config) is None
    assert registry_rate("certification", config) is None
