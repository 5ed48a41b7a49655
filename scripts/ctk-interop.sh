#!/usr/bin/env bash
# Build the DICOM Application Hosting (DAH) parts of CTK from source and run CTK hosted applications
# under `dicom-host run`, saving the decoded SOAP traffic.
#
#   scripts/ctk-interop.sh [options] CTK_SOURCE QTSOAP_SOURCE
#
# CTK_SOURCE and QTSOAP_SOURCE are source folders or tarballs (.tar.gz, .tgz, .tar.xz, .tar.bz2) of
# github.com/commontk/CTK and github.com/commontk/QtSOAP. The script builds, in --work (default
# ./ctk-interop):
#   1. QtSOAP as a shared library (Qt 5);
#   2. CTK with CTK_SUPERBUILD=OFF and only the DAH parts: PluginFramework, Widgets, DICOM Core and Widgets,
#      the org.commontk.dah.* plug-ins and ctkExampleHostedApp;
#   3. the example hosted application of this repository (examples/ctk-hosted-app/): a CTK plug-in and its
#      launcher.
# Then (unless --build-only) it runs, each on a private Xvfb display, under `dicom-host run`:
#   a. examples/ctk-hosted-app on a generated CT series: it must end COMPLETED with its result collected;
#   b. the unmodified ctkExampleHostedApp (it never reports COMPLETED: the host times it out and cancels it).
# Every SOAP message between host and application is saved, decoded, under --work/runs/<name>/wire.txt,
# next to the run's output folder (manifest.json, app.log).
#
# Debian 12 packages: qtbase5-dev qttools5-dev libqt5xmlpatterns5-dev libqt5svg5-dev qtmultimedia5-dev
# libqt5opengl5-dev libdcmtk-dev xvfb cmake g++ make; and this repository installed (pip install -e .).
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: scripts/ctk-interop.sh [--work DIR] [--jobs N] [--build-only] [--run-only] [--dicom-host CMD]
                              CTK_SOURCE QTSOAP_SOURCE
  --work DIR         build and run folder (default ./ctk-interop); builds are incremental
  --jobs N           parallel compile jobs (default 2); the build runs under `nice -n 19`
  --build-only       build, do not run
  --run-only         run with an existing build in --work (the sources are still named, for the record)
  --dicom-host CMD   the host command (default: dicom-host on PATH, else .venv/bin/dicom-host)
EOF
    exit 2
}

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$PWD/ctk-interop
jobs=2
build=1
run=1
dicom_host=
while [[ $# -gt 0 ]]; do
    case $1 in
        --work) work=$(realpath -m "$2"); shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --build-only) run=0; shift ;;
        --run-only) build=0; shift ;;
        --dicom-host) dicom_host=$2; shift 2 ;;
        -h|--help) usage ;;
        --*) echo "unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -eq 2 ]] || usage
mkdir -p "$work"

