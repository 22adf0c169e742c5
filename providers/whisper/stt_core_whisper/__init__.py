"""stt-core provider 'whisper': faster-whisper on CTranslate2, fully local."""

from stt_core import hookimpl


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    from ._provider import WhisperProvider  # imports no engine: that waits for the first load

    register(WhisperProvider)
