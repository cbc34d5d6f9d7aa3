# usage: source lib/django.sh — Django's collectstatic at build time, as on Heroku.

# django::collectstatic <venv> <platform dir>: runs `manage.py collectstatic --noinput` for
# Django apps unless DISABLE_COLLECTSTATIC=1; its failure fails the build with its output.
django::collectstatic() {
  local venv="$1" platform="$2"
  [[ -f manage.py ]] || return 0
  "${venv}/bin/python" -c 'import django' 2>/dev/null || return 0
  if [[ "$(platform::get "${platform}" DISABLE_COLLECTSTATIC)" == "1" ]]; then
    output::step "Skipping collectstatic (DISABLE_COLLECTSTATIC=1)"
    return 0
  fi
  output::step "Running: manage.py collectstatic --noinput"
  local log
  log="$(mktemp)"
  if ! "${venv}/bin/python" manage.py collectstatic --noinput >"${log}" 2>&1; then
    output::indent <"${log}"
    output::error "collectstatic failed: the output above says why." \
      "Fix the static files settings, or set DISABLE_COLLECTSTATIC=1 to skip it" \
      "(paas config:set DISABLE_COLLECTSTATIC=1)."
    exit 1
  fi
  tail -n 3 "${log}" | output::indent
}
