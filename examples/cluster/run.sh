#!/bin/sh
# Starts the three-node example cluster in the background (logs and pids in examples/cluster/data/), waits until every node is ready, and prints what to try.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
data="$here/data"
cd "$repo"

if [ ! -f dist/cli/main.js ]; then
  echo "building balancer (npm run build) ..."
  npm run build >/dev/null
fi
mkdir -p "$data"
# A copy without the secret (the npm package ships none) gets a fresh one: the example's nodes all read this file.
if [ ! -f "$here/cluster.secret" ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 >"$here/cluster.secret")
fi

# "backends" is the demo backends web-1..web-3 on 127.0.0.1:9001-9003 (see backends.yaml), so curl has something to reach.
for n in backends n1 n2 n3; do
  pidfile="$data/$n.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$n is already running (pid $(cat "$pidfile"))"
    continue
  fi
  extra=""
  if [ "$n" = backends ]; then extra="--demo-backends"; fi
  nohup ./bin/balancer.js start -c "$here/$n.yaml" $extra >"$data/$n.log" 2>&1 &
  echo $! >"$pidfile"
  echo "started $n (pid $!), log: examples/cluster/data/$n.log"
done

printf 'waiting for every node to be ready '
for port in 9091 9092 9093; do
  tries=0
  until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
      echo
      echo "the node with admin port $port is not ready after 20 s; see examples/cluster/data/*.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  printf '.'
done
echo ' ready'

cat <<'USAGE'

Three balancer nodes run on loopback:

  node  proxy                   admin                   raft
  n1    http://127.0.0.1:8081   http://127.0.0.1:9091   127.0.0.1:7001
  n2    http://127.0.0.1:8082   http://127.0.0.1:9092   127.0.0.1:7002
  n3    http://127.0.0.1:8083   http://127.0.0.1:9093   127.0.0.1:7003
  demo backends web-1..web-3 on 127.0.0.1:9001-9003

Try:
  curl -s http://127.0.0.1:8081/ ; curl -s http://127.0.0.1:8082/ ; curl -s http://127.0.0.1:8083/
  node bin/balancer.js -c examples/cluster/n2.yaml status
  node bin/balancer.js -c examples/cluster/n2.yaml cluster status
  # edit the pools in examples/cluster/n3.yaml (say, web-2's weight), save, and watch it reach the others:
  grep -A6 'pools:' examples/cluster/n1.yaml
  node bin/balancer.js -c examples/cluster/n1.yaml backends weight web web-3 5
  tail -f examples/cluster/data/n1.log
  # kill -9 the leader (see cluster status) and keep editing through the others:
  kill -9 "$(cat examples/cluster/data/n1.pid)"; node bin/balancer.js -c examples/cluster/n2.yaml cluster status
  # bring it back with run.sh: it catches up from the new leader

Stop with examples/cluster/stop.sh (add --wipe to delete the Raft data too).
USAGE
