#!/usr/bin/env bash
# Builds the omama_ros interfaces (msg/) with cmake against the ROS 2 pip wheels and installs
# them into the project venv, so that `import omama_ros.msg` works there without a ROS
# install. Idempotent: does nothing when the installed interfaces are newer than msg/,
# CMakeLists.txt and package.xml (FORCE=1 rebuilds).
#
#   scripts/build_ros_interfaces.sh            # venv: .venv (or $VENV)
#
# On a machine with ROS 2 installed use colcon instead (docs/ros.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
BUILD="${BUILD_DIR:-$ROOT/build/omama_ros_venv}"
mkdir -p "$BUILD"

[ -x "$PY" ] || { echo "error: no Python at $PY (create the venv first: make venv)" >&2; exit 1; }
command -v cmake >/dev/null || { echo "error: cmake not found (apt-get install cmake g++)" >&2; exit 1; }

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
STAMP="$SITE/omama_ros/msg/.omama_build_stamp"

# Fast path: installed and nothing it depends on changed since.
# (The installed __init__.py names the work tree: a moved or re-cloned tree rebuilds.)
if [ "${FORCE:-0}" != 1 ] && [ -f "$STAMP" ] \
   && grep -qF "\"$ROOT/omama_ros\"" "$SITE/omama_ros/__init__.py" 2>/dev/null \
   && [ -z "$(find "$ROOT/msg" "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT/omama_ros/__init__.py" -newer "$STAMP" -print -quit)" ]; then
  echo "omama_ros interfaces are up to date in $VENV"
  exit 0
fi

# The wheels' exported CMake files name the wheel builder's include paths; point them at
# this interpreter's Python and numpy headers, or cmake fails at generate time.
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
{ grep -rlZ --include='*.cmake' -e '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } \
  | xargs -0 -r sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g"

# A Python from another venv may have left these behind; they break the wheels' bootstrap.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE

export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$VENV/bin:$PATH"
cmake -S "$ROOT" -B "$BUILD" -DBUILD_TESTING=OFF -DOMAMA_INSTALL_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$PY" -DPython3_FIND_STRATEGY=LOCATION >"$BUILD/build.log" 2>&1 \
  || { tail -n 40 "$BUILD/build.log" >&2; echo "error: cmake configure failed (log: $BUILD/build.log)" >&2; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" >>"$BUILD/build.log" 2>&1 \
  || { tail -n 40 "$BUILD/build.log" >&2; echo "error: build failed (log: $BUILD/build.log)" >&2; exit 1; }
cmake --install "$BUILD" >>"$BUILD/build.log" 2>&1 \
  || { tail -n 40 "$BUILD/build.log" >&2; echo "error: install failed (log: $BUILD/build.log)" >&2; exit 1; }

# Check from outside the work tree that the installed messages import.
(cd / && env -u PYTHONPATH "$PY" -c 'from omama_ros.msg import Query, QueryArray, Match, MatchArray') \
  || { echo "error: installed but 'import omama_ros.msg' fails" >&2; exit 1; }
touch "$STAMP"
echo "omama_ros interfaces installed into $VENV"
