"""boto3 checks of buckets, objects, ranges, conditions, copies, listings and multipart."""

import base64
import concurrent.futures
import hashlib
import os
import tempfile

import botocore.httpchecksum
from boto3.s3.transfer import TransferConfig

from boto3_common import (
    MIB, S3, all_keys, body_of, check, client, error_of, expect, expect_error, md5_hex,
    multipart_etag, new_bucket,
)


@check
def buckets():
    name = new_bucket("b3-lifecycle")
    listed = [b["Name"] for b in S3.list_buckets()["Buckets"]]
    expect(name in listed, f"ListBuckets does not list {name}: {listed}")
    S3.head_bucket(Bucket=name)
    expect_error("BucketAlreadyOwnedByYou", 409, S3.create_bucket, Bucket=name)
    expect_error("404", 404, S3.head_bucket, Bucket="b3-missing")
    expect_error("NoSuchBucket", 404, S3.delete_bucket, Bucket="b3-missing")
    S3.put_object(Bucket=name, Key="x", Body=b"x")
    expect_error("BucketNotEmpty", 409, S3.delete_bucket, Bucket=name)
    S3.delete_object(Bucket=name, Key="x")
    S3.delete_bucket(Bucket=name)
    expect_error("404", 404, S3.head_bucket, Bucket=name)


@check
def invalid_bucket_names():
    # Names botocore's own check lets through, which S3's rules reject.
    for name in ["ab", "Upper-Case", "bad_name", "-lead", "trail-", "a..b", "192.168.1.1", "x" * 64]:
        code, status = error_of(S3.create_bucket, Bucket=name)
        expect((code, status) == ("InvalidBucketName", 400), f"{name!r}: got {code} {status}")


@check
def put_get_metadata():
    bucket = new_bucket("b3-objects")
    data = os.urandom(100_000)
    put = S3.put_object(
        Bucket=bucket,
        Key="dir/data.bin",
        Body=data,
        ContentType="application/x-test",
        Metadata={"Owner": "ada", "run-id": "42"},
    )
    expect(put["ETag"] == f'"{md5_hex(data)}"', f"PUT ETag {put['ETag']} is not the MD5")
    head = S3.head_object(Bucket=bucket, Key="dir/data.bin")
    expect(head["ContentLength"] == len(data), f"HEAD length {head['ContentLength']}")
    expect(head["ContentType"] == "application/x-test", f"HEAD type {head['ContentType']}")
    expect(head["Metadata"] == {"owner": "ada", "run-id": "42"}, f"HEAD metadata {head['Metadata']}")
    expect(head["ETag"] == put["ETag"], "HEAD ETag differs from PUT's")
    got = S3.get_object(Bucket=bucket, Key="dir/data.bin")
    expect(got["Body"].read() == data, "GET body differs")
    expect(got["Metadata"] == {"owner": "ada", "run-id": "42"}, f"GET metadata {got['Metadata']}")
    expect(got["ContentType"] == "application/x-test", "GET content type")
    S3.put_object(Bucket=bucket, Key="empty", Body=b"")
    expect(body_of(bucket, "empty") == b"", "empty object is not empty")
    expect_error("NoSuchKey", 404, S3.get_object, Bucket=bucket, Key="missing")
    expect_error("404", 404, S3.head_object, Bucket=bucket, Key="missing")
    expect_error("NoSuchBucket", 404, S3.get_object, Bucket="b3-missing", Key="x")
    expect_error("NoSuchBucket", 404, S3.put_object, Bucket="b3-missing", Key="x", Body=b"x")


@check
def default_checksum_header():
    """boto3 sends x-amz-checksum-crc32 with every PUT by default; it must be accepted."""
    sent = {}

    def record(request, **_):
        sent.update({k.lower(): v for k, v in request.headers.items()})

    s3 = client()
    s3.meta.events.register("before-send.s3.PutObject", record)
    bucket = new_bucket("b3-checksum")
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello checksum")
    expect("x-amz-checksum-crc32" in sent, f"boto3 sent no CRC32 header: {sorted(sent)}")
    expect(body_of(bucket, "k") == b"hello checksum", "body differs")


