#!/usr/bin/env bash
# A short scripted tour of the real botstate CLI on the embedded SQLite default (the daemon's demo
# is `npm start`). It starts three jobs, records trades (an 18-decimal amount and an
# idempotent repeat among them), pauses, resumes and liquidates, then prints what botstate knows.
#
# Run it with `npm run tour`. It is repeatable: ./demo/tour.db is recreated on every run.
# Every step goes through `npx botstate`, so the project's pinned Node 24 runs it; any failing
# step stops the demo with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=demo
export BOTSTATE_DB="$DEMO_DIR/tour.db"

# The CLI runs from dist/: build it when it is missing or older than the sources.
if [ ! -f dist/cli/main.js ] || [ -n "$(find src -newer dist/cli/main.js -print -quit)" ]; then
  echo "Building botstate (dist/ is missing or out of date)..."
  npm run --silent build
fi

mkdir -p "$DEMO_DIR"
rm -f "$BOTSTATE_DB" "$BOTSTATE_DB-wal" "$BOTSTATE_DB-shm"

LGI=0xbbd9aDe16525acb4B336b6dAd3b9762901522B07
DEGEN=0x4ed4E862860beD51a9570b96d89aF5E1B0Efefed
BRETT=0x532f27101965dd16442E59d40670FaF5eBB142E4

botstate() {
  echo "\$ botstate $*"
  npx --no-install --loglevel=error botstate "$@"
}

# Shows the command and only the first line of its output (the headline).
botstate_brief() {
  echo "\$ botstate $*"
  local out
  out=$(npx --no-install --loglevel=error botstate "$@")
  printf '%s\n' "${out%%$'\n'*}"
}

heading() {
  printf '\n== %s ==\n' "$1"
}

heading "botstate $(npx --no-install --loglevel=error botstate --version) demo, database $BOTSTATE_DB (fresh)"

heading "Start three jobs"
botstate_brief start "$LGI" --symbol LGI --set accumulate.dcaAmount=25 --set accumulate.dcaIntervalHours=0.5
botstate_brief start "$DEGEN" --symbol DEGEN --mode liquidity --set liquidity.targetRatio=0.4
cat >"$DEMO_DIR/brett.json" <<'JSON'
{ "accumulate": { "dcaAmount": 12.5, "maxAccumulationUsd": 250 }, "limits": { "maxTradesPerHour": 6 } }
JSON
botstate_brief start "$BRETT" --symbol BRETT --config "$DEMO_DIR/brett.json"
botstate list

heading "Record trades (amounts are exact, up to 18 decimals)"
botstate record "$LGI" --side buy --reason dca --base 1234.567890123456789012 --quote 25 --price 0.02025 \
  --client-order-id lgi-000001 --tx-hash 0x9f1c2d
botstate record "$LGI" --side buy --reason dip_buy --base 2631.578947368421052631 --quote 50 --price 0.019 \
  --client-order-id lgi-000002
echo "# the same clientOrderId again (a retry after a crash): recorded once, nothing changes"
botstate record "$LGI" --side buy --reason dip_buy --base 2631.578947368421052631 --quote 50 --price 0.019 \
  --client-order-id lgi-000002
botstate record "$DEGEN" --side buy --reason support_buy --base 40000 --quote 120 --price 0.003 --client-order-id degen-000001
botstate record "$DEGEN" --side sell --reason rebalance --base 15000.5 --quote 48.0016 --price 0.0032 --client-order-id degen-000002
botstate record "$BRETT" --side buy --reason dca --base 100.000000000000000001 --quote 12.5 --price 0.125 --client-order-id brett-000001

heading "Lifecycle: pause and resume LGI (lower case is the same token), liquidate DEGEN, pause BRETT"
lgi_lower=$(printf '%s' "$LGI" | tr 'A-F' 'a-f')
botstate_brief pause "$lgi_lower"
botstate_brief resume "$LGI"
botstate_brief liquidate "$DEGEN"
botstate_brief pause "$BRETT"
echo "# a refused action names the current status and changes nothing (exit code 3):"
rc=0
botstate pause "$BRETT" || rc=$?
if [ "$rc" -ne 3 ]; then
  echo "demo: expected botstate pause of a PAUSED job to exit 3, got $rc" >&2
  exit 1
fi

heading "Every job"
botstate list

heading "One job"
botstate status "$LGI"

heading "Its trades"
botstate trades "$LGI"

heading "Its audit history"
botstate history "$LGI"

heading "The audit log's hash chains"
botstate verify

heading "Machine-readable output (--json): amounts as exact decimal strings, config values as exact numbers"
botstate status "$DEGEN" --json | grep -E '^\$ |"(status|tokenBalance|totalAccumulated|targetRatio)"'

printf '\nDone. The demo database is %s; try: npx botstate list --db %s\n' "$BOTSTATE_DB" "$BOTSTATE_DB"
