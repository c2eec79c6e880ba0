"""A Docker Engine for the deploy tests: started when none runs, images built once and cached.

No registry is reachable from these machines, so every image is made here: a Debian rootfs by
mmdebstrap, imported as a base, then each Dockerfile on top (`docker build --network host`). An
image's tag is a hash of everything that goes into it (its Dockerfile, the files it copies, its
build arguments, so its base image too): a second run finds the tag and builds nothing.

The images are built in a thread from the end of collection, while the rest of the suite runs
(the tests that need them run last); dockerd and mmdebstrap run at a lower priority than tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.system import require

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "tests" / "deploy" / "images"
SUITE = "bookworm"
ROOTFS_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates"
# The bundle this machine's pip trusts; it goes into the test base image for pip in builds.
CA_BUNDLE = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
# The classic builder: BuildKit would fetch its Dockerfile frontend from a registry.
DOCKER_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}
NICE = "10"  # builds yield the CPU to the tests that run meanwhile
STALE = timedelta(days=7)  # an image no run asked for in this long is removed
LOCK = Path(tempfile.gettempdir()) / "myagent-ws-docker.lock"
FIGURES: dict[str, float] = {}  # measured by the deploy tests, for docs/deploy.md


class DockerError(RuntimeError):
    """A docker, docker-compose or mmdebstrap command failed; the message ends with its output."""


def run(
    *argv: str, timeout: float = 120, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (bounded), its output captured; raise DockerError if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**DOCKER_ENV, **(env or {})}, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise DockerError(f"{shlex.join(argv)} did not end within {timeout} s") from exc
    if check and done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise DockerError(f"{shlex.join(argv)} exited {done.returncode}:\n{output}")
    return done


def docker(*args: str, timeout: float = 120) -> str:
    return run("docker", *args, timeout=timeout).stdout.strip()


@contextmanager
def machine_lock() -> Iterator[None]:
    """One test run at a time starts the engine or builds images (others may run at once)."""
    with LOCK.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def engine_answers() -> bool:
    answer = run("docker", "info", "--format", "{{.ServerVersion}}", timeout=20, check=False)
    return answer.returncode == 0


def ensure_engine(within_s: float = 90) -> None:
    """A Docker Engine that answers `docker info`: dockerd is started (detached) if none runs.

    A missing Docker Engine skips, and with CI=true fails, like every system component; an engine
    that is installed but does not come up always fails.
    """
    require("docker")
    dockerd = require("dockerd", "/usr/sbin/dockerd")
    require("docker-compose")
    require("mmdebstrap")
    if engine_answers():
        return
    with machine_lock():
        if not engine_answers():
            log = Path(tempfile.gettempdir()) / "myagent-ws-dockerd.log"
            command = ["setsid", "-f", "nice", "-n", NICE, dockerd]  # it outlives this run
            with log.open("ab") as out:
                subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                               check=True, timeout=10)  # fmt: skip
            deadline = time.monotonic() + within_s
            while not engine_answers():
                if time.monotonic() > deadline:
                    pytest.fail(f"dockerd did not answer `docker info` in {within_s} s; see {log}")
                time.sleep(0.5)  # dockerd starting: nothing to await but its socket


@dataclass(frozen=True)
class Image:
    tag: str
    build_s: float | None  # None: found in the cache


def copied_sources(dockerfile: str) -> list[str]:
    """The sources of the Dockerfile's COPY and ADD lines (those from the build context)."""
    text = dockerfile.replace("\\\n", " ")
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split(maxsplit=1)
        if len(words) < 2 or words[0].upper() not in {"COPY", "ADD"}:
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        sources += [a for a in args if not a.startswith("--")][:-1]
    return sources


