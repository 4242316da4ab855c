"""Run scim2-tester, a third-party SCIM 2.0 conformance checker built on the
scim2-client library, against a Wardkey server's /scim/v2 (Users).

Usage: scim_conformance.py BASE_URL BEARER_TOKEN
Prints one JSON object per line: {"status": ..., "title": ..., "reason": ...}.
tests/it/scim.rs runs it and judges the results.
"""

import json
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server

base, token = sys.argv[1], sys.argv[2]
http = httpx2.Client(base_url=f"{base}/scim/v2", headers={"Authorization": f"Bearer {token}"})
for result in check_server(SyncSCIMClient(http), resource_types=["User", "Group"]):
    print(json.dumps({"status": result.status.name, "title": result.title, "reason": (result.reason or "")[:400]}))
