"""docker/: the compose file validated by docker-compose and wiring every service, the Dockerfile linted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dockerfile
import yaml

from tests.netns import require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_is_valid_and_wires_every_service() -> None:
    tool = require_tool("docker-compose")
    result = subprocess.run(
        [tool, "-f", str(ROOT / "docker/compose.yaml"), "config"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert set(config["services"]) == {"sentinel", "elasticsearch", "kibana", "prometheus", "alertmanager", "grafana"}
    assert all("healthcheck" in svc for svc in config["services"].values())
    sentinel = config["services"]["sentinel"]
    assert sentinel["cap_add"] == ["NET_RAW"] and sentinel["cap_drop"] == ["ALL"] and sentinel["read_only"] is True
    # Sentinel must not wait for Elasticsearch: it spools in its store while the cluster starts.
    assert "depends_on" not in sentinel
    for svc in config["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/"):
                assert Path(source).exists(), f"compose mounts {source}, which is not in the repository"


def test_dockerfile_follows_the_usual_lint_rules() -> None:
    commands = dockerfile.parse_file(str(ROOT / "docker/Dockerfile"))
    froms = [c.value[0] for c in commands if c.cmd == "FROM"]
    assert froms and all(":" in image and not image.endswith(":latest") for image in froms)  # DL3006, DL3007
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users and not users[-1].startswith(("root", "0"))  # the final stage runs unprivileged
    runs = " ".join(c.value[0] for c in commands if c.cmd == "RUN")
    if "apt-get install" in runs:
        assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists" in runs  # DL3015, DL3009
    assert not [c for c in commands if c.cmd == "ADD"]  # DL3020: COPY, never ADD
    assert any(c.cmd == "HEALTHCHECK" for c in commands)
    for c in commands:
        if c.cmd in ("CMD", "ENTRYPOINT"):
            assert c.json, f"{c.cmd} must use the exec (JSON) form"