@check
def aws_chunked_trailer():
    """What boto3 does over TLS: aws-chunked body, CRC32 trailer, STREAMING-UNSIGNED-PAYLOAD-TRAILER.
    boto3 only does it for https URLs, so this pretends the URL is https to its checksum code."""
    original = botocore.httpchecksum.urlparse
    sent = {}

    def record(request, **_):
        sent.update({k.lower(): v for k, v in request.headers.items()})

    botocore.httpchecksum.urlparse = lambda url: original(url.replace("http://", "https://", 1))
    try:
        s3 = client()
        s3.meta.events.register("before-send.s3.*", record)
        bucket = new_bucket("b3-trailer")
        data = os.urandom(300_000)
        s3.put_object(Bucket=bucket, Key="k", Body=data)
        sha = sent.get("x-amz-content-sha256", b"")
        expect(
            (sha.decode() if isinstance(sha, bytes) else sha) == "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            f"the request was not aws-chunked: {sent}",
        )
        expect(body_of(bucket, "k") == data, "aws-chunked PUT stored different bytes")
        upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        parts = [os.urandom(5 * MIB), os.urandom(1000)]
        etags = []
        for number, part in enumerate(parts, 1):
            answer = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=number, Body=part)
            etags.append({"PartNumber": number, "ETag": answer["ETag"]})
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": etags})
        expect(body_of(bucket, "mp") == b"".join(parts), "aws-chunked multipart stored different bytes")
        # A trailer whose CRC32 does not match the bytes.
        real = botocore.httpchecksum._CHECKSUM_CLS["crc32"]

        class WrongCrc32(real):
            def b64digest(self):
                return "AAAAAA=="

        botocore.httpchecksum._CHECKSUM_CLS["crc32"] = WrongCrc32
        try:
            expect_error("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad-trailer", Body=data)
        finally:
            botocore.httpchecksum._CHECKSUM_CLS["crc32"] = real
        expect_error("NoSuchKey", 404, S3.get_object, Bucket=bucket, Key="bad-trailer")
    finally:
        botocore.httpchecksum.urlparse = original


@check
def bad_digest():
    bucket = new_bucket("b3-digest")
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    expect_error("BadDigest", 400, S3.put_object, Bucket=bucket, Key="k", Body=b"data", ContentMD5=wrong)
    expect_error("BadDigest", 400, S3.put_object, Bucket=bucket, Key="k", Body=b"data", ChecksumCRC32="AAAAAA==")
    sha256_of_nothing = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    expect_error("BadDigest", 400, S3.put_object, Bucket=bucket, Key="k", Body=b"data", ChecksumSHA256=sha256_of_nothing)
    expect_error("NoSuchKey", 404, S3.get_object, Bucket=bucket, Key="k")
    S3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumAlgorithm="SHA256")
    right = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    S3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=right)


@check
def ranges():
    bucket = new_bucket("b3-ranges")
    data = bytes(range(100))
    S3.put_object(Bucket=bucket, Key="k", Body=data)
    for header, want, content_range in [
        ("bytes=0-9", data[0:10], "bytes 0-9/100"),
        ("bytes=90-", data[90:], "bytes 90-99/100"),
        ("bytes=-5", data[95:], "bytes 95-99/100"),
        ("bytes=95-1000", data[95:], "bytes 95-99/100"),
        ("bytes=0-0", data[:1], "bytes 0-0/100"),
    ]:
        answer = S3.get_object(Bucket=bucket, Key="k", Range=header)
        got = answer["Body"].read()
        expect(got == want, f"{header}: got {len(got)} bytes")
        expect(answer["ContentRange"] == content_range, f"{header}: Content-Range {answer['ContentRange']}")
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
        expect(status == 206, f"{header}: status {status}")
    expect_error("InvalidRange", 416, S3.get_object, Bucket=bucket, Key="k", Range="bytes=100-200")


@check
def conditional_get():
    bucket = new_bucket("b3-conditional")
    etag = S3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    expect_error("304", 304, S3.get_object, Bucket=bucket, Key="k", IfNoneMatch=etag)
    expect_error("PreconditionFailed", 412, S3.get_object, Bucket=bucket, Key="k", IfMatch='"0000"')
    expect(body_of(bucket, "k", IfMatch=etag) == b"v1", "If-Match with the right ETag")
    expect(body_of(bucket, "k", IfNoneMatch='"0000"') == b"v1", "If-None-Match with another ETag")
    expect_error("304", 304, S3.head_object, Bucket=bucket, Key="k", IfNoneMatch=etag)


