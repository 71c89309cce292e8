"""`intended-verify` where the gateway is not installed: a fresh virtualenv that has only
`cryptography`, and the verifier's own modules (no Django anywhere on the path)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.core.management import call_command

from audit_app import actions, keys
from tests.audit_app.conftest import write_scenario

ROOT = Path(__file__).resolve().parents[2]
VERIFIER_MODULES = ("__init__.py", "verify.py", "chain.py", "signing.py")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with cryptography==<the pinned version> and nothing else."""
    pinned = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
                  if d.startswith("cryptography=="))
    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", pinned],
                   check=True, capture_output=True)
    probe = subprocess.run([str(python), "-c", "import django"], capture_output=True)
    assert probe.returncode != 0, "the bare virtualenv must not have Django"
    return python


@pytest.fixture
def verifier_dir(tmp_path: Path) -> Path:
    package = tmp_path / "verifier" / "audit_app"
    package.mkdir(parents=True)
    for name in VERIFIER_MODULES:
        shutil.copy(ROOT / "audit_app" / name, package / name)
    return package.parent


def run_verifier(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-E", "-s", "-m", "audit_app.verify", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})


def test_it_is_the_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["intended-verify"] == "audit_app.verify:main"


@pytest.mark.django_db(transaction=True)
def test_it_verifies_the_days_bundle_offline_and_fails_one_changed_byte(
    bare_python: Path, verifier_dir: Path, tmp_path: Path
) -> None:
    write_scenario(rounds=3)
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(actions.seal().note)
    write_scenario(rounds=2)
    bundle = tmp_path / "day.bundle.json"
    call_command("audit_export", "--format", "bundle", "--out", str(bundle), stderr=io.StringIO())
    trusted = tmp_path / "audit-keys.json"
    trusted.write_text(json.dumps(keys.published()))

    ok = run_verifier(bare_python, verifier_dir, str(bundle), "--trusted-keys", str(trusted),
                      "--previous-checkpoint", str(kept))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("VALID: 45 entries")

    data = bytearray(bundle.read_bytes())
    entries_at = data.index(b'"entries": [')
    data[entries_at + 400] ^= 0x02
    damaged = tmp_path / "damaged.bundle.json"
    damaged.write_bytes(bytes(data))
    bad = run_verifier(bare_python, verifier_dir, str(damaged), "--trusted-keys", str(trusted))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "INTEGRITY FAILURE" in bad.stdout

    usage = run_verifier(bare_python, verifier_dir, str(bundle))
    assert usage.returncode == 2
