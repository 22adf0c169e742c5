"""``stt-core serve``: the configured chain behind an OpenAI-compatible HTTP API (needs the
``serve`` extra: FastAPI, uvicorn). The app is built in ``_serve``; what is public is here.

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format,
                                    timestamp_granularities[], stream   (what the openai SDK sends)
    WS   /v1/realtime               OpenAI's Realtime API, transcription intent (GA and beta)
    GET  /                          a page to try it in a browser
    GET  /v1/models                 the chain, as the one model it serves
    GET  /health                    liveness: the process answers
    GET  /ready                     the chain has an engine that can take a request now
    GET  /metrics                   stt-core's metrics in Prometheus text (behind api_key when set)
"""

from ._serve.app import MODEL_ID, create_app, serve
from ._serve.http import warn_if_open
from ._serve.settings import SECTION, ServeSettings

__all__ = ["MODEL_ID", "SECTION", "ServeSettings", "create_app", "serve", "warn_if_open"]
