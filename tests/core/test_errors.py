"""What an upstream's words become before they go anywhere: credentials out, the rest as it was."""

from __future__ import annotations

import pytest

from stt_core import InvalidAudioError, ProviderError
from stt_core._errors import error_for_status, without_secrets


@pytest.mark.parametrize(("said", "passed_on"), [
    ("invalid or missing API key (Authorization: Bearer sk-live-0123456789abcdef)",
     "invalid or missing API key (Authorization: Bearer [redacted])"),  # its closing parenthesis kept
    ("bad request [api_key=gsk_0123456789abcdef] refused", "bad request [api_key=[redacted]] refused"),
    ('{"error": "token: abcdefghijklmnopqrstuvwxyz"}', '{"error": "token: [redacted]"}'),
    ("key sk-proj-abcdefgh12345678 is revoked", "key [redacted] is revoked"),
    ("no credentials here (HTTP 500)", "no credentials here (HTTP 500)"),
    ("cannot reach https://user:hunter2@gpu-box/v1", "cannot reach https://user:[redacted]@gpu-box/v1"),
    ("password=abc)def123 failed", "password=[redacted] failed"),  # a bracket inside a secret is the secret's
    ("redis://:hunter2@host:6379 and https://u:p@ss@h/x", "redis://:[redacted]@host:6379 and https://u:[redacted]@h/x"),
])
def test_credentials_are_replaced_and_the_words_around_them_kept(said: str, passed_on: str) -> None:
    assert without_secrets(said) == passed_on


@pytest.mark.parametrize(("status", "detail", "kind", "retryable", "said"), [
    (400, "Invalid file format. Supported: flac, mp3, wav", InvalidAudioError, False, "refused the audio"),
    (400, "Invalid language 'zh_cn'. Language parameter must be specified in ISO-639-1 format.",
     ProviderError, False, "refused the request"),  # the next engine may take it: not bad audio
    (400, "response_format 'srt' is not supported", ProviderError, False, "refused the request"),
    (429, "Rate limit reached for requests", ProviderError, True, "is rate limiting"),
    (429, "You exceeded your current quota, please check your plan and billing details.", ProviderError,
     False, "is out of quota"),  # billing, not a pace: retrying it only repeats the refusal
    (429, "Requests have exceeded call rate limit. Please retry after 6 seconds. https://aka.ms/oai/quotaincrease",
     ProviderError, True, "is rate limiting"),  # Azure's pace, whose link says "quota"
])
def test_an_upstream_status_is_read_as_what_it_means(
    status: int, detail: str, kind: type, retryable: bool, said: str
) -> None:
    error = error_for_status(status, detail, provider="up")
    assert type(error) is kind and said in str(error) and getattr(error, "retryable", False) is retryable
