"""`scripts/services.sh` against the real servers it starts.

The module runs the script with a services directory and ports of its own, so the suite's shared
servers (25432 / 27117, var/services) are never touched; the FerretDB binary comes from the
shared FIN_CACHE_DIR, so it is built at most once per machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pymongo
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "services.sh"
SHARED_PORTS = {25432, 27117}

pytestmark = pytest.mark.services


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(preferred: int) -> int:
    """The preferred port when free, else a free one below Linux's ephemeral range."""
    if _port_is_free(preferred):
        return preferred
    for port in range(20000, 32000):
        if port not in SHARED_PORTS and _port_is_free(port):
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _reachable_tmp_dir() -> Path:
    """A temporary directory the `postgres` OS user can enter (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix="fin-services-test-"))
    path.chmod(0o755)
    return path


def _base_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FIN_SERVICES_DIR", "FIN_POSTGRES_PORT", "FIN_MONGO_PORT", "FIN_POSTGRES_URL", "FIN_MONGO_URL"}
    }
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], env=env, cwd="/", capture_output=True, text=True, timeout=timeout
    )


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (orphans may stay unreaped in containers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill_9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"PID {pid} survived SIGKILL"
        time.sleep(0.05)


@dataclass
class LocalServices:
    services_dir: Path
    postgres_port: int
    mongo_port: int
    env: dict[str, str]
    first_start: subprocess.CompletedProcess[str]

    @property
    def postgres_url(self) -> str:
        return f"postgresql://financial@127.0.0.1:{self.postgres_port}/financial"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/"

    @property
    def postmaster_pid_file(self) -> Path:
        return self.services_dir / "postgres" / "data" / "postmaster.pid"

    @property
    def ferretdb_pid_file(self) -> Path:
        return self.services_dir / "ferretdb" / "ferretdb.pid"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(self.env, *args)

    def start(self) -> subprocess.CompletedProcess[str]:
        result = self.run("start")
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def pids(self) -> tuple[int, int]:
        postgres = int(self.postmaster_pid_file.read_text().splitlines()[0])
        ferretdb = int(self.ferretdb_pid_file.read_text().strip())
        return postgres, ferretdb

    def write_and_read_back(self, marker: str) -> None:
        """Store `marker` in both servers."""
        with psycopg2.connect(self.postgres_url) as conn, conn.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS markers (value text PRIMARY KEY)")
            cursor.execute("INSERT INTO markers VALUES (%s)", (marker,))
        conn.close()
        with pymongo.MongoClient(self.mongo_url, serverSelectionTimeoutMS=10_000) as client:
            client.servicetest.markers.insert_one({"_id": marker})

    def has(self, marker: str) -> tuple[bool, bool]:
        """Whether PostgreSQL and FerretDB each still hold `marker`."""
        with psycopg2.connect(self.postgres_url) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM markers WHERE value = %s", (marker,))
            in_postgres = cursor.fetchone()[0] == 1
        conn.close()
        with pymongo.MongoClient(self.mongo_url, serverSelectionTimeoutMS=10_000) as client:
            in_ferretdb = client.servicetest.markers.find_one({"_id": marker}) is not None
        return in_postgres, in_ferretdb


@pytest.fixture(scope="module")
def services() -> Iterator[LocalServices]:
    """Servers of this module's own, started once and stopped at the end."""
    services_dir = _reachable_tmp_dir()
    postgres_port = _free_port(25442)
    mongo_port = _free_port(27127)
    env = {
        **_base_env(),
        "FIN_SERVICES_DIR": str(services_dir),
        "FIN_POSTGRES_PORT": str(postgres_port),
        "FIN_MONGO_PORT": str(mongo_port),
    }
    first_start = _run(env, "start")
    local = LocalServices(services_dir, postgres_port, mongo_port, env, first_start)
    try:
        assert first_start.returncode == 0, first_start.stdout + first_start.stderr
        yield local
    finally:
        _run(env, "stop", timeout=120)
        shutil.rmtree(services_dir, ignore_errors=True)


@pytest.fixture
def running(services: LocalServices) -> LocalServices:
    """The module's servers, (re)started in case an earlier test left them stopped."""
    services.start()
    return services


