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
#   3. the example hosted application of this repository (examples/ctk-hosted-app/), a CTK plug-in.
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
    log "CTK: build (nice -n 19, -j$jobs); about 18 minutes on 2 idle cores"
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
