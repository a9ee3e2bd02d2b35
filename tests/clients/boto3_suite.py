#!/usr/bin/env python3
"""boto3 (with its default settings) against Wharf's S3 listener.

Environment: WHARF_S3_ENDPOINT (http://127.0.0.1:PORT), WHARF_S3_ACCESS_KEY,
WHARF_S3_SECRET_KEY, and WHARF_DATABASE (the server's wharf.db, for
empty_put_then_slow_put). Arguments: names of checks to run (default: every check that does
not need a special server; `oversize` needs a server with max_object_size = "1MiB").
The checks live in boto3_objects.py and boto3_transport.py.

Prints one JSON object on stdout: {"boto3": VERSION, "checks": [{"name", "ok", "detail"}]}.
Exit status 0 even when checks fail: the Rust test reads the report and says which failed.
"""

import json
import sys
import time
import traceback

import boto3
import botocore

import boto3_objects  # noqa: F401 - registers its checks
import boto3_transport  # noqa: F401 - registers its checks
from boto3_common import CHECKS, SPECIAL


def main():
    names = sys.argv[1:] or [name for name in CHECKS if name not in SPECIAL]
    results = []
    for name in names:
        started = time.monotonic()
        try:
            CHECKS[name]()
            results.append({"name": name, "ok": True, "detail": ""})
        except Exception as error:  # noqa: BLE001 - every failure goes into the report
            detail = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}"
            results.append({"name": name, "ok": False, "detail": detail})
        results[-1]["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps({"boto3": boto3.__version__, "botocore": botocore.__version__, "checks": results}))


if __name__ == "__main__":
    main()
