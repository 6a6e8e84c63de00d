#!/usr/bin/env bash
# Set up drengine on a fresh Debian 12 machine: the virtual environment (always) and, with
# --services, the Debian packages the lab and the test suite need (MariaDB, Galera, Ceph,
# OpenSSH server, python3-rados, etcd for the team lock). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_services=0
[ "${1:-}" = "--services" ] && want_services=1

APT_PACKAGES="mariadb-server mariadb-client galera-4 rsync haproxy socat ceph-mon ceph-osd ceph-mgr ceph-common python3-rados openssh-server iproute2 procps chromium etcd-server etcd-client sudo"

if [ "$want_services" = 1 ]; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.drengine-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# Debian's rados module is built for CPython 3.11: make that one module visible to the venv
# (not the whole dist-packages folder, whose other modules would shadow the venv's).
rados_so=$(ls /usr/lib/python3/dist-packages/rados.cpython-*.so 2>/dev/null | head -n1 || true)
if [ -n "$rados_so" ]; then
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  ln -sf "$rados_so" "$site/"
fi
