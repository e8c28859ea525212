"""fastejson's source is plain ISO C11 and warning-free, with either signedness of `char`.

The relay image compiles it for arm64, where `char` is unsigned (on x86_64 it is signed), with
whatever compiler its build stage has; this compiles it both ways here, with every warning an
error, so a portability slip shows before an image build does.
"""

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "native" / "fastejson" / "fastejson.c"
STRICT = ["-fsyntax-only", "-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror"]


@pytest.mark.parametrize("signedness", ["-fsigned-char", "-funsigned-char"])
def test_the_source_compiles_cleanly_as_strict_c11(signedness):
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "no C compiler: `make venv` needs one to build fastejson"
    include = sysconfig.get_paths()["include"]

    result = subprocess.run(
        [compiler, *STRICT, signedness, f"-I{include}", str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
