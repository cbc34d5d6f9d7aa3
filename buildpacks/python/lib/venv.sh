# usage: source lib/venv.sh — the virtualenv layer of the python buildpack.

# venv::metadata_matches <layer.toml> <requirements sha256> <python version> <stack id>
venv::metadata_matches() {
  [[ -f "$1" ]] || return 1
  /usr/bin/python3 - "$@" <<'PY'
import sys
import tomllib

path, requirements, python, stack = sys.argv[1:5]
try:
    with open(path, "rb") as f:
        meta = tomllib.load(f).get("metadata", {})
except (OSError, tomllib.TOMLDecodeError):
    sys.exit(1)
wanted = {"requirements_sha256": requirements, "python_version": python, "stack_id": stack}
sys.exit(0 if all(meta.get(k) == v for k, v in wanted.items()) else 1)
PY
}

# venv::write_toml <layer.toml> <requirements sha256> <python version> <stack id>
venv::write_toml() {
  cat >"$1" <<TOML
[types]
launch = true
build = false
cache = true

[metadata]
requirements_sha256 = "$2"
python_version = "$3"
stack_id = "$4"
TOML
}

# venv::write_env <venv dir>: the launch environment of the virtualenv.
venv::write_env() {
  mkdir -p "$1/env.launch"
  printf '%s' "$1" >"$1/env.launch/VIRTUAL_ENV.override"
  printf '%s' "1" >"$1/env.launch/PYTHONUNBUFFERED.default"
}
