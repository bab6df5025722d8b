# ops verify ({{ role }})
ROLE={{ role }}
EXPECT_BEAT={{ expect_beat }}
HEALTHCHECK_TASK={{ healthcheck_task }}
CHECK_TIMEOUT={{ check_timeout }}
{{ helpers }}{{ checks }}status=0
{{ runs }}exit $status
