"""What an upstream's words become before they go anywhere: credentials out, the rest as it was."""

from __future__ import annotations

import pytest

from stt_core._errors import without_secrets


@pytest.mark.parametrize(("said", "passed_on"), [
    ("invalid or missing API key (Authorization: Bearer sk-live-0123456789abcdef)",
     "invalid or missing API key (Authorization: Bearer [redacted])"),  # its closing parenthesis kept
    ("bad request [api_key=gsk_0123456789abcdef] refused", "bad request [api_key=[redacted]] refused"),
    ('{"error": "token: abcdefghijklmnopqrstuvwxyz"}', '{"error": "token: [redacted]"}'),
    ("key sk-proj-abcdefgh12345678 is revoked", "key [redacted] is revoked"),
    ("no credentials here (HTTP 500)", "no credentials here (HTTP 500)"),
])
def test_credentials_are_replaced_and_the_words_around_them_kept(said: str, passed_on: str) -> None:
    assert without_secrets(said) == passed_on
