"""stt-core provider 'groq': Whisper on Groq's cloud."""

from stt_core import hookimpl


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    from ._provider import GroqProvider  # the SDK is imported when a client is first made

    register(GroqProvider)
