#!/usr/bin/env bash
# Everything a fresh Debian 12 host needs to run and test appliance: runtime packages from apt,
# Python dependencies from PyPI (the project itself installed editable).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=""
# strace: tests observe how crun starts (tests/runtime/test_sealed.py).
for pkg in crun conmon busybox-static runc tini serf iptables iproute2 util-linux strace; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
python3 -m pip install -q -e '.[test]'
