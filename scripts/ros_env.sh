# Source this file (". scripts/ros_env.sh") before starting any ROS 2 process of this project
# from the pip wheels: it keeps DDS traffic on this machine and picks a DDS domain.
#  - FASTDDS_DEFAULT_PROFILES_FILE: the project's Fast DDS profile (shared memory plus UDP
#    bound to 127.0.0.1, unicast discovery); ROS_LOCALHOST_ONLY is ignored by Kilted.
#  - ROS_AUTOMATIC_DISCOVERY_RANGE must be unset: LOCALHOST mode would replace the profile's
#    transports with rmw's small default ones.
#  - ROS_DOMAIN_ID: kept when already set, otherwise derived from this shell's process id so
#    that parallel test runs do not see each other (0..101, the range valid on every host).
# Run tests inside a private network namespace as well:
#   unshare -n sh -c 'ip link set lo up; . scripts/ros_env.sh; exec <command>'
# bash and zsh know where this file is; POSIX sh does not: there set OMAMA_ROOT or source it
# from the repository root.
_omama_src=""
if [ -n "${BASH_VERSION:-}" ]; then eval '_omama_src="${BASH_SOURCE[0]}"';
elif [ -n "${ZSH_VERSION:-}" ]; then eval '_omama_src="${(%):-%x}"'; fi
if [ -n "${OMAMA_ROOT:-}" ]; then _omama_root="$OMAMA_ROOT"
elif [ -n "$_omama_src" ]; then _omama_root="$(cd "$(dirname "$_omama_src")/.." && pwd)"
else _omama_root="$(pwd)"; fi
if [ ! -f "$_omama_root/ros/fastdds-localhost.xml" ]; then
  # Without the profile Fast DDS would fall back to multicast discovery on every interface.
  echo "ros_env.sh: no ros/fastdds-localhost.xml under $_omama_root: source this file from the" \
       "repository root or set OMAMA_ROOT; nothing was set" >&2
  unset _omama_root _omama_src
  return 1 2>/dev/null || exit 1
fi
export FASTDDS_DEFAULT_PROFILES_FILE="$_omama_root/ros/fastdds-localhost.xml"
unset ROS_AUTOMATIC_DISCOVERY_RANGE ROS_LOCALHOST_ONLY ROS_STATIC_PEERS
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 102 ))}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Left over from a Python of another venv, these break the ROS wheels' bootstrap.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
unset _omama_root _omama_src
