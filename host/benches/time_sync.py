"""Connects a GitLab PAT to a running Gatehouse and times its first sync of
the `projects` model: from the connect call until every expected record is
committed and the sync is idle. Prints "<records per second> <seconds>".

usage: time_sync.py PORT API_KEY TOKEN UPSTREAM_PORT EXPECTED [--replace] [--timeout SECONDS]
  --replace   disconnect every existing connection first (a fresh sync each round)
"""
import argparse
import json
import sys
import time
import urllib.request

args = argparse.ArgumentParser()
for name in ("port", "key", "token", "upstream"):
    args.add_argument(name)
args.add_argument("expected", type=int)
args.add_argument("--replace", action="store_true")
args.add_argument("--timeout", type=float, default=600)
a = args.parse_args()


def call(method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{a.port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {a.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        text = r.read()
        return json.loads(text) if text else None


if a.replace:
    for old in call("GET", "/api/v1/integrations")["integrations"]:
        call("DELETE", f"/api/v1/integrations/{old['id']}")
start = time.monotonic()
credentials = {"token": a.token, "base_url": f"http://127.0.0.1:{a.upstream}"}
c = call("POST", "/api/v1/integrations", {"provider": "gitlab-pat", "credentials": credentials})
while True:
    s = {x["model"]: x for x in call("GET", f"/api/v1/integrations/{c['id']}/syncs")["syncs"]}["projects"]
    if s["state"] == "idle" and s["records"] == a.expected:
        break
    if s["state"] == "failed" or time.monotonic() - start > a.timeout:
        sys.exit(f"the sync did not complete: {s}")
    time.sleep(0.02)
elapsed = time.monotonic() - start
print(f"{a.expected / elapsed:.0f} {elapsed:.2f}")
