"""stt-core for LiveKit Agents: any engine or chain as a drop-in ``livekit.agents.stt.STT``.

    from stt_core_livekit import STT, prewarm

    server = AgentServer(setup_fnc=prewarm)          # loads local models once per process
    session = AgentSession(stt=STT.from_process(ctx.proc), vad=silero.VAD.load(), ...)

Importing this package imports LiveKit and stt_core only: no torch, no engine. LiveKit's
forkserver preloads plugin packages, so engines load in ``prewarm`` or on first use.
"""

from ._prewarm import USERDATA_KEY, prewarm, prewarmed_chain
from ._stt import STT, SpeechStream, audio_to_frames, frames_to_audio, to_livekit_error

__all__ = [
    "STT",
    "USERDATA_KEY",
    "SpeechStream",
    "audio_to_frames",
    "frames_to_audio",
    "prewarm",
    "prewarmed_chain",
    "to_livekit_error",
]
