"""The continuous monitor (`sentinel run`): schedules, reloads, shutdown, logs."""
