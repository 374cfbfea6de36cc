#!/usr/bin/env bash
# Installs, only when missing, every Debian package Convoy needs to build, test and run.
# Idempotent: a machine that has everything does nothing but check.
set -euo pipefail

packages=(
  pkg-config openssl curl
  libpq-dev libssh2-1-dev libcurl4-openssl-dev
  postgresql postgresql-contrib
  openssh-server openssh-client sudo
  bubblewrap podman runc busybox-static iproute2 util-linux
  python3-venv
  chromium fonts-dejavu-core
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: all Debian packages present"
fi

# sshd refuses to start without its privilege-separation directory; nothing else creates it here.
if [ ! -d /run/sshd ]; then
  if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd && chmod 0755 /run/sshd; else sudo mkdir -p /run/sshd && sudo chmod 0755 /run/sshd; fi
fi

# The unmodified Arvados Python SDK, for the compatibility test (ConvoyCLITests), in a venv of the
# repository's own. Pinned so that the test means the same thing on every machine.
arvados_sdk_version="3.2.1"
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-arvados"
if ! "$venv/bin/python" -c "import arvados._version as v, sys; sys.exit(v.__version__ != '$arvados_sdk_version')" 2>/dev/null; then
  echo "deps: installing arvados-python-client $arvados_sdk_version into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "arvados-python-client==$arvados_sdk_version"
fi

# moto (an EC2 emulator) for the ec2 driver's tests: the machine's own if it has one, else a
# pinned copy in a venv of the repository's own.
moto_version="5.2.1"
moto_venv="$(cd "$(dirname "$0")/.." && pwd)/.venv-moto"
if ! command -v moto_server >/dev/null 2>&1 && [ ! -x "$moto_venv/bin/moto_server" ]; then
  echo "deps: installing moto[server] $moto_version into $moto_venv"
  rm -rf "$moto_venv"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
fi
