# The cluster section of bench/run (sourced by it: uses its run, wait_line, start_roster,
# prepare_accounts, pids, tmp and sizes). CLUSTER_NODES Roster nodes (the release build) on one
# private PostgreSQL and one private redis-server, each on a free port (never the machine's own
# services), all on the same cores as the load generator:
#   cluster-hold              CLUSTER_HOLD sockets over the nodes (per node: sockets, CPU, RSS;
#                             Redis commands and CPU per socket while connecting)
#   cluster-fanout-single-R   CLUSTER_FANOUT watchers on one node as bench/run's single-node runs
#                             start it (SQLite, in-process layer): the reference
#   cluster-fanout-node-R     the same watchers all on the first node of the cluster (its Redis layer)
#   cluster-fanout-spread-R   the same watchers spread over every node, the changes on the first
# The three fan-out setups run in turn, CLUSTER_REPEAT times, so that each sees the same load.

# free_port: a free TCP port on 127.0.0.1, never one of the machine's services.
free_port() {
  local p
  while :; do
    p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    case "$p" in 5432 | 6379 | 5672 | 1883 | 4222) ;; *) echo "$p"; return 0 ;; esac
  done
}

# pg_bindir: where initdb and pg_ctl are (pg_config --bindir, else the newest /usr/lib/postgresql/*/bin).
pg_bindir() {
  local d
  d="$(pg_config --bindir 2>/dev/null || true)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  echo "PostgreSQL server binaries (initdb, pg_ctl) not found (apt-get install postgresql)" >&2
  return 1
}

pg_root="" pg_stop=() redis_dir=""

# start_pg: a private PostgreSQL (initdb + pg_ctl in a temp dir on a free port, as
# crates/testkit/src/pg.rs starts the tests' one; as the postgres user when run as root).
# Sets pgurl; cluster_cleanup stops it.
start_pg() {
  local bindir as=() port
  bindir="$(pg_bindir)"
  pg_root="$(mktemp -d /tmp/roster-bench-pg.XXXXXX)"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$pg_root"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bindir/initdb" -D "$pg_root/data" -A trust -U postgres -E UTF8 --no-sync >"$pg_root/initdb.log" 2>&1
  port="$(free_port)"
  "${as[@]}" "$bindir/pg_ctl" -D "$pg_root/data" -l "$pg_root/postgres.log" -w -t 60 -o \
    "-p $port -k $pg_root -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
  pg_stop=("${as[@]}" "$bindir/pg_ctl" -D "$pg_root/data" -m immediate stop)
  "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -q -c 'CREATE DATABASE roster' postgres
  pgurl="postgres://postgres@127.0.0.1:$port/roster"
}

# start_redis: a private redis-server on a free port, nothing kept on disk. Sets redis_url, redis_pid.
start_redis() {
  local port
  redis_dir="$(mktemp -d /tmp/roster-bench-redis.XXXXXX)"
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
    --dir "$redis_dir" --logfile redis.log &
  redis_pid=$!; pids+=("$redis_pid")
  for _ in $(seq 1 600); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || { echo "redis-server did not start" >&2; return 1; }
  redis_url="redis://127.0.0.1:$port"
}

# start_nodes: CLUSTER_NODES Roster nodes on the PostgreSQL and the Redis, each on a free port,
# waited for until /readyz answers 200. Sets node_urls, node_pids.
start_nodes() {
  local i u
  node_urls=() node_pids=()
  for i in $(seq 1 "$CLUSTER_NODES"); do
    # --signup-limit, --presence-grace 0s: as the single node (bench/README.md).
    "$ROSTER_BIN" serve --bind 127.0.0.1:0 --database-url "$pgurl" --redis-url "$redis_url" \
      --node-name "bench-node$i" --presence-grace 0s --signup-limit 1000000 >"$tmp/node$i.log" 2>&1 &
    node_pids+=("$!"); pids+=("$!")
  done
  for i in $(seq 1 "$CLUSTER_NODES"); do
    u="http://$(wait_line "$tmp/node$i.log" '.*Roster serving on http:\/\/([0-9.:]+).*')"
    for _ in $(seq 1 600); do
      curl -fsS -o /dev/null "$u/readyz" 2>/dev/null && break
      sleep 0.1
    done
    curl -fsS -o /dev/null "$u/readyz" || { echo "node $i ($u) not ready:" >&2; tail "$tmp/node$i.log" >&2; return 1; }
    node_urls+=("$u")
  done
}

cluster_cleanup() {
  if [ "${#pg_stop[@]}" -gt 0 ]; then "${pg_stop[@]}" >/dev/null 2>&1 || true; fi
  [ -n "$pg_root" ] && rm -rf "$pg_root"
  [ -n "$redis_dir" ] && rm -rf "$redis_dir"
  return 0
}

run_cluster() {
  prepare_accounts
  start_pg
  start_redis
  # The accounts and sessions of the single-node runs, copied (sessions too: the cookie cache
  # stays valid on every node).
  "$ROSTER_BIN" copy --database-url "sqlite://$tmp/big.db" --to "$pgurl" >"$tmp/copy.log" 2>&1
  start_nodes
  local u=() p=() x r
  for x in "${node_urls[@]}"; do u+=(--url "$x"); done
  for x in "${node_pids[@]}"; do p+=(--server-pid "$x"); done
  local k=(--redis-url "$redis_url" "${cookies[@]}" --sockets-per-user "$SPU")
  run cluster-hold hold "${u[@]}" "${p[@]}" "${k[@]}" --sockets "$CLUSTER_HOLD" --hold-secs 2

  start_roster "$tmp/big.db" 0s
  for r in $(seq 1 "$CLUSTER_REPEAT"); do
    run "cluster-fanout-single-$r" fanout --url "$rurl" --server-pid "$rpid" "${cookies[@]}" --sockets-per-user "$SPU" \
      --watchers "$CLUSTER_FANOUT" --changes "$CHANGES"
    run "cluster-fanout-node-$r" fanout --url "${node_urls[0]}" --server-pid "${node_pids[0]}" "${k[@]}" \
      --watchers "$CLUSTER_FANOUT" --changes "$CHANGES"
    run "cluster-fanout-spread-$r" fanout "${u[@]}" "${p[@]}" "${k[@]}" --watchers "$CLUSTER_FANOUT" --changes "$CHANGES"
  done
  kill "$rpid" "${node_pids[@]}" 2>/dev/null || true
  wait "$rpid" "${node_pids[@]}" 2>/dev/null || true
  kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
  cluster_cleanup
  pg_stop=() pg_root="" redis_dir=""
}
