"""What the boto3 checks share: the client as boto3's defaults make it (path style, no
retries so every server error shows), the check registry and assertions."""

import hashlib
import http.client
import os
import urllib.parse

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["WHARF_S3_ENDPOINT"]
ACCESS_KEY = os.environ["WHARF_S3_ACCESS_KEY"]
SECRET_KEY = os.environ["WHARF_S3_SECRET_KEY"]
MIB = 1024 * 1024

CHECKS = {}
SPECIAL = {"oversize"}


def check(function):
    CHECKS[function.__name__] = function
    return function


def client(access_key=ACCESS_KEY, secret_key=SECRET_KEY, unsigned=False, **config):
    options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}}
    options.update(config)
    if unsigned:
        options["signature_version"] = UNSIGNED
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(**options),
    )


S3 = client()


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def error_of(call, *args, **kwargs):
    """(code, HTTP status) of the ClientError the call raises; fails if it succeeds."""
    try:
        call(*args, **kwargs)
    except ClientError as error:
        return (
            error.response.get("Error", {}).get("Code"),
            error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        )
    raise AssertionError(f"{call.__name__} succeeded but should have failed")


def expect_error(expected_code, expected_status, call, *args, **kwargs):
    code, status = error_of(call, *args, **kwargs)
    expect(
        (code, status) == (expected_code, expected_status),
        f"expected {expected_code} {expected_status}, got {code} {status}",
    )


# Bucket names get a suffix of this run, so the suite can run twice against one server.
RUN = os.urandom(3).hex()


def new_bucket(name):
    name = f"{name}-{RUN}"
    S3.create_bucket(Bucket=name)
    return name


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts):
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"


def body_of(bucket, key, **kwargs):
    return S3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def all_keys(bucket, **kwargs):
    pages = S3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def fetch(method, url, data=None, headers=None, chunked=False):
    """(status, body) of a plain HTTP request: no headers but the ones given (urllib would
    add a Content-Type, which SigV2 presigned URLs sign)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, body=data, headers=headers or {}, encode_chunked=chunked)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()
