"""docs/DEPLOY.md shows exactly the files of deploy/ (the ones tests/deploy/test_production.py
runs), each verbatim under a caption line naming it; the systemd units are valid for systemd;
the test renders them by changing addresses and paths only."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.rendering import (
    BEAT_UNIT,
    DEPLOY,
    ENV_FILE,
    ROOT,
    SITE,
    UNITS,
    WEB_UNIT,
    WORKER_UNIT,
    Layout,
    parse_env,
    render_env,
    render_site,
    render_unit,
    substitute,
)

DOC = ROOT / "docs" / "DEPLOY.md"
CAPTION = re.compile(r"^`(deploy/[\w@./-]+)`:$")


def documented_blocks(text: str) -> list[tuple[str | None, str, str]]:
    """Each fenced block of the page: (the deploy/ file its caption names or None, its info
    string, its content)."""
    blocks = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+)(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        previous = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        caption = CAPTION.match(previous)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].rstrip("\n") == fence.group(1))
        blocks.append((caption.group(1) if caption else None, fence.group(2), "".join(lines[i + 1:end])))
        i = end + 1
    return blocks


def shipped_files() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text() for path in sorted(DEPLOY.rglob("*")) if path.is_file()}


def test_it_shows_every_deploy_file_verbatim_in_the_guide() -> None:
    blocks = documented_blocks(DOC.read_text())
    shown = {name: content for name, _, content in blocks if name}
    shipped = shipped_files()
    assert sorted(shown) == sorted(shipped), "DEPLOY.md must show each file of deploy/ once, under its caption"
    assert len([name for name, _, _ in blocks if name]) == len(shown), "a deploy/ file is shown twice"
    for name, content in shipped.items():
        assert shown[name] == content, f"DEPLOY.md's copy of {name} differs from the file"


def test_it_shows_no_nginx_or_unit_configuration_that_nothing_runs() -> None:
    for name, info, content in documented_blocks(DOC.read_text()):
        if name is None:
            assert info not in ("nginx", "ini", "systemd"), f"an uncaptioned {info} block:\n{content[:300]}"
            assert "proxy_pass" not in content and "ExecStart=" not in content, content[:300]


def layout(tmp_path: Path) -> Layout:
    return Layout(https_port=8443, http_port=8080, replica_ports=(9001, 9002), certificate=tmp_path / "cert.pem",
                  private_key=tmp_path / "key.pem", data_dir=tmp_path / "data", venv=Path(sys.prefix))


def test_it_renders_the_site_by_changing_addresses_and_paths_only(tmp_path: Path) -> None:
    original = SITE.read_text().splitlines()
    rendered = render_site(layout(tmp_path)).splitlines()
    assert len(original) == len(rendered)
    changed = [(a.strip(), b.strip()) for a, b in zip(original, rendered, strict=True) if a != b]
    assert [a.split()[0] for a, _ in changed] == ["server", "server", "listen", "server_name", "listen",
                                                  "server_name", "ssl_certificate", "ssl_certificate_key", "alias"]
    assert ("listen 443 ssl http2;", "listen 127.0.0.1:8443 ssl http2;") in changed


def test_it_fails_loudly_when_a_deploy_file_no_longer_has_what_the_test_replaces() -> None:
    with pytest.raises(AssertionError, match="expected 'listen 80;' 1 time"):
        substitute("listen 8080;", [("listen 80;", "listen 1;", 1)], "site")
    with pytest.raises(AssertionError, match="found 2"):
        substitute("a a", [("a", "b", 1)], "site")


def test_the_environment_template_leaves_only_secrets_and_addresses_to_fill(tmp_path: Path) -> None:
    template = parse_env(ENV_FILE.read_text())
    placeholders = {key for key, value in template.items() if "CHANGE-ME" in value}
    assert placeholders == {"SECRET_KEY", "DATABASE_URL", "INTENDED_CREDENTIAL_KEYS", "INTENDED_METRICS_TOKEN"}
    assert template["TRUSTED_PROXIES"] == "127.0.0.1"  # nginx on the replicas' host (deploy/nginx)
    assert template["INTENDED_BEHIND_TLS_PROXY"] == "true"
    with pytest.raises(AssertionError, match="no test value"):
        render_env(layout(tmp_path), secrets={}, database_url="postgres://x", redis_url="redis://x")


@pytest.mark.parametrize("name", [WEB_UNIT, WORKER_UNIT, BEAT_UNIT])
def test_the_units_are_valid_for_systemd(tmp_path: Path, name: str) -> None:
    """`systemd-analyze verify` on the unit with this checkout's paths (the shipped ones name
    /opt/intended, which does not exist here)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (scripts/system-packages installs systemd)"
    (tmp_path / "data").mkdir()
    text = (UNITS / name).read_text().replace("/opt/intended/.venv", sys.prefix).replace("/opt/intended", str(ROOT))
    text = text.replace("/var/lib/intended", str(tmp_path / "data"))
    env_file = tmp_path / "intended.env"
    env_file.write_text(ENV_FILE.read_text())
    text = text.replace("/etc/intended/intended.env", str(env_file))
    unit = tmp_path / name
    unit.write_text(text)
    verified = subprocess.run([analyze, "verify", "--man=no", str(unit.with_name(name.replace("@.", "@8001.")))
                               if "@." in name else str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr


def test_the_test_runs_what_the_units_run(tmp_path: Path) -> None:
    web = render_unit(WEB_UNIT, layout(tmp_path), "9001")
    assert web.exec_start == [f"{sys.prefix}/bin/python", "manage.py", "serve", "--host", "127.0.0.1", "--port", "9001"]
    assert web.environment_file == "/etc/intended/intended.env"
    worker = render_unit(WORKER_UNIT, layout(tmp_path))
    assert worker.exec_start[1:4] == ["-A", "intended", "worker"]
    beat = render_unit(BEAT_UNIT, layout(tmp_path))
    assert beat.exec_start[1:4] == ["-A", "intended", "beat"]
    assert f"{tmp_path}/data/celerybeat-schedule" in beat.exec_start


def test_the_check_fails_an_unfinished_deployment(tmp_path: Path) -> None:
    """deploy/check on the template as shipped, with nothing listening: every check says FAIL."""
    from tests.support.processes import free_port

    port = free_port()
    done = subprocess.run(["bash", str(DEPLOY / "check"), str(ENV_FILE), f"https://localhost:{port}"],
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": sys.executable,
                               "PLAIN_URL": f"http://localhost:{port}"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL placeholders left" in done.stderr
    assert "FAIL manage.py check --deploy" in done.stderr
    assert f"FAIL https://localhost:{port}/readyz answered 000, not 200" in done.stderr
    assert "FAIL plain HTTP" in done.stderr
    assert "check: ok" not in done.stdout


def test_the_check_explains_its_usage() -> None:
    done = subprocess.run(["bash", str(DEPLOY / "check")], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: deploy/check ENV-FILE" in done.stderr
