"""``GET /``: one small page to try the server in a browser (``page.html``, package data: no CDN,
no build step). A microphone button streams to ``/v1/realtime`` and shows interims and finals
live, with the engine that answered and the time from the end of speech to the final; a file
picker sends ``POST /v1/audio/transcriptions`` with ``stream=true``; the key is asked for when
the server has one (kept in the tab's sessionStorage, sent as the subprotocol and the header);
``/?autostart=1`` starts listening at once (a kiosk, a test: the browser must allow the
microphone and audio without a click). ``[serve] page = false`` turns it off.
"""

from __future__ import annotations

import functools
import json
import secrets
from importlib import resources

from fastapi.responses import HTMLResponse

from .._chain.chain import Chain


@functools.cache
def _template() -> str:
    return (resources.files(__package__) / "page.html").read_text(encoding="utf-8")


def page(chain: Chain, *, needs_key: bool) -> HTMLResponse:
    """The page, with what it needs to know of the server (never the key itself)."""
    nonce = secrets.token_urlsafe(16)
    engines = [provider.name for provider in chain.providers]
    config = json.dumps({"chain": chain.model, "engines": engines, "key": needs_key})
    body = _template().replace("{{CONFIG}}", config.replace("<", "\\u003c")).replace("{{NONCE}}", nonce)
    return HTMLResponse(body, headers={
        # Only this page's own script (and the microphone tap it loads as a blob) runs; it talks
        # only to this server.
        "Content-Security-Policy": f"default-src 'self'; script-src 'nonce-{nonce}' blob:; "
                                   "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                                   "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    })
