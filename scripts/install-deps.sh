#!/usr/bin/env bash
# Installs what Wharf and its tests need on Debian/Ubuntu, skipping what is present:
# R with jsonlite (the example jobs), bubblewrap (the sandbox), curl.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=()
command -v Rscript >/dev/null 2>&1 || packages+=(r-base-core)
Rscript -e 'quit(status = !requireNamespace("jsonlite", quietly = TRUE))' >/dev/null 2>&1 \
  || packages+=(r-cran-jsonlite)
command -v bwrap >/dev/null 2>&1 || packages+=(bubblewrap)
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v cc >/dev/null 2>&1 || packages+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)

if [ ${#packages[@]} -gt 0 ]; then
  echo "Installing: ${packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: Rust is not installed. Install it with rustup (https://rustup.rs), then run this again." >&2
  echo "       (Debian's own cargo package is too old for Wharf; it needs Rust 1.85 or newer.)" >&2
  exit 1
fi
