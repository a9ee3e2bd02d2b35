#!/usr/bin/env bash
# Installs what Wharf and its tests need on Debian/Ubuntu, skipping what is present:
# R with jsonlite, plumber and shiny (the examples), bubblewrap (the sandbox), curl, git (git-backed apps),
# and the S3 clients the tests drive Wharf's S3 listener with: rclone, aws-cli and boto3,
# and aiosmtpd (the SMTP server the notification tests send e-mail to); for the benchmarks,
# nginx-light, wrk, valgrind and (from npm) configurable-http-proxy, express and
# http-proxy-middleware.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=()
command -v Rscript >/dev/null 2>&1 || packages+=(r-base-core)
Rscript -e 'quit(status = !requireNamespace("jsonlite", quietly = TRUE))' >/dev/null 2>&1 \
  || packages+=(r-cran-jsonlite)
# Plumber and Shiny: the example services and the proxy tests.
for r_package in plumber shiny; do
  Rscript -e "quit(status = !requireNamespace('$r_package', quietly = TRUE))" >/dev/null 2>&1 \
    || packages+=("r-cran-$r_package")
done
command -v bwrap >/dev/null 2>&1 || packages+=(bubblewrap)
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v git >/dev/null 2>&1 || packages+=(git)
command -v cc >/dev/null 2>&1 || packages+=(gcc libc6-dev)
command -v pkg-config >/dev/null 2>&1 || packages+=(pkg-config)
command -v rclone >/dev/null 2>&1 || packages+=(rclone)
command -v sqlite3 >/dev/null 2>&1 || packages+=(sqlite3)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)  # certificates for the SMTP TLS tests
# Debian's own python3: the sandbox sees /usr only (a test runs Python's http.server as a
# service), so a python3 elsewhere on PATH (pyenv) is not enough.
[ -x /usr/bin/python3 ] || packages+=(python3 python3-pip)
# Proxy benchmark baselines (wharf-bench proxy / websockets): nginx, wrk, and node for the
# npm proxies below.
[ -x /usr/sbin/nginx ] || packages+=(nginx-light)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v valgrind >/dev/null 2>&1 || packages+=(valgrind)  # wharf-bench proxy-instructions
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

if [ ${#packages[@]} -gt 0 ]; then
  echo "Installing: ${packages[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# aws-cli and boto3 from PyPI (pip of the python3 on PATH); Debian's packages otherwise.
python_packages=()
command -v aws >/dev/null 2>&1 || python_packages+=(awscli)
python3 -c 'import boto3' >/dev/null 2>&1 || python_packages+=(boto3)
python3 -c 'import aiosmtpd' >/dev/null 2>&1 || python_packages+=(aiosmtpd)
if [ ${#python_packages[@]} -gt 0 ]; then
  echo "Installing from PyPI: ${python_packages[*]}"
  if ! python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}" 2>/dev/null \
    && ! python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${python_packages[@]}"; then
    debian=()
    for package in "${python_packages[@]}"; do
      case "$package" in
        awscli) debian+=(awscli) ;;
        boto3) debian+=(python3-boto3) ;;
        aiosmtpd) debian+=(python3-aiosmtpd) ;;
      esac
    done
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${debian[@]}" >/dev/null
  fi
  hash -r
fi

# The npm proxy baselines for wharf-bench, in their own folder ($WHARF_BENCH_NODE).
bench_node="${WHARF_BENCH_NODE:-/opt/wharf-bench-node}"
if [ ! -d "$bench_node/node_modules/configurable-http-proxy" ] \
  || [ ! -d "$bench_node/node_modules/express" ] \
  || [ ! -d "$bench_node/node_modules/http-proxy-middleware" ]; then
  echo "Installing from npm into $bench_node: configurable-http-proxy express http-proxy-middleware"
  $SUDO mkdir -p "$bench_node"
  [ -f "$bench_node/package.json" ] \
    || echo '{"name": "wharf-bench-node", "private": true}' | $SUDO tee "$bench_node/package.json" >/dev/null
  if ! $SUDO npm install --prefix "$bench_node" --no-audit --no-fund --silent \
    configurable-http-proxy express http-proxy-middleware >/dev/null; then
    echo "warning: npm install into $bench_node failed; the proxy benchmarks will skip those baselines" >&2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: Rust is not installed. Install it with rustup (https://rustup.rs), then run this again." >&2
  echo "       (Debian's own cargo package is too old for Wharf; it needs Rust 1.85 or newer.)" >&2
  exit 1
fi
