"""Test helpers for applications and plugin authors.

- ``FakeProvider``: a scripted provider (results, errors, delays, streams).
- ``stt_core.testing.conformance.ProviderConformance``: the suite every provider should pass
  (it imports pytest, so it lives in its own module).
"""

from ._fake import FakeProvider, FakeSettings, echo_text, level_chunks

__all__ = ["FakeProvider", "FakeSettings", "echo_text", "level_chunks"]
