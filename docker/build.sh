#!/usr/bin/env bash
# Build callcontrol's container images with podman, from nothing but a Debian mirror and
# PyPI: no image registry is needed (none is reachable from the project's machines).
#
#   sudo docker/build.sh            prepare podman, make the base images, build the images
#   sudo docker/build.sh --check    exit 0 if every image is up to date, 1 if not (no build)
#
# 1. podman: installed with runc and mmdebstrap if missing (Debian packages), and a
#    containers.conf drop-in: runtime runc (crun fails on hybrid cgroups), no default
#    ulimits (setting them is not permitted in some VMs and sandboxes). podman-compose,
#    which runs the stack, is not needed here: use 1.3 or later (PyPI; Debian 12's 1.0.3
#    cannot start host-networked services).
# 2. Base images, made by mmdebstrap and imported (`podman import`), each already
#    carrying the Debian packages its image needs (one download, no apt in the builds):
#      localhost/callcontrol-base-asterisk   Debian sid + Asterisk 22
#      localhost/callcontrol-base-python     Debian bookworm + Python 3.11
#      localhost/callcontrol-base-postgres   Debian bookworm + PostgreSQL 15
# 3. The images, from a staged copy of only the files each needs:
#      localhost/callcontrol-app       docker/Dockerfile           the app (pip-installed)
#      localhost/callcontrol-asterisk  docker/Dockerfile.asterisk  dialplan/ + /etc/hosts
#      localhost/callcontrol-postgres  docker/Dockerfile.postgres  initdb + postgres
#
# Every image is tagged with a hash of what it is made of (the recipe, the staged files,
# the base's id) and `:latest`; an image whose hash tag exists is not built again, so a
# second run takes a few seconds. Environment: DEBIAN_MIRROR (default
# http://deb.debian.org/debian), CALLCONTROL_BUILD_DIR (the staging directory, default
# docker/.build).
set -euo pipefail
cd "$(dirname "$0")/.."

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILD_DIR=${CALLCONTROL_BUILD_DIR:-docker/.build}
CONF_DROPIN=/etc/containers/containers.conf.d/50-callcontrol.conf
# Bump to rebuild every base (e.g. to pick up Debian's security updates).
BASE_RECIPE=1
CHECK_ONLY=0
[ "${1:-}" = "--check" ] && CHECK_ONLY=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
hash_of() { sha256sum | cut -c1-16; }
now() { date +%s; }

START=$(now)
OUTDATED=()

# ---- 1. podman ------------------------------------------------------------------------

prepare_podman() {
    [ "$(id -u)" -eq 0 ] || die "run this as root (sudo docker/build.sh): mmdebstrap and podman import need it"
    local missing=()
    for cmd in podman:podman runc:runc mmdebstrap:mmdebstrap; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd##*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 \
            || die "missing ${missing[*]} and no apt-get to install them"
        log "installing Debian packages: ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    local conf
    conf=$'# written by callcontrol docker/build.sh\n[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'
    if [ "$(cat "$CONF_DROPIN" 2>/dev/null)" != "${conf%$'\n'}" ]; then
        log "podman: runtime runc, no default ulimits ($CONF_DROPIN)"
        mkdir -p "$(dirname "$CONF_DROPIN")"
        printf '%s' "$conf" >"$CONF_DROPIN"
    fi
    [ "$(podman info --format '{{.Host.OCIRuntime.Name}}')" = runc ] \
        || die "podman does not use runc: check $CONF_DROPIN and /etc/containers/containers.conf"
}

# ---- 2. base images -------------------------------------------------------------------

# The same trimming as Debian's -slim images: no manuals, documentation or translations.
SLIM=(
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
)

# An /etc/hosts in the root, as the development PBX's has: Asterisk resolves its own
# host name for every call (podman mounts its own at run time; the entrypoint checks it).
HOSTS_HOOK='--customize-hook=printf "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"'

