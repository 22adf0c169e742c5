"""``[realtime]``: the VAD's settings, and how real time spends its engine's time."""

from __future__ import annotations

from pydantic import Field

from .._audio.vad import VADSettings


class RealtimeSettings(VADSettings):
    """The VAD's settings, and how real time spends its engine's time. ``[realtime]`` in config."""

    interim_share: float = Field(0.5, gt=0, le=1)
    """At most this share of the time goes to recognising interims (the rest is the engine's)."""
    min_interim_interval: float = Field(0.3, ge=0.05, le=10)
    """Seconds between interims at the least, however fast the engine."""
    pre_roll: float = Field(0.3, ge=0, le=2)
    """Seconds of audio before the speech's start that go to the engine with it (recognisers hear
    the first word better with a little lead-in; LiveKit's VAD keeps 0.5 s)."""
    min_piece: float = Field(1.0, ge=0.1, le=30)
    """Seconds of audio a recognition that speech overtook at a pause must cover to be kept as a
    piece of the final (shorter ones are recognised again with what follows)."""
    attempt_timeout: float = Field(10.0, gt=0, le=600)
    """Seconds an engine has for one recognition in real time (tighter than the chain's
    ``attempt_timeout``, which is for files): a hung local engine costs at most this per call,
    and before the next engine gets the utterance, twice this, or three times where the
    recognition ahead of need in flight fell over to the next engine too (it, then the final's
    call)."""
    drain_timeout: float = Field(20.0, ge=0, le=600)
    """Seconds the end of the input waits for the next final still being recognised (so a slow
    engine that keeps answering is waited for, a hung one is not); those left are ``failed``."""
