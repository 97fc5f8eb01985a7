#!/usr/bin/env bash
# Runs the test suite inside a private network namespace (no packet can leave the machine:
# DDS discovery included, and any code path that waits on the network fails fast), with the
# project's localhost-only Fast DDS profile. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTDDS_DEFAULT_PROFILES_FILE="$PWD/ros/fastdds-localhost.xml"
unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_LOCALHOST_ONLY
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 90 + 5))}"
export OMAMA_IN_PRIVATE_NETNS=1
if [ "$(id -u)" = 0 ]; then namespace=(unshare --net); else namespace=(unshare --net --map-root-user); fi
exec "${namespace[@]}" sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' sh "$@"