# base NAME SUITE PACKAGES [MMDEBSTRAP-OPTION...]: sets BASE_<NAME> to the image's tag;
# makes it in the background when missing (waited for by wait_base).
declare -A BASE_PID=() BASE_LOG=() BASE_START=()
base() {
    local name=$1 suite=$2 packages=$3 key tag
    shift 3
    local options=("$@")
    key=$(printf '%s\n' "$BASE_RECIPE" "$MIRROR" "$suite" "$packages" "${SLIM[@]}" "${options[@]}" \
        | hash_of)
    tag="localhost/callcontrol-base-$name:$key"
    printf -v "BASE_${name^^}" '%s' "$tag"
    if podman image exists "$tag"; then
        log "base $name: up to date ($tag)"
        return
    fi
    OUTDATED+=("base-$name")
    [ "$CHECK_ONLY" -eq 1 ] && return
    log "base $name: mmdebstrap $suite with $packages (about a minute)"
    mkdir -p "$BUILD_DIR"
    BASE_LOG[$name]="$BUILD_DIR/base-$name.log"
    BASE_START[$name]=$(now)
    # Imported under a temporary tag, given the real one only when mmdebstrap succeeded:
    # podman imports whatever part of the stream came, even none.
    (
        set -o pipefail
        partial="localhost/callcontrol-base-$name:partial"
        if mmdebstrap --quiet --variant=minbase --include="$packages" "${SLIM[@]}" "${options[@]}" \
            '--aptopt=Acquire::Check-Valid-Until "false"' \
            "$suite" - "$MIRROR" \
            | podman import --change 'CMD ["/bin/bash"]' \
                --change "LABEL org.opencontainers.image.description=callcontrol base: Debian $suite with $packages" \
                - "$partial"; then
            podman tag "$partial" "$tag" && podman untag "$partial" "$partial"
            # Older bases of this name (another recipe): untag them.
            podman images --format '{{.Repository}}:{{.Tag}}' "localhost/callcontrol-base-$name" \
                | grep -v ":$key\$" | xargs -r -I{} podman untag {} {} >/dev/null 2>&1 || true
        else
            status=$?
            podman rmi -f "$partial" >/dev/null 2>&1 || true
            exit "$status"
        fi
    ) >"${BASE_LOG[$name]}" 2>&1 &
    BASE_PID[$name]=$!
}

# wait_base NAME: wait for the base being made in the background, if any.
wait_base() {
    local name=$1
    [ -n "${BASE_PID[$name]:-}" ] || return 0
    if wait "${BASE_PID[$name]}"; then
        log "base $name: imported in $(($(now) - BASE_START[$name])) s"
    else
        printf 'error: base %s failed:\n' "$name" >&2
        tail -n 15 "${BASE_LOG[$name]}" >&2
        die "could not make the base image $name (is $MIRROR reachable? DEBIAN_MIRROR)"
    fi
    unset "BASE_PID[$name]"
}

