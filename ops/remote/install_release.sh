# ops install release
set -eu
set -a
. {{ release_env }}
set +a
{{ system_python }} {{ release_bin }} install {{ release }} --sha256 {{ digest }}
