# usage: source lib/package.sh — reading package.json with the stack's node.

# package::field <expression>: prints a field of ./package.json (empty when missing),
# e.g. package::field 'engines.node'.
package::field() {
  /usr/bin/node -e '
    const pkg = JSON.parse(require("fs").readFileSync("package.json", "utf8"));
    const value = process.argv[1].split(".").reduce((v, k) => (v == null ? v : v[k]), pkg);
    if (value != null) process.stdout.write(String(value));
  ' "$1"
}

# package::satisfies <version> <range>: whether the stack's node meets an engines.node range.
package::satisfies() {
  /usr/bin/node -e '
    let semver;
    try { semver = require("/usr/lib/node_modules/npm/node_modules/semver"); } catch (e) {}
    const [version, range] = process.argv.slice(1);
    const ok = semver ? semver.satisfies(version, range)
                      : range.replace(/^[^0-9]*/, "").split(".")[0] === version.split(".")[0];
    process.exit(ok ? 0 : 1);
  ' "$1" "$2"
}
