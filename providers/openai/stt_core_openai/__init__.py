"""stt-core provider 'openai': any server that speaks the OpenAI transcription API."""

from stt_core import hookimpl


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    from ._provider import OpenAIProvider  # the SDK is imported when a client is first made

    register(OpenAIProvider)
