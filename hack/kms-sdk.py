#!/usr/bin/env python3
"""One call to keyward's KMS API through an official Alibaba Cloud KMS SDK, for the tests.

On first use it creates a virtualenv in $KEYWARD_CACHE/kms-sdk-venv (default
~/.cache/keyward/kms-sdk-venv) with the pinned SDKs of hack/kms-sdk-requirements.txt and re-runs
itself there. It reads one JSON job on stdin:

    {"sdk": "v1" | "tea", "endpoint": "127.0.0.1:PORT", "access_key_id": "...",
     "access_key_secret": "...", "action": "DescribeKey", "params": {"KeyId": "..."}}

("tea" also takes "bearer_token" instead of the pair: a ServiceAccount token; "v1" takes
"ca_bundle", a PEM file, to call over HTTPS trusting that CA only.)

With --serve it reads such jobs one a line and answers each on a line of its own, until stdin
closes (the tests' calls then pay for Python's start once).

and prints one JSON document: {"ok": <the response body>} or {"error": {"code": ...,
"message": ..., "status": <HTTP status>, "body": <the response body as text, when the SDK
gives it>}}. "v1" is aliyun-python-sdk-kms (signature v1, HMAC-SHA1, its typed request
classes); "tea" is alibabacloud-kms20160120 (ACS3-HMAC-SHA256).

Raw control, for the tests of stale timestamps and replays. Both SDKs still sign; these fields
of the job only fix what the SDK would otherwise take from the clock and the RNG:

    "timestamp": "2026-01-01T00:00:00Z"   sign with this Timestamp / x-acs-date instead of now
    "nonce": "..."                        sign with this SignatureNonce / x-acs-signature-nonce
    "repeat": N                           send the request N times; prints {"outcomes": [...]},
                                          one document as above per sending
    "raw": true                           ("v1" only) send the SDK's signed request as prepared
                                          (implied by the fields above)
    "body_params": {...}                  ("v1" only) form-body parameters, signed like the rest

How: "v1" builds the signed request with the SDK's own internals (AcsClient._make_http_response:
the same code path do_action_with_exception takes, signature included) with
aliyunsdkcore.utils.parameter_helper's get_iso_8061_date / get_uuid replaced when a timestamp or
nonce is given, then sends that one prepared request (URL, headers, body) N times with urllib,
so a repeat is byte for byte the same request. Its answer is the server's own: the SDK's
re-reading of SignatureDoesNotMatch as InvalidAccessKeySecret does not happen on this path.
"tea" has no public way to send a prepared request twice; its signer takes the time and nonce
from alibabacloud_tea_openapi.utils.Utils.get_timestamp / get_nonce, which are replaced, so
with both fixed every sending is signed alike: the same signature, headers and parameters.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "kms-sdk-requirements.txt"
CACHE = Path(os.environ.get("KEYWARD_CACHE", Path.home() / ".cache" / "keyward"))
VENV = CACHE / "kms-sdk-venv"
REGION = "cn-hangzhou"


def ensure_venv() -> Path:
    """Creates (or refreshes) the venv once; concurrent callers wait on a lock."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".keyward-requirements"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest and python.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "kms-sdk-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == digest and python.exists():
            return python
        print(f"[kms-sdk.py] creating {VENV} (once)", file=sys.stderr)
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(digest)
    return python


def in_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == VENV.resolve()
    except OSError:
        return False


@contextlib.contextmanager
def fixed_clock(job: dict, owner, timestamp_fn: str, nonce_fn: str):
    """Makes the SDK sign with the job's timestamp and nonce, when given, instead of the clock's
    and a random one, for the duration of the job. `owner` holds the SDK's functions: a module
    (v1) or a class of static methods (tea)."""
    names = (timestamp_fn, nonce_fn)
    saved = {n: owner.__dict__[n] if isinstance(owner, type) else getattr(owner, n) for n in names}
    wrap = staticmethod if isinstance(owner, type) else (lambda f: f)
    for field, name in (("timestamp", timestamp_fn), ("nonce", nonce_fn)):
        if job.get(field):
            setattr(owner, name, wrap(lambda value=job[field]: value))
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(owner, name, function)


def is_raw(job: dict) -> bool:
    return any(job.get(k) for k in ("timestamp", "nonce", "repeat", "raw"))


def answer(status: int, body: bytes) -> dict:
    """A response as the other outcomes print it: the body, or the error document's fields."""
    text = body.decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if 200 <= status < 300 and isinstance(document, dict):
        return {"ok": document}
    document = document if isinstance(document, dict) else {}
    return {"error": {"code": document.get("Code"), "message": document.get("Message"),
                      "status": status, "body": text}}


