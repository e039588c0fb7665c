#!/usr/bin/env bash
# Installs the Debian 12 packages Flare IM Core needs to build, run and test.
# Idempotent and quiet when everything is already there. Run as root (or with sudo available).
#   scripts/install_deps.sh            build and embedded-mode packages
#   scripts/install_deps.sh --servers  also the servers of the distributed mode and its tests
#                                      (Redis, PostgreSQL 15, etcd, NATS); none of them is started
set -euo pipefail

PACKAGES=(
    build-essential cmake ninja-build pkg-config ccache mold
    libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
    libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
    libsqlite3-dev libssl-dev libjwt-dev
    libspdlog-dev libfmt-dev libtomlplusplus-dev nlohmann-json3-dev
    libhiredis-dev libpq-dev librdkafka-dev libnats-dev
    libgtest-dev libgmock-dev libbenchmark-dev
)

SERVER_PACKAGES=(redis-server postgresql-15 postgresql-client-15 etcd-server etcd-client nats-server)
if [[ ${1:-} == --servers ]]; then
    PACKAGES+=("${SERVER_PACKAGES[@]}")
elif [[ -n ${1:-} ]]; then
    echo "install_deps: unknown option $1 (use --servers)" >&2
    exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
((${#missing[@]} == 0)) && exit 0

echo "install_deps: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=900 "${missing[@]}" >/dev/null
echo "install_deps: done" >&2
