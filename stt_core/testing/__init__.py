"""Test helpers for applications and plugin authors.

- ``FakeProvider``: a scripted provider (results, errors, delays, streams).
- ``FaultServer``: an HTTP server on 127.0.0.1 that answers the failures you queue (401, 429 with
  Retry-After, 5xx), to point a cloud provider at.
- ``stt_core.testing.conformance.ProviderConformance``: the suite every provider should pass
  (it imports pytest, so it lives in its own module).
"""

from ._fake import FakeProvider, FakeSettings, echo_text, level_chunks
from ._faults import FaultServer

__all__ = ["FakeProvider", "FakeSettings", "FaultServer", "echo_text", "level_chunks"]
