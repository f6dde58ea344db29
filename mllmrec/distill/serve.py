"""`mllmrec serve RUN_DIR`: a distill run behind HTTP (Starlette app, uvicorn server).

    GET  /health                        {"status": "ok", "index": …, "items": n, "users": n}
    GET  /recommend?user=U&k=20         {"user": U, "items": [{"item_id", "score", "via"}, …]}
         (&exclude_seen=false to keep seen items)
    POST /recommend  {"users": [U, …], "k": 20, "exclude_seen": true}
                                        {"results": [{"user": U, "items": […]}, …]}

`via` says how each item came: "table", "new-item mapping" or "popularity" (the unknown-user
fallback). The unknown-user policy is the CLI's (--unknown-users): popularity, or a 404 naming the
user. The Recommender (and its index) is loaded once, before the server accepts connections; the
handlers are plain functions that Starlette runs in its thread pool, and searching is read-only
(per-call faiss parameters), so concurrent requests are safe. Every bad request gets a 4xx with
{"error": message}: missing user, k not in 1..--max-k, more than --max-batch users, malformed JSON.
Starlette and uvicorn are imported only by this module.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request

    from mllmrec.distill.config import ServeConfig
    from mllmrec.distill.recommend import Recommender

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A client error: answered with `status` and {"error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _k(raw: Any, max_k: int) -> int:
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"k must be an integer, got {raw!r}") from None
    if not 1 <= k <= max_k:
        raise BadRequest(f"k must be between 1 and {max_k}, got {k}")
    return k


def _flag(raw: Any, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
        return raw.lower() in ("true", "1", "yes")
    raise BadRequest(f"{name} must be true or false, got {raw!r}")


def create_app(
    rec: Recommender,
    *,
    max_k: int = 1000,
    max_batch: int = 1000,
    unknown_users: str = "popularity",
    default_k: int = 20,
) -> Starlette:
    """The ASGI app serving `rec` (module docstring)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from mllmrec.distill.errors import UnknownUserError

    rec.run.user_index_of("")  # build the id lookup now, not concurrently in the first requests

    def answer(users: list[str], k: int, exclude_seen: bool) -> list[dict[str, Any]]:
        try:
            results = rec.recommend(users, k, exclude_seen=exclude_seen, unknown_users=unknown_users)
        except UnknownUserError as e:
            raise BadRequest(str(e), 404) from None
        return [
            {"user": u, "items": [{"item_id": r.item_id, "score": r.score, "via": r.via} for r in recs]}
            for u, recs in zip(users, results, strict=True)
        ]

    def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "run": str(rec.run.path),
                "index": rec.index_info.get("kind"),
                "recall": (rec.index_info.get("recall") or {}).get("recall"),
                "items": len(rec.item_ids),
                "users": len(rec.run.user_ids),
            }
        )

    def get_recommend(request: Request) -> JSONResponse:
        q = request.query_params
        user = q.get("user")
        if not user:
            raise BadRequest("missing query parameter: user (e.g. /recommend?user=u007&k=20)")
        out = answer(
            [user], _k(q.get("k", default_k), max_k), _flag(q.get("exclude_seen", "true"), "exclude_seen")
        )
        return JSONResponse(out[0])

    async def post_recommend(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the body is not valid JSON ({e})") from None
        if not isinstance(body, dict) or not isinstance(body.get("users"), list):
            raise BadRequest(
                'the body must be a JSON object with a list "users", e.g. {"users": ["u1"], "k": 20}'
            )
        users = body["users"]
        if not users or len(users) > max_batch:
            raise BadRequest(f"users must hold 1 to {max_batch} ids, got {len(users)}", 413 if users else 400)
        if not all(isinstance(u, (str, int)) and not isinstance(u, bool) and str(u) for u in users):
            raise BadRequest("every user id must be a non-empty string or an integer")
        k, seen = _k(body.get("k", default_k), max_k), _flag(body.get("exclude_seen", True), "exclude_seen")
        from starlette.concurrency import run_in_threadpool

        results = await run_in_threadpool(answer, [str(u) for u in users], k, seen)
        return JSONResponse({"results": results})

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BadRequest)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    routes = [
        Route("/health", health),
        Route("/recommend", get_recommend, methods=["GET"]),
        Route("/recommend", post_recommend, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={BadRequest: bad_request})


def run_serve(cfg: ServeConfig, command: list[str] | None = None) -> int:
    """`mllmrec serve`: load the run and its index once, then serve until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise ImportError("mllmrec serve needs starlette and uvicorn: pip install 'mllmrec[serve]'") from e

    from mllmrec.distill.recommend import load_for

    rec = load_for(cfg)
    app = create_app(rec, max_k=cfg.max_k, max_batch=cfg.max_batch, unknown_users=cfg.unknown_users)
    print(
        f"serving {cfg.run} ({len(rec.item_ids)} items, {rec.index_info.get('kind')} index) on "
        f"http://{cfg.host}:{cfg.port}",
        flush=True,
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, access_log=False)
    return 0
