# usage: source lib/runtime.sh — checks a requested Python version against the stack's.

# runtime::requested <app dir>: prints the version asked for in runtime.txt or .python-version.
runtime::requested() {
  local file
  for file in "$1/runtime.txt" "$1/.python-version"; do
    if [[ -f "${file}" ]]; then
      tr -d '[:space:]' <"${file}" | sed 's/^python-//'
      return 0
    fi
  done
}

# runtime::check <requested> <stack version>: fails unless the stack's version matches.
runtime::check() {
  local requested="$1" stack="$2"
  [[ -z "${requested}" ]] && return 0
  if [[ "${stack}" == "${requested}" || "${stack}" == "${requested}".* ]]; then
    return 0
  fi
  output::error "Python ${requested} was requested, but this stack provides Python ${stack}." \
    "Change runtime.txt (or .python-version) to python-${stack%.*}, or remove it" \
    "to use the stack's Python."
  return 1
}
