"""Tests that open sockets run in a loopback-only network namespace (``unshare -n``), so nothing they
start (a stream, a WebRTC peer gathering candidates on every interface) can reach any other address.

``@loopback_only`` re-runs the decorated test under ``unshare -n`` with only ``lo`` up (plus
127.0.0.2, which aioice needs as a host candidate: it skips 127.0.0.1) and reports its outcome;
inside the namespace (``EMOTION_TRACER_NETNS`` set) the test body runs. As root the namespace is
made directly, otherwise inside a user namespace (``unshare -r``); where neither is permitted, the
test is skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

INSIDE_ENV = "EMOTION_TRACER_NETNS"
RUN_TIMEOUT_S = 600  # guards against a hung test inside the namespace


def unshare_command() -> list[str]:
    """``unshare -n``, in a user namespace of its own (-r) when not root."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]


@functools.cache
def unshare_problem() -> str | None:
    """Why a loopback-only namespace cannot be made here, or None when it can."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    try:
        probe = subprocess.run([*unshare_command(), "ip", "link", "set", "lo", "up"], capture_output=True,
                               text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "unshare -n did not finish within 30 s"
    if probe.returncode != 0:
        return f"unshare -n is not permitted here ({' '.join(probe.stderr.split()) or probe.returncode})"
    return None


def run_in_namespace(node_id: str) -> None:
    """Run one pytest node in a fresh loopback-only namespace; pass, skip or fail as it did."""
    problem = unshare_problem()
    if problem is not None:
        pytest.skip(f"needs a loopback-only network namespace: {problem}")
    command = (f"ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec {sys.executable} -m pytest -q -rs "
               f"-p no:cacheprovider '{node_id}'")
    try:
        run = subprocess.run([*unshare_command(), "sh", "-c", command], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, env={**os.environ, INSIDE_ENV: "1"}, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{node_id} did not finish within {RUN_TIMEOUT_S} s in the namespace:\n{error.stdout or ''}")
    output = run.stdout + run.stderr
    last = output.strip().splitlines()[-1] if output.strip() else ""
    if run.returncode == 0 and " passed" in last:
        return
    if run.returncode == 0 and " skipped" in last:
        reasons = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", output, re.MULTILINE)
        pytest.skip(reasons[0] if reasons else last)
    pytest.fail(f"{node_id} failed in the loopback-only namespace (exit {run.returncode}):\n{output}", pytrace=False)


def loopback_only(test):
    """Decorator: run ``test`` inside a loopback-only network namespace (see the module docstring)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if os.environ.get(INSIDE_ENV):
            return test(*args, **kwargs)
        node_id = os.environ["PYTEST_CURRENT_TEST"].rsplit(" ", 1)[0]
        run_in_namespace(node_id)

    return wrapper
