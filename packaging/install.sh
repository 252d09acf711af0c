#!/usr/bin/env bash
# Install a node on this host: runtime packages, the zipapp, and a systemd unit.
# Usage: sudo packaging/install.sh dist/appliance.pyz
set -euo pipefail
pyz=${1:?usage: install.sh PATH/TO/appliance.pyz}
if command -v apt-get >/dev/null; then
  apt-get install -y --no-install-recommends crun conmon python3 >/dev/null
fi
install -m 0755 "$pyz" /usr/local/bin/appliance.pyz
install -m 0644 "$(dirname "$0")/appliance.service" /etc/systemd/system/appliance.service
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl daemon-reload && systemctl enable --now appliance.service
fi
echo "installed; export DOCKER_HOST=unix:///run/appliance.sock"
