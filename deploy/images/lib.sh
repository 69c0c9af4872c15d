# shellcheck shell=bash
# Sourced by build.sh and smoke.sh: how podman runs containers on this machine.
#
# Where podman's defaults work, nothing is added. Two limits of some sandboxed hosts (seen on the project's build
# machines) are worked around, and said so:
#   - crun refuses cgroups in "hybrid" mode (v1 controllers plus a v2 mount): runc is used instead;
#   - raising RLIMIT_NPROC / RLIMIT_NOFILE to podman's defaults is not permitted: the host's own open-files limit
#     and 8192 processes are asked for instead.
# Sets the array PODMAN (podman with its global options) and PODMAN_RUN (options of `run` and `build`).
podman_setup() {  # base image to probe with
  local probe="$1" nofile
  nofile="$(ulimit -Hn)"
  [[ "$nofile" == unlimited ]] && nofile=1048576
  PODMAN=(podman) PODMAN_RUN=()
  if podman run --rm --network=none --entrypoint /bin/true "$probe" >/dev/null 2>&1; then
    return 0
  fi
  local runtime=crun
  command -v runc >/dev/null && runtime=runc
  PODMAN=(podman --runtime "$runtime")
  PODMAN_RUN=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=8192:8192)
  if "${PODMAN[@]}" run --rm --network=none "${PODMAN_RUN[@]}" --entrypoint /bin/true "$probe" >/dev/null 2>&1; then
    printf '[images] podman defaults do not run here; using --runtime %s %s\n' "$runtime" "${PODMAN_RUN[*]}" >&2
    return 0
  fi
  echo "[images] containers cannot run on this machine; what podman says:" >&2
  podman run --rm --network=none --entrypoint /bin/true "$probe" >&2 || true
  "${PODMAN[@]}" run --rm --network=none "${PODMAN_RUN[@]}" --entrypoint /bin/true "$probe" >&2 || true
  return 1
}
