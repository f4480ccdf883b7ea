#!/usr/bin/env bash
# Checks libevh.so's dynamic symbol table against the public API (run by ctest).
# Usage: exported_symbols.sh LIBEVH_SO [REQUIRED_SYMBOL...]
#
# Exported must be: the C API (evh_*) and the public C++ API (namespace evh). Allowed besides:
# weak or unique instantiations of standard-library templates, which every C++ shared library
# exports (they are merged with the program's copies). Refused: anything in evh::detail or
# evh::capi (mangled N3evh6detail, N3evh4capi — the library's insides, free to change), and any
# other strong symbol.
# Every REQUIRED_SYMBOL (a demangled prefix, e.g. "evh_runtime_create" or "evh::Runtime::post(")
# must be exported.
set -euo pipefail
lib=$1
shift
[ -f "$lib" ] || { echo "exported_symbols: no such library: $lib" >&2; exit 2; }

status=0
# nm -D --defined-only: "ADDRESS TYPE NAME" (mangled); undefined ones are the library's imports.
while read -r _ type name; do
  if [[ $name =~ ^_Z[A-Z]*N[KVrLO]*3evh(6detail|4capi) ]]; then
    echo "exported_symbols: internal symbol exported: $(c++filt "$name")" >&2
    status=1
  elif [[ $name == evh_* ]]; then
    :  # the C API
  elif [[ $name =~ ^_Z[A-Z]*N[KVrLO]*3evh ]] || [[ $name =~ ^_ZN3evh ]]; then
    :  # the public C++ API (classes, members, free functions, their vtables and typeinfo)
  elif [[ $type == [WVu] ]]; then
    :  # a template instantiation (weak or unique)
  else
    echo "exported_symbols: unexpected strong symbol exported: $type $(c++filt "$name")" >&2
    status=1
  fi
done < <(nm -D --defined-only "$lib")

demangled=$(nm -DC --defined-only "$lib" | cut -d' ' -f3-)
for want in "$@"; do
  if ! grep -qF -- "$want" <<<"$demangled"; then
    echo "exported_symbols: missing: $want" >&2
    status=1
  fi
done
count=$(wc -l <<<"$demangled")
if ((status == 0)); then
  echo "exported_symbols: $count symbols, none from evh::detail, every required one present"
fi
exit "$status"
