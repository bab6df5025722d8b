"""Django + Celery + private TLS Redis on AWS: what `pulumi up` and `pulumi preview` run. The
program itself is program.py (`read_settings`, `build`), which the offline render calls too."""

from program import build, read_settings

build(read_settings())
