"""Every deployed requirements file pins exactly what the dev virtualenv tests with."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return found


DEPLOYED = sorted(
    [
        ROOT / "layers/shared/requirements.txt",
        *ROOT.glob("functions/*/requirements.txt"),
        *ROOT.glob("relay/requirements*.txt"),
    ]
)


@pytest.mark.parametrize("path", DEPLOYED, ids=lambda path: str(path.relative_to(ROOT)))
def test_deployed_pins_match_the_dev_lock(path):
    lock = pins(ROOT / "requirements/dev.txt")
    unpinned = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not PIN.match(line)
    ]
    assert unpinned == [], f"{path.name}: every requirement must be pinned with =="
    mismatched = {
        name: (version, lock.get(name))
        for name, version in pins(path).items()
        if lock.get(name) != version
    }
    assert mismatched == {}, f"{path.name} differs from requirements/dev.txt: {mismatched}"
