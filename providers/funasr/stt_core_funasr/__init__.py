"""stt-core provider 'funasr': SenseVoiceSmall through funasr, local and offline."""

from stt_core import hookimpl


@hookimpl
def register_providers(register):  # type: ignore[no-untyped-def]
    from ._provider import FunASRProvider  # imports no funasr: that waits for the first load

    register(FunASRProvider)
