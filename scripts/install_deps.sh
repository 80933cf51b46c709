#!/bin/bash
# Install the project (editable, with its train and test extras) into a virtual environment. The first time on a
# machine pip resolves the 230-odd packages from the index (about 22 s of its 33 s is the resolver reading index
# pages), then their wheels are kept in a folder every checkout shares; a later fresh clone installs from that folder
# alone (--no-index: 16 s). The folder is named by pyproject.toml's content, the Python version and the machine, is
# only used once complete, and any failure to install from it falls back to the index.
# Usage: scripts/install_deps.sh VENV_PYTHON EXTRAS      e.g. scripts/install_deps.sh .venv/bin/python train,test
set -euo pipefail
py=$1
extras=$2
tag=$("$py" -c 'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
key=$(cat pyproject.toml | sha256sum | cut -c1-16)
root=${FITBOARD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fitboard}
dir=$root/wheels-$extras-$key-$tag
if [ -f "$dir/.complete" ] && "$py" -m pip install -q --no-compile --no-index --find-links "$dir" -e ".[$extras]"; then
    exit 0
fi
"$py" -m pip install -q --no-compile -e ".[$extras]"
# Keep the wheels of what the environment holds itself (torch lives in scripts/torch_cache.sh's folder), and the
# build backend the editable install needs (setuptools, listed with --all): pip takes them from its own cache, so
# this costs seconds, once.
mkdir -p "$root"
tmp=$(mktemp -d "$root/.partial-XXXXXX")
purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$py" -m pip freeze --all --exclude-editable --path "$purelib" | grep -v '^pip==' > "$tmp/pins.txt"
if "$py" -m pip download -q --no-deps -d "$tmp" -r "$tmp/pins.txt"; then
    touch "$tmp/.complete"
    rm -rf "$dir"
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"  # another set-up finished first: theirs is as good
else
    rm -rf "$tmp"  # next time resolves from the index again
fi
