#!/usr/bin/env bash
# Tests the chart with real helm: lint, then render with several value sets
# and check what comes out (the rendered config is checked by weir itself).
# Installs helm from the Go module proxy into target/tools when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
WEIR=${WEIR_BIN:-target/debug/weir}
source helm/helm.sh

passed=0
failed=0
check() {
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        passed=$((passed + 1))
    else
        echo "FAILED: $name"
        failed=$((failed + 1))
    fi
}
render() { "$HELM" template t helm/weir "$@"; }
has() { grep -qF -- "$2" <<<"$1"; }
lacks() { ! grep -qF -- "$2" <<<"$1"; }

check "helm lint --strict" "$HELM" lint --strict helm/weir

default=$(render)
check "a StatefulSet" has "$default" "kind: StatefulSet"
check "the HTTP port" has "$default" "containerPort: 7700"
check "the binary port" has "$default" "containerPort: 7701"
check "both ports on the Service" has "$(render --show-only templates/service.yaml)" "name: binary"
check "readiness on /readyz" has "$default" "path: /readyz"
check "liveness on /healthz" has "$default" "path: /healthz"
check "listening on all interfaces" has "$default" "--http-addr=0.0.0.0:7700"
check "the built-in config by default" lacks "$default" "--config="
check "no ConfigMap by default" lacks "$default" "kind: ConfigMap"
check "no Secret by default" lacks "$default" "kind: Secret"
check "not root" has "$default" "runAsNonRoot: true"

configured=$(render --set-file config=src/config/default.toml)
check "a config becomes a ConfigMap" has "$configured" "kind: ConfigMap"
check "and is passed to weir" has "$configured" "--config=/etc/weir/config/weir.toml"
config_file=$(mktemp)
render --set-file config=src/config/default.toml --show-only templates/configmap.yaml \
    | sed -n '/weir.toml: |/,$p' | tail -n +2 | sed 's/^    //' >"$config_file"
check "the rendered config is one weir accepts" "$WEIR" check-config "$config_file"
rm -f "$config_file"

secret=$(render --set adminToken.value=s3cret)
check "an admin token becomes a Secret" has "$secret" "admin-token: \"czNjcmV0\""
check "and reaches weir's environment" has "$secret" "name: WEIR_ADMIN_TOKEN"
existing=$(render --set adminToken.existingSecret=mine)
check "an existing Secret is used" has "$existing" "name: mine"
check "and none is created" lacks "$existing" "kind: Secret"

check "one replica is not a cluster" lacks "$default" "--seed="
check "and needs no cluster secret" lacks "$default" "cluster-secret"
check "more replicas without a secret are refused" bash -c "! '$HELM' template t helm/weir --set replicaCount=3"
check "with a reason" bash -c "'$HELM' template t helm/weir --set replicaCount=3 2>&1 | grep -q 'needs a shared secret'"
check "a short secret is refused" bash -c "! '$HELM' template t helm/weir --set replicaCount=3 --set cluster.secret.value=short"
cluster=$(render --set replicaCount=3 --set cluster.secret.value=0123456789abcdef0123)
check "three replicas" has "$cluster" "replicas: 3"
check "at most one down at a time" has "$cluster" "maxUnavailable: 1"
check "seeded by the headless Service" has "$cluster" "--seed=t-weir-peers.default.svc.cluster.local:7702"
check "advertising the pod IP" has "$cluster" '--advertise-addr=$(POD_IP):7702'
check "the gossip port (UDP)" has "$cluster" "containerPort: 7702"
check "the sync port (UDP)" has "$cluster" "containerPort: 7703"
check "a cluster Secret" has "$cluster" "cluster-secret: \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM=\""
check "mounted as weir's keyring file" has "$cluster" "--cluster-secret-file=/etc/weir/cluster/cluster-secret"
check "from the Secret" has "$cluster" "mountPath: /etc/weir/cluster"
check "with a grace for rotations" has "$cluster" "--cluster-secret-grace=5m"
check "a headless Service that lists starting pods" has "$cluster" "publishNotReadyAddresses: true"
existing_cluster=$(render --set replicaCount=2 --set cluster.secret.existingSecret=ours)
check "an existing cluster Secret is used" has "$existing_cluster" "secretName: ours"

check "the image built by make image by default" has "$default" "image: \"weir:0.1.0\""
check "values of the wrong type are refused" bash -c "'$HELM' template t helm/weir --set replicaCount=three 2>&1 | grep -q 'want integer'"
check "unknown values are refused" bash -c "'$HELM' template t helm/weir --set replicas=3 2>&1 | grep -q \"additional properties 'replicas'\""
check "a pre-stop pause" has "$default" "sleep:"
check "no disruption budget for one pod" lacks "$default" "PodDisruptionBudget"
check "a NetworkPolicy" has "$default" "kind: NetworkPolicy"
check "that admits only the release's pods to the sync port" bash -c "
    '$HELM' template t helm/weir --show-only templates/networkpolicy.yaml | grep -B12 'port: 7703' | grep -q 'podSelector:'"
