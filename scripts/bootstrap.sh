#!/usr/bin/env bash
# Set up everything one Python/Django pair needs, idempotently:
#   scripts/bootstrap.sh py311-dj52|py312-dj61 [system-package ...]
# - installs the named Debian packages that are missing (as root, with apt-get);
# - creates .venv-PAIR with that pair's interpreter and installs requirements.txt, the
#   pair's Django and this package (editable). Re-runs only when requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."

pair=$1
shift
case "$pair" in
  py311-dj52) python_version=3.11; django='Django>=5.2,<5.3' ;;
  py312-dj61) python_version=3.12; django='Django>=6.1,<6.2' ;;
  py313-dj61) python_version=3.13; django='Django>=6.1,<6.2' ;;
  *) echo "unknown pair $pair (py311-dj52, py312-dj61, py313-dj61)" >&2; exit 2 ;;
esac

missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing ${missing[*]} from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: please install ${missing[*]} (not root, or no apt-get)" >&2
  fi
fi

find_python() {
  if command -v pyenv >/dev/null; then
    local version
    version=$(pyenv versions --bare 2>/dev/null | grep -E "^${python_version//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)
    if [ -n "$version" ]; then
      echo "$(pyenv root)/versions/$version/bin/python$python_version"
      return
    fi
  fi
  command -v "python$python_version" || { echo "bootstrap: python$python_version not found" >&2; exit 1; }
}

venv=".venv-$pair"
stamp="$venv/.requirements-$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: setting up $venv (Python $python_version, $django)"
  [ -x "$venv/bin/python" ] || "$(find_python)" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt "$django" -e . 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -c "import django, celery, tasklock" # fails loudly if the install did not
  rm -f "$venv"/.requirements-*
  touch "$stamp"
fi
