"""`check-config` (and `run`) never print a URL's password or query values, nor a
configured secret, whatever a component's error message quotes (issue 15, item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PASSWORD, TOKEN = "PWLEAK-7d1c", "TOKLEAK-93fe"
SECRET_URL = f"https://svc:{PASSWORD}@recorder.example/hub?access_token={TOKEN}"

HEAD = """
[bridge]
state_dir = "{state}"
"""
LOG_SINK = """
[[sinks.log]]
name = "log"
"""

CASES = {
    # A URL typed into a number field: the loader quotes the value it got.
    "url in a number field": f"""
[[sources.anywherenow]]
name = "anw"
hub_url = "https://recorder.example/hub"
ucc_names = ["u"]
reconnect_min = "{SECRET_URL}"
"""
    + LOG_SINK,
    # A URL in a choice field: quoted as well.
    "url in a choice field": f"""
[[sources.encore]]
name = "enc"
url = "http://recorder.example/WebAPI/ECAPI.svc"
api_version = "{SECRET_URL}"
[[sources.encore.ports]]
unit = 1
port = 3
"""
    + LOG_SINK,
    # The wrong scheme for a URL setting.
    "bad scheme": f"""
[[sources.encore]]
name = "enc"
url = "ftp://svc:{PASSWORD}@recorder.example/WebAPI/ECAPI.svc?k={TOKEN}"
[[sources.encore.ports]]
unit = 1
port = 3
"""
    + LOG_SINK,
}


def check_config(tmp_path: Path, body: str, command: str = "check-config") -> tuple[int, str]:
    config = tmp_path / "bridge.toml"
    config.write_text(HEAD.format(state=tmp_path / "state") + body)
    done = subprocess.run(
        [sys.executable, "-m", "bridge", command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_config_errors_show_no_url_credentials(tmp_path: Path, case: str, command: str) -> None:
    status, output = check_config(tmp_path, CASES[case], command)
    assert status == 2, output
    assert "configuration error" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert PASSWORD not in output and TOKEN not in output, output
    assert "***" in output  # the URL was shown, masked: the check can fail


def test_check_config_warnings_show_no_url_credentials(tmp_path: Path) -> None:
    """A valid config whose warnings name a URL with credentials (TLS checks off)."""
    status, output = check_config(
        tmp_path,
        f"""
[[sources.encore]]
name = "enc"
url = "https://svc:{PASSWORD}@recorder.example/WebAPI/ECAPI.svc?k={TOKEN}"
verify_tls = false
[[sources.encore.ports]]
unit = 1
port = 3
[[sinks.webhook]]
name = "hook"
url = "http://hook:{PASSWORD}@10.9.8.7/events?sig={TOKEN}"
secrets = ["whsec_Y29uZmlnLW91dHB1dC1zZWNyZXRzLXRlc3Qta2V5"]
""",
    )
    assert status == 0, output
    assert "warning" in output and "OK" in output
    assert PASSWORD not in output and TOKEN not in output, output
    assert "Y29uZmlnLW91dHB1dC1zZWNyZXRzLXRlc3Qta2V5" not in output