check "no Prometheus Operator objects by default" lacks "$default" "monitoring.coreos.com"
monitored=$(render --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true \
    --set metrics.grafanaDashboard.enabled=true)
check "a ServiceMonitor" has "$monitored" "kind: ServiceMonitor"
check "a PrometheusRule with the shipped rules" has "$monitored" "alert: WeirSnapshotRefused"
check "the Grafana dashboard for the sidecar" has "$monitored" 'grafana_dashboard: "1"'
check "holding the dashboard" has "$monitored" "weir_checks_total"
read_token=$(render --set readToken.value=r3ad)
check "a read token from a Secret" has "$read_token" "name: WEIR_READ_TOKEN"
check "memory requested for the default key cap" has "$default" "memory: 384Mi"

check "no TLS by default" lacks "$default" "--tls-cert"
check "probes over HTTP by default" has "$default" "scheme: HTTP"
tls=$(render --set tls.existingSecret=weir-tls --set-file config=src/config/default.toml)
check "a TLS Secret is mounted" has "$tls" "secretName: weir-tls"
check "and given to weir" has "$tls" "--tls-cert=/etc/weir/tls/tls.crt"
check "with its key" has "$tls" "--tls-key=/etc/weir/tls/tls.key"
check "peers unchecked by default" lacks "$tls" "--peer-ca"
verified=$(render --set tls.existingSecret=weir-tls --set tls.verifyPeers=true)
check "or checked against the Secret's CA" has "$verified" "--peer-ca=/etc/weir/tls/ca.crt"
check "probes use HTTPS" has "$tls" "scheme: HTTPS"
check "beside the config" has "$tls" "mountPath: /etc/weir/config"

check "no snapshots by default" lacks "$default" "WEIR_SNAPSHOT"
redis_snapshots=$(render --set snapshot.url.value=redis://:pw@redis:6379/0)
check "a snapshot URL becomes a Secret" has "$redis_snapshots" "snapshot-url: \"cmVkaXM6Ly86cHdAcmVkaXM6NjM3OS8w\""
check "and reaches weir's environment" has "$redis_snapshots" "name: WEIR_SNAPSHOT"
check "with the interval" has "$redis_snapshots" "--snapshot-interval=5s"
check "and no volume" lacks "$redis_snapshots" "volumeClaimTemplates"
check "a grace that covers the final snapshot" has "$redis_snapshots" "terminationGracePeriodSeconds: 30"
existing_snapshots=$(render --set snapshot.url.existingSecret=redis-url)
check "an existing snapshot Secret is used" has "$existing_snapshots" "name: redis-url"
check "a file snapshot without a volume is refused" bash -c "! '$HELM' template t helm/weir --set snapshot.url.value=file:///var/lib/weir/snapshot"
file_snapshots=$(render --set snapshot.url.value=file:///var/lib/weir/snapshot --set snapshot.persistence.enabled=true)
check "a file snapshot gets a volume per pod" has "$file_snapshots" "volumeClaimTemplates"
check "mounted where the URL points" has "$file_snapshots" "mountPath: /var/lib/weir"
check "and writable by weir's group" has "$file_snapshots" "fsGroup: 65532"
snapshot_flags=$(sed -n 's/^ *- \(--snapshot-[a-z]*=.*\)$/\1/p' <<<"$redis_snapshots" | tr '\n' ' ')
check "the chart's snapshot flags are flags weir accepts" bash -c "
    [ -n '$snapshot_flags' ] && '$WEIR' serve $snapshot_flags --help >/dev/null"

# The flags the chart passes are flags weir accepts: run them (with local
# addresses) and ask the node for its cluster view.
keyring=$(mktemp -d)
echo 0123456789abcdef0123 >"$keyring/cluster-secret"
flags=$(render --set replicaCount=3 --set cluster.secret.value=0123456789abcdef0123 \
    | sed -n 's/^ *- \(--\(sync-interval-ms\|dead-node-grace-secs\|cluster-id\|cluster-secret-grace\|cluster-secret-file\)=.*\)$/\1/p' \
    | sed "s#/etc/weir/cluster#$keyring#" | tr '\n' ' ')
check "weir accepts the chart's cluster flags" bash -c "
    '$WEIR' serve $flags --http-addr 127.0.0.1:17990 \
        --bin-addr 127.0.0.1:17991 --gossip-addr 127.0.0.1:17992 --sync-addr 127.0.0.1:17993 --log error &
    pid=\$!; trap 'kill \$pid' EXIT
    for _ in \$(seq 1 100); do
        python3 -c 'import json, sys, urllib.request as u
sys.exit(json.load(u.urlopen(\"http://127.0.0.1:17990/v1/cluster\"))[\"cluster_id\"] != \"t-weir\")' 2>/dev/null && exit 0
        sleep 0.1
    done
    exit 1"

echo "helm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
