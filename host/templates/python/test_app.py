"""Native tests, outside the sandbox: `python3 test_app.py`. Generates the
bindings of the world `provider` with componentize-py into a temporary
folder, then replaces the host's imports: `http.send` answers from a
scripted upstream and records the requests, `log.write` records lines."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = tempfile.mkdtemp(prefix="connector-bindings-")
subprocess.run(["componentize-py", "-d", os.path.join(HERE, "wit"), "-w", "provider", "bindings", BINDINGS],
               check=True, stdout=subprocess.DEVNULL)
sys.path[:0] = [BINDINGS, HERE]

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import http, log, types  # noqa: E402


class Upstream:
    """The scripted provider: answers by method and path, records requests."""

    def __init__(self):
        self.routes, self.requests, self.logs = {}, [], []

    def on(self, method, path, status, body=None, headers=()):
        self.routes.setdefault((method, path), []).append(
            http.Response(status=status, headers=list(headers), body=json.dumps(body).encode() if body is not None else b""))

    def send(self, request):
        self.requests.append(request)
        path = "/" + request.url.split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
        replies = self.routes.get((request.method, path))
        if not replies:
            return http.Response(status=404, headers=[], body=b"no reply scripted")
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def write(self, level, message, fields):
        self.logs.append((level, message, dict(fields)))


UPSTREAM = Upstream()
http.send = lambda request: UPSTREAM.send(request)
log.write = lambda level, message, fields: UPSTREAM.write(level, message, fields)
import app  # noqa: E402

CREDENTIALS = [("token", "test-token"), ("base_url", "https://api.example.com")]


class Verify(unittest.TestCase):
    def setUp(self):
        UPSTREAM.__init__()

    def test_a_valid_token_names_its_user(self):
        UPSTREAM.on("GET", app.ME_PATH, 200, {"id": 7, "username": "jane", "name": "Jane Doe"})
        verified = app.Connector().verify(CREDENTIALS)
        self.assertEqual((verified.account.id, verified.account.username), ("7", "jane"))
        self.assertTrue(UPSTREAM.requests[0].authenticate, "the host presents the token")
        self.assertEqual(UPSTREAM.logs, [(log.Level.DEBUG, "token accepted", {"user": "jane"})])

    def test_refusals_map_to_the_standard_errors(self):
        UPSTREAM.on("GET", app.ME_PATH, 401)
        UPSTREAM.on("GET", app.ME_PATH, 429, headers=[("retry-after", "30")])
        UPSTREAM.on("GET", app.ME_PATH, 503)
        for expected in (types.VerifyError_InvalidToken, types.VerifyError_RateLimited, types.VerifyError_UpstreamError):
            with self.assertRaises(Err) as caught:
                app.Connector().verify(CREDENTIALS)
            self.assertIsInstance(caught.exception.value, expected)

    def test_the_manifest_names_the_connector(self):
        self.assertEqual(app.Connector().manifest().id, "{{id}}")


if __name__ == "__main__":
    unittest.main()
