#!/usr/bin/env bash
# Type-check the TensorRT code (engine build, native TensorRT backend, engine sidecar, Triton
# repository) against tensorrt-stubs, since TensorRT itself cannot be installed without an NVIDIA GPU.
#
# The stubs are installed with --no-deps (their dependency, the real tensorrt wheel, cannot install
# here) into a private folder given to mypy through MYPYPATH, never into site-packages: installed
# there, the stubs' bare `tensorrt/__init__.pyi` folder imports as an empty namespace package, and
# code probing `import tensorrt` / importlib.util.find_spec("tensorrt") would think TensorRT is present.
# Exits non-zero on any type error.
set -euo pipefail
cd "$(dirname "$0")/.."

STUBS_VERSION="${TENSORRT_STUBS_VERSION:-10.13.0.35.1}"  # pinned: the stubs cover the TensorRT 10 API
STUBS_DIR="${ROADSEG_STUBS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/roadseg/typecheck-stubs}"
FILES=(export runtime/backends runtime/engine.py)  # all of export/ and runtime/backends/, plus the sidecar

if [ ! -f "$STUBS_DIR/tensorrt/__init__.pyi" ]; then
  echo "typecheck: installing tensorrt-stubs${STUBS_VERSION:+==$STUBS_VERSION} into $STUBS_DIR"
  mkdir -p "$STUBS_DIR"
  python -m pip install --quiet --disable-pip-version-check --no-deps --target "$STUBS_DIR" \
    "tensorrt-stubs${STUBS_VERSION:+==$STUBS_VERSION}"
fi
# tensorrt-stubs 10.13.0.35.1 has two kinds of syntax errors that stop mypy (it does not type-check
# past a stub it cannot parse): parameters named `in` (a keyword) in the plugin interfaces, and
# add_scale_nd's `channel_axis` without a default after defaulted parameters. Patch our private copy.
sed -i -E \
  -e 's/([(,] *)in: /\1in_: /g' \
  -e 's/(power: Weights = None, channel_axis: int)\)/\1 = ...)/' \
  "$STUBS_DIR/tensorrt_bindings/tensorrt.pyi"
if ! python -m mypy --version >/dev/null 2>&1; then
  python -m pip install --quiet --disable-pip-version-check "mypy>=1.10"
fi
version=$(ls -d "$STUBS_DIR"/tensorrt_stubs-*.dist-info 2>/dev/null | sed -E 's/.*tensorrt_stubs-(.*)\.dist-info/\1/' | head -n1)
echo "typecheck: mypy against tensorrt-stubs ${version:-?} on ${FILES[*]}"
# .ci/mypy-tensorrt.ini: follow_imports=silent (imported project modules give their types, their own
# findings are other checks' business) and the stubs' own errors silenced; only FILES are reported.
MYPYPATH="$STUBS_DIR" python -m mypy --config-file .ci/mypy-tensorrt.ini "${FILES[@]}"
echo "typecheck: ok"
