"""What a plugin implements against: the hook specs, model specs, generation parameters, schedules and errors."""
