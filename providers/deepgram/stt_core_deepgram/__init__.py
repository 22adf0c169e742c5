"""stt-core provider 'deepgram': Deepgram's cloud speech-to-text, batch and live streaming."""

from stt_core import hookimpl


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    from ._provider import DeepgramProvider  # the SDK is imported when a client is first made

    register(DeepgramProvider)
