#!/bin/sh
# Starts the three-node example cluster in the background (logs and pids in its data dir), waits until every node is ready, and prints what to try.
#
# usage: examples/cluster/run.sh [--port-base N]
#   N defaults to 7000 (or $BALANCER_EXAMPLE_PORT_BASE): Raft on N+1..N+3, proxies on N+1081..N+1083, demo backends
#   on N+2001..N+2003, admin on N+2091..N+2093, all on 127.0.0.1. The default runs the files of this directory
#   (7001-7003, 8081-8083, 9001-9003, 9091-9093); another base runs copies with those ports in data/base-N/.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

usage() {
  sed -n "s/^# \\{0,1\\}//; 4,7p" "$here/run.sh"
}
base=${BALANCER_EXAMPLE_PORT_BASE:-7000}
while [ $# -gt 0 ]; do
  case "$1" in
    --port-base)
      if [ $# -lt 2 ]; then echo "run.sh: --port-base needs a number" >&2; usage >&2; exit 2; fi
      base=$2
      shift 2
      ;;
    --port-base=*) base=${1#--port-base=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$base" in
  '' | *[!0-9]*) echo "run.sh: the port base must be a number, got '$base'" >&2; exit 2 ;;
esac
if [ "$base" -lt 1024 ] || [ "$base" -gt 63000 ]; then
  echo "run.sh: the port base must be between 1024 and 63000 (it uses ports up to base+2093), got $base" >&2
  exit 2
fi

if [ ! -f dist/cli/main.js ]; then
  echo "building balancer (npm run build) ..."
  npm run build >/dev/null
fi
# A copy without the secret (the npm package ships none) gets a fresh one: the example's nodes all read this file.
if [ ! -f "$here/cluster.secret" ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 >"$here/cluster.secret")
fi

if [ "$base" = 7000 ]; then
  conf="$here"
  data="$here/data"
else
  # Copies of the node files with every 127.0.0.1 port moved by the base, in one pass (no port is moved twice).
  conf="$here/data/base-$base"
  data="$conf"
  mkdir -p "$conf"
  for n in backends n1 n2 n3 n4; do
    # An existing copy is the running cluster's (its nodes rewrite it): only a missing one is made.
    [ -f "$conf/$n.yaml" ] && continue
    node -e '
      const [from, to, base, secret] = process.argv.slice(1);
      const shift = Number(base) - 7000;
      let text = require("fs").readFileSync(from, "utf8");
      text = text.replace(/127\.0\.0\.1:(\d{4,5})\b/g, (all, port) => `127.0.0.1:${Number(port) + shift}`);
      text = text.replace(/secretFile: \.\/cluster\.secret/, `secretFile: ${JSON.stringify(secret)}`);
      require("fs").writeFileSync(to, text);
    ' "$here/$n.yaml" "$conf/$n.yaml" "$base" "$here/cluster.secret"
  done
fi
mkdir -p "$data"
port() { echo $((base + $1)); }
rel() { echo "${1#"$repo"/}"; }

# Which of the nodes still run (a pid file whose process lives); the others are started below.
running() { [ -f "$data/$1.pid" ] && kill -0 "$(cat "$data/$1.pid")" 2>/dev/null; }

