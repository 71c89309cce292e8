"""`intended-verify` streams: a bundle far larger than the memory it may use is checked with the
same verdict, and a changed byte in the middle is still reported at its entry's seq."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from tests.audit_app import bundles

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = 200_000
ADDRESS_SPACE_CAP = 96 * 1024 * 1024  # the child's whole virtual memory: interpreter, cryptography, data


def _capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


def verify_capped(bundle: Path, keys: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-E", "-s", "-m", "audit_app.verify", str(bundle), "--trusted-keys", str(keys)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_capped)


def test_it_verifies_a_bundle_larger_than_its_memory_cap_and_names_a_changed_entry(tmp_path: Path) -> None:
    bundle = tmp_path / "large.bundle.json"
    bundles.write_bundle(bundle, ENTRIES, padding=500)
    keys = bundles.trusted_keys_file(tmp_path / "keys.json")
    assert bundle.stat().st_size > 2 * ADDRESS_SPACE_CAP

    ok = verify_capped(bundle, keys)
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    assert ok.stdout.startswith(f"VALID: {ENTRIES} entries (seq 0..{ENTRIES - 1})")

    with bundle.open("r+b") as handle:  # one byte of one entry in the middle of the file
        handle.seek(bundle.stat().st_size // 2)
        handle.readline()
        line_start = handle.tell()
        line = handle.readline()
        seq = int(line.split(b'"seq":', 1)[1].split(b",", 1)[0])
        handle.seek(line_start + line.index(b"xxxx"))
        handle.write(b"y")
    bad = verify_capped(bundle, keys)
    assert bad.returncode == 1, bad.stdout + bad.stderr[-2000:]
    assert bad.stdout.startswith(f"INTEGRITY FAILURE at seq {seq}:"), bad.stdout

    unreadable = verify_capped(tmp_path / "missing.json", keys)
    assert unreadable.returncode == 2