@check
def delete_objects():
    bucket = new_bucket("b3-delete")
    for key in ["a", "b", "c/d"]:
        S3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    S3.delete_object(Bucket=bucket, Key="a")
    S3.delete_object(Bucket=bucket, Key="never-existed")
    answer = S3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "b"}, {"Key": "c/d"}, {"Key": "missing"}]},
    )
    deleted = sorted(item["Key"] for item in answer.get("Deleted", []))
    expect(deleted == ["b", "c/d", "missing"], f"Deleted: {deleted}")
    expect(not answer.get("Errors"), f"Errors: {answer.get('Errors')}")
    expect(all_keys(bucket) == [], "objects left after DeleteObjects")
    S3.delete_bucket(Bucket=bucket)


@check
def copy_object():
    bucket = new_bucket("b3-copy")
    S3.put_object(Bucket=bucket, Key="src", Body=b"source", ContentType="text/x-src", Metadata={"a": "1"})
    S3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    head = S3.head_object(Bucket=bucket, Key="copy")
    expect(head["Metadata"] == {"a": "1"} and head["ContentType"] == "text/x-src", f"COPY: {head}")
    S3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        ContentType="text/x-new",
        Metadata={"b": "2"},
    )
    head = S3.head_object(Bucket=bucket, Key="replaced")
    expect(head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/x-new", f"REPLACE: {head}")
    expect(body_of(bucket, "replaced") == b"source", "copied bytes differ")
    expect_error("InvalidRequest", 400, S3.copy_object, Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    S3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src", MetadataDirective="REPLACE", Metadata={"c": "3"})
    expect(S3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"c": "3"}, "self-copy with REPLACE")
    expect_error("NoSuchKey", 404, S3.copy_object, Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")


@check
def list_objects_v2():
    bucket = new_bucket("b3-list")
    keys = ["a.txt", "dir/1", "dir/2", "dir/sub/3", "other/4", "z"]
    for key in keys:
        S3.put_object(Bucket=bucket, Key=key, Body=b"x")
    expect(all_keys(bucket) == keys, "full listing")
    expect(all_keys(bucket, Prefix="dir/") == ["dir/1", "dir/2", "dir/sub/3"], "prefix")
    top = S3.list_objects_v2(Bucket=bucket, Delimiter="/")
    prefixes = [p["Prefix"] for p in top.get("CommonPrefixes", [])]
    expect(prefixes == ["dir/", "other/"], f"CommonPrefixes {prefixes}")
    expect([o["Key"] for o in top["Contents"]] == ["a.txt", "z"], "Contents beside CommonPrefixes")
    inner = S3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="dir/")
    expect([p["Prefix"] for p in inner.get("CommonPrefixes", [])] == ["dir/sub/"], "nested prefix")
    after = S3.list_objects_v2(Bucket=bucket, StartAfter="dir/2")
    expect([o["Key"] for o in after["Contents"]] == ["dir/sub/3", "other/4", "z"], "StartAfter")
    zero = S3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    expect(zero["KeyCount"] == 0 and "Contents" not in zero, f"MaxKeys=0: {zero.get('KeyCount')}")
    expect_error("NoSuchBucket", 404, S3.list_objects_v2, Bucket="b3-missing")
    v1 = S3.list_objects(Bucket=bucket, Prefix="dir/")
    expect([o["Key"] for o in v1["Contents"]] == ["dir/1", "dir/2", "dir/sub/3"], "ListObjects (v1)")


@check
def list_continuation_2500():
    bucket = new_bucket("b3-many")
    keys = [f"k/{i:05d}" for i in range(2500)]
    # Made by 8 threads with boto3's standard retries: this check is about listing
    # (concurrent_puts is the one about concurrent writes).
    writer = client(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=8)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: writer.put_object(Bucket=bucket, Key=key, Body=b""), keys))
    sizes, listed, token = [], [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = S3.list_objects_v2(Bucket=bucket, MaxKeys=1000, **kwargs)
        sizes.append(page["KeyCount"])
        listed += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    expect(sizes == [1000, 1000, 500], f"page sizes {sizes}")
    expect(listed == keys, "keys out of order or missing")
    prefixes = S3.list_objects_v2(Bucket=bucket, Delimiter="/")
    expect([p["Prefix"] for p in prefixes["CommonPrefixes"]] == ["k/"], "2,500 keys under one prefix")


@check
def multipart():
    bucket = new_bucket("b3-multipart")
    upload = S3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="application/x-big", Metadata={"m": "v"})
    upload_id = upload["UploadId"]
    uploads = S3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    expect([u["UploadId"] for u in uploads] == [upload_id], f"ListMultipartUploads {uploads}")
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(12345)]
    done = []
    for number, part in enumerate(parts, 1):
        etag = S3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=number, Body=part)["ETag"]
        expect(etag == f'"{md5_hex(part)}"', f"part {number} ETag {etag}")
        done.append({"PartNumber": number, "ETag": etag})
    listed = S3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)["Parts"]
    expect([(p["PartNumber"], p["Size"]) for p in listed] == [(i + 1, len(p)) for i, p in enumerate(parts)], "ListParts")
    complete = S3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload_id, MultipartUpload={"Parts": done})
    expect(complete["ETag"] == f'"{multipart_etag(parts)}"', f"multipart ETag {complete['ETag']}")
    head = S3.head_object(Bucket=bucket, Key="big")
    expect(head["ContentLength"] == sum(map(len, parts)), "multipart size")
    expect(head["ContentType"] == "application/x-big" and head["Metadata"] == {"m": "v"}, "multipart metadata")
    whole = b"".join(parts)
    expect(body_of(bucket, "big") == whole, "multipart bytes")
    span = f"bytes={5 * MIB - 10}-{5 * MIB + 9}"
    expect(body_of(bucket, "big", Range=span) == whole[5 * MIB - 10 : 5 * MIB + 10], "range across parts")
    expect(S3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], "upload still listed")
    expect_error("NoSuchUpload", 404, S3.list_parts, Bucket=bucket, Key="big", UploadId=upload_id)