# Every port a node to be started needs must be free: say which is taken and by what role, before starting anything.
wanted=""
for n in backends n1 n2 n3; do
  running "$n" && continue
  case "$n" in
    backends) wanted="$wanted $(port 2001):web-1 $(port 2002):web-2 $(port 2003):web-3" ;;
    n*) i=${n#n}; wanted="$wanted $(port "$i"):$n-raft $(port $((1080 + i))):$n-proxy $(port $((2090 + i))):$n-admin" ;;
  esac
done
if [ -n "$wanted" ]; then
  taken=$(node -e '
    const net = require("net");
    const check = (entry) => new Promise((resolve) => {
      const [port, role] = entry.split(":");
      const server = net.createServer();
      server.once("error", (error) => resolve(`${port} (${role}): ${error.code}`));
      server.listen(Number(port), "127.0.0.1", () => server.close(() => resolve(null)));
    });
    Promise.all(process.argv.slice(1).map(check)).then((r) => console.log(r.filter(Boolean).join("\n")));
  ' $wanted)
  if [ -n "$taken" ]; then
    echo "run.sh: these ports on 127.0.0.1 are taken, so nothing was started:" >&2
    echo "$taken" | sed 's/^/  /' >&2
    echo "Stop what holds them (ss -ltnp shows it), or pick other ports: examples/cluster/run.sh --port-base N" >&2
    exit 1
  fi
fi

# "backends" is the demo backends web-1..web-3 (see backends.yaml), so curl has something to reach.
for n in backends n1 n2 n3; do
  pidfile="$data/$n.pid"
  if running "$n"; then
    echo "$n is already running (pid $(cat "$pidfile"))"
    continue
  fi
  extra=""
  if [ "$n" = backends ]; then extra="--demo-backends"; fi
  # Appended, not truncated: the log of a node that crashed is what explains the crash.
  echo "--- run.sh starting $n at $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$data/$n.log"
  nohup ./bin/balancer.js start -c "$conf/$n.yaml" $extra >>"$data/$n.log" 2>&1 &
  echo $! >"$pidfile"
  echo "started $n (pid $!), log: $(rel "$data/$n.log")"
done

printf 'waiting for every node to be ready '
for n in n1 n2 n3; do
  admin=$(port $((2090 + ${n#n})))
  tries=0
  until curl -fs "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
    if ! running "$n"; then
      echo
      echo "run.sh: $n exited; the end of $(rel "$data/$n.log"):" >&2
      tail -n 5 "$data/$n.log" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 150 ]; then
      echo
      echo "run.sh: $n (admin port $admin) is not ready after 30 s; see $(rel "$data/$n.log")" >&2
      exit 1
    fi
    sleep 0.2
  done
  printf '.'
done
echo ' ready'

# The leader as the cluster reports it now (an election may still be under way: then none is named).
leader=$("$here/leader.sh" --port-base "$base" 2>/dev/null || true)

c=$(rel "$conf")
cat <<USAGE

Three balancer nodes run on loopback:

  node  proxy                    admin                    raft
  n1    http://127.0.0.1:$(port 1081)    http://127.0.0.1:$(port 2091)    127.0.0.1:$(port 1)
  n2    http://127.0.0.1:$(port 1082)    http://127.0.0.1:$(port 2092)    127.0.0.1:$(port 2)
  n3    http://127.0.0.1:$(port 1083)    http://127.0.0.1:$(port 2093)    127.0.0.1:$(port 3)
  demo backends web-1..web-3 on 127.0.0.1:$(port 2001)-$(port 2003)
  leader now: ${leader:-none yet (an election is under way; examples/cluster/leader.sh asks again)}

Try:
  curl -s http://127.0.0.1:$(port 1081)/ ; curl -s http://127.0.0.1:$(port 1082)/ ; curl -s http://127.0.0.1:$(port 1083)/
  node bin/balancer.js -c $c/n2.yaml status
  node bin/balancer.js -c $c/n2.yaml cluster status
  # edit the pools in $c/n3.yaml (say, web-2's weight), save, and watch it reach the others:
  grep -A6 'pools:' $c/n1.yaml
  node bin/balancer.js -c $c/n1.yaml backends weight web web-3 5
  tail -f $(rel "$data")/n1.log
  # kill -9 whichever node leads when you run this (leader.sh asks the cluster), and keep editing through the others:
  kill -9 "\$(cat $(rel "$data")/\$(examples/cluster/leader.sh --port-base $base).pid)"
  examples/cluster/leader.sh --port-base $base   # the new leader, elected within a few seconds
  # bring it back with run.sh$( [ "$base" = 7000 ] || echo " --port-base $base"): it catches up from the new leader

Stop with examples/cluster/stop.sh$( [ "$base" = 7000 ] || echo " --port-base $base") (add --wipe to delete the Raft data and logs too).
USAGE
