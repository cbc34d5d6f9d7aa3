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

# venv::installer <platform dir>: "uv" or "pip". uv unless the app's PAAS_PYTHON_INSTALLER config
# var says pip, or the platform bound no uv into the build (PAAS_UV).
venv::installer() {
  local chosen
  chosen="$(platform::get "$1" PAAS_PYTHON_INSTALLER)"
  case "${chosen}" in
    pip) echo pip ;;
    "" | uv)
      if [[ -n "${PAAS_UV:-}" && -x "${PAAS_UV}" ]]; then
        echo uv
      else
        [[ -z "${chosen}" ]] || echo "       Notice: this platform has no uv; building with pip" >&2
        echo pip
      fi
      ;;
    *)
      output::error "PAAS_PYTHON_INSTALLER=${chosen} is not an installer this buildpack knows." \
        "Set it to uv (the default) or pip: paas config:set PAAS_PYTHON_INSTALLER=pip" >&2
      return 1
      ;;
  esac
}

# venv::create <installer> <python> <venv>: a virtualenv; uv's has no pip in it.
venv::create() {
  case "$1" in
    uv) "${PAAS_UV}" venv --quiet --no-config --python "$2" "$3" ;;
    pip) "$2" -m venv "$3" ;;
  esac
}

# venv::uv_settings: exports pip's settings (host and app) as uv's, and sets uv_flags.
venv::uv_settings() {
  local settings
  settings="$(/usr/bin/python3 "${bp_dir}/lib/uvconf.py")" || return 1
  eval "${settings}"
}

# venv::install <installer> <venv> <deps file>: installs the dependencies into the virtualenv.
venv::install() {
  local installer="$1" venv="$2" cmd
  if [[ "${installer}" == uv ]]; then
    cmd=("${PAAS_UV}" pip install --python "${venv}/bin/python" "${uv_flags[@]}")
  else
    cmd=("${venv}/bin/pip" install --no-input --progress-bar off)
  fi
  case "$3" in
    requirements.txt) "${cmd[@]}" -r requirements.txt ;;
    Pipfile.lock)
      local requirements
      requirements="$(mktemp)"
      venv::pipfile_requirements Pipfile.lock >"${requirements}"
      echo "Pipfile.lock lists $(wc -l <"${requirements}") packages"
      "${cmd[@]}" -r "${requirements}"
      ;;
    # Editable, so the virtualenv points at /app and stays right when only the code changes.
    pyproject.toml) "${cmd[@]}" -e . ;;
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
#   <installer>
venv::metadata_matches() {
  [[ -f "$1" ]] || return 1
  /usr/bin/python3 - "$@" <<'PY'
import sys
import tomllib

path, deps_file, deps_sha, python, stack, installer = sys.argv[1:7]
try:
    with open(path, "rb") as f:
        meta = tomllib.load(f).get("metadata", {})
except (OSError, tomllib.TOMLDecodeError):
    sys.exit(1)
wanted = {"deps_file": deps_file, "deps_sha256": deps_sha, "python_version": python,
          "stack_id": stack, "installer": installer}
sys.exit(0 if all(meta.get(k) == v for k, v in wanted.items()) else 1)
PY
}

# venv::write_toml <layer.toml> <deps file> <deps sha256> <python version> <stack id> <installer>
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
installer = "$6"
TOML
}

# venv::write_env <venv dir>: the launch environment of the virtualenv.
venv::write_env() {
  mkdir -p "$1/env.launch"
  printf '%s' "$1" >"$1/env.launch/VIRTUAL_ENV.override"
  printf '%s' "1" >"$1/env.launch/PYTHONUNBUFFERED.default"
}
