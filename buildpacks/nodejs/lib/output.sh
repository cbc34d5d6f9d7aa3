# usage: source lib/output.sh — Heroku-style build output helpers.

output::step() {
  echo "-----> $*"
}

output::indent() {
  sed -u 's/^/       /'
}

output::error() {
  echo
  echo " !     $1"
  shift
  local line
  for line in "$@"; do
    echo " !     ${line}"
  done
  echo
}
