"""stt-core for LiveKit Agents: any engine or chain as a drop-in ``livekit.agents.stt.STT``.

    from stt_core_livekit import STT, prewarm

    enable_shared_inference()                        # optional: one model per host, see the README
    server = AgentServer(setup_fnc=prewarm)          # loads local models once per process
    session = AgentSession(stt=STT.from_process(ctx.proc), vad=silero.VAD.load(), ...)

Importing this package imports LiveKit and stt_core only: no torch, no engine. LiveKit's
forkserver preloads plugin packages, so engines load in ``prewarm`` or on first use. In a worker's
main process, importing it registers the shared inference runner when stt.toml asks for it.
"""

from ._prewarm import USERDATA_KEY, configured_chain, prewarm, prewarmed_chain
from ._shared import SharedEngine, SharedEngineRunner, enable_shared_inference
from ._shared import register_if_configured as _register_if_configured
from ._stt import STT, SpeechStream, audio_to_frames, frames_to_audio, to_livekit_error

_register_if_configured()

__all__ = [
    "STT",
    "USERDATA_KEY",
    "SharedEngine",
    "SharedEngineRunner",
    "SpeechStream",
    "audio_to_frames",
    "configured_chain",
    "enable_shared_inference",
    "frames_to_audio",
    "prewarm",
    "prewarmed_chain",
    "to_livekit_error",
]
