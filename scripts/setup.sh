#!/usr/bin/env bash
# Creates .venv in the repository and installs every distribution of the repo in editable mode.
# torch goes first, pinned: an unpinned torch (pulled in by a later package) would be a
# multi-GB CUDA build; 2.13.0 is a CPU build here.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "set-up: $*" >&2; }  # a line per step: the whole set-up takes a couple of minutes
step "creating .venv"
python3 -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
step "installing torch 2.13.0 (CPU build)"
"${pip[@]}" install torch==2.13.0
# The repo's own dists build with hatchling; installing it once and building without isolation
# saves a fresh build environment per distribution.
"${pip[@]}" install hatchling editables
step "installing stt-core, its engines and the LiveKit, Pipecat and Ray adapters (editable)"
"${pip[@]}" install --no-build-isolation \
  -e ".[dev,serve]" \
  -e "providers/whisper[bundled]" \
  -e "providers/funasr[torch]" \
  -e providers/groq \
  -e providers/openai \
  -e providers/deepgram \
  -e "adapters/livekit[silero]" \
  -e adapters/pipecat \
  -e adapters/ray \
  silero-vad  # funasr's vad = "silero-vad"; no extra names it, as it depends on torch
echo "set up: .venv ($(.venv/bin/stt-core providers >/dev/null && echo ok))"