def send_prepared(client, request, repeat: int) -> list:
    """Signs once through the SDK's internals and sends that very request `repeat` times."""
    import urllib.error
    import urllib.request

    request.add_header("Accept-Encoding", "identity")
    endpoint = client._resolve_endpoint(request)
    prepared = client._make_http_response(endpoint, request, 10, 5)
    url = prepared.get_host() + prepared.get_url()
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    body = prepared.get_body()
    body = body.encode("utf-8") if isinstance(body, str) else body
    outcomes = []
    for _ in range(repeat):
        sent = urllib.request.Request(url, data=body,
                                      headers=prepared.get_headers(),
                                      method=prepared.get_method())
        try:
            with urllib.request.urlopen(sent, timeout=10) as response:
                outcomes.append(answer(response.status, response.read()))
        except urllib.error.HTTPError as e:
            outcomes.append(answer(e.code, e.read()))
    return outcomes


def call_v1(job: dict) -> dict:
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.utils import parameter_helper

    scheme = "http://"
    if job.get("ca_bundle"):
        # HTTPS, trusting only the given CA (read by the SDK when each request is sent).
        os.environ["ALIBABA_CLOUD_CA_BUNDLE"] = job["ca_bundle"]
        scheme = "https://"
    client = AcsClient(job["access_key_id"], job["access_key_secret"], REGION)
    client.add_endpoint(REGION, "Kms", scheme + job["endpoint"])
    action = job["action"]
    module = importlib.import_module(f"aliyunsdkkms.request.v20160120.{action}Request")
    request = getattr(module, f"{action}Request")()
    for name, value in job.get("params", {}).items():
        getattr(request, f"set_{name}")(value)
    for name, value in job.get("body_params", {}).items():
        request.add_body_params(name, value)
    if is_raw(job):
        request.set_accept_format("JSON")
        with fixed_clock(job, parameter_helper, "get_iso_8061_date", "get_uuid"):
            outcomes = send_prepared(client, request, int(job.get("repeat") or 1))
        return {"outcomes": outcomes} if job.get("repeat") else outcomes[0]
    try:
        return {"ok": json.loads(client.do_action_with_exception(request))}
    except ServerException as e:
        return {"error": {"code": e.get_error_code(), "message": e.get_error_msg(),
                          "status": e.get_http_status()}}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def call_tea(job: dict) -> dict:
    from alibabacloud_kms20160120 import models
    from alibabacloud_kms20160120.client import Client
    from alibabacloud_tea_openapi.models import Config

    if job.get("bearer_token"):
        config = Config(bearer_token=job["bearer_token"], region_id=REGION, protocol="http",
                        endpoint=job["endpoint"])
    else:
        config = Config(access_key_id=job["access_key_id"],
                        access_key_secret=job["access_key_secret"],
                        region_id=REGION, protocol="http", endpoint=job["endpoint"])
    client = Client(config)
    action = job["action"]
    params = dict(job.get("params", {}))
    # This SDK takes an EncryptionContext as a dict and serialises it itself.
    if isinstance(params.get("EncryptionContext"), str):
        params["EncryptionContext"] = json.loads(params["EncryptionContext"])
    request = getattr(models, f"{action}Request")(**{snake(k): v for k, v in params.items()})
    from alibabacloud_tea_openapi.utils import Utils

    with fixed_clock(job, Utils, "get_timestamp", "get_nonce"):
        outcomes = [tea_once(client, action, request) for _ in range(int(job.get("repeat") or 1))]
    return {"outcomes": outcomes} if job.get("repeat") else outcomes[0]


def tea_once(client, action: str, request) -> dict:
    from Tea.exceptions import TeaException

    try:
        return {"ok": getattr(client, snake(action))(request).body.to_map()}
    except TeaException as e:
        status = (e.data or {}).get("statusCode") if isinstance(e.data, dict) else None
        body = json.dumps(e.data, default=str) if e.data is not None else None
        return {"error": {"code": e.code, "message": e.message, "status": status,
                          "body": body}}


def main() -> None:
    if not in_venv():
        python = ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    # The v1 SDK follows HTTP_PROXY and ignores NO_PROXY: the API under test is local.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        os.environ.pop(name, None)
    if "--serve" in sys.argv[1:]:
        serve()
        return
    job = json.load(sys.stdin)
    json.dump(call(job), sys.stdout)
    sys.stdout.write("\n")


def call(job: dict) -> dict:
    return call_v1(job) if job["sdk"] == "v1" else call_tea(job)


def serve() -> None:
    """One job per line in, one document per line out, until stdin closes: a test's many calls
    pay for Python's and the SDKs' start once. A job the SDK itself refuses (an exception
    before any request is sent) answers {"sdk_exception": "..."} and the next job is read."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = call(json.loads(line))
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            result = {"sdk_exception": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