def test_start_brings_up_postgres_and_ferretdb_that_answer(running):
    out = running.first_start.stdout
    assert f"postgres: started on 127.0.0.1:{running.postgres_port}" in out
    assert f"ferretdb: started on 127.0.0.1:{running.mongo_port}" in out

    with psycopg2.connect(running.postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE t (n int)")
        cursor.execute("INSERT INTO t SELECT generate_series(1, 10)")
        cursor.execute("SELECT current_user, current_database(), sum(n) FROM t")
        assert cursor.fetchone() == ("financial", "financial", 55)
        cursor.execute("SHOW max_wal_size")
        assert cursor.fetchone()[0] == "2GB"
    conn.close()

    with pymongo.MongoClient(running.mongo_url, serverSelectionTimeoutMS=10_000) as client:
        collection = client.servicetest.answers
        inserted = collection.insert_one({"question": "life", "answer": 42}).inserted_id
        assert collection.find_one({"_id": inserted})["answer"] == 42


def test_servers_listen_on_loopback_only(running):
    listening: dict[int, set[str]] = {running.postgres_port: set(), running.mongo_port: set()}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in listening:  # 0A: LISTEN
                listening[int(port, 16)].add(address)
    # 0100007F is 127.0.0.1 in /proc/net/tcp's byte order.
    assert listening == {running.postgres_port: {"0100007F"}, running.mongo_port: {"0100007F"}}


def test_second_start_is_a_no_op(running):
    before = running.pids()
    again = running.start()
    assert running.pids() == before
    assert f"postgres: already running on 127.0.0.1:{running.postgres_port}" in again.stdout
    assert f"ferretdb: already running on 127.0.0.1:{running.mongo_port}" in again.stdout


def test_status_exits_0_and_names_both_servers_when_running(running):
    status = running.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    postgres_pid, ferretdb_pid = running.pids()
    assert f"postgres: running on 127.0.0.1:{running.postgres_port} (pid {postgres_pid}" in status.stdout
    assert f"ferretdb: running on 127.0.0.1:{running.mongo_port} (pid {ferretdb_pid}" in status.stdout


def test_stop_then_start_again_serves_the_same_data(running):
    marker = uuid.uuid4().hex
    running.write_and_read_back(marker)

    stopped = running.run("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert stopped.stdout.splitlines() == ["postgres: stopped", "ferretdb: stopped"]
    assert not running.ferretdb_pid_file.exists()

    restarted = running.start()
    assert "postgres: started" in restarted.stdout and "ferretdb: started" in restarted.stdout
    assert running.has(marker) == (True, True)


def test_status_exits_3_when_stopped(running):
    assert running.run("stop").returncode == 0
    status = running.run("status")
    assert status.returncode == 3
    assert status.stdout.splitlines() == ["postgres: stopped", "ferretdb: stopped"]


def test_stop_when_already_stopped_is_a_no_op(running):
    assert running.run("stop").returncode == 0
    again = running.run("stop")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["postgres: not running", "ferretdb: not running"]


def test_stale_pid_files_do_not_block_a_start(running):
    marker = uuid.uuid4().hex
    running.write_and_read_back(marker)
    old_pids = running.pids()
    for pid in old_pids:
        _kill_9(pid)
    assert running.postmaster_pid_file.exists() and running.ferretdb_pid_file.exists()

    restarted = running.start()
    assert "postgres: started" in restarted.stdout and "ferretdb: started" in restarted.stdout
    assert set(running.pids()).isdisjoint(old_pids)
    assert running.has(marker) == (True, True)


def test_pid_files_naming_another_process_are_treated_as_stale(running):
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        for pid in running.pids():
            _kill_9(pid)
        # As after a reboot: the recorded PIDs now belong to an unrelated program.
        lines = running.postmaster_pid_file.read_text().splitlines()
        running.postmaster_pid_file.write_text("\n".join([str(stranger.pid), *lines[1:]]) + "\n")
        running.ferretdb_pid_file.write_text(f"{stranger.pid}\n")

        status = running.run("status")
        assert status.returncode == 3
        assert status.stdout.splitlines() == ["postgres: stopped", "ferretdb: stopped"]
        assert running.run("stop").returncode == 0
        assert _alive(stranger.pid), "stop must not signal a process that is not its server"

        restarted = running.start()
        assert "postgres: started" in restarted.stdout and "ferretdb: started" in restarted.stdout
        assert stranger.pid not in running.pids()
        assert _alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


def test_url_variables_skip_local_servers(tmp_path):
    env = {
        **_base_env(),
        "FIN_SERVICES_DIR": str(tmp_path / "services"),
        "FIN_POSTGRES_URL": "postgresql://someone:pg-s3cret@db.example:5432/financial",
        "FIN_MONGO_URL": "mongodb://someone:mongo-s3cret@docdb.example:27017/",
    }
    outputs = {command: _run(env, command) for command in ("start", "status", "stop")}

    assert {command: result.returncode for command, result in outputs.items()} == {
        "start": 0,
        "status": 0,
        "stop": 0,
    }
    assert outputs["start"].stdout.splitlines() == [
        "postgres: using FIN_POSTGRES_URL, not starting a local server",
        "ferretdb: using FIN_MONGO_URL, not starting a local server",
    ]
    everything = "".join(result.stdout + result.stderr for result in outputs.values())
    assert "s3cret" not in everything
    assert not (tmp_path / "services").exists()


@pytest.mark.parametrize("service", ["postgres", "ferretdb"])
def test_start_fails_clearly_when_the_port_is_taken(service):
    services_dir = _reachable_tmp_dir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {**_base_env(), "FIN_SERVICES_DIR": str(services_dir)}
        if service == "postgres":
            env.update(FIN_POSTGRES_PORT=str(port), FIN_MONGO_URL="mongodb://elsewhere:27017/")
        else:
            env.update(FIN_MONGO_PORT=str(port), FIN_POSTGRES_URL="postgresql://elsewhere/financial")
        try:
            result = _run(env, "start")
        finally:
            shutil.rmtree(services_dir, ignore_errors=True)

    assert result.returncode == 1
    assert f"{service}: port 127.0.0.1:{port} is already in use by another process" in result.stderr
    assert f"{service}: started" not in result.stdout


@pytest.fixture
def unreachable_services_dir() -> Iterator[Path]:
    """As root: a services directory under a mode-700 parent (a clone in root's home, say), which
    the `postgres` OS user cannot enter."""
    if os.geteuid() != 0:
        pytest.skip("only root runs PostgreSQL as another OS user")
    parent = Path(tempfile.mkdtemp(prefix="fin-services-private-"))  # mode 0700
    yield parent / "services"
    shutil.rmtree(parent, ignore_errors=True)


def _postgres_only_env(services_dir: Path) -> dict[str, str]:
    return {
        **_base_env(),
        "FIN_SERVICES_DIR": str(services_dir),
        "FIN_POSTGRES_PORT": str(_free_port(25452)),
        "FIN_MONGO_URL": "mongodb://elsewhere:27017/",  # PostgreSQL is what runs as another user
    }


def test_as_root_postgres_runs_from_its_own_home_when_it_cannot_enter_the_services_dir(unreachable_services_dir):
    env = _postgres_only_env(unreachable_services_dir)
    try:
        started = _run(env, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        status = _run(env, "status")
        link = unreachable_services_dir / "postgres"
        kept = Path(os.readlink(link))

        assert status.returncode == 0, status.stdout + status.stderr
        assert kept.parent == Path(pwd.getpwnam("postgres").pw_dir)  # /var/lib/postgresql on Debian
        assert kept.name.startswith("financial_assets-")
        assert (kept / "data").owner() == "postgres"
        assert f"data: {kept})" in status.stdout
        with psycopg2.connect(f"postgresql://financial@127.0.0.1:{env['FIN_POSTGRES_PORT']}/financial") as conn:
            with conn.cursor() as cursor:
                cursor.execute("SELECT current_setting('data_directory')")
                assert cursor.fetchone()[0] == str(kept / "data")
        conn.close()
    finally:
        _run(env, "purge", timeout=120)


def test_purge_deletes_the_postgres_data_kept_outside_the_services_dir(unreachable_services_dir):
    env = _postgres_only_env(unreachable_services_dir)
    started = _run(env, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    kept = Path(os.readlink(unreachable_services_dir / "postgres"))

    purged = _run(env, "purge", timeout=120)

    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not kept.exists()
    assert not unreachable_services_dir.exists()
