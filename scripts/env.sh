# Source me: `source scripts/env.sh`. Points cargo at the libtorch that scripts/setup installed, puts the
# project's Python venv first on PATH and keeps builds in a persistent target dir outside the clone.
# Safe to source more than once.
export GLASS_EDGE_HOME="${GLASS_EDGE_HOME:-$HOME/.cache/glass-edge}"
_ge_venv="$GLASS_EDGE_HOME/venv"
_ge_site="$("$_ge_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
if [ -n "$_ge_site" ] && [ -d "$_ge_site/torch/lib" ]; then
  export LIBTORCH="$_ge_site/torch"
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$LIBTORCH/lib:"*) ;;
    *) export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
fi
unset LIBTORCH_USE_PYTORCH
export GLASS_EDGE_PYTHON="$_ge_venv/bin/python"
case ":$PATH:" in
  *":$_ge_venv/bin:"*) ;;
  *) export PATH="$_ge_venv/bin:$PATH" ;;
esac
# One persistent build folder: a fresh clone (CI) reuses the compiled libtorch bindings.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GLASS_EDGE_HOME/target}"
# libtorch's default OpenMP threading is erratic on a busy 2-core machine; tests and scripts use one
# thread unless the caller says otherwise.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Pretrained weights converted by scripts/setup.
export GLASS_EDGE_WEIGHTS="$GLASS_EDGE_HOME/weights"
unset _ge_venv _ge_site
