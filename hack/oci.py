#!/usr/bin/env python3
"""Writes OCI image archives with nothing but the standard library: no engine, no registry.

The local node (hack/local-cluster.sh up DIR --node) cannot pull images, so the images it runs
are assembled here from local files and imported with `ctr images import`: one uncompressed
layer (its digest is also its diff id), a config, a manifest and an index, in a tar archive in
the OCI image layout. Every tar entry is owned by root with mtime 0, so the same files give the
same digests.

    hack/oci.py image --name REF --out FILE [--file SRC:DST[:MODE]]... [--dir DST[:MODE]]...
                [--entrypoint JSON] [--cmd JSON] [--user U] [--env K=V]... [--expose P/tcp]...
    hack/oci.py dockerfile DOCKERFILE --name REF --out FILE [--context DIR]
                [--stage NAME=DIR]...
    hack/oci.py files DOCKERFILE         the final stage's file set, one path a line
    hack/oci.py list FILE                the file set of an archive written by this script
    hack/oci.py config FILE              its image config (JSON)

`dockerfile` builds the image that the Dockerfile's final stage describes, so the Dockerfile
stays the one description of keyward's image (hack/image.sh uses it). It reads only the
instructions a `FROM scratch` stage of files needs: COPY (from the context or from another
stage, mapped to a local directory with --stage NAME=DIR), USER, ENV, EXPOSE, ENTRYPOINT, CMD,
WORKDIR and LABEL. Any other instruction, or a base image other than scratch, is an error, not
ignored: the archive then could not hold what `docker build` would.

`image` and `dockerfile` print the image's name; "{digest}" in --name stands for the first 12
hex digits of the manifest's digest, so a tag can name the content (the name itself is kept
outside the manifest, in index.json).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Spec:
    """What an image holds: files (destination -> (source, mode)), directories, and config."""

    files: dict[str, tuple[Path, int]] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str | None = None
    env: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    workdir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[str]:
        """Every path in the layer (parent directories included), sorted."""
        out: set[str] = set()
        for p in list(self.files) + list(self.dirs):
            parts = p.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return sorted(out)


def fail(message: str) -> None:
    sys.exit(f"[oci.py] {message}")


# --- the layer, config, manifest and index -----------------------------------------------


def layer_tar(spec: Spec) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in spec.paths():
            info = tarfile.TarInfo(path)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if "/" + path in spec.files:
                src, mode = spec.files["/" + path]
                data = src.read_bytes()
                info.size = len(data)
                info.mode = mode
                tar.addfile(info, io.BytesIO(data))
            else:
                info.type = tarfile.DIRTYPE
                info.mode = spec.dirs.get("/" + path, 0o755)
                tar.addfile(info)
    return buf.getvalue()


def blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def write_archive(spec: Spec, name: str, out: Path) -> str:
    """Writes the archive; returns the image's name."""
    blobs: dict[str, bytes] = {}
    layer = blob(blobs, layer_tar(spec), LAYER_MEDIA_TYPE)
    config: dict = {"Env": spec.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if spec.entrypoint is not None:
        config["Entrypoint"] = spec.entrypoint
    if spec.cmd is not None:
        config["Cmd"] = spec.cmd
    if spec.user is not None:
        config["User"] = spec.user
    if spec.exposed:
        config["ExposedPorts"] = {p: {} for p in spec.exposed}
    if spec.workdir is not None:
        config["WorkingDir"] = spec.workdir
    if spec.labels:
        config["Labels"] = spec.labels
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "history": [{"created_by": "hack/oci.py"}],
    }
    config_desc = blob(blobs, canonical(image_config), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = blob(blobs, canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
    name = name.replace("{digest}", manifest_desc["digest"].split(":", 1)[1][:12])
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
    manifest_desc["annotations"] = {
        # ctr images import names the image after this annotation.
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": tag,
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}

    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(path: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
            info = tarfile.TarInfo(path)
            info.mtime, info.mode, info.type = 0, 0o644 if kind == tarfile.REGTYPE else 0o755, kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
        add("index.json", canonical(index))
        add("blobs", b"", tarfile.DIRTYPE)
        add("blobs/sha256", b"", tarfile.DIRTYPE)
        for digest in sorted(blobs):
            add("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
    os.replace(tmp, out)
    return name


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


# --- the Dockerfile's final stage ---------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def final_stage(text: str) -> list[tuple[str, str]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            stages.append([])
        if not stages:
            continue  # ARG before the first FROM
        stages[-1].append(ins)
    if not stages:
        fail("the Dockerfile has no FROM")
    return stages[-1]


def exec_form(args: str, what: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        fail(f"{what} {args}: only the exec (JSON) form says exactly what runs")
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        fail(f"{what} {args}: not a JSON list of strings")
    return value


def spec_from_dockerfile(path: Path, context: Path, stages: dict[str, Path] | None) -> Spec:
    """The final stage as a Spec. stages None: only the file set (sources are not read)."""
    spec = Spec(env=[])
    stage = final_stage(path.read_text())
    base = stage[0][1].split()
    if base[0] != "scratch":
        fail(f"FROM {stage[0][1]}: the final stage must start FROM scratch, so that its COPY "
             "lines are the whole file set")
    for word, args in stage[1:]:
        if word == "COPY":
            words = shlex.split(args)
            opts = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            source_root = context
            mode = None
            for opt in opts:
                key, _, value = opt[2:].partition("=")
                if key == "from":
                    if stages is None:
                        continue
                    if value not in stages:
                        fail(f"COPY {args}: map stage {value!r} to a directory with --stage {value}=DIR")
                    source_root = stages[value]
                elif key == "chmod":
                    mode = int(value, 8)
                elif key == "link":
                    pass  # a layer-caching hint; the file set is the same
                else:
                    fail(f"COPY {args}: option --{key} is not understood here")
            if len(paths) != 2:
                fail(f"COPY {args}: one source and one destination, so the file set is explicit")
            src, dst = paths
            if dst.endswith("/"):
                dst += Path(src).name
            source = source_root / src.lstrip("/")
            if stages is None:
                spec.files["/" + dst.lstrip("/")] = (source, 0)
                continue
            if not source.is_file():
                fail(f"COPY {args}: {source} is not a file")
            if mode is None:
                mode = source.stat().st_mode & 0o7777
            spec.files["/" + dst.lstrip("/")] = (source, mode)
        elif word == "USER":
            spec.user = args
        elif word == "ENV":
            key, _, value = args.partition("=")
            if not value or " " in key:
                fail(f"ENV {args}: write ENV KEY=VALUE, one per line")
            spec.env.append(f"{key}={value}")
        elif word == "EXPOSE":
            spec.exposed += [p if "/" in p else p + "/tcp" for p in args.split()]
        elif word == "ENTRYPOINT":
            spec.entrypoint = exec_form(args, "ENTRYPOINT")
        elif word == "CMD":
            spec.cmd = exec_form(args, "CMD")
        elif word == "WORKDIR":
            spec.workdir = args
        elif word == "LABEL":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                spec.labels[key] = value
        else:
            fail(f"{word} {args}: not an instruction of a stage of files; hack/oci.py would "
                 "build something other than docker build")
    return spec


# --- commands ------------------------------------------------------------------------------


def parse_mode(text: str | None, default: int) -> int:
    return default if text is None else int(text, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    image = sub.add_parser("image")
    image.add_argument("--name", required=True)
    image.add_argument("--out", required=True, type=Path)
    image.add_argument("--file", action="append", default=[])
    image.add_argument("--dir", action="append", default=[])
    image.add_argument("--entrypoint")
    image.add_argument("--cmd")
    image.add_argument("--user")
    image.add_argument("--env", action="append", default=[])
    image.add_argument("--expose", action="append", default=[])

    docker = sub.add_parser("dockerfile")
    docker.add_argument("dockerfile", type=Path)
    docker.add_argument("--name", required=True)
    docker.add_argument("--out", required=True, type=Path)
    docker.add_argument("--context", type=Path, default=Path("."))
    docker.add_argument("--stage", action="append", default=[])

    files = sub.add_parser("files")
    files.add_argument("dockerfile", type=Path)

    listing = sub.add_parser("list")
    listing.add_argument("archive", type=Path)

    show_config = sub.add_parser("config")
    show_config.add_argument("archive", type=Path)

    args = parser.parse_args()
    if args.command == "image":
        spec = Spec(env=args.env, exposed=args.expose, user=args.user)
        for item in args.file:
            src, dst, *mode = item.split(":")
            spec.files[dst] = (Path(src), parse_mode(mode[0] if mode else None, 0o755))
        for item in args.dir:
            dst, *mode = item.split(":")
            spec.dirs[dst] = parse_mode(mode[0] if mode else None, 0o755)
        spec.entrypoint = exec_form(args.entrypoint, "--entrypoint") if args.entrypoint else None
        spec.cmd = exec_form(args.cmd, "--cmd") if args.cmd else None
        print(write_archive(spec, args.name, args.out))
    elif args.command == "dockerfile":
        stages = {}
        for item in args.stage:
            name, _, root = item.partition("=")
            stages[name] = Path(root)
        spec = spec_from_dockerfile(args.dockerfile, args.context, stages)
        print(write_archive(spec, args.name, args.out))
    elif args.command == "files":
        # The file set without building: sources need not exist.
        spec = spec_from_dockerfile(args.dockerfile, Path("."), None)
        print("\n".join("/" + p for p in spec.paths()))
    elif args.command == "list":
        print("\n".join("/" + p for p in archive_paths(args.archive)))
    elif args.command == "config":
        with tarfile.open(args.archive) as outer:
            manifest = archive_manifest(outer)
            print(outer.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":", 1)[1]).read().decode())


def archive_manifest(outer: tarfile.TarFile) -> dict:
    index = json.load(outer.extractfile("index.json"))
    manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
    return json.load(outer.extractfile("blobs/sha256/" + manifest_digest))


def archive_paths(archive: Path) -> list[str]:
    """The paths in the layers of an archive that write_archive made."""
    with tarfile.open(archive) as outer:
        manifest = archive_manifest(outer)
        paths: list[str] = []
        for layer in manifest["layers"]:
            data = outer.extractfile("blobs/sha256/" + layer["digest"].split(":", 1)[1]).read()
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                paths += [m.name.strip("/") for m in inner.getmembers()]
        return sorted(paths)


if __name__ == "__main__":
    main()
