#!/bin/sh
# Print the interpreter to build .venv with: python3.13 when it runs (on PATH or in pyenv), else
# python3 if it is at least 3.11. `sam build` needs 3.13 for the python3.13 runtime.
for candidate in python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 python3; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
    command -v "$candidate" || echo "$candidate"
    exit 0
  fi
done
echo "find-python: no Python >= 3.11 found (python3.13 preferred)" >&2
exit 1
