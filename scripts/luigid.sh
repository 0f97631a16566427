#!/usr/bin/env bash
# Start or stop the central Luigi scheduler for this checkout, bound to loopback.
#
#   scripts/luigid.sh start [PORT]     (default port 8082; LUIGID_ADDRESS overrides 127.0.0.1)
#   scripts/luigid.sh stop
#   scripts/luigid.sh status
#
# luigid's state file is a pickle, which runs code when luigid loads it, so it never lives in the artifacts
# root (which may be an NFS share): the state, the pidfile and luigid's own config go into a private local
# folder, LUIGID_STATE_DIR (default ${XDG_STATE_HOME:-~/.local/state}/fmnist-pipeline/luigid, mode 0700,
# state file 0600). Logs and the task-history SQLite stay under <artifacts>/scheduler/.
# `stop` signals the pid in the pidfile only when that process really is this luigid (its command line
# names this pidfile); a stale pidfile whose pid now belongs to another process is removed, with a message.
#
# Point the workers at it with LUIGI_CONFIG_PATH=luigid.cfg (see README, "Central scheduler").
# LUIGID_DISCONNECT_DELAY (default 60) and LUIGID_RETRY_DELAY (default 30): the seconds after which a silent
# worker (a dead or hung host) counts as gone and its running task fails, and then is handed to another worker.
# LUIGID_METRICS=prometheus (default none) makes luigid count its tasks by status and family and serve them
# at http://ADDRESS:PORT/metrics in Prometheus' text format (docs/scheduler-metrics.md); it needs the
# prometheus-client package beside luigid: pip install -e '.[metrics]'.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${ARTIFACTS_ROOT:-artifacts}
state=${LUIGID_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/fmnist-pipeline/luigid}

die() { echo "error: $*" >&2; exit 1; }

seconds() {  # the value of variable $1 (default $2), checked to be a number of seconds
  local value=${!1:-$2}
  [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$1=$value: expected a number of seconds, e.g. $2"
  echo "$value"
}

# The [scheduler] line for LUIGID_METRICS (none or prometheus), checked against what luigid ($1) can import.
metrics_setting() {
  local python
  case ${LUIGID_METRICS:-none} in
    none) echo "metrics_collector = none" ;;
    prometheus)
      python=$(head -n 1 "$1" | sed -n 's/^#! *//p')  # luigid's interpreter, when it is a Python script
      if [[ $python == *python* ]] && ! $python -c 'import prometheus_client' 2>/dev/null; then
        die "LUIGID_METRICS=prometheus needs prometheus-client beside luigid ($python): pip install -e '.[metrics]'"
      fi
      echo "metrics_collector = prometheus" ;;
    *) die "LUIGID_METRICS=$LUIGID_METRICS: expected none or prometheus" ;;
  esac
}

# The private state folder: created 0700; refused when it is a link or someone else's.
mkdir -p "$state"
[ -L "$state" ] && die "$state is a symbolic link; LUIGID_STATE_DIR must be a real folder of yours"
[ -O "$state" ] || die "$state belongs to another user; set LUIGID_STATE_DIR to a folder of yours"
chmod 700 "$state"
state=$(cd "$state" && pwd)
pidfile=$state/luigid.pid
statefile=$state/state.pickle

# The pid in the pidfile, if that process is this luigid: its command line runs luigid with this pidfile.
our_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(head -c 20 "$pidfile" | tr -dc '0-9')
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' '\n' < "/proc/$pid/cmdline" | grep -qxF -- "$pidfile" || return 1
  tr '\0' '\n' < "/proc/$pid/cmdline" | grep -q 'luigid$' || return 1
  echo "$pid"
}

