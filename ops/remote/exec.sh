# ops exec
{{ helpers }}set -e
load_env
cd {{ app_src }}
PATH={{ app_bin }}:$PATH
as_app {{ command }}
