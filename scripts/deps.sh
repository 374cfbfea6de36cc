#!/usr/bin/env bash
# Installs, only when missing, every Debian package Convoy needs to build, test and run.
# Idempotent: a machine that has everything does nothing but check.
set -euo pipefail

packages=(
  pkg-config openssl
  libpq-dev libssh2-1-dev libcurl4-openssl-dev
  postgresql postgresql-contrib
  openssh-server openssh-client
  bubblewrap podman runc busybox-static
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
