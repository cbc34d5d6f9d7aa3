# usage: source lib/venv.sh — the virtualenv layer of the python buildpack.

# venv::deps_file: the file that lists the app's dependencies, in Heroku's order of preference.
venv::deps_file() {
  local file
  for file in requirements.txt Pipfile.lock pyproject.toml; do
    if [[ -f "${file}" ]]; then
      echo "${file}"
      return 0
    fi
  done
}

# venv::install <venv> <deps file>: pip-installs the dependencies into the virtualenv.
venv::install() {
  local pip=("$1/bin/pip" install --no-input --progress-bar off)
  case "$2" in
    requirements.txt) "${pip[@]}" -r requirements.txt ;;
    Pipfile.lock)
      local requirements
      requirements="$(mktemp)"
      venv::pipfile_requirements Pipfile.lock >"${requirements}"
      echo "Pipfile.lock lists $(wc -l <"${requirements}") packages"
      "${pip[@]}" -r "${requirements}"
      ;;
    # Editable, so the virtualenv points at /app and stays right when only the code changes.
    pyproject.toml) "${pip[@]}" -e . ;;
  esac
}

# venv::pipfile_requirements <Pipfile.lock>: the "default" packages as requirements lines.
venv::pipfile_requirements() {
  /usr/bin/python3 - "$1" <<'PY'
import json
import sys

with open(sys.argv[1]) as f:
    packages = json.load(f).get("default", {})
for name, spec in sorted(packages.items()):
    line = name + (spec.get("version") or "")
    if spec.get("markers"):
        line += f"; {spec['markers']}"
    print(line)
PY
}

# venv::metadata_matches <layer.toml> <deps file> <deps sha256> <python version> <stack id>
venv::metadata_matches() {
  [[ -f "$1" ]] || return 1
  /usr/bin/python3 - "$@" <<'PY'
import sys
import tomllib

path, deps_file, deps_sha, python, stack = sys.argv[1:6]
try:
    with open(path, "rb") as f:
        meta = tomllib.load(f).get("metadata", {})
except (OSError, tomllib.TOMLDecodeError):
    sys.exit(1)
wanted = {"deps_file": deps_file, "deps_sha256": deps_sha, "python_version": python,
          "stack_id": stack}
sys.exit(0 if all(meta.get(k) == v for k, v in wanted.items()) else 1)
PY
}

# venv::write_toml <layer.toml> <deps file> <deps sha256> <python version> <stack id>
venv::write_toml() {
  cat >"$1" <<TOML
[types]
launch = true
build = false
cache = true

[metadata]
deps_file = "$2"
deps_sha256 = "$3"
python_version = "$4"
stack_id = "$5"
TOML
}

# venv::write_env <venv dir>: the launch environment of the virtualenv.
venv::write_env() {
  mkdir -p "$1/env.launch"
  printf '%s' "$1" >"$1/env.launch/VIRTUAL_ENV.override"
  printf '%s' "1" >"$1/env.launch/PYTHONUNBUFFERED.default"
}
