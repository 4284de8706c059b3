#!/usr/bin/env bash
# Re-fetches the vendored GraphiQL assets from the npm registry at the exact versions below and
# checks each file's sha256 before anything in this directory is overwritten.
#
#   bash shared/gateway/assets/graphiql/vendor.sh           # fetch, verify, copy in
#   bash shared/gateway/assets/graphiql/vendor.sh --check   # only verify the files here (offline)
#
# To upgrade: change a version, run once, read the mismatch, update the hash here and in
# LICENSES.md, then re-test the page in a browser (selectors and props change between versions).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# package@version | path inside the npm tarball | file name here | sha256
FILES=(
  "graphiql@3.9.0|package/graphiql.min.js|graphiql.min.js|a330a2be1d2389486840a9d0a834767d9083a23f105879e0de54e4fce83d3513"
  "graphiql@3.9.0|package/graphiql.min.css|graphiql.min.css|bdddd50aac5bdb0edd83e5c862ba2fed9db2964e4c75d4655ab62b0a7d5bd730"
  "react@18.3.1|package/umd/react.production.min.js|react.production.min.js|d949f1c3687aedadcedac85261865f29b17cd273997e7f6b2bfc53b2f9d4c4dd"
  "react-dom@18.3.1|package/umd/react-dom.production.min.js|react-dom.production.min.js|35f4f974f4b2bcd44da73963347f8952e341f83909e4498227d4e26b98f66f0d"
)

fail() { echo "vendor.sh: FAILED: $*" >&2; exit 1; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# Every hash must also be written in LICENSES.md, so the two never drift apart.
for entry in "${FILES[@]}"; do
  IFS='|' read -r _ _ name sha <<<"$entry"
  grep -q "$sha" "$here/LICENSES.md" || fail "sha256 of $name ($sha) is not in LICENSES.md"
done

if [[ "${1:-}" == "--check" ]]; then
  for entry in "${FILES[@]}"; do
    IFS='|' read -r _ _ name sha <<<"$entry"
    [[ -f "$here/$name" ]] || fail "$here/$name is missing"
    actual="$(sha_of "$here/$name")"
    [[ "$actual" == "$sha" ]] || fail "$name: expected sha256 $sha, found $actual"
  done
  echo "vendor.sh: all ${#FILES[@]} vendored files match their sha256"
  exit 0
fi

command -v npm >/dev/null || fail "npm is not installed"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# One `npm pack` per distinct package@version; npm checks each tarball's registry integrity.
mapfile -t specs < <(printf '%s\n' "${FILES[@]}" | cut -d'|' -f1 | sort -u)
for spec in "${specs[@]}"; do
  dir="$tmp/${spec//[@\/]/_}"
  mkdir -p "$dir"
  tarball="$(cd "$dir" && npm pack --silent "$spec" 2>/dev/null | tail -n 1)"
  [[ -f "$dir/$tarball" ]] || fail "npm pack $spec produced no tarball"
  tar -xzf "$dir/$tarball" -C "$dir"
done

# Verify everything first, then copy: a mismatch leaves this directory untouched.
for entry in "${FILES[@]}"; do
  IFS='|' read -r spec path name sha <<<"$entry"
  src="$tmp/${spec//[@\/]/_}/$path"
  [[ -f "$src" ]] || fail "$spec has no $path"
  actual="$(sha_of "$src")"
  [[ "$actual" == "$sha" ]] || fail "$spec:$path: expected sha256 $sha, got $actual"
done
for entry in "${FILES[@]}"; do
  IFS='|' read -r spec path name _ <<<"$entry"
  cp "$tmp/${spec//[@\/]/_}/$path" "$here/$name"
  echo "vendor.sh: $name <- $spec:$path"
done
echo "vendor.sh: all ${#FILES[@]} files fetched and verified"
