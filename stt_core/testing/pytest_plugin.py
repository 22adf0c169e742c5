"""pytest plugin (``pytest11`` entry point): makes the conformance suite's asserts readable
and offers fixtures to any project's tests. Imports nothing heavy: it loads in every run."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("stt_core.testing.conformance")


@pytest.fixture
def fake_provider() -> object:
    """A fresh ``FakeProvider`` answering "hello world"."""
    from stt_core.testing import FakeProvider

    return FakeProvider()


@pytest.fixture
def conformance_tone() -> object:
    """One second of a 440 Hz tone at 16 kHz, as ``stt_core.Audio``."""
    from stt_core.testing.conformance import tone

    return tone()