log() { printf '[ctk-interop %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# A source given as a tarball is unpacked once into --work/src/<name>; a folder is used where it is.
source_dir() {
    local given=$1 name=$2
    if [[ -d $given ]]; then realpath "$given"; return; fi
    [[ -f $given ]] || { echo "no such source folder or tarball: $given" >&2; exit 2; }
    local into=$work/src/$name
    if [[ ! -d $into ]]; then
        mkdir -p "$into"
        tar -xf "$given" -C "$into" --strip-components=1
    fi
    echo "$into"
}
ctk_src=$(source_dir "$1" CTK)
qtsoap_src=$(source_dir "$2" QtSOAP)
[[ -f $ctk_src/Plugins/org.commontk.dah.hostedapp/CMakeLists.txt ]] \
    || { echo "$ctk_src is not a CTK source tree with the DAH plug-ins" >&2; exit 2; }
[[ -f $qtsoap_src/src/qtsoap.h ]] || { echo "$qtsoap_src is not a QtSOAP source tree" >&2; exit 2; }

qtsoap_build=$work/QtSOAP-build
ctk_build=$work/CTK-build
example_build=$work/example-build
make_=(nice -n 19 make -j"$jobs")

build_qtsoap() {
    log "QtSOAP: configure and build (shared library) in $qtsoap_build"
    nice -n 19 cmake -S "$qtsoap_src" -B "$qtsoap_build" -DQtSOAP_QT_VERSION=5 -DCMAKE_BUILD_TYPE=Release >/dev/null
    "${make_[@]}" -C "$qtsoap_build"
}

build_ctk() {
    log "CTK: configure (CTK_SUPERBUILD=OFF, DAH parts only) in $ctk_build"
    local dcmtk_dir
    dcmtk_dir=$(dirname "$(find /usr/lib /usr/local/lib /usr/share -name DCMTKConfig.cmake -print -quit 2>/dev/null)")
    [[ -f $dcmtk_dir/DCMTKConfig.cmake ]] || { echo "DCMTKConfig.cmake not found: install libdcmtk-dev" >&2; exit 1; }
    nice -n 19 cmake -S "$ctk_src" -B "$ctk_build" \
        -DCMAKE_BUILD_TYPE=Release \
        -DCTK_SUPERBUILD=OFF \
        -DCTK_QT_VERSION=5 \
        -DBUILD_TESTING=OFF \
        -DCTK_BUILD_QTDESIGNER_PLUGINS=OFF \
        -DCTK_LIB_PluginFramework=ON \
        -DCTK_LIB_Widgets=ON \
        -DCTK_LIB_DICOM/Core=ON \
        -DCTK_LIB_DICOM/Widgets=ON \
        -DCTK_ENABLE_DICOMApplicationHosting=ON \
        -DCTK_PLUGIN_org.commontk.dah.core=ON \
        -DCTK_PLUGIN_org.commontk.dah.host=ON \
        -DCTK_PLUGIN_org.commontk.dah.hostedapp=ON \
        -DCTK_PLUGIN_org.commontk.dah.exampleapp=ON \
        -DCTK_APP_ctkExampleHostedApp=ON \
        -DQtSOAP_DIR="$qtsoap_build" \
        -DDCMTK_DIR="$dcmtk_dir" >/dev/null
    log "CTK: build (nice -n 19, -j$jobs); 15 to 25 minutes on 2 cores"
    "${make_[@]}" -C "$ctk_build"
}

build_example() {
    log "examples/ctk-hosted-app: configure and build against $ctk_build"
    nice -n 19 cmake -S "$repo/examples/ctk-hosted-app" -B "$example_build" \
        -DCMAKE_BUILD_TYPE=Release -DCTK_DIR="$ctk_build" >/dev/null
    "${make_[@]}" -C "$example_build"
}

if [[ $build -eq 1 ]]; then
    build_qtsoap
    build_ctk
    [[ -f $repo/examples/ctk-hosted-app/CMakeLists.txt ]] && build_example
    log "build done"
fi
[[ $run -eq 1 ]] || exit 0

# --- run ------------------------------------------------------------------------------------------------

if [[ -z $dicom_host ]]; then
    if [[ -x $repo/.venv/bin/dicom-host ]]; then dicom_host=$repo/.venv/bin/dicom-host
    else dicom_host=$(command -v dicom-host) || { echo "dicom-host not found: pip install -e . first" >&2; exit 2; }
    fi
fi
python=$(dirname "$dicom_host")/python
[[ -x $python ]] || python=python3
launcher=$ctk_build/bin/ctkExampleHostedApp
[[ -x $launcher ]] || { echo "no $launcher: build first (without --run-only)" >&2; exit 1; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# A private X display: CTK's launcher is a QApplication, even for a plug-in without a window.
display=
for n in $(seq 90 199); do
    [[ -e /tmp/.X$n-lock || -e /tmp/.X11-unix/X$n ]] && continue
    Xvfb ":$n" -screen 0 1280x1024x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do [[ -e /tmp/.X11-unix/X$n ]] && break; sleep 0.1; done
    [[ -e /tmp/.X11-unix/X$n ]] && { display=:$n; break; }
done
[[ -n $display ]] || { echo "could not start Xvfb (see $work/xvfb.log)" >&2; exit 1; }
export DISPLAY=$display
log "Xvfb on $DISPLAY"

samples=$work/samples
[[ -d $samples ]] || "$python" -m hosting_service.dicom.samples "$samples" --slices 8 >&2

# One run of `dicom-host run`: NAME, the expected exit status, then the dicom-host run options. The SOAP
# traffic is captured on the loopback interface with tcpdump (when it can capture) and decoded, keeping only
# the connections of this run's server and application, into runs/NAME/wire.txt; the capture is deleted.
failures=0
run_app() {
    local name=$1 expected=$2
    shift 2
    local dir=$work/runs/$name capture=
    rm -rf "$dir"
    mkdir -p "$dir"
    if command -v tcpdump >/dev/null; then
        tcpdump -i lo -U -s 0 -w "$dir/capture.pcap" tcp >"$dir/tcpdump.log" 2>&1 &
        capture=$!
        pids+=("$capture")
        sleep 1
        kill -0 "$capture" 2>/dev/null || { capture=; log "tcpdump cannot capture here (see $dir/tcpdump.log): no wire transcript"; }
    else
        log "no tcpdump: no wire transcript"
    fi
    log "$name: dicom-host run $*"
    local status=0
    (cd "$dir" && "$dicom_host" run --input "$samples" --output "$dir/output" "$@") >"$dir/run.log" 2>&1 || status=$?
    if [[ -n $capture ]]; then
        sleep 0.5
        kill "$capture" 2>/dev/null || true
        wait "$capture" 2>/dev/null || true
        local ports
        ports=$("$python" - "$dir/output/manifest.json" <<'PY'
import json, sys
from urllib.parse import urlsplit
argv = json.load(open(sys.argv[1]))["app"]["argv"]
print(*(urlsplit(argv[argv.index(option) + 1]).port for option in ("--hostURL", "--applicationURL")))
PY
        ) && "$python" "$repo/scripts/soap_transcript.py" "$dir/capture.pcap" $ports >"$dir/wire.txt"
        rm -f "$dir/capture.pcap"
    fi
    log "$name: exit status $status (expected $expected); $(tail -n 1 "$dir/run.log")"
    [[ -f $dir/wire.txt ]] && log "$name: $(grep -c '^=====' "$dir/wire.txt") HTTP messages in $dir/wire.txt"
    [[ $status -eq $expected ]] || failures=$((failures + 1))
}

# a. The example of this repository: reads its inputs, writes and announces a result, COMPLETED.
if [[ -x $example_build/bin/ctkPixelStatsApp ]]; then
    run_app pixelstats 0 --app "$example_build/bin/ctkPixelStatsApp" --startup-timeout 60 --task-timeout 120
else
    log "no $example_build/bin/ctkPixelStatsApp: the example is not run"
    failures=$((failures + 1))
fi
# b. CTK's own example application waits for clicks and never reports COMPLETED: the host times the task
#    out (exit status 5), cancels it, and the application goes CANCELED -> IDLE -> EXIT.
run_app ctkExampleHostedApp 5 --app "$launcher" --startup-timeout 60 --task-timeout 15

log "runs in $work/runs ($failures unexpected)"
[[ $failures -eq 0 ]]
