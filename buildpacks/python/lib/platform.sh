# usage: source lib/platform.sh — the app's config vars (<platform>/env/<KEY>) for build tools.

# platform::export <platform dir>: exports the config vars, as Heroku's buildpacks do, so that
# pip, npm and manage.py see settings such as PIP_INDEX_URL, SECRET_KEY or DATABASE_URL. The
# variables that would break the build container itself are left out.
platform::export() {
  local file name
  [[ -d "$1/env" ]] || return 0
  for file in "$1"/env/*; do
    [[ -f "${file}" ]] || continue
    name="$(basename "${file}")"
    case "${name}" in
      PATH | HOME | GIT_DIR | CPATH | CPPATH | LD_PRELOAD | LIBRARY_PATH | LD_LIBRARY_PATH | \
        PYTHONHOME | PYTHONPATH | VIRTUAL_ENV | CNB_* | PAAS_STACK_ID | PAAS_UV) continue ;;
    esac
    [[ "${name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    export "${name}=$(cat "${file}")"
  done
}

# platform::get <platform dir> <NAME>: prints a config var, or nothing.
platform::get() {
  [[ -f "$1/env/$2" ]] && cat "$1/env/$2"
  return 0
}
