"""A pytest plugin that sends Kernite's own endpoint tests to the sidecar.

Kernite's tests/test_cli_endpoints.py posts each request through its module's
`_post_json(path, payload)` to an in-process `kernite serve`. This plugin
replaces that function, once the module is collected, with one that posts the
same bytes (json.dumps, Content-Type: application/json) to $SIDECAR_URL, so
the unchanged tests check the sidecar's answers instead.
"""

import json
import os
from http.client import HTTPConnection
from urllib.parse import urlsplit


def _post_json(path, payload):
    url = urlsplit(os.environ["SIDECAR_URL"])
    connection = HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        body = json.dumps(payload).encode("utf-8")
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read().decode("utf-8"))
    finally:
        connection.close()


def pytest_collection_modifyitems(items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "_post_json"):
            module._post_json = _post_json
