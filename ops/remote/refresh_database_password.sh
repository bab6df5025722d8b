# ops refresh the database password file
# Never `restart`: app-secrets.service Requires= it, and an explicit restart would restart
# app-secrets and every app unit with it. A run the timer began before the rotation is waited
# for, so the run started here reads the secret's new version.
while [ "$(systemctl show --property=ActiveState --value {{ database_password_unit }})" = activating ]; do
  sleep 1
done
systemctl start {{ database_password_unit }}
status=$(systemctl show --property=ExecMainStatus --value {{ database_password_unit }})
if [ "$status" != 0 ]; then
  echo "{{ database_password_unit }} exited $status (journalctl -u {{ database_password_unit }}): the password file holds what it held" >&2
  exit 1
fi
echo "password file rewritten from the secret's current version"
