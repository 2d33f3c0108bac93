"""S3 behaviour as boto3 sees it: conditions, metadata, listing edges, multipart, copy, attributes, and refusals.

Each test is one behaviour S3 clients rely on, checked through real boto3 against the
session's embedded S3 process (what ceph/s3-tests judges, written here in our own words).
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
import requests
from botocore.exceptions import ClientError
from s3_clients import error_of

MB = 1024 * 1024


def _put(s3c, bucket, key, body=b"x", **kw):
    return s3c.put_object(Bucket=bucket, Key=key, Body=body, **kw)


# conditional requests
def test_get_and_head_honour_if_match_if_none_match_and_the_dates(s3c, bucket):
    etag = _put(s3c, bucket, "k", b"body")["ETag"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for call in (s3c.get_object, s3c.head_object):
        assert call(Bucket=bucket, Key="k", IfMatch=etag)["ETag"] == etag
        with pytest.raises(ClientError) as info:
            call(Bucket=bucket, Key="k", IfMatch='"0000"')
        assert error_of(info)[0] == 412
        with pytest.raises(ClientError) as info:
            call(Bucket=bucket, Key="k", IfNoneMatch=etag)
        assert error_of(info)[0] == 304
        with pytest.raises(ClientError) as info:
            call(Bucket=bucket, Key="k", IfModifiedSince=later)
        assert error_of(info)[0] == 304
        with pytest.raises(ClientError) as info:
            call(Bucket=bucket, Key="k", IfUnmodifiedSince=earlier)
        assert error_of(info)[0] == 412
        assert call(Bucket=bucket, Key="k", IfModifiedSince=earlier, IfUnmodifiedSince=later)["ETag"] == etag
        # If-Match that holds outranks a failing If-Unmodified-Since (RFC 7232 section 6)
        assert call(Bucket=bucket, Key="k", IfMatch=etag, IfUnmodifiedSince=earlier)["ETag"] == etag


def test_conditional_puts_create_once_and_replace_only_the_expected_version(s3c, bucket):
    etag = _put(s3c, bucket, "k", b"one", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as info:
        _put(s3c, bucket, "k", b"two", IfNoneMatch="*")
    assert error_of(info) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as info:
        _put(s3c, bucket, "k", b"two", IfMatch='"bad"')
    assert error_of(info) == (412, "PreconditionFailed")
    assert s3c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    _put(s3c, bucket, "k", b"two", IfMatch=etag)
    assert s3c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    with pytest.raises(ClientError) as info:
        _put(s3c, bucket, "absent", b"x", IfMatch="*")
    assert error_of(info) == (404, "NoSuchKey")


def test_of_two_racing_create_only_puts_exactly_one_wins(s3c, bucket, s3_server):
    import threading

    from s3_clients import client_of

    outcomes, barrier = [], threading.Barrier(8)

    def race(n: int) -> None:
        c = client_of(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)
        barrier.wait()
        try:
            _put(c, bucket, "lock", f"writer {n}".encode(), IfNoneMatch="*")
            outcomes.append(n)
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [o for o in outcomes if isinstance(o, int)]
    assert len(winners) == 1 and outcomes.count("PreconditionFailed") == 7
    assert s3c.get_object(Bucket=bucket, Key="lock")["Body"].read() == f"writer {winners[0]}".encode()


def test_copy_honours_the_source_conditions(s3c, bucket):
    etag = _put(s3c, bucket, "src", b"data")["ETag"]
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as info:
        s3c.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfMatch='"nope"')
    assert error_of(info) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as info:
        s3c.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfNoneMatch=etag)
    assert error_of(info) == (412, "PreconditionFailed")
    s3c.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfMatch=etag)
    assert s3c.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"data"


# metadata
def test_content_headers_and_unicode_metadata_are_kept(s3c, bucket):
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    def unicode_metadata(params, **_):  # boto3 refuses non-ASCII metadata itself; other SDKs send UTF-8
        params["headers"].update({"x-amz-meta-latin": "café", "x-amz-meta-wide": "模型 €"})

    s3c.meta.events.register("before-call.s3.PutObject", unicode_metadata)
    _put(
        s3c,
        bucket,
        "k",
        b"{}",
        ContentType="application/json",
        CacheControl="no-cache",
        ContentDisposition='attachment; filename="a.json"',
        ContentEncoding="gzip",
        ContentLanguage="de",
        Expires=expires,
        Metadata={"plain": "value"},
    )
    head = s3c.head_object(Bucket=bucket, Key="k")
    assert (head["ContentType"], head["CacheControl"], head["ContentEncoding"], head["ContentLanguage"]) == (
        "application/json",
        "no-cache",
        "gzip",
        "de",
    )
    assert head["ContentDisposition"] == 'attachment; filename="a.json"'
    assert head["Expires"] == expires
    assert head["Metadata"]["plain"] == "value" and head["Metadata"]["latin"] == "café"
    # beyond latin-1, S3 answers RFC 2047 (what HTTP headers can carry)
    assert head["Metadata"]["wide"] == "=?UTF-8?B?5qih5Z6LIOKCrA==?="


def test_response_overrides_set_the_headers_of_one_get(s3c, bucket):
    _put(s3c, bucket, "k", b"x", ContentType="text/plain")
    got = s3c.get_object(
        Bucket=bucket,
        Key="k",
        ResponseContentType="image/png",
        ResponseContentDisposition="inline",
        ResponseCacheControl="max-age=5",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
    )
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert (headers["content-type"], headers["content-disposition"], headers["cache-control"]) == (
        "image/png",
        "inline",
        "max-age=5",
    )
    assert s3c.head_object(Bucket=bucket, Key="k")["ContentType"] == "text/plain"


def test_copy_keeps_or_replaces_metadata_and_refuses_a_copy_onto_itself_that_changes_nothing(s3c, bucket):
    _put(s3c, bucket, "src", b"data", Metadata={"a": "1"}, ContentType="text/plain")
    source = {"Bucket": bucket, "Key": "src"}
    s3c.copy_object(Bucket=bucket, Key="kept", CopySource=source)
    assert s3c.head_object(Bucket=bucket, Key="kept")["Metadata"] == {"a": "1"}
    s3c.copy_object(Bucket=bucket, Key="new", CopySource=source, MetadataDirective="REPLACE", Metadata={"b": "2"})
    assert s3c.head_object(Bucket=bucket, Key="new")["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as info:
        s3c.copy_object(Bucket=bucket, Key="src", CopySource=source)
    assert error_of(info) == (400, "InvalidRequest")
    s3c.copy_object(Bucket=bucket, Key="src", CopySource=source, MetadataDirective="REPLACE", Metadata={"c": "3"})
    assert s3c.head_object(Bucket=bucket, Key="src")["Metadata"] == {"c": "3"}


# listing
def test_listing_edges_max_keys_zero_start_after_and_tokens(s3c, bucket):
    for key in ("a", "b/1", "b/2", "c"):
        _put(s3c, bucket, key)
    zero = s3c.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert zero["KeyCount"] == 0 and zero["IsTruncated"] is False
    assert s3c.list_objects(Bucket=bucket, MaxKeys=0)["IsTruncated"] is False
    after = s3c.list_objects_v2(Bucket=bucket, StartAfter="b/1")
    assert [o["Key"] for o in after["Contents"]] == ["b/2", "c"] and after["StartAfter"] == "b/1"
    assert "Contents" not in s3c.list_objects_v2(Bucket=bucket, StartAfter="zzz")
    page = s3c.list_objects_v2(Bucket=bucket, MaxKeys=2, Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["a"] and [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/"]
    rest = s3c.list_objects_v2(Bucket=bucket, ContinuationToken=page["NextContinuationToken"], Delimiter="/")
    assert [o["Key"] for o in rest["Contents"]] == ["c"] and "CommonPrefixes" not in rest
    v1 = s3c.list_objects(Bucket=bucket, MaxKeys=2, Delimiter="/")
    assert v1["NextMarker"] == "b/"  # the common prefix itself, as S3 sends it
    assert [o["Key"] for o in s3c.list_objects(Bucket=bucket, Marker="b/", Delimiter="/")["Contents"]] == ["c"]
    assert [o["Key"] for o in s3c.list_objects(Bucket=bucket, Marker="b/")["Contents"]] == ["b/1", "b/2", "c"]
    empty_token = s3c.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert empty_token["ContinuationToken"] == ""


@pytest.mark.parametrize(
    "query",
    [
        "max-keys=abc",
        "max-keys=-1",
        "list-type=3",
        "encoding-type=base64",
        "list-type=2&continuation-token=not-a-token",
    ],
)
def test_malformed_list_parameters_are_400_with_an_s3_code(s3_server, bucket, query):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("GET", f"{s3_server.endpoint_url}/{bucket}?{query}")
    request.headers["X-Amz-Content-SHA256"] = "UNSIGNED-PAYLOAD"
    SigV4Auth(Credentials(s3_server.access_key, s3_server.secret_key), "s3", "us-east-1").add_auth(request)
    resp = requests.get(request.url, headers=dict(request.headers.items()), timeout=10)
    assert resp.status_code == 400 and "<Code>InvalidArgument</Code>" in resp.text, resp.text


def test_unversioned_buckets_list_their_objects_as_null_versions(s3c, bucket):
    _put(s3c, bucket, "k", b"x")
    listing = s3c.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [("k", "null", True)]
    assert s3c.get_bucket_versioning(Bucket=bucket).get("Status") is None
    s3c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": "null"}]})
    assert "Contents" not in s3c.list_objects_v2(Bucket=bucket)


def test_buckets_recreate_list_in_pages_and_tell_their_location(s3c):
    s3c.create_bucket(Bucket="page-a")
    s3c.create_bucket(Bucket="page-b", CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    _put(s3c, "page-a", "kept")
    s3c.create_bucket(Bucket="page-a")  # the owner again: 200 in us-east-1, nothing lost
    assert s3c.get_object(Bucket="page-a", Key="kept")["Body"].read() == b"x"
    first = s3c.list_buckets(Prefix="page-", MaxBuckets=1)
    second = s3c.list_buckets(Prefix="page-", MaxBuckets=1, ContinuationToken=first["ContinuationToken"])
    assert [b["Name"] for b in first["Buckets"] + second["Buckets"]] == ["page-a", "page-b"]
    assert "ContinuationToken" not in second
    assert s3c.get_bucket_location(Bucket="page-b")["LocationConstraint"] == "us-east-1"
    assert s3c.get_bucket_location(Bucket="page-a").get("LocationConstraint") is None
    with pytest.raises(ClientError) as info:
        s3c.create_bucket(Bucket="page-c", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_of(info) == (400, "InvalidLocationConstraint")
    s3c.delete_object(Bucket="page-a", Key="kept")
    for name in ("page-a", "page-b"):
        s3c.delete_bucket(Bucket=name)


@pytest.mark.parametrize(
    "name", ["ab", "UPPER", "has_underscore", "a..b", "192.168.1.1", "-start", "xn--punycode", "a-.b"]
)
def test_bucket_names_s3_refuses_are_refused(s3c, name):
    with pytest.raises(ClientError) as info:
        s3c.create_bucket(Bucket=name)
    assert error_of(info)[0] == 400


def test_keys_s3_cannot_parse_are_400(s3c, bucket):
    with pytest.raises(ClientError) as info:
        s3c.get_object(Bucket=bucket, Key="\xae\x8a-")
    assert error_of(info) == (400, "InvalidURI")
    with pytest.raises(ClientError) as info:
        _put(s3c, bucket, "k" * 1025)
    assert error_of(info) == (400, "KeyTooLongError")


def test_delete_objects_refuses_more_than_a_thousand_keys(s3c, bucket):
    with pytest.raises(ClientError) as info:
        s3c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert error_of(info) == (400, "MalformedXML")


# ranges and parts
def test_ranges_as_s3_serves_them(s3c, bucket):
    _put(s3c, bucket, "k", b"0123456789")

    def get(spec):
        r = s3c.get_object(Bucket=bucket, Key="k", Range=spec)
        return r["ResponseMetadata"]["HTTPStatusCode"], r["Body"].read(), r.get("ContentRange")

    assert get("bytes=2-4") == (206, b"234", "bytes 2-4/10")
    assert get("bytes=7-") == (206, b"789", "bytes 7-9/10")
    assert get("bytes=-3") == (206, b"789", "bytes 7-9/10")
    assert get("bytes=-30") == (206, b"0123456789", "bytes 0-9/10")
    assert get("bytes=5-100") == (206, b"56789", "bytes 5-9/10")
    assert get("bytes=0-1,4-5")[:2] == (200, b"0123456789")  # several ranges: S3 sends the whole object
    for spec in ("bytes=10-", "bytes=-0", "bytes=40-50"):
        with pytest.raises(ClientError) as info:
            get(spec)
        assert error_of(info) == (416, "InvalidRange")
        assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */10"


def _upload_parts(s3c, bucket, key, sizes, **create):
    upload = s3c.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    bodies, parts = [], []
    for n, size in enumerate(sizes, 1):
        body = os.urandom(size)
        bodies.append(body)
        etag = s3c.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    return upload, parts, bodies


def test_multipart_parts_are_listed_served_by_number_and_completed_once(s3c, bucket):
    upload, parts, bodies = _upload_parts(s3c, bucket, "mp", [5 * MB, 5 * MB, 100])
    listed = s3c.list_parts(Bucket=bucket, Key="mp", UploadId=upload, MaxParts=2)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2] and listed["IsTruncated"] is True
    rest = s3c.list_parts(Bucket=bucket, Key="mp", UploadId=upload, PartNumberMarker=listed["NextPartNumberMarker"])
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 100)]
    assert [u["UploadId"] for u in s3c.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    with pytest.raises(ClientError) as info:
        s3c.get_object(Bucket=bucket, Key="mp", PartNumber=1)
    assert error_of(info) == (404, "NoSuchKey")  # not an object before it is completed
    done = s3c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    again = s3c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    assert done["ETag"] == again["ETag"] and done["ETag"].endswith('-3"')  # a retried completion, answered the same
    for n, body in enumerate(bodies, 1):
        got = s3c.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["Body"].read() == body and got["PartsCount"] == 3
    assert s3c.head_object(Bucket=bucket, Key="mp", PartNumber=2)["ContentLength"] == 5 * MB
    with pytest.raises(ClientError) as info:
        s3c.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert error_of(info) == (400, "InvalidPart")
    attrs = s3c.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts", "ObjectSize", "ETag"], MaxParts=1, PartNumberMarker=1
    )
    assert attrs["ObjectSize"] == 10 * MB + 100 and attrs["ETag"] == done["ETag"].strip('"')
    assert [p["PartNumber"] for p in attrs["ObjectParts"]["Parts"]] == [2] and attrs["ObjectParts"]["IsTruncated"]
    assert "Uploads" not in s3c.list_multipart_uploads(Bucket=bucket)


def test_parts_below_five_megabytes_are_refused_but_the_last(s3c, bucket):
    upload, parts, _ = _upload_parts(s3c, bucket, "small", [1000, 1000])
    with pytest.raises(ClientError) as info:
        s3c.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload, MultipartUpload={"Parts": parts})
    assert error_of(info) == (400, "EntityTooSmall")
    with pytest.raises(ClientError) as info:
        s3c.complete_multipart_upload(
            Bucket=bucket, Key="small", UploadId=upload, MultipartUpload={"Parts": parts[::-1]}
        )
    assert error_of(info) == (400, "InvalidPartOrder")
    bad = [{"PartNumber": 1, "ETag": '"0123"'}]
    with pytest.raises(ClientError) as info:
        s3c.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload, MultipartUpload={"Parts": bad})
    assert error_of(info) == (400, "InvalidPart")
    s3c.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=upload, MultipartUpload={"Parts": parts[:1]})
    assert s3c.head_object(Bucket=bucket, Key="small")["ContentLength"] == 1000
    s3c.abort_multipart_upload(
        Bucket=bucket, Key="x", UploadId=s3c.create_multipart_upload(Bucket=bucket, Key="x")["UploadId"]
    )
    with pytest.raises(ClientError) as info:
        s3c.abort_multipart_upload(Bucket=bucket, Key="x", UploadId="0" * 32)
    assert error_of(info) == (404, "NoSuchUpload")


def test_upload_part_copy_copies_the_range_asked_and_refuses_bad_ranges(s3c, bucket):
    source = os.urandom(6 * MB)
    _put(s3c, bucket, "src", source)
    upload = s3c.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    copy = {"Bucket": bucket, "Key": "src"}
    one = s3c.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1, CopySource=copy)
    two = s3c.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload, PartNumber=2, CopySource=copy, CopySourceRange="bytes=10-19"
    )
    for bad, code in (
        ("bytes=0-" + str(6 * MB), "InvalidRange"),
        ("0-2", "InvalidArgument"),
        ("bytes=x-y", "InvalidArgument"),
    ):
        with pytest.raises(ClientError) as info:
            s3c.upload_part_copy(
                Bucket=bucket, Key="dst", UploadId=upload, PartNumber=3, CopySource=copy, CopySourceRange=bad
            )
        assert error_of(info) == (400, code)
    parts = [
        {"PartNumber": 1, "ETag": one["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": two["CopyPartResult"]["ETag"]},
    ]
    s3c.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload, MultipartUpload={"Parts": parts})
    assert s3c.get_object(Bucket=bucket, Key="dst")["Body"].read() == source + source[10:20]


def test_a_copy_source_is_decoded_once(s3c, bucket):
    _put(s3c, bucket, "name%25.txt", b"literal percent-two-five")
    with pytest.raises(ClientError) as info:
        s3c.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "name%.txt"})
    assert error_of(info) == (404, "NoSuchKey")


# what is not here answers so
@pytest.mark.parametrize(
    "call",
    [
        lambda c, b: c.put_bucket_acl(Bucket=b, ACL="public-read"),
        lambda c, b: c.get_bucket_acl(Bucket=b),
        lambda c, b: c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"}),
        lambda c, b: c.put_bucket_policy(Bucket=b, Policy="{}"),
        lambda c, b: c.get_bucket_lifecycle_configuration(Bucket=b),
        lambda c, b: c.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
        lambda c, b: c.put_bucket_cors(
            Bucket=b, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
        ),
        lambda c, b: c.put_bucket_encryption(
            Bucket=b,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        ),
        lambda c, b: c.get_bucket_website(Bucket=b),
        lambda c, b: c.put_object(Bucket=b, Key="k", Body=b"x", ACL="public-read"),
        lambda c, b: c.put_object(Bucket=b, Key="k", Body=b"x", ServerSideEncryption="AES256"),
        lambda c, b: c.put_object(Bucket=b, Key="k", Body=b"x", Tagging="a=b"),
        lambda c, b: c.put_object(
            Bucket=b, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=dt.datetime(2030, 1, 1)
        ),
        lambda c, b: c.get_object_tagging(Bucket=b, Key="k"),
        lambda c, b: c.create_bucket(Bucket=b + "-locked", ObjectLockEnabledForBucket=True),
    ],
)
def test_features_outside_the_embedded_s3_answer_501_never_a_silent_200(s3c, bucket, call):
    with pytest.raises(ClientError) as info:
        call(s3c, bucket)
    assert error_of(info) == (501, "NotImplemented")
    assert "Contents" not in s3c.list_objects_v2(Bucket=bucket)


def test_a_browser_form_upload_is_501_not_an_auth_puzzle(s3_server, bucket):
    resp = requests.post(
        f"{s3_server.endpoint_url}/{bucket}", files={"file": ("a.txt", b"x")}, data={"key": "a.txt"}, timeout=10
    )
    assert resp.status_code == 501 and "<Code>NotImplemented</Code>" in resp.text