def context_files(context: Path, source: str) -> Iterator[Path]:
    path = context / source
    if not path.exists():
        raise DockerError(f"COPY {source}: no such path in {context}")
    if path.is_file():
        yield path
        return
    for file in sorted(path.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
            yield file


def content_hash(
    dockerfile: Path, context: Path, args: Mapping[str, str], target: str | None
) -> str:
    digest = hashlib.sha256()
    text = dockerfile.read_text(encoding="utf-8")
    for part in (text, target or "", json.dumps(sorted(args.items()))):
        digest.update(part.encode() + b"\0")
    for source in sorted(set(copied_sources(text))):
        for file in context_files(context, source):
            relative = file.relative_to(context).as_posix()
            mode = file.stat().st_mode & 0o777  # an entrypoint's execute bit goes in the image
            digest.update(f"{relative}\0{mode:o}\0".encode() + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def exists(tag: str) -> bool:
    return run("docker", "image", "inspect", tag, timeout=30, check=False).returncode == 0


def remove_stale(repository: str, keep: str) -> None:
    """Remove this repository's other tags not built for a week (failures are fine: in use)."""
    listed = docker("image", "ls", repository, "--format", "{{.Tag}} {{.CreatedAt}}")
    for line in listed.splitlines():
        tag, created = line.split(" ", 1)
        when = datetime.strptime(" ".join(created.split()[:3]), "%Y-%m-%d %H:%M:%S %z")
        if tag != keep and datetime.now(UTC) - when > STALE:
            run("docker", "image", "rm", f"{repository}:{tag}", check=False)


def build(
    repository: str,
    dockerfile: Path,
    context: Path,
    args: Mapping[str, str] | None = None,
    target: str | None = None,
) -> Image:
    """The image of this Dockerfile, built unless an image of the same content exists."""
    args = dict(args or {})
    tag = f"{repository}:{content_hash(dockerfile, context, args, target)}"
    if exists(tag):
        return Image(tag, None)
    started = time.monotonic()
    command = ["docker", "build", "--network", "host", "-f", str(dockerfile), "-t", tag]
    command += [f"--build-arg={key}={value}" for key, value in args.items()]
    command += ["--target", target] if target else []
    run(*command, str(context), timeout=900)
    remove_stale(repository, tag.split(":")[1])
    return Image(tag, time.monotonic() - started)


def rootfs() -> Image:
    """Debian's python3 as an imported image: `mmdebstrap ... | docker import`."""
    argv = ["mmdebstrap", "--variant=minbase", f"--include={ROOTFS_PACKAGES}", SUITE, "-"]
    tag = "myagent-ws-test/rootfs:" + hashlib.sha256(shlex.join(argv).encode()).hexdigest()[:16]
    if exists(tag):
        return Image(tag, None)
    started = time.monotonic()
    with tempfile.TemporaryFile() as log:
        debootstrap = subprocess.Popen(["nice", "-n", NICE, *argv], stdout=subprocess.PIPE,
                                       stderr=log)  # fmt: skip
        try:
            imported = subprocess.run(["docker", "import", "-", tag], stdin=debootstrap.stdout,
                                      capture_output=True, timeout=900, check=False)  # fmt: skip
        finally:
            assert debootstrap.stdout is not None
            debootstrap.stdout.close()
            code = debootstrap.wait(60)
        if code != 0 or imported.returncode != 0:
            run("docker", "image", "rm", tag, check=False)  # a cut tarball imports as well
            log.seek(0)
            output = (log.read() + imported.stderr)[-4000:].decode(errors="replace")
            raise DockerError(f"{shlex.join(argv)} | docker import failed ({code}):\n{output}")
    return Image(tag, time.monotonic() - started)


def python_base(base: Image) -> Image:
    """The stand-in for python:3.11-slim: the rootfs, this machine's CA bundle, PIP_CERT."""
    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        shutil.copyfile(CA_BUNDLE, context / "ca-certificates.crt")
        return build("myagent-ws-test/python", IMAGES / "python.Dockerfile", context,
                     {"ROOTFS": base.tag})  # fmt: skip


@dataclass(frozen=True)
class StackImages:
    """Every image the deploy tests run, with how long each took to build (None: cached)."""

    rootfs: Image
    python: Image
    agent: Image
    redis: Image
    nginx: Image
    prometheus: Image

    def compose_env(self) -> dict[str, str]:
        """The variables that point docker-compose.yml at these images."""
        return {"AGENT_IMAGE": self.agent.tag, "PYTHON_IMAGE": self.python.tag,
                "REDIS_IMAGE": self.redis.tag, "NGINX_IMAGE": self.nginx.tag,
                "PROMETHEUS_IMAGE": self.prometheus.tag}  # fmt: skip


def build_all() -> StackImages:
    """Build (or find) the base, the project's Dockerfile on it, and the service stand-ins."""
    with machine_lock():
        base = rootfs()
        python = python_base(base)
        agent = build("myagent-ws-test/agent", ROOT / "Dockerfile", ROOT,
                      {"PYTHON_IMAGE": python.tag})  # fmt: skip
        services = {}
        for name in ("redis", "nginx", "prometheus"):  # targets of one Dockerfile
            dockerfile = IMAGES / "services.Dockerfile"
            args = {"BASE": python.tag}
            services[name] = build(f"myagent-ws-test/{name}", dockerfile, IMAGES, args, name)
    return StackImages(base, python, agent, **services)


class Background:
    """The engine and the images, made in a thread while other tests run."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.images: StackImages | None = None
        self.error: BaseException | None = None  # pytest's skip and fail are BaseExceptions
        threading.Thread(target=self.run, name="docker-images", daemon=True).start()

    def run(self) -> None:
        try:
            ensure_engine()
            self.images = build_all()
        except BaseException as exc:  # re-raised in the test that waits for the images
            self.error = exc
        finally:
            self.done.set()

    def wait(self, within_s: float) -> StackImages:
        if not self.done.wait(within_s):
            raise TimeoutError(f"the images are not built after {within_s} s")
        if self.error is not None:
            raise self.error
        assert self.images is not None
        return self.images


_background: list[Background] = []


def start_building() -> None:
    """Start making the engine and the images, once a run."""
    if not _background:
        _background.append(Background())


def built_images(within_s: float = 900) -> StackImages:
    start_building()
    return _background[0].wait(within_s)


def image_size_mb(tag: str) -> float:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag)) / 1e6
