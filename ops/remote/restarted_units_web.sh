units={{ gunicorn_unit }}
