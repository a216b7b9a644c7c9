#!/usr/bin/env bash
# Installs the Debian packages switchboard builds and tests with, if any is
# missing (apt-get; as root, or through sudo). Java, Maven, Go and gcc are
# expected on the machine already; this checks for them.
set -euo pipefail

PKGS=(libhyperscan-dev libpcap-dev kcat openssl tcpdump dnscap tmux systemd unbound dnsutils knot-dnsutils dnsdist dnsperf tcpreplay)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "deps: installing Debian packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
for tool in go gcc kcat openssl; do
    command -v "$tool" >/dev/null || { echo "deps: ERROR: $tool not found on PATH" >&2; exit 1; }
done
