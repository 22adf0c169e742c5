"""Audio in: the ``Audio`` value, decoding, long files in pieces, and voice activity (Silero's VAD)."""

from .audio import Audio, AudioSource, as_audio

__all__ = ["Audio", "AudioSource", "as_audio"]
