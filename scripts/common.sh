# Shared by scripts/setup.sh, start.sh and test.sh (sourced, not run).

say() { step=$((step + 1)); printf '\033[1m[%d/%d] %s\033[0m\n' "$step" "$STEPS" "$*"; }
note() { printf '      %s\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# as_root SCRIPT ARGS...: returns when already root; otherwise re-runs SCRIPT through sudo and
# never returns. Capsule mounts filesystems and creates network namespaces, so its set-up, its
# server and its sandbox tests need root. The re-run keeps PATH (so root runs the same node) and
# the settings this project reads (CAPSULE_*, FREESTYLE_*, CI, proxies), which sudo's env_reset
# would drop; they are passed as arguments of env(1), so no sudoers change is needed.
as_root() {
  local script=$1
  shift
  [ "$(id -u)" = 0 ] && return 0
  command -v sudo >/dev/null 2>&1 \
    || die "$(basename "$script") needs root (Capsule mounts filesystems and creates network namespaces) and this host has no sudo: run it from a root shell"
  local keep=("PATH=$PATH") name
  while IFS= read -r name; do keep+=("$name=${!name}"); done < <(compgen -e | grep -E '^(CAPSULE_[A-Z0-9_]+|FREESTYLE_API_(URL|KEY)|CI|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)$' || true)
  printf '%s needs root: running it with sudo\n' "$(basename "$script")" >&2
  exec sudo env "${keep[@]}" bash "$script" "$@"
}

# tree_hash PATH...: sha256 over the names and bytes of every file under PATHs (missing ones
# count as absent), skipping node_modules and dist. For "are these inputs what they were?".
tree_hash() {
  local p existing=()
  for p in "$@"; do [ -e "$p" ] && existing+=("$p"); done
  {
    printf '%s\n' "$@"
    [ ${#existing[@]} -eq 0 ] || find "${existing[@]}" \( -name node_modules -o -name dist \) -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum
  } | sha256sum | cut -c1-64
}

# stamp_ok FILE KEY: FILE holds exactly KEY. stamp_write FILE KEY records it.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
stamp_write() { mkdir -p "$(dirname "$1")" && printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"; }