# The app's dependencies as wheels, fetched on the host while the bases are made (the
# host's pip knows its mirrors, proxies and caches); the image's pip then installs from
# them without an index. Only where the host's virtualenv is CPython 3.11 on this
# machine, like the image; otherwise the image's pip fetches them from PyPI itself.
WHEELS=""
WHEELS_PID=""
WHEELS_LOG="$BUILD_DIR/wheels.log"
wheelhouse() {
    local pip=${HOST_PIP:-.venv/bin/pip} reqs key
    [ -x "$pip" ] || return 0
    "${pip%/pip}/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null \
        || return 0
    # The dependencies and what builds the package (setuptools: pip's build isolation).
    reqs=$(python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print("\n".join(p["project"]["dependencies"] + p["build-system"]["requires"]))')
    key=$(printf '%s\n' "$reqs" | hash_of)
    WHEELS="$BUILD_DIR/wheels-$key"
    [ -f "$WHEELS/.complete" ] && return 0
    [ "$CHECK_ONLY" -eq 1 ] && return 0
    log "wheels: fetching the app's dependencies with $pip"
    mkdir -p "$BUILD_DIR"
    rm -rf "$WHEELS"
    (
        mkdir -p "$WHEELS"
        printf '%s\n' "$reqs" >"$WHEELS/requirements.txt"
        "$pip" download --quiet --only-binary=:all: -d "$WHEELS" -r "$WHEELS/requirements.txt" \
            && touch "$WHEELS/.complete"
    ) >"$WHEELS_LOG" 2>&1 &
    WHEELS_PID=$!
}

wait_wheelhouse() {
    [ -n "$WHEELS_PID" ] || return 0
    if wait "$WHEELS_PID"; then
        log "wheels: $(find "$WHEELS" -name '*.whl' | wc -l) in $WHEELS"
    else
        log "wheels: could not fetch them on the host (see $WHEELS_LOG); the image's pip will"
        WHEELS=""
    fi
    WHEELS_PID=""
}

# The emergency numbers' dialplan (extensions_emergency.conf, which `callcontrol pbx up`
# writes in development) for every country, made by the app image's own code; the
# Asterisk container picks its CALLCONTROL_COUNTRY's at start. Remade when the app
# image changes.
EMERGENCY=""
emergency_dialplans() {
    local out="$BUILD_DIR/emergency" app_id
    app_id=$(podman image inspect --format '{{.Id}}' localhost/callcontrol-app:latest 2>/dev/null) \
        || return 0
    if [ "$(cat "$out.app-id" 2>/dev/null)" != "$app_id" ]; then
        [ "$CHECK_ONLY" -eq 1 ] && return 0
        rm -rf "$out" "$out.app-id"
        mkdir -p "$out"
        podman run --rm --network none --user 0 --entrypoint python3 \
            --volume "$(realpath "$out"):/out" localhost/callcontrol-app:latest -c '
import phonenumbers
from callcontrol.domain.emergency import CODES
from callcontrol.pbx.devpbx import emergency_conf
countries = set(phonenumbers.SUPPORTED_REGIONS) | {c for code in CODES for c in code.countries}
for country in sorted(c for c in countries if c.isalpha() and len(c) == 2):
    with open(f"/out/{country}.conf", "w") as fh:
        fh.write(emergency_conf(country))
' || die "could not write the emergency dialplans with the app image"
        printf '%s\n' "$app_id" >"$out.app-id"
        log "emergency dialplans: $(find "$out" -name '*.conf' | wc -l) countries"
    fi
    EMERGENCY=$out
}

# ---- 3. images ------------------------------------------------------------------------

# stage NAME FILE...: copy the files an image needs (paths as in the repository) into
# its build context, so the context is small and its hash is what the image is made of.
stage() {
    local name=$1 ctx="$BUILD_DIR/ctx-$1"
    shift
    rm -rf "$ctx"
    mkdir -p "$ctx"
    # shellcheck disable=SC2068 # word splitting of the file list is intended
    find $@ -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
        | tar --null -T - -cf - | tar -C "$ctx" -xf -
    printf '%s' "$ctx"
}

# image NAME DOCKERFILE BASE FILES...: build localhost/callcontrol-NAME unless up to date.
image() {
    local name=$1 dockerfile=$2 base=$3 ctx key tag started
    shift 3
    ctx=$(stage "$name" "$dockerfile" "$@")
    if [ "$name" = asterisk ] && [ -n "$EMERGENCY" ]; then
        cp -r "$EMERGENCY" "$ctx/dialplan/emergency"
    fi
    key=$( {
        podman image inspect --format '{{.Id}}' "$base"
        (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
    } | hash_of)
    tag="localhost/callcontrol-$name:$key"
    if podman image exists "$tag"; then
        podman tag "$tag" "localhost/callcontrol-$name:latest"
        log "image $name: up to date ($tag)"
        return
    fi
    OUTDATED+=("$name")
    [ "$CHECK_ONLY" -eq 1 ] && return
    log "image $name: building from $dockerfile"
    started=$(now)
    local extra=()
    # The app's pip installs from the host's wheels, or else reaches PyPI trusting what
    # the host trusts (a TLS-inspecting proxy's CA). Neither ends up in the image.
    if [ "$name" = app ]; then
        if [ -n "$WHEELS" ] && [ -f "$WHEELS/.complete" ]; then
            extra+=(
                --volume "$(realpath "$WHEELS"):/run/wheels:ro"
                --build-arg PIP_FIND_LINKS=/run/wheels --build-arg PIP_NO_INDEX=1
            )
        elif [ -f /etc/ssl/certs/ca-certificates.crt ]; then
            extra+=(
                --volume /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
                --build-arg PIP_CERT=/run/host-ca.crt
            )
        fi
    fi
    if ! podman build --network host --layers --build-arg "BASE=$base" "${extra[@]}" \
        --label "org.opencontainers.image.source.hash=$key" \
        -f "$ctx/$dockerfile" -t "$tag" -t "localhost/callcontrol-$name:latest" "$ctx" \
        2>&1 | tee "$BUILD_DIR/image-$name.log" | grep --line-buffered -E '^STEP [0-9]+/' >&2; then
        tail -n 25 "$BUILD_DIR/image-$name.log" >&2
        die "building the $name image failed (log: $BUILD_DIR/image-$name.log)"
    fi
    log "image $name: built in $(($(now) - started)) s"
    # Older builds of this image: untag them (their layers go with `podman image prune`).
    podman images --format '{{.Repository}}:{{.Tag}}' "localhost/callcontrol-$name" \
        | grep -v -e ":$key\$" -e ':latest$' | xargs -r podman rmi -f >/dev/null 2>&1 || true
}

prepare_podman
base python bookworm python3,python3-venv,ca-certificates
base asterisk sid asterisk,asterisk-core-sounds-en-gsm "$HOSTS_HOOK"
base postgres bookworm postgresql
wheelhouse
if [ "$CHECK_ONLY" -eq 1 ] && [ ${#OUTDATED[@]} -gt 0 ]; then
    log "out of date: ${OUTDATED[*]}"
    exit 1
fi
# Each image as soon as its base is there (the others are still being made).
wait_base python
wait_wheelhouse
# shellcheck disable=SC2153 # BASE_* are set by base()
image app docker/Dockerfile "$BASE_PYTHON" pyproject.toml README.md callcontrol ivr_flows \
    docker/app-entrypoint.sh
emergency_dialplans
wait_base asterisk
image asterisk docker/Dockerfile.asterisk "$BASE_ASTERISK" dialplan docker/asterisk-entrypoint.sh
wait_base postgres
image postgres docker/Dockerfile.postgres "$BASE_POSTGRES" docker/postgres-entrypoint.sh
if [ "$CHECK_ONLY" -eq 1 ]; then
    [ ${#OUTDATED[@]} -eq 0 ] || { log "out of date: ${OUTDATED[*]}"; exit 1; }
    exit 0
fi
log "images ready in $(($(now) - START)) s: localhost/callcontrol-{app,asterisk,postgres}:latest"
