#!/usr/bin/env bash
# Start or stop the central Luigi scheduler for this checkout, bound to loopback, with its state, logs
# and task-history SQLite under <artifacts>/scheduler/.
#
#   scripts/luigid.sh start [PORT]     (default port 8082; LUIGID_ADDRESS overrides 127.0.0.1)
#   scripts/luigid.sh stop
#   scripts/luigid.sh status
#
# Point the workers at it with LUIGI_CONFIG_PATH=luigid.cfg (see README, "Central scheduler").
set -euo pipefail
cd "$(dirname "$0")/.."

root=${ARTIFACTS_ROOT:-artifacts}
mkdir -p "$root/scheduler"
dir=$(cd "$root/scheduler" && pwd)
pidfile=$dir/luigid.pid
bin=${LUIGID:-$( [ -x .venv/bin/luigid ] && echo .venv/bin/luigid || command -v luigid )}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
  start)
    port=${2:-8082}
    address=${LUIGID_ADDRESS:-127.0.0.1}
    if running; then echo "luigid already running (pid $(cat "$pidfile"))"; exit 0; fi
    # luigid reads its settings from this file; paths are absolute because --background changes directory.
    cat > "$dir/luigid.cfg" <<CFG
[scheduler]
record_task_history = true
state_path = $dir/state.pickle
retry_delay = 30
[task_history]
db_connection = sqlite:///$dir/task-history.sqlite
[resources]
training = ${TRAINING_SLOTS:-2}
CFG
    LUIGI_CONFIG_PATH="$dir/luigid.cfg" "$bin" --background --address "$address" --port "$port" \
      --pidfile "$pidfile" --logdir "$dir/logs" --state-path "$dir/state.pickle"
    for _ in $(seq 50); do
      if curl -fsS "http://$address:$port/api/task_list" >/dev/null 2>&1; then
        echo "luigid running at http://$address:$port (pid $(cat "$pidfile")), state in $dir"; exit 0
      fi
      sleep 0.2
    done
    echo "error: luigid did not answer on $address:$port; see $dir/logs" >&2; exit 1 ;;
  stop)
    if ! running; then echo "luigid is not running (no live pid in $pidfile)"; rm -f "$pidfile"; exit 0; fi
    pid=$(cat "$pidfile"); kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "luigid stopped"; exit 0; }; sleep 0.2; done
    echo "error: luigid (pid $pid) did not stop; kill it by hand" >&2; exit 1 ;;
  status)
    if running; then echo "luigid running (pid $(cat "$pidfile"))"; else echo "luigid not running"; exit 3; fi ;;
  *)
    echo "usage: $0 start [PORT] | stop | status" >&2; exit 2 ;;
esac
