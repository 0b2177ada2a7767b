# Sourced by the chart's and the image's tests: sets HELM to a helm binary,
# installing helm from the Go module proxy into target/tools when there is
# none. Run from the repository root.
HELM_VERSION=v3.19.0
if [ -n "${HELM:-}" ]; then :
elif command -v helm >/dev/null 2>&1; then HELM=helm
else
    TOOLS="$PWD/target/tools"
    if [ ! -x "$TOOLS/helm" ]; then
        mkdir -p "$TOOLS"
        echo "installing helm $HELM_VERSION into $TOOLS (go install)"
        GOBIN="$TOOLS" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    fi
    HELM="$TOOLS/helm"
fi
