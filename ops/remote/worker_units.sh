for q in $(worker_queues); do units="$units {{ worker_unit_prefix }}$q{{ worker_unit_suffix }}"; done
