units="$units {{ beat_unit }}"
