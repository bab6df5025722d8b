# ops current release
set -eu
{{ system_python }} {{ release_bin }} current