@check
def multipart_errors():
    bucket = new_bucket("b3-multipart-errors")

    def started(key, sizes):
        upload_id = S3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etags = []
        for number, size in enumerate(sizes, 1):
            answer = S3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=os.urandom(size))
            etags.append({"PartNumber": number, "ETag": answer["ETag"]})
        return upload_id, etags

    upload_id, etags = started("small", [1000, 1000])
    expect_error("EntityTooSmall", 400, S3.complete_multipart_upload, Bucket=bucket, Key="small",
                 UploadId=upload_id, MultipartUpload={"Parts": etags})
    upload_id, etags = started("wrong", [1000])
    bad = [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]
    expect_error("InvalidPart", 400, S3.complete_multipart_upload, Bucket=bucket, Key="wrong",
                 UploadId=upload_id, MultipartUpload={"Parts": bad})
    missing = [{"PartNumber": 2, "ETag": etags[0]["ETag"]}]
    expect_error("InvalidPart", 400, S3.complete_multipart_upload, Bucket=bucket, Key="wrong",
                 UploadId=upload_id, MultipartUpload={"Parts": missing})
    upload_id, etags = started("order", [5 * MIB, 1000])
    expect_error("InvalidPartOrder", 400, S3.complete_multipart_upload, Bucket=bucket, Key="order",
                 UploadId=upload_id, MultipartUpload={"Parts": list(reversed(etags))})
    S3.abort_multipart_upload(Bucket=bucket, Key="order", UploadId=upload_id)
    expect_error("NoSuchUpload", 404, S3.list_parts, Bucket=bucket, Key="order", UploadId=upload_id)
    expect_error("NoSuchUpload", 404, S3.upload_part, Bucket=bucket, Key="order", UploadId=upload_id,
                 PartNumber=1, Body=b"x")
    expect_error("NoSuchKey", 404, S3.get_object, Bucket=bucket, Key="order")


@check
def transfer_manager():
    """upload_file / download_file: s3transfer splits 12 MiB into 5 MiB parts by itself."""
    bucket = new_bucket("b3-transfer")
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=3)
    data = os.urandom(12 * MIB)
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "up.bin")
        with open(source, "wb") as file:
            file.write(data)
        S3.upload_file(source, bucket, "up.bin", Config=config)
        head = S3.head_object(Bucket=bucket, Key="up.bin")
        chunks = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
        expect(head["ETag"] == f'"{multipart_etag(chunks)}"', f"upload_file ETag {head['ETag']}")
        target = os.path.join(folder, "down.bin")
        S3.download_file(bucket, "up.bin", target, Config=config)
        with open(target, "rb") as file:
            expect(file.read() == data, "download_file bytes differ")
