#!/usr/bin/env bash
# Build RecBole 1.2.1's own venv once (default .venv-recbole), reuse it while its marker matches.
#
# Why a separate venv: RecBole 1.2.1 pins ray<=2.6.3 (not installable here, and only
# recbole.quick_start imports it) and uses np.float_, which numpy 2 removed; mllmrec's venv has
# numpy 2. So: torch first (the CPU wheel, not gigabytes of CUDA), then recbole without its
# declared dependencies, then those dependencies minus ray, with numpy<2.
#
#   adapters/recbole/venv.sh [PATH]      # prints PATH's python on the last line of stdout
#
# The marker PATH/.mllmrec-recipe holds the sha256 of the recipe below; a venv whose marker
# differs (or is missing: an interrupted build) is rebuilt from nothing.
set -euo pipefail
VENV="${1:-.venv-recbole}"
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"
RECBOLE="recbole==1.2.1"
DEPS=("numpy<2" scipy pandas tqdm colorlog==4.7.2 colorama==0.4.4 scikit-learn pyyaml tensorboard
      tabulate plotly texttable psutil thop)
HASH="$(printf '%s\n' "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')" "$TORCH" "$RECBOLE" "${DEPS[@]}" \
        | sha256sum | cut -d' ' -f1)"
MARKER="$VENV/.mllmrec-recipe"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$HASH" && -x "$VENV/bin/python" ]]; then
  echo "RecBole venv $VENV is up to date (recipe $HASH)" >&2
else
  start=$SECONDS
  echo "building the RecBole venv in $VENV" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  pip=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
  "${pip[@]}" "$TORCH" >&2
  "${pip[@]}" --no-deps "$RECBOLE" >&2
  "${pip[@]}" "${DEPS[@]}" >&2
  # Import the pieces we use (not recbole.quick_start: it imports ray).
  "$VENV/bin/python" -c "import recbole.config, recbole.data, recbole.trainer, recbole.model.general_recommender" >&2
  echo "$HASH" > "$MARKER"
  echo "RecBole venv built in $((SECONDS - start)) s" >&2
fi
echo "$VENV/bin/python"