# A pidfile that names no live luigid of ours is stale: say so and remove it (luigid would trust it).
drop_stale_pidfile() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(head -c 20 "$pidfile" | tr -dc '0-9')
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
    echo "removing stale pidfile $pidfile: pid $pid is now another process ($(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-80)), not luigid; it was left alone"
  else
    echo "removing stale pidfile $pidfile: pid ${pid:-?} is not running"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start)
    port=${2:-8082}
    address=${LUIGID_ADDRESS:-127.0.0.1}
    bin=${LUIGID:-$( [ -x .venv/bin/luigid ] && echo .venv/bin/luigid || command -v luigid || true )}
    [ -n "$bin" ] || die "luigid not found; run make install, or set LUIGID to its path"
    if pid=$(our_pid); then echo "luigid already running (pid $pid)"; exit 0; fi
    drop_stale_pidfile
    if [ -e "$statefile" ]; then  # unpickling runs code: only a plain file of ours, private
      { [ -L "$statefile" ] || [ ! -O "$statefile" ]; } && die "$statefile is a link or not yours; move it aside"
      chmod 600 "$statefile"
    fi
    for old in "$root/scheduler/state.pickle" "$root/scheduler/luigid.pid"; do
      [ -e "$old" ] && echo "note: $old is from an older layout and no longer used; delete it"
    done
    case $(stat -f -c %T "$state" 2>/dev/null) in nfs*|cifs|smb*|fuse*)
      echo "warning: $state is on a network filesystem; luigid's state belongs on a local disk (LUIGID_STATE_DIR)" >&2 ;;
    esac
    metrics=$(metrics_setting "$bin")
    disconnect_delay=$(seconds LUIGID_DISCONNECT_DELAY 60)
    retry_delay=$(seconds LUIGID_RETRY_DELAY 30)
    mkdir -p "$root/scheduler/logs"
    dir=$(cd "$root/scheduler" && pwd)
    # luigid --background runs under umask 0, so files it creates would be world-writable. Create its log
    # and task-history database first, with this shell's umask (it reopens existing files, keeping their
    # mode; SQLite gives its journal the database's mode), and take write access from others on old ones.
    for file in "$dir/logs/luigi-server.log" "$dir/task-history.sqlite"; do
      [ -L "$file" ] && die "$file is a symbolic link; move it aside"
      [ -e "$file" ] || : > "$file"
      chmod go-w "$file"
    done
    # luigid reads its settings from this file; paths are absolute because --background changes directory.
    cat > "$state/luigid.cfg" <<CFG
[scheduler]
record_task_history = true
state_path = $statefile
retry_delay = $retry_delay
worker_disconnect_delay = $disconnect_delay
# Look for dead workers whenever a worker asks for work, not only once a minute, so that a dead host's
# task is handed on as soon as the delays above have passed.
prune_on_get_work = true
# A task that fails twice within an hour is disabled for 10 s: a deterministic failure is retried once, not
# forever, and the command ends with exit 30 (a dead host's task fails once and is still handed on). The
# 10 s let every waiting worker see it and stop; a rerun within them runs nothing. See docs/alerts.md.
retry_count = 2
disable_persist = 10
# Mail failures in batches, one mail per [batch_email] email_interval ([email] and [smtp] come from
# luigi.cfg in this checkout, which luigid reads too); without an [email] receiver nothing is sent.
batch_emails = true
$metrics
[task_history]
db_connection = sqlite:///$dir/task-history.sqlite
[resources]
training = ${TRAINING_SLOTS:-2}
gpu = ${GPU_SLOTS:-1}
CFG
    LUIGI_CONFIG_PATH="$state/luigid.cfg" "$bin" --background --address "$address" --port "$port" \
      --pidfile "$pidfile" --logdir "$dir/logs" --state-path "$statefile"
    for _ in $(seq 50); do
      if curl -fsS "http://$address:$port/api/task_list" >/dev/null 2>&1; then
        echo "luigid running at http://$address:$port (pid $(cat "$pidfile")), state in $state, logs in $dir/logs"
        exit 0
      fi
      sleep 0.2
    done
    die "luigid did not answer on $address:$port; see $dir/logs" ;;
  stop)
    if ! pid=$(our_pid); then
      drop_stale_pidfile
      echo "luigid is not running"; exit 0
    fi
    kill "$pid"
    for _ in $(seq 50); do
      if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        [ -f "$statefile" ] && chmod 600 "$statefile"  # the daemon writes it under umask 0
        echo "luigid stopped"; exit 0
      fi
      sleep 0.2
    done
    die "luigid (pid $pid) did not stop; kill it by hand" ;;
  status)
    if pid=$(our_pid); then echo "luigid running (pid $pid), state in $state"; else echo "luigid not running"; exit 3; fi ;;
  *)
    echo "usage: $0 start [PORT] | stop | status" >&2; exit 2 ;;
esac
