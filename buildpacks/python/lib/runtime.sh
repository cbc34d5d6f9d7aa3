# usage: source lib/runtime.sh — checks a requested Python version against the stack's.

# runtime::requested <app dir>: prints "<file> <version>" for runtime.txt or .python-version.
runtime::requested() {
  local file
  for file in runtime.txt .python-version; do
    if [[ -f "$1/${file}" ]]; then
      printf '%s %s\n' "${file}" "$(head -n 1 "$1/${file}" | tr -d '[:space:]' | sed 's/^python-//')"
      return 0
    fi
  done
}

# runtime::check <file> <requested> <stack version>: a request the stack meets on major.minor
# builds with a notice; any other fails, naming the stack's version.
runtime::check() {
  local file="$1" requested="$2" stack="$3"
  [[ -z "${requested}" ]] && return 0
  local stack_minor="${stack%.*}"
  if [[ "${requested}" == "${stack}" ]]; then
    echo "       ${file} asks for Python ${requested}: the stack has it"
    return 0
  fi
  if [[ "${requested}" == "${stack_minor}" || "${requested}" == "${stack_minor}".* ]]; then
    echo "       Notice: ${file} asks for Python ${requested}; building with the stack's" \
      "Python ${stack} (same ${stack_minor} series)"
    return 0
  fi
  output::error "${file} asks for Python ${requested}, but this stack provides Python ${stack}." \
    "Change ${file} to ${stack_minor} (runtime.txt: python-${stack}), or remove it" \
    "to use the stack's Python."
  return 1
}
