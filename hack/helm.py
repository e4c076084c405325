#!/usr/bin/env python3
"""Helm v4 for keyward's scripts and tests, with no helm binary on the machine.

It drives the real Helm v4 Go SDK through the PyPI package helm-python-sdk, which bundles it
as a shared library. On first use it creates a virtualenv in $KEYWARD_CACHE/helm-venv
(default ~/.cache/keyward/helm-venv) with the pinned requirements of hack/helm-requirements.txt
and re-runs itself with that venv's python; later runs reuse it. It needs python3 >= 3.10 with
the venv module (Debian: python3-venv, which hack/local-cluster.sh installs).

    hack/helm.py lint CHART [--values-json JSON] [--strict]
    hack/helm.py template CHART [--values-json JSON] [--name NAME] [--namespace NS]
    hack/helm.py install CHART NAME --namespace NS [--kubeconfig FILE] [--values-json JSON]
                 [--server-side true|false] [--take-ownership] [--skip-crds]
    hack/helm.py upgrade CHART NAME --namespace NS [--kubeconfig FILE] [--values-json JSON]
                 [--server-side true|false|auto]
    hack/helm.py uninstall NAME --namespace NS [--kubeconfig FILE] [--ignore-not-found]
    hack/helm.py status NAME --namespace NS [--kubeconfig FILE]

Every command prints one JSON document on stdout: lint its report ({"messages": [...],
"errors": [...]}, severity 3 is an error, 2 a warning), template a map from template path to
rendered manifest (after validating the values against values.schema.json), the release
commands the release summary. A failure prints the SDK's message on stderr and exits 1.

Server-side apply: Helm v4 installs with server-side apply unless told otherwise, and an
upgrade keeps the method the release was installed with ("auto"). --server-side false is Helm
CLI's --server-side=false.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "helm-requirements.txt"
CACHE = Path(os.environ.get("KEYWARD_CACHE", Path.home() / ".cache" / "keyward"))
VENV = CACHE / "helm-venv"


def log(message: str) -> None:
    print(f"[helm.py] {message}", file=sys.stderr)


def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_venv() -> Path:
    """Creates (or refreshes) the venv once; concurrent callers wait on a lock."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".keyward-requirements"
    digest = requirements_digest()
    if stamp.is_file() and stamp.read_text() == digest and python.exists():
        return python
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "helm-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == digest and python.exists():
            return python
        log(f"creating {VENV} with {REQUIREMENTS.name} (once)")
        shutil.rmtree(VENV, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        except subprocess.CalledProcessError:
            sys.exit("[helm.py] python3 -m venv failed: on Debian, apt-get install python3-venv")
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


# --- commands (run inside the venv) -------------------------------------------------------


def values_arg(args: argparse.Namespace) -> dict | None:
    return None if args.values_json is None else json.loads(args.values_json)


def config(args: argparse.Namespace):
    import helm_python as helm

    return helm.Config(kubeconfig_path=args.kubeconfig, namespace=args.namespace)


def call_release_action(func: str, cfg, chart, name: str, values: dict | None, opts: dict):
    """helm_install / helm_upgrade with options the Python wrapper does not expose.

    helm-python-sdk 0.2.2's Config.install and Config.upgrade have no server_side_apply,
    take_ownership or skip_crds parameters, but the native library's option contracts
    (InstallOptions / UpgradeOptions of helm-c-sdk, decoded strictly: an unknown key is an
    error, so a drifted pin fails loudly) have them. This calls the native function the way
    the wrapper does, with the full option set.
    """
    from helm_python import _native

    payload = _native.call_string(
        func,
        cfg._raw(),
        _native.HANDLE(0),
        chart._raw(),
        None,
        name,
        None if values is None else json.dumps(values),
        json.dumps(opts),
    )
    return json.loads(payload)


def server_side_install(text: str | None) -> bool | None:
    if text is None:
        return None
    if text not in ("true", "false"):
        sys.exit("[helm.py] install: --server-side takes true or false")
    return text == "true"


def run_command(args: argparse.Namespace) -> object:
    import helm_python as helm

    if args.command == "lint":
        return helm.lint(args.chart, values_arg(args), strict=args.strict or None)
    if args.command == "template":
        with helm.Chart.load(args.chart) as chart:
            values = values_arg(args)
            chart.validate_schema(values)
            return chart.render(
                values, name=args.name, namespace=args.namespace, is_install=True
            )
    if args.command == "install":
        opts: dict = {"namespace": args.namespace, "timeout_seconds": args.timeout}
        ssa = server_side_install(args.server_side)
        if ssa is not None:
            opts["server_side_apply"] = ssa
        if args.take_ownership:
            opts["take_ownership"] = True
        if args.skip_crds:
            opts["skip_crds"] = True
        if args.disable_openapi_validation:
            opts["disable_openapi_validation"] = True
        with config(args) as cfg, helm.Chart.load(args.chart) as chart:
            return call_release_action(
                "helm_install", cfg, chart, args.name, values_arg(args), opts
            )
    if args.command == "upgrade":
        opts = {"timeout_seconds": args.timeout}
        if args.server_side is not None:
            opts["server_side_apply"] = args.server_side
        if args.disable_openapi_validation:
            opts["disable_openapi_validation"] = True
        with config(args) as cfg, helm.Chart.load(args.chart) as chart:
            return call_release_action(
                "helm_upgrade", cfg, chart, args.name, values_arg(args), opts
            )
    if args.command == "uninstall":
        with config(args) as cfg:
            return cfg.uninstall(
                args.name, ignore_not_found=args.ignore_not_found, timeout=args.timeout
            )
    if args.command == "status":
        with config(args) as cfg:
            return cfg.status(args.name)
    raise AssertionError(args.command)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hack/helm.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def cluster(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--namespace", required=True)
        cmd.add_argument("--kubeconfig", help="default: $KUBECONFIG, then ~/.kube/config")
        cmd.add_argument("--timeout", type=int, default=120, help="seconds")

    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("--values-json")
    lint.add_argument("--strict", action="store_true")

    template = sub.add_parser("template")
    template.add_argument("chart")
    template.add_argument("--values-json")
    template.add_argument("--name", default="keyward")
    template.add_argument("--namespace", default="default")

    install = sub.add_parser("install")
    install.add_argument("chart")
    install.add_argument("name")
    install.add_argument("--values-json")
    install.add_argument("--server-side", choices=["true", "false"])
    install.add_argument("--take-ownership", action="store_true")
    install.add_argument("--skip-crds", action="store_true")
    install.add_argument("--disable-openapi-validation", action="store_true")
    cluster(install)

    upgrade = sub.add_parser("upgrade")
    upgrade.add_argument("chart")
    upgrade.add_argument("name")
    upgrade.add_argument("--values-json")
    upgrade.add_argument("--server-side", choices=["true", "false", "auto"])
    upgrade.add_argument("--disable-openapi-validation", action="store_true")
    cluster(upgrade)

    uninstall = sub.add_parser("uninstall")
    uninstall.add_argument("name")
    uninstall.add_argument("--ignore-not-found", action="store_true")
    cluster(uninstall)

    status = sub.add_parser("status")
    status.add_argument("name")
    cluster(status)
    return p


def main() -> None:
    args = parser().parse_args()
    if not in_venv():
        python = ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]])
    import helm_python as helm

    try:
        result = run_command(args)
    except helm.HelmError as e:
        print(f"[helm.py] {args.command} failed: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
