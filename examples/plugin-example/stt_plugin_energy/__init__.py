"""An example stt-core plugin, written against the public API only.

It is not a real recogniser: it finds the stretches of audio louder than a threshold and
"transcribes" each as ``[speech]``, with its times. That is enough to show every part a real
plugin has: settings, capabilities, a cheap availability check, error mapping, and the hook.
"""

from __future__ import annotations

import numpy as np

import stt_core
from stt_core import Audio, Capabilities, Provider, ProviderSettings, Segment, Transcript


@stt_core.hookimpl
def register_providers(register):
    register(EnergyProvider)


class EnergySettings(ProviderSettings):
    threshold_db: float = -35.0
    frame_ms: int = 30
    min_silence_ms: int = 500  # shorter pauses are gaps between words, not between utterances


class EnergyProvider(Provider):
    name = "energy"
    Settings = EnergySettings
    capabilities = Capabilities(offline=True)

    async def _transcribe(self, audio: Audio, *, language, prompt, word_timestamps) -> Transcript:
        samples = audio.mono_float32(16_000)
        size = 16 * self.settings.frame_ms
        frames = samples[: len(samples) // size * size].reshape(-1, size)
        if len(frames) == 0:
            return Transcript("", segments=())
        level_db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
        loud = level_db > self.settings.threshold_db
        step = self.settings.frame_ms / 1000
        segments: list[Segment] = []
        start = None
        for i, is_loud in enumerate([*loud, False]):
            if is_loud and start is None:
                start = i
            elif not is_loud and start is not None:
                begin, end = start * step, i * step
                if segments and begin - segments[-1].end < self.settings.min_silence_ms / 1000:
                    begin = segments.pop().start
                segments.append(Segment("[speech]", begin, end))
                start = None
        return Transcript(" ".join(s.text for s in segments), segments=tuple(segments))
