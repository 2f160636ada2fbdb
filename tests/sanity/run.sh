#!/usr/bin/env bash
# ansible-test sanity for certautopilot.vault, offline-safe. `make sanity` runs it.
#
# - ansible-test only accepts a collection that is a real directory at
#   .../ansible_collections/certautopilot/vault (a symlink is refused), so the
#   working tree's files (tracked plus untracked-not-ignored, so a dirty tree
#   is tested as it is) are copied into build/sanity/<venv>/ and tested there.
#   The copy is refreshed, not rebuilt: every file is replaced, but its
#   tests/output/ stays, and with it the virtualenv ansible-test sets up for
#   itself there (tests/output/.tmp/delegation), which it would otherwise
#   create and bootstrap pip into on every run. `rm -rf build/sanity` starts over.
# - --venv: each sanity test gets its own virtualenv with its pinned
#   requirements (from the package index), and .venv stays as it is.
# - ansible-test bootstraps pip in those virtualenvs with get-pip.py from
#   ci-files.testing.ansible.com, which is not reachable here. It uses a cached
#   copy when ~/.ansible/test/cache/get_pip_<version>.py exists, so we put a
#   stand-in there that bootstraps pip with the interpreter's own ensurepip and
#   then installs what ansible-test asked for from the package index.
# - No sanity test is skipped and there is no tests/sanity/ignore-*.txt.
#
# Usage: tests/sanity/run.sh [extra ansible-test sanity arguments]
# Environment: VENV (default: <repo>/.venv).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${VENV:-$repo/.venv}
python=$venv/bin/python
namespace=certautopilot
name=vault

if [ ! -x "$python" ]; then
    echo "no $python: run 'make venv' first" >&2
    exit 1
fi
python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# -- get-pip stand-in -------------------------------------------------------
pip_version=$("$python" -c '
from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="'"$python_version"'"))["pip"])')
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
marker="certautopilot.vault get-pip stand-in"
if [ ! -e "$get_pip" ] || grep -q "$marker" "$get_pip"; then
    mkdir -p "$(dirname "$get_pip")"
    cat > "$get_pip" <<EOF
# $marker, written by tests/sanity/run.sh.
# ansible-test runs this instead of downloading get-pip.py. Arguments are
# get-pip's: pip install options and packages, plus --no-setuptools and
# --no-wheel, which only get-pip.py knows.
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}
arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_ONLY]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
if subprocess.call([sys.executable, "-m", "pip", "install", *arguments]) != 0:
    # ensurepip's own pip is recent enough for every sanity requirement.
    print("get-pip stand-in: keeping the pip from ensurepip", file=sys.stderr)
EOF
fi

# -- a real copy of the collection -------------------------------------------
# One copy per venv, so the sanity of two cores may run at once.
collection=$repo/build/sanity/$(basename "$venv")/ansible_collections/$namespace/$name
mkdir -p "$collection"
# Everything of the last copy goes but its git directory and ansible-test's tests/output.
find "$collection" -mindepth 1 -maxdepth 1 ! -name .git ! -name tests -exec rm -rf {} +
if [ -d "$collection/tests" ]; then
    find "$collection/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
fi
(
    cd "$repo"
    # Tracked files deleted in the working tree are left out, as they would be
    # in a commit; so are .venv and build when they are symlinks, which
    # .gitignore's "dir/" patterns do not match.
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' file; do
            case $file in .venv | build) continue ;; esac
            if [ -e "$file" ] || [ -L "$file" ]; then printf '%s\0' "$file"; fi
        done |
        tar --null --files-from=- --create --file=- |
        tar --extract --file=- --directory="$collection"
)
# ansible-test lists a collection's files with git when it is a repository;
# index the copy so that list is exactly the copied files (a file deleted since
# the last copy leaves the index too; tests/output is in the copied .gitignore).
git -C "$collection" init --quiet
git -C "$collection" add --all

cd "$collection"
unset ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
# Tools that sanity tests look up on PATH (shellcheck) come from the venv.
export PATH="$venv/bin:$PATH"
"$venv/bin/ansible-test" sanity --venv --python "$python_version" --color no "$@"
