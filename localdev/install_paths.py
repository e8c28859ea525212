"""Put the project's source folders on the virtualenv's import path with a .pth file.

The contract lives in `layers/shared` (the layer's layout), the relay and tooling at the top, and
each function's logic package in its own folder; this makes them importable everywhere at once.
Run by `make venv`; never by deployed code.
"""

import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    folders = [ROOT, ROOT / "layers" / "shared"]
    folders += sorted(path.parent for path in (ROOT / "functions").glob("*/app.py"))
    target = Path(sysconfig.get_paths()["purelib"]) / "mongo_change_reactions.pth"
    target.write_text("".join(f"{folder}\n" for folder in folders))
    print(f"import paths written to {target}")


if __name__ == "__main__":
    main()
