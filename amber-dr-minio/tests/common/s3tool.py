"""Test helper: fill, damage and describe S3 buckets with boto3, independently of the driver.

usage: s3tool.py ENDPOINT ACCESS SECRET COMMAND ARGS...
  populate BUCKET_A BUCKET_B [long]   awkward data set (long: also keys s3s-fs cannot store:
                                      1,024 bytes, ending in `/`, `a//b`)
  empty BUCKET...                     buckets exist and hold nothing
  destroy BUCKET_A BUCKET_B           change, delete and add objects; delete BUCKET_B
  fingerprint BUCKET...               one line per object: key, size, sha256, headers
  put BUCKET KEY SIZE SEED            one object of SIZE pseudo-random bytes
  populate-many BUCKET N              N small objects (100 to 999 bytes)
  write-until BUCKET STOPFILE         an application: puts, overwrites and deletes objects
                                      under live/ (printing one line per round) until STOPFILE exists
  check-live BUCKET                   every object under live/ is whole (its body matches the
                                      seed at its head)
"""

import hashlib
import json
import sys

import boto3
from botocore.config import Config

endpoint, access, secret, cmd, *args = sys.argv[1:]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id=access,
    aws_secret_access_key=secret,
    region_name="us-east-1",
    config=Config(
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 2},
    ),
)
# Ask for raw keys: no `encoding-type=url` round trip.
s3.meta.events.unregister(
    "before-parameter-build.s3.ListObjectsV2",
    __import__("botocore.handlers", fromlist=["x"]).set_list_objects_encoding_type_url,
)


def body(size, seed):
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


def keys(bucket):
    token = None
    while True:
        kw = {"Bucket": bucket}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        for o in page.get("Contents", []):
            yield o["Key"]
        if not page.get("IsTruncated"):
            return
        token = page["NextContinuationToken"]


def ensure(bucket):
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)


def empty(bucket):
    ensure(bucket)
    for k in list(keys(bucket)):
        s3.delete_object(Bucket=bucket, Key=k)


def populate(a, b, long=False):
    empty(a)
    empty(b)
    meta = {"owner": "amber", "doc-id": "42"}
    objs = {
        "plain.txt": (b"hello\n", {}),
        "dir/sub/file.bin": (body(3000, 1), {"ContentType": "application/octet-stream"}),
        "spaces in name.txt": (b"spaces", {"Metadata": meta}),
        "plus+sign.txt": (b"plus", {}),
        "percent%20literal%.txt": (b"percent", {}),
        "question?.txt": (b"question", {}),
        "hash#tag.txt": (b"hash", {}),
        "ampersand&equals=.txt": (b"amp", {}),
        "unicode/ünïcødé-日本語 ✓.txt": ("ünïcødé".encode(), {"ContentLanguage": "ja"}),
        "zero-byte": (b"", {"ContentType": "text/plain"}),
        "dup-1": (body(5000, 7), {}),
        "dup-2": (body(5000, 7), {}),
        "headers.html": (
            b"<p>headers</p>",
            {
                "ContentType": "text/html; charset=utf-8",
                "CacheControl": "max-age=60, public",
                "ContentDisposition": 'attachment; filename="h.html"',
                "ContentEncoding": "identity",
                "ContentLanguage": "de-CH",
                "Metadata": {"x-mixed": "Value With Spaces", "n": "1"},
            },
        ),
        # Above the driver's in-memory size: restored as a stream.
        "big/1.5MiB": (body(1536 * 1024, 3), {}),
        # Above the tests' multipart threshold (5 MiB): restored in parts.
        "big/multipart-6MiB": (body(6 * 1024 * 1024 + 17, 4), {"ContentType": "video/mp4"}),
    }
    if long:
        objs["k" * 1024] = (b"long key", {})
        objs["folder/"] = (b"", {})
        objs["a//double-slash"] = (b"double", {})
        objs["x/" + "é" * 500 + "/"] = (b"trailing", {})
    for k, (data, kw) in objs.items():
        s3.put_object(Bucket=a, Key=k, Body=data, **kw)
    s3.put_object(Bucket=b, Key="only-in-b.txt", Body=b"b")


def destroy(a, b):
    s3.delete_object(Bucket=a, Key="plain.txt")
    s3.put_object(Bucket=a, Key="dir/sub/file.bin", Body=b"changed", ContentType="text/plain")
    s3.put_object(Bucket=a, Key="headers.html", Body=b"<p>headers</p>", ContentType="text/plain")
    s3.put_object(Bucket=a, Key="extra-after-backup", Body=b"extra")
    for k in list(keys(b)):
        s3.delete_object(Bucket=b, Key=k)
    s3.delete_bucket(Bucket=b)


def fingerprint(buckets):
    out = []
    for bucket in buckets:
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception:
            out.append(f"{bucket}: absent")
            continue
        out.append(f"{bucket}: present")
        for k in sorted(keys(bucket)):
            h = s3.head_object(Bucket=bucket, Key=k)
            data = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
            headers = {
                n: h.get(n)
                for n in (
                    "ContentType",
                    "CacheControl",
                    "ContentDisposition",
                    "ContentEncoding",
                    "ContentLanguage",
                )
                if h.get(n)
            }
            headers["Metadata"] = h.get("Metadata", {})
            out.append(
                f"{bucket} {json.dumps(k)} {len(data)} {hashlib.sha256(data).hexdigest()} "
                + json.dumps(headers, sort_keys=True)
            )
    print("\n".join(out))


if cmd == "populate":
    populate(args[0], args[1], len(args) > 2 and args[2] == "long")
elif cmd == "empty":
    for b in args:
        empty(b)
elif cmd == "destroy":
    destroy(args[0], args[1])
elif cmd == "fingerprint":
    fingerprint(args)
elif cmd == "populate-many":
    from concurrent.futures import ThreadPoolExecutor

    empty(args[0])
    n = int(args[1])

    def put(i):
        s3.put_object(Bucket=args[0], Key=f"obj/{i % 37:02}/{i:06}.txt", Body=body(100 + i % 900, i))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))
elif cmd == "put":
    ensure(args[0])
    s3.put_object(Bucket=args[0], Key=args[1], Body=body(int(args[2]), args[3]))
elif cmd == "write-until":
    import os

    bucket, stop = args

    def live(size, seed):
        # Self-describing: the seed heads the body (metadata is another read on some servers).
        return f"{seed}:".encode().ljust(16, b" ") + body(size, seed)

    i = 0
    while not os.path.exists(stop):
        seed = f"live{i}"
        s3.put_object(Bucket=bucket, Key=f"live/{i:06}.bin", Body=live(100 + i * 37 % 20000, seed), Metadata={"seed": seed})
        seed = f"over{i}"
        s3.put_object(Bucket=bucket, Key="live/overwritten.bin", Body=live(1000 + i * 7919 % 9000, seed), Metadata={"seed": seed})
        if i >= 5:
            s3.delete_object(Bucket=bucket, Key=f"live/{i - 5:06}.bin")
        print(i, flush=True)
        i += 1
elif cmd == "check-live":
    n = 0
    for k in keys(args[0]):
        if not k.startswith("live/"):
            continue
        data = s3.get_object(Bucket=args[0], Key=k)["Body"].read()
        seed = data[:16].decode(errors="replace").split(":")[0]
        if data[16:] != body(len(data) - 16, seed):
            sys.exit(f"{k}: {len(data)} bytes that are not what was written (seed {seed!r})")
        n += 1
    if n == 0:
        sys.exit("no object under live/")
    print(n)
else:
    sys.exit(f"unknown command {cmd}")
