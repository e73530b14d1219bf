# Sourced by the deploy scripts: name_of KEY.PATH prints a value from infra/names.json (the one place for names).
# shellcheck shell=bash

names_file="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/names.json"

name_of() {
  python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."):
    value = value[key]
print(value)' "$names_file" "$1"
}
