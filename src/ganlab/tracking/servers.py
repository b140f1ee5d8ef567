"""Throwaway PostgreSQL and `mlflow server` processes on 127.0.0.1: a team server to try
(README "Scaling out"), and what tests/test_server.py and bench/scale.py run against.

`missing()` says why they cannot run here (None when they can), so callers skip with the
reason instead of passing silently.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing() -> str | None:
    if pg_bin() is None:
        return ("PostgreSQL is not installed (apt-get install postgresql): no initdb under "
                "/usr/lib/postgresql/*/bin")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's default driver for postgresql:// URIs)
    except ImportError:
        return "the psycopg driver is not installed (pip install -e '.[server]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a `postgres` user to run PostgreSQL as"
        if not shutil.which("runuser"):
            return "running as root without `runuser` to start PostgreSQL as postgres"
    return None


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root (CI runs as root): run its tools as `postgres`
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres(db: str = "mlflow") -> Iterator[str]:
    """A throwaway cluster on 127.0.0.1 with database `db`: yields its postgresql:// URI."""
    bin_dir = pg_bin()
    # not under pytest's tmp_path: that is private to root, and the server runs as postgres
    base = Path(tempfile.mkdtemp(prefix="ganlab-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, port = base / "data", free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                                 "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {base}", "start"]),
                   check=True, capture_output=True, timeout=120)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        yield f"postgresql://postgres@127.0.0.1:{port}/{db}"
    finally:
        subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def mlflow_server(store_uri: str, artifacts: Path, log_path: Path) -> Iterator[str]:
    """`mlflow server` on `store_uri`, artifacts proxied into `artifacts`: yields its http URI."""
    port = free_port()
    # no MLFLOW_*_URI of the calling process: an exported registry URI would become the
    # server's registry (seen in CI: versions landed in an earlier test's SQLite file)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri,
             "--registry-store-uri", store_uri,
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # the first start migrates the schema (tens of seconds)
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        else:
            raise RuntimeError(f"mlflow server did not answer:\n{log_path.read_text()[-3000:]}")
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=60)
