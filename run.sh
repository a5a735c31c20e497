#!/usr/bin/env bash
# The README's two commands. Each sets up everything it needs on a fresh machine (Python 3.11 + package registries):
#   bash run.sh demo   # quantize the bundled digits example, compile it to every available target, print verification
#   bash run.sh test   # the test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV="${QDEPLOY_VENV:-.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

setup() {
    if ! command -v g++ >/dev/null 2>&1; then
        # hls4ml's C simulation compiles the generated firmware with g++.
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq g++ >/dev/null
        else
            echo "run.sh: g++ is needed for the hls4ml target's C simulation; install it (e.g. apt-get install g++)" >&2
        fi
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    local stamp="$VENV/.qdeploy-installed"
    local log="$VENV/install.log"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "run.sh: installing torch 2.13 (CPU) and qdeploy with its extras into $VENV (log: $log)" >&2
        # pip's own chatter goes to the log, so the demo's output stays on one screen; a failure shows its tail.
        if ! {
            "$VENV/bin/python" -m pip install -q --upgrade pip &&
                # torch first, pinned: a range that admits a newer torch makes pip fetch a multi-GB CUDA build.
                "$VENV/bin/python" -m pip install -q torch==2.13.0 &&
                "$VENV/bin/python" -m pip install -q -e ".[all,test]"
        } >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            echo "run.sh: installation failed; the whole log is in $log" >&2
            exit 1
        fi
        touch "$stamp"
    fi
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/qdeploy" demo "$@"
        ;;
    test)
        setup
        shift
        # two test workers on two cores: one math thread each (torch's default oversubscribes, 10-20x slower)
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
        exec "$VENV/bin/python" -m pytest -n 2 "$@"
        ;;
    *)
        echo "usage: bash run.sh demo|test [args...]" >&2
        exit 2
        ;;
esac
