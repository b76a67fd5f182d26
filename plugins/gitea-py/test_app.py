"""Native tests of the `repos` sync, outside the sandbox: generates the
bindings of the world `full` with componentize-py into a temporary folder,
replaces the host's `http.send` with scripted answers and checks the
requests and pages. Run: `python3 test_app.py` (needs componentize-py)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = tempfile.mkdtemp(prefix="gitea-py-bindings-")
subprocess.run(["componentize-py", "-d", os.path.join(HERE, "..", "..", "wit"), "-w", "full", "bindings", BINDINGS],
               check=True, stdout=subprocess.DEVNULL)
sys.path[:0] = [BINDINGS, HERE]

from componentize_py_types import Err  # noqa: E402
from wit_world.imports import http, types  # noqa: E402

SEEN = []
ANSWERS = []


def _send(request):
    SEEN.append(request)
    return ANSWERS.pop(0)


http.send = _send
import app  # noqa: E402

CONNECTION = types.Connection(base_url="https://gitea.example", account_id="1", settings=[], scope=None)


def repo(i):
    return {"id": i, "full_name": "o/r%d" % i, "html_url": "https://gitea.example/o/r%d" % i,
            "private": i % 2 == 0, "updated_at": "2026-01-01T00:00:00Z", "owner": {"id": 1}}


def answer(rows, headers=(), status=200):
    ANSWERS.append(http.Response(status=status, headers=list(headers), body=json.dumps(rows).encode()))


def run(checkpoint):
    SEEN.clear()
    return app.Syncs().run("repos", checkpoint, "2026-11-26T10:00:00Z", CONNECTION)


class ReposSync(unittest.TestCase):
    def test_manifest_declares_the_full_model(self):
        models = app.Connector().manifest().sync_models
        self.assertEqual([(m.name, m.incremental, m.default_interval_seconds) for m in models],
                         [("repos", False, 3600)])
        schema = json.loads(models[0].record_schema)
        self.assertEqual(schema["required"], ["id", "full_name", "html_url", "private", "updated_at"])

    def test_pages_follow_the_link_header_and_end_without_a_checkpoint(self):
        answer([repo(1), repo(2)], [("link", '<https://gitea.example/api/v1/user/repos?limit=50&page=2>; rel="next",'
                                             '<https://gitea.example/api/v1/user/repos?limit=50&page=2>; rel="last"')])
        page = run(None)
        self.assertEqual(SEEN[0].url, "https://gitea.example/api/v1/user/repos?page=1&limit=50")
        self.assertTrue(SEEN[0].authenticate)
        self.assertEqual((json.loads(page.checkpoint), page.has_more), ({"page": 2}, True))
        self.assertEqual([r.id for r in page.records], ["1", "2"])
        self.assertEqual(json.loads(page.records[1].data), {"id": 2, "full_name": "o/r2", "private": True,
                                                            "html_url": "https://gitea.example/o/r2",
                                                            "updated_at": "2026-01-01T00:00:00Z"})
        answer([repo(3)], [("link", '<https://gitea.example/api/v1/user/repos?limit=50&page=1>; rel="first"')])
        page = run(page.checkpoint)
        self.assertEqual(SEEN[0].url, "https://gitea.example/api/v1/user/repos?page=2&limit=50")
        self.assertEqual((page.checkpoint, page.has_more), (None, False))

    def test_without_a_link_header_a_full_page_goes_on(self):
        answer([repo(i) for i in range(app.REPOS_PER_PAGE)])
        page = run('{"page": 3}')
        self.assertEqual((json.loads(page.checkpoint), page.has_more), ({"page": 4}, True))
        answer([repo(1)])
        self.assertFalse(run('{"page": 4}').has_more)

    def test_refusals_and_unusable_checkpoints(self):
        answer([], [("retry-after", "7")], status=429)
        with self.assertRaises(Err) as e:
            run(None)
        self.assertEqual(e.exception.value, types.ProviderError_RateLimited(7))
        for checkpoint in ["x", '{"page": 0}', '{"cursor": 1}']:
            with self.assertRaises(Err) as e:
                run(checkpoint)
            self.assertIsInstance(e.exception.value, types.ProviderError_InvalidInput)
            self.assertEqual(SEEN, [])
        with self.assertRaises(Err) as e:
            app.Syncs().run("issues", None, "2026-11-26T10:00:00Z", CONNECTION)
        self.assertIsInstance(e.exception.value, types.ProviderError_Unsupported)


if __name__ == "__main__":
    unittest.main()
