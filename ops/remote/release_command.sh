# ops release command
{{ helpers }}set -e
[ -r {{ releases_dir }}/{{ release }}/version.env ] || { echo 'release not installed here'; exit 1; }
[ -r {{ release_command_env }} ] || { echo 'no {{ release_command_env }}: the instance predates app.releaseCommand; pulumi up replaces it'; exit 1; }
load_env
set -a
. {{ releases_dir }}/{{ release }}/version.env
. {{ release_command_env }}
set +a
as_app {{ releases_dir }}/{{ release }}/venv/bin/python {{ release_command_bin }} 2>&1
