#!/bin/sh
# Enrols a lab federation (a hub and agencies) with intelmesh's own flow, as deploy/README.md
# sections 1-5 describe, for deploy/compose.yaml's one-shot `init` service (and any host):
#   admin keygen (two operators, alice and bob; threshold 2), federation init, pki issue-admin,
#   then the hub is started here for the enrolment only, and per agency: node init at the
#   agency, `admin members add` proposed by alice and published by bob's `admin roster sign`,
#   `admin members bundle` (certificate record, proposed and signed the same way), node join.
#
# Usage: enrol.sh AGENCY...   where AGENCY is DIR,ORG,CC,NAME[,FEDERATION_LISTEN,API_LISTEN]
#   DIR is the agency's directory under $INTELMESH_ROOT (its node.toml is DIR/node.toml);
#   the listen addresses default to 0.0.0.0:7700 and 127.0.0.1:7701 (one node per container).
# Settings (environment; none is secret):
#   INTELMESH              the binary                                  [intelmesh]
#   INTELMESH_ROOT         where everything is written                 [/intelmesh]
#   FEDERATION_ID          the federation id                           [EXAMPLE-FED]
#   HUB_ORG, HUB_NAME, HUB_COUNTRY                                     [SG-IGCI, Example hub, SG]
#   HUB_ADDRESS            where agencies dial the hub (in the roster) [hub:7700]
#   HUB_FEDERATION_LISTEN, HUB_API_LISTEN                              [0.0.0.0:7700, 127.0.0.1:7701]
#   CERT_DAYS              agencies' node certificates                 [365]
#   METRICS_LISTEN         if set, a [metrics] section listening there is added to every
#                          config once enrolment is done (the container probes' endpoint)
#
# Layout: $INTELMESH_ROOT/operators (authority keys, admin certificates, bundles: only this job
# sees it), $INTELMESH_ROOT/hub (what `federation init` wrote; the hub's config is
# hub/hub/node.toml), $INTELMESH_ROOT/DIR per agency. Keys are written 0600 by intelmesh.
# A second run after a complete one does nothing (operators/enrolled marks it); a run that
# stopped half-way is refused, since keys are never overwritten: start from empty volumes.
#
# This puts both operators' authority keys in one place, which suits a lab or a demo only: in
# production each operator keeps their key on their own machine (deploy/README.md).
set -eu

INTELMESH="${INTELMESH:-intelmesh}"
ROOT="${INTELMESH_ROOT:-/intelmesh}"
FEDERATION_ID="${FEDERATION_ID:-EXAMPLE-FED}"
HUB_ORG="${HUB_ORG:-SG-IGCI}"
HUB_NAME="${HUB_NAME:-Example hub}"
HUB_COUNTRY="${HUB_COUNTRY:-SG}"
HUB_ADDRESS="${HUB_ADDRESS:-hub:7700}"
HUB_FEDERATION_LISTEN="${HUB_FEDERATION_LISTEN:-0.0.0.0:7700}"
HUB_API_LISTEN="${HUB_API_LISTEN:-127.0.0.1:7701}"
CERT_DAYS="${CERT_DAYS:-365}"
METRICS_LISTEN="${METRICS_LISTEN:-}"

OPS="$ROOT/operators"
FED_DIR="$ROOT/hub"
HUB_CONFIG="$FED_DIR/hub/node.toml"
HUB_PID=""

say() { printf 'enrol: %s\n' "$*"; }
die() {
  printf 'enrol: %s\n' "$*" >&2
  exit 1
}

[ "$#" -gt 0 ] || die "no agency given (usage: enrol.sh DIR,ORG,CC,NAME[,FEDERATION_LISTEN,API_LISTEN]...)"
command -v "$INTELMESH" >/dev/null 2>&1 || die "$INTELMESH not found (set INTELMESH)"

if [ -f "$OPS/enrolled" ]; then
  say "already enrolled ($OPS/enrolled): nothing to do"
  exit 0
fi
if [ -e "$FED_DIR/genesis.roster" ]; then
  die "$FED_DIR holds a federation from a run that did not finish; start from empty volumes"
fi
case "$ROOT" in
  *[[:space:]]*) die "INTELMESH_ROOT must not contain spaces: $ROOT" ;;
esac
mkdir -p "$OPS" "$FED_DIR"

# The hub's API as a client reaches it: a wildcard listen address is dialled on loopback.
case "$HUB_API_LISTEN" in
  0.0.0.0:*) HUB_API="127.0.0.1:${HUB_API_LISTEN#0.0.0.0:}" ;;
  *) HUB_API="$HUB_API_LISTEN" ;;
esac

stop_hub() {
  if [ -n "$HUB_PID" ]; then
    kill -TERM "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
    HUB_PID=""
  fi
}
trap stop_hub EXIT
trap 'stop_hub; exit 1' INT TERM

