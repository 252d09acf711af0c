#!/usr/bin/env bash
# Build dist/appliance.pyz: one file holding appliance and its dependencies, native wheels
# (lmdb, msgpack) included. shiv unpacks them once into ~/.shiv (or $SHIV_ROOT) on first run.
# Usage: packaging/build-zipapp.sh [OUT]   (needs: pip install shiv)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/dist/appliance.pyz}
mkdir -p "$(dirname "$out")"
python3 -m shiv --compressed -p '/usr/bin/env python3' -c appliance -o "$out" "$here"
echo "built $out ($(du -h "$out" | cut -f1))"
