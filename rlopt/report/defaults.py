"""The defaults ``rlopt report``'s arguments and :func:`~rlopt.report.build.build_report` share
(a leaf, so the light command module and the builder import it without importing each other)."""

DEFAULT_REPS = 2000
"""Bootstrap resamples per interval."""
