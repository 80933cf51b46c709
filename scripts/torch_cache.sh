#!/bin/bash
# Put torch and torchvision (a 5 GB CUDA build) on a virtual environment's path from one folder that every checkout
# on this machine shares, installing them there the first time: a fresh clone's set-up then skips copying them
# again (about 40 s). The folder is named by the pins, the Python version and the machine, and is only used once
# complete (a half-finished install is never seen: it is built beside it and moved in place).
# Usage: scripts/torch_cache.sh VENV_PYTHON "torch==X torchvision==Y"
set -euo pipefail
py=$1
pins=$2
tag=$("$py" -c 'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
root=${FITBOARD_TORCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fitboard}
dir=$root/$(echo "$pins" | sed 's/==/-/g; s/ /_/g')-$tag
if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$root"
    tmp=$(mktemp -d "$root/.partial-XXXXXX")
    # shellcheck disable=SC2086  # the pins are separate words
    "$py" -m pip install -q --no-compile --target "$tmp/site-packages" $pins
    touch "$tmp/.complete"
    rm -rf "$dir.old"
    [ -d "$dir" ] && mv "$dir" "$dir.old"  # a half-finished one from an interrupted run
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"  # another set-up finished first: theirs is as good
    rm -rf "$dir.old"
fi
purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# a .pth line is appended to sys.path: anything the venv installs itself still comes first
echo "$dir/site-packages" > "$purelib/zz_fitboard_torch.pth"
"$py" -c 'import torch, torchvision' 2>/dev/null || { echo "torch from $dir does not import" >&2; exit 1; }
