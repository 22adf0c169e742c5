"""``stt-core serve``: the app (``app``, which needs FastAPI and is imported from there), its HTTP
guards (``http``) and the ``[serve]`` table (``settings``, read by config without FastAPI)."""

from .settings import SECTION, ServeSettings

__all__ = ["SECTION", "ServeSettings"]
