"""What a request's ``model`` names, for ``POST /v1/audio/transcriptions`` and ``/v1/realtime``
alike: the served chain, one of its engines, or some of them in an order of the client's.

- an engine of the chain (``whisper``): that engine alone;
- engines of the chain joined by commas (``funasr,whisper``): a chain of those, in that order;
- anything else (``stt-core``, or the names OpenAI's clients send: ``whisper-1``,
  ``gpt-4o-transcribe``...): the served chain.

A chain made here shares the served chain's links (its engines, their breakers and what the chain
has learnt of them), so an engine that fails counts once, whichever model a client named; it is
made once per name and needs no closing of its own (the served chain closes the engines).
"""

from __future__ import annotations

from .._chain.chain import Chain

MAX_NAMES = 64  # a client sending a new engine order per request cannot grow the table without end


class UnknownEngine(ValueError):
    """A comma list that names something that is not an engine of the chain."""


class Models:
    """The served chain and the chains its ``model`` names make of it."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._made: dict[tuple[str, ...], Chain] = {}

    def resolve(self, model: str | None) -> Chain:
        """The chain ``model`` names (module doc); ``UnknownEngine`` for a list with a stranger."""
        links = {link.name: link for link in self.chain.links}
        names = tuple(name.strip() for name in (model or "").split(",") if name.strip())
        if not names or (len(names) == 1 and names[0] not in links):
            return self.chain
        if unknown := [name for name in names if name not in links]:
            raise UnknownEngine(f"model {model!r} names {', '.join(map(repr, unknown))}, not an engine of "
                                f"the chain ({', '.join(links)})")
        names = tuple(dict.fromkeys(names))  # an engine named twice is asked once
        if names == tuple(links):
            return self.chain
        if (made := self._made.get(names)) is not None:
            return made
        made = self.chain.of(names)
        if len(self._made) < MAX_NAMES:
            self._made[names] = made
        return made
