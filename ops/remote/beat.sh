# ops beat {{ action }}
set -u
systemctl {{ action }} {{ beat_unit }}
state=$(systemctl is-active {{ beat_unit }})
echo "{{ beat_unit }}: $state"
[ "$state" = {{ wanted }} ]
