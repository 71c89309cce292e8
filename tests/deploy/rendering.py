"""The files of deploy/, rendered for a test deployment: the same text with only its addresses
(ports, host name) and paths (certificate, data directory, install directory) changed, and the
environment file's secrets filled in. Each replaced literal must occur exactly as often as
expected, so a deploy/ file that changes shape fails here instead of leaving a test that
exercises something else."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx" / "intended.conf"
ENV_FILE = DEPLOY / "intended.env"
UNITS = DEPLOY / "systemd"
CHECK = DEPLOY / "check"
WEB_UNIT, WORKER_UNIT, BEAT_UNIT = "intended-web@.service", "intended-worker.service", "intended-beat.service"

# What the shipped files say, and the test changes.
HOST = "gateway.example.com"
INSTALL_DIR = "/opt/intended"
DATA_DIR = "/var/lib/intended"
REPLICA_PORTS = (8001, 8002)


@dataclass(frozen=True)
class Layout:
    """Where a test deployment lives: its ports and its files."""

    https_port: int
    http_port: int
    replica_ports: tuple[int, int]
    certificate: Path
    private_key: Path
    data_dir: Path
    venv: Path  # sys.prefix of the interpreter running the tests
    host: str = "localhost"

    @property
    def public_url(self) -> str:
        return f"https://{self.host}:{self.https_port}"


def substitute(text: str, replacements: list[tuple[str, str, int]], what: str) -> str:
    for old, new, count in replacements:
        found = text.count(old)
        if found != count:
            raise AssertionError(f"{what}: expected {old!r} {count} time(s), found {found}")
        text = text.replace(old, new)
    return text


def render_site(layout: Layout) -> str:
    """deploy/nginx/intended.conf with the test's listen addresses, replicas and paths."""
    one, two = layout.replica_ports
    return substitute(SITE.read_text(), [
        ("listen 80;", f"listen 127.0.0.1:{layout.http_port};", 1),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{layout.https_port} ssl http2;", 1),
        (f"server_name {HOST};", f"server_name {layout.host};", 2),
        (f"server 127.0.0.1:{REPLICA_PORTS[0]} ", f"server 127.0.0.1:{one} ", 1),
        (f"server 127.0.0.1:{REPLICA_PORTS[1]} ", f"server 127.0.0.1:{two} ", 1),
        ("/etc/ssl/intended/fullchain.pem", str(layout.certificate), 1),
        ("/etc/ssl/intended/privkey.pem", str(layout.private_key), 1),
        (f"{DATA_DIR}/static/", f"{layout.data_dir}/static/", 1),
    ], "deploy/nginx/intended.conf")


def nginx_main_conf(layout: Layout, prefix: Path, site: Path, *, as_root: bool) -> str:
    """The test's stand-in for Debian's /etc/nginx/nginx.conf: the same shape (the site is
    included inside `http`), with pid, logs and temporary files under the test's prefix."""
    user = "user root;\n" if as_root else ""  # workers must read the test's private tmp dir
    temp = "\n".join(f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/access.log;
{temp}
    include {site};
}}
"""


def parse_env(text: str) -> dict[str, str]:
    """A systemd EnvironmentFile of KEY=value lines (the form deploy/intended.env keeps to)."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise AssertionError(f"deploy/intended.env line {number} is not KEY=value: {line!r}")
        env[key] = value
    return env


def render_env(layout: Layout, *, secrets: dict[str, str], database_url: str, redis_url: str) -> str:
    """deploy/intended.env with the test's host and data directory, the test's database and
    Redis, and fresh secrets for every CHANGE-ME."""
    text = substitute(ENV_FILE.read_text(), [
        (f"https://{HOST}", layout.public_url, 2),
        (HOST, layout.host, 2),
        (DATA_DIR, str(layout.data_dir), 2),
    ], "deploy/intended.env")
    filled = {**parse_env(text), **secrets, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    left = [key for key, value in filled.items() if "CHANGE-ME" in value]
    if left:
        raise AssertionError(f"deploy/intended.env: no test value for {left}")
    return "".join(f"{key}={value}\n" for key, value in filled.items())


@dataclass(frozen=True)
class Unit:
    working_directory: str
    environment_file: str
    exec_start: list[str]


def render_unit(name: str, layout: Layout, instance: str = "") -> Unit:
    """A unit of deploy/systemd with the test's install and data paths: what systemd would run."""
    text = (UNITS / name).read_text()
    text = text.replace(f"{INSTALL_DIR}/.venv", str(layout.venv)).replace(INSTALL_DIR, str(ROOT))
    text = text.replace(DATA_DIR, str(layout.data_dir))
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("WorkingDirectory", "EnvironmentFile", "ExecStart"):
            fields[key] = value
    argv = [expand_specifiers(arg, instance) for arg in shlex.split(fields["ExecStart"])]
    return Unit(fields["WorkingDirectory"], fields["EnvironmentFile"], argv)


def expand_specifiers(arg: str, instance: str) -> str:
    """The systemd specifiers the units use: %i (the instance) and %% (a percent sign)."""
    out, i = [], 0
    while i < len(arg):
        if arg[i] == "%" and i + 1 < len(arg):
            spec = arg[i + 1]
            if spec == "i":
                out.append(instance)
            elif spec == "%":
                out.append("%")
            else:
                raise AssertionError(f"unit uses specifier %{spec}, which the test does not render")
            i += 2
        else:
            out.append(arg[i])
            i += 1
    return "".join(out)
