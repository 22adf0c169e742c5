"""Audio in: the ``Audio`` value (``audio``), decoding (``decode``), long files in pieces
(``files``), and voice activity, Silero's VAD on onnxruntime (``vad``)."""

from .audio import Audio, AudioSource, as_audio
from .vad import SileroVAD, VADSettings, find_vad_model, speech_segments

__all__ = [
    "Audio", "AudioSource", "SileroVAD", "VADSettings", "as_audio", "find_vad_model", "speech_segments",
]
