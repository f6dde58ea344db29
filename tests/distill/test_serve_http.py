"""`mllmrec serve`: the real server (uvicorn, started by the CLI in a subprocess on a free port) and
a real HTTP client. Answers match the Recommender; bad requests get a 4xx with a message; concurrent
requests all succeed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx  # the dev extra installs httpx, starlette and uvicorn: a missing one is a failure, not a skip
import pytest

from mllmrec.testing.processes import free_port


@pytest.fixture(scope="module")
def server(setup):
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mllmrec.cli",
            "serve",
            str(setup["run"]),
            "--port",
            str(port),
            "--max-k",
            "50",
            "--max-batch",
            "8",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {proc.stdout.read()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not come up in 60 s")
        yield url
    finally:
        proc.terminate()  # the process this fixture started, by its handle
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def rec(setup):
    from mllmrec.distill.recommend import Recommender

    return Recommender.load(setup["run"])


def test_health_and_recommendations_match_the_recommender(server, rec):
    h = httpx.get(server + "/health").json()
    assert h["status"] == "ok" and h["index"] == "exact" and h["items"] == len(rec.item_ids)
    user = rec.run.user_ids[3]
    got = httpx.get(server + "/recommend", params={"user": user, "k": 7}).json()
    want = rec.recommend([user], 7)[0]
    assert got["user"] == user and [i["item_id"] for i in got["items"]] == [r.item_id for r in want]
    assert [i["via"] for i in got["items"]] == [r.via for r in want]
    assert got["items"][0]["score"] == pytest.approx(want[0].score, rel=1e-5)
    seen = httpx.get(server + "/recommend", params={"user": user, "k": 7, "exclude_seen": "false"}).json()
    assert [i["item_id"] for i in seen["items"]] == [
        r.item_id for r in rec.recommend([user], 7, exclude_seen=False)[0]
    ]
    batch = httpx.post(server + "/recommend", json={"users": [user, "ghost"], "k": 3}).json()["results"]
    assert [b["user"] for b in batch] == [user, "ghost"] and {i["via"] for i in batch[1]["items"]} == {
        "popularity"
    }


@pytest.mark.parametrize(
    "method, path, kw, status, words",
    [
        ("GET", "/recommend", {}, 400, "missing query parameter: user"),
        ("GET", "/recommend", {"params": {"user": "u000", "k": 0}}, 400, "between 1 and 50"),
        ("GET", "/recommend", {"params": {"user": "u000", "k": 10**9}}, 400, "between 1 and 50"),
        ("GET", "/recommend", {"params": {"user": "u000", "k": "ten"}}, 400, "must be an integer"),
        ("GET", "/recommend", {"params": {"user": "u000", "exclude_seen": "maybe"}}, 400, "true or false"),
        ("POST", "/recommend", {"content": b"{not json"}, 400, "not valid JSON"),
        ("POST", "/recommend", {"content": b"\xff\xfe"}, 400, "not valid JSON"),
        ("POST", "/recommend", {"json": ["u000"]}, 400, "JSON object"),
        ("POST", "/recommend", {"json": {"users": []}}, 400, "1 to 8"),
        ("POST", "/recommend", {"json": {"users": ["u"] * 9}}, 413, "1 to 8"),
        ("POST", "/recommend", {"json": {"users": [None]}}, 400, "non-empty string"),
        ("POST", "/recommend", {"json": {"users": ["u000"], "k": -1}}, 400, "between 1 and 50"),
    ],
)
def test_bad_requests_get_4xx_with_a_message(server, method, path, kw, status, words):
    r = httpx.request(method, server + path, **kw)
    assert r.status_code == status and words in r.json()["error"]


def test_unknown_route_and_method_are_4xx(server):
    assert httpx.get(server + "/nope").status_code == 404
    assert httpx.delete(server + "/recommend").status_code == 405


def test_concurrent_requests_all_succeed_and_agree(server, rec):
    users = rec.run.user_ids[:40]
    want = {u: [r.item_id for r in recs] for u, recs in zip(users, rec.recommend(users, 10), strict=True)}

    def ask(u: str) -> tuple[str, int, list[str]]:
        r = httpx.get(server + "/recommend", params={"user": u, "k": 10}, timeout=30)
        return u, r.status_code, [i["item_id"] for i in r.json()["items"]]

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(ask, users * 3))
    assert all(status == 200 and items == want[u] for u, status, items in got)


def test_unknown_user_policy_error_is_a_404(setup):
    from starlette.testclient import TestClient

    from mllmrec.distill.recommend import Recommender
    from mllmrec.distill.serve import create_app

    client = TestClient(create_app(Recommender.load(setup["run"]), unknown_users="error"))
    r = client.get("/recommend", params={"user": "ghost"})
    assert r.status_code == 404 and "ghost" in r.json()["error"]
