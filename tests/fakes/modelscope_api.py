"""A fake ModelScope hub on 127.0.0.1, for the ``modelscope`` client's ``snapshot_download``
(pointed at it with ``MODELSCOPE_ENDPOINT``), speaking the requests it makes:

    GET /api/v1/models/{owner}/{name}/repo/files?Revision=master&Recursive=True
        -> {"Code": 200, "Success": true, "Data": {"Files": [{"Path", "Name", "Size", "Sha256", "Type"}]}}
    GET /api/v1/models/{owner}/{name}/repo?Revision=master&FilePath=...   -> the file's bytes

Anything else (``/api/v1/repos/internalAccelerationInfo``, a repository it does not hold) is a 404
with ModelScope's error body, which the client takes in its stride or raises. ``requests`` records
each path asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class FakeModelScope:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # "owner/name" -> file -> bytes
    requests: list[str] = field(default_factory=list)

    def hold(self, repo: str, directory: Path, names: list[str]) -> None:
        """Serve ``names`` of ``directory`` as the files of ``repo``."""
        self.repos[repo] = {name: (directory / name).read_bytes() for name in names}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/models/{owner}/{name}/repo/files", self.files)
        app.router.add_get("/api/v1/models/{owner}/{name}/repo", self.file)
        app.router.add_route("*", "/{rest:.*}", self.missing)
        return app

    def _repo(self, request: web.Request) -> dict[str, bytes] | None:
        self.requests.append(request.path_qs)
        return self.repos.get(f"{request.match_info['owner']}/{request.match_info['name']}")

    async def files(self, request: web.Request) -> web.StreamResponse:
        files = self._repo(request)
        if files is None:
            return _not_found()
        listed = [{"Path": name, "Name": name, "Size": len(data), "Sha256": hashlib.sha256(data).hexdigest(),
                   "Type": "blob"} for name, data in files.items()]
        return web.json_response({"Code": 200, "Success": True, "Data": {"Files": listed}})

    async def file(self, request: web.Request) -> web.StreamResponse:
        files = self._repo(request)
        data = None if files is None else files.get(request.query.get("FilePath", ""))
        if data is None:
            return _not_found()
        return web.Response(body=data, content_type="application/octet-stream")

    async def missing(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        return _not_found()


def _not_found() -> web.Response:
    return web.json_response({"Code": 404, "Success": False, "Message": "not found"}, status=404)
