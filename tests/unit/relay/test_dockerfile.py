"""The relay image, checked without a Docker engine: its Dockerfile parsed, its inputs present."""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "relay" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    assert not pending, "a continuation line runs off the end"
    pairs = []
    for line in joined:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def test_every_stage_is_python_313_slim_and_there_are_two():
    args = dict(rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG")
    images = [
        rest.split()[0].replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"])
        for keyword, rest in instructions()
        if keyword == "FROM"
    ]

    assert images == ["python:3.13-slim", "python:3.13-slim"]
    assert not any("--platform" in rest for keyword, rest in instructions() if keyword == "FROM")


def test_the_runtime_stage_runs_as_a_non_root_user_with_the_relay_entrypoint():
    runtime = stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    [entrypoint] = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    [healthcheck] = [rest for keyword, rest in runtime if keyword == "HEALTHCHECK"]

    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert json.loads(entrypoint) == ["python", "-m", "relay", "run"]
    assert json.loads(healthcheck.split("CMD", 1)[1]) == ["python", "-m", "relay", "health"]
    assert not any(keyword == "RUN" and "apt-get" in rest for keyword, rest in runtime)


@pytest.mark.parametrize(
    "source",
    [
        rest.split()[-2]
        for keyword, rest in instructions()
        if keyword == "COPY" and "--from=" not in rest
    ],
)
def test_every_copied_path_exists(source):
    assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


def test_the_image_installs_the_contract_its_requirements_and_the_relays_pins():
    copies = " ".join(rest for keyword, rest in instructions() if keyword == "COPY")
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")

    assert "layers/shared/change_contract/" in copies
    assert "layers/shared/requirements.txt" in copies
    assert "relay/requirements.txt" in copies
    assert "-r /build/requirements-shared.txt -r /build/requirements-relay.txt" in runs


def test_relay_pins_are_exact_and_match_the_development_pins():
    dev = {}
    for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            dev[name.lower().replace("_", "-")] = version.strip()
    pins = [
        line
        for line in (ROOT / "relay" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert pins
    for pin in pins:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s]+)", pin)
        assert match, f"{pin!r} is not an exact pin"
        name = match.group(1).lower().replace("_", "-")
        assert dev.get(name) == match.group(2), f"{pin} differs from requirements/dev.txt"


def _shared_packages_the_relay_imports() -> set[str]:
    shared = {path.name for path in (ROOT / "layers" / "shared").iterdir() if path.is_dir()}
    imported = set()
    for source in (ROOT / "relay").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    return imported & shared


def test_the_image_ships_every_shared_package_the_relay_imports():
    # GIVEN the shared-layer packages the relay's modules import
    needed = _shared_packages_the_relay_imports()
    copies = " ".join(rest for keyword, rest in instructions() if keyword == "COPY")
    ignore = (ROOT / "relay" / "Dockerfile.dockerignore").read_text().splitlines()

    # THEN each is copied into /app and let through the build context's ignore list
    assert needed >= {"change_contract", "reaction_runtime"}
    for package in needed:
        assert f"layers/shared/{package}/ /app/{package}/" in copies
        assert f"!layers/shared/{package}/**" in ignore


def test_the_build_stage_compiles_the_relays_c_renderer_and_lets_its_sources_in():
    # GIVEN the build stage and the build context's ignore list
    build = stages()[0]
    copies = " ".join(rest for keyword, rest in build if keyword == "COPY")
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    ignore = (ROOT / "relay" / "Dockerfile.dockerignore").read_text().splitlines()
    sources = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "native" / "fastejson").iterdir()
        if path.suffix in {".c", ".py", ".toml"}
    )

    # THEN fastejson is copied, built and imported there, and every source of it is let through
    assert "native/fastejson/ /build/fastejson/" in copies
    assert "pip install --no-cache-dir /build/fastejson" in runs
    assert 'python -c "import fastejson"' in runs
    assert sources == [
        "native/fastejson/fastejson.c",
        "native/fastejson/pyproject.toml",
        "native/fastejson/setup.py",
    ]
    for source in sources:
        assert f"!{source}" in ignore
