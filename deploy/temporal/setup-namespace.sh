#!/bin/sh
# One-shot in temporalio/admin-tools, once the server is healthy: the salesflow namespace and
# the deal search attributes (CONTRACT.md). Safe to re-run: what exists is kept. A search
# attribute that exists with another type stops the run — that needs a person.
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-salesflow}"
RETENTION="${TEMPORAL_RETENTION:-720h}"
ATTEMPTS="${SETUP_ATTEMPTS:-60}"
PAUSE="${SETUP_RETRY_SECONDS:-2}"
# Exactly workflows/names.py SEARCH_ATTRIBUTE_TYPES (tests/deploy/test_compose.py checks it).
SEARCH_ATTRIBUTES="DealId=Int DealStage=Keyword DealManager=Int DealAmount=Double DealOverdue=Bool"

retry() {  # retry <what> <command…>: the server, then its namespace cache, need a moment
    what=$1
    shift
    n=0
    until "$@"; do
        n=$((n + 1))
        if [ "$n" -ge "$ATTEMPTS" ]; then
            echo "gave up after $ATTEMPTS attempts: $what" >&2
            return 1
        fi
        sleep "$PAUSE"
    done
}

create_attribute() {  # create_attribute <name> <type>; 0 done, 1 try again, exits on a clash
    if out=$(temporal operator search-attribute create --address "$ADDRESS" \
        --namespace "$NAMESPACE" --name "$1" --type "$2" 2>&1); then
        echo "search attribute $1 $2: ok"
        return 0
    fi
    case "$out" in
    *"different type"*)
        echo "$out" >&2
        echo "search attribute $1 exists in $NAMESPACE with another type; see docs/PRODUCTION.md" >&2
        exit 2
        ;;
    esac
    echo "search attribute $1 not yet: $out" >&2
    return 1
}

retry "Temporal at $ADDRESS is not serving" \
    temporal operator cluster health --address "$ADDRESS"

if temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" \
    >/dev/null 2>&1; then
    echo "namespace $NAMESPACE exists"
else
    temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
        --retention "$RETENTION"
fi

for pair in $SEARCH_ATTRIBUTES; do
    retry "search attribute ${pair%%=*}" create_attribute "${pair%%=*}" "${pair#*=}"
done
echo "namespace $NAMESPACE is ready"
