#!/usr/bin/env python3
"""One call to keyward's KMS API through an official Alibaba Cloud KMS SDK, for the tests.

On first use it creates a virtualenv in $KEYWARD_CACHE/kms-sdk-venv (default
~/.cache/keyward/kms-sdk-venv) with the pinned SDKs of hack/kms-sdk-requirements.txt and re-runs
itself there. It reads one JSON job on stdin:

    {"sdk": "v1" | "tea", "endpoint": "127.0.0.1:PORT", "access_key_id": "...",
     "access_key_secret": "...", "action": "DescribeKey", "params": {"KeyId": "..."}}

("tea" also takes "bearer_token" instead of the pair: a ServiceAccount token; "v1" takes
"ca_bundle", a PEM file, to call over HTTPS trusting that CA only.)

and prints one JSON document: {"ok": <the response body>} or {"error": {"code": ...,
"message": ..., "status": <HTTP status>}}. "v1" is aliyun-python-sdk-kms (signature v1,
HMAC-SHA1, its typed request classes); "tea" is alibabacloud-kms20160120 (ACS3-HMAC-SHA256).
"""

from __future__ import annotations

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


def call_v1(job: dict) -> dict:
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.client import AcsClient

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
    from Tea.exceptions import TeaException

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
    try:
        return {"ok": getattr(client, snake(action))(request).body.to_map()}
    except TeaException as e:
        status = (e.data or {}).get("statusCode") if isinstance(e.data, dict) else None
        return {"error": {"code": e.code, "message": e.message, "status": status}}


def main() -> None:
    if not in_venv():
        python = ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    # The v1 SDK follows HTTP_PROXY and ignores NO_PROXY: the API under test is local.
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        os.environ.pop(name, None)
    job = json.load(sys.stdin)
    result = call_v1(job) if job["sdk"] == "v1" else call_tea(job)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