# 1-2: the operators' authority keys, and the genesis signed by both (threshold 2).
for op in alice bob; do
  "$INTELMESH" admin keygen --name "$op" --out "$OPS/$op.authority.key" >/dev/null
done
init_out="$("$INTELMESH" federation init --id "$FEDERATION_ID" \
  --hub "$HUB_ORG" --hub-name "$HUB_NAME" --hub-country "$HUB_COUNTRY" \
  --authority "alice=$OPS/alice.authority.key.pub" --authority "bob=$OPS/bob.authority.key.pub" \
  --threshold 2 --sign-with "$OPS/alice.authority.key" --sign-with "$OPS/bob.authority.key" \
  --hub-address "$HUB_ADDRESS" --federation-listen "$HUB_FEDERATION_LISTEN" \
  --api-listen "$HUB_API_LISTEN" --dir "$FED_DIR")"
pin="$(printf '%s\n' "$init_out" | sed -n 's/^genesis pin: //p')"
[ -n "$pin" ] || die "federation init printed no genesis pin: $init_out"
say "federation $FEDERATION_ID created, hub $HUB_ORG at $HUB_ADDRESS, genesis pin $pin"

# 4: the operators' admin certificates, from the hub's service CA.
for op in alice bob; do
  "$INTELMESH" pki issue-admin --ca-dir "$FED_DIR/hub/service-ca" --org "$HUB_ORG" \
    --name "$op" --out "$OPS" >/dev/null
done

# 3: the hub runs for the enrolment (its Admin service takes the proposals).
"$INTELMESH" run --config "$HUB_CONFIG" --check
"$INTELMESH" run --config "$HUB_CONFIG" >"$OPS/hub-during-enrolment.log" 2>&1 &
HUB_PID=$!

# `intelmesh admin GROUP [connection] ARGS...` as operator $1.
admin_as() {
  op="$1"
  group="$2"
  shift 2
  "$INTELMESH" admin "$group" --api "$HUB_API" --node-org "$HUB_ORG" \
    --ca "$FED_DIR/hub/service-ca/ca.pem" --cert "$OPS/$op.pem" --key "$OPS/$op.key" "$@"
}

tries=0
until admin_as alice status >/dev/null 2>&1; do
  kill -0 "$HUB_PID" 2>/dev/null ||
    die "the hub stopped during enrolment: $(cat "$OPS/hub-during-enrolment.log")"
  tries=$((tries + 1))
  [ "$tries" -lt 120 ] || die "the hub's Admin service did not answer at $HUB_API within 60 s"
  sleep 0.5
done

# `admin GROUP … ARGS` proposed by alice, then published by bob's signature (threshold 2).
approve() {
  group="$1"
  shift
  proposed="$(admin_as alice "$group" "$@" --sign-with "$OPS/alice.authority.key")"
  id="$(printf '%s\n' "$proposed" | sed -n 's/^proposal \([0-9a-f]*\) (roster version [0-9]*):$/\1/p')"
  [ -n "$id" ] || die "no proposal in: $proposed"
  signed="$(admin_as bob roster sign --proposal "$id" --key "$OPS/bob.authority.key")"
  case "$signed" in
    *"proposal $id: published"*) ;;
    *) die "bob's signature did not publish proposal $id: $signed" ;;
  esac
}

# 5: each agency.
configs="$HUB_CONFIG"
for spec in "$@"; do
  IFS=, read -r dir org cc name fed_listen api_listen <<EOF
$spec
EOF
  [ -n "$dir" ] && [ -n "$org" ] && [ -n "$name" ] || die "agency '$spec': expected DIR,ORG,CC,NAME"
  node_dir="$ROOT/$dir"
  "$INTELMESH" node init --org "$org" --name "$name" --country "$cc" --dir "$node_dir" >/dev/null
  approve members add --request "$node_dir/enrolment.request" --reason "$org enrolled by deploy/enrol.sh"
  approve members bundle "$org" --days "$CERT_DAYS" --out "$OPS/$org.bundle" --reason "first certificate"
  "$INTELMESH" node join --dir "$node_dir" --bundle "$OPS/$org.bundle" \
    --federation-listen "${fed_listen:-0.0.0.0:7700}" --api-listen "${api_listen:-127.0.0.1:7701}" >/dev/null
  say "$org admitted and joined: $node_dir/node.toml"
  configs="$configs $node_dir/node.toml"
done
stop_hub

if [ -n "$METRICS_LISTEN" ]; then
  for config in $configs; do
    printf '\n[metrics]               # /metrics, /livez, /readyz (plain HTTP; the probes)\nlisten = "%s"\n' \
      "$METRICS_LISTEN" >>"$config"
  done
  say "metrics on $METRICS_LISTEN in every config"
fi
date -u '+%Y-%m-%dT%H:%M:%SZ' >"$OPS/enrolled"
say "done: hub $HUB_CONFIG; roster version $((1 + 2 * $#)); genesis pin $pin"
