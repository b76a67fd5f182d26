#!/usr/bin/env bash
# Installs what the tests need beyond rustup, on a fresh machine; safe to run
# again (each step is skipped when already done):
#   - the wasm32-wasip2 Rust target the connectors build for (rustup),
#   - Debian's chromium, for the settings-page test (needs root and apt),
#   - playwright-core (npm ci in tests/browser), which drives it,
#   - componentize-py, which builds the Python connector (plugins/gitea-py),
#   - util-linux's unshare and iproute2's ip (apt), with which the egress tests
#     run in a loopback-only network namespace (unprivileged user namespaces
#     must be enabled in the kernel),
#   - componentize-js (npm ci in plugins/bitbucket-js, the version its
#     package-lock.json pins), which builds the JavaScript connectors,
#   - strace, for the test that watches what the host fsyncs,
#   - schemathesis and openapi-python-client (pinned in tests/api/requirements.txt,
#     in the virtualenv tests/api/.venv), for the API conformance tests,
#   - PostgreSQL's server (Debian's postgresql package, apt), for the tests
#     on PostgreSQL (throwaway clusters in temp dirs).
# A tool it cannot install is reported here; host/build.rs then compiles
# the test that needs it as ignored (under CI=true such a test fails).
set -uo pipefail
cd "$(dirname "$0")/.."
missing=()

if command -v rustup >/dev/null; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 \
    || rustup target add wasm32-wasip2 || missing+=("the wasm32-wasip2 target (rustup target add wasm32-wasip2)")
fi

if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/setup.sh: installing chromium (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || missing+=("chromium (apt-get install chromium failed)")
  else
    missing+=("chromium (install Debian's chromium, or set CHROMIUM to a Chromium binary)")
  fi
fi

if command -v npm >/dev/null; then
  if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
    echo "tests/setup.sh: npm ci in tests/browser"
    (cd tests/browser && npm ci --no-audit --no-fund --silent) || missing+=("playwright-core (npm ci in tests/browser failed)")
  fi
  if [ ! -f plugins/bitbucket-js/node_modules/@bytecodealliance/componentize-js/package.json ]; then
    echo "tests/setup.sh: npm ci in plugins/bitbucket-js (componentize-js)"
    (cd plugins/bitbucket-js && npm ci --no-audit --no-fund --silent) \
      || missing+=("componentize-js (npm ci in plugins/bitbucket-js failed)")
  fi
else
  missing+=("node and npm (apt-get install nodejs npm)")
fi

if ! command -v componentize-py >/dev/null || ! componentize-py --version >/dev/null 2>&1; then
  echo "tests/setup.sh: pip install componentize-py==0.25.1"
  python3 -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1 \
    || missing+=("componentize-py (pip install componentize-py==0.25.1 failed)")
fi

# The API conformance tools, pinned, in their own virtualenv so their
# dependencies cannot clash with anything else's; re-made when the pins change.
venv=tests/api/.venv
if ! cmp -s tests/api/requirements.txt "$venv/requirements.txt"; then
  echo "tests/setup.sh: pip install -r tests/api/requirements.txt (into $venv)"
  if ! python3 -m venv --help >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  if python3 -m venv "$venv" \
    && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/api/requirements.txt; then
    cp tests/api/requirements.txt "$venv/requirements.txt"
  else
    missing+=("schemathesis and openapi-python-client (python3 -m venv $venv; pip install -r tests/api/requirements.txt failed)")
  fi
fi

have_ip() { command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; }
if ! command -v unshare >/dev/null || ! have_ip; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/setup.sh: installing util-linux and iproute2 (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux iproute2 >/dev/null \
      || missing+=("unshare and ip (apt-get install util-linux iproute2 failed)")
  else
    missing+=("unshare and ip (install util-linux and iproute2)")
  fi
fi
if command -v unshare >/dev/null && have_ip \
  && ! unshare -rnm sh -c 'PATH="$PATH:/usr/sbin:/sbin"; ip link set lo up && mount --bind /etc/hosts /etc/hosts' 2>/dev/null; then
  missing+=("unprivileged user, network and mount namespaces (unshare -rnm fails: enable user namespaces, e.g. sysctl kernel.unprivileged_userns_clone=1)")
fi

if ! command -v strace >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/setup.sh: installing strace (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null \
      || missing+=("strace (apt-get install strace failed)")
  else
    missing+=("strace (install strace)")
  fi
fi
if command -v strace >/dev/null && ! strace -f -qq -o /dev/null true 2>/dev/null; then
  missing+=("ptrace (strace cannot trace: the container forbids it)")
fi

# PostgreSQL's server binaries (Debian keeps them in /usr/lib/postgresql/N/bin):
# the tests start throwaway clusters of their own, so the package's own
# cluster need not run.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/setup.sh: installing postgresql (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
      || missing+=("postgresql (apt-get install postgresql failed)")
  else
    missing+=("PostgreSQL's server (install Debian's postgresql package)")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  printf 'tests/setup.sh: not installed: %s\n' "${missing[@]}" >&2
  if [ -n "${CI:-}" ]; then
    exit 1
  fi
  echo "tests/setup.sh: the tests that need them will be reported as ignored" >&2
fi
exit 0
