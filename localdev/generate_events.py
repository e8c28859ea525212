"""Write `events/*.json` from `localdev.samples`, or with --check report files that differ.

python -m localdev.generate_events          # rewrite events/
python -m localdev.generate_events --check  # exit 1 if a committed sample is stale
"""

import argparse
import json
import sys
from pathlib import Path

from localdev.samples import SAMPLES

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def render(name: str) -> str:
    return json.dumps(SAMPLES[name](), indent=2, ensure_ascii=False) + "\n"


def stale_samples(events_dir: Path = EVENTS_DIR) -> list[str]:
    """Names of samples whose file is missing or differs from what the generator makes now."""
    return [
        name
        for name in SAMPLES
        if not (events_dir / f"{name}.json").exists()
        or (events_dir / f"{name}.json").read_text(encoding="utf-8") != render(name)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale samples")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_samples()
        for name in stale:
            print(f"stale: events/{name}.json (run `make events`)")
        return 1 if stale else 0
    EVENTS_DIR.mkdir(exist_ok=True)
    for name in SAMPLES:
        (EVENTS_DIR / f"{name}.json").write_text(render(name), encoding="utf-8")
        print(f"wrote events/{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
